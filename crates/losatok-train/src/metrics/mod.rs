//! Observability of a training run: a JSONL metrics log, a TensorBoard event file and PNG
//! renderings (spectrograms, loss curves), all kept in the run folder.
//!
//! * [`jsonl`]: [`MetricsLog`], one JSON object per line in `metrics.jsonl`, appended and
//!   flushed per record, trimmed back to the checkpoint step on resume.
//! * [`tfevents`]: [`EventWriter`], a self-contained TensorBoard event-file writer (scalars,
//!   PNG images, WAV audio) with TFRecord framing and CRC-32C.
//! * [`image`]: PNG rendering of log-mel spectrograms ([`spectrogram_png`],
//!   [`before_after_png`]) and of loss curves ([`loss_curves_png`]), with a built-in 5×7 font.
//! * [`RunLogger`]: the three combined for one run folder.
//!
//! # Multi-GPU runs
//!
//! Nothing here coordinates processes. In a multi-process (multi-GPU) run **only rank 0 may
//! open a [`RunLogger`]** (or any of the writers) on the shared run folder; the other ranks
//! simply do not log. Two writers on one folder would interleave `metrics.jsonl` lines and
//! produce two event files with conflicting steps. The caller decides which process is rank 0.
//!
//! Every failure is a [`MetricsError`], whose messages are single lines naming the file.

pub mod image;
pub mod jsonl;
pub mod tfevents;

use std::fs;
use std::path::{Path, PathBuf};

use losatok_audio::{AudioError, WavFormat};

pub use image::{
    before_after_png, loss_curves_png, png_size, spectrogram_png, stacked_spectrograms_png,
    Colormap, Spectrogram, SpectrogramStyle,
};
pub use jsonl::{truncate_after_step, MetricsLog, Truncation, METRICS_FILE};
pub use tfevents::{
    crc32c, encode_wav, masked_crc32c, truncate_events_after_step, EventTruncation, EventWriter,
};

/// Name of the folder (inside the run folder) holding audio and image samples.
pub const SAMPLES_DIR: &str = "samples";

/// Everything that can go wrong while logging. Every variant displays as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A file or folder could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A file or folder could not be created or written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A sample WAV file could not be written.
    #[error("cannot write audio sample {}: {source}", .path.display())]
    Wav {
        /// The WAV file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: AudioError,
    },

    /// A metric name collides with one of the fields every JSONL record carries.
    #[error("metric name {name:?} is reserved in {}", .path.display())]
    ReservedName {
        /// The offending name (`step`, `time` or `wall`).
        name: String,
        /// The metrics file.
        path: PathBuf,
    },

    /// An image could not be encoded as PNG.
    #[error("cannot encode {what} as PNG: {message}")]
    Png {
        /// Which image.
        what: String,
        /// What the encoder said.
        message: String,
    },

    /// Arguments that cannot describe an image or a record (wrong lengths, empty inputs…).
    #[error("invalid input for {what}: {message}")]
    Invalid {
        /// The function or file concerned.
        what: String,
        /// What is wrong.
        message: String,
    },
}

/// Logging for one run folder: `metrics.jsonl` ([`MetricsLog`]), a TensorBoard event file
/// ([`EventWriter`]) and `samples/` (WAV and PNG copies of what is sent to TensorBoard).
///
/// Only rank 0 of a multi-process run should create one (see the [module
/// documentation](self)).
///
/// ```no_run
/// use losatok_train::metrics::RunLogger;
/// let mut log = RunLogger::open("runs/demo", None)?;
/// log.log_scalars(10, &[("loss/total", 1.25), ("lr", 3e-4)])?;
/// log.flush()?;
/// # Ok::<(), losatok_train::metrics::MetricsError>(())
/// ```
#[derive(Debug)]
pub struct RunLogger {
    run_dir: PathBuf,
    jsonl: MetricsLog,
    events: EventWriter,
}

