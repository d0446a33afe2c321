//! `losatok demo`: the whole training recipe in miniature, on the CPU, with nothing to download.
//!
//! 1. synthesise a small multi-domain training set (speech-like formant sweeps, harmonic music,
//!    noise events) and a held-back clip;
//! 2. stage 1: train a tiny SemBo on a tiny (random, frozen) MiDashengLM-shaped encoder;
//! 3. stage 2: train a tiny LoSATok generator and MFD discriminator on top of it;
//! 4. reconstruct the held-back clip before and after training, write the wavs, a
//!    before/after spectrogram image and the loss curves, and report the mel distance.
//!
//! The real runs use exactly the same code: only the sizes differ (see `configs/`).

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use losatok_models::discriminator::{DiscriminatorConfig, MfdConfig};

use crate::collective::Local;
use crate::config::{
    DataSection, ModelSpec, OptimConfig, RunSection, Stage1Config, Stage2Config, ValidationConfig,
};
use crate::data::{eval_clip, synthesize_dataset, DataConfig};
use crate::error::TrainError;
use crate::metrics::loss_curves_png;
use crate::run::{train_stage1, train_stage2, ProgressFn, RunOptions};

/// A named loss curve: (metric, [(step, value)]).
type Curve = (String, Vec<(u64, f64)>);

/// Settings of the demo.
#[derive(Clone)]
pub struct DemoOptions {
    /// Output folder.
    pub out_dir: PathBuf,
    /// Seconds of synthetic audio per domain.
    pub seconds_per_domain: f64,
    /// Stage-1 steps.
    pub stage1_steps: u64,
    /// Stage-2 steps.
    pub stage2_steps: u64,
    /// Seed of everything.
    pub seed: u64,
    /// Loader threads.
    pub workers: usize,
    /// Progress callback.
    pub progress: Option<ProgressFn>,
    /// Replace the output of an earlier demo in `out_dir` (only what that demo wrote; see
    /// [`losatok_fs::OwnedDir`]).
    pub replace: bool,
}

impl Default for DemoOptions {
    /// About two minutes on two CPU cores.
    fn default() -> Self {
        Self {
            out_dir: PathBuf::from("losatok-demo"),
            seconds_per_domain: 40.0,
            stage1_steps: 100,
            stage2_steps: 240,
            seed: 0,
            workers: 2,
            progress: None,
            replace: false,
        }
    }
}

/// What the demo produced.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoReport {
    /// Mel distance (`L_mel`) of the held-back clip before stage 2.
    pub mel_before: f64,
    /// And after.
    pub mel_after: f64,
    /// The files written.
    pub files: Vec<PathBuf>,
}

/// The demo's stage-1 configuration (tiny model, random frozen encoder, 1 s crops).
pub fn stage1_config(manifest: &Path, steps: u64, seed: u64, workers: usize) -> Stage1Config {
    Stage1Config {
        model: ModelSpec::preset("tiny"),
        semantic_encoder: "random".into(),
        lambda_recon: 1e3,
        optim: OptimConfig {
            lr: 2e-3,
            min_lr: 2e-4,
            warmup_steps: 10,
            ..OptimConfig::default()
        },
        data: data_section(manifest, 16_000, seed, workers),
        run: tiny_run(steps, 8, seed),
    }
}

/// The demo's stage-2 configuration: the paper's loss weights and hinge MFD, scaled down to run
/// on two CPU cores: a tiny model, three MFD branches (hops 64, 256, 1024) instead of six,
/// 0.64 s crops, and the adversarial terms from half-way (a mel-only warm-up as Vocos allows).
pub fn stage2_config(
    manifest: &Path,
    semantic: &Path,
    steps: u64,
    seed: u64,
    workers: usize,
) -> Stage2Config {
    let optim = OptimConfig {
        lr: 2e-3,
        min_lr: 2e-4,
        warmup_steps: 20,
        ..OptimConfig::default()
    };
    Stage2Config {
        model: ModelSpec::preset("tiny"),
        semantic_encoder: semantic.display().to_string(),
        discriminator: DiscriminatorConfig::Mfd(MfdConfig {
            hop_lengths: vec![64, 256, 1024],
            hidden_channels: vec![32; 3],
            ..MfdConfig::tiny_fixture()
        }),
        gan_start_step: steps / 2,
        optim_g: optim.clone(),
        optim_d: optim,
        data: data_section(manifest, DEMO_STAGE2_SEGMENT, seed, workers),
        run: tiny_run(steps, 4, seed),
        ..Stage2Config::paper()
    }
}

/// Stage-2 crop length of the demo: 0.64 s (16 latent frames, above the MFD's 0.512 s).
const DEMO_STAGE2_SEGMENT: usize = 10_240;

fn data_section(manifest: &Path, segment: usize, seed: u64, workers: usize) -> DataSection {
    DataSection {
        manifest: manifest.to_path_buf(),
        loader: DataConfig {
            segment_samples: segment,
            seed,
            workers,
            prefetch: 2,
            ..DataConfig::default()
        },
        // the demo holds back its own clip (stage 2 reconstructs it before and after)
        validation: ValidationConfig {
            clips: 0,
            ..ValidationConfig::default()
        },
    }
}

