//! [`Tokenizer`]: load once, then encode / decode / reconstruct tensors or files.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use burn::prelude::*;
use losatok_audio::{Mono16kStream, WavFormat, WavSpec, WavWriter};
use losatok_models::checkpoint::{load_losatok, open_losatok_checkpoint, LoadReport};
use losatok_models::chunked::{
    rows, ChunkedDecoder, ChunkedEncoder, DbScanner, SignalSummary, StreamError, MIN_SAMPLES,
};
use losatok_models::{Features, Losatok, LosatokConfig, Sampling};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::features_file::{FeatureFile, FeatureMetadata, FeatureWriter};

/// The features `encode` writes unless all are asked for.
pub const DEFAULT_FEATURES: [&str; 3] = ["z", "mu", "logvar"];

/// Where a long-running file operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// 1: scanning the level (encoding inputs only), 2: processing.
    pub pass: u8,
    /// Passes this operation makes.
    pub passes: u8,
    /// 16 kHz samples (or latent frames for `decode`) done in this pass.
    pub done: u64,
    /// The total, when known in advance.
    pub total: Option<u64>,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// Options of the file operations.
#[derive(Clone, Default)]
pub struct FileOptions {
    /// `z = mu` or a seeded sample.
    pub sampling: Sampling,
    /// Use only the first seconds of the input (`--max-duration`).
    pub max_duration: Option<f64>,
    /// Replace existing outputs.
    pub overwrite: bool,
    /// Output wav sample format.
    pub wav_format: WavFormat,
    /// `encode`: write all nine features instead of `z`, `mu`, `logvar`.
    pub all_features: bool,
    /// `reconstruct`: also write all nine features here.
    pub save_features: Option<PathBuf>,
    /// Called as the work advances.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for FileOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileOptions")
            .field("sampling", &self.sampling)
            .field("max_duration", &self.max_duration)
            .field("overwrite", &self.overwrite)
            .field("wav_format", &self.wav_format)
            .field("all_features", &self.all_features)
            .field("save_features", &self.save_features)
            .finish_non_exhaustive()
    }
}

/// What a file operation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileSummary {
    /// 16 kHz input samples used.
    pub input_samples: u64,
    /// Latent frames.
    pub frames: u64,
    /// Output samples written (0 for `encode`).
    pub output_samples: u64,
    /// Things the caller should know that did not stop the work (e.g. a feature file made
    /// with another checkpoint than the one decoding it), one line each.
    pub warnings: Vec<String>,
}

/// The checks every file operation makes before reading anything: each output is new (or may
/// be replaced), is not a device or folder, is not the input (also through links), and the
/// outputs are distinct. Nothing is created. Callers may run it early to fail fast.
pub fn check_file_outputs(input: &Path, outputs: &[&Path], replace: bool) -> Result<(), Error> {
    for (i, out) in outputs.iter().enumerate() {
        losatok_fs::check_distinct(input, out).map_err(|e| Error::from_fs(out, e))?;
        losatok_fs::Target::resolve(out, replace).map_err(|e| Error::from_fs(out, e))?;
        for other in &outputs[..i] {
            if other == out || losatok_fs::same_file(other, out) {
                return Err(Error::InvalidInput(format!(
                    "{} is given as two different outputs",
                    out.display()
                )));
            }
        }
    }
    Ok(())
}

/// A loaded LoSATok model ready to encode and decode.
pub struct Tokenizer<B: Backend> {
    model: Losatok<B>,
    config: LosatokConfig,
    checkpoint_sha256: String,
    report: Option<LoadReport>,
    chunks_per_step: usize,
    decode_window: usize,
}

/// SHA-256 of files read in order (streamed; the checkpoint is never held in memory twice).
/// Gives up with `None` as soon as `cancel` is set.
fn sha256_of(paths: &[PathBuf], cancel: &AtomicBool) -> Result<Option<String>, Error> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for p in paths {
        let mut f = std::fs::File::open(p).map_err(|e| Error::Read {
            path: p.clone(),
            message: e.to_string(),
        })?;
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::Read {
                path: p.clone(),
                message: e.to_string(),
            })?;
            if n == 0 {
                break;
            }
            if cancel.load(Ordering::Relaxed) {
                return Ok(None);
            }
            h.update(&buf[..n]);
        }
    }
    Ok(Some(
        h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    ))
}

