//! Deterministic sampling of fixed-length 16 kHz mono crops from a manifest.
//!
//! # The item at a global index
//!
//! The item at global index `g` (the loader uses `g = step · global_batch + rank ·
//! per_rank_batch + i`) is a pure function of `(seed, g)`, the manifest and the file contents.
//! There is no sampler state: workers, ranks and resumed runs all compute the same item.
//!
//! For attempt `a = 0, 1, 2, ...` a counter-based hash — SplitMix64 chained over
//! `(seed ^ stream, g, a)`, with one stream constant per decision — draws:
//!
//! 1. the **domain**, with probability proportional to its weight
//!    ([`DataConfig::domain_weights`]; missing domains weigh 1, weight 0 excludes a domain);
//! 2. the **file** within the domain, with probability proportional to its duration, so every
//!    second of audio in a domain is equally likely to be cropped (a long file is not
//!    under-sampled). A duration shorter than one segment counts as one segment; files with
//!    unknown duration count as the mean known duration of their domain (or all files count
//!    equally if no duration is known);
//! 3. the **crop offset**, uniform over `0 ..= len16 - segment_samples`, where `len16` is the
//!    file's length at 16 kHz (`ceil(frames · 16000 / sr)`, librosa's rule) with `frames`
//!    from the file header (if the header has none: from the manifest duration, else by
//!    decoding the file once). A file shorter than a segment is cropped at 0 and
//!    zero-padded at the end.
//!
//! If the chosen file cannot be read, attempt `a + 1` draws again (domain, file and offset), so
//! the replacement is deterministic too. Failures are logged once per file
//! (`tracing::warn`, with the path and the one-line error) and counted ([`SkipStats`]).
//! A file whose header cannot be read is remembered as broken and never opened again;
//! its draws are rejected without I/O. After [`MAX_ATTEMPTS`] failed draws for one item,
//! or as soon as every file is known broken, the item is an error
//! ([`DataError::AllCandidatesFailed`]).
//!
//! What is remembered never changes a result: a file is treated as broken only for reasons
//! that would make every crop of it fail (it cannot be opened, its header is invalid, or a
//! WAV file is shorter than its header says), and a decoding error met at native frame `p` of
//! a streamed (compressed) file is remembered as "crops that need frames beyond `p` fail",
//! which is exactly what decoding again would find. (A non-finite sample inside an
//! uncompressed float WAV only fails the crops that contain it; those are re-read, which is
//! cheap with a seek, and warned about once per file.) So results do not depend on which
//! items were computed before, nor by which thread.
//!
//! # Reading a crop
//!
//! A crop must look like `librosa.load(path, sr=16000, mono=True)[offset .. offset + n]`
//! (libsndfile scaling, channel mean, soxr HQ resampling; see `losatok-audio`) without
//! decoding or resampling the whole file:
//!
//! * The native region read is `[a, b)`: `a` is the crop start minus a margin of
//!   [`RESAMPLER_MARGIN`] output samples (32 ms), rounded down to a multiple of
//!   `sr / gcd(sr, 16000)` frames so that the region starts exactly on a 16 kHz output
//!   sample; `b` is the crop end plus the same margin, rounded up. When `b` reaches the end
//!   of the file, the region extends to the end of the stream.
//! * Uncompressed PCM / float WAV (the usual training format) is read with a seek: only the
//!   region's bytes are read. Other formats (FLAC, MP3, Ogg/Vorbis, compressed WAV) are
//!   decoded from the start of the file up to `b` (no seeking); only the region is
//!   down-mixed and resampled, and decoding stops at `b`. Their cost grows with the crop
//!   position: converting long compressed files to WAV, or cutting them into pieces of a
//!   few minutes, keeps loading cheap.
//! * The region is down-mixed with NumPy's mean ([`losatok_audio::downmix_interleaved`]) and
//!   resampled with a fresh [`StreamingResampler`]; the crop is cut out of its output.
//!
//! Accuracy: 16 kHz files, and crops whose region covers the whole file (every file shorter
//! than a segment), are bit-identical to `losatok_audio::load`. Other resampled crops differ
//! from resampling the whole file only by the resampler's edge transient, which the margin
//! pushes out of the crop, and by libsoxr's block-dependent rounding: measured below 3e-7
//! (float rounding) for white noise at 8 to 96 kHz with a margin of 256 samples; the margin
//! used is twice that. Crops are always deterministic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use losatok_audio::{
    downmix_interleaved, resampled_len, AudioDecoder, AudioError, AudioInfo, Container,
    PcmEncoding, StreamingResampler,
};

use super::manifest::ManifestEntry;
use super::DataError;

/// Sample rate of every crop, in Hz.
pub const SAMPLE_RATE: u32 = 16_000;

