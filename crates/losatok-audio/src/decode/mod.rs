//! Decoding audio files to f32 at their native sample rate.
//!
//! Uncompressed WAV (integer PCM 8/16/24/32-bit, float 32/64-bit) is read by a native reader;
//! FLAC, Ogg/Vorbis, MP3 and compressed WAV encodings go through symphonia. The format is
//! recognised from the first bytes of the file, never from its extension.
//!
//! Integer samples are scaled like libsndfile (and so like `soundfile` / `librosa.load`):
//! `(u8 - 128) / 128`, `i16 / 2^15`, `i24 / 2^23`, `i32 / 2^31`. MP3 and Ogg/Vorbis are
//! decoded gaplessly (encoder delay, padding and the final granule position trimmed), which
//! gives the same length and alignment as libsndfile (mpg123 / libvorbis).
//!
//! Error policy:
//! * a file that ends before the frame count announced by its header is an error
//!   ([`AudioError::Truncated`]), never a silently shortened signal. This covers the WAV
//!   data chunk size, FLAC STREAMINFO, and MP3 files with a LAME/Xing info tag; an Ogg
//!   file cut inside a page fails when it is opened. (libsndfile would return the
//!   decodable prefix; the loader prefers to refuse.) An MP3 without an info tag has no
//!   reliable length, so a cut there goes unnoticed;
//! * a packet the codec cannot decode is an error ([`AudioError::Corrupt`]), for every codec
//!   (no concealment or resynchronisation, unlike mpg123);
//! * NaN or infinite samples in floating-point files are an error ([`AudioError::NonFinite`]),
//!   as `librosa.load(sr=...)` rejects them too;
//! * a stream with no frames is an error ([`AudioError::NoSamples`]).

mod guard;
mod riff;
mod sym;

use std::fmt;
use std::fs::{self, File};
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::AudioError;
pub use riff::Encoding as PcmEncoding;
use riff::WavSource;
use sym::SymSource;

/// Frames per block returned by the native WAV reader unless changed with
/// [`AudioDecoder::set_block_frames`].
pub const DEFAULT_BLOCK_FRAMES: usize = 32_768;

/// The container of a recognised file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Container {
    /// RIFF/WAVE.
    Wav,
    /// Native FLAC.
    Flac,
    /// Ogg (Vorbis).
    Ogg,
    /// MPEG audio layer III elementary stream.
    Mp3,
}

impl Container {
    /// A short lowercase name (`"wav"`, `"flac"`, `"ogg"`, `"mp3"`).
    pub fn name(self) -> &'static str {
        match self {
            Container::Wav => "wav",
            Container::Flac => "flac",
            Container::Ogg => "ogg",
            Container::Mp3 => "mp3",
        }
    }

    /// The file extension given to symphonia as a hint.
    fn extension(self) -> &'static str {
        self.name()
    }
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a file holds, read from its header without decoding the audio.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioInfo {
    /// Native sample rate in Hz.
    pub sample_rate: u32,
    /// Number of channels.
    pub channels: usize,
    /// Number of frames (samples per channel) if the header states it. For MP3 this comes
    /// from the Xing/LAME tag when there is one (encoder delay and padding excluded).
    pub frames: Option<u64>,
    /// Short codec name, e.g. `"pcm_s16le"`, `"pcm_f32le"`, `"flac"`, `"vorbis"`, `"mp3"`.
    pub codec: &'static str,
    /// The container.
    pub container: Container,
}

impl AudioInfo {
    /// Duration in seconds, if the frame count is known.
    pub fn duration_secs(&self) -> Option<f64> {
        self.frames.map(|n| n as f64 / f64::from(self.sample_rate))
    }
}

/// A fully decoded file: channel-major f32 samples at the native rate.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedAudio {
    /// Native sample rate in Hz.
    pub sample_rate: u32,
    /// Number of channels.
    pub channels: usize,
    /// `channels` consecutive planes of equal length (channel-major layout).
    pub samples: Vec<f32>,
}

