//! Inference benchmarks: model loading, encode, decode and reconstruct, at tiny and full size.
//!
//! ```text
//! cargo bench --bench inference                          # tiny and full size, CPU
//! LOSATOK_BENCH_SIZES=tiny cargo bench --bench inference # tiny only (seconds)
//! RAYON_NUM_THREADS=2 cargo bench --bench inference      # pin the thread count
//! cargo bench --bench inference --features cuda           # the same on CUDA device 0
//! ```
//!
//! The weights are random, generated here and written in the official checkpoint layout, then
//! loaded through the normal loader (so loading is measured as users see it). Speed does not
//! depend on the values. Each case prints its real-time factor (compute seconds per second of
//! audio) next to criterion's statistics.

use std::path::PathBuf;
use std::time::Duration;

use burn::prelude::*;
use common::{median_s, sizes, timed};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use losatok::models::checkpoint::export_safetensors;
use losatok::{FileOptions, LosatokConfig, Sampling, Tokenizer};

#[cfg(feature = "cuda")]
type B = losatok::Cuda;
#[cfg(not(feature = "cuda"))]
type B = losatok::Cpu;

mod common;

const SR: usize = 16_000;

/// A deterministic test signal: a chirp plus noise, at speech-like level.
fn signal(seconds: f64) -> Vec<f32> {
    let n = (seconds * SR as f64) as usize;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let t = i as f64 / SR as f64;
            let noise = (state >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
            (0.3 * (2.0 * std::f64::consts::PI * (200.0 + 300.0 * t) * t).sin() + 0.02 * noise)
                as f32
        })
        .collect()
}

/// Random weights of `cfg`, exported in the official layout to a temporary file.
fn random_checkpoint(cfg: &LosatokConfig, dir: &std::path::Path) -> PathBuf {
    let device = Default::default();
    <B as Backend>::seed(&device, 7);
    let model = cfg.init::<B>(&device);
    let path = dir.join("random.safetensors");
    export_safetensors(&model, &path, &Default::default()).expect("export random weights");
    path
}

fn report_rtf(label: &str, samples: &mut [Duration], audio_seconds: f64) {
    let Some(median) = median_s(samples) else {
        return;
    };
    println!(
        "{label}: median {median:.3} s for {audio_seconds:.0} s of audio → RTF {:.4} ({:.1}× real time)",
        median / audio_seconds,
        audio_seconds / median
    );
}

fn bench(c: &mut Criterion) {
    let device: burn::tensor::Device<B> = Default::default();
    let seconds = 10.0;
    let wav = signal(seconds);
    let n = wav.len();
    for (size, cfg) in sizes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ckpt = random_checkpoint(&cfg, dir.path());
        let bytes = std::fs::metadata(&ckpt).map(|m| m.len()).unwrap_or(0);

        let mut group = c.benchmark_group(size);
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(if size == "full" { 30 } else { 5 }));

        // loading: open, map, remap and copy every tensor to the device
        let mut load_times = Vec::new();
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function("load", |b| {
            b.iter_custom(|iters| {
                timed(&mut load_times, iters, || {
                    let tok = Tokenizer::<B>::load(&ckpt, &cfg, &device).expect("load");
                    drop(tok);
                })
            })
        });
        if let Some(m) = median_s(&mut load_times) {
            println!(
                "{size}/load: median {m:.3} s for {:.2} GB",
                bytes as f64 / 1e9
            );
        }

        let tok = Tokenizer::<B>::load(&ckpt, &cfg, &device).expect("load");
        let x = || Tensor::<B, 2>::from_data(TensorData::new(wav.clone(), [1, n]), &device);
        let z = tok.encode(x(), Sampling::Mean).expect("encode").z;
        group.throughput(Throughput::Elements(n as u64));

        let mut t = Vec::new();
        group.bench_with_input(BenchmarkId::new("encode", "10s"), &(), |b, _| {
            b.iter_custom(|iters| {
                timed(&mut t, iters, || {
                    let f = tok.encode(x(), Sampling::Mean).expect("encode");
                    let _ = f.z.into_data();
                })
            })
        });
        report_rtf(&format!("{size}/encode"), &mut t, seconds);

        let mut t = Vec::new();
        group.bench_with_input(BenchmarkId::new("decode", "10s"), &(), |b, _| {
            b.iter_custom(|iters| {
                timed(&mut t, iters, || {
                    let _ = tok.decode(z.clone()).expect("decode").into_data();
                })
            })
        });
        report_rtf(&format!("{size}/decode"), &mut t, seconds);

        let mut t = Vec::new();
        group.bench_with_input(BenchmarkId::new("reconstruct", "10s"), &(), |b, _| {
            b.iter_custom(|iters| {
                timed(&mut t, iters, || {
                    let (y, _) = tok.reconstruct(x(), Sampling::Mean).expect("reconstruct");
                    let _ = y.into_data();
                })
            })
        });
        report_rtf(&format!("{size}/reconstruct"), &mut t, seconds);

        // the CLI's path: a 60 s file, streamed in 10.08 s chunks, read and written
        let long = 60.0;
        let input = dir.path().join("in.wav");
        write_wav(&input, &signal(long));
        let output = dir.path().join("out.wav");
        let opts = FileOptions {
            overwrite: true,
            ..FileOptions::default()
        };
        group.throughput(Throughput::Elements((long * SR as f64) as u64));
        let mut t = Vec::new();
        group.bench_with_input(BenchmarkId::new("reconstruct_file", "60s"), &(), |b, _| {
            b.iter_custom(|iters| {
                timed(&mut t, iters, || {
                    tok.reconstruct_file(&input, &output, &opts)
                        .expect("reconstruct file");
                })
            })
        });
        report_rtf(&format!("{size}/reconstruct_file"), &mut t, long);
        group.finish();
    }
}

fn write_wav(path: &std::path::Path, samples: &[f32]) {
    losatok::audio::write_wav(path, samples, SR as u32, losatok::WavFormat::Float32)
        .expect("write the input wav");
}

criterion_group!(benches, bench);
criterion_main!(benches);
