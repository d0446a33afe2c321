//! Long signals in bounded memory: the encoder and the decoder as streaming processes.
//!
//! Nothing in LoSATok looks further than a few hundred milliseconds, except one thing: the
//! semantic front end floors every item at `max − 120 dB` where the maximum runs over the
//! **whole** signal. Exact chunked encoding therefore takes two passes over the samples:
//!
//! 1. [`DbScanner`]: the maximum dB of the semantic mel over every frame (STFT only, cheap);
//! 2. [`ChunkedEncoder`]: the signal in consecutive 252-token chunks, aligned to the
//!    MiDashengLM attention windows (which the reference already processes independently),
//!    each with `n_fft/2` samples of STFT context (reflected at the true edges), floored at the
//!    whole signal's floor.
//!
//! [`ChunkedDecoder`] decodes windows of latent frames with enough context on both sides to
//! cover the decoder's receptive field (12 depthwise k7 convolutions, the k7 embedding and the
//! ISTFT overlap), so that the kept samples do not see the window edges.
//!
//! Both reproduce whole-signal processing to float rounding (tested to 1e-4), with memory
//! independent of the signal's length. Samples are pushed in blocks of any size.

use std::collections::VecDeque;

use burn::prelude::*;

use crate::losatok::{Features, Losatok, Sampling};

/// A signal too short for the model, or another reason a stream cannot be processed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// Fewer samples than the model's minimum.
    #[error("the audio has {samples} samples at 16 kHz; at least {min} are needed")]
    TooShort {
        /// Samples received.
        samples: usize,
        /// Minimum accepted.
        min: usize,
    },
    /// The model's configuration cannot be processed in chunks.
    #[error("{0}")]
    Unsupported(String),
}

/// The fewest samples LoSATok accepts: the 1024-point reflect padding needs more than 512.
pub const MIN_SAMPLES: usize = 513;

/// Samples pushed so far, addressed by absolute index; earlier samples are dropped as they stop
/// being needed.
#[derive(Debug, Default)]
struct SampleWindow {
    base: usize,
    data: VecDeque<f32>,
    total: Option<usize>,
}

impl SampleWindow {
    fn push(&mut self, samples: &[f32]) {
        self.data.extend(samples.iter().copied());
    }

    /// One past the last sample received.
    fn end(&self) -> usize {
        self.base + self.data.len()
    }

    /// Samples `[start, end)` of the signal reflected beyond its ends (the end only once the
    /// total is known).
    fn segment(&self, start: isize, end: isize) -> Vec<f32> {
        let n = self.total.map(|t| t as isize);
        (start..end)
            .map(|i| {
                let j = if i < 0 {
                    -i
                } else if n.is_some_and(|n| i >= n) {
                    2 * (n.expect("known") - 1) - i
                } else {
                    i
                };
                self.data[j as usize - self.base]
            })
            .collect()
    }

    fn discard_before(&mut self, index: usize) {
        while self.base < index && !self.data.is_empty() {
            self.data.pop_front();
            self.base += 1;
        }
    }
}

/// Geometry of the encoder in samples and frames.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    hop: usize,
    patch: usize,
    chunk_tokens: usize,
    sem_pad: usize,
    ac_pad: usize,
}

impl Geometry {
    fn of<B: Backend>(model: &Losatok<B>) -> Result<Self, StreamError> {
        let sem = &model.semantic_encoder.encoder;
        let ac = &model.dasheng_tokenizer.encoder;
        let g = Geometry {
            hop: sem.front_end.hop(),
            patch: ac.patch_time(),
            chunk_tokens: sem.chunk_tokens(),
            sem_pad: sem.front_end.n_fft() / 2,
            ac_pad: ac.front_end.n_fft() / 2,
        };
        if ac.front_end.hop() != g.hop || sem.patch_time() != g.patch || g.sem_pad > g.ac_pad {
            return Err(StreamError::Unsupported(
                "chunked processing needs both branches at the same token rate (frame_rate 25); \
                 encode this model's audio whole instead"
                    .into(),
            ));
        }
        Ok(g)
    }

