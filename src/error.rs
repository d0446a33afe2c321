//! The library's error type: one line per error, naming the file involved.

use std::path::PathBuf;

use losatok_audio::AudioError;
use losatok_models::checkpoint::CheckpointError;
use losatok_models::chunked::StreamError;
use losatok_models::ConfigError;

/// Everything that can go wrong in the library's API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing audio.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// Loading a checkpoint.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Reading a config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Audio the model cannot take.
    #[error("{}{source}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Signal {
        /// The input file, if any.
        path: Option<PathBuf>,
        /// What is wrong.
        source: StreamError,
    },
    /// The output exists and overwriting was not asked for.
    #[error("{} already exists (use --force to overwrite)", .0.display())]
    OutputExists(PathBuf),
    /// An output could not be written.
    #[error("cannot write {}: {message}", path.display())]
    Write {
        /// The output.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
    /// An input could not be read.
    #[error("cannot read {}: {message}", path.display())]
    Read {
        /// The input.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
    /// A latent / feature file that cannot be decoded.
    #[error("{}: {message}", path.display())]
    BadLatent {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An invalid argument.
    #[error("{0}")]
    InvalidInput(String),
}