/// [`DataConfig::segment_samples`] must be a multiple of this (one 25 Hz token of the
/// 16 kHz model).
pub const SEGMENT_MULTIPLE: usize = 640;

/// Smallest allowed [`DataConfig::segment_samples`].
pub const MIN_SEGMENT_SAMPLES: usize = 8192;

/// Draws tried for one item before giving up.
pub const MAX_ATTEMPTS: u32 = 256;

/// Extra 16 kHz output samples resampled on each side of a crop (see the module docs).
pub const RESAMPLER_MARGIN: u64 = 512;

/// Stream constants that separate the hash draws.
const STREAM_DOMAIN: u64 = 0x6a09_e667_f3bc_c908;
const STREAM_FILE: u64 = 0xbb67_ae85_84ca_a73b;
const STREAM_OFFSET: u64 = 0x3c6e_f372_fe94_f82b;

/// Configuration of the data pipeline. Deserialisable (missing fields take their
/// [`Default`] values; unknown fields are an error).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Crop length in 16 kHz samples: a multiple of [`SEGMENT_MULTIPLE`], at least
    /// [`MIN_SEGMENT_SAMPLES`].
    pub segment_samples: usize,
    /// Sampling weight per domain. Domains not listed weigh 1; weight 0 excludes a domain.
    pub domain_weights: BTreeMap<String, f64>,
    /// Seed of every random draw.
    pub seed: u64,
    /// Entries whose known duration (seconds) is below this are not used. Entries without a
    /// duration in the manifest are kept.
    pub min_duration: Option<f64>,
    /// Background worker threads of the [`super::Loader`] (0: load in the calling thread).
    pub workers: usize,
    /// Steps the loader prepares ahead of the one requested.
    pub prefetch: usize,
}

impl Default for DataConfig {
    /// Two-second crops, all domains weighted equally, seed 0, 4 workers, 2 batches ahead.
    fn default() -> Self {
        DataConfig {
            segment_samples: 32_000,
            domain_weights: BTreeMap::new(),
            seed: 0,
            min_duration: None,
            workers: 4,
            prefetch: 2,
        }
    }
}

impl DataConfig {
    /// Checks the segment length, the weights and `min_duration`.
    pub fn validate(&self) -> Result<(), DataError> {
        let n = self.segment_samples;
        if n < MIN_SEGMENT_SAMPLES || !n.is_multiple_of(SEGMENT_MULTIPLE) {
            return Err(DataError::InvalidConfig(format!(
                "segment_samples must be a multiple of {SEGMENT_MULTIPLE} and at least \
                 {MIN_SEGMENT_SAMPLES} (got {n}; e.g. {})",
                n.max(MIN_SEGMENT_SAMPLES).div_ceil(SEGMENT_MULTIPLE) * SEGMENT_MULTIPLE
            )));
        }
        for (domain, &w) in &self.domain_weights {
            if !w.is_finite() || w < 0.0 {
                return Err(DataError::InvalidConfig(format!(
                    "weight of domain {domain:?} must be a finite number >= 0 (got {w})"
                )));
            }
        }
        if let Some(d) = self.min_duration {
            if !d.is_finite() || d < 0.0 {
                return Err(DataError::InvalidConfig(format!(
                    "min_duration must be a finite number of seconds >= 0 (got {d})"
                )));
            }
        }
        Ok(())
    }

    /// Segment length in seconds.
    pub fn segment_seconds(&self) -> f64 {
        self.segment_samples as f64 / f64::from(SAMPLE_RATE)
    }
}

/// Where a crop came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemInfo {
    /// The audio file.
    pub path: PathBuf,
    /// Crop start in 16 kHz samples from the start of the file.
    pub offset: u64,
    /// The file's domain.
    pub domain: String,
    /// Samples of real audio; the rest of the crop is zero padding.
    pub valid_samples: usize,
    /// Global item index.
    pub index: u64,
    /// Draws needed (1 when the first file drawn could be read).
    pub attempts: u32,
}

/// One crop and its origin.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// `segment_samples` samples of 16 kHz mono audio.
    pub audio: Vec<f32>,
    /// Where it came from.
    pub info: ItemInfo,
}

/// A sampling domain after filtering.
#[derive(Clone, Debug, PartialEq)]
pub struct DomainInfo {
    /// Domain name.
    pub name: String,
    /// Sampling weight (> 0).
    pub weight: f64,
    /// Number of files.
    pub files: usize,
    /// Total known duration in seconds.
    pub known_seconds: f64,
}

/// Counters of unreadable audio (see [`Dataset::skipped`]). Items prepared ahead by the
/// loader but never requested are counted too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkipStats {
    /// Distinct files known to be unreadable.
    pub broken_files: usize,
    /// Draws rejected because their file or crop could not be read.
    pub failed_draws: u64,
    /// Items that needed more than one draw.
    pub replaced_items: u64,
}

