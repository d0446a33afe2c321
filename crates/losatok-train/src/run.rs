//! The two training runs, end to end: build or load the models, read the data, train, log,
//! checkpoint, resume, and export the result in the layout inference loads.
//!
//! Every run folder holds `config.yml` (the resolved training config), `model.yml` (the model
//! config, official layout), `metrics.jsonl`, TensorBoard event files, `samples/`,
//! `checkpoints/step-*/` and, at the end, the export (`semantic_encoder.safetensors` for
//! stage 1, `losatok.safetensors` for stage 2). Only rank 0 writes; every rank resumes from the
//! same checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use losatok_dsp::LogMagnitudeMelConfig;
use losatok_models::checkpoint::{
    export_safetensors, export_semantic_safetensors, load_losatok, load_semantic_encoder,
    open_losatok_checkpoint, open_semantic_source,
};
use losatok_models::dasheng::DashengEncoder;
use losatok_models::sembo::SemBo;
use losatok_models::{Losatok, LosatokConfig, SemanticEncoder};

use crate::collective::Collective;
use crate::config::{to_yaml, Stage1Config, Stage2Config};
use crate::data::{read_manifest, Loader};
use crate::error::TrainError;
use crate::metrics::{before_after_png, RunLogger, Spectrogram, SpectrogramStyle};
use crate::stage1::{SemboTrainer, Stage1Stats};
use crate::stage2::{LosatokTrainer, Stage2Stats};
use crate::state::{self, Checkpoints};

/// Where a run is (for progress bars).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainProgress {
    /// 1 or 2.
    pub stage: u8,
    /// Steps done.
    pub step: u64,
    /// Steps in the run.
    pub total: u64,
    /// The main loss of the last step.
    pub loss: f64,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(TrainProgress) + Send + Sync>;

/// How to run.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Folder that relative paths of the config are resolved against.
    pub config_dir: PathBuf,
    /// Continue from the run folder's latest checkpoint.
    pub resume: bool,
    /// Stop after this many steps in total, as if interrupted (tests; the step loop otherwise
    /// runs to `run.steps`).
    pub stop_at: Option<u64>,
    /// Called after every step.
    pub progress: Option<ProgressFn>,
}

/// The end of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    /// Steps done.
    pub steps: u64,
    /// Where the trained weights were exported (rank 0, finished runs).
    pub export: Option<PathBuf>,
    /// The step resumed from, if any.
    pub resumed_from: Option<u64>,
    /// Data files that could not be read.
    pub skipped_files: usize,
    /// Stage 2 with an evaluation clip: the clip before and after this run's steps.
    pub eval: Option<EvalReport>,
}

/// The evaluation clip at the start and at the end of a stage-2 run.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalReport {
    /// `L_mel` between the clip and its reconstruction at the start.
    pub mel_before: f64,
    /// The same at the end.
    pub mel_after: f64,
    /// The reconstruction at the start.
    pub audio_before: Vec<f32>,
    /// The reconstruction at the end.
    pub audio_after: Vec<f32>,
}

/// Burn's RNG is process-wide: seeding and building a module happen under one lock so that
/// concurrent runs in one process (tests) cannot interleave their draws.
static INIT: Mutex<()> = Mutex::new(());

/// Touch every parameter so it is initialised now, under the seed, and not lazily later.
fn materialize<B: Backend, M: Module<B>>(module: &M) {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let _ = p.val();
        }
    }
    module.visit(&mut Touch);
}

/// Seed Burn's (process-wide) RNG and build a module under a lock, initialising every
/// parameter at once: the same seed gives the same weights even when other threads of the
/// process build models at the same time, as long as they build through this function too.
pub fn seeded<B: Backend, M: Module<B>>(
    device: &B::Device,
    seed: u64,
    build: impl FnOnce() -> M,
) -> M {
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    B::seed(device, seed);
    let m = build();
    materialize(&m);
    m
}

