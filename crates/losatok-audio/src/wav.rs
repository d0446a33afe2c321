//! Atomic WAV writing (32-bit float or 16-bit PCM).
//!
//! Samples are clamped to `[-1, 1]` first (as the reference saver does). 16-bit PCM is then
//! produced bit-identically to `soundfile.write(..., subtype="PCM_16")` (libsndfile 1.2):
//! libsndfile converts float to a full-scale 32-bit integer, `lrintf(x * 2^31)` (round half
//! to even, clipped to the i32 range), and keeps its upper 16 bits (an arithmetic shift, so
//! in effect `floor(x * 32768)`, with `1.0` clipped to 32767). It is *not* `round(x * 32767)`.
//!
//! The file is written through [`losatok_fs::AtomicFile`]: to a temporary file next to the
//! destination, synced, and only then renamed onto it (through a symbolic link, at the link's
//! target). If anything fails, or a [`WavWriter`] is dropped without [`WavWriter::finish`], the
//! temporary file is removed and the destination is left untouched. With the `no_overwrite`
//! variants an existing destination is never replaced, even one created by another process
//! while this one was writing. A destination that is a device, FIFO or socket is refused; `-`
//! writes to standard output (the whole file, once complete).

use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use losatok_fs::AtomicFile;

use crate::error::AudioError;

/// Sample format of a written WAV file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WavFormat {
    /// IEEE float, 32 bits (`WAVE_FORMAT_IEEE_FLOAT`). The default, as the reference writes
    /// float.
    #[default]
    Float32,
    /// Signed 16-bit integer PCM (`WAVE_FORMAT_PCM`), converted exactly like
    /// `soundfile.write(..., subtype="PCM_16")` (see the module documentation).
    Pcm16,
}

impl WavFormat {
    fn bytes_per_sample(self) -> u16 {
        match self {
            WavFormat::Float32 => 4,
            WavFormat::Pcm16 => 2,
        }
    }
}

/// Layout of a WAV file to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WavSpec {
    /// Sample rate in Hz (must be positive).
    pub sample_rate: u32,
    /// Number of interleaved channels (must be positive).
    pub channels: u16,
    /// Sample format.
    pub format: WavFormat,
}

impl WavSpec {
    /// Mono at `sample_rate` in `format`.
    pub fn mono(sample_rate: u32, format: WavFormat) -> Self {
        WavSpec {
            sample_rate,
            channels: 1,
            format,
        }
    }

    fn header_len(self) -> u64 {
        match self.format {
            // RIFF(12) + fmt(8+16) + data(8)
            WavFormat::Pcm16 => 44,
            // RIFF(12) + fmt(8+18) + fact(8+4) + data(8)
            WavFormat::Float32 => 58,
        }
    }
}

/// Converts one sample in `[-1, 1]` to 16-bit PCM like libsndfile's float path for 16-bit
/// WAV: to a clipped full-scale i32 first, then the upper 16 bits.
fn to_pcm16(x: f32) -> i16 {
    let v = (x * 2_147_483_648.0).round_ties_even();
    let full = if v >= 2_147_483_647.0 {
        i32::MAX
    } else if v <= -2_147_483_648.0 {
        i32::MIN
    } else {
        v as i32
    };
    (full >> 16) as i16
}

/// Streaming, atomic WAV writer.
///
/// ```no_run
/// use losatok_audio::{WavFormat, WavSpec, WavWriter};
/// let mut w = WavWriter::create("out.wav", WavSpec::mono(16_000, WavFormat::Float32))?;
/// w.write(&[0.0, 0.5, -0.5])?;
/// w.finish()?; // only now does out.wav appear (or get replaced)
/// # Ok::<(), losatok_audio::AudioError>(())
/// ```
#[derive(Debug)]
pub struct WavWriter {
    dest: PathBuf,
    spec: WavSpec,
    /// `None` once finished.
    out: Option<BufWriter<AtomicFile>>,
    frames: u64,
    scratch: Vec<u8>,
}

impl WavWriter {
    /// Starts writing `path`; an existing file is replaced when [`finish`](Self::finish)
    /// succeeds.
    pub fn create(path: impl AsRef<Path>, spec: WavSpec) -> Result<Self, AudioError> {
        Self::start(path.as_ref(), spec, true)
    }

