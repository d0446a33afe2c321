//! The error type of the crate.

use std::io;
use std::path::{Path, PathBuf};

/// Largest sample rate accepted when reading a file, in Hz.
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// Smallest sample rate accepted when reading a file, in Hz. Lower "rates" are damaged headers
/// (a 16 KB file at 1 Hz would be hours of audio to resample), not audio.
pub const MIN_SAMPLE_RATE: u32 = 1_000;

/// Largest channel count accepted when reading a file.
pub const MAX_CHANNELS: usize = 256;

/// Everything that can go wrong while reading, resampling or writing audio.
///
/// Every variant renders (via `Display`) as a single user-facing line. Variants that concern
/// a file name its path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// The path does not exist.
    #[error("audio file not found: {}", .path.display())]
    NotFound {
        /// The path that was asked for.
        path: PathBuf,
    },

    /// The path names a directory, not a file.
    #[error("expected an audio file but found a directory: {}", .path.display())]
    IsDirectory {
        /// The directory path.
        path: PathBuf,
    },

    /// The path is a device, FIFO or socket: never opened (a FIFO blocks until a writer comes,
    /// a device never ends).
    #[error("{} is a {kind}, not a regular audio file", .path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },

    /// The operating system refused access to the path.
    #[error("permission denied: {}", .path.display())]
    PermissionDenied {
        /// The path that could not be accessed.
        path: PathBuf,
    },

    /// The file exists but has a size of zero bytes.
    #[error("audio file is empty (0 bytes): {}", .path.display())]
    EmptyFile {
        /// The empty file.
        path: PathBuf,
    },

    /// The content is not a recognised audio format, or uses an encoding this crate cannot
    /// decode.
    #[error("unsupported or unrecognised audio format in {}: {reason}", .path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },

    /// The file is recognised but its header or coded data is malformed.
    #[error("corrupt audio file {}: {reason}", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The file ends before the amount of audio its header announces.
    #[error("truncated audio file {}: {reason}", .path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// How much was announced and how much was found.
        reason: String,
    },

    /// The file is well formed but holds no audio frames.
    #[error("audio file contains no samples: {}", .path.display())]
    NoSamples {
        /// The file.
        path: PathBuf,
    },

    /// A floating-point file holds NaN or an infinity.
    #[error(
        "audio file {} contains a non-finite sample (NaN or infinity) at frame {frame}",
        .path.display()
    )]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// Index of the first offending frame.
        frame: u64,
    },

    /// The sample rate is below [`MIN_SAMPLE_RATE`] or above [`MAX_SAMPLE_RATE`].
    #[error(
        "invalid sample rate {rate} Hz in {} (expected {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)",
        .path.display()
    )]
    InvalidSampleRate {
        /// The file.
        path: PathBuf,
        /// The rate found in the file.
        rate: u64,
    },

    /// The channel count is 0 or larger than [`MAX_CHANNELS`].
    #[error(
        "invalid channel count {channels} in {} (expected 1 to {MAX_CHANNELS})",
        .path.display()
    )]
    InvalidChannelCount {
        /// The file.
        path: PathBuf,
        /// The count found in the file.
        channels: u64,
    },

    /// An I/O error while reading a file.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// An I/O error while writing a file (for example a full disk).
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The destination file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// An output that cannot be written: a device or FIFO as the destination, the same file
    /// as the input, the process being stopped by a signal.
    #[error(transparent)]
    Output(losatok_fs::FsError),

    /// The destination exists and overwriting was not allowed.
    #[error("{} already exists", .path.display())]
    AlreadyExists {
        /// The destination file.
        path: PathBuf,
    },

    /// An in-memory argument is invalid (bad sample rate, non-finite sample, ...).
    #[error("invalid audio input: {0}")]
    InvalidInput(String),

    /// libsoxr reported an error.
    #[error("resampler error: {0}")]
    Resampler(String),
}

impl AudioError {
    /// The same error naming `shown` instead of `actual` (e.g. `-` instead of the temporary
    /// file standard input was copied to). Errors about other paths are unchanged.
    pub fn with_path(mut self, actual: &Path, shown: &Path) -> Self {
        use AudioError::*;
        match &mut self {
            NotFound { path }
            | IsDirectory { path }
            | NotAFile { path, .. }
            | PermissionDenied { path }
            | EmptyFile { path }
            | UnsupportedFormat { path, .. }
            | Corrupt { path, .. }
            | Truncated { path, .. }
            | NoSamples { path }
            | NonFinite { path, .. }
            | InvalidSampleRate { path, .. }
            | InvalidChannelCount { path, .. }
            | Read { path, .. }
            | Write { path, .. }
            | AlreadyExists { path } => {
                if path == actual {
                    *path = shown.to_path_buf();
                }
            }
            Output(_) | InvalidInput(_) | Resampler(_) => {}
        }
        self
    }

    /// Maps an `io::Error` met while opening or reading `path` to the most specific variant.
    pub(crate) fn from_read(path: &Path, err: io::Error) -> Self {
        let path = path.to_path_buf();
        match err.kind() {
            io::ErrorKind::NotFound => AudioError::NotFound { path },
            io::ErrorKind::PermissionDenied => AudioError::PermissionDenied { path },
            io::ErrorKind::IsADirectory => AudioError::IsDirectory { path },
            _ => AudioError::Read { path, source: err },
        }
    }

    /// Maps an output-layer error met while writing `path` to the most specific variant.
    pub(crate) fn from_fs(path: &Path, err: losatok_fs::FsError) -> Self {
        use losatok_fs::FsError;
        match err {
            FsError::Exists { .. } => AudioError::AlreadyExists {
                path: path.to_path_buf(),
            },
            FsError::IsDirectory { .. } => AudioError::IsDirectory {
                path: path.to_path_buf(),
            },
            FsError::Write { source, .. } => Self::from_write(path, source),
            other => AudioError::Output(other),
        }
    }

    /// Maps an `io::Error` met while writing `path`.
    pub(crate) fn from_write(path: &Path, err: io::Error) -> Self {
        let path = path.to_path_buf();
        match err.kind() {
            io::ErrorKind::PermissionDenied => AudioError::PermissionDenied { path },
            io::ErrorKind::IsADirectory => AudioError::IsDirectory { path },
            io::ErrorKind::AlreadyExists => AudioError::AlreadyExists { path },
            _ => AudioError::Write { path, source: err },
        }
    }

    /// Builds [`AudioError::Corrupt`], flattening the reason to one line.
    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        AudioError::Corrupt {
            path: path.to_path_buf(),
            reason: one_line(reason.into()),
        }
    }

    /// Builds [`AudioError::UnsupportedFormat`], flattening the reason to one line.
    pub(crate) fn unsupported(path: &Path, reason: impl Into<String>) -> Self {
        AudioError::UnsupportedFormat {
            path: path.to_path_buf(),
            reason: one_line(reason.into()),
        }
    }

    /// Builds [`AudioError::Truncated`], flattening the reason to one line.
    pub(crate) fn truncated(path: &Path, reason: impl Into<String>) -> Self {
        AudioError::Truncated {
            path: path.to_path_buf(),
            reason: one_line(reason.into()),
        }
    }
}

/// Replaces line breaks so that messages stay on one line.
fn one_line(s: String) -> String {
    if s.contains(['\n', '\r']) {
        s.replace(['\n', '\r'], " ")
    } else {
        s
    }
}