/// A random frozen encoder for tests and the demo: seeded weights, BatchNorm statistics set to
/// typical dB-mel values (mean −40 dB, standard deviation 25 dB) so its inputs are normalised.
fn random_semantic<B: Backend>(
    cfg: &LosatokConfig,
    seed: u64,
    device: &B::Device,
) -> SemanticEncoder<B> {
    let mut sem = seeded(device, seed ^ 0x5e3a, || SemanticEncoder {
        encoder: cfg.audio_encoder.init::<B>(device),
        bottleneck: SemBo::new(
            cfg.tokenizer.embed_dim,
            cfg.sembo_hidden_dim,
            cfg.tokenizer.decoder_dim,
            device,
        ),
    });
    let n = cfg.audio_encoder.n_mels;
    sem.encoder.init_bn.running_mean = Param::from_tensor(Tensor::full([n], -40.0, device));
    sem.encoder.init_bn.running_var = Param::from_tensor(Tensor::full([n], 625.0, device));
    sem
}

/// The frozen semantic encoder named by a config (`random`, or a checkpoint path).
fn semantic_encoder<B: Backend>(
    spec: &str,
    model: &LosatokConfig,
    with_bottleneck: bool,
    opts: &RunOptions,
    seed: u64,
    device: &B::Device,
) -> Result<(SemanticEncoder<B>, LosatokConfig), TrainError> {
    if spec == "random" {
        return Ok((random_semantic(model, seed, device), model.clone()));
    }
    let path = opts.config_dir.join(spec);
    let source = open_semantic_source(&path)?;
    Ok(load_semantic_encoder::<B>(
        model,
        &source,
        with_bottleneck,
        &path,
        device,
    )?)
}

fn loader_for(
    data: &crate::config::DataSection,
    opts: &RunOptions,
    rank: usize,
    world: usize,
    per_rank: usize,
) -> Result<Loader, TrainError> {
    let manifest = opts.config_dir.join(&data.manifest);
    let entries = read_manifest(&manifest)?;
    Loader::new(entries, &data.loader, rank, world, per_rank).map_err(|e| match e {
        // name the manifest: "no usable audio: data/train.jsonl: the manifest has 0 entries"
        crate::data::DataError::NoData(m) => {
            crate::data::DataError::NoData(format!("{}: {m}", manifest.display())).into()
        }
        e => e.into(),
    })
}

fn write_run_configs<T: serde::Serialize>(
    run_dir: &Path,
    train: &T,
    model: &LosatokConfig,
) -> Result<(), TrainError> {
    state::write_atomic(&run_dir.join("config.yml"), to_yaml(train).as_bytes())?;
    let mut m = model.clone();
    m.semantic_encoder_path = None;
    state::write_atomic(&run_dir.join("model.yml"), m.to_yaml_string().as_bytes())
}

/// The checkpoint to continue from. A fresh run refuses a folder that already holds a run, so
/// nothing of it is overwritten or mixed (rank 0 decides: the other ranks could otherwise see
/// the config rank 0 has just written).
fn resume_point(
    ckpts: &Checkpoints,
    opts: &RunOptions,
    rank0: bool,
) -> Result<Option<(u64, PathBuf)>, TrainError> {
    if opts.resume {
        // the newest checkpoint that is intact (a damaged one is reported and skipped)
        let all = ckpts.list()?;
        let mut damaged = Vec::new();
        for (step, dir) in all.iter().rev() {
            match state::verify(dir) {
                Ok(()) => {
                    for e in &damaged {
                        tracing::warn!("skipping damaged checkpoint: {e}");
                    }
                    return Ok(Some((*step, dir.clone())));
                }
                Err(e) => damaged.push(e.to_string()),
            }
        }
        if let Some(first) = damaged.first() {
            return Err(TrainError::Invalid(format!(
                "no intact checkpoint to resume from in {} ({first})",
                opts.run_dir.display()
            )));
        }
        return Ok(None);
    }
    if rank0 && (opts.run_dir.join("config.yml").exists() || ckpts.latest()?.is_some()) {
        return Err(TrainError::Invalid(format!(
            "{} already holds a training run; pass --resume to continue it, or choose another run folder",
            opts.run_dir.display()
        )));
    }
    Ok(None)
}

