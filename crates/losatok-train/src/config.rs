//! Training configurations (YAML), with the paper's settings and tiny CPU presets.
//!
//! A stage-1 file trains SemBo on the frozen MiDashengLM encoder; a stage-2 file trains the
//! LoSATok generator and its discriminator. Both name the model config (the official YAML
//! layout, or a preset), the data, the optimiser and the run's outputs. Unknown keys are errors.

use std::path::{Path, PathBuf};

use losatok_losses::GanLossConfig;
use losatok_models::discriminator::DiscriminatorConfig;
use losatok_models::{LosatokConfig, SemanticLossMode};
use serde::{Deserialize, Serialize};

use crate::data::DataConfig;
use crate::error::TrainError;
use crate::schedule::WarmupCosine;
use crate::watchdog::WatchdogConfig;

/// Which model to build: a named preset (`{preset: official}` or `{preset: tiny}`) or a model
/// config file in the official layout (`{file: model.yml}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `official` or `tiny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// A model config file, relative to the training config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self::preset("official")
    }
}

impl ModelSpec {
    /// A named preset.
    pub fn preset(name: &str) -> Self {
        Self {
            preset: Some(name.to_string()),
            file: None,
        }
    }

    /// Check the preset name, and that exactly one of `preset` and `file` is given.
    pub fn validate(&self) -> Result<(), String> {
        match (self.preset.as_deref(), &self.file) {
            (Some("official" | "tiny"), None) | (None, Some(_)) => Ok(()),
            (Some(p), None) => Err(format!(
                "model: unknown model preset {p:?} (official, tiny)"
            )),
            _ => Err("model: give exactly one of `preset` and `file`".into()),
        }
    }

    /// The model configuration (file paths relative to `base`).
    pub fn resolve(&self, base: &Path) -> Result<LosatokConfig, TrainError> {
        match (self.preset.as_deref(), &self.file) {
            (Some("official"), None) => Ok(LosatokConfig::official()),
            (Some("tiny"), None) => Ok(LosatokConfig::tiny()),
            (Some(p), None) => Err(TrainError::Invalid(format!(
                "unknown model preset {p:?} (official, tiny)"
            ))),
            (None, Some(f)) => Ok(LosatokConfig::from_file(base.join(f))?),
            _ => Err(TrainError::Invalid(
                "model: give exactly one of `preset` and `file`".into(),
            )),
        }
    }
}

/// AdamW and its learning-rate schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the cosine decay.
    pub min_lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// AdamW β₁, β₂.
    pub betas: [f64; 2],
    /// AdamW ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Global-norm gradient clipping (none if absent).
    pub grad_clip: Option<f64>,
}

impl Default for OptimConfig {
    /// The paper's AdamW (β 0.8/0.99, lr 1e-4), torch's eps and weight decay, 1000 warm-up
    /// steps, clipping at 1.
    fn default() -> Self {
        Self {
            lr: 1e-4,
            min_lr: 0.0,
            warmup_steps: 1000,
            betas: [0.8, 0.99],
            eps: 1e-8,
            weight_decay: 0.01,
            grad_clip: Some(1.0),
        }
    }
}

impl OptimConfig {
    /// The learning-rate schedule over `total` steps.
    pub fn schedule(&self, total: u64) -> WarmupCosine {
        WarmupCosine {
            peak: self.lr,
            floor: self.min_lr,
            warmup: self.warmup_steps,
            total,
        }
    }

    /// Burn's AdamW with every field set (Burn's defaults differ from torch's).
    pub fn adamw(&self) -> burn::optim::AdamWConfig {
        burn::optim::AdamWConfig::new()
            .with_beta_1(self.betas[0] as f32)
            .with_beta_2(self.betas[1] as f32)
            .with_epsilon(self.eps as f32)
            .with_weight_decay(self.weight_decay as f32)
    }

    fn validate(&self, what: &str) -> Result<(), String> {
        if !(self.lr > 0.0 && self.lr.is_finite()) || self.min_lr < 0.0 || self.min_lr > self.lr {
            return Err(format!("{what}: need 0 ≤ min_lr ≤ lr, lr > 0"));
        }
        if !(0.0..1.0).contains(&self.betas[0]) || !(0.0..1.0).contains(&self.betas[1]) {
            return Err(format!("{what}.betas must be in [0, 1)"));
        }
        if self.eps <= 0.0 || self.weight_decay < 0.0 {
            return Err(format!("{what}: eps must be > 0 and weight_decay ≥ 0"));
        }
        if self.grad_clip.is_some_and(|c| c <= 0.0 || !c.is_finite()) {
            return Err(format!("{what}.grad_clip must be positive"));
        }
        Ok(())
    }
}

