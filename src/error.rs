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
    #[error("{} already exists", .0.display())]
    OutputExists(PathBuf),
    /// An output (or input) the file layer refuses: a device or FIFO as the destination, the
    /// output being the input, a folder in use by another process, a signal stopping the work.
    #[error(transparent)]
    File(losatok_fs::FsError),
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

impl Error {
    /// The same error naming `shown` instead of `actual` (the temporary file an input stream
    /// was copied to, shown as `-`).
    pub(crate) fn with_path(self, actual: &std::path::Path, shown: &std::path::Path) -> Self {
        if actual == shown {
            return self;
        }
        let swap = |p: PathBuf| if p == actual { shown.to_path_buf() } else { p };
        match self {
            Error::Audio(e) => Error::Audio(e.with_path(actual, shown)),
            Error::Signal { path, source } => Error::Signal {
                path: path.map(swap),
                source,
            },
            Error::Read { path, message } => Error::Read {
                path: swap(path),
                message,
            },
            Error::BadLatent { path, message } => Error::BadLatent {
                path: swap(path),
                message,
            },
            other => other,
        }
    }

    /// An error of the file layer met while writing `path`, as the most specific variant.
    pub(crate) fn from_fs(path: &std::path::Path, e: losatok_fs::FsError) -> Self {
        use losatok_fs::FsError;
        match e {
            FsError::Exists { .. } => Error::OutputExists(path.to_path_buf()),
            FsError::Write { source, .. } => Error::Write {
                path: path.to_path_buf(),
                message: source.to_string(),
            },
            FsError::Read { path, source } => Error::Read {
                path,
                message: source.to_string(),
            },
            other => Error::File(other),
        }
    }
}