fn tiny_run(steps: u64, batch: usize, seed: u64) -> RunSection {
    RunSection {
        steps,
        batch_size: batch,
        grad_accum: 1,
        seed,
        log_every: 5,
        checkpoint_every: steps,
        keep_checkpoints: 1,
        sample_every: steps,
        max_bad_steps: 20,
        watchdog: Default::default(),
    }
}

/// Everything the demo writes in its folder.
const DEMO_ENTRIES: [&str; 8] = [
    "data",
    "stage1",
    "stage2",
    "reference.wav",
    "reconstruction_before.wav",
    "reconstruction_after.wav",
    "spectrograms.png",
    "loss_curves.png",
];

/// Run the demo on backend `B` (see the module documentation). The output folder must be new,
/// empty, or hold an earlier demo and `opts.replace` be set; folders with anything else in them
/// are refused, and so are the current folder, the home folder and the root.
pub fn run_demo<B: AutodiffBackend>(
    opts: &DemoOptions,
    device: &B::Device,
) -> Result<DemoReport, TrainError> {
    let out = &opts.out_dir;
    // a folder of our own: new, empty, or an earlier demo's (whose entries alone are replaced)
    let mut owned = losatok_fs::OwnedDir::prepare(out, "demo", opts.replace)?;
    for name in DEMO_ENTRIES {
        owned.claim(name)?;
    }
    let manifest = synthesize_dataset(&out.join("data"), opts.seconds_per_domain, opts.seed)?;
    let clip = eval_clip(4.0, opts.seed);

    let s1_dir = out.join("stage1");
    let s1 = stage1_config(&manifest, opts.stage1_steps, opts.seed, opts.workers);
    let run1 = train_stage1::<B, _>(
        &s1,
        &RunOptions {
            run_dir: s1_dir.clone(),
            config_dir: PathBuf::new(),
            progress: opts.progress.clone(),
            ..RunOptions::default()
        },
        device,
        &mut Local,
    )?;
    let semantic = run1
        .export
        .ok_or_else(|| TrainError::Invalid("stage 1 did not finish".into()))?;

    let s2_dir = out.join("stage2");
    let s2 = stage2_config(
        &manifest,
        &semantic,
        opts.stage2_steps,
        opts.seed,
        opts.workers,
    );
    let run2 = train_stage2::<B, _>(
        &s2,
        &RunOptions {
            run_dir: s2_dir.clone(),
            config_dir: PathBuf::new(),
            progress: opts.progress.clone(),
            ..RunOptions::default()
        },
        device,
        &mut Local,
        Some(&clip),
    )?;
    let eval = run2
        .eval
        .ok_or_else(|| TrainError::Invalid("stage 2 did not evaluate".into()))?;

    let mut files = Vec::new();
    let wav = |name: &str, samples: &[f32], files: &mut Vec<PathBuf>| -> Result<(), TrainError> {
        let path = out.join(name);
        losatok_audio::write_wav(&path, samples, 16_000, losatok_audio::WavFormat::Float32)
            .map_err(|e| TrainError::State {
                path: path.clone(),
                message: e.to_string(),
            })?;
        files.push(path);
        Ok(())
    };
    wav("reference.wav", &clip, &mut files)?;
    wav("reconstruction_before.wav", &eval.audio_before, &mut files)?;
    wav("reconstruction_after.wav", &eval.audio_after, &mut files)?;

    // the before/after spectrogram of the last sample step, copied to the top level
    let spec = s2_dir
        .join("samples")
        .join(format!("eval_clip0_spectrogram_{}.png", opts.stage2_steps));
    if spec.exists() {
        let dest = out.join("spectrograms.png");
        let png = std::fs::read(&spec).map_err(|e| TrainError::State {
            path: spec.clone(),
            message: e.to_string(),
        })?;
        crate::state::write_atomic(&dest, &png)?;
        files.push(dest);
    }

    // loss curves of both stages
    let series = |dir: &Path, keys: &[&str]| -> Result<Vec<Curve>, TrainError> {
        let path = dir.join(crate::metrics::METRICS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let records: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Ok(keys
            .iter()
            .map(|k| {
                let pts = records
                    .iter()
                    .filter_map(|r| Some((r.get("step")?.as_u64()?, r.get(*k)?.as_f64()?)))
                    .collect();
                (k.to_string(), pts)
            })
            .collect())
    };
    let mut curves = series(&s1_dir, &["stage1/loss"])?;
    curves.extend(series(
        &s2_dir,
        &["stage2/mel", "stage2/semantic", "stage2/loss_d"],
    )?);
    let refs: Vec<(&str, &[(u64, f64)])> = curves
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let png = loss_curves_png(&refs, 960, 540, true)?;
    let path = out.join("loss_curves.png");
    crate::state::write_atomic(&path, &png)?;
    files.push(path);
    if let Some(export) = run2.export {
        files.push(export);
    }
    Ok(DemoReport {
        mel_before: eval.mel_before,
        mel_after: eval.mel_after,
        files,
    })
}