/// Where the audio comes from and how it is cut.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    /// Manifest (JSONL or TSV), relative to the config file.
    pub manifest: PathBuf,
    /// Crops, domain weights, seed, loader threads.
    pub loader: DataConfig,
    /// Clips held out of the training data and logged at `run.sample_every`.
    pub validation: ValidationConfig,
}

impl Default for DataSection {
    /// 3 s crops (a whole number of latent frames, above the MFD minimum), 4 loader threads,
    /// 4 validation clips of 5 s.
    fn default() -> Self {
        Self {
            manifest: PathBuf::from("manifest.jsonl"),
            loader: DataConfig {
                segment_samples: 48_000,
                ..DataConfig::default()
            },
            validation: ValidationConfig::default(),
        }
    }
}

/// Validation clips: manifest entries held out of training (never cropped into a batch) whose
/// start is reconstructed (stage 2) or compressed and restored (stage 1) at every
/// `run.sample_every` step, into `samples/` and TensorBoard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationConfig {
    /// Entries held out, spread evenly over the manifest (so over its domains). At most a
    /// tenth of the manifest is held out: small manifests hold out fewer, or none.
    pub clips: usize,
    /// Seconds used from the start of each held-out file.
    pub seconds: f64,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            clips: 4,
            seconds: 5.0,
        }
    }
}

impl ValidationConfig {
    /// The number of entries held out of a manifest of `entries`.
    pub fn held_out(&self, entries: usize) -> usize {
        self.clips.min(entries / 10)
    }

    fn validate(&self) -> Result<(), String> {
        if !(self.seconds.is_finite() && self.seconds > 0.0 && self.seconds <= 600.0) {
            return Err(format!(
                "data.validation.seconds must be in (0, 600], got {}",
                self.seconds
            ));
        }
        Ok(())
    }
}

/// Steps, batch and outputs of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSection {
    /// Optimiser steps.
    pub steps: u64,
    /// Global batch (all ranks, all accumulation micro-batches).
    pub batch_size: usize,
    /// Micro-batches accumulated per optimiser step.
    pub grad_accum: usize,
    /// Seed of initialisation, data order and sampling noise.
    pub seed: u64,
    /// Log metrics every N steps.
    pub log_every: u64,
    /// Write a checkpoint every N steps.
    pub checkpoint_every: u64,
    /// Checkpoints kept (older ones are deleted).
    pub keep_checkpoints: usize,
    /// Write audio samples and spectrograms every N steps (0: never).
    pub sample_every: u64,
    /// Consecutive non-finite steps tolerated before the run stops.
    pub max_bad_steps: u32,
    /// When a rank counts as hung (see [`crate::watchdog`]).
    pub watchdog: WatchdogConfig,
}

impl Default for RunSection {
    fn default() -> Self {
        Self {
            steps: 100_000,
            batch_size: 64,
            grad_accum: 1,
            seed: 0,
            log_every: 50,
            checkpoint_every: 5000,
            keep_checkpoints: 3,
            sample_every: 5000,
            max_bad_steps: 20,
            watchdog: WatchdogConfig::default(),
        }
    }
}

impl RunSection {
    /// Per-rank micro-batch for `world` ranks, if the global batch divides evenly.
    pub fn micro_batch(&self, world: usize) -> Result<usize, String> {
        let per = world * self.grad_accum.max(1);
        if self.batch_size == 0 || !self.batch_size.is_multiple_of(per) {
            return Err(format!(
                "batch_size {} is not a multiple of world size {world} × grad_accum {}",
                self.batch_size, self.grad_accum
            ));
        }
        Ok(self.batch_size / per)
    }

    fn validate(&self) -> Result<(), String> {
        if self.steps == 0 || self.batch_size == 0 || self.grad_accum == 0 {
            return Err("run: steps, batch_size and grad_accum must be positive".into());
        }
        if self.log_every == 0 || self.checkpoint_every == 0 || self.keep_checkpoints == 0 {
            return Err(
                "run: log_every, checkpoint_every and keep_checkpoints must be positive".into(),
            );
        }
        self.watchdog.validate()
    }
}

/// Stage 1: SemBo on the frozen MiDashengLM encoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stage1Config {
    /// The model (its `SemanticEncoder.*` sizes and `decoder_dim` matter here).
    pub model: ModelSpec,
    /// The frozen encoder's weights: `semantic_encoder.pth`, a LoSATok checkpoint, or
    /// MiDashengLM's safetensors folder / index. `random` (tests and demo only): a seeded
    /// random encoder.
    pub semantic_encoder: String,
    /// λ_recon of `L_SemBo = λ_recon·L_recon + L_tr` (paper 1e3; 1 reproduces the released code).
    pub lambda_recon: f64,
    /// Optimiser.
    pub optim: OptimConfig,
    /// Data.
    pub data: DataSection,
    /// Steps, batch, outputs.
    pub run: RunSection,
}