/// Location of the samples of an uncompressed WAV file, for seeking.
#[derive(Clone, Copy, Debug)]
struct WavLayout {
    data_offset: u64,
    encoding: PcmEncoding,
}

/// What is known about a readable file.
#[derive(Clone, Debug)]
struct FileMeta {
    sample_rate: u32,
    channels: usize,
    /// Native frames used to place crops (exact, except for some MP3 files whose header
    /// only estimates it, and for streamed files measured from the manifest duration).
    frames: u64,
    /// Set for uncompressed WAV: crops are read with a seek.
    wav: Option<WavLayout>,
}

impl FileMeta {
    fn len16(&self) -> u64 {
        resampled_len(self.frames, self.sample_rate, SAMPLE_RATE)
    }
}

#[derive(Clone, Debug)]
enum FileState {
    Ready {
        meta: Arc<FileMeta>,
        /// Streamed files: decoding fails after this many native frames, with this error.
        fail_after: Option<(u64, Arc<str>)>,
    },
    Broken(Arc<str>),
}

struct FileRec {
    path: PathBuf,
    domain: usize,
    duration: Option<f64>,
}

struct DomainTable {
    info: DomainInfo,
    files: Vec<usize>,
    /// Cumulative file weights (last element = total).
    cum: Vec<f64>,
}

/// A failed crop read.
struct CropFailure {
    error: AudioError,
    /// The error is a property of the whole file (every crop would fail).
    whole_file: bool,
    /// For streamed files: native frames decoded without error before the failure.
    decoded_ok: Option<u64>,
}

impl From<AudioError> for CropFailure {
    fn from(error: AudioError) -> Self {
        CropFailure {
            error,
            whole_file: true,
            decoded_ok: None,
        }
    }
}

/// The sampling tables of a manifest plus a shared cache of file headers and failures.
/// Safe to share between threads (`Arc<Dataset>`).
pub struct Dataset {
    segment: usize,
    seed: u64,
    files: Vec<FileRec>,
    domains: Vec<DomainTable>,
    domain_cum: Vec<f64>,
    cache: RwLock<HashMap<usize, FileState>>,
    warned: Mutex<HashSet<usize>>,
    broken: AtomicUsize,
    failed_draws: AtomicU64,
    replaced_items: AtomicU64,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("segment", &self.segment)
            .field("seed", &self.seed)
            .field("files", &self.files.len())
            .field("domains", &self.domain_infos())
            .finish_non_exhaustive()
    }
}

impl Dataset {
    /// Builds the sampling tables. Entries of zero-weight domains and entries shorter than
    /// `min_duration` are dropped; errors if the configuration is invalid or nothing is left.
    /// Files are not opened here.
    pub fn new(entries: Vec<ManifestEntry>, config: &DataConfig) -> Result<Self, DataError> {
        config.validate()?;
        let total_entries = entries.len();
        let seg_secs = config.segment_seconds();
        // Domains in name order, so the tables do not depend on the manifest order of domains.
        let mut by_domain: BTreeMap<String, Vec<ManifestEntry>> = BTreeMap::new();
        let mut too_short = 0usize;
        for e in entries {
            if let (Some(min), Some(d)) = (config.min_duration, e.duration) {
                if d < min {
                    too_short += 1;
                    continue;
                }
            }
            by_domain.entry(e.domain.clone()).or_default().push(e);
        }
        for name in config.domain_weights.keys() {
            if !by_domain.contains_key(name) {
                tracing::warn!("domain weight given for {name:?}, which has no manifest entries");
            }
        }
        let mut files = Vec::new();
        let mut domains = Vec::new();
        let mut domain_cum = Vec::new();
        let mut total_weight = 0.0;
        let mut excluded = Vec::new();
        for (name, list) in by_domain {
            let weight = config.domain_weights.get(&name).copied().unwrap_or(1.0);
            if weight == 0.0 {
                excluded.push(name);
                continue;
            }
            let known: Vec<f64> = list
                .iter()
                .filter_map(|e| e.duration)
                .map(|d| d.max(seg_secs))
                .collect();
            let fallback = if known.is_empty() {
                1.0
            } else {
                known.iter().sum::<f64>() / known.len() as f64
            };
            let d_index = domains.len();
            let mut cum = Vec::with_capacity(list.len());
            let mut acc = 0.0;
            let mut ids = Vec::with_capacity(list.len());
            let mut known_seconds = 0.0;
            for e in list {
                acc += e.duration.map_or(fallback, |d| d.max(seg_secs));
                known_seconds += e.duration.unwrap_or(0.0);
                cum.push(acc);
                ids.push(files.len());
                files.push(FileRec {
                    path: e.path,
                    domain: d_index,
                    duration: e.duration,
                });
            }
            total_weight += weight;
            domain_cum.push(total_weight);
            domains.push(DomainTable {
                info: DomainInfo {
                    name,
                    weight,
                    files: ids.len(),
                    known_seconds,
                },
                files: ids,
                cum,
            });
        }
        if domains.is_empty() {
            let mut why = format!("the manifest has {total_entries} entries");
            if too_short > 0 {
                why += &format!(", {too_short} shorter than min_duration");
            }
            if !excluded.is_empty() {
                why += &format!(", domains with weight 0: {}", excluded.join(", "));
            }
            return Err(DataError::NoData(why));
        }
        Ok(Dataset {
            segment: config.segment_samples,
            seed: config.seed,
            files,
            domains,
            domain_cum,
            cache: RwLock::new(HashMap::new()),
            warned: Mutex::new(HashSet::new()),
            broken: AtomicUsize::new(0),
            failed_draws: AtomicU64::new(0),
            replaced_items: AtomicU64::new(0),
        })
    }

