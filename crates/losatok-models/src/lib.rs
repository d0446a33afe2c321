//! The LoSATok networks, generic over `B: Backend`: the frozen MiDashengLM audio encoder
//! ([`dasheng`]), SemBo ([`sembo`]), the acoustic branch ([`acoustic`]), the Gaussian latent
//! ([`latent`]), the Vocos decoder ([`vocos`]) and their composition ([`losatok`]); typed configs
//! ([`config`]) and the one place that knows PyTorch checkpoint names ([`checkpoint`]).

pub mod acoustic;
pub mod checkpoint;
pub mod chunked;
pub mod config;
pub mod cpu_fast_path;
pub mod dasheng;
pub mod discriminator;
pub mod latent;
pub mod layers;
pub mod losatok;
pub mod sembo;
pub mod vocos;
pub mod yaml;

pub use checkpoint::{CheckpointError, LoadReport, TensorSource};
pub use config::{
    AudioEncoderConfig, ConfigError, LosatokConfig, SemanticLossMode, TokenizerConfig,
};
pub use losatok::{Embeddings, Features, Losatok, Sampling, SemanticEncoder};
