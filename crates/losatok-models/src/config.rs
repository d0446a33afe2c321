//! Typed model configuration, read from the official YAML layout.
//!
//! The official file (`configs/16k_16k_25Hz_losatok.yml`) uses flat, dotted keys:
//! `AudioVAE.sample_rate`, `AudioVAE.config_dict` (the DashengTokenizer sizes) and
//! `AudioVAE.semantic_encoder_path`; the optional AudioVAE keyword arguments (`frame_rate`,
//! `exp_kl_clamp`, `exp_use_logvar_loss`, `semantic_loss_mode`) may appear the same way. The
//! MiDashengLM audio-encoder sizes are not in the official file; the optional keys
//! `SemanticEncoder.hidden_dim` and `SemanticEncoder.audio_encoder_config` (used by the tiny
//! fixtures) set them, and the official values apply when they are absent.
//!
//! Unknown keys and invalid values are errors that name the key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A configuration that could not be read or is invalid (one line, names the file and the key).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or has unknown keys / wrong types.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file (or `<string>`).
        path: PathBuf,
        /// What is wrong, with the line where the parser knows it.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid config {path}: {message}")]
    Invalid {
        /// The file (or `<string>`).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// What the stage-2 semantic distillation loss compares (AudioVAE `semantic_loss_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SemanticLossMode {
    /// `L_H + L_L` (the paper's default).
    #[default]
    Both,
    /// `L_H` only.
    HighOnly,
    /// `L_L` only.
    LowOnly,
}

/// Hyper-parameters of the MiDashengLM audio encoder (its `audio_encoder_config`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioEncoderConfig {
    /// Transformer width E (must equal the tokenizer's `embed_dim`).
    pub embed_dim: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads (head dim = embed_dim / num_heads).
    pub num_heads: usize,
    /// MLP hidden width = mlp_ratio · embed_dim.
    pub mlp_ratio: f64,
    /// Whether the qkv projection has a bias (detected from the checkpoint when loading).
    pub qkv_bias: bool,
    /// Layer-scale init; `Some` means the blocks have `ls1`/`ls2` gammas (detected from the
    /// checkpoint when loading).
    pub init_values: Option<f64>,
    /// Input channels of the patch embedding (1).
    pub input_channels: usize,
    /// Patch size (mel, time).
    pub patch_size: [usize; 2],
    /// Patch stride (mel, time); must equal `patch_size`.
    pub patch_stride: [usize; 2],
    /// Mel frames per attention chunk (1008 → 252 tokens).
    pub target_length: usize,
    /// Mel bands of the front end.
    pub n_mels: usize,
    /// STFT size of the front end.
    pub n_fft: usize,
    /// Window length (must equal `n_fft`).
    pub win_length: usize,
    /// STFT hop of the front end.
    pub hop_length: usize,
    /// Lowest mel edge (Hz).
    pub f_min: f64,
    /// Highest mel edge (Hz).
    pub f_max: f64,
    /// Centred STFT (must be true).
    pub center: bool,
    /// Sample rate (must be 16000).
    pub sample_rate: u32,
}

impl Default for AudioEncoderConfig {
    fn default() -> Self {
        Self::official()
    }
}

impl AudioEncoderConfig {
    /// The Dasheng-0.6B-sized encoder of MiDashengLM (model-spec §2).
    pub fn official() -> Self {
        Self {
            embed_dim: 1280,
            depth: 32,
            num_heads: 16,
            mlp_ratio: 4.0,
            qkv_bias: true,
            init_values: None,
            input_channels: 1,
            patch_size: [64, 4],
            patch_stride: [64, 4],
            target_length: 1008,
            n_mels: 64,
            n_fft: 512,
            win_length: 512,
            hop_length: 160,
            f_min: 0.0,
            f_max: 8000.0,
            center: true,
            sample_rate: 16_000,
        }
    }

    /// The tiny encoder of the parity fixtures (E 64, 2 blocks, 4 heads).
    pub fn tiny() -> Self {
        Self {
            embed_dim: 64,
            depth: 2,
            num_heads: 4,
            ..Self::official()
        }
    }

    /// Tokens per attention chunk (`target_length / patch_stride[1]`, 252).
    pub fn chunk_tokens(&self) -> usize {
        self.target_length / self.patch_stride[1]
    }