    /// Crop length in 16 kHz samples.
    pub fn segment_samples(&self) -> usize {
        self.segment
    }

    /// Number of files that can be sampled.
    pub fn num_files(&self) -> usize {
        self.files.len()
    }

    /// The sampling domains, in name order.
    pub fn domain_infos(&self) -> Vec<DomainInfo> {
        self.domains.iter().map(|d| d.info.clone()).collect()
    }

    /// Counters of unreadable files and replaced draws so far.
    pub fn skipped(&self) -> SkipStats {
        SkipStats {
            broken_files: self.broken.load(Ordering::Relaxed),
            failed_draws: self.failed_draws.load(Ordering::Relaxed),
            replaced_items: self.replaced_items.load(Ordering::Relaxed),
        }
    }

    /// The files known to be unreadable, with their one-line error, in manifest order.
    pub fn broken_files(&self) -> Vec<(PathBuf, String)> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(usize, String)> = cache
            .iter()
            .filter_map(|(&i, s)| match s {
                FileState::Broken(msg) => Some((i, msg.to_string())),
                FileState::Ready { .. } => None,
            })
            .collect();
        out.sort();
        out.into_iter()
            .map(|(i, m)| (self.files[i].path.clone(), m))
            .collect()
    }

    /// The (domain name, file path) drawn for `index` at `attempt`, without reading anything.
    /// A pure function of the seed, the index, the attempt and the manifest.
    pub fn draw(&self, index: u64, attempt: u32) -> (&str, &Path) {
        let f = self.draw_file(index, attempt);
        let rec = &self.files[f];
        (&self.domains[rec.domain].info.name, &rec.path)
    }

    fn draw_file(&self, index: u64, attempt: u32) -> usize {
        let u = unit(hash(self.seed, index, attempt, STREAM_DOMAIN));
        let d = &self.domains[pick(&self.domain_cum, u)];
        let u = unit(hash(self.seed, index, attempt, STREAM_FILE));
        d.files[pick(&d.cum, u)]
    }

    /// The crop at global index `index`: see the module documentation. Unreadable files are
    /// replaced by further draws; errors only if [`MAX_ATTEMPTS`] draws fail or every file is
    /// known to be unreadable.
    pub fn item(&self, index: u64) -> Result<Item, DataError> {
        let mut last = String::new();
        for attempt in 0..MAX_ATTEMPTS {
            let f = self.draw_file(index, attempt);
            match self.try_file(f, index, attempt) {
                Ok((audio, offset, valid)) => {
                    if attempt > 0 {
                        self.replaced_items.fetch_add(1, Ordering::Relaxed);
                    }
                    let rec = &self.files[f];
                    return Ok(Item {
                        audio,
                        info: ItemInfo {
                            path: rec.path.clone(),
                            offset,
                            domain: self.domains[rec.domain].info.name.clone(),
                            valid_samples: valid,
                            index,
                            attempts: attempt + 1,
                        },
                    });
                }
                Err(msg) => {
                    self.failed_draws.fetch_add(1, Ordering::Relaxed);
                    last = msg.to_string();
                    let broken = self.broken.load(Ordering::Relaxed);
                    if broken >= self.files.len() {
                        return Err(DataError::NoData(format!(
                            "all {} audio files are unreadable (last error: {last})",
                            self.files.len()
                        )));
                    }
                }
            }
        }
        Err(DataError::AllCandidatesFailed {
            index,
            attempts: MAX_ATTEMPTS,
            broken: self.broken.load(Ordering::Relaxed),
            files: self.files.len(),
            last,
        })
    }

    /// Reads the crop of file `f` for `(index, attempt)`: `(audio, offset, valid samples)`.
    fn try_file(
        &self,
        f: usize,
        index: u64,
        attempt: u32,
    ) -> Result<(Vec<f32>, u64, usize), Arc<str>> {
        let (meta, fail_after) = match self.state(f) {
            FileState::Broken(msg) => return Err(msg),
            FileState::Ready { meta, fail_after } => (meta, fail_after),
        };
        let len16 = meta.len16();
        let span = len16.saturating_sub(self.segment as u64);
        let offset = if span == 0 {
            0
        } else {
            uniform(hash(self.seed, index, attempt, STREAM_OFFSET), span + 1)
        };
        let plan = Plan::new(&meta, offset, self.segment);
        if let Some((ok, msg)) = &fail_after {
            // A streamed file that failed after `ok` frames fails for every region that
            // needs more (the decoder would meet the same error again).
            if plan.needs_beyond(*ok) {
                return Err(msg.clone());
            }
        }
        let path = &self.files[f].path;
        match read_plan(path, &meta, &plan, self.segment) {
            Ok((audio, valid)) => Ok((audio, offset, valid)),
            Err(fail) => {
                let msg: Arc<str> = Arc::from(fail.error.to_string());
                // A decoding failure before the end of the earliest possible region fails
                // every crop: the whole file is unusable.
                let whole_file = fail.whole_file
                    || fail
                        .decoded_ok
                        .is_some_and(|ok| Plan::new(&meta, 0, self.segment).needs_beyond(ok));
                let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
                if whole_file {
                    if !matches!(cache.get(&f), Some(FileState::Broken(_))) {
                        cache.insert(f, FileState::Broken(msg.clone()));
                        drop(cache);
                        self.broken.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            path = %path.display(),
                            "skipping unreadable audio file: {msg}"
                        );
                    }
                } else {
                    if let Some(ok) = fail.decoded_ok {
                        if let Some(FileState::Ready { fail_after, .. }) = cache.get_mut(&f) {
                            match fail_after {
                                Some((prev, _)) if *prev <= ok => {}
                                _ => *fail_after = Some((ok, msg.clone())),
                            }
                        }
                    }
                    drop(cache);
                    let first = self
                        .warned
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(f);
                    if first {
                        tracing::warn!(
                            path = %path.display(),
                            "skipping unreadable part of audio file: {msg}"
                        );
                    }
                }
                Err(msg)
            }
        }
    }

    /// The cached state of file `f`, probing it on first use.
    fn state(&self, f: usize) -> FileState {
        if let Some(s) = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(&f) {
            return s.clone();
        }
        let rec = &self.files[f];
        let state = match file_meta(&rec.path, rec.duration) {
            Ok(meta) => FileState::Ready {
                meta: Arc::new(meta),
                fail_after: None,
            },
            Err(e) => FileState::Broken(Arc::from(e.to_string())),
        };
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = cache.get(&f) {
            return s.clone();
        }
        cache.insert(f, state.clone());
        drop(cache);
        if let FileState::Broken(msg) = &state {
            self.broken.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(path = %rec.path.display(), "skipping unreadable audio file: {msg}");
        }
        state
    }
}