/// Create the run folder, open its checkpoints and find the one to resume from.
fn open_run(
    opts: &RunOptions,
    keep: usize,
    rank0: bool,
) -> Result<(Checkpoints, Option<(u64, PathBuf)>), TrainError> {
    std::fs::create_dir_all(&opts.run_dir).map_err(|e| TrainError::State {
        path: opts.run_dir.clone(),
        message: e.to_string(),
    })?;
    let ckpts = Checkpoints::open(&opts.run_dir, keep)?;
    let resumed = resume_point(&ckpts, opts, rank0)?;
    Ok((ckpts, resumed))
}

/// The start of a data-parallel run, once every rank has set itself up (and rank 0 has written
/// the run's config and opened its logs). A failure on any rank stops every rank here, instead
/// of leaving the others waiting in the first gradient all-reduce; and every rank must resume
/// from the checkpoint rank 0 resumes from (the run folder must be on a filesystem all ranks
/// share).
fn agree_on_start<T, B: Backend, C: Collective<B>>(
    collective: &mut C,
    setup: Result<(T, Option<u64>), TrainError>,
) -> Result<T, TrainError> {
    let rank = collective.rank();
    let step = setup.as_ref().ok().and_then(|(_, s)| *s);
    let mut agreed = [
        setup.is_err() as u8 as f64,
        match (rank, step) {
            (0, Some(s)) => s as f64 + 1.0,
            _ => 0.0,
        },
    ];
    collective.all_reduce_sum_host(&mut agreed)?;
    let (value, _) = setup?;
    if agreed[0] > 0.0 {
        return Err(TrainError::Invalid(format!(
            "rank {rank} stops: {} other rank(s) failed to start (see their errors)",
            agreed[0] as u64
        )));
    }
    let rank0_step = (agreed[1] > 0.0).then(|| agreed[1] as u64 - 1);
    if step != rank0_step {
        let show = |s: Option<u64>| s.map_or("a fresh start".to_string(), |s| format!("step {s}"));
        return Err(TrainError::Invalid(format!(
            "rank {rank} would resume from {}, rank 0 from {}: every rank must see the same run folder (a shared filesystem)",
            show(step),
            show(rank0_step)
        )));
    }
    Ok(value)
}

