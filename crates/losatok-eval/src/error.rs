//! The crate's error type: one line each, naming the file involved.

use std::path::PathBuf;

/// What can go wrong in analysis and evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Loading audio, encoding or decoding.
    #[error(transparent)]
    Losatok(#[from] losatok::Error),
    /// Reading an input.
    #[error("cannot read {}: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Writing an output.
    #[error("cannot write {}: {message}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The output exists and overwriting was not asked for.
    #[error("{} already exists", .0.display())]
    OutputExists(PathBuf),
    /// An input that cannot be used (too short, wrong shape, …).
    #[error("{0}")]
    Invalid(String),
}

impl From<losatok::audio::AudioError> for EvalError {
    fn from(e: losatok::audio::AudioError) -> Self {
        EvalError::Losatok(e.into())
    }
}