    fn frames(&self, samples: usize) -> usize {
        samples / self.hop + 1
    }

    fn tokens(&self, samples: usize) -> usize {
        self.frames(samples) / self.patch
    }
}

fn tensor<B: Backend>(rows: Vec<Vec<f32>>, device: &B::Device) -> Tensor<B, 2> {
    let (b, n) = (rows.len(), rows[0].len());
    let flat: Vec<f32> = rows.into_iter().flatten().collect();
    Tensor::from_data(TensorData::new(flat, [b, n]), device)
}

/// Pass 1: the maximum of the semantic front end's dB mel over every frame of a signal.
pub struct DbScanner<'m, B: Backend> {
    model: &'m Losatok<B>,
    geo: Geometry,
    win: SampleWindow,
    next_frame: usize,
    max_db: f32,
    frames_per_step: usize,
}

/// The result of [`DbScanner`]: what [`ChunkedEncoder`] needs to know about the whole signal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SignalSummary {
    /// Total samples.
    pub samples: usize,
    /// Maximum dB of the semantic mel over all frames.
    pub max_db: f32,
}

impl<'m, B: Backend> DbScanner<'m, B> {
    /// A scanner for `model`'s semantic front end.
    pub fn new(model: &'m Losatok<B>) -> Result<Self, StreamError> {
        let geo = Geometry::of(model)?;
        Ok(Self {
            model,
            geo,
            win: SampleWindow::default(),
            next_frame: 0,
            max_db: f32::NEG_INFINITY,
            frames_per_step: geo.chunk_tokens * geo.patch,
        })
    }

    /// Feed the next samples.
    pub fn push(&mut self, samples: &[f32]) {
        self.win.push(samples);
        loop {
            let f1 = self.next_frame + self.frames_per_step;
            // the last frame of the block needs samples up to hop·(f1 − 1) + n_fft/2
            if self.win.end() < self.geo.hop * (f1 - 1) + self.geo.sem_pad {
                break;
            }
            self.scan(f1);
        }
    }

    fn scan(&mut self, f1: usize) {
        let (g, f0) = (self.geo, self.next_frame);
        let seg = self.win.segment(
            (g.hop * f0) as isize - g.sem_pad as isize,
            (g.hop * (f1 - 1) + g.sem_pad) as isize,
        );
        let device = self.model.fc_a.weight.device();
        let m: f32 = self
            .model
            .semantic_encoder
            .encoder
            .front_end
            .max_db_padded(tensor::<B>(vec![seg], &device))
            .into_scalar()
            .elem();
        self.max_db = self.max_db.max(m);
        self.next_frame = f1;
        self.win
            .discard_before((g.hop * f1).saturating_sub(g.sem_pad));
    }

    /// The end of the signal: scan the remaining frames.
    pub fn finish(mut self) -> Result<SignalSummary, StreamError> {
        let n = self.win.end();
        if n < MIN_SAMPLES {
            return Err(StreamError::TooShort {
                samples: n,
                min: MIN_SAMPLES,
            });
        }
        self.win.total = Some(n);
        let frames = self.geo.frames(n);
        while self.next_frame < frames {
            let f1 = (self.next_frame + self.frames_per_step).min(frames);
            self.scan(f1);
        }
        Ok(SignalSummary {
            samples: n,
            max_db: self.max_db,
        })
    }
}

/// Pass 2: the nine features of a long signal, chunk by chunk (see the module documentation).
pub struct ChunkedEncoder<'m, B: Backend> {
    model: &'m Losatok<B>,
    geo: Geometry,
    floor_db: f32,
    sampling: Sampling,
    win: SampleWindow,
    next_chunk: usize,
    chunks_per_step: usize,
}