    /// Like [`create`](Self::create) but refuses an existing destination, both now and at
    /// [`finish`](Self::finish) ([`AudioError::AlreadyExists`]).
    pub fn create_no_overwrite(path: impl AsRef<Path>, spec: WavSpec) -> Result<Self, AudioError> {
        Self::start(path.as_ref(), spec, false)
    }

    fn start(dest: &Path, spec: WavSpec, overwrite: bool) -> Result<Self, AudioError> {
        if spec.sample_rate == 0 || spec.channels == 0 {
            return Err(AudioError::InvalidInput(format!(
                "cannot write {}: sample rate and channel count must be positive",
                dest.display()
            )));
        }
        let out = AtomicFile::create(dest, overwrite).map_err(|e| AudioError::from_fs(dest, e))?;
        let mut writer = WavWriter {
            dest: dest.to_path_buf(),
            spec,
            out: Some(BufWriter::with_capacity(1 << 16, out)),
            frames: 0,
            scratch: Vec::new(),
        };
        // Placeholder header; the sizes are filled in by `finish`.
        let header = writer.header(0);
        writer.raw_write(&header)?;
        Ok(writer)
    }

    /// The destination path.
    pub fn path(&self) -> &Path {
        &self.dest
    }

    /// The layout being written.
    pub fn spec(&self) -> WavSpec {
        self.spec
    }

    /// Frames written so far.
    pub fn frames_written(&self) -> u64 {
        self.frames
    }