    /// MLP hidden width.
    pub fn mlp_hidden(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio).round() as usize
    }

    fn validate(&self) -> Result<(), String> {
        let e = "SemanticEncoder.audio_encoder_config";
        if self.embed_dim == 0 || self.depth == 0 || self.num_heads == 0 {
            return Err(format!(
                "{e}: embed_dim, depth and num_heads must be positive"
            ));
        }
        if !self.embed_dim.is_multiple_of(self.num_heads) {
            return Err(format!(
                "{e}: embed_dim {} is not divisible by num_heads {}",
                self.embed_dim, self.num_heads
            ));
        }
        if !(self.mlp_ratio > 0.0 && self.mlp_ratio.is_finite()) {
            return Err(format!(
                "{e}.mlp_ratio must be positive, got {}",
                self.mlp_ratio
            ));
        }
        if self.input_channels != 1 {
            return Err(format!(
                "{e}.input_channels must be 1, got {}",
                self.input_channels
            ));
        }
        if self.patch_size != self.patch_stride {
            return Err(format!(
                "{e}: patch_size {:?} must equal patch_stride {:?} (non-overlapping patches)",
                self.patch_size, self.patch_stride
            ));
        }
        if self.patch_size[0] != self.n_mels {
            return Err(format!(
                "{e}: patch_size[0] {} must equal n_mels {} (one frequency patch)",
                self.patch_size[0], self.n_mels
            ));
        }
        if self.patch_size[1] == 0 || !self.target_length.is_multiple_of(self.patch_size[1]) {
            return Err(format!(
                "{e}: target_length {} must be a positive multiple of patch_size[1] {}",
                self.target_length, self.patch_size[1]
            ));
        }
        if self.win_length != self.n_fft || !self.center {
            return Err(format!(
                "{e}: win_length must equal n_fft and center must be true"
            ));
        }
        if self.sample_rate != 16_000 {
            return Err(format!(
                "{e}.sample_rate must be 16000, got {}",
                self.sample_rate
            ));
        }
        if self.hop_length == 0 || self.n_fft < 2 || self.n_mels == 0 {
            return Err(format!(
                "{e}: hop_length, n_fft and n_mels must be positive"
            ));
        }
        if !(0.0 <= self.f_min && self.f_min < self.f_max && self.f_max <= 8000.0) {
            return Err(format!(
                "{e}: need 0 ≤ f_min < f_max ≤ 8000, got {} and {}",
                self.f_min, self.f_max
            ));
        }
        Ok(())
    }
}

/// The DashengTokenizer / LoSATok sizes (`AudioVAE.config_dict`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenizerConfig {
    /// Width E of both branches' high-dimensional embeddings (1280).
    pub embed_dim: usize,
    /// Latent size D (128).
    pub decoder_dim: usize,
    /// Vocos width C (1280).
    pub decoder_embed_dim: usize,
    /// Vocos ConvNeXt MLP width (5120).
    pub decoder_intermediate_size: usize,
    /// Number of ConvNeXt blocks (12).
    pub decoder_depth: usize,
    /// Hop of the acoustic mel front end (160).
    pub hop_length: usize,
    /// Mel bands of the acoustic front end (128).
    pub n_mels_patch: usize,
    /// Time stride of the acoustic patch embedding (4 → 25 Hz).
    pub patch_stride_time: usize,
    /// ConvTranspose upsampling factor from latent frames to decoder frames (2).
    pub upsample_tokens: usize,
    /// ISTFT size of the decoder head (1280).
    pub istft_n_fft: usize,
    /// ISTFT hop of the decoder head (320).
    pub istft_hop: usize,
}

impl TokenizerConfig {
    /// Official sizes.
    pub fn official() -> Self {
        Self {
            embed_dim: 1280,
            decoder_dim: 128,
            decoder_embed_dim: 1280,
            decoder_intermediate_size: 5120,
            decoder_depth: 12,
            hop_length: 160,
            n_mels_patch: 128,
            patch_stride_time: 4,
            upsample_tokens: 2,
            istft_n_fft: 1280,
            istft_hop: 320,
        }
    }

