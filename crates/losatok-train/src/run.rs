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
use crate::config::{to_yaml, RunSection, Stage1Config, Stage2Config};
use crate::data::ManifestEntry;
use crate::data::{read_manifest, Batch, Loader};
use crate::error::TrainError;
use crate::metrics::{
    before_after_png, stacked_spectrograms_png, RunLogger, Spectrogram, SpectrogramStyle,
};
use crate::run_folder::{ConfigChange, RunFolder};
use crate::stage1::{SemboTrainer, Stage1Stats};
use crate::stage2::{LosatokTrainer, Stage2Stats};
use crate::watchdog::{HangHandler, Phase, Watchdog, Watched};

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
    /// On resume, accept a config that changes what fixes the run (model, batch, data, seed);
    /// the change is recorded in the run folder (see [`crate::run_folder`]).
    pub allow_config_change: bool,
    /// Stop after this many steps in total, as if interrupted (tests; the step loop otherwise
    /// runs to `run.steps`).
    pub stop_at: Option<u64>,
    /// Called after every step.
    pub progress: Option<ProgressFn>,
    /// What to do when a rank hangs (see [`crate::watchdog`]); `None`: no watchdog. The
    /// command line uses [`crate::watchdog::exit_on_hang`].
    pub on_hang: Option<HangHandler>,
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
    /// Config changes accepted on resume (`key old → new`).
    pub config_changes: Vec<String>,
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

/// The manifest's entries for training, and those held out as validation clips (evenly spaced
/// over the manifest; see [`crate::config::ValidationConfig`]). Every rank splits alike.
fn split_manifest(
    data: &crate::config::DataSection,
    opts: &RunOptions,
) -> Result<(Vec<ManifestEntry>, Vec<ManifestEntry>), TrainError> {
    let manifest = opts.config_dir.join(&data.manifest);
    let mut entries = read_manifest(&manifest)?;
    let n = data.validation.held_out(entries.len());
    let picks: Vec<usize> = (0..n)
        .map(|i| (2 * i + 1) * entries.len() / (2 * n))
        .collect();
    let mut held: Vec<ManifestEntry> = picks.iter().rev().map(|&i| entries.remove(i)).collect();
    held.reverse();
    Ok((entries, held))
}

fn loader_for(
    entries: Vec<ManifestEntry>,
    data: &crate::config::DataSection,
    opts: &RunOptions,
    rank: usize,
    world: usize,
    per_rank: usize,
) -> Result<Loader, TrainError> {
    Loader::new(entries, &data.loader, rank, world, per_rank).map_err(|e| match e {
        // name the manifest: "no usable audio: data/train.jsonl: the manifest has 0 entries"
        crate::data::DataError::NoData(m) => crate::data::DataError::NoData(format!(
            "{}: {m}",
            opts.config_dir.join(&data.manifest).display()
        ))
        .into(),
        e => e.into(),
    })
}

/// Shortest validation clip used (1 s: the mel loss and the discriminator need more than a
/// few frames).
const MIN_CLIP_SAMPLES: usize = 16_000;

/// The first `seconds` of each held-out file at 16 kHz, named `clip0`, `clip1`, …; files that
/// cannot be read or are shorter than a second are left out with a warning.
fn validation_clips(held: &[ManifestEntry], seconds: f64) -> Vec<(String, Vec<f32>)> {
    let want = (seconds * 16_000.0) as usize;
    let mut clips = Vec::new();
    for entry in held {
        let read = || -> Result<Vec<f32>, losatok_audio::AudioError> {
            let mut stream = losatok_audio::Mono16kStream::open(&entry.path)?;
            let mut clip = Vec::with_capacity(want);
            while clip.len() < want {
                match stream.next_block()? {
                    Some(block) => clip.extend(block),
                    None => break,
                }
            }
            clip.truncate(want);
            Ok(clip)
        };
        match read() {
            Ok(clip) if clip.len() >= MIN_CLIP_SAMPLES => {
                clips.push((format!("clip{}", clips.len()), clip));
            }
            Ok(clip) => tracing::warn!(
                "validation clip {} is too short ({} samples), not logged",
                entry.path.display(),
                clip.len()
            ),
            Err(e) => tracing::warn!("validation clip not logged: {e}"),
        }
    }
    clips
}

