//! The trainer end to end on the tiny model: each stage overfits a fixed batch, frozen parts
//! stay bit-identical, an interrupted-and-resumed run is bit-identical to an uninterrupted
//! one, the shipped configs parse, and the stage-2 export loads back as the same model.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use losatok_models::checkpoint::{load_losatok, open_losatok_checkpoint};
use losatok_models::discriminator::{DiscriminatorConfig, MfdConfig};
use losatok_models::{LosatokConfig, Sampling};
use losatok_train::collective::Local;
use losatok_train::data::{eval_clip, synth_clip, synthesize_dataset, SynthKind};
use losatok_train::demo::{stage1_config, stage2_config};
use losatok_train::run::{seeded, stage2_model};
use losatok_train::stage1::SemboTrainer;
use losatok_train::stage2::LosatokTrainer;
use losatok_train::{train_stage1, train_stage2, RunOptions, Stage1Config, Stage2Config};

mod common;
use common::named_params;

type Ad = Autodiff<Flex>;

/// Stage-1 loss on a fixed batch must fall at least this much in 60 steps (measured ~40×).
const STAGE1_OVERFIT_FACTOR: f64 = 5.0;
/// Stage-2 mel loss on a fixed batch must fall at least this much in 40 steps (measured ~2.4×).
const STAGE2_OVERFIT_FACTOR: f64 = 1.5;

fn dataset(dir: &Path) -> PathBuf {
    synthesize_dataset(&dir.join("data"), 3.0, 7).expect("synthetic data")
}

fn fixed_batch(n: usize, samples: usize) -> Vec<f32> {
    let kinds = [SynthKind::Speech, SynthKind::Music, SynthKind::General];
    (0..n)
        .flat_map(|i| synth_clip(kinds[i % 3], samples, 100 + i as u64))
        .collect()
}

#[test]
fn shipped_configs_parse_and_match_the_paper_presets() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let s1 = Stage1Config::from_file(&dir.join("sembo_8xh100.yml")).unwrap();
    let p1 = Stage1Config::paper();
    assert_eq!(
        (s1.lambda_recon, &s1.optim, s1.run.steps),
        (p1.lambda_recon, &p1.optim, p1.run.steps)
    );
    let s2 = Stage2Config::from_file(&dir.join("losatok_8xh100.yml")).unwrap();
    let p2 = Stage2Config::paper();
    assert_eq!(s2.weights, p2.weights);
    assert_eq!(s2.discriminator, p2.discriminator);
    assert_eq!(
        (s2.gan, &s2.mel, &s2.optim_g, &s2.optim_d),
        (p2.gan, &p2.mel, &p2.optim_g, &p2.optim_d)
    );
    assert_eq!((s2.run.steps, s2.run.batch_size), (1_000_000, 64));
    Stage1Config::from_file(&dir.join("sembo_tiny_cpu.yml")).unwrap();
    Stage2Config::from_file(&dir.join("losatok_tiny_cpu.yml")).unwrap();
    // unknown keys are errors that name the key
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yml");
    std::fs::write(&bad, "lambda_recon: 1\nlamda: 2\n").unwrap();
    let e = Stage1Config::from_file(&bad).unwrap_err().to_string();
    assert!(e.contains("lamda"), "{e}");
}

#[test]
fn stage1_overfits_a_fixed_batch_and_leaves_the_encoder_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Stage1Config {
        run: losatok_train::config::RunSection {
            steps: 60,
            ..stage1_config(&dataset(tmp.path()), 60, 0, 0).run
        },
        ..stage1_config(Path::new("unused"), 60, 0, 0)
    };
    let dev = Default::default();
    let model = LosatokConfig::tiny();
    // Burn's RNG is process-wide: build through the trainer's locked initialiser, so parallel
    // tests cannot disturb each other's seeded initialisation.
    let encoder = seeded::<Flex, _>(&dev, 1, || model.audio_encoder.init::<Flex>(&dev));
    let sembo = seeded::<Ad, _>(&dev, 2, || {
        losatok_models::sembo::SemBo::<Ad>::new(64, 32, 16, &dev)
    });
    let before = named_params(&encoder);
    let mut t = SemboTrainer::<Ad>::new(encoder, sembo, &cfg);
    let batch = fixed_batch(4, 16_000);
    let first = t.train_step(&batch, 4, 16_000, &mut Local).unwrap().loss;
    let mut last = first;
    for _ in 1..60 {
        last = t.train_step(&batch, 4, 16_000, &mut Local).unwrap().loss;
    }
    eprintln!("stage 1 loss {first} → {last}");
    assert!(last * STAGE1_OVERFIT_FACTOR < first, "{first} → {last}");
    assert_eq!(named_params(&t.encoder), before, "frozen encoder changed");
}

fn demo_stage2(manifest: &Path, steps: u64) -> Stage2Config {
    let mut cfg = stage2_config(manifest, Path::new("random"), steps, 0, 0);
    cfg.semantic_encoder = "random".into();
    cfg.discriminator = DiscriminatorConfig::Mfd(MfdConfig {
        hop_lengths: vec![64, 256, 1024],
        hidden_channels: vec![32; 3],
        ..MfdConfig::tiny_fixture()
    });
    cfg.run.batch_size = 2;
    cfg
}

