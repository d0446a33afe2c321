//! Robustness of long runs:
//!
//! * NaN injection: a batch with a NaN (or infinite) sample makes the loss non-finite; the
//!   step is skipped (no parameter or optimiser change, `skipped` set, counted in `faults`),
//!   the next good step proceeds, and `max_bad_steps` faults in a row stop the trainer with
//!   `TrainError::Diverged` and a clear one-line message; a run whose learning rate blows the
//!   weights up stops the same way;
//! * a damaged newest checkpoint (a flipped byte) is detected by its checksums, and `resume`
//!   continues from the newest intact one, to the same result as an uninterrupted run;
//! * corrupt data files in the manifest are skipped and counted by a run (the loader's own
//!   test is `unreadable_files_are_skipped_and_counted` in `tests/data.rs`).
//!
//! SIGKILL at random points, then resume, is tested on the binary:
//! `crates/losatok-cli/tests/kill_resume.rs`.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use losatok_models::discriminator::{DiscriminatorConfig, MfdConfig};
use losatok_models::LosatokConfig;
use losatok_train::collective::Local;
use losatok_train::data::{synth_clip, synthesize_dataset, SynthKind};
use losatok_train::demo::{stage1_config, stage2_config};
use losatok_train::run::{seeded, stage2_model};
use losatok_train::stage1::SemboTrainer;
use losatok_train::stage2::LosatokTrainer;
use losatok_train::{train_stage1, RunOptions, TrainError};

mod common;
use common::param_tensors;

type Ad = Autodiff<Flex>;

fn batch(n: usize, samples: usize) -> Vec<f32> {
    let kinds = [SynthKind::Speech, SynthKind::Music, SynthKind::General];
    (0..n)
        .flat_map(|i| synth_clip(kinds[i % 3], samples, 200 + i as u64))
        .collect()
}

/// `good` with one sample replaced by `bad`.
fn poisoned(good: &[f32], bad: f32) -> Vec<f32> {
    let mut b = good.to_vec();
    b[good.len() / 3] = bad;
    b
}