/// Stage 1: train SemBo; export `semantic_encoder.safetensors` (the encoder and SemBo, in the
/// layout of `semantic_encoder.pth`).
pub fn train_stage1<B, C>(
    cfg: &Stage1Config,
    opts: &RunOptions,
    device: &B::Device,
    collective: &mut C,
) -> Result<RunSummary, TrainError>
where
    B: AutodiffBackend,
    C: Collective<B::InnerBackend>,
{
    let rank = collective.rank();
    let rank0 = rank == 0;
    let world = collective.world_size();
    let setup = (|| {
        let model_cfg = cfg.model.resolve(&opts.config_dir)?;
        let (sem, model_cfg) = semantic_encoder::<B::InnerBackend>(
            &cfg.semantic_encoder,
            &model_cfg,
            false,
            opts,
            cfg.run.seed,
            device,
        )?;
        let encoder: DashengEncoder<B::InnerBackend> = sem.encoder;
        let sembo = seeded::<B, _>(device, cfg.run.seed, || {
            SemBo::new(
                model_cfg.tokenizer.embed_dim,
                model_cfg.sembo_hidden_dim,
                model_cfg.tokenizer.decoder_dim,
                device,
            )
        });
        let micro = cfg.run.micro_batch(world).map_err(TrainError::Invalid)?;
        let per_rank = micro * cfg.run.grad_accum;
        let mut trainer = SemboTrainer::<B>::new(encoder, sembo, cfg);
        let (ckpts, resumed) = open_run(opts, cfg.run.keep_checkpoints, rank0)?;
        if let Some((step, dir)) = &resumed {
            trainer = trainer.load(dir)?;
            tracing::info!("resumed stage 1 from step {step}");
        } else if rank0 {
            write_run_configs(&opts.run_dir, &cfg.resolved(&opts.config_dir), &model_cfg)?;
        }
        let resumed = resumed.map(|r| r.0);
        let logger = match rank0 {
            true => Some(RunLogger::open(&opts.run_dir, resumed)?),
            false => None,
        };
        let mut loader = loader_for(&cfg.data, opts, rank, world, per_rank)?;
        loader.prefetch_from(trainer.step);
        Ok(((trainer, ckpts, logger, loader), resumed))
    })();
    let resumed = setup.as_ref().ok().and_then(|(_, r)| *r);
    let (mut trainer, ckpts, mut logger, mut loader) = agree_on_start(collective, setup)?;
    let samples = cfg.data.loader.segment_samples;
    let end = opts.stop_at.unwrap_or(cfg.run.steps).min(cfg.run.steps);
    let t0 = Instant::now();
    let mut last: Stage1Stats;
    while trainer.step < end {
        let step = trainer.step;
        let batch = loader.batch(step)?;
        last = trainer.train_step(&batch.audio, batch.batch, samples, collective)?;
        let done = trainer.step;
        if let Some(p) = &opts.progress {
            p(TrainProgress {
                stage: 1,
                step: done,
                total: cfg.run.steps,
                loss: last.loss,
            });
        }
        if let Some(log) = logger.as_mut() {
            if done.is_multiple_of(cfg.run.log_every) || done == cfg.run.steps {
                let rate = (cfg.run.batch_size as f64 * (done - step) as f64)
                    / t0.elapsed().as_secs_f64().max(1e-9);
                log.log_scalars(
                    done,
                    &[
                        ("stage1/loss", last.loss),
                        ("stage1/recon", last.recon),
                        ("stage1/tr", last.tr),
                        ("stage1/grad_norm", last.grad_norm),
                        ("stage1/lr", last.lr),
                        ("stage1/skipped", last.skipped as u8 as f64),
                        ("stage1/clips_per_second", rate),
                    ],
                )?;
            }
            if done.is_multiple_of(cfg.run.checkpoint_every) || done == cfg.run.steps {
                ckpts.save(done, |dir| trainer.save(dir))?;
                log.flush()?;
            }
        }
    }
    let mut export = None;
    if rank0 && trainer.step >= cfg.run.steps {
        let path = opts.run_dir.join("semantic_encoder.safetensors");
        let sem = SemanticEncoder {
            encoder: trainer.encoder.clone(),
            bottleneck: trainer.sembo.valid(),
        };
        export_semantic_safetensors(&sem, &path, &export_metadata(1, trainer.step))?;
        export = Some(path);
    }
    Ok(RunSummary {
        steps: trainer.step,
        export,
        resumed_from: resumed,
        skipped_files: loader.skipped().broken_files,
        eval: None,
    })
}

/// Metadata of exported weights: producer, stage and step.
pub fn export_metadata(stage: u8, step: u64) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "producer".to_string(),
            format!("losatok-rs {}", env!("CARGO_PKG_VERSION")),
        ),
        ("stage".to_string(), stage.to_string()),
        ("step".to_string(), step.to_string()),
    ])
}

/// The stage-2 model: from `init_from` (fine-tuning), or fresh trainable parts with the
/// semantic encoder of `cfg.semantic_encoder`.
pub fn stage2_model<B: Backend>(
    cfg: &Stage2Config,
    opts: &RunOptions,
    device: &B::Device,
) -> Result<(Losatok<B>, LosatokConfig), TrainError> {
    let model_cfg = cfg.model.resolve(&opts.config_dir)?;
    if let Some(init) = &cfg.init_from {
        let path = opts.config_dir.join(init);
        let source = open_losatok_checkpoint(&path, &model_cfg)?;
        let (model, model_cfg, _) = load_losatok::<B>(&model_cfg, &source, &path, device)?;
        return Ok((model, model_cfg));
    }
    let (sem, model_cfg) = semantic_encoder::<B>(
        &cfg.semantic_encoder,
        &model_cfg,
        true,
        opts,
        cfg.run.seed,
        device,
    )?;
    let mut model = seeded(device, cfg.run.seed, || model_cfg.init::<B>(device));
    model.semantic_encoder = sem;
    Ok((model, model_cfg))
}

