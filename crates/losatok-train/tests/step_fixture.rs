//! The stage-2 step against a recorded fixture: the trainable parameters, both optimisers'
//! effect and the logged losses after a few steps on the tiny model (CPU, `Autodiff<Flex>`).
//!
//! The fixture (`tests/fixtures/train/stage2_steps.safetensors`) was recorded with the trainer
//! that ran the generator twice per micro-batch (once without autodiff for the discriminator,
//! once with it for the generator). The single-pass step computes the same values in a different
//! order of operations, so it must reproduce the fixture within [`PARAM_TOL`].
//!
//! Re-record (only when the step's mathematics changes on purpose):
//! `LOSATOK_RECORD_FIXTURE=1 cargo test --release -p losatok-train --test step_fixture`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use losatok_models::checkpoint::torch_names;
use losatok_models::discriminator::{DiscriminatorConfig, MfdConfig};
use losatok_train::collective::Local;
use losatok_train::data::{synth_clip, SynthKind};
use losatok_train::demo::stage2_config;
use losatok_train::run::{seeded, stage2_model};
use losatok_train::stage2::{LosatokTrainer, Stage2Stats};
use losatok_train::{RunOptions, Stage2Config};

type Ad = Autodiff<Flex>;

/// Largest difference allowed between a recorded and a recomputed parameter or loss, absolute
/// below 1 and relative above (gradient norms and losses can exceed 1).
/// The values are mathematically identical; what differs is float summation order (the
/// discriminator's input is the autodiff forward instead of a separate inference forward, and
/// loss terms are summed on the device). Three AdamW steps at lr ≤ 2e-3 move a parameter by at
/// most ~6e-3, so 1e-5 still catches any change of the update's mathematics.
const PARAM_TOL: f32 = 1e-5;

/// Crop length (0.64 s, the demo's) and optimiser steps per scenario.
const SAMPLES: usize = 10_240;
const STEPS: u64 = 3;

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/train/stage2_steps.safetensors")
}

/// The demo's stage-2 config on the tiny model: the GAN starts at step 1, so the fixture covers
/// a generator-only step and two full steps; sampling on (KL and reparameterisation noise).
fn config(batch: usize, accum: usize) -> Stage2Config {
    let mut cfg = stage2_config(Path::new("unused"), Path::new("random"), STEPS, 0, 0);
    cfg.semantic_encoder = "random".into();
    cfg.discriminator = DiscriminatorConfig::Mfd(MfdConfig {
        hop_lengths: vec![64, 256, 1024],
        hidden_channels: vec![32; 3],
        ..MfdConfig::tiny_fixture()
    });
    cfg.gan_start_step = 1;
    cfg.run.batch_size = batch;
    cfg.run.grad_accum = accum;
    cfg
}

fn batch(n: usize) -> Vec<f32> {
    let kinds = [SynthKind::Speech, SynthKind::Music, SynthKind::General];
    (0..n)
        .flat_map(|i| synth_clip(kinds[i % 3], SAMPLES, 300 + i as u64))
        .collect()
}

fn host<B: Backend, M: burn::module::Module<B>>(
    m: &M,
    prefix: &str,
    out: &mut BTreeMap<String, Vec<f32>>,
) {
    struct Collect(Vec<Vec<f32>>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<B, D>>) {
            self.0
                .push(p.val().into_data().convert::<f32>().into_vec().unwrap());
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    for ((name, ..), v) in torch_names(m).into_iter().zip(c.0) {
        out.insert(format!("{prefix}{name}"), v);
    }
}

fn stats_row(s: &Stage2Stats) -> Vec<f32> {
    [
        s.loss_g,
        s.mel,
        s.semantic,
        s.kl,
        s.adv,
        s.fm,
        s.loss_d,
        s.grad_norm_g,
        s.grad_norm_d,
        s.lr,
    ]
    .iter()
    .map(|&v| v as f32)
    .collect()
}

/// Run one scenario; every trainable parameter and each step's statistics, by name.
fn scenario(name: &str, rows: usize, accum: usize) -> BTreeMap<String, Vec<f32>> {
    let cfg = config(rows, accum);
    let dev = Default::default();
    let (model, _) = stage2_model::<Ad>(&cfg, &RunOptions::default(), &dev).unwrap();
    let disc = seeded::<Ad, _>(&dev, 3, || cfg.discriminator.init::<Ad>(&dev).unwrap());
    let mut t = LosatokTrainer::<Ad>::new(model, disc, &cfg);
    let audio = batch(rows);
    let mut out = BTreeMap::new();
    for k in 0..STEPS {
        let s = t.train_step(&audio, rows, SAMPLES, 2, &mut Local).unwrap();
        assert!(!s.skipped);
        out.insert(format!("{name}/stats/step{k}"), stats_row(&s));
    }
    let m = &t.model;
    host(
        &m.dasheng_tokenizer,
        &format!("{name}/tokenizer/"),
        &mut out,
    );
    host(&m.fc_a, &format!("{name}/fc_a/"), &mut out);
    host(&m.fc_mu, &format!("{name}/fc_mu/"), &mut out);
    host(&m.fc_logvar, &format!("{name}/fc_logvar/"), &mut out);
    host(&t.disc, &format!("{name}/disc/"), &mut out);
    out
}

fn write(path: &Path, values: &BTreeMap<String, Vec<f32>>) {
    let bytes: Vec<(String, Vec<u8>, usize)> = values
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                v.len(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(k, b, n)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![*n], b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, &None, path).unwrap();
}

fn read(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            let f = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (k, f)
        })
        .collect()
}

#[test]
fn stage2_steps_reproduce_the_recorded_trainer() {
    let mut got = scenario("accum1", 2, 1);
    got.extend(scenario("accum2", 4, 2));
    if std::env::var_os("LOSATOK_RECORD_FIXTURE").is_some() {
        write(&fixture_path(), &got);
        eprintln!("recorded {}", fixture_path().display());
        return;
    }
    let want = read(&fixture_path());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "parameter names"
    );
    for (k, w) in &want {
        let g = &got[k];
        assert_eq!(g.len(), w.len(), "{k}: length");
        let worst = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .fold(0f32, f32::max);
        assert!(
            worst <= PARAM_TOL,
            "{k}: max |Δ|/max(1, |recorded|) {worst:e} > {PARAM_TOL:e}"
        );
    }
}