impl RunLogger {
    /// Opens (creating folders as needed) the logs of `run_dir`.
    ///
    /// With `resume_from_step = Some(s)` (the step of the checkpoint a run resumes from; 0 for
    /// a fresh start over the logs of an attempt that never reached a checkpoint), both logs
    /// are cut back to step `s` consistently: records with `step > s` are removed from
    /// `metrics.jsonl` (see [`truncate_after_step`]) and from the event files (see
    /// [`truncate_events_after_step`]); event files left without data are deleted, and the
    /// newest remaining one is continued. Without it (or with no event file left), a new event
    /// file is created.
    pub fn open(
        run_dir: impl AsRef<Path>,
        resume_from_step: Option<u64>,
    ) -> Result<Self, MetricsError> {
        let run_dir = run_dir.as_ref().to_path_buf();
        let jsonl = MetricsLog::open(&run_dir, resume_from_step)?;
        let mut continued = None;
        if let Some(step) = resume_from_step {
            for path in event_files(&run_dir)? {
                if truncate_events_after_step(&path, step)?.kept == 0 {
                    fs::remove_file(&path).map_err(|source| MetricsError::Write {
                        path: path.clone(),
                        source,
                    })?;
                } else {
                    continued = Some(path);
                }
            }
        }
        let mut events = match continued {
            Some(path) => EventWriter::append(&path)?,
            None => EventWriter::create(&run_dir)?,
        };
        events.flush()?;
        Ok(Self {
            run_dir,
            jsonl,
            events,
        })
    }

    /// The run folder.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The JSONL log.
    pub fn jsonl(&mut self) -> &mut MetricsLog {
        &mut self.jsonl
    }

    /// The TensorBoard writer (e.g. for images that need no copy in `samples/`).
    pub fn events(&mut self) -> &mut EventWriter {
        &mut self.events
    }

    /// Logs scalars of `step` to `metrics.jsonl` (full `f64` precision, one line) and to
    /// TensorBoard (as `f32`, one event). Both are written out at once, so a crash loses
    /// neither.
    pub fn log_scalars(&mut self, step: u64, metrics: &[(&str, f64)]) -> Result<(), MetricsError> {
        self.jsonl.log(step, metrics)?;
        self.events.scalars(step, metrics)?;
        self.events.flush()
    }

    /// Logs a mono waveform (`[-1, 1]`, `sample_rate` Hz) to TensorBoard as 16-bit PCM WAV
    /// and writes it (as 32-bit float WAV) to `samples/<tag>_<step>.wav`, where `/` and other
    /// characters unsafe in file names are replaced in `tag` (see [`Self::sample_path`]).
    pub fn log_audio(
        &mut self,
        tag: &str,
        step: u64,
        samples: &[f32],
        sample_rate: u32,
    ) -> Result<(), MetricsError> {
        self.events.audio_wav(tag, step, samples, sample_rate)?;
        self.events.flush()?;
        let path = self.sample_path(tag, step, "wav")?;
        losatok_audio::write_wav(&path, samples, sample_rate, WavFormat::Float32)
            .map_err(|source| MetricsError::Wav { path, source })
    }

    /// Logs a PNG (e.g. from [`spectrogram_png`] or [`before_after_png`]) to TensorBoard and
    /// writes it to `samples/<tag>_<step>.png`. Width and height are read from the PNG header.
    pub fn log_spectrogram(
        &mut self,
        tag: &str,
        step: u64,
        png: &[u8],
    ) -> Result<(), MetricsError> {
        let (width, height) = image::png_size(png).ok_or_else(|| MetricsError::Invalid {
            what: format!("image {tag:?}"),
            message: "not a PNG (no IHDR header)".into(),
        })?;
        self.events.image_png(tag, step, png, width, height)?;
        self.events.flush()?;
        let path = self.sample_path(tag, step, "png")?;
        write_atomic(&path, png)
    }

    /// The path of a sample file, `<run_dir>/samples/<tag>_<step>.<ext>`, creating
    /// `samples/`. Characters of `tag` other than ASCII letters, digits, `-`, `_` and `.` are
    /// replaced by `_` (so `eval/clip0` becomes `eval_clip0`).
    pub fn sample_path(&self, tag: &str, step: u64, ext: &str) -> Result<PathBuf, MetricsError> {
        let dir = self.run_dir.join(SAMPLES_DIR);
        fs::create_dir_all(&dir).map_err(|source| MetricsError::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(dir.join(format!("{}_{step}.{ext}", sanitize_file_name(tag))))
    }

    /// Flushes the TensorBoard writer (JSONL records are flushed as they are written).
    pub fn flush(&mut self) -> Result<(), MetricsError> {
        self.events.flush()
    }
}

/// The TensorBoard event files of a folder, oldest first (their names start with the creation
/// time).
fn event_files(dir: &Path) -> Result<Vec<PathBuf>, MetricsError> {
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                tfevents::is_event_file_name(&e.file_name().to_string_lossy())
                    && e.file_type().is_ok_and(|t| t.is_file())
            })
            .map(|e| e.path())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(MetricsError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    files.sort();
    Ok(files)
}

