//! File to 16 kHz mono: the one-shot [`load`] and the bounded-memory [`Mono16kStream`].

use std::path::Path;

use crate::decode::{decode, AudioDecoder, AudioInfo};
use crate::error::AudioError;
use crate::mix::{downmix, downmix_interleaved};
use crate::resample::{resample_to_16k, StreamingResampler, TARGET_SAMPLE_RATE};

/// Loads a file as 16 kHz mono f32, like `librosa.load(path, sr=16000, mono=True)`:
/// decode (libsndfile scaling), average the channels ([`crate::mix`]), resample with libsoxr
/// HQ and fix the length to `ceil(N * 16000 / sr)`. A 16 kHz file is not resampled.
///
/// The whole file is held in memory; use [`Mono16kStream`] for long inputs (it gives the
/// same samples).
pub fn load(path: impl AsRef<Path>) -> Result<Vec<f32>, AudioError> {
    let audio = decode(path)?;
    let mono = downmix(&audio);
    resample_to_16k(&mono, audio.sample_rate)
}

/// Streaming [`load`]: decodes a file packet by packet, down-mixes, resamples through one
/// persistent libsoxr instance and yields blocks of 16 kHz mono samples. Memory use is
/// bounded by the block sizes, not by the file length.
///
/// The concatenated blocks are bit-identical to [`load`], including the final length
/// `ceil(N * 16000 / sr)` (fixed once the total frame count `N` is known at the end).
///
/// ```no_run
/// let mut total = 0;
/// for block in losatok_audio::Mono16kStream::open("long.mp3")? {
///     total += block?.len();
/// }
/// # Ok::<(), losatok_audio::AudioError>(())
/// ```
#[derive(Debug)]
pub struct Mono16kStream {
    decoder: AudioDecoder,
    resampler: Option<StreamingResampler>,
    mono: Vec<f32>,
    finished: bool,
}

impl Mono16kStream {
    /// Opens `path` and reads its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AudioError> {
        Self::from_decoder(AudioDecoder::open(path)?)
    }

    /// Wraps an already opened decoder (for example one with a custom block size).
    pub fn from_decoder(decoder: AudioDecoder) -> Result<Self, AudioError> {
        let resampler = StreamingResampler::to_16k(decoder.info().sample_rate)?;
        Ok(Mono16kStream {
            decoder,
            resampler: Some(resampler),
            mono: Vec::new(),
            finished: false,
        })
    }

    /// Header information of the source file.
    pub fn info(&self) -> &AudioInfo {
        self.decoder.info()
    }

    /// Frames decoded from the file so far (at its native rate).
    pub fn frames_decoded(&self) -> u64 {
        self.decoder.frames_decoded()
    }

    /// Output sample rate, always [`TARGET_SAMPLE_RATE`].
    pub fn sample_rate(&self) -> u32 {
        TARGET_SAMPLE_RATE
    }

    /// Returns the next non-empty block of 16 kHz mono samples, or `None` when the file is
    /// done. After an error, further calls return `Ok(None)`.
    pub fn next_block(&mut self) -> Result<Option<Vec<f32>>, AudioError> {
        let mut out = Vec::new();
        while out.is_empty() && !self.finished {
            if let Err(e) = self.step(&mut out) {
                self.finished = true;
                return Err(e);
            }
        }
        Ok(if out.is_empty() { None } else { Some(out) })
    }

    fn step(&mut self, out: &mut Vec<f32>) -> Result<(), AudioError> {
        let channels = self.decoder.info().channels;
        match self.decoder.next_block()? {
            Some(block) => {
                self.mono.clear();
                downmix_interleaved(block, channels, &mut self.mono);
                if let Some(r) = self.resampler.as_mut() {
                    r.process(&self.mono, out)?;
                }
            }
            None => {
                self.finished = true;
                if let Some(r) = self.resampler.take() {
                    r.finish(out)?;
                }
            }
        }
        Ok(())
    }

    /// Reads the rest of the stream into one vector.
    pub fn read_to_end(mut self) -> Result<Vec<f32>, AudioError> {
        let mut all = Vec::new();
        while let Some(block) = self.next_block()? {
            all.extend_from_slice(&block);
        }
        Ok(all)
    }
}

impl Iterator for Mono16kStream {
    type Item = Result<Vec<f32>, AudioError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_block().transpose()
    }
}