    /// Tiny fixture sizes (E 64, D 16, Vocos 64/128/2; all DSP sizes real).
    pub fn tiny() -> Self {
        Self {
            embed_dim: 64,
            decoder_dim: 16,
            decoder_embed_dim: 64,
            decoder_intermediate_size: 128,
            decoder_depth: 2,
            ..Self::official()
        }
    }
}

/// Training-only AudioVAE keyword arguments (they do not change inference).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveConfig {
    /// Free-bits floor per latent dimension of the KL term (`exp_kl_clamp`).
    pub exp_kl_clamp: Option<f64>,
    /// Add `mean Σ logvar²` (`exp_use_logvar_loss`).
    pub exp_use_logvar_loss: bool,
    /// Which semantic distillation terms are used.
    pub semantic_loss_mode: SemanticLossMode,
}

/// The whole LoSATok model configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LosatokConfig {
    /// Audio sample rate (16000).
    pub sample_rate: u32,
    /// Latent frame rate in Hz (25; 50 linearly upsamples the semantic features).
    pub frame_rate: u32,
    /// DashengTokenizer sizes.
    pub tokenizer: TokenizerConfig,
    /// SemBo hidden width (512).
    pub sembo_hidden_dim: usize,
    /// MiDashengLM audio-encoder sizes.
    pub audio_encoder: AudioEncoderConfig,
    /// `AudioVAE.semantic_encoder_path`, resolved against the config's folder (optional: the
    /// LoSATok checkpoint contains the semantic encoder too).
    pub semantic_encoder_path: Option<PathBuf>,
    /// Training-only keyword arguments.
    pub objective: ObjectiveConfig,
}

impl Default for LosatokConfig {
    fn default() -> Self {
        Self::official()
    }
}

/// The official config file, embedded (shipped unchanged as `configs/16k_16k_25Hz_losatok.yml`).
pub const OFFICIAL_CONFIG_YAML: &str = include_str!("../../../configs/16k_16k_25Hz_losatok.yml");

/// Native rate of the semantic features (Hz): 16000 / 160 / 4.
pub const SEMANTIC_NATIVE_HZ: u32 = 25;

/// The largest model a config may describe, in parameters: 20 × the official model's 0.8 G
/// (64 GB of float32). Configs beyond it are refused before anything is allocated, so that a
/// typo (a depth of 10⁸) is an error message, not an out-of-memory abort.
pub const MAX_PARAMETERS: u64 = 16_000_000_000;

impl LosatokConfig {
    /// The official model (803.6 M parameters).
    pub fn official() -> Self {
        Self {
            sample_rate: 16_000,
            frame_rate: 25,
            tokenizer: TokenizerConfig::official(),
            sembo_hidden_dim: 512,
            audio_encoder: AudioEncoderConfig::official(),
            semantic_encoder_path: None,
            objective: ObjectiveConfig::default(),
        }
    }

    /// The tiny model of the parity fixtures (all DSP constants real).
    pub fn tiny() -> Self {
        Self {
            tokenizer: TokenizerConfig::tiny(),
            sembo_hidden_dim: 32,
            audio_encoder: AudioEncoderConfig::tiny(),
            ..Self::official()
        }
    }