/// Replaces characters that are unsafe in a file name by `_`.
fn sanitize_file_name(tag: &str) -> String {
    let s: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.trim_start_matches('.') {
        "" => "sample".to_string(),
        t => t.to_string(),
    }
}

/// Writes `bytes` to `path` atomically (see [`losatok_fs::write_atomic`]), replacing it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MetricsError> {
    losatok_fs::write_atomic(path, bytes, true).map_err(|e| fs_error(path, e))
}

/// A file-layer error as a [`MetricsError`].
pub(crate) fn fs_error(path: &Path, e: losatok_fs::FsError) -> MetricsError {
    match e {
        losatok_fs::FsError::Write { path, source } => MetricsError::Write { path, source },
        losatok_fs::FsError::Read { path, source } => MetricsError::Read { path, source },
        other => MetricsError::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_tags() {
        assert_eq!(sanitize_file_name("eval/clip 0"), "eval_clip_0");
        assert_eq!(sanitize_file_name("../x"), "_x");
        assert_eq!(sanitize_file_name(""), "sample");
        assert_eq!(sanitize_file_name("a.b-c_d"), "a.b-c_d");
    }

    /// Writes a small run (with a resume) to `$LOSATOK_METRICS_RUN_DIR` for checking with
    /// TensorBoard's own reader (ignored unless that variable is set).
    #[test]
    fn write_run_for_inspection() {
        let Some(run) = std::env::var_os("LOSATOK_METRICS_RUN_DIR") else {
            return;
        };
        let run = PathBuf::from(run);
        let audio: Vec<f32> = (0..8000)
            .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 16_000.0).sin() * 0.5)
            .collect();
        let db: Vec<f32> = (0..64 * 50).map(|i| -((i / 50) as f32)).collect();
        let png = spectrogram_png(&db, 64, 50, &SpectrogramStyle::default()).unwrap();
        {
            let mut log = RunLogger::open(&run, None).unwrap();
            for step in 1..=10u64 {
                log.log_scalars(step, &[("loss/total", 10.0 / step as f64), ("lr", 1e-3)])
                    .unwrap();
            }
            log.log_audio("eval/clip0", 10, &audio, 16_000).unwrap();
            log.log_spectrogram("eval/mel", 10, &png).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let mut log = RunLogger::open(&run, Some(6)).unwrap();
        for step in 7..=8u64 {
            log.log_scalars(step, &[("loss/total", 100.0 + step as f64)])
                .unwrap();
        }
    }

    #[test]
    fn run_logger_writes_everything_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        {
            let mut log = RunLogger::open(&run, None).unwrap();
            for step in 1..=5u64 {
                log.log_scalars(step, &[("loss", 1.0 / step as f64)])
                    .unwrap();
            }
            let audio: Vec<f32> = (0..1600).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
            log.log_audio("eval/clip0", 5, &audio, 16_000).unwrap();
            let db: Vec<f32> = (0..8 * 10).map(|i| -(i as f32)).collect();
            let png = spectrogram_png(&db, 8, 10, &SpectrogramStyle::default()).unwrap();
            log.log_spectrogram("eval/mel", 5, &png).unwrap();
            log.flush().unwrap();
        }
        assert!(run.join("samples/eval_clip0_5.wav").is_file());
        let png = fs::read(run.join("samples/eval_mel_5.png")).unwrap();
        assert_eq!(image::png_size(&png), Some((10, 16)));

        // Resume from step 3: steps 4 and 5 disappear from both logs, and the event file is
        // continued (not a second one).
        {
            let mut log = RunLogger::open(&run, Some(3)).unwrap();
            log.log_scalars(4, &[("loss", 0.3)]).unwrap();
        }
        let text = fs::read_to_string(run.join(METRICS_FILE)).unwrap();
        let steps: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(steps, vec![1, 2, 3, 4]);
        let n_events = fs::read_dir(&run)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("events.out.tfevents.")
            })
            .count();
        assert_eq!(n_events, 1);
    }
}
