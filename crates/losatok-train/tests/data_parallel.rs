//! Data parallelism and accumulation preserve the global batch: N in-process ranks with batch b,
//! one rank with batch N·b, and one rank accumulating N micro-batches of b reach the same
//! parameters (within 1e-5) after several steps of either stage.

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use losatok_models::discriminator::{DiscriminatorConfig, MfdConfig};
use losatok_models::{Losatok, LosatokConfig};
use losatok_train::collective::{Collective, InProcess, Local};
use losatok_train::config::{OptimConfig, Stage1Config, Stage2Config};
use losatok_train::data::{synth_clip, SynthKind};
use losatok_train::demo::{stage1_config, stage2_config};
use losatok_train::run::seeded;
use losatok_train::stage1::SemboTrainer;
use losatok_train::stage2::LosatokTrainer;

mod common;
use common::param_values;

type Ad = Autodiff<Flex>;
type Inner = Flex;

/// The bound for N ranks × b vs one rank × N·b.
const TOL: f32 = 1e-5;
const STEPS: usize = 3;

/// AdamW with ε = 1: the first updates are ≈ lr·g (not lr·sign(g)), so float-rounding noise in
/// tiny gradients cannot flip their sign and the comparison measures the gradients themselves.
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

fn batch(rows: usize, samples: usize) -> Vec<f32> {
    let kinds = [SynthKind::Speech, SynthKind::Music, SynthKind::General];
    (0..rows)
        .flat_map(|i| synth_clip(kinds[i % 3], samples, 40 + i as u64))
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

fn stage2_cfg(accum: usize) -> Stage2Config {
    let mut c = stage2_config(Path::new("unused"), Path::new("random"), 10, 0, 0);
    c.semantic_encoder = "random".into();
    c.gan_start_step = 0;
    c.discriminator = DiscriminatorConfig::Mfd(MfdConfig {
        hop_lengths: vec![256, 1024],
        hidden_channels: vec![32; 2],
        ..MfdConfig::tiny_fixture()
    });
    c.optim_g = linear_adamw();
    c.optim_d = linear_adamw();
    c.run.batch_size = 4;
    c.run.grad_accum = accum;
    c
}

/// One training step of a trainer on a slice of rows starting at a global row.
type StepFn<'a> = dyn FnMut(&mut LosatokTrainer<Ad>, &[f32], u64) + 'a;

#[test]
fn stage2_ranks_accumulation_and_one_big_batch_agree() {
    let dev = Default::default();
    let cfg1 = stage2_cfg(1);
    let model_cfg = LosatokConfig::tiny();
    let model: Losatok<Ad> = seeded(&dev, 5, || model_cfg.init::<Ad>(&dev));
    let disc = seeded(&dev, 6, || cfg1.discriminator.init::<Ad>(&dev).unwrap());
    let (n, rows, samples) = (2usize, 4usize, 10_240usize);
    let data = batch(rows, samples);

    let run = |cfg: &Stage2Config, rows: std::ops::Range<usize>, c: &mut StepFn| {
        let mut t = LosatokTrainer::new(model.clone(), disc.clone(), cfg);
        for _ in 0..STEPS {
            c(
                &mut t,
                &data[rows.start * samples..rows.end * samples],
                rows.start as u64,
            );
        }
        (param_values(&t.model), param_values(&t.disc))
    };
    let big = run(&cfg1, 0..rows, &mut |t, x, first| {
        t.train_step(x, rows, samples, first, &mut Local).unwrap();
    });
    let cfg2 = stage2_cfg(2);
    let accum = run(&cfg2, 0..rows, &mut |t, x, first| {
        t.train_step(x, rows, samples, first, &mut Local).unwrap();
    });
    // two ranks, two rows each, in threads
    let ranks: Vec<_> = InProcess::group(n)
        .into_iter()
        .map(|mut c| {
            let (model, disc, cfg, data) =
                (model.clone(), disc.clone(), cfg1.clone(), data.clone());
            std::thread::spawn(move || {
                let r = <InProcess as Collective<Inner>>::rank(&c);
                let b = rows / n;
                let mut t = LosatokTrainer::<Ad>::new(model, disc, &cfg);
                for _ in 0..STEPS {
                    t.train_step(
                        &data[r * b * samples..(r + 1) * b * samples],
                        b,
                        samples,
                        (r * b) as u64,
                        &mut c,
                    )
                    .unwrap();
                }
                (param_values(&t.model), param_values(&t.disc))
            })
        })
        .collect();
    let ranks: Vec<_> = ranks.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(ranks[0], ranks[1], "ranks diverged");
    for (name, other) in [("2 ranks", &ranks[0]), ("accumulation", &accum)] {
        let (g, d) = (max_diff(&other.0, &big.0), max_diff(&other.1, &big.1));
        eprintln!("stage 2, {name} vs one batch: generator {g:.2e}, discriminator {d:.2e}");
        assert!(g <= TOL && d <= TOL, "{name}: {g} / {d}");
    }
    assert!(
        max_diff(&big.0, &param_values(&model)) > 1e-4,
        "the steps changed nothing"
    );
}

#[test]
fn stage1_ranks_accumulation_and_one_big_batch_agree() {
    let dev = Default::default();
    let mut cfg: Stage1Config = stage1_config(Path::new("unused"), 10, 0, 0);
    cfg.optim = linear_adamw();
    cfg.run.batch_size = 4;
    let mc = LosatokConfig::tiny();
    let encoder = seeded::<Inner, _>(&dev, 7, || mc.audio_encoder.init::<Inner>(&dev));
    let sembo = seeded::<Ad, _>(&dev, 8, || {
        losatok_models::sembo::SemBo::<Ad>::new(64, 32, 16, &dev)
    });
    let (n, rows, samples) = (2usize, 4usize, 16_000usize);
    let data = batch(rows, samples);
    let single = |accum: usize| {
        let mut c = cfg.clone();
        c.run.grad_accum = accum;
        let mut t = SemboTrainer::<Ad>::new(encoder.clone(), sembo.clone(), &c);
        for _ in 0..STEPS {
            t.train_step(&data, rows, samples, &mut Local).unwrap();
        }
        param_values(&t.sembo)
    };
    let big = single(1);
    let accum = single(2);
    let ranks: Vec<Vec<f32>> = InProcess::group(n)
        .into_iter()
        .map(|mut c| {
            let (encoder, sembo, cfg, data) =
                (encoder.clone(), sembo.clone(), cfg.clone(), data.clone());
            std::thread::spawn(move || {
                let r = <InProcess as Collective<Inner>>::rank(&c);
                let b = rows / n;
                let mut t = SemboTrainer::<Ad>::new(encoder, sembo, &cfg);
                for _ in 0..STEPS {
                    t.train_step(
                        &data[r * b * samples..(r + 1) * b * samples],
                        b,
                        samples,
                        &mut c,
                    )
                    .unwrap();
                }
                param_values(&t.sembo)
            })
        })
        // every rank must be running before any is joined
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(ranks[0], ranks[1], "ranks diverged");
    for (name, other) in [("2 ranks", &ranks[0]), ("accumulation", &accum)] {
        let d = max_diff(other, &big);
        eprintln!("stage 1, {name} vs one batch: {d:.2e}");
        assert!(d <= TOL, "{name}: {d}");
    }
}

/// The SemBo weights of a stage-1 export.
fn exported_sembo(path: &Path) -> Vec<f32> {
    let src = losatok_models::checkpoint::TensorSource::open(path, "").unwrap();
    let mut keys: Vec<String> = src
        .keys()
        .filter(|k| k.starts_with("bottleneck."))
        .map(str::to_string)
        .collect();
    keys.sort();
    assert!(!keys.is_empty());
    keys.iter().flat_map(|k| src.read_f32(k).unwrap()).collect()
}

#[test]
fn a_run_checkpointed_by_two_ranks_resumes_on_one_rank_with_the_same_result() {
    use losatok_train::data::synthesize_dataset;
    use losatok_train::{train_stage1, RunOptions};
    let tmp = tempfile::tempdir().unwrap();
    let manifest = synthesize_dataset(&tmp.path().join("data"), 8.0, 3).unwrap();
    let mut cfg = stage1_config(&manifest, 4, 0, 1);
    cfg.optim = linear_adamw();
    cfg.run.batch_size = 4;
    cfg.run.checkpoint_every = 2;
    cfg.run.keep_checkpoints = 2;
    let dev = Default::default();
    let opts = |dir: &str, resume: bool, stop_at: Option<u64>| RunOptions {
        run_dir: tmp.path().join(dir),
        config_dir: tmp.path().to_path_buf(),
        resume,
        stop_at,
        ..RunOptions::default()
    };

    // one rank, 4 steps
    let whole = train_stage1::<Ad, _>(&cfg, &opts("whole", false, None), &dev, &mut Local).unwrap();
    // two ranks for 2 steps (rank 0 writes the checkpoint), then one rank to the end: the
    // global batch is the same, so it is the same run
    let handles: Vec<_> = InProcess::group(2)
        .into_iter()
        .map(|mut c| {
            let (cfg, o) = (cfg.clone(), opts("split", false, Some(2)));
            std::thread::spawn(move || {
                train_stage1::<Ad, _>(&cfg, &o, &Default::default(), &mut c).map(|s| s.steps)
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap(), 2);
    }
    let split = train_stage1::<Ad, _>(&cfg, &opts("split", true, None), &dev, &mut Local).unwrap();
    assert_eq!(split.resumed_from, Some(2));
    let (a, b) = (
        exported_sembo(&whole.export.unwrap()),
        exported_sembo(&split.export.unwrap()),
    );
    let d = max_diff(&a, &b);
    eprintln!("2 ranks then 1 rank vs 1 rank throughout: {d:.2e}");
    assert!(d <= TOL, "{d}");
}

#[test]
fn a_rank_that_fails_to_start_stops_every_rank() {
    use losatok_train::data::synthesize_dataset;
    use losatok_train::{train_stage1, RunOptions};
    let tmp = tempfile::tempdir().unwrap();
    let good = synthesize_dataset(&tmp.path().join("data"), 4.0, 3).unwrap();
    // rank 1 gets a manifest that does not exist; rank 0 must not wait for it for ever
    let handles: Vec<_> = InProcess::group(2)
        .into_iter()
        .map(|mut c| {
            let r = <InProcess as Collective<Inner>>::rank(&c);
            let manifest = match r {
                0 => good.clone(),
                _ => tmp.path().join("missing.jsonl"),
            };
            let cfg = stage1_config(&manifest, 2, 0, 1);
            let o = RunOptions {
                run_dir: tmp.path().join("run"),
                config_dir: tmp.path().to_path_buf(),
                ..RunOptions::default()
            };
            std::thread::spawn(move || {
                train_stage1::<Ad, _>(&cfg, &o, &Default::default(), &mut c)
                    .unwrap_err()
                    .to_string()
            })
        })
        .collect();
    let errors: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(errors[1].contains("missing.jsonl"), "{}", errors[1]);
    assert!(
        errors[0].contains("rank 0 stops: 1 other rank(s) failed to start"),
        "{}",
        errors[0]
    );
}
