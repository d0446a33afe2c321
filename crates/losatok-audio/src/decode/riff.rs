//! Native reader for uncompressed RIFF/WAVE files (integer PCM and IEEE float).
//!
//! WAV is by far the most common input, and this reader gives full control over the things
//! that matter for parity with libsndfile: the integer-to-float scaling, any channel count,
//! header validation before anything is decoded, and detection of files whose data chunk is
//! shorter than the header says. Compressed WAV encodings (ADPCM, A-law, mu-law) are handed
//! to symphonia instead.

use std::io::{self, Read};
use std::path::Path;

use crate::error::{AudioError, MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};

/// `WAVE_FORMAT_PCM`.
const TAG_PCM: u16 = 0x0001;
/// `WAVE_FORMAT_IEEE_FLOAT`.
const TAG_FLOAT: u16 = 0x0003;
/// `WAVE_FORMAT_EXTENSIBLE`.
const TAG_EXTENSIBLE: u16 = 0xFFFE;
/// Format tags that symphonia decodes (IMA/MS ADPCM, A-law, mu-law).
const FOREIGN_TAGS: [u16; 4] = [0x0002, 0x0006, 0x0007, 0x0011];
/// Bytes 2..16 of every `KSDATAFORMAT_SUBTYPE_*` GUID derived from a format tag.
const SUBTYPE_GUID_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];
/// A fmt chunk larger than this is treated as corrupt.
const MAX_FMT_LEN: u32 = 1 << 16;

/// Sample encodings of uncompressed WAV data, decoded natively (public as
/// [`crate::PcmEncoding`], for readers that seek into WAV files themselves).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Unsigned 8-bit, offset 128.
    U8,
    /// Signed 16-bit little endian.
    S16,
    /// Signed 24-bit little endian (3 bytes).
    S24,
    /// Signed 32-bit little endian.
    S32,
    /// IEEE 754 binary32 little endian.
    F32,
    /// IEEE 754 binary64 little endian.
    F64,
}

impl Encoding {
    /// Bytes per sample.
    pub fn width(self) -> usize {
        match self {
            Encoding::U8 => 1,
            Encoding::S16 => 2,
            Encoding::S24 => 3,
            Encoding::S32 | Encoding::F32 => 4,
            Encoding::F64 => 8,
        }
    }

    /// Short codec name reported in [`crate::AudioInfo::codec`].
    pub fn codec_name(self) -> &'static str {
        match self {
            Encoding::U8 => "pcm_u8",
            Encoding::S16 => "pcm_s16le",
            Encoding::S24 => "pcm_s24le",
            Encoding::S32 => "pcm_s32le",
            Encoding::F32 => "pcm_f32le",
            Encoding::F64 => "pcm_f64le",
        }
    }

    /// The encoding whose [`codec_name`](Self::codec_name) is `name`.
    pub fn from_codec_name(name: &str) -> Option<Self> {
        [
            Encoding::U8,
            Encoding::S16,
            Encoding::S24,
            Encoding::S32,
            Encoding::F32,
            Encoding::F64,
        ]
        .into_iter()
        .find(|e| e.codec_name() == name)
    }

    /// Whether samples are floating point (and so may be NaN or infinite).
    pub fn is_float(self) -> bool {
        matches!(self, Encoding::F32 | Encoding::F64)
    }

    /// Append the samples of `raw` (whole samples of this encoding) to `out` as f32, scaled as
    /// the WAV reader scales them (libsndfile's scaling, as documented at the module level).
    pub fn convert(self, raw: &[u8], out: &mut Vec<f32>) {
        convert(self, raw, out)
    }
}

/// What the header parser found.
#[derive(Debug)]
pub(crate) struct WavHeader {
    /// Sample rate in Hz (validated).
    pub sample_rate: u32,
    /// Channel count (validated).
    pub channels: usize,
    /// The encoding if this reader handles it; `None` for a compressed encoding that must
    /// be decoded by symphonia.
    pub encoding: Option<Encoding>,
    /// Length of the data chunk in bytes; `None` when the header says "until end of file"
    /// (size field `0xFFFFFFFF`, as written by some streaming encoders).
    pub data_len: Option<u64>,
}