/// Clips per second over the steps since the previous report (the average since the start
/// would fall as 1/t after every pause: a checkpoint, a sample step, a resume).
struct Throughput {
    since: Instant,
    step: u64,
}

impl Throughput {
    fn new(step: u64) -> Self {
        Self {
            since: Instant::now(),
            step,
        }
    }

    /// Clips per second since the last call (or the start), then restart the window.
    fn rate(&mut self, step: u64, batch: usize) -> f64 {
        let secs = self.since.elapsed().as_secs_f64().max(1e-9);
        let rate = batch as f64 * step.saturating_sub(self.step) as f64 / secs;
        *self = Self::new(step);
        rate
    }
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
        let folder = RunFolder::open(&opts.run_dir, opts.resume, cfg.run.keep_checkpoints, rank0)?;
        if let Some((step, dir)) = &folder.resumed {
            trainer = trainer.load(dir)?;
            tracing::info!("resumed stage 1 from step {step}");
        }
        let resumed = folder.resumed_step();
        let run = RunStart {
            folder,
            resolved: to_yaml(&cfg.resolved(&opts.config_dir)),
            model: &model_cfg,
            data: &cfg.data,
            sample_every: cfg.run.sample_every,
            given_clip: None,
        };
        let (started, loader) = run.start(opts, rank, world, per_rank, trainer.step)?;
        Ok(((trainer, started, loader), resumed))
    })();
    let resumed = setup.as_ref().ok().and_then(|(_, r)| *r);
    let (mut trainer, mut started, mut loader) = agree_on_start(collective, setup)?;
    run_steps(
        &mut trainer,
        &cfg.run,
        opts,
        &mut loader,
        &mut started,
        collective,
    )?;
    let export = export_if_finished(&trainer, &cfg.run, opts, rank0)?;
    Ok(started.summary(trainer.step, export, resumed, &loader, None))
}

/// One optimiser step's report: the loss a progress bar shows and the scalars to log.
struct StepLog {
    loss: f64,
    scalars: Vec<(String, f64)>,
}

/// What differs between the two stages' runs; [`run_steps`] is the loop they share (data,
/// step, progress, logs, samples, checkpoints, the watchdog) and [`export_if_finished`] its end.
trait StageRun {
    /// 1 or 2.
    const STAGE: u8;
    /// The backend gradients are reduced on.
    type Inner: Backend;
    /// Optimiser steps done.
    fn steps_done(&self) -> u64;
    /// One optimiser step on this rank's batch.
    fn step_batch<C: Collective<Self::Inner>>(
        &mut self,
        batch: &Batch,
        collective: &mut C,
    ) -> Result<StepLog, TrainError>;
    /// Log the validation clips at a sample step (rank 0; `clips` is not empty).
    fn log_samples(
        &mut self,
        log: &mut RunLogger,
        clips: &[(String, Vec<f32>)],
        step: u64,
    ) -> Result<(), TrainError>;
    /// Write a checkpoint folder.
    fn checkpoint(&self, dir: &Path) -> Result<(), TrainError>;
    /// Export the trained model into the run folder, in the layout inference loads.
    fn export(&self, run_dir: &Path) -> Result<PathBuf, TrainError>;
}

