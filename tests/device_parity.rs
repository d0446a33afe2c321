//! The same checks on every backend this build has: inference against the reference fixtures,
//! and one training step of each stage against the same step on Flex.
//!
//! Flex runs always (so the checks themselves are tested in CI). CUDA runs when the build has
//! the `cuda` feature and `LOSATOK_TEST_CUDA=1` is set, as `scripts/gpu_check.sh` does; a CUDA
//! build without it says so on stderr, and `LOSATOK_TEST_CUDA=1` on a build without the feature
//! fails, so that a skipped check is never mistaken for a passed one.
//!
//! * Encode (all nine features), SemBo's restoration and decode of fixture cases a (2.3 s),
//!   b (10.5 s, two attention chunks) and c (a batch of two), at the tolerances of
//!   `tests/parity_model.rs`.
//! * One stage-1 and one stage-2 step (tiny model, GAN active, weights built on Flex and copied
//!   through a checkpoint folder) against Flex: every trained parameter within [`TOL_STEP`]
//!   and the step's losses within [`TOL_STEP_LOSS`] (relative).

mod common;

use std::path::Path;

use burn::backend::Autodiff;
use burn::prelude::*;
use common::*;
use losatok_models::checkpoint::{load_losatok, open_losatok_checkpoint};
use losatok_models::discriminator::{DiscriminatorConfig, MfdConfig};
use losatok_models::{Losatok, LosatokConfig, Sampling};
use losatok_train::collective::Local;
use losatok_train::config::OptimConfig;
use losatok_train::data::{synth_clip, SynthKind};
use losatok_train::demo::{stage1_config, stage2_config};
use losatok_train::run::{seeded, stage2_model};
use losatok_train::stage1::SemboTrainer;
use losatok_train::stage2::LosatokTrainer;
use losatok_train::{state, RunOptions, Stage2Config};

/// Features, SemBo restoration (the parity fixtures' suggested float32 tolerance).
const TOL_EMB: f32 = 1e-4;
/// The decoded waveform.
const TOL_DECODED: f32 = 1e-4;
/// A parameter after one step against Flex's. AdamW with ε = 1 moves a weight by ≈ lr·g
/// (lr 1e-3), so a backend's float32 rounding (≈1e-5 relative in the forward pass) moves the
/// result by far less; a wrong gradient or update moves it by up to lr.
const TOL_STEP: f32 = 2e-5;
/// The step's losses against Flex's, relative.
const TOL_STEP_LOSS: f64 = 1e-3;

/// AdamW whose updates follow the gradients linearly (ε = 1), so that rounding noise in a
/// near-zero gradient cannot flip a weight by ±lr (see `crates/losatok-train/tests/data_parallel.rs`).
fn linear_adamw() -> OptimConfig {
    OptimConfig {
        lr: 1e-3,
        min_lr: 1e-3,
        warmup_steps: 0,
        eps: 1.0,
        weight_decay: 0.0,
        grad_clip: None,
        ..OptimConfig::default()
    }
}

fn model_dir() -> std::path::PathBuf {
    fixture_path("model")
}

fn tiny<B: Backend>(device: &B::Device) -> Losatok<B> {
    let cfg = LosatokConfig::from_file(model_dir().join("tiny_config.yml")).expect("tiny config");
    let path = model_dir().join("losatok_tiny.pth");
    let src = open_losatok_checkpoint(&path, &cfg).expect("tiny checkpoint");
    load_losatok::<B>(&cfg, &src, &path, device)
        .expect("tiny checkpoint loads")
        .0
}

fn check<B: Backend, const D: usize>(
    backend: &str,
    f: &Fixture,
    key: &str,
    got: Tensor<B, D>,
    tol: f32,
) {
    let (want, shape) = f.get(key);
    assert_eq!(got.dims().to_vec(), shape, "{backend}: {key}: shape");
    assert_close(&format!("{backend}: {key}"), &to_vec(got), &want, tol);
}

