//! The error type of the crate.

use std::io;
use std::path::{Path, PathBuf};

/// Largest sample rate accepted when reading a file, in Hz.
pub const MAX_SAMPLE_RATE: u32 = 768_000;

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

    /// The sample rate is 0 or larger than [`MAX_SAMPLE_RATE`].
    #[error(
        "invalid sample rate {rate} Hz in {} (expected 1 to {MAX_SAMPLE_RATE} Hz)",
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

    /// The destination exists and overwriting was not allowed.
    #[error("refusing to overwrite existing file: {}", .path.display())]
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

    /// Maps an `io::Error` met while writing `path`.
    pub(crate) fn from_write(path: &Path, err: io::Error) -> Self {
        let path = path.to_path_buf();
        let err = without_temp_path(err);
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

/// An I/O error without the temporary file's path that `tempfile` adds to its messages
/// ("… at path \"/out/.x.wav.Ab12Cd.tmp\""): the message names the destination instead.
fn without_temp_path(e: std::io::Error) -> std::io::Error {
    let text = e.to_string();
    match text.find(" at path \"") {
        Some(i) if e.get_ref().is_some() => std::io::Error::new(e.kind(), &text[..i]),
        _ => e,
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
