//! Errors of the trainer: one line each, naming the file or setting involved.

use std::path::PathBuf;

/// Everything that can stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A training config that cannot be read or is invalid.
    #[error("invalid training config {path}: {message}")]
    Config {
        /// The file (or `<preset>`).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Loading the model, a checkpoint or the semantic encoder.
    #[error(transparent)]
    Checkpoint(#[from] losatok_models::checkpoint::CheckpointError),
    /// The model config.
    #[error(transparent)]
    ModelConfig(#[from] losatok_models::ConfigError),
    /// Data loading.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// Metrics and sample output.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// A training checkpoint (state) that cannot be written or read.
    #[error("training state {path}: {message}")]
    State {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Too many consecutive non-finite losses or gradients.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// Distributed setup or a collective operation (a lost rank, NCCL).
    #[error(transparent)]
    Distributed(#[from] crate::distributed::DistError),
    /// Anything else about the run's inputs.
    #[error("{0}")]
    Invalid(String),
}