impl<'m, B: Backend> ChunkedEncoder<'m, B> {
    /// An encoder for a signal whose pass-1 summary is `summary`. `chunks_per_step` full
    /// chunks (10.08 s each) run through the model together (more is faster, uses more memory).
    pub fn new(
        model: &'m Losatok<B>,
        summary: SignalSummary,
        sampling: Sampling,
        chunks_per_step: usize,
    ) -> Result<Self, StreamError> {
        let geo = Geometry::of(model)?;
        let top_db = model
            .semantic_encoder
            .encoder
            .front_end
            .top_db()
            .unwrap_or(f64::INFINITY) as f32;
        Ok(Self {
            model,
            geo,
            floor_db: summary.max_db - top_db,
            sampling,
            win: SampleWindow::default(),
            next_chunk: 0,
            chunks_per_step: chunks_per_step.max(1),
        })
    }

    /// Samples needed before full chunk `c` can be encoded without knowing the end.
    fn ready_end(&self, c: usize) -> usize {
        let g = self.geo;
        g.hop * ((c + 1) * g.chunk_tokens * g.patch - 1) + g.ac_pad
    }

    /// Feed the next samples; returns the features of every chunk completed by them.
    pub fn push(&mut self, samples: &[f32]) -> Vec<Features<B>> {
        self.win.push(samples);
        let mut out = Vec::new();
        loop {
            let last = self.next_chunk + self.chunks_per_step - 1;
            if self.win.end() < self.ready_end(last) {
                break;
            }
            let k = self.geo.chunk_tokens;
            out.push(self.encode(self.next_chunk, self.chunks_per_step, k));
        }
        out
    }

    /// The end of the signal: encode the remaining chunks.
    pub fn finish(mut self) -> Result<Vec<Features<B>>, StreamError> {
        let n = self.win.end();
        if n < MIN_SAMPLES {
            return Err(StreamError::TooShort {
                samples: n,
                min: MIN_SAMPLES,
            });
        }
        self.win.total = Some(n);
        let tokens = self.geo.tokens(n);
        let k = self.geo.chunk_tokens;
        let mut out = Vec::new();
        while self.next_chunk * k < tokens {
            let full = tokens / k - self.next_chunk.min(tokens / k);
            if full > 0 {
                let g = full.min(self.chunks_per_step);
                out.push(self.encode(self.next_chunk, g, k));
            } else {
                out.push(self.encode(self.next_chunk, 1, tokens - self.next_chunk * k));
            }
        }
        Ok(out)
    }

    /// Encode `count` consecutive chunks from `first`, each of `k` tokens.
    fn encode(&mut self, first: usize, count: usize, k: usize) -> Features<B> {
        let g = self.geo;
        let frames = k * g.patch;
        let mut rows = Vec::with_capacity(count);
        for c in first..first + count {
            let f0 = c * g.chunk_tokens * g.patch;
            rows.push(self.win.segment(
                (g.hop * f0) as isize - g.ac_pad as isize,
                (g.hop * (f0 + frames - 1) + g.ac_pad) as isize,
            ));
        }
        let device = self.model.fc_a.weight.device();
        let x = tensor::<B>(rows, &device);
        let len = x.dims()[1];
        let m = self.model;
        let ac = &m.dasheng_tokenizer.encoder;
        let (_, acoustic) = ac.tokens_from_logmel(ac.front_end.forward_padded(x.clone()));
        let sem = &m.semantic_encoder.encoder;
        let x_sem = x.narrow(1, g.ac_pad - g.sem_pad, len - 2 * (g.ac_pad - g.sem_pad));
        let floor = Tensor::<B, 1>::full([count], self.floor_db, &device);
        let tokens = sem.tokens_from_logmel(sem.front_end.forward_padded(x_sem, floor));
        let semantic = sem.encode_tokens(tokens);
        let semantic_low = m.semantic_encoder.bottleneck.compress(semantic.clone());
        // chunks side by side along time, as one item
        let flat = |t: Tensor<B, 3>| {
            let [b, t_, d] = t.dims();
            t.reshape([1, b * t_, d])
        };
        let emb = m.fuse(flat(semantic), flat(semantic_low), flat(acoustic));
        self.next_chunk = first + count;
        let keep_from =
            (g.hop * self.next_chunk * g.chunk_tokens * g.patch).saturating_sub(g.ac_pad);
        self.win.discard_before(keep_from);
        m.features(emb, self.sampling, first * g.chunk_tokens)
    }
}