/// SplitMix64's output function applied to `z` (a bijection of `u64`).
fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The counter-based hash of one draw.
fn hash(seed: u64, index: u64, attempt: u32, stream: u64) -> u64 {
    let h = splitmix64(seed ^ stream);
    let h = splitmix64(h ^ index);
    splitmix64(h ^ u64::from(attempt))
}

/// Uniform in `[0, 1)` from the top 53 bits.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform in `0..n` (multiply-shift; the bias is below `n / 2^64`).
fn uniform(h: u64, n: u64) -> u64 {
    ((u128::from(h) * u128::from(n)) >> 64) as u64
}

/// Index of the cumulative-weight bucket containing `u * total`.
fn pick(cum: &[f64], u: f64) -> usize {
    let total = cum.last().copied().unwrap_or(0.0);
    let target = u * total;
    cum.partition_point(|&c| c <= target).min(cum.len() - 1)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Reads the header of `path` (and, for uncompressed WAV, the position of its samples).
/// Errors are whole-file failures.
fn file_meta(path: &Path, manifest_duration: Option<f64>) -> Result<FileMeta, AudioError> {
    let mut dec = AudioDecoder::open(path)?;
    let info = dec.info().clone();
    if info.container == Container::Wav {
        if let Some(encoding) = PcmEncoding::from_codec_name(info.codec) {
            if let Some((data_offset, frames)) = wav_layout(path, &info, encoding)? {
                if frames == 0 {
                    return Err(AudioError::NoSamples {
                        path: path.to_path_buf(),
                    });
                }
                return Ok(FileMeta {
                    sample_rate: info.sample_rate,
                    channels: info.channels,
                    frames,
                    wav: Some(WavLayout {
                        data_offset,
                        encoding,
                    }),
                });
            }
        }
    }
    let frames = match (info.frames, manifest_duration) {
        (Some(n), _) => n,
        (None, Some(d)) => (d * f64::from(info.sample_rate)).round() as u64,
        (None, None) => {
            // No length anywhere: decode once to count the frames.
            while dec.next_block()?.is_some() {}
            dec.frames_decoded()
        }
    };
    if frames == 0 {
        return Err(AudioError::NoSamples {
            path: path.to_path_buf(),
        });
    }
    Ok(FileMeta {
        sample_rate: info.sample_rate,
        channels: info.channels,
        frames,
        wav: None,
    })
}

/// Finds the data chunk of an uncompressed WAV file: `(byte offset, frames)`. A data chunk
/// longer than the file is an error, as when `losatok-audio` reads it to the end. `None`
/// if the layout is not the simple one expected (the file is then streamed instead).
fn wav_layout(
    path: &Path,
    info: &AudioInfo,
    encoding: PcmEncoding,
) -> Result<Option<(u64, u64)>, AudioError> {
    let read_err = |e: std::io::Error| AudioError::Read {
        path: path.to_path_buf(),
        source: e,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let file_len = file.metadata().map_err(read_err)?.len();
    let mut head = [0u8; 12];
    if file.read_exact(&mut head).is_err() || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return Ok(None);
    }
    let mut pos = 12u64;
    let frame_bytes = (info.channels * encoding.width()) as u64;
    loop {
        let mut hdr = [0u8; 8];
        if file.read_exact(&mut hdr).is_err() {
            return Ok(None);
        }
        let size = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        pos += 8;
        if &hdr[0..4] == b"data" {
            let available = file_len.saturating_sub(pos);
            let frames = if size == u32::MAX {
                available / frame_bytes
            } else {
                let announced = u64::from(size) / frame_bytes;
                if available < announced * frame_bytes {
                    return Err(AudioError::Truncated {
                        path: path.to_path_buf(),
                        reason: format!(
                            "the WAV header announces {announced} frames but the file holds {}",
                            available / frame_bytes
                        ),
                    });
                }
                announced
            };
            if info.frames.is_some_and(|n| n != frames) {
                return Ok(None);
            }
            return Ok(Some((pos, frames)));
        }
        pos += u64::from(size) + u64::from(size & 1);
        if pos > file_len {
            return Ok(None);
        }
        file.seek(SeekFrom::Start(pos)).map_err(read_err)?;
    }
}

/// The native region to read for one crop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    /// First native frame.
    start: u64,
    /// End native frame (exclusive); `None`: to the end of the stream.
    end: Option<u64>,
    /// Output samples of the region to drop before the crop.
    skip: u64,
    /// Whether the region is resampled.
    resample: bool,
}