    /// Read a config file. Relative `semantic_encoder_path`s are resolved against the file's
    /// folder.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::from_yaml_str_named(&text, path)?;
        if let Some(p) = &cfg.semantic_encoder_path {
            if p.is_relative() {
                let dir = path.parent().unwrap_or(Path::new("."));
                cfg.semantic_encoder_path = Some(dir.join(p));
            }
        }
        Ok(cfg)
    }

    /// Parse YAML text in the official layout.
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_yaml_str_named(text, Path::new("<string>"))
    }

    fn from_yaml_str_named(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawFile = crate::yaml::from_str(text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        let invalid = |message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let cfg = raw.into_config().map_err(invalid)?;
        cfg.validate().map_err(invalid)?;
        Ok(cfg)
    }

    /// The number of parameters the config describes, estimated from its sizes (within a few
    /// percent: the weight matrices and embeddings, not every bias), saturating instead of
    /// overflowing.
    pub fn parameter_estimate(&self) -> u64 {
        let a = &self.audio_encoder;
        let t = &self.tokenizer;
        let n = |v: usize| v as u128;
        let e = n(a.embed_dim);
        let mlp = (a.embed_dim as f64 * a.mlp_ratio)
            .max(0.0)
            .min(u64::MAX as f64) as u128;
        let tokens = n(a.target_length / a.patch_stride[1].max(1));
        let encoder = n(a.depth) * (4 * e * e + 2 * e * mlp)
            + e * n(a.patch_size[0]) * n(a.patch_size[1])
            + e * (tokens + n(a.n_mels / a.patch_size[0].max(1)));
        let sembo = 2 * n(t.embed_dim) * n(self.sembo_hidden_dim)
            + 2 * n(self.sembo_hidden_dim) * n(t.decoder_dim);
        let acoustic = n(t.embed_dim) * n(t.n_mels_patch) * n(t.patch_stride_time)
            + 3 * n(t.embed_dim) * n(t.decoder_dim);
        let c = n(t.decoder_embed_dim);
        let decoder = n(t.decoder_dim) * c * n(t.upsample_tokens).max(1)
            + n(t.decoder_depth) * (7 * c + 2 * c * n(t.decoder_intermediate_size))
            + c * (n(t.istft_n_fft) + 2);
        let total = encoder + sembo + acoustic + decoder;
        total.min(u64::MAX as u128) as u64
    }

    /// Check ranges and consistency; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        let params = self.parameter_estimate();
        if params > MAX_PARAMETERS {
            return Err(format!(
                "the config describes a model of about {:.3e} parameters, more than the {:.1e} \
                 this tool accepts (the official model has 8.0e8): check the sizes \
                 (depth {}, embed_dim {}, decoder_depth {}, decoder_embed_dim {}, \
                 decoder_intermediate_size {})",
                params as f64,
                MAX_PARAMETERS as f64,
                self.audio_encoder.depth,
                self.audio_encoder.embed_dim,
                self.tokenizer.decoder_depth,
                self.tokenizer.decoder_embed_dim,
                self.tokenizer.decoder_intermediate_size
            ));
        }
        let t = &self.tokenizer;
        if self.sample_rate != 16_000 {
            return Err(format!(
                "AudioVAE.sample_rate must be 16000 (the front ends are fixed at 16 kHz), got {}",
                self.sample_rate
            ));
        }
        if self.frame_rate == 0 || !self.frame_rate.is_multiple_of(SEMANTIC_NATIVE_HZ) {
            return Err(format!(
                "AudioVAE.frame_rate must be a positive multiple of {SEMANTIC_NATIVE_HZ}, got {}",
                self.frame_rate
            ));
        }
        for (name, v) in [
            ("embed_dim", t.embed_dim),
            ("decoder_dim", t.decoder_dim),
            ("decoder_embed_dim", t.decoder_embed_dim),
            ("decoder_intermediate_size", t.decoder_intermediate_size),
            ("decoder_depth", t.decoder_depth),
            ("hop_length", t.hop_length),
            ("n_mels_patch", t.n_mels_patch),
            ("patch_stride_time", t.patch_stride_time),
            ("upsample_tokens", t.upsample_tokens),
            ("istft_n_fft", t.istft_n_fft),
            ("istft_hop", t.istft_hop),
        ] {
            if v == 0 {
                return Err(format!("AudioVAE.config_dict.{name} must be positive"));
            }
        }
        if t.istft_hop > t.istft_n_fft || !(t.istft_n_fft - t.istft_hop).is_multiple_of(2) {
            return Err(format!(
                "AudioVAE.config_dict: istft_hop {} must be ≤ istft_n_fft {} with an even difference",
                t.istft_hop, t.istft_n_fft
            ));
        }
        let acoustic_rate = self.sample_rate as f64 / (t.hop_length * t.patch_stride_time) as f64;
        if (acoustic_rate - self.frame_rate as f64).abs() > 1e-9 {
            return Err(format!(
                "AudioVAE.frame_rate {} does not match the acoustic token rate {acoustic_rate} Hz \
                 (sample_rate / hop_length / patch_stride_time)",
                self.frame_rate
            ));
        }
        if self.audio_encoder.embed_dim != t.embed_dim {
            return Err(format!(
                "SemanticEncoder.audio_encoder_config.embed_dim {} must equal AudioVAE.config_dict.embed_dim {} \
                 (the two branches are summed)",
                self.audio_encoder.embed_dim, t.embed_dim
            ));
        }
        if self.sembo_hidden_dim == 0 {
            return Err("SemanticEncoder.hidden_dim must be positive".into());
        }
        if let Some(c) = self.objective.exp_kl_clamp {
            if !(c.is_finite() && c >= 0.0) {
                return Err(format!("AudioVAE.exp_kl_clamp must be ≥ 0, got {c}"));
            }
        }
        self.audio_encoder.validate()
    }

    /// Factor by which the 25 Hz semantic features are upsampled (1 at 25 Hz).
    pub fn semantic_upsample_factor(&self) -> usize {
        (self.frame_rate / SEMANTIC_NATIVE_HZ) as usize
    }

    /// Audio samples per latent frame (640 at 25 Hz).
    pub fn samples_per_token(&self) -> usize {
        self.tokenizer.hop_length * self.tokenizer.patch_stride_time
    }

    /// Write the config in the official layout (all keys explicit, `SemanticEncoder.*`
    /// included), readable by [`LosatokConfig::from_yaml_str`] and by the reference's loader.
    pub fn to_yaml_string(&self) -> String {
        let t = &self.tokenizer;
        let mut out = String::new();
        out.push_str(&format!("sample_rate: {}\n\n", self.sample_rate));
        out.push_str(&format!("AudioVAE.sample_rate: {}\n", self.sample_rate));
        out.push_str("AudioVAE.config_dict: {\n");
        let fields = [
            ("decoder_depth", t.decoder_depth.to_string()),
            ("decoder_embed_dim", t.decoder_embed_dim.to_string()),
            ("decoder_dim", t.decoder_dim.to_string()),
            (
                "decoder_intermediate_size",
                t.decoder_intermediate_size.to_string(),
            ),
            ("dtype", "\"float32\"".to_string()),
            ("embed_dim", t.embed_dim.to_string()),
            ("hop_length", t.hop_length.to_string()),
            ("istft_hop", t.istft_hop.to_string()),
            ("istft_n_fft", t.istft_n_fft.to_string()),
            ("model_type", "\"dashengtokenizer\"".to_string()),
            ("n_mels_patch", t.n_mels_patch.to_string()),
            ("patch_stride_time", t.patch_stride_time.to_string()),
            ("upsample_tokens", t.upsample_tokens.to_string()),
        ];
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("  \"{k}\": {v}"))
            .collect();
        out.push_str(&body.join(",\n"));
        out.push_str("\n}\n");
        if let Some(p) = &self.semantic_encoder_path {
            out.push_str(&format!(
                "AudioVAE.semantic_encoder_path: {}\n",
                serde_json::to_string(&p.to_string_lossy()).expect("string")
            ));
        }
        out.push_str(&format!("AudioVAE.frame_rate: {}\n", self.frame_rate));
        if let Some(c) = self.objective.exp_kl_clamp {
            out.push_str(&format!("AudioVAE.exp_kl_clamp: {c:e}\n"));
        }
        out.push_str(&format!(
            "AudioVAE.exp_use_logvar_loss: {}\n",
            self.objective.exp_use_logvar_loss
        ));
        out.push_str(&format!(
            "AudioVAE.semantic_loss_mode: {}\n",
            serde_json::to_string(&self.objective.semantic_loss_mode).expect("enum")
        ));
        out.push_str(&format!(
            "SemanticEncoder.hidden_dim: {}\n",
            self.sembo_hidden_dim
        ));
        out.push_str("SemanticEncoder.audio_encoder_config: ");
        out.push_str(&serde_json::to_string(&self.audio_encoder).expect("plain struct"));
        out.push('\n');
        out
    }
}

