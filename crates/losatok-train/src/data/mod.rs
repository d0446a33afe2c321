//! The training data pipeline: manifests, deterministic sampling of fixed-length 16 kHz mono
//! crops, a prefetching multi-threaded loader and a synthetic demo data set.
//!
//! * [`manifest`]: read JSONL / TSV manifests ([`read_manifest`]) and build one from folders
//!   of audio files ([`build_manifest`]).
//! * [`dataset`]: [`DataConfig`] and [`Dataset`], where the item at global index `g` is a
//!   pure function of `(seed, g)` (plus the manifest and the file contents).
//! * [`loader`]: [`Loader`], which assembles the per-rank [`Batch`] of a training step with
//!   background workers. Batches are identical whatever the number of workers, the timing or
//!   the step the loader was created at, so training resumes bit-exactly.
//! * [`synth`]: a small deterministic multi-domain synthetic data set for the CPU demo.
//!
//! Every failure is a [`DataError`], whose messages are single lines.

pub mod dataset;
pub mod loader;
pub mod manifest;
pub mod synth;

use std::path::PathBuf;

use losatok_audio::AudioError;

pub use dataset::{
    read_crop_16k, DataConfig, Dataset, DomainInfo, Item, ItemInfo, SkipStats, MIN_SEGMENT_SAMPLES,
    SAMPLE_RATE, SEGMENT_MULTIPLE,
};
pub use loader::{Batch, Loader};
pub use manifest::{
    build_manifest, parse_manifest, parse_root_spec, read_manifest, write_manifest, BuildOptions,
    BuildReport, DomainSummary, ManifestEntry, ManifestFormat, DEFAULT_DOMAIN,
};
pub use synth::{eval_clip, synth_clip, synthesize_dataset, SynthKind};

/// Everything that can go wrong in the data pipeline. Every variant displays as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file or folder could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A file could not be written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An output the file layer refuses (a device, a folder, an input as output).
    #[error(transparent)]
    Output(losatok_fs::FsError),

    /// A malformed manifest line.
    #[error("{}:{line}: {message}", .path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },

    /// An audio file could not be decoded.
    #[error("{0}")]
    Audio(#[from] AudioError),

    /// The data configuration (or loader arguments) is invalid.
    #[error("invalid data configuration: {0}")]
    InvalidConfig(String),

    /// Nothing can be sampled (empty manifest, everything filtered out, no audio found, ...).
    #[error("no usable audio: {0}")]
    NoData(String),

    /// Every candidate file drawn for an item failed to load.
    #[error(
        "item {index}: all {attempts} candidate files failed to load ({broken} of {files} files \
         known unreadable); last error: {last}"
    )]
    AllCandidatesFailed {
        /// Global item index.
        index: u64,
        /// Number of draws tried.
        attempts: u32,
        /// Files known to be unreadable.
        broken: usize,
        /// Files that can be sampled.
        files: usize,
        /// The last error met.
        last: String,
    },

    /// A background worker failed unexpectedly.
    #[error("data loader worker failed: {0}")]
    Worker(String),
}

/// Flattens a message to one line.
pub(crate) fn one_line(s: impl Into<String>) -> String {
    let s = s.into();
    if s.contains(['\n', '\r']) {
        s.replace(['\n', '\r'], " ")
    } else {
        s
    }
}