impl Plan {
    fn new(meta: &FileMeta, offset: u64, segment: usize) -> Plan {
        let sr = u64::from(meta.sample_rate);
        let out = u64::from(SAMPLE_RATE);
        let seg = segment as u64;
        if sr == out {
            let end = offset + seg;
            return Plan {
                start: offset,
                end: (end < meta.frames).then_some(end),
                skip: 0,
                resample: false,
            };
        }
        let g = gcd(sr, out);
        let (in_step, out_step) = (sr / g, out / g);
        let k = offset.saturating_sub(RESAMPLER_MARGIN) / out_step;
        let out_end = u128::from(offset + seg + RESAMPLER_MARGIN);
        let end = (out_end * u128::from(sr)).div_ceil(u128::from(out));
        let end = u64::try_from(end).unwrap_or(u64::MAX);
        Plan {
            start: k * in_step,
            end: (end < meta.frames).then_some(end),
            skip: offset - k * out_step,
            resample: true,
        }
    }

    /// Whether reading the region decodes beyond native frame `frames`.
    fn needs_beyond(&self, frames: u64) -> bool {
        self.end.is_none_or(|e| e > frames)
    }
}

/// Reads a crop of `segment` samples following `plan`: `(audio, valid samples)`.
fn read_plan(
    path: &Path,
    meta: &FileMeta,
    plan: &Plan,
    segment: usize,
) -> Result<(Vec<f32>, usize), CropFailure> {
    let mono = match meta.wav {
        Some(layout) => read_wav_region(path, meta, layout, plan)?,
        None => read_streamed_region(path, meta, plan)?,
    };
    let resampled = if plan.resample {
        let mut r = StreamingResampler::to_16k(meta.sample_rate)?;
        let mut out = Vec::with_capacity(segment + 2 * RESAMPLER_MARGIN as usize + 1024);
        r.process(&mono, &mut out)?;
        r.finish(&mut out)?;
        out
    } else {
        mono
    };
    let skip = (plan.skip as usize).min(resampled.len());
    let avail = &resampled[skip..];
    let valid = avail.len().min(segment);
    let mut audio = vec![0f32; segment];
    audio[..valid].copy_from_slice(&avail[..valid]);
    Ok((audio, valid))
}