/// dB log-mel of a clip for the sample images, `[n_mels, frames]`.
fn log_mel_db(wav: &[f32]) -> (Vec<f32>, usize, usize) {
    let device = Default::default();
    let front = LogMagnitudeMelConfig::vocos().init::<burn::backend::Flex>(&device);
    let x = Tensor::from_data(TensorData::new(wav.to_vec(), [1, wav.len()]), &device);
    let [_, m, f] = {
        let t = front.forward(x.clone());
        t.dims()
    };
    // natural-log magnitude → dB of power: 20·log10(e)·ln
    let v: Vec<f32> = front
        .forward(x)
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("float")
        .into_iter()
        .map(|l| l * 20.0 / std::f32::consts::LN_10)
        .collect();
    (v, m, f)
}

/// Write the sample images and audio of a stage-2 evaluation.
fn log_samples<B: AutodiffBackend>(
    log: &mut RunLogger,
    trainer: &LosatokTrainer<B>,
    clip: &[f32],
    before: &[f32],
    step: u64,
) -> Result<Vec<f32>, TrainError> {
    let after = trainer.reconstruct(clip);
    log.log_audio("eval/reconstruction", step, &after, 16_000)?;
    let (r, m, f) = log_mel_db(clip);
    let (b, _, fb) = log_mel_db(before);
    let (a, _, fa) = log_mel_db(&after);
    let frames = f.min(fb).min(fa);
    let crop = |v: &[f32], full: usize| -> Vec<f32> {
        (0..m)
            .flat_map(|i| v[i * full..i * full + frames].to_vec())
            .collect()
    };
    let (r, b, a) = (crop(&r, f), crop(&b, fb), crop(&a, fa));
    let png = before_after_png(
        Spectrogram::new(&r, m, frames)?,
        Spectrogram::new(&b, m, frames)?,
        Spectrogram::new(&a, m, frames)?,
        &SpectrogramStyle::default(),
    )?;
    log.log_spectrogram("eval/spectrogram", step, &png)?;
    Ok(after)
}