/// A file's 16 kHz mono blocks as [`Mono16kStream`] reads them, cut at `max_samples`, for
/// [`Tokenizer::encode_stream`]. After each block, `on_block(samples so far, total)` is called
/// (the total when the file's length is known in advance).
pub fn file_blocks(
    path: &Path,
    max_samples: Option<u64>,
    on_block: impl Fn(u64, Option<u64>),
) -> Result<impl Iterator<Item = Result<Vec<f32>, Error>>, Error> {
    let stream = Mono16kStream::open(path)?;
    let total = stream
        .info()
        .frames
        .map(|f| losatok_audio::resampled_len(f, stream.sample_rate(), 16_000) as u64)
        .map(|t| max_samples.map_or(t, |m| t.min(m)));
    let mut done = 0u64;
    let mut stream = Some(stream);
    Ok(std::iter::from_fn(move || {
        let s = stream.as_mut()?;
        if max_samples.is_some_and(|m| done >= m) {
            stream = None;
            return None;
        }
        match s.next_block() {
            Ok(Some(mut block)) => {
                if let Some(m) = max_samples {
                    block.truncate((m - done).min(block.len() as u64) as usize);
                }
                done += block.len() as u64;
                on_block(done, total);
                Some(Ok(block))
            }
            Ok(None) => {
                stream = None;
                None
            }
            Err(e) => {
                stream = None;
                Some(Err(e.into()))
            }
        }
    }))
}

impl<B: Backend> Tokenizer<B> {
    /// Load a LoSATok checkpoint (`losatok_kl1e-*.pth`, raw or `{"state_dict": …}`, or a
    /// safetensors export) built with `config`. If the checkpoint lacks the semantic encoder,
    /// the config's `semantic_encoder_path` supplies it.
    pub fn load(
        checkpoint: &Path,
        config: &LosatokConfig,
        device: &B::Device,
    ) -> Result<Self, Error> {
        let source = open_losatok_checkpoint(checkpoint, config)?;
        // Hash the files on a second thread while the weights load (loading is single-threaded;
        // both read the same pages). A failed load cancels the hash.
        let files = source.paths();
        let cancel = Arc::new(AtomicBool::new(false));
        let hashing = {
            let cancel = Arc::clone(&cancel);
            std::thread::spawn(move || sha256_of(&files, &cancel))
        };
        let loaded = load_losatok::<B>(config, &source, checkpoint, device);
        if loaded.is_err() {
            cancel.store(true, Ordering::Relaxed);
        }
        let hashed = hashing
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let (model, config, report) = loaded?;
        let sha = hashed?.expect("hash is cancelled only when loading failed");
        tracing::info!(
            tensors = report.tensors,
            qkv_bias = report.qkv_bias,
            layer_scale = report.layer_scale,
            "loaded {}",
            checkpoint.display()
        );
        Ok(Self {
            checkpoint_sha256: sha,
            report: Some(report),
            ..Self::from_model(model, config)
        })
    }

    /// Wrap a model built or trained in this process.
    pub fn from_model(model: Losatok<B>, config: LosatokConfig) -> Self {
        Self {
            model,
            config,
            checkpoint_sha256: String::new(),
            report: None,
            chunks_per_step: 1,
            decode_window: 250,
        }
    }

    /// Full 252-token chunks (10.08 s) run through the encoder together in file operations
    /// (default 1: least memory).
    pub fn with_chunks_per_step(mut self, n: usize) -> Self {
        self.chunks_per_step = n.max(1);
        self
    }

    /// Latent frames decoded per window in file operations (default 250, i.e. 10 s).
    pub fn with_decode_window(mut self, frames: usize) -> Self {
        self.decode_window = frames.max(1);
        self
    }

    /// The model.
    pub fn model(&self) -> &Losatok<B> {
        &self.model
    }