#[test]
fn stage2_overfits_a_fixed_batch_and_leaves_the_frozen_parts_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = demo_stage2(&dataset(tmp.path()), 40);
    cfg.gan_start_step = 20;
    let dev = Default::default();
    let opts = RunOptions::default();
    let (model, _) = stage2_model::<Ad>(&cfg, &opts, &dev).unwrap();
    let frozen = named_params(&model.semantic_encoder);
    let disc = seeded::<Ad, _>(&dev, 3, || cfg.discriminator.init::<Ad>(&dev).unwrap());
    let disc_before = named_params(&disc);
    let mut t = LosatokTrainer::<Ad>::new(model, disc, &cfg);
    let batch = fixed_batch(2, 10_240);
    let first = t.train_step(&batch, 2, 10_240, 0, &mut Local).unwrap();
    let mut last = first;
    for _ in 1..40 {
        last = t.train_step(&batch, 2, 10_240, 0, &mut Local).unwrap();
        assert!(!last.skipped);
    }
    eprintln!(
        "stage 2 mel {} → {}, D loss {}",
        first.losses.mel, last.losses.mel, last.losses.d
    );
    assert!(
        last.losses.mel * STAGE2_OVERFIT_FACTOR < first.losses.mel,
        "{} → {}",
        first.losses.mel,
        last.losses.mel
    );
    assert!(
        last.losses.d > 0.0 && last.losses.adv > 0.0,
        "GAN terms active after step 20"
    );
    assert_eq!(
        named_params(&t.model.semantic_encoder),
        frozen,
        "frozen semantic encoder changed"
    );
    assert_ne!(
        named_params(&t.disc),
        disc_before,
        "discriminator did not train"
    );
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn stage1_resume_is_bit_identical_to_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = dataset(tmp.path());
    let mut cfg = stage1_config(&manifest, 8, 3, 1);
    cfg.run.checkpoint_every = 4;
    let dev = Default::default();
    let opts = |dir: &str, resume, stop| RunOptions {
        run_dir: tmp.path().join(dir),
        resume,
        stop_at: stop,
        ..RunOptions::default()
    };
    let whole = train_stage1::<Ad, _>(&cfg, &opts("whole", false, None), &dev, &mut Local).unwrap();
    let first =
        train_stage1::<Ad, _>(&cfg, &opts("split", false, Some(4)), &dev, &mut Local).unwrap();
    assert_eq!((first.steps, first.export), (4, None));
    let second = train_stage1::<Ad, _>(&cfg, &opts("split", true, None), &dev, &mut Local).unwrap();
    assert_eq!(second.resumed_from, Some(4));
    assert_eq!(
        read(&whole.export.unwrap()),
        read(&second.export.unwrap()),
        "exports differ"
    );
    // a fresh run into a used folder is refused
    let e = train_stage1::<Ad, _>(&cfg, &opts("whole", false, None), &dev, &mut Local).unwrap_err();
    assert!(
        matches!(e, losatok_train::TrainError::RunExists { step: 8, .. }),
        "{e}"
    );
}

#[test]
fn stage2_resume_is_bit_identical_and_the_export_reloads_as_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = dataset(tmp.path());
    let mut cfg = demo_stage2(&manifest, 6);
    cfg.gan_start_step = 2;
    cfg.run.checkpoint_every = 3;
    cfg.run.sample_every = 3;
    let dev = Default::default();
    let clip = eval_clip(1.0, 5);
    let opts = |dir: &str, resume, stop| RunOptions {
        run_dir: tmp.path().join(dir),
        resume,
        stop_at: stop,
        ..RunOptions::default()
    };
    let whole = train_stage2::<Ad, _>(
        &cfg,
        &opts("whole", false, None),
        &dev,
        &mut Local,
        Some(&clip),
    )
    .unwrap();
    train_stage2::<Ad, _>(&cfg, &opts("split", false, Some(3)), &dev, &mut Local, None).unwrap();
    let resumed =
        train_stage2::<Ad, _>(&cfg, &opts("split", true, None), &dev, &mut Local, None).unwrap();
    assert_eq!(resumed.resumed_from, Some(3));
    let export = whole.export.clone().unwrap();
    assert_eq!(
        read(&export),
        read(&resumed.export.unwrap()),
        "exports differ"
    );
    // the discriminators too (records carry random parameter ids: compare the values)
    let disc_at = |run: &str| {
        let d = seeded::<Ad, _>(&dev, 9, || cfg.discriminator.init::<Ad>(&dev).unwrap());
        let dir = tmp.path().join(run).join("checkpoints/step-000000006");
        named_params(&losatok_train::state::load_module(d, &dir, "disc", &dev).unwrap())
    };
    assert_eq!(disc_at("whole"), disc_at("split"), "discriminators differ");

    // the export, with the run's model.yml, is the trained model
    let model_cfg = LosatokConfig::from_file(tmp.path().join("whole/model.yml")).unwrap();
    let src = open_losatok_checkpoint(&export, &model_cfg).unwrap();
    let (model, _, _) = load_losatok::<Flex>(&model_cfg, &src, &export, &dev).unwrap();
    let x = Tensor::from_data(TensorData::new(clip.clone(), [1, clip.len()]), &dev);
    let f = model.encode(x, Sampling::Mean);
    let recon: Vec<f32> = model
        .decode(f.z)
        .into_data()
        .convert::<f32>()
        .into_vec()
        .unwrap();
    assert_eq!(recon, whole.eval.unwrap().audio_after);
    // and the samples and metrics were written
    let run = tmp.path().join("whole");
    assert!(run.join("samples/eval_clip0_spectrogram_3.png").exists());
    assert!(run.join("samples/eval_clip0_reconstruction_6.wav").exists());
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    // log_every 5 and 6 steps: training records at steps 5 and 6, evaluations at 3 and 6
    let steps: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at = |step: u64, key: &str| {
        steps
            .iter()
            .any(|r| r["step"] == step && r.get(key).is_some())
    };
    assert!(at(5, "stage2/mel") && at(6, "stage2/loss_d"), "{metrics}");
    assert!(
        at(3, "eval/mel_distance") && at(6, "eval/mel_distance"),
        "{metrics}"
    );
    assert!(std::fs::read_dir(&run).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("events.out.tfevents")));
}