/// Stage 2: train the LoSATok generator and discriminator; export `losatok.safetensors` (the
/// whole model in the reference's layout, loadable by `losatok reconstruct --checkpoint`).
/// `eval_clip` (16 kHz) is reconstructed at every sample step.
pub fn train_stage2<B, C>(
    cfg: &Stage2Config,
    opts: &RunOptions,
    device: &B::Device,
    collective: &mut C,
    eval_clip: Option<&[f32]>,
) -> Result<RunSummary, TrainError>
where
    B: AutodiffBackend,
    C: Collective<B::InnerBackend>,
{
    let rank = collective.rank();
    let rank0 = rank == 0;
    let world = collective.world_size();
    let micro = cfg.run.micro_batch(world);
    let per_rank = micro.as_ref().map_or(1, |m| m * cfg.run.grad_accum);
    let setup = (|| {
        let (model, model_cfg) = stage2_model::<B>(cfg, opts, device)?;
        cfg.discriminator
            .validate()
            .map_err(|e| TrainError::Invalid(format!("discriminator: {e}")))?;
        let disc = seeded(device, cfg.run.seed ^ 0xd15c, || {
            cfg.discriminator
                .init::<B>(device)
                .expect("validated discriminator config")
        });
        micro.clone().map_err(TrainError::Invalid)?;
        let mut trainer = LosatokTrainer::<B>::new(model, disc, cfg);
        let (ckpts, resumed) = open_run(opts, cfg.run.keep_checkpoints, rank0)?;
        if let Some((step, dir)) = &resumed {
            trainer = trainer.load(dir)?;
            tracing::info!("resumed stage 2 from step {step}");
        } else if rank0 {
            write_run_configs(&opts.run_dir, &cfg.resolved(&opts.config_dir), &model_cfg)?;
        }
        let resumed = resumed.map(|r| r.0);
        let logger = match rank0 {
            true => Some(RunLogger::open(&opts.run_dir, resumed)?),
            false => None,
        };
        let mut loader = loader_for(&cfg.data, opts, rank, world, per_rank)?;
        loader.prefetch_from(trainer.step);
        Ok(((trainer, ckpts, logger, loader), resumed))
    })();
    let resumed = setup.as_ref().ok().and_then(|(_, r)| *r);
    let (mut trainer, ckpts, mut logger, mut loader) = agree_on_start(collective, setup)?;
    let samples = cfg.data.loader.segment_samples;
    let first_row = (rank * per_rank) as u64;
    let start_eval = eval_clip.map(|c| (trainer.reconstruct(c), trainer.mel_distance(c)));
    let mut before = start_eval.as_ref().map(|(a, _)| a.clone());
    let end = opts.stop_at.unwrap_or(cfg.run.steps).min(cfg.run.steps);
    let t0 = Instant::now();
    let start = trainer.step;
    while trainer.step < end {
        let step = trainer.step;
        let batch = loader.batch(step)?;
        let s: Stage2Stats =
            trainer.train_step(&batch.audio, batch.batch, samples, first_row, collective)?;
        let done = trainer.step;
        if let Some(p) = &opts.progress {
            p(TrainProgress {
                stage: 2,
                step: done,
                total: cfg.run.steps,
                loss: s.mel,
            });
        }
        let Some(log) = logger.as_mut() else { continue };
        if done.is_multiple_of(cfg.run.log_every) || done == cfg.run.steps {
            let rate = (cfg.run.batch_size as f64 * (done - start) as f64)
                / t0.elapsed().as_secs_f64().max(1e-9);
            log.log_scalars(
                done,
                &[
                    ("stage2/loss_g", s.loss_g),
                    ("stage2/mel", s.mel),
                    ("stage2/semantic", s.semantic),
                    ("stage2/kl", s.kl),
                    ("stage2/adv", s.adv),
                    ("stage2/fm", s.fm),
                    ("stage2/loss_d", s.loss_d),
                    ("stage2/grad_norm_g", s.grad_norm_g),
                    ("stage2/grad_norm_d", s.grad_norm_d),
                    ("stage2/lr", s.lr),
                    ("stage2/skipped", s.skipped as u8 as f64),
                    ("stage2/clips_per_second", rate),
                ],
            )?;
        }
        if let (Some(clip), true) = (
            eval_clip,
            cfg.run.sample_every > 0 && done.is_multiple_of(cfg.run.sample_every),
        ) {
            let prev = before.take().unwrap_or_else(|| clip.to_vec());
            before = Some(log_samples(log, &trainer, clip, &prev, done)?);
            log.log_scalars(done, &[("eval/mel_distance", trainer.mel_distance(clip))])?;
        }
        if done.is_multiple_of(cfg.run.checkpoint_every) || done == cfg.run.steps {
            ckpts.save(done, |dir| trainer.save(dir))?;
            log.flush()?;
        }
    }
    let mut export = None;
    if rank0 && trainer.step >= cfg.run.steps {
        let path = opts.run_dir.join("losatok.safetensors");
        export_safetensors(
            &trainer.model.valid(),
            &path,
            &export_metadata(2, trainer.step),
        )?;
        export = Some(path);
    }
    let eval = match (eval_clip, start_eval) {
        (Some(clip), Some((audio_before, mel_before))) => Some(EvalReport {
            mel_before,
            mel_after: trainer.mel_distance(clip),
            audio_before,
            audio_after: trainer.reconstruct(clip),
        }),
        _ => None,
    };
    Ok(RunSummary {
        steps: trainer.step,
        export,
        resumed_from: resumed,
        skipped_files: loader.skipped().broken_files,
        eval,
    })
}