    /// The configuration (with what the checkpoint decided: qkv bias, layer scale, SemBo width).
    pub fn config(&self) -> &LosatokConfig {
        &self.config
    }

    /// What loading found, if the model came from a checkpoint.
    pub fn load_report(&self) -> Option<&LoadReport> {
        self.report.as_ref()
    }

    /// SHA-256 of the checkpoint file(s) (empty for an in-process model).
    pub fn checkpoint_sha256(&self) -> &str {
        &self.checkpoint_sha256
    }

    /// Audio sample rate (16000).
    pub fn sample_rate(&self) -> u32 {
        self.config.sample_rate
    }

    /// Latent frame rate (25).
    pub fn frame_rate(&self) -> u32 {
        self.config.frame_rate
    }

    /// Latent size D (128).
    pub fn latent_dim(&self) -> usize {
        self.model.latent_dim()
    }

    /// The device the model lives on.
    pub fn device(&self) -> B::Device {
        self.model.fc_a.weight.device()
    }

    /// Encode a whole waveform `[B, N]` (16 kHz) at once: the nine features, each `[B, t, ·]`.
    pub fn encode(&self, wav: Tensor<B, 2>, sampling: Sampling) -> Result<Features<B>, Error> {
        let n = wav.dims()[1];
        if n < MIN_SAMPLES {
            return Err(Error::Signal {
                path: None,
                source: StreamError::TooShort {
                    samples: n,
                    min: MIN_SAMPLES,
                },
            });
        }
        let finite: bool = wav.clone().is_finite().all().into_scalar().to_bool();
        if !finite {
            return Err(Error::InvalidInput(
                "the waveform contains NaN or infinite samples".into(),
            ));
        }
        Ok(self.model.encode(wav, sampling))
    }

    /// Decode a whole latent `[B, t, D]` to `[B, 640·t]`.
    pub fn decode(&self, z: Tensor<B, 3>) -> Result<Tensor<B, 2>, Error> {
        let [_, t, d] = z.dims();
        if d != self.latent_dim() || t == 0 {
            return Err(Error::InvalidInput(format!(
                "the latent is [_, {t}, {d}]; this model decodes [_, t ≥ 1, {}]",
                self.latent_dim()
            )));
        }
        Ok(self.model.decode(z))
    }

    /// Encode then decode a whole waveform: `(audio [B, 640·t], features)`.
    pub fn reconstruct(
        &self,
        wav: Tensor<B, 2>,
        sampling: Sampling,
    ) -> Result<(Tensor<B, 2>, Features<B>), Error> {
        let f = self.encode(wav, sampling)?;
        Ok((self.model.decode(f.z.clone()), f))
    }

    /// Encode a signal given as a repeatable stream of 16 kHz blocks, in bounded memory:
    /// `open` is called twice (level scan, then encoding); `on_features` receives consecutive
    /// feature chunks `[1, t_k, ·]`. Returns the signal's length in samples. Models at other
    /// frame rates than 25 Hz are encoded whole (one pass; memory grows with the length).
    pub fn encode_stream<I, O, F>(
        &self,
        mut open: O,
        sampling: Sampling,
        mut on_features: F,
    ) -> Result<SignalSummary, Error>
    where
        I: Iterator<Item = Result<Vec<f32>, Error>>,
        O: FnMut(u8) -> Result<I, Error>,
        F: FnMut(Features<B>) -> Result<(), Error>,
    {
        let signal = |source| Error::Signal { path: None, source };
        if DbScanner::new(&self.model).is_err() {
            // Models whose branches run at different token rates (e.g. 50 Hz, whose semantic
            // features are interpolated across the 252-token windows) are encoded whole: the
            // exact result, with memory that grows with the length.
            let mut samples = Vec::new();
            for block in open(2)? {
                samples.extend(block?);
            }
            let n = samples.len();
            let device = self.device();
            let x = Tensor::from_data(TensorData::new(samples, [1, n]), &device);
            let f = self.encode(x, sampling)?;
            on_features(f)?;
            return Ok(SignalSummary {
                samples: n,
                max_db: f32::NAN,
            });
        }
        let mut scan = DbScanner::new(&self.model).map_err(signal)?;
        for block in open(1)? {
            scan.push(&block?);
        }
        let summary = scan.finish().map_err(signal)?;
        let mut enc = ChunkedEncoder::new(&self.model, summary, sampling, self.chunks_per_step)
            .map_err(signal)?;
        let mut seen = 0usize;
        for block in open(2)? {
            let block = block?;
            seen += block.len();
            for f in enc.push(&block) {
                on_features(f)?;
            }
        }
        if seen != summary.samples {
            return Err(Error::InvalidInput(format!(
                "the input changed between passes ({} then {seen} samples)",
                summary.samples
            )));
        }
        for f in enc.finish().map_err(signal)? {
            on_features(f)?;
        }
        Ok(summary)
    }