/// Cases a, b and c of the inference fixtures on backend `B`.
fn inference<B: Backend>(backend: &str, device: &B::Device) {
    let m = tiny::<B>(device);
    let f = Fixture::open("model/tiny_io.safetensors");
    for case in ["a", "b", "c"] {
        let k = |name: &str| format!("{case}.{name}");
        let x = f.tensor::<B, 2>(&k("input"), device);
        let feats = m.encode(x, Sampling::Mean);
        for (name, t) in feats.named() {
            if name != "z" {
                check(backend, &f, &k(name), t.clone(), TOL_EMB);
            }
        }
        let recon = m
            .semantic_encoder
            .bottleneck
            .restore(feats.semantic_emb_low.clone());
        check(backend, &f, &k("sembo_recon"), recon, TOL_EMB);
        check(backend, &f, &k("decoded"), m.decode(feats.z), TOL_DECODED);
    }
}

fn batch(rows: usize, samples: usize) -> Vec<f32> {
    let kinds = [SynthKind::Speech, SynthKind::Music, SynthKind::General];
    (0..rows)
        .flat_map(|i| synth_clip(kinds[i % 3], samples, 70 + i as u64))
        .collect()
}

fn compare(backend: &str, what: &str, got: &[f32], flex: &[f32]) {
    assert_eq!(got.len(), flex.len(), "{backend}: {what}: parameter count");
    let (worst, at) = max_abs_diff(got, flex);
    assert!(
        worst <= TOL_STEP,
        "{backend}: {what}: max |Δ| {worst:e} at {at} > {TOL_STEP:e} against Flex"
    );
}

fn close_losses(backend: &str, what: &str, got: &[f64], flex: &[f64]) {
    for (i, (g, f)) in got.iter().zip(flex).enumerate() {
        let rel = (g - f).abs() / f.abs().max(1e-12);
        assert!(
            rel <= TOL_STEP_LOSS || (g - f).abs() < 1e-9,
            "{backend}: {what} loss term {i}: {g} against Flex's {f}"
        );
    }
}

/// One stage-1 step on `B` and on Flex from the same weights.
fn stage1_step<B: Backend>(backend: &str, device: &B::Device) {
    type Ad<B> = Autodiff<B>;
    let mut cfg = stage1_config(Path::new("unused"), 10, 0, 0);
    cfg.optim = linear_adamw();
    cfg.run.batch_size = 2;
    let model = LosatokConfig::tiny();
    let dir = tempfile::tempdir().unwrap();
    let flex_dev = Default::default();
    let encoder = seeded::<Cpu, _>(&flex_dev, 1, || model.audio_encoder.init::<Cpu>(&flex_dev));
    let sembo = seeded::<CpuAd, _>(&flex_dev, 2, || {
        losatok_models::sembo::SemBo::<CpuAd>::new(64, 32, 16, &flex_dev)
    });
    state::save_module(&encoder, dir.path(), "encoder").unwrap();
    state::save_module(&sembo, dir.path(), "sembo").unwrap();
    let encoder_b = state::load_module(
        model.audio_encoder.init::<B>(device),
        dir.path(),
        "encoder",
        device,
    )
    .unwrap();
    let sembo_b = state::load_module(
        losatok_models::sembo::SemBo::<Ad<B>>::new(64, 32, 16, device),
        dir.path(),
        "sembo",
        device,
    )
    .unwrap();
    let audio = batch(2, 16_000);
    let mut flex = SemboTrainer::<CpuAd>::new(encoder, sembo, &cfg);
    let mut other = SemboTrainer::<Ad<B>>::new(encoder_b, sembo_b, &cfg);
    let a = flex.train_step(&audio, 2, 16_000, &mut Local).unwrap();
    let b = other.train_step(&audio, 2, 16_000, &mut Local).unwrap();
    close_losses(
        backend,
        "stage 1",
        &[b.loss, b.recon, b.tr],
        &[a.loss, a.recon, a.tr],
    );
    compare(
        backend,
        "stage-1 SemBo",
        &param_values(&other.sembo),
        &param_values(&flex.sembo),
    );
}

fn stage2_cfg() -> Stage2Config {
    let mut cfg = stage2_config(Path::new("unused"), Path::new("random"), 10, 0, 0);
    cfg.semantic_encoder = "random".into();
    cfg.discriminator = DiscriminatorConfig::Mfd(MfdConfig {
        hop_lengths: vec![256, 1024],
        hidden_channels: vec![32; 2],
        ..MfdConfig::tiny_fixture()
    });
    cfg.gan_start_step = 0;
    cfg.optim_g = linear_adamw();
    cfg.optim_d = linear_adamw();
    cfg.run.batch_size = 2;
    cfg
}