    /// Appends interleaved samples (a whole number of frames), clamped to `[-1, 1]`.
    /// NaN samples are refused ([`AudioError::InvalidInput`]); infinities clamp to ±1.
    pub fn write(&mut self, samples: &[f32]) -> Result<(), AudioError> {
        let channels = usize::from(self.spec.channels);
        if !samples.len().is_multiple_of(channels) {
            return Err(AudioError::InvalidInput(format!(
                "cannot write {}: {} samples is not a whole number of {channels}-channel frames",
                self.dest.display(),
                samples.len()
            )));
        }
        if let Some(i) = samples.iter().position(|x| x.is_nan()) {
            return Err(AudioError::InvalidInput(format!(
                "cannot write {}: sample {} is NaN",
                self.dest.display(),
                self.frames * channels as u64 + i as u64
            )));
        }
        let frames = (samples.len() / channels) as u64;
        let data_bytes = (self.frames + frames)
            * u64::from(self.spec.channels)
            * u64::from(self.spec.format.bytes_per_sample());
        if data_bytes + self.spec.header_len() - 8 > u64::from(u32::MAX) {
            return Err(AudioError::Write {
                path: self.dest.clone(),
                source: std::io::Error::other("the WAV format is limited to 4 GiB"),
            });
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        match self.spec.format {
            WavFormat::Float32 => {
                for &x in samples {
                    buf.extend_from_slice(&x.clamp(-1.0, 1.0).to_le_bytes());
                }
            }
            WavFormat::Pcm16 => {
                for &x in samples {
                    buf.extend_from_slice(&to_pcm16(x.clamp(-1.0, 1.0)).to_le_bytes());
                }
            }
        }
        let result = self.raw_write(&buf);
        self.scratch = buf;
        result?;
        self.frames += frames;
        Ok(())
    }

    fn raw_write(&mut self, bytes: &[u8]) -> Result<(), AudioError> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| finished_error(&self.dest))?;
        out.write_all(bytes)
            .map_err(|e| AudioError::from_write(&self.dest, e))
    }

    /// The header for `frames` frames.
    fn header(&self, frames: u64) -> Vec<u8> {
        let s = self.spec;
        let block_align = s.channels * s.format.bytes_per_sample();
        let data_len = (frames * u64::from(block_align)) as u32;
        let riff_len = (s.header_len() - 8) as u32 + data_len;
        let mut h = Vec::with_capacity(s.header_len() as usize);
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&riff_len.to_le_bytes());
        h.extend_from_slice(b"WAVE");
        h.extend_from_slice(b"fmt ");
        let (fmt_len, tag): (u32, u16) = match s.format {
            WavFormat::Pcm16 => (16, 1),
            WavFormat::Float32 => (18, 3),
        };
        h.extend_from_slice(&fmt_len.to_le_bytes());
        h.extend_from_slice(&tag.to_le_bytes());
        h.extend_from_slice(&s.channels.to_le_bytes());
        h.extend_from_slice(&s.sample_rate.to_le_bytes());
        h.extend_from_slice(&(s.sample_rate.wrapping_mul(u32::from(block_align))).to_le_bytes());
        h.extend_from_slice(&block_align.to_le_bytes());
        h.extend_from_slice(&(s.format.bytes_per_sample() * 8).to_le_bytes());
        if s.format == WavFormat::Float32 {
            // cbSize = 0, then the fact chunk that non-PCM formats carry.
            h.extend_from_slice(&0u16.to_le_bytes());
            h.extend_from_slice(b"fact");
            h.extend_from_slice(&4u32.to_le_bytes());
            h.extend_from_slice(&(frames as u32).to_le_bytes());
        }
        h.extend_from_slice(b"data");
        h.extend_from_slice(&data_len.to_le_bytes());
        debug_assert_eq!(h.len() as u64, s.header_len());
        h
    }

    /// Writes the final header, syncs the file to disk and moves it onto the destination
    /// (atomically replacing it, or refusing an existing one for
    /// [`create_no_overwrite`](Self::create_no_overwrite)).
    pub fn finish(mut self) -> Result<(), AudioError> {
        let header = self.header(self.frames);
        let dest = self.dest.clone();
        let werr = |e: std::io::Error| AudioError::from_write(&dest, e);
        let out = self.out.take().ok_or_else(|| finished_error(&dest))?;
        let mut file = out.into_inner().map_err(|e| werr(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(werr)?;
        file.write_all(&header).map_err(werr)?;
        file.commit().map_err(|e| AudioError::from_fs(&dest, e))
    }
}

fn finished_error(path: &Path) -> AudioError {
    AudioError::InvalidInput(format!(
        "cannot write {}: the writer is already finished",
        path.display()
    ))
}

/// Writes mono `samples` at `sample_rate` to `path` atomically, replacing an existing file.
pub fn write_wav(
    path: impl AsRef<Path>,
    samples: &[f32],
    sample_rate: u32,
    format: WavFormat,
) -> Result<(), AudioError> {
    let mut w = WavWriter::create(path, WavSpec::mono(sample_rate, format))?;
    w.write(samples)?;
    w.finish()
}

/// Like [`write_wav`] but refuses to replace an existing file ([`AudioError::AlreadyExists`]).
pub fn write_wav_no_overwrite(
    path: impl AsRef<Path>,
    samples: &[f32],
    sample_rate: u32,
    format: WavFormat,
) -> Result<(), AudioError> {
    let mut w = WavWriter::create_no_overwrite(path, WavSpec::mono(sample_rate, format))?;
    w.write(samples)?;
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm16_conversion_matches_libsndfile() {
        // Values checked against soundfile 0.14 / libsndfile 1.2.2.
        assert_eq!(to_pcm16(1.0), 32_767);
        assert_eq!(to_pcm16(-1.0), -32_768);
        assert_eq!(to_pcm16(0.0), 0);
        assert_eq!(to_pcm16(-0.0), 0);
        assert_eq!(to_pcm16(0.5 / 32_768.0), 0);
        assert_eq!(to_pcm16(-0.5 / 32_768.0), -1);
        assert_eq!(to_pcm16(1.5 / 32_768.0), 1);
        assert_eq!(to_pcm16(2.5 / 32_768.0), 2);
        // Tiny negatives: lrintf(x * 2^31) rounds to 0 first (-0.49 -> 0, -0.52 -> -1).
        assert_eq!(to_pcm16(-1e-12), 0);
        assert_eq!(to_pcm16(-2.3e-10), 0);
        assert_eq!(to_pcm16(-2.4e-10), -1);
        assert_eq!(to_pcm16(-1e-9), -1);
        assert_eq!(to_pcm16(-1e-6), -1);
    }
}