/// Uncompressed WAV: seek to the region and convert only its bytes.
fn read_wav_region(
    path: &Path,
    meta: &FileMeta,
    layout: WavLayout,
    plan: &Plan,
) -> Result<Vec<f32>, CropFailure> {
    let read_err = |e: std::io::Error| AudioError::Read {
        path: path.to_path_buf(),
        source: e,
    };
    let start = plan.start.min(meta.frames);
    let end = plan.end.unwrap_or(meta.frames).min(meta.frames);
    let frame_bytes = (meta.channels * layout.encoding.width()) as u64;
    let mut file = File::open(path).map_err(read_err)?;
    file.seek(SeekFrom::Start(layout.data_offset + start * frame_bytes))
        .map_err(read_err)?;
    let mut raw = vec![0u8; ((end - start) * frame_bytes) as usize];
    file.read_exact(&mut raw).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            AudioError::Truncated {
                path: path.to_path_buf(),
                reason: "the file became shorter than its header says".into(),
            }
        } else {
            read_err(e)
        }
    })?;
    let mut interleaved = Vec::new();
    layout.encoding.convert(&raw, &mut interleaved);
    if layout.encoding.is_float() {
        if let Some(i) = interleaved.iter().position(|x| !x.is_finite()) {
            return Err(CropFailure {
                error: AudioError::NonFinite {
                    path: path.to_path_buf(),
                    frame: start + (i / meta.channels) as u64,
                },
                whole_file: false,
                decoded_ok: None,
            });
        }
    }
    let mut mono = Vec::with_capacity((end - start) as usize);
    downmix_interleaved(&interleaved, meta.channels, &mut mono);
    Ok(mono)
}

/// Other formats: decode from the start, keep the region, stop at its end.
fn read_streamed_region(
    path: &Path,
    meta: &FileMeta,
    plan: &Plan,
) -> Result<Vec<f32>, CropFailure> {
    let mut dec = AudioDecoder::open(path)?;
    let channels = dec.info().channels;
    if channels != meta.channels || dec.info().sample_rate != meta.sample_rate {
        return Err(AudioError::Corrupt {
            path: path.to_path_buf(),
            reason: "the file changed while training".into(),
        }
        .into());
    }
    let end = plan.end.unwrap_or(u64::MAX);
    let mut mono = Vec::new();
    let mut pos = 0u64;
    while pos < end {
        let block = match dec.next_block() {
            Ok(Some(block)) => block,
            Ok(None) => break,
            Err(error) => {
                return Err(CropFailure {
                    error,
                    whole_file: false,
                    decoded_ok: Some(pos),
                })
            }
        };
        let n = (block.len() / channels) as u64;
        let s = plan.start.max(pos);
        let e = (pos + n).min(end);
        if s < e {
            let from = ((s - pos) as usize) * channels;
            let to = ((e - pos) as usize) * channels;
            downmix_interleaved(&block[from..to], channels, &mut mono);
        }
        pos += n;
    }
    Ok(mono)
}