impl Default for Stage1Config {
    fn default() -> Self {
        Self::paper()
    }
}

impl Stage1Config {
    /// The paper's stage 1 on 8×H100: AdamW (0.8, 0.99), lr 1e-4, 1000 warm-up steps then
    /// cosine, 100 k steps, λ_recon 1e3.
    pub fn paper() -> Self {
        Self {
            model: ModelSpec::default(),
            semantic_encoder: "ckpts/midashenglm-7b-1021-fp32".into(),
            lambda_recon: 1e3,
            optim: OptimConfig::default(),
            data: DataSection::default(),
            run: RunSection {
                steps: 100_000,
                batch_size: 64,
                ..RunSection::default()
            },
        }
    }

    /// Read a YAML file.
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let cfg: Self = read_yaml(path)?;
        cfg.validate().map_err(|message| TrainError::Config {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(cfg)
    }

    /// Check values.
    pub fn validate(&self) -> Result<(), String> {
        self.model.validate()?;
        if !(self.lambda_recon >= 0.0 && self.lambda_recon.is_finite()) {
            return Err("lambda_recon must be ≥ 0".into());
        }
        self.optim.validate("optim")?;
        self.run.validate()?;
        validate_segment(&self.data, 0)
    }
}

/// Loss weights of the generator: `L_G = w_mel·L_mel + w_sem·L_sem + λ_KL·L_KL + w_fm·L_fm + w_adv·L_adv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossWeights {
    /// Multi-scale mel (45).
    pub mel: f64,
    /// Semantic distillation `L_H + L_L` (45).
    pub semantic: f64,
    /// λ_KL (1e-4, 1e-3 or 1e-2 in the paper's ablation).
    pub kl: f64,
    /// Feature matching (1).
    pub fm: f64,
    /// Adversarial (1).
    pub adv: f64,
    /// Optional `mean Σ logvar²` term (`exp_use_logvar_loss`); off when absent.
    pub logvar: Option<f64>,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self {
            mel: 45.0,
            semantic: 45.0,
            kl: 1e-3,
            fm: 1.0,
            adv: 1.0,
            logvar: None,
        }
    }
}

/// The multi-scale mel loss's scales (DAC's configuration by default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MelSection {
    /// STFT window (= n_fft) of each scale; hop = window/4.
    pub windows: Vec<usize>,
    /// Mel bands of each scale.
    pub n_mels: Vec<usize>,
}

impl Default for MelSection {
    fn default() -> Self {
        let d = losatok_losses::MelLossConfig::dac();
        Self {
            windows: d.windows,
            n_mels: d.n_mels,
        }
    }
}

impl MelSection {
    /// The loss configuration.
    pub fn loss(&self) -> losatok_losses::MelLossConfig {
        losatok_losses::MelLossConfig {
            windows: self.windows.clone(),
            n_mels: self.n_mels.clone(),
            ..losatok_losses::MelLossConfig::dac()
        }
    }
}

/// Stage 2: the LoSATok GAN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stage2Config {
    /// The model.
    pub model: ModelSpec,
    /// The frozen semantic encoder with its trained SemBo: a stage-1 export, a
    /// `semantic_encoder.pth` or a LoSATok checkpoint. `random` (tests and demo only).
    pub semantic_encoder: String,
    /// Initialise the trainable parts from a LoSATok checkpoint (fine-tuning); fresh if absent.
    pub init_from: Option<PathBuf>,
    /// Loss weights.
    pub weights: LossWeights,
    /// Free-bits floor per latent dimension of the KL (`exp_kl_clamp`); none if absent.
    pub kl_free_bits: Option<f64>,
    /// `both`, `high_only` or `low_only`.
    pub semantic_loss_mode: SemanticLossMode,
    /// Autoencoder ablation: `z = μ`, no KL term, no reparameterisation.
    pub ae_mode: bool,
    /// Adversarial and feature-matching losses from this step on.
    pub gan_start_step: u64,
    /// The discriminator.
    pub discriminator: DiscriminatorConfig,
    /// GAN loss forms and reductions.
    pub gan: GanLossConfig,
    /// Multi-scale mel loss.
    pub mel: MelSection,
    /// Generator optimiser.
    pub optim_g: OptimConfig,
    /// Discriminator optimiser.
    pub optim_d: OptimConfig,
    /// Data.
    pub data: DataSection,
    /// Steps, batch, outputs.
    pub run: RunSection,
}

impl Default for Stage2Config {
    fn default() -> Self {
        Self::paper()
    }
}