    /// A file's 16 kHz blocks, cut at `max_samples`, for [`Self::encode_stream`], reporting
    /// pass `pass` of 2 to `progress`.
    fn file_blocks(
        path: &Path,
        max_samples: Option<u64>,
        pass: u8,
        progress: Option<ProgressFn>,
    ) -> Result<impl Iterator<Item = Result<Vec<f32>, Error>>, Error> {
        file_blocks(path, max_samples, move |done, total| {
            if let Some(p) = &progress {
                p(Progress {
                    pass,
                    passes: 2,
                    done,
                    total,
                });
            }
        })
    }

    fn max_samples(opts: &FileOptions) -> Result<Option<u64>, Error> {
        match opts.max_duration {
            None => Ok(None),
            Some(d) if d.is_finite() && d > 0.0 => Ok(Some((d * 16_000.0) as u64)),
            Some(d) => Err(Error::InvalidInput(format!(
                "max_duration must be a positive number of seconds, got {d}"
            ))),
        }
    }

    fn metadata(&self, summary: SignalSummary, sampling: Sampling) -> FeatureMetadata {
        FeatureMetadata {
            sample_rate: self.sample_rate(),
            frame_rate: self.frame_rate(),
            num_samples: summary.samples as u64,
            sampling: match sampling {
                Sampling::Mean => "mean".into(),
                Sampling::Seeded(s) => format!("seeded:{s}"),
            },
            checkpoint_sha256: self.checkpoint_sha256.clone(),
            extra: Default::default(),
        }
    }

    fn feature_dims(&self, names: &[&'static str]) -> Vec<(&'static str, usize)> {
        let e = self.config.tokenizer.embed_dim;
        let d = self.latent_dim();
        names
            .iter()
            .map(|&n| (n, if n.ends_with("_emb") { e } else { d }))
            .collect()
    }

    fn append_features(
        writer: &mut FeatureWriter,
        names: &[&str],
        f: &Features<B>,
        input: &Path,
    ) -> Result<(), Error> {
        for (name, t) in f.named() {
            if names.contains(&name) {
                let values = rows(t);
                if values.iter().any(|v| !v.is_finite()) {
                    return Err(Error::BadLatent {
                        path: input.to_path_buf(),
                        message: format!("encoding gave NaN or infinite values in {name}"),
                    });
                }
                writer.append(name, &values)?;
            }
        }
        Ok(())
    }

    fn signal_err(path: &Path) -> impl Fn(Error) -> Error + '_ {
        move |e| match e {
            Error::Signal { path: None, source } => Error::Signal {
                path: Some(path.to_path_buf()),
                source,
            },
            other => other,
        }
    }