impl DecodedAudio {
    /// Number of frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len().checked_div(self.channels).unwrap_or(0)
    }

    /// The samples of channel `c`.
    ///
    /// # Panics
    /// If `c >= self.channels`.
    pub fn channel(&self, c: usize) -> &[f32] {
        assert!(
            c < self.channels,
            "channel {c} out of range ({} channels)",
            self.channels
        );
        let n = self.frames();
        &self.samples[c * n..(c + 1) * n]
    }
}

enum Source {
    Wav(WavSource<BufReader<File>>),
    Sym(Box<SymSource>),
}

/// Incremental decoder: yields blocks of interleaved f32 frames at the native rate, in
/// bounded memory.
///
/// ```no_run
/// let mut dec = losatok_audio::AudioDecoder::open("speech.flac")?;
/// let channels = dec.info().channels;
/// while let Some(block) = dec.next_block()? {
///     let frames = block.len() / channels;
///     // ... use `block` (interleaved) ...
/// #   let _ = frames;
/// }
/// # Ok::<(), losatok_audio::AudioError>(())
/// ```
pub struct AudioDecoder {
    path: PathBuf,
    info: AudioInfo,
    source: Source,
    float_samples: bool,
    block: Vec<f32>,
    block_frames: usize,
    frames: u64,
    done: bool,
}

impl fmt::Debug for AudioDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AudioDecoder")
            .field("path", &self.path)
            .field("info", &self.info)
            .field("frames_decoded", &self.frames)
            .finish_non_exhaustive()
    }
}

impl AudioDecoder {
    /// Opens `path`, recognises its format and reads its header. No audio is decoded yet.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AudioError> {
        let path = path.as_ref();
        let mut file = open_file(path)?;
        let container = sniff(&mut file, path)?;
        if container == Container::Wav {
            let mut reader = BufReader::with_capacity(1 << 16, file);
            let header = riff::read_header(&mut reader, path)?;
            if let Some(encoding) = header.encoding {
                let source = WavSource::new(reader, &header, encoding);
                let info = AudioInfo {
                    sample_rate: header.sample_rate,
                    channels: header.channels,
                    frames: source.expected_frames(),
                    codec: encoding.codec_name(),
                    container,
                };
                return Ok(Self::with_source(
                    path,
                    info,
                    Source::Wav(source),
                    encoding.is_float(),
                ));
            }
            // Compressed WAV encodings: let symphonia parse the file from the start.
            let mut file = reader.into_inner();
            file.seek(SeekFrom::Start(0))
                .map_err(|e| AudioError::from_read(path, e))?;
            let (source, info) = SymSource::open(file, path, container)?;
            return Ok(Self::with_source(
                path,
                info,
                Source::Sym(Box::new(source)),
                false,
            ));
        }
        let (source, info) = SymSource::open(file, path, container)?;
        // Vorbis and MP3 decode to float; a NaN would be a decoder bug, but check anyway.
        Ok(Self::with_source(
            path,
            info,
            Source::Sym(Box::new(source)),
            true,
        ))
    }

    fn with_source(path: &Path, info: AudioInfo, source: Source, float_samples: bool) -> Self {
        AudioDecoder {
            path: path.to_path_buf(),
            info,
            source,
            float_samples,
            block: Vec::new(),
            block_frames: DEFAULT_BLOCK_FRAMES,
            frames: 0,
            done: false,
        }
    }

    /// The header information.
    pub fn info(&self) -> &AudioInfo {
        &self.info
    }

    /// The path this decoder reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames decoded so far.
    pub fn frames_decoded(&self) -> u64 {
        self.frames
    }

    /// Sets the maximum block size (in frames) of the native WAV reader. Compressed formats
    /// always yield one codec packet per block. Values below 1 are treated as 1.
    pub fn set_block_frames(&mut self, frames: usize) {
        self.block_frames = frames.max(1);
    }

    /// Decodes the next block and returns it as interleaved samples
    /// (`frames * channels` values), or `None` at the end of the stream.
    ///
    /// The end of the stream is checked: a stream that held no frames at all gives
    /// [`AudioError::NoSamples`], one shorter than its header announces gives
    /// [`AudioError::Truncated`]. After an error, further calls return `Ok(None)`.
    pub fn next_block(&mut self) -> Result<Option<&[f32]>, AudioError> {
        if self.done {
            return Ok(None);
        }
        self.block.clear();
        let result = match &mut self.source {
            Source::Wav(w) => w.read_block(self.block_frames, &mut self.block, &self.path),
            Source::Sym(s) => s.read_block(&mut self.block, &self.path),
        };
        let frames = match result {
            Ok(n) => n,
            Err(e) => {
                self.done = true;
                return Err(e);
            }
        };
        if frames == 0 {
            self.done = true;
            if self.frames == 0 {
                return Err(AudioError::NoSamples {
                    path: self.path.clone(),
                });
            }
            return Ok(None);
        }
        if self.float_samples {
            if let Some(i) = self.block.iter().position(|x| !x.is_finite()) {
                self.done = true;
                return Err(AudioError::NonFinite {
                    path: self.path.clone(),
                    frame: self.frames + (i / self.info.channels) as u64,
                });
            }
        }
        self.frames += frames as u64;
        Ok(Some(&self.block))
    }
}