impl Stage2Config {
    /// The paper's stage 2 on 8×H100: AdamW, lr 1e-4 → 1e-5 cosine (1000 warm-up steps), 1 M
    /// steps, global batch 64, mel 45 / semantic 45 / fm 1 / adv 1, λ_KL 1e-3, MFD with hinge
    /// losses, 3 s crops, clipping at 1.
    pub fn paper() -> Self {
        let optim = OptimConfig {
            min_lr: 1e-5,
            ..OptimConfig::default()
        };
        Self {
            model: ModelSpec::default(),
            semantic_encoder: "ckpts/semantic_encoder.pth".into(),
            init_from: None,
            weights: LossWeights::default(),
            kl_free_bits: None,
            semantic_loss_mode: SemanticLossMode::Both,
            ae_mode: false,
            gan_start_step: 0,
            discriminator: DiscriminatorConfig::official(),
            gan: GanLossConfig::default(),
            mel: MelSection::default(),
            optim_g: optim.clone(),
            optim_d: optim,
            data: DataSection::default(),
            run: RunSection {
                steps: 1_000_000,
                batch_size: 64,
                ..RunSection::default()
            },
        }
    }

    /// Read a YAML file.
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let cfg: Self = read_yaml(path)?;
        cfg.validate().map_err(|message| TrainError::Config {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(cfg)
    }

    /// Check values.
    pub fn validate(&self) -> Result<(), String> {
        self.model.validate()?;
        let w = &self.weights;
        for (name, v) in [
            ("mel", w.mel),
            ("semantic", w.semantic),
            ("kl", w.kl),
            ("fm", w.fm),
            ("adv", w.adv),
            ("logvar", w.logvar.unwrap_or(0.0)),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(format!("weights.{name} must be ≥ 0"));
            }
        }
        if self
            .kl_free_bits
            .is_some_and(|c| !(c >= 0.0 && c.is_finite()))
        {
            return Err("kl_free_bits must be ≥ 0".into());
        }
        if self.mel.windows.is_empty() || self.mel.windows.len() != self.mel.n_mels.len() {
            return Err("mel: one n_mels per window, at least one scale".into());
        }
        self.discriminator
            .validate()
            .map_err(|e| format!("discriminator: {e}"))?;
        self.optim_g.validate("optim_g")?;
        self.optim_d.validate("optim_d")?;
        self.run.validate()?;
        let min = self
            .discriminator
            .min_input_len()
            .max(*self.mel.windows.iter().max().unwrap_or(&0) / 2 + 1);
        validate_segment(&self.data, min)
    }
}

/// `path` made absolute against `base` (as written next to a run, the config must not depend on
/// where it was read from).
fn absolute(base: &Path, path: &Path) -> PathBuf {
    let joined = base.join(path);
    std::path::absolute(&joined).unwrap_or(joined)
}

fn resolve_model(base: &Path, model: &ModelSpec) -> ModelSpec {
    ModelSpec {
        preset: model.preset.clone(),
        file: model.file.as_ref().map(|f| absolute(base, f)),
    }
}

fn resolve_semantic(base: &Path, spec: &str) -> String {
    if spec == "random" {
        spec.to_string()
    } else {
        absolute(base, Path::new(spec)).display().to_string()
    }
}

impl Stage1Config {
    /// The same config with every relative path made absolute against `base`.
    pub fn resolved(&self, base: &Path) -> Self {
        let mut c = self.clone();
        c.model = resolve_model(base, &self.model);
        c.semantic_encoder = resolve_semantic(base, &self.semantic_encoder);
        c.data.manifest = absolute(base, &self.data.manifest);
        c
    }
}

impl Stage2Config {
    /// The same config with every relative path made absolute against `base`.
    pub fn resolved(&self, base: &Path) -> Self {
        let mut c = self.clone();
        c.model = resolve_model(base, &self.model);
        c.semantic_encoder = resolve_semantic(base, &self.semantic_encoder);
        c.init_from = self.init_from.as_ref().map(|p| absolute(base, p));
        c.data.manifest = absolute(base, &self.data.manifest);
        c
    }
}

fn validate_segment(data: &DataSection, min_samples: usize) -> Result<(), String> {
    data.loader
        .validate()
        .map_err(|e| format!("data.loader: {e}"))?;
    data.validation.validate()?;
    let n = data.loader.segment_samples;
    if n < min_samples {
        return Err(format!(
            "data.loader.segment_samples {n} is shorter than the {min_samples} samples the \
             discriminator and mel loss need"
        ));
    }
    Ok(())
}

fn read_yaml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    losatok_models::yaml::from_str(&text).map_err(|message| TrainError::Config {
        path: path.to_path_buf(),
        message,
    })
}

/// YAML text of a config (written next to a run's outputs).
pub fn to_yaml<T: Serialize>(cfg: &T) -> String {
    serde_norway::to_string(cfg).expect("configs serialise")
}