/// Reads exactly `buf.len()` bytes unless the stream ends; returns the count read.
pub(crate) fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Parses the RIFF header up to the start of the data chunk, leaving `r` positioned on the
/// first audio byte. The caller has already checked the `RIFF....WAVE` magic.
pub(crate) fn read_header<R: Read>(r: &mut R, path: &Path) -> Result<WavHeader, AudioError> {
    let read_err = |e: io::Error| AudioError::from_read(path, e);
    let mut riff = [0u8; 12];
    if read_full(r, &mut riff).map_err(read_err)? < 12 {
        return Err(AudioError::truncated(
            path,
            "file ends inside the RIFF header",
        ));
    }
    let mut fmt: Option<Vec<u8>> = None;
    loop {
        let mut hdr = [0u8; 8];
        let n = read_full(r, &mut hdr).map_err(read_err)?;
        if n < 8 {
            let what = if fmt.is_none() {
                "no fmt chunk"
            } else {
                "no data chunk"
            };
            return Err(AudioError::corrupt(path, format!("{what} in WAV file")));
        }
        let id = [hdr[0], hdr[1], hdr[2], hdr[3]];
        let size = u32_at(&hdr, 4);
        match &id {
            b"fmt " => {
                if !(16..=MAX_FMT_LEN).contains(&size) {
                    return Err(AudioError::corrupt(
                        path,
                        format!("invalid fmt chunk size {size} in WAV file"),
                    ));
                }
                let padded = size as usize + (size as usize & 1);
                let mut body = vec![0u8; padded];
                let got = read_full(r, &mut body).map_err(read_err)?;
                if got < size as usize {
                    return Err(AudioError::truncated(
                        path,
                        "file ends inside the fmt chunk",
                    ));
                }
                body.truncate(size as usize);
                fmt = Some(body);
            }
            b"data" => {
                let Some(fmt) = fmt else {
                    return Err(AudioError::corrupt(
                        path,
                        "WAV data chunk precedes the fmt chunk",
                    ));
                };
                let data_len = if size == u32::MAX {
                    None
                } else {
                    Some(u64::from(size))
                };
                return parse_fmt(&fmt, data_len, path);
            }
            _ => {
                let skip = u64::from(size) + u64::from(size & 1);
                let skipped =
                    io::copy(&mut r.by_ref().take(skip), &mut io::sink()).map_err(read_err)?;
                if skipped < skip {
                    let what = if fmt.is_none() {
                        "no fmt chunk"
                    } else {
                        "no data chunk"
                    };
                    return Err(AudioError::corrupt(path, format!("{what} in WAV file")));
                }
            }
        }
    }
}

/// Interprets a fmt chunk body.
fn parse_fmt(b: &[u8], data_len: Option<u64>, path: &Path) -> Result<WavHeader, AudioError> {
    let mut tag = u16_at(b, 0);
    let channels = u16_at(b, 2);
    let sample_rate = u32_at(b, 4);
    let bits = u16_at(b, 14);
    if channels == 0 || usize::from(channels) > MAX_CHANNELS {
        return Err(AudioError::InvalidChannelCount {
            path: path.to_path_buf(),
            channels: u64::from(channels),
        });
    }
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&sample_rate) {
        return Err(AudioError::InvalidSampleRate {
            path: path.to_path_buf(),
            rate: u64::from(sample_rate),
        });
    }
    if tag == TAG_EXTENSIBLE {
        if b.len() < 40 {
            return Err(AudioError::corrupt(
                path,
                "WAVE_FORMAT_EXTENSIBLE fmt chunk is too short",
            ));
        }
        if b[26..40] != SUBTYPE_GUID_TAIL {
            return Err(AudioError::unsupported(
                path,
                "WAV extensible sub-format with unknown GUID",
            ));
        }
        tag = u16_at(b, 24);
    }
    let encoding = match tag {
        // Like libsndfile, a sample occupies ceil(bits / 8) bytes; 8-bit WAV is unsigned.
        TAG_PCM => match bits {
            1..=8 => Encoding::U8,
            9..=16 => Encoding::S16,
            17..=24 => Encoding::S24,
            25..=32 => Encoding::S32,
            _ => {
                return Err(AudioError::unsupported(
                    path,
                    format!("{bits}-bit integer PCM WAV is not supported"),
                ))
            }
        },
        TAG_FLOAT => match bits {
            32 => Encoding::F32,
            64 => Encoding::F64,
            _ => {
                return Err(AudioError::unsupported(
                    path,
                    format!("{bits}-bit floating-point WAV is not supported"),
                ))
            }
        },
        t if FOREIGN_TAGS.contains(&t) => {
            return Ok(WavHeader {
                sample_rate,
                channels: usize::from(channels),
                encoding: None,
                data_len,
            })
        }
        t => {
            return Err(AudioError::unsupported(
                path,
                format!("WAV format tag 0x{t:04x} is not supported"),
            ))
        }
    };
    Ok(WavHeader {
        sample_rate,
        channels: usize::from(channels),
        encoding: Some(encoding),
        data_len,
    })
}

