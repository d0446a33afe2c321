//! Training benchmarks: one optimiser step of each stage, at tiny and full size.
//!
//! ```text
//! cargo bench --bench training                                # tiny and full, CPU
//! LOSATOK_BENCH_SIZES=tiny cargo bench --bench training       # tiny only
//! LOSATOK_BENCH_BATCH=8 cargo bench --bench training --features cuda   # one H100's share of
//!                                                             # the paper's batch of 64 on 8 GPUs
//! ```
//!
//! Each step is the trainer's own `train_step` on one rank (no collective): stage 1 runs the
//! frozen MiDashengLM encoder and updates SemBo (reconstruction + Gram loss); stage 2 runs the
//! frozen semantic encoder and updates the generator and the MFD discriminator, with the GAN
//! terms active. Segments are the paper's 3 s (48 000 samples). The batch per step is
//! `LOSATOK_BENCH_BATCH`, default 4 at tiny size and 1 at full size on the CPU (8 on CUDA).
//! Weights are random; speed does not depend on their values. Each case prints seconds per
//! step and audio seconds trained per second.

use std::path::Path;
use std::time::Duration;

use burn::backend::Autodiff;
use common::{median_s, sizes, timed};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use losatok_train::collective::Local;
use losatok_train::config::ModelSpec;
use losatok_train::data::{synth_clip, SynthKind};
use losatok_train::run::{seeded, stage2_model};
use losatok_train::stage1::SemboTrainer;
use losatok_train::stage2::LosatokTrainer;
use losatok_train::{RunOptions, Stage1Config, Stage2Config};

#[cfg(feature = "cuda")]
type B = losatok::Cuda;
#[cfg(not(feature = "cuda"))]
type B = losatok::Cpu;
type Ad = Autodiff<B>;

mod common;

const SR: usize = 16_000;
/// The paper's training segment.
const SEGMENT: usize = 48_000;

fn batch_size(size: &str) -> usize {
    if let Ok(v) = std::env::var("LOSATOK_BENCH_BATCH") {
        return v
            .parse()
            .unwrap_or_else(|_| panic!("LOSATOK_BENCH_BATCH: not a number: {v:?}"));
    }
    match (size, cfg!(feature = "cuda")) {
        ("tiny", _) => 4,
        (_, true) => 8,
        (_, false) => 1,
    }
}

/// `rows` clips of speech-, music- and sound-like synthetic audio, row-major.
fn batch(rows: usize) -> Vec<f32> {
    let kinds = [SynthKind::Speech, SynthKind::Music, SynthKind::General];
    (0..rows)
        .flat_map(|i| synth_clip(kinds[i % 3], SEGMENT, 100 + i as u64))
        .collect()
}

fn report(label: &str, samples: &mut [Duration], rows: usize) {
    let Some(median) = median_s(samples) else {
        return;
    };
    let audio = (rows * SEGMENT) as f64 / SR as f64;
    println!(
        "{label}: median {median:.3} s per step (batch {rows} × 3 s) → {:.2} s of audio trained per second",
        audio / median
    );
}

fn bench(c: &mut Criterion) {
    let device: burn::tensor::Device<Ad> = Default::default();
    for (size, model) in sizes() {
        let rows = batch_size(size);
        let preset = if size == "full" { "official" } else { size };
        let audio = batch(rows);
        let mut group = c.benchmark_group(format!("train_{size}"));
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(if size == "full" { 60 } else { 10 }));
        group.throughput(Throughput::Elements((rows * SEGMENT) as u64));

        // ---- stage 1: frozen encoder, SemBo update ----
        let mut cfg1 = Stage1Config::paper();
        cfg1.model = ModelSpec::preset(preset);
        cfg1.run.batch_size = rows;
        cfg1.run.grad_accum = 1;
        let encoder = seeded::<B, _>(&device, 1, || model.audio_encoder.init::<B>(&device));
        let sembo = seeded::<Ad, _>(&device, 2, || {
            losatok::models::sembo::SemBo::<Ad>::new(
                model.tokenizer.embed_dim,
                model.sembo_hidden_dim,
                model.tokenizer.decoder_dim,
                &device,
            )
        });
        let mut t1 = SemboTrainer::<Ad>::new(encoder, sembo, &cfg1);
        let mut times = Vec::new();
        group.bench_function("stage1_step", |b| {
            b.iter_custom(|iters| {
                timed(&mut times, iters, || {
                    let s = t1
                        .train_step(&audio, rows, SEGMENT, &mut Local)
                        .expect("stage-1 step");
                    assert!(!s.skipped, "stage-1 step skipped");
                })
            })
        });
        report(&format!("{size}/stage1_step"), &mut times, rows);
        drop(t1);

        // ---- stage 2: frozen semantic encoder, generator + discriminator updates ----
        let mut cfg2 = Stage2Config::paper();
        cfg2.model = ModelSpec::preset(preset);
        cfg2.semantic_encoder = "random".into();
        cfg2.gan_start_step = 0;
        cfg2.run.batch_size = rows;
        cfg2.run.grad_accum = 1;
        if size == "tiny" {
            cfg2.discriminator =
                losatok::models::discriminator::DiscriminatorConfig::tiny_fixture();
        }
        let opts = RunOptions {
            config_dir: Path::new(".").to_path_buf(),
            ..RunOptions::default()
        };
        let (gen, _) = stage2_model::<Ad>(&cfg2, &opts, &device).expect("stage-2 model");
        let disc = seeded::<Ad, _>(&device, 3, || {
            cfg2.discriminator
                .init::<Ad>(&device)
                .expect("discriminator")
        });
        let mut t2 = LosatokTrainer::<Ad>::new(gen, disc, &cfg2);
        let mut times = Vec::new();
        group.bench_function("stage2_step", |b| {
            b.iter_custom(|iters| {
                timed(&mut times, iters, || {
                    let s = t2
                        .train_step(&audio, rows, SEGMENT, 0, &mut Local)
                        .expect("stage-2 step");
                    assert!(!s.skipped, "stage-2 step skipped");
                })
            })
        });
        report(&format!("{size}/stage2_step"), &mut times, rows);
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