/// The file as written, before defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    sample_rate: Option<u32>,
    #[serde(rename = "AudioVAE.sample_rate", default)]
    vae_sample_rate: Option<u32>,
    #[serde(rename = "AudioVAE.config_dict")]
    config_dict: RawConfigDict,
    #[serde(rename = "AudioVAE.semantic_encoder_path", default)]
    semantic_encoder_path: Option<String>,
    #[serde(rename = "AudioVAE.frame_rate", default)]
    frame_rate: Option<u32>,
    #[serde(rename = "AudioVAE.exp_kl_clamp", default)]
    exp_kl_clamp: Option<f64>,
    #[serde(rename = "AudioVAE.exp_use_logvar_loss", default)]
    exp_use_logvar_loss: Option<bool>,
    #[serde(rename = "AudioVAE.semantic_loss_mode", default)]
    semantic_loss_mode: Option<SemanticLossMode>,
    #[serde(rename = "SemanticEncoder.hidden_dim", default)]
    sembo_hidden_dim: Option<usize>,
    #[serde(rename = "SemanticEncoder.audio_encoder_config", default)]
    audio_encoder_config: Option<AudioEncoderConfig>,
}

/// `AudioVAE.config_dict`: DashengTokenizerConfig keys plus the HF metadata it tolerates.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfigDict {
    embed_dim: Option<usize>,
    decoder_dim: usize,
    decoder_embed_dim: Option<usize>,
    decoder_intermediate_size: Option<usize>,
    decoder_depth: Option<usize>,
    hop_length: Option<usize>,
    n_mels_patch: Option<usize>,
    patch_stride_time: Option<usize>,
    upsample_tokens: Option<usize>,
    istft_n_fft: Option<usize>,
    istft_hop: Option<usize>,
    // The DashengTokenizer's own transformer is removed in LoSATok: accepted, unused.
    #[allow(dead_code)]
    depth: Option<usize>,
    #[allow(dead_code)]
    num_heads: Option<usize>,
    // Hugging Face metadata.
    #[serde(alias = "torch_dtype")]
    dtype: Option<String>,
    model_type: Option<String>,
    #[allow(dead_code)]
    transformers_version: Option<String>,
    #[allow(dead_code)]
    architectures: Option<Vec<String>>,
}