fn assert_diverged(e: TrainError, limit: u32) {
    let msg = e.to_string();
    assert!(matches!(e, TrainError::Diverged(_)), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    assert!(
        msg.starts_with("training diverged: ")
            && msg.contains(&format!("{limit} consecutive steps with non-finite"))
            && msg.contains("learning rate"),
        "{msg}"
    );
}

#[test]
fn stage1_skips_non_finite_steps_and_stops_after_max_bad_steps() {
    let mut cfg = stage1_config(Path::new("unused"), 100, 0, 0);
    cfg.run.max_bad_steps = 3;
    let dev = Default::default();
    let model = LosatokConfig::tiny();
    let encoder = seeded::<Flex, _>(&dev, 1, || model.audio_encoder.init::<Flex>(&dev));
    let sembo = seeded::<Ad, _>(&dev, 2, || {
        losatok_models::sembo::SemBo::<Ad>::new(64, 32, 16, &dev)
    });
    let mut t = SemboTrainer::<Ad>::new(encoder, sembo, &cfg);
    let (rows, n) = (2, 16_000);
    let good = batch(rows, n);
    let nan = poisoned(&good, f32::NAN);
    let inf = poisoned(&good, f32::INFINITY);

    assert!(!t.train_step(&good, rows, n, &mut Local).unwrap().skipped);
    let before = param_tensors(&t.sembo);
    // (the front end's dB floor masks the NaN, so the loss may be finite: the input check
    // catches it)
    let s = t.train_step(&nan, rows, n, &mut Local).unwrap();
    assert!(s.skipped, "{s:?}");
    assert_eq!(
        param_tensors(&t.sembo),
        before,
        "a skipped step changed SemBo"
    );
    assert_eq!((t.faults.consecutive, t.faults.total, t.step), (1, 1, 2));

    // the next good step trains, with the optimiser state of before the fault
    let s = t.train_step(&good, rows, n, &mut Local).unwrap();
    assert!(!s.skipped && s.loss.is_finite());
    assert_ne!(param_tensors(&t.sembo), before);
    assert_eq!(t.faults.consecutive, 0);

    // a non-finite forward pass on finite input (a NaN in the frozen encoder's positional
    // embedding): the loss and gradient checks skip the step
    let clean = t.encoder.time_pos_embed.clone();
    let dims = clean.val().dims();
    t.encoder.time_pos_embed = burn::module::Param::from_tensor(Tensor::full(dims, f32::NAN, &dev));
    let before = param_tensors(&t.sembo);
    let s = t.train_step(&good, rows, n, &mut Local).unwrap();
    assert!(s.skipped && !s.loss.is_finite(), "{s:?}");
    assert_eq!(param_tensors(&t.sembo), before);
    assert_eq!((t.faults.consecutive, t.faults.total), (1, 2));
    t.encoder.time_pos_embed = clean;
    assert!(!t.train_step(&good, rows, n, &mut Local).unwrap().skipped);

    // three in a row stop it
    let before = param_tensors(&t.sembo);
    assert!(t.train_step(&inf, rows, n, &mut Local).unwrap().skipped);
    assert!(t.train_step(&nan, rows, n, &mut Local).unwrap().skipped);
    let e = t.train_step(&nan, rows, n, &mut Local).unwrap_err();
    assert_diverged(e, 3);
    assert_eq!(param_tensors(&t.sembo), before);
    assert_eq!(t.faults.total, 5);
}

#[test]
fn stage2_skips_non_finite_steps_and_stops_after_max_bad_steps() {
    let mut cfg = stage2_config(Path::new("unused"), Path::new("random"), 100, 0, 0);
    cfg.semantic_encoder = "random".into();
    cfg.gan_start_step = 0; // the discriminator trains too
    cfg.discriminator = DiscriminatorConfig::Mfd(MfdConfig {
        hop_lengths: vec![256, 1024],
        hidden_channels: vec![32; 2],
        ..MfdConfig::tiny_fixture()
    });
    cfg.run.max_bad_steps = 2;
    let dev = Default::default();
    let (model, _) = stage2_model::<Ad>(&cfg, &RunOptions::default(), &dev).unwrap();
    let disc = seeded::<Ad, _>(&dev, 3, || cfg.discriminator.init::<Ad>(&dev).unwrap());
    let mut t = LosatokTrainer::<Ad>::new(model, disc, &cfg);
    let (rows, n) = (1, 10_240);
    let good = batch(rows, n);
    let nan = poisoned(&good, f32::NAN);

    assert!(!t.train_step(&good, rows, n, 0, &mut Local).unwrap().skipped);
    let (g, d) = (param_tensors(&t.model), param_tensors(&t.disc));
    let s = t.train_step(&nan, rows, n, 0, &mut Local).unwrap();
    assert!(s.skipped && !s.losses.mel.is_finite(), "{s:?}");
    assert_eq!(
        param_tensors(&t.model),
        g,
        "a skipped step changed the generator"
    );
    assert_eq!(
        param_tensors(&t.disc),
        d,
        "a skipped step changed the discriminator"
    );
    assert_eq!((t.faults.consecutive, t.faults.total, t.step), (1, 1, 2));

    let s = t.train_step(&good, rows, n, 0, &mut Local).unwrap();
    assert!(!s.skipped && s.losses.mel.is_finite());
    assert_ne!(param_tensors(&t.model), g);
    assert_eq!(t.faults.consecutive, 0);

    assert!(t.train_step(&nan, rows, n, 0, &mut Local).unwrap().skipped);
    let e = t
        .train_step(&poisoned(&good, f32::NEG_INFINITY), rows, n, 0, &mut Local)
        .unwrap_err();
    assert_diverged(e, 2);
    assert_eq!(t.faults.total, 3);
}

fn dataset(dir: &Path) -> PathBuf {
    synthesize_dataset(&dir.join("data"), 2.0, 5).expect("synthetic data")
}

/// A learning rate that blows the weights up: every step after the first is non-finite, and
/// the run stops with the divergence error after `max_bad_steps`, having saved no checkpoint
/// past the last good step.
#[test]
fn a_diverging_run_stops_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = stage1_config(&dataset(tmp.path()), 50, 0, 1);
    cfg.optim.lr = 1e30;
    cfg.optim.warmup_steps = 0;
    cfg.optim.grad_clip = None;
    cfg.run.max_bad_steps = 4;
    cfg.run.batch_size = 2;
    cfg.run.checkpoint_every = 1;
    let opts = RunOptions {
        run_dir: tmp.path().join("run"),
        ..RunOptions::default()
    };
    let e = train_stage1::<Ad, _>(&cfg, &opts, &Default::default(), &mut Local).unwrap_err();
    assert_diverged(e, 4);
    assert!(!tmp.path().join("run/semantic_encoder.safetensors").exists());
}