/// The step loop of both stages, from the current step to `run.steps` (or `opts.stop_at`):
/// one batch and one step per iteration, then on rank 0 the scalars every `log_every` steps,
/// the validation samples every `sample_every` and a checkpoint every `checkpoint_every`. With
/// a hang handler in `opts` (and `run.watchdog.enabled`) a [`Watchdog`] follows every phase.
fn run_steps<C: Collective<S::Inner>, S: StageRun>(
    stage: &mut S,
    run: &RunSection,
    opts: &RunOptions,
    loader: &mut Loader,
    started: &mut Started,
    collective: &mut C,
) -> Result<(), TrainError> {
    let end = opts.stop_at.unwrap_or(run.steps).min(run.steps);
    let mut throughput = Throughput::new(stage.steps_done());
    let dog = match &opts.on_hang {
        Some(handler) if run.watchdog.enabled => Some(Watchdog::start(
            run.watchdog.clone(),
            collective.rank(),
            stage.steps_done(),
            Arc::clone(handler),
        )),
        _ => None,
    };
    let enter = |step: u64, phase: Phase| {
        if let Some(d) = &dog {
            d.enter(step, phase);
        }
    };
    while stage.steps_done() < end {
        let step = stage.steps_done();
        enter(step, Phase::Data);
        let batch = loader.batch(step)?;
        enter(step, Phase::Compute);
        let report = stage.step_batch(&batch, &mut Watched::new(collective, dog.as_ref(), step))?;
        if let Some(d) = &dog {
            d.step_done();
        }
        let done = stage.steps_done();
        if let Some(p) = &opts.progress {
            p(TrainProgress {
                stage: S::STAGE,
                step: done,
                total: run.steps,
                loss: report.loss,
            });
        }
        let Some(log) = started.logger.as_mut() else {
            continue;
        };
        if done.is_multiple_of(run.log_every) || done == run.steps {
            let rate = throughput.rate(done, run.batch_size);
            let mut scalars = report.scalars;
            scalars.push((format!("stage{}/clips_per_second", S::STAGE), rate));
            let named: Vec<(&str, f64)> = scalars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            log.log_scalars(done, &named)?;
        }
        if run.sample_every > 0
            && done.is_multiple_of(run.sample_every)
            && !started.clips.is_empty()
        {
            enter(done, Phase::Samples);
            stage.log_samples(log, &started.clips, done)?;
        }
        if done.is_multiple_of(run.checkpoint_every) || done == run.steps {
            enter(done, Phase::Checkpoint);
            started
                .folder
                .checkpoints
                .save(done, |dir| stage.checkpoint(dir))?;
            log.flush()?;
        }
    }
    Ok(())
}

/// Rank 0 of a finished run exports the model; `None` otherwise.
fn export_if_finished<S: StageRun>(
    stage: &S,
    run: &RunSection,
    opts: &RunOptions,
    rank0: bool,
) -> Result<Option<PathBuf>, TrainError> {
    if rank0 && stage.steps_done() >= run.steps {
        return stage.export(&opts.run_dir).map(Some);
    }
    Ok(None)
}

impl<B: AutodiffBackend> StageRun for SemboTrainer<B> {
    const STAGE: u8 = 1;
    type Inner = B::InnerBackend;

    fn steps_done(&self) -> u64 {
        self.step
    }

    fn step_batch<C: Collective<Self::Inner>>(
        &mut self,
        batch: &Batch,
        collective: &mut C,
    ) -> Result<StepLog, TrainError> {
        let s: Stage1Stats =
            self.train_step(&batch.audio, batch.batch, batch.samples, collective)?;
        let scalars = [
            ("loss", s.loss),
            ("recon", s.recon),
            ("tr", s.tr),
            ("grad_norm", s.grad_norm),
            ("lr", s.lr),
            ("skipped", s.skipped as u8 as f64),
        ];
        Ok(StepLog {
            loss: s.loss,
            scalars: scalars
                .iter()
                .map(|(k, v)| (format!("stage1/{k}"), *v))
                .collect(),
        })
    }

    fn log_samples(
        &mut self,
        log: &mut RunLogger,
        clips: &[(String, Vec<f32>)],
        step: u64,
    ) -> Result<(), TrainError> {
        log_sembo_samples(log, self, clips, step)
    }

    fn checkpoint(&self, dir: &Path) -> Result<(), TrainError> {
        self.save(dir)
    }

    fn export(&self, run_dir: &Path) -> Result<PathBuf, TrainError> {
        let path = run_dir.join("semantic_encoder.safetensors");
        let sem = SemanticEncoder {
            encoder: self.encoder.clone(),
            bottleneck: self.sembo.valid(),
        };
        export_semantic_safetensors(&sem, &path, &export_metadata(1, self.step))?;
        Ok(path)
    }
}

/// What both stages have once their models are built and their run folder is open.
struct RunStart<'a> {
    folder: RunFolder,
    /// The resolved training config (YAML).
    resolved: String,
    model: &'a LosatokConfig,
    data: &'a crate::config::DataSection,
    sample_every: u64,
    /// A clip given by the caller (the demo's), logged first.
    given_clip: Option<&'a [f32]>,
}