impl RawFile {
    fn into_config(self) -> Result<LosatokConfig, String> {
        let d = TokenizerConfig::official();
        let c = self.config_dict;
        if let Some(dtype) = c.dtype.as_ref().filter(|d| d.as_str() != "float32") {
            return Err(format!(
                "AudioVAE.config_dict.dtype must be \"float32\", got {dtype:?}"
            ));
        }
        if let Some(m) = c
            .model_type
            .as_ref()
            .filter(|m| m.as_str() != "dashengtokenizer")
        {
            return Err(format!(
                "AudioVAE.config_dict.model_type must be \"dashengtokenizer\", got {m:?}"
            ));
        }
        if let (Some(top), Some(vae)) = (self.sample_rate, self.vae_sample_rate) {
            if top != vae {
                return Err(format!(
                    "sample_rate {top} disagrees with AudioVAE.sample_rate {vae}"
                ));
            }
        }
        let tokenizer = TokenizerConfig {
            embed_dim: c.embed_dim.unwrap_or(d.embed_dim),
            decoder_dim: c.decoder_dim,
            decoder_embed_dim: c.decoder_embed_dim.unwrap_or(d.decoder_embed_dim),
            decoder_intermediate_size: c
                .decoder_intermediate_size
                .unwrap_or(d.decoder_intermediate_size),
            decoder_depth: c.decoder_depth.unwrap_or(d.decoder_depth),
            hop_length: c.hop_length.unwrap_or(d.hop_length),
            n_mels_patch: c.n_mels_patch.unwrap_or(d.n_mels_patch),
            patch_stride_time: c.patch_stride_time.unwrap_or(d.patch_stride_time),
            upsample_tokens: c.upsample_tokens.unwrap_or(d.upsample_tokens),
            istft_n_fft: c.istft_n_fft.unwrap_or(d.istft_n_fft),
            istft_hop: c.istft_hop.unwrap_or(d.istft_hop),
        };
        Ok(LosatokConfig {
            sample_rate: self.vae_sample_rate.or(self.sample_rate).unwrap_or(16_000),
            frame_rate: self.frame_rate.unwrap_or(25),
            tokenizer,
            sembo_hidden_dim: self.sembo_hidden_dim.unwrap_or(512),
            audio_encoder: self.audio_encoder_config.unwrap_or_default(),
            semantic_encoder_path: self.semantic_encoder_path.map(PathBuf::from),
            objective: ObjectiveConfig {
                exp_kl_clamp: self.exp_kl_clamp,
                exp_use_logvar_loss: self.exp_use_logvar_loss.unwrap_or(false),
                semantic_loss_mode: self.semantic_loss_mode.unwrap_or_default(),
            },
        })
    }
}