/// Reads `len` samples of 16 kHz mono audio from `path` starting at 16 kHz sample `offset`,
/// with the same region reading and resampling as the training crops (see the module
/// documentation), zero-padded at the end: `(audio, valid samples)`.
pub fn read_crop_16k(path: &Path, offset: u64, len: usize) -> Result<(Vec<f32>, usize), DataError> {
    let meta = file_meta(path, None)?;
    let plan = Plan::new(&meta, offset, len);
    read_plan(path, &meta, &plan, len).map_err(|f| DataError::Audio(f.error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_pure_and_spread() {
        assert_eq!(hash(1, 2, 3, STREAM_FILE), hash(1, 2, 3, STREAM_FILE));
        assert_ne!(hash(1, 2, 3, STREAM_FILE), hash(1, 2, 4, STREAM_FILE));
        assert_ne!(hash(1, 2, 3, STREAM_FILE), hash(1, 2, 3, STREAM_DOMAIN));
        assert_ne!(hash(1, 2, 3, STREAM_FILE), hash(2, 2, 3, STREAM_FILE));
        let mean: f64 = (0..10_000u64)
            .map(|i| unit(hash(7, i, 0, STREAM_OFFSET)))
            .sum::<f64>()
            / 10_000.0;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        for n in [1u64, 2, 7, 1000] {
            assert!((0..1000u64).all(|i| uniform(hash(0, i, 0, 0), n) < n));
        }
    }

    #[test]
    fn pick_respects_buckets() {
        let cum = [1.0, 1.0, 4.0];
        assert_eq!(pick(&cum, 0.0), 0);
        assert_eq!(pick(&cum, 0.2), 0);
        assert_eq!(pick(&cum, 0.25), 2); // the empty bucket 1 is never chosen
        assert_eq!(pick(&cum, 0.999_999), 2);
    }

    #[test]
    fn segment_validation() {
        let mut c = DataConfig::default();
        assert!(c.validate().is_ok());
        for bad in [0, 640, 8192, 8200, 16_001] {
            c.segment_samples = bad;
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("multiple of 640"), "{e}");
        }
        c.segment_samples = 8320;
        assert!(c.validate().is_ok());
        c.domain_weights.insert("speech".into(), -1.0);
        assert!(c.validate().is_err());
        c.domain_weights.insert("speech".into(), f64::NAN);
        assert!(c.validate().is_err());
        c.domain_weights.clear();
        c.min_duration = Some(f64::INFINITY);
        assert!(c.validate().is_err());
    }

    #[test]
    fn plans_align_on_output_samples() {
        let meta = FileMeta {
            sample_rate: 44_100,
            channels: 1,
            frames: 441_000,
            wav: None,
        };
        let p = Plan::new(&meta, 50_000, 16_000);
        // Start on a multiple of 441 native frames = 160 output samples.
        assert_eq!(p.start % 441, 0);
        let out_start = p.start / 441 * 160;
        assert_eq!(out_start + p.skip, 50_000);
        assert!(p.skip >= RESAMPLER_MARGIN);
        assert!(p.end.unwrap() >= (50_000 + 16_000 + RESAMPLER_MARGIN) * 441 / 160);
        // Near the end the region runs to the end of the stream.
        let last = meta.len16() - 16_000;
        assert_eq!(Plan::new(&meta, last, 16_000).end, None);
        // 16 kHz: no resampling, exact region.
        let meta16 = FileMeta {
            sample_rate: 16_000,
            ..meta
        };
        let p = Plan::new(&meta16, 100, 16_000);
        assert_eq!(
            (p.start, p.end, p.skip, p.resample),
            (100, Some(16_100), 0, false)
        );
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;
    use losatok_audio::{load, WavFormat, WavSpec, WavWriter};

    fn write_pcm16(path: &Path, sr: u32, channels: u16, seconds: f64) {
        let frames = (seconds * f64::from(sr)) as usize;
        let mut s = 1u64;
        let mut data = Vec::with_capacity(frames * usize::from(channels));
        for i in 0..frames {
            for c in 0..channels {
                s = splitmix64(s);
                let noise = (unit(s) - 0.5) * 0.2;
                let t = i as f64 / f64::from(sr);
                let tone =
                    0.5 * (2.0 * std::f64::consts::PI * (220.0 + 110.0 * f64::from(c)) * t).sin();
                data.push((tone + noise) as f32);
            }
        }
        let spec = WavSpec {
            sample_rate: sr,
            channels,
            format: WavFormat::Pcm16,
        };
        let mut w = WavWriter::create(path, spec).unwrap();
        w.write(&data).unwrap();
        w.finish().unwrap();
    }

    /// The seek path and the streaming path give bit-identical crops, close to `load`.
    #[test]
    fn seek_and_stream_paths_agree() {
        let dir = tempfile::tempdir().unwrap();
        let seg = 8320usize;
        for (sr, ch) in [(44_100u32, 2u16), (16_000, 1), (22_050, 3), (8_000, 1)] {
            let path = dir.path().join(format!("t{sr}_{ch}.wav"));
            write_pcm16(&path, sr, ch, 2.5);
            let meta = file_meta(&path, None).unwrap();
            assert!(meta.wav.is_some());
            let streamed = FileMeta {
                wav: None,
                ..meta.clone()
            };
            let full = load(&path).unwrap();
            assert_eq!(meta.len16(), full.len() as u64);
            let last = meta.len16() - seg as u64;
            for offset in [0, 1, 1234, last / 2, last - 7, last] {
                let plan = Plan::new(&meta, offset, seg);
                let (a, va) = read_plan(&path, &meta, &plan, seg)
                    .map_err(|f| f.error)
                    .unwrap();
                let (b, vb) = read_plan(&path, &streamed, &plan, seg)
                    .map_err(|f| f.error)
                    .unwrap();
                assert_eq!((va, vb), (seg, seg));
                assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
                let want = &full[offset as usize..offset as usize + seg];
                let err = a
                    .iter()
                    .zip(want)
                    .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                if sr == 16_000 || (plan.start == 0 && plan.end.is_none()) {
                    assert_eq!(err, 0.0, "sr {sr} offset {offset}");
                } else {
                    assert!(err < 1e-5, "sr {sr} offset {offset}: {err}");
                }
            }
        }
    }
}