impl RunStart<'_> {
    /// The data loader (without the held-out clips) and, on rank 0 — once everything has been
    /// checked, so that a failed start writes nothing — the run's configs, its logs and the
    /// validation clips.
    fn start(
        self,
        opts: &RunOptions,
        rank: usize,
        world: usize,
        per_rank: usize,
        step: u64,
    ) -> Result<(Started, Loader), TrainError> {
        let (entries, held) = split_manifest(self.data, opts)?;
        let mut loader = loader_for(entries, self.data, opts, rank, world, per_rank)?;
        loader.prefetch_from(step);
        let mut started = Started {
            changes: Vec::new(),
            logger: None,
            clips: Vec::new(),
            folder: self.folder,
        };
        if rank != 0 {
            return Ok((started, loader));
        }
        started.changes =
            started
                .folder
                .settle_config(&self.resolved, self.model, opts.allow_config_change)?;
        let cut = started.folder.resumed_step().unwrap_or(0);
        started.logger = Some(RunLogger::open(&opts.run_dir, Some(cut))?);
        if let Some(c) = self.given_clip {
            started.clips.push(("clip0".to_string(), c.to_vec()));
        }
        if self.sample_every > 0 {
            for (_, c) in validation_clips(&held, self.data.validation.seconds) {
                started
                    .clips
                    .push((format!("clip{}", started.clips.len()), c));
            }
        }
        Ok((started, loader))
    }
}

/// What a rank has after setting a run up (the logs and clips: rank 0 only).
struct Started {
    folder: RunFolder,
    logger: Option<RunLogger>,
    changes: Vec<ConfigChange>,
    clips: Vec<(String, Vec<f32>)>,
}

impl Started {
    /// The summary of a run that has stopped at `steps`.
    fn summary(
        &self,
        steps: u64,
        export: Option<PathBuf>,
        resumed_from: Option<u64>,
        loader: &Loader,
        eval: Option<EvalReport>,
    ) -> RunSummary {
        RunSummary {
            steps,
            export,
            resumed_from,
            skipped_files: loader.skipped().broken_files,
            eval,
            config_changes: self.changes.iter().map(|c| c.to_string()).collect(),
        }
    }
}

/// Stage-1 samples: SemBo's losses on the validation clips (their mean, as `eval/*`) and, per
/// clip, an image of the frozen encoder's features above SemBo's restoration of them (the first
/// 128 channels).
fn log_sembo_samples<B: AutodiffBackend>(
    log: &mut RunLogger,
    trainer: &SemboTrainer<B>,
    clips: &[(String, Vec<f32>)],
    step: u64,
) -> Result<(), TrainError> {
    if clips.is_empty() {
        return Ok(());
    }
    let mut sums = [0.0f64; 3];
    for (name, clip) in clips {
        let e = trainer.evaluate(clip);
        for (s, v) in sums.iter_mut().zip([e.loss, e.recon, e.tr]) {
            *s += v / clips.len() as f64;
        }
        let shown = e.channels.min(128);
        // [frames, channels] → [channels, frames], first `shown` channels
        let panel = |v: &[f32]| -> Vec<f32> {
            (0..shown)
                .flat_map(|c| (0..e.frames).map(move |t| v[t * e.channels + c]))
                .collect()
        };
        let (f, r) = (panel(&e.features), panel(&e.restored));
        let lo = f.iter().chain(&r).copied().fold(f32::INFINITY, f32::min);
        let hi = f
            .iter()
            .chain(&r)
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        let style = SpectrogramStyle {
            top_db: (hi - lo).max(1e-6),
            ..SpectrogramStyle::default()
        };
        let png = stacked_spectrograms_png(
            &[
                ("semantic features", Spectrogram::new(&f, shown, e.frames)?),
                ("SemBo restoration", Spectrogram::new(&r, shown, e.frames)?),
            ],
            &style,
        )?;
        log.log_spectrogram(&format!("eval/{name}/sembo"), step, &png)?;
    }
    log.log_scalars(
        step,
        &[
            ("eval/sembo_loss", sums[0]),
            ("eval/sembo_recon", sums[1]),
            ("eval/sembo_tr", sums[2]),
        ],
    )?;
    Ok(())
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
    name: &str,
    clip: &[f32],
    before: &[f32],
    step: u64,
) -> Result<Vec<f32>, TrainError> {
    let after = trainer.reconstruct(clip);
    log.log_audio(&format!("eval/{name}/reconstruction"), step, &after, 16_000)?;
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
    log.log_spectrogram(&format!("eval/{name}/spectrogram"), step, &png)?;
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
        let folder = RunFolder::open(&opts.run_dir, opts.resume, cfg.run.keep_checkpoints, rank0)?;
        if let Some((step, dir)) = &folder.resumed {
            trainer = trainer.load(dir)?;
            tracing::info!("resumed stage 2 from step {step}");
        }
        let resumed = folder.resumed_step();
        let run = RunStart {
            folder,
            resolved: to_yaml(&cfg.resolved(&opts.config_dir)),
            model: &model_cfg,
            data: &cfg.data,
            sample_every: cfg.run.sample_every,
            given_clip: eval_clip,
        };
        let (started, loader) = run.start(opts, rank, world, per_rank, trainer.step)?;
        Ok(((trainer, started, loader), resumed))
    })();
    let resumed = setup.as_ref().ok().and_then(|(_, r)| *r);
    let (trainer, mut started, mut loader) = agree_on_start(collective, setup)?;
    let start_eval = eval_clip.map(|c| (trainer.reconstruct(c), trainer.mel_distance(c)));
    let mut run = Stage2Run {
        // each clip's previous reconstruction (the "before" of its next image)
        before: vec![None; started.clips.len()],
        trainer,
        first_row: (rank * per_rank) as u64,
    };
    if let (Some(first), Some((audio, _))) = (run.before.first_mut(), &start_eval) {
        *first = Some(audio.clone());
    }
    run_steps(
        &mut run,
        &cfg.run,
        opts,
        &mut loader,
        &mut started,
        collective,
    )?;
    let export = export_if_finished(&run, &cfg.run, opts, rank0)?;
    let trainer = run.trainer;
    let eval = match (eval_clip, start_eval) {
        (Some(clip), Some((audio_before, mel_before))) => Some(EvalReport {
            mel_before,
            mel_after: trainer.mel_distance(clip),
            audio_before,
            audio_after: trainer.reconstruct(clip),
        }),
        _ => None,
    };
    Ok(started.summary(trainer.step, export, resumed, &loader, eval))
}

