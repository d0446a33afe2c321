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
    /// A folder or file the file layer refuses or cannot write: a run folder locked by another
    /// process, an output folder that is not ours to replace.
    #[error(transparent)]
    Output(#[from] losatok_fs::FsError),
    /// A fresh start in a folder that holds a run (it has a checkpoint).
    #[error("{} already holds a training run (a checkpoint at step {step}); resume it, or choose another run folder", .run_dir.display())]
    RunExists {
        /// The run folder.
        run_dir: PathBuf,
        /// Its newest checkpoint's step.
        step: u64,
    },
    /// A resume with a config that changes what fixes the run's results or shapes.
    #[error("{} was trained with another config; these changes would alter its model, data or batches: {changes}", .run_dir.display())]
    ConfigChanged {
        /// The run folder.
        run_dir: PathBuf,
        /// The changes, `key old → new`, comma-separated.
        changes: String,
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