/// Latent frames of context a decoder window needs on each side: the embedding and depthwise
/// convolutions reach 3 decoder frames each, the ISTFT overlap `⌈n_fft/hop⌉` frames; in latent
/// frames (÷ upsample factor), plus a margin of 2.
pub fn decoder_context<B: Backend>(model: &Losatok<B>) -> usize {
    let dec = &model.dasheng_tokenizer.decoder;
    let convs = 1 + dec.backbone.convnext.len();
    let n_fft = dec.head.out.weight.dims()[1] - 2;
    let up = model.dasheng_tokenizer.upsampler.weight.dims()[2];
    let frames = 3 * convs + n_fft.div_ceil(samples_per_decoder_frame(model));
    frames.div_ceil(up) + 2
}

fn samples_per_decoder_frame<B: Backend>(model: &Losatok<B>) -> usize {
    model.dasheng_tokenizer.decoder.head.istft_hop()
}

/// Output samples per latent frame (640).
pub fn samples_per_frame<B: Backend>(model: &Losatok<B>) -> usize {
    model.dasheng_tokenizer.upsampler.weight.dims()[2] * samples_per_decoder_frame(model)
}

/// Decode a long latent in windows (see the module documentation).
pub struct ChunkedDecoder<'m, B: Backend> {
    model: &'m Losatok<B>,
    dim: usize,
    window: usize,
    context: usize,
    /// Latent rows from frame `base` on, `dim` values each.
    z: VecDeque<f32>,
    base: usize,
    received: usize,
    next: usize,
}

impl<'m, B: Backend> ChunkedDecoder<'m, B> {
    /// A decoder that outputs `window` latent frames' worth of samples per step.
    pub fn new(model: &'m Losatok<B>, window: usize) -> Self {
        Self {
            model,
            dim: model.latent_dim(),
            window: window.max(1),
            context: decoder_context(model),
            z: VecDeque::new(),
            base: 0,
            received: 0,
            next: 0,
        }
    }

    /// Feed the next latent frames (`[n, D]` row-major); returns the samples completed.
    pub fn push(&mut self, z: &[f32]) -> Vec<f32> {
        assert_eq!(z.len() % self.dim, 0, "latent rows of {} values", self.dim);
        self.z.extend(z.iter().copied());
        self.received += z.len() / self.dim;
        let mut out = Vec::new();
        while self.received >= self.next + self.window + self.context {
            out.extend(self.decode_window(self.next + self.window));
        }
        out
    }

    /// The end of the latent: decode the rest.
    pub fn finish(mut self) -> Vec<f32> {
        let mut out = Vec::new();
        while self.next < self.received {
            let end = (self.next + self.window).min(self.received);
            out.extend(self.decode_window(end));
        }
        out
    }

    fn decode_window(&mut self, end: usize) -> Vec<f32> {
        let (j0, j1) = (self.next, end);
        let s = j0.saturating_sub(self.context);
        let e = (j1 + self.context).min(self.received);
        let rows: Vec<f32> = self
            .z
            .range((s - self.base) * self.dim..(e - self.base) * self.dim)
            .copied()
            .collect();
        let device = self.model.fc_a.weight.device();
        let z = Tensor::<B, 3>::from_data(TensorData::new(rows, [1, e - s, self.dim]), &device);
        let wav = self.model.decode(z);
        let spf = samples_per_frame(self.model);
        let kept = wav.narrow(1, spf * (j0 - s), spf * (j1 - j0));
        let out = kept
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("f32 samples");
        self.next = j1;
        let keep_from = self.next.saturating_sub(self.context);
        while self.base < keep_from {
            self.z.drain(..self.dim);
            self.base += 1;
        }
        out
    }
}

/// The rows of a `[1, t, D]` feature tensor as host values (`t·D`, row-major).
pub fn rows<B: Backend>(x: &Tensor<B, 3>) -> Vec<f32> {
    x.clone()
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 data")
}