/// A stage-2 run: the trainer, this rank's first row in the global batch (for the noise) and
/// each validation clip's previous reconstruction.
struct Stage2Run<B: AutodiffBackend> {
    trainer: LosatokTrainer<B>,
    first_row: u64,
    before: Vec<Option<Vec<f32>>>,
}

impl<B: AutodiffBackend> StageRun for Stage2Run<B> {
    const STAGE: u8 = 2;
    type Inner = B::InnerBackend;

    fn steps_done(&self) -> u64 {
        self.trainer.step
    }

    fn step_batch<C: Collective<Self::Inner>>(
        &mut self,
        batch: &Batch,
        collective: &mut C,
    ) -> Result<StepLog, TrainError> {
        let s: Stage2Stats = self.trainer.train_step(
            &batch.audio,
            batch.batch,
            batch.samples,
            self.first_row,
            collective,
        )?;
        let mut scalars: Vec<(String, f64)> = s
            .losses
            .named()
            .iter()
            .map(|(k, v)| (format!("stage2/{k}"), *v))
            .collect();
        for (k, v) in [
            ("grad_norm_g", s.grad_norm_g),
            ("grad_norm_d", s.grad_norm_d),
            ("lr", s.lr),
            ("skipped", s.skipped as u8 as f64),
        ] {
            scalars.push((format!("stage2/{k}"), v));
        }
        Ok(StepLog {
            loss: s.losses.mel,
            scalars,
        })
    }

    fn log_samples(
        &mut self,
        log: &mut RunLogger,
        clips: &[(String, Vec<f32>)],
        step: u64,
    ) -> Result<(), TrainError> {
        let mut mel = 0.0;
        for ((name, clip), prev) in clips.iter().zip(self.before.iter_mut()) {
            let shown_before = prev.take().unwrap_or_else(|| clip.clone());
            *prev = Some(log_samples(
                log,
                &self.trainer,
                name,
                clip,
                &shown_before,
                step,
            )?);
            mel += self.trainer.mel_distance(clip) / clips.len() as f64;
        }
        log.log_scalars(step, &[("eval/mel_distance", mel)])?;
        Ok(())
    }

    fn checkpoint(&self, dir: &Path) -> Result<(), TrainError> {
        self.trainer.save(dir)
    }

    fn export(&self, run_dir: &Path) -> Result<PathBuf, TrainError> {
        let path = run_dir.join("losatok.safetensors");
        export_safetensors(
            &self.trainer.model.valid(),
            &path,
            &export_metadata(2, self.trainer.step),
        )?;
        Ok(path)
    }
}