/// Reads the header of `path` (format, sample rate, channels, frame count if stated)
/// without decoding the audio.
pub fn probe(path: impl AsRef<Path>) -> Result<AudioInfo, AudioError> {
    Ok(AudioDecoder::open(path)?.info)
}

/// Decodes a whole file to channel-major f32 at its native sample rate.
pub fn decode(path: impl AsRef<Path>) -> Result<DecodedAudio, AudioError> {
    let mut dec = AudioDecoder::open(path)?;
    let channels = dec.info.channels;
    let sample_rate = dec.info.sample_rate;
    let mut planes: Vec<Vec<f32>> = vec![Vec::new(); channels];
    if let Some(n) = dec.info.frames {
        // The header may lie; cap the reservation.
        let n = usize::try_from(n).unwrap_or(usize::MAX).min(1 << 26);
        for p in &mut planes {
            p.reserve(n);
        }
    }
    while let Some(block) = dec.next_block()? {
        for frame in block.chunks_exact(channels) {
            for (plane, &x) in planes.iter_mut().zip(frame) {
                plane.push(x);
            }
        }
    }
    let samples = if channels == 1 {
        planes.pop().unwrap_or_default()
    } else {
        planes.concat()
    };
    Ok(DecodedAudio {
        sample_rate,
        channels,
        samples,
    })
}