/// One stage-2 step on `B` and on Flex from the same weights (the trainer's own checkpoint
/// folder carries the trainable parts, a module file the frozen semantic encoder).
fn stage2_step<B: Backend>(backend: &str, device: &B::Device) {
    type Ad<B> = Autodiff<B>;
    let cfg = stage2_cfg();
    let opts = RunOptions::default();
    let dir = tempfile::tempdir().unwrap();
    let flex_dev = Default::default();
    let (model, _) = stage2_model::<CpuAd>(&cfg, &opts, &flex_dev).unwrap();
    let disc = seeded::<CpuAd, _>(&flex_dev, 3, || {
        cfg.discriminator.init::<CpuAd>(&flex_dev).unwrap()
    });
    state::save_module(&model.semantic_encoder, dir.path(), "semantic").unwrap();
    let mut flex = LosatokTrainer::<CpuAd>::new(model, disc, &cfg);
    flex.save(dir.path()).unwrap();

    let (mut model_b, _) = stage2_model::<Ad<B>>(&cfg, &opts, device).unwrap();
    model_b.semantic_encoder =
        state::load_module(model_b.semantic_encoder, dir.path(), "semantic", device).unwrap();
    let disc_b = cfg.discriminator.init::<Ad<B>>(device).unwrap();
    let mut other = LosatokTrainer::<Ad<B>>::new(model_b, disc_b, &cfg)
        .load(dir.path())
        .unwrap();

    let audio = batch(2, 10_240);
    let a = flex.train_step(&audio, 2, 10_240, 0, &mut Local).unwrap();
    let b = other.train_step(&audio, 2, 10_240, 0, &mut Local).unwrap();
    close_losses(
        backend,
        "stage 2",
        &b.losses.into_array(),
        &a.losses.into_array(),
    );
    compare(
        backend,
        "stage-2 tokenizer",
        &param_values(&other.model.dasheng_tokenizer),
        &param_values(&flex.model.dasheng_tokenizer),
    );
    compare(
        backend,
        "stage-2 fc_a",
        &param_values(&other.model.fc_a),
        &param_values(&flex.model.fc_a),
    );
    compare(
        backend,
        "stage-2 discriminator",
        &param_values(&other.disc),
        &param_values(&flex.disc),
    );
}

/// Every check on backend `B`.
fn all_checks<B: Backend>(backend: &str, device: &B::Device) {
    inference::<B>(backend, device);
    stage1_step::<B>(backend, device);
    stage2_step::<B>(backend, device);
    eprintln!("{backend}: inference parity, stage-1 and stage-2 steps: ok");
}

#[test]
fn flex_passes_the_device_checks() {
    all_checks::<Cpu>("flex", &Default::default());
}

#[test]
fn wgpu_passes_the_device_checks_when_requested() {
    let requested = std::env::var("LOSATOK_TEST_WGPU").is_ok_and(|v| v == "1");
    #[cfg(feature = "wgpu")]
    {
        if requested {
            let t = std::time::Instant::now();
            all_checks::<losatok::Wgpu>("wgpu", &Default::default());
            eprintln!("wgpu: all checks in {:.1} s", t.elapsed().as_secs_f64());
        } else {
            eprintln!("wgpu: built but NOT RUN (set LOSATOK_TEST_WGPU=1 where an adapter exists)");
        }
    }
    #[cfg(not(feature = "wgpu"))]
    assert!(
        !requested,
        "LOSATOK_TEST_WGPU=1 but this build has no `wgpu` feature: nothing would run"
    );
}

#[test]
fn cuda_passes_the_device_checks_when_requested() {
    let requested = std::env::var("LOSATOK_TEST_CUDA").is_ok_and(|v| v == "1");
    #[cfg(feature = "cuda")]
    {
        if requested {
            all_checks::<losatok::Cuda>("cuda", &Default::default());
        } else {
            eprintln!("cuda: built but NOT RUN (set LOSATOK_TEST_CUDA=1 on a machine with a GPU)");
        }
    }
    #[cfg(not(feature = "cuda"))]
    assert!(
        !requested,
        "LOSATOK_TEST_CUDA=1 but this build has no `cuda` feature: nothing would run"
    );
}