fn flip_a_byte(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

/// A damaged newest checkpoint: loading it directly fails with a message naming the file;
/// `resume` skips it and continues from the newest intact one, to the uninterrupted result.
#[test]
fn resume_skips_a_damaged_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = dataset(tmp.path());
    let mut cfg = stage1_config(&manifest, 8, 3, 1);
    cfg.run.batch_size = 2;
    cfg.run.checkpoint_every = 2;
    cfg.run.keep_checkpoints = 3;
    let dev = Default::default();
    let opts = |dir: &str, resume, stop| RunOptions {
        run_dir: tmp.path().join(dir),
        resume,
        stop_at: stop,
        ..RunOptions::default()
    };
    let whole = train_stage1::<Ad, _>(&cfg, &opts("whole", false, None), &dev, &mut Local).unwrap();
    train_stage1::<Ad, _>(&cfg, &opts("split", false, Some(6)), &dev, &mut Local).unwrap();
    let newest = tmp.path().join("split/checkpoints/step-000000006");
    flip_a_byte(&newest.join("sembo.bin"));
    let e = losatok_train::state::verify(&newest)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sembo.bin") && e.contains("damaged"), "{e}");

    let resumed =
        train_stage1::<Ad, _>(&cfg, &opts("split", true, None), &dev, &mut Local).unwrap();
    assert_eq!(resumed.resumed_from, Some(4));
    assert_eq!(
        std::fs::read(whole.export.unwrap()).unwrap(),
        std::fs::read(resumed.export.unwrap()).unwrap()
    );

    // with every checkpoint damaged, resume refuses (rather than silently starting over)
    train_stage1::<Ad, _>(&cfg, &opts("bad", false, Some(2)), &dev, &mut Local).unwrap();
    flip_a_byte(&tmp.path().join("bad/checkpoints/step-000000002/opt.bin"));
    let e = train_stage1::<Ad, _>(&cfg, &opts("bad", true, None), &dev, &mut Local)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no intact checkpoint") && e.contains("opt.bin"),
        "{e}"
    );
}

/// Corrupt files in the manifest are skipped and counted; the run finishes.
#[test]
fn a_run_skips_corrupt_data_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let manifest = dataset(d);
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    for (i, bytes) in [
        b"not audio at all".to_vec(),
        Vec::new(),
        b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec(),
    ]
    .iter()
    .enumerate()
    {
        for k in 0..4 {
            let p = d.join(format!("corrupt{i}_{k}.wav"));
            std::fs::write(&p, bytes).unwrap();
            text.push_str(&format!(
                "{{\"path\": {:?}, \"domain\": \"speech\"}}\n",
                p.display().to_string()
            ));
        }
    }
    std::fs::write(&manifest, text).unwrap();
    let mut cfg = stage1_config(&manifest, 3, 0, 1);
    cfg.run.batch_size = 4;
    let opts = RunOptions {
        run_dir: d.join("run"),
        ..RunOptions::default()
    };
    let s = train_stage1::<Ad, _>(&cfg, &opts, &Default::default(), &mut Local).unwrap();
    assert_eq!(s.steps, 3);
    assert!(s.skipped_files > 0, "{s:?}");
    eprintln!("{} corrupt files skipped", s.skipped_files);
}