/// Opens a file for reading, with precise errors for missing paths, directories, permission
/// problems and empty files.
fn open_file(path: &Path) -> Result<File, AudioError> {
    let meta = fs::metadata(path).map_err(|e| AudioError::from_read(path, e))?;
    if meta.is_dir() {
        return Err(AudioError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    if !meta.is_file() {
        // opening a FIFO blocks until a writer comes; devices never end
        return Err(AudioError::NotAFile {
            path: path.to_path_buf(),
            kind: losatok_fs::file_kind(&meta),
        });
    }
    let file = File::open(path).map_err(|e| AudioError::from_read(path, e))?;
    if meta.is_file() && meta.len() == 0 {
        return Err(AudioError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(file)
}

/// Recognises the container from the first bytes and rewinds the file.
fn sniff(file: &mut File, path: &Path) -> Result<Container, AudioError> {
    let mut head = [0u8; 16];
    let n = riff::read_full(file, &mut head).map_err(|e| AudioError::from_read(path, e))?;
    let head = &head[..n];
    let kind = classify(head, path, |offset, buf| {
        file.seek(SeekFrom::Start(offset))?;
        riff::read_full(file, buf)
    })?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| AudioError::from_read(path, e))?;
    Ok(kind)
}

/// Classifies a file from its first bytes; `read_at` reads further bytes (used to look past
/// an ID3v2 tag).
fn classify(
    head: &[u8],
    path: &Path,
    mut read_at: impl FnMut(u64, &mut [u8]) -> std::io::Result<usize>,
) -> Result<Container, AudioError> {
    if head.is_empty() {
        return Err(AudioError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(b"RIFF") {
        if head.len() >= 12 && &head[8..12] == b"WAVE" {
            return Ok(Container::Wav);
        }
        if head.len() < 12 {
            return Err(AudioError::truncated(
                path,
                "file ends inside the RIFF header",
            ));
        }
        return Err(AudioError::unsupported(
            path,
            "RIFF file that is not a WAVE file",
        ));
    }
    if starts(b"RIFX") || starts(b"RF64") || starts(b"BW64") {
        return Err(AudioError::unsupported(
            path,
            "big-endian (RIFX) and 64-bit (RF64/BW64) WAV files are not supported",
        ));
    }
    if starts(b"fLaC") {
        return Ok(Container::Flac);
    }
    if starts(b"OggS") {
        return Ok(Container::Ogg);
    }
    if starts(b"ID3") {
        // ID3v2 tag: 10-byte header with a 28-bit "syncsafe" size, plus a footer if flagged.
        if head.len() < 10 {
            return Err(AudioError::truncated(path, "file ends inside the ID3 tag"));
        }
        let size = head[6..10]
            .iter()
            .fold(0u64, |acc, &b| (acc << 7) | u64::from(b & 0x7f));
        let footer = if head[5] & 0x10 != 0 { 10 } else { 0 };
        let mut next = [0u8; 4];
        let got =
            read_at(10 + size + footer, &mut next).map_err(|e| AudioError::from_read(path, e))?;
        let next = &next[..got];
        if next.starts_with(b"fLaC") {
            return Ok(Container::Flac);
        }
        return match mpeg_layer(next) {
            Some(3) => Ok(Container::Mp3),
            Some(layer) => Err(AudioError::unsupported(
                path,
                format!("MPEG audio layer {layer} is not supported (only layer III)"),
            )),
            None => Err(AudioError::unsupported(
                path,
                "ID3 tag not followed by MP3 or FLAC audio",
            )),
        };
    }
    match mpeg_layer(head) {
        Some(3) => Ok(Container::Mp3),
        Some(layer) => Err(AudioError::unsupported(
            path,
            format!("MPEG audio layer {layer} is not supported (only layer III)"),
        )),
        None => Err(AudioError::unsupported(
            path,
            "not a WAV, FLAC, Ogg/Vorbis or MP3 file (unknown header bytes)",
        )),
    }
}

/// If `b` starts with a plausible MPEG audio frame header, returns its layer (1, 2 or 3).
fn mpeg_layer(b: &[u8]) -> Option<u8> {
    if b.len() < 4 || b[0] != 0xFF || b[1] & 0xE0 != 0xE0 {
        return None;
    }
    let version = (b[1] >> 3) & 3; // 1 is reserved
    let layer = (b[1] >> 1) & 3; // 0 is reserved
    let bitrate = b[2] >> 4; // 0 (free format) and 15 are not supported
    let rate = (b[2] >> 2) & 3; // 3 is reserved
    if version == 1 || layer == 0 || bitrate == 0 || bitrate == 15 || rate == 3 {
        return None;
    }
    Some(4 - layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(head: &[u8]) -> Result<Container, AudioError> {
        classify(head, Path::new("x"), |_, _| Ok(0))
    }

    #[test]
    fn recognises_magic_bytes() {
        assert_eq!(kind(b"RIFF\0\0\0\0WAVEfmt ").unwrap(), Container::Wav);
        assert_eq!(kind(b"fLaC\0\0\0\x22").unwrap(), Container::Flac);
        assert_eq!(kind(b"OggS\0\x02").unwrap(), Container::Ogg);
        assert_eq!(kind(&[0xFF, 0xFB, 0x90, 0x64]).unwrap(), Container::Mp3);
        assert!(matches!(
            kind(&[0xFF, 0xFD, 0x90, 0x64]),
            Err(AudioError::UnsupportedFormat { .. })
        ));
        assert!(matches!(
            kind(b"RIFF\0\0\0\0AVI LIST"),
            Err(AudioError::UnsupportedFormat { .. })
        ));
        assert!(matches!(
            kind(b"hello world, no audio"),
            Err(AudioError::UnsupportedFormat { .. })
        ));
        assert!(matches!(
            kind(&[0xFF, 0xFB, 0xF0, 0x64]),
            Err(AudioError::UnsupportedFormat { .. })
        ));
    }
}