    /// `losatok encode`: an audio file → a feature file (`z`, `mu`, `logvar`, or all nine).
    ///
    /// `input` may be `-` (standard input) or a FIFO, and `output` `-` (standard output); see
    /// [`losatok_fs`] for how outputs are written. The output's temporary files are created only
    /// once the input has been read.
    pub fn encode_file(
        &self,
        input: &Path,
        output: &Path,
        opts: &FileOptions,
    ) -> Result<FileSummary, Error> {
        let max = Self::max_samples(opts)?;
        check_file_outputs(input, &[output], opts.overwrite)?;
        let source = losatok_fs::spool_input(input).map_err(|e| Error::from_fs(input, e))?;
        let names: Vec<&'static str> = if opts.all_features {
            Features::<B>::NAMES.to_vec()
        } else {
            DEFAULT_FEATURES.to_vec()
        };
        let placeholder = SignalSummary {
            samples: 0,
            max_db: 0.0,
        };
        let create = || {
            FeatureWriter::create(
                output,
                &self.feature_dims(&names),
                self.metadata(placeholder, opts.sampling),
                opts.overwrite,
            )
        };
        let mut writer = None;
        let mut frames = 0u64;
        let summary = self
            .encode_stream(
                |pass| Self::file_blocks(source.path(), max, pass, opts.progress.clone()),
                opts.sampling,
                |f| {
                    frames += f.num_frames() as u64;
                    let w = match &mut writer {
                        Some(w) => w,
                        None => writer.insert(create()?),
                    };
                    Self::append_features(w, &names, &f, input)
                },
            )
            .map_err(|e| Self::signal_err(input)(e.with_path(source.path(), input)))?;
        let mut writer = match writer {
            Some(w) => w,
            None => create()?,
        };
        writer.set_num_samples(summary.samples as u64);
        writer.finish()?;
        Ok(FileSummary {
            input_samples: summary.samples as u64,
            frames,
            ..FileSummary::default()
        })
    }

    fn wav_writer(&self, output: &Path, opts: &FileOptions) -> Result<WavWriter, Error> {
        let spec = WavSpec::mono(self.sample_rate(), opts.wav_format);
        Ok(if opts.overwrite {
            WavWriter::create(output, spec)?
        } else {
            WavWriter::create_no_overwrite(output, spec)?
        })
    }

    /// `losatok reconstruct`: an audio file → its reconstruction (and optionally all features).
    ///
    /// Inputs and outputs may be `-` and FIFOs as for [`encode_file`](Self::encode_file).
    pub fn reconstruct_file(
        &self,
        input: &Path,
        output: &Path,
        opts: &FileOptions,
    ) -> Result<FileSummary, Error> {
        let max = Self::max_samples(opts)?;
        let outputs: Vec<&Path> = std::iter::once(output)
            .chain(opts.save_features.as_deref())
            .collect();
        check_file_outputs(input, &outputs, opts.overwrite)?;
        let source = losatok_fs::spool_input(input).map_err(|e| Error::from_fs(input, e))?;
        let names = Features::<B>::NAMES;
        let create_features = |p: &Path| {
            FeatureWriter::create(
                p,
                &self.feature_dims(&names),
                self.metadata(
                    SignalSummary {
                        samples: 0,
                        max_db: 0.0,
                    },
                    opts.sampling,
                ),
                opts.overwrite,
            )
        };
        // created once the input has been read (the level scan) and encoding gives features
        let mut writers: Option<(WavWriter, Option<FeatureWriter>)> = None;
        let create = || -> Result<(WavWriter, Option<FeatureWriter>), Error> {
            let wav = self.wav_writer(output, opts)?;
            let features = match &opts.save_features {
                Some(p) => Some(create_features(p)?),
                None => None,
            };
            Ok((wav, features))
        };
        let mut dec = ChunkedDecoder::new(&self.model, self.decode_window);
        let mut frames = 0u64;
        let summary = self
            .encode_stream(
                |pass| Self::file_blocks(source.path(), max, pass, opts.progress.clone()),
                opts.sampling,
                |f| {
                    frames += f.num_frames() as u64;
                    let (wav, features) = match &mut writers {
                        Some(w) => w,
                        None => writers.insert(create()?),
                    };
                    if let Some(w) = features.as_mut() {
                        Self::append_features(w, &names, &f, input)?;
                    }
                    wav.write(finite_audio(&dec.push(&rows(&f.z)), input)?)?;
                    Ok(())
                },
            )
            .map_err(|e| Self::signal_err(input)(e.with_path(source.path(), input)))?;
        let (mut wav, features) = match writers {
            Some(w) => w,
            None => create()?,
        };
        wav.write(finite_audio(&dec.finish(), input)?)?;
        let output_samples = wav.frames_written();
        if let Some(mut w) = features {
            w.set_num_samples(summary.samples as u64);
            w.finish()?;
        }
        wav.finish()?;
        Ok(FileSummary {
            input_samples: summary.samples as u64,
            frames,
            output_samples,
            ..FileSummary::default()
        })
    }

    /// `losatok decode`: a feature/latent file's `z` → a wav file.
    ///
    /// A file whose metadata says it holds something else (another `format`, sample rate or
    /// frame rate) is refused; one made with another checkpoint is decoded with a warning in
    /// the summary. Files without metadata (e.g. latents written by other tools) are decoded
    /// as they are. `input` may be `-` or a FIFO, `output` `-`.
    pub fn decode_file(
        &self,
        input: &Path,
        output: &Path,
        opts: &FileOptions,
    ) -> Result<FileSummary, Error> {
        check_file_outputs(input, &[output], opts.overwrite)?;
        let source = losatok_fs::spool_input(input).map_err(|e| Error::from_fs(input, e))?;
        let file =
            FeatureFile::open(source.path()).map_err(|e| e.with_path(source.path(), input))?;
        let mut warnings = Vec::new();
        file.check_metadata(self.sample_rate(), self.frame_rate())
            .map_err(|e| e.with_path(source.path(), input))?;
        let sha = &file.metadata.checkpoint_sha256;
        if !sha.is_empty() && !self.checkpoint_sha256.is_empty() && *sha != self.checkpoint_sha256 {
            warnings.push(format!(
                "{} was encoded with another checkpoint (SHA-256 {}…) than the one decoding it \
                 ({}…): the audio will not match the encoded input",
                input.display(),
                &sha[..sha.len().min(12)],
                &self.checkpoint_sha256[..12.min(self.checkpoint_sha256.len())]
            ));
        }
        let (t, d) = file
            .frames_and_dim("z")
            .map_err(|e| e.with_path(source.path(), input))?;
        if d != self.latent_dim() {
            return Err(Error::BadLatent {
                path: input.to_path_buf(),
                message: format!(
                    "z has dimension {d}; this model's latent has {}",
                    self.latent_dim()
                ),
            });
        }
        if t == 0 {
            return Err(Error::BadLatent {
                path: input.to_path_buf(),
                message: "z has no frames".into(),
            });
        }
        let mut wav = None;
        let mut dec = ChunkedDecoder::new(&self.model, self.decode_window);
        let step = self.decode_window;
        let mut start = 0;
        while start < t {
            let n = step.min(t - start);
            let z = file
                .rows("z", start, n)
                .map_err(|e| e.with_path(source.path(), input))?;
            if z.iter().any(|v| !v.is_finite()) {
                return Err(Error::BadLatent {
                    path: input.to_path_buf(),
                    message: "z contains NaN or infinite values".into(),
                });
            }
            let audio = dec.push(&z);
            let w = match &mut wav {
                Some(w) => w,
                None => wav.insert(self.wav_writer(output, opts)?),
            };
            w.write(finite_audio(&audio, input)?)?;
            start += n;
            if let Some(p) = &opts.progress {
                p(Progress {
                    pass: 1,
                    passes: 1,
                    done: start as u64,
                    total: Some(t as u64),
                });
            }
        }
        let mut wav = match wav {
            Some(w) => w,
            None => self.wav_writer(output, opts)?,
        };
        wav.write(finite_audio(&dec.finish(), input)?)?;
        let output_samples = wav.frames_written();
        wav.finish()?;
        Ok(FileSummary {
            input_samples: 0,
            frames: t as u64,
            output_samples,
            warnings,
        })
    }
}

/// Decoded audio, checked: NaN or infinite samples (a latent far outside the range the model
/// was trained on, or damaged weights) are an error naming the input, not a broken wav.
fn finite_audio<'a>(samples: &'a [f32], input: &Path) -> Result<&'a [f32], Error> {
    match samples.iter().position(|x| !x.is_finite()) {
        None => Ok(samples),
        Some(_) => Err(Error::BadLatent {
            path: input.to_path_buf(),
            message: "decoding gave NaN or infinite audio (latent values far outside the \
                      model's range, or damaged weights)"
                .into(),
        }),
    }
}