/// Streams the data chunk of a natively decoded WAV file.
pub(crate) struct WavSource<R> {
    reader: R,
    encoding: Encoding,
    channels: usize,
    /// Frames announced by the header (`None`: read until end of file).
    expected_frames: Option<u64>,
    frames_read: u64,
    raw: Vec<u8>,
    done: bool,
}

impl<R: Read> WavSource<R> {
    /// Wraps a reader positioned on the first data byte.
    pub(crate) fn new(reader: R, header: &WavHeader, encoding: Encoding) -> Self {
        let frame_bytes = (header.channels * encoding.width()) as u64;
        WavSource {
            reader,
            encoding,
            channels: header.channels,
            expected_frames: header.data_len.map(|len| len / frame_bytes),
            frames_read: 0,
            raw: Vec::new(),
            done: false,
        }
    }

    /// Frames announced by the header, if it states a length.
    pub(crate) fn expected_frames(&self) -> Option<u64> {
        self.expected_frames
    }

    /// Appends up to `max_frames` interleaved frames to `out`; returns the number of frames
    /// appended, 0 at the end of the data.
    pub(crate) fn read_block(
        &mut self,
        max_frames: usize,
        out: &mut Vec<f32>,
        path: &Path,
    ) -> Result<usize, AudioError> {
        if self.done {
            return Ok(0);
        }
        let frame_bytes = self.channels * self.encoding.width();
        let mut want = max_frames.max(1) as u64;
        if let Some(total) = self.expected_frames {
            want = want.min(total - self.frames_read);
        }
        if want == 0 {
            self.done = true;
            return Ok(0);
        }
        let want_bytes = want as usize * frame_bytes;
        self.raw.resize(want_bytes, 0);
        let got = read_full(&mut self.reader, &mut self.raw)
            .map_err(|e| AudioError::from_read(path, e))?;
        let frames = got / frame_bytes;
        if got < want_bytes {
            self.done = true;
            if let Some(total) = self.expected_frames {
                return Err(AudioError::truncated(
                    path,
                    format!(
                        "the WAV header announces {total} frames but the data ends after {} frames",
                        self.frames_read + frames as u64
                    ),
                ));
            }
        }
        convert(self.encoding, &self.raw[..frames * frame_bytes], out);
        self.frames_read += frames as u64;
        Ok(frames)
    }
}

/// Converts little-endian samples to f32 exactly as libsndfile's `sf_read_float` does with
/// normalisation on: `(u8 - 128) / 128`, `i16 / 2^15`, `i24 / 2^23`, `i32 / 2^31` (the
/// integer is first rounded to f32, then scaled by a power of two), floats copied, doubles
/// rounded to nearest.
pub(crate) fn convert(encoding: Encoding, raw: &[u8], out: &mut Vec<f32>) {
    out.reserve(raw.len() / encoding.width());
    match encoding {
        Encoding::U8 => out.extend(
            raw.iter()
                .map(|&b| (i32::from(b) - 128) as f32 * (1.0 / 128.0)),
        ),
        Encoding::S16 => out.extend(
            raw.chunks_exact(2)
                .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) * (1.0 / 32_768.0)),
        ),
        Encoding::S24 => out.extend(raw.chunks_exact(3).map(|c| {
            let v = i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8;
            v as f32 * (1.0 / 8_388_608.0)
        })),
        Encoding::S32 => out.extend(raw.chunks_exact(4).map(|c| {
            i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32 * (1.0 / 2_147_483_648.0)
        })),
        Encoding::F32 => out.extend(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        Encoding::F64 => {
            out.extend(raw.chunks_exact(8).map(|c| {
                f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_scaling_matches_libsndfile() {
        let mut out = Vec::new();
        convert(Encoding::U8, &[0, 128, 255], &mut out);
        assert_eq!(out, [-1.0, 0.0, 127.0 / 128.0]);
        out.clear();
        convert(
            Encoding::S16,
            &[0x00, 0x80, 0xff, 0x7f, 0x01, 0x00],
            &mut out,
        );
        assert_eq!(out, [-1.0, 32767.0 / 32768.0, 1.0 / 32768.0]);
        out.clear();
        convert(
            Encoding::S24,
            &[0x00, 0x00, 0x80, 0xff, 0xff, 0xff],
            &mut out,
        );
        assert_eq!(out, [-1.0, -1.0 / 8_388_608.0]);
        out.clear();
        convert(
            Encoding::S32,
            &[0x00, 0x00, 0x00, 0x80, 0xff, 0xff, 0xff, 0x7f],
            &mut out,
        );
        assert_eq!(out, [-1.0, 1.0]); // 2^31 - 1 rounds to 2^31 in f32
    }
}
