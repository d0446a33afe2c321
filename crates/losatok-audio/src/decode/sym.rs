//! Decoding through symphonia (FLAC, Ogg/Vorbis, MP3 and compressed WAV encodings).
//!
//! Every call into symphonia is wrapped in `catch_unwind`: symphonia can panic on some
//! malformed inputs, and a loader must turn that into an error instead of aborting the
//! program.

use std::fs::File;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use symphonia::core::audio::{AudioBuffer, AudioBufferRef, Signal};
use symphonia::core::codecs::{Decoder, DecoderOptions, CODEC_TYPE_FLAC, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use symphonia::core::sample::{i24, u24, Sample};

use super::{AudioInfo, Container};
use crate::error::{AudioError, MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};

/// Runs `f`, turning a panic inside symphonia into [`AudioError::Corrupt`].
fn guarded<T>(path: &Path, what: &str, f: impl FnOnce() -> T) -> Result<T, AudioError> {
    panic::catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| AudioError::corrupt(path, format!("the {what} panicked on malformed data")))
}

/// Where a symphonia error happened, named for the user: the container (`"WAV"`) or the
/// codec (`"Microsoft ADPCM"`).
#[derive(Clone, Copy)]
enum Stage {
    /// Reading the container's structure.
    Container(&'static str),
    /// Setting up the decoder of a codec.
    Setup(&'static str),
    /// Decoding a codec's audio data.
    Data(&'static str),
}

/// The container's name for messages.
fn container_name(c: Container) -> &'static str {
    match c {
        Container::Wav => "WAV",
        Container::Flac => "FLAC",
        Container::Ogg => "Ogg",
        Container::Mp3 => "MP3",
    }
}

/// A codec's name for messages, from symphonia's short name.
fn codec_name(short: &str) -> &'static str {
    match short {
        "adpcm_ms" => "Microsoft ADPCM",
        "adpcm_ima_wav" | "adpcm_ima_qt" => "IMA ADPCM",
        "mp1" | "mp2" | "mp3" => "MPEG audio",
        "flac" => "FLAC",
        "vorbis" => "Vorbis",
        "pcm_alaw" => "A-law",
        "pcm_mulaw" => "μ-law",
        s if s.starts_with("pcm") => "PCM",
        _ => "audio",
    }
}

/// A decoder library's message without its module prefix (`"adpcm (ima): invalid step index"`
/// → `"invalid step index"`), as a detail in parentheses after the user-facing words.
fn detail(msg: &str) -> &str {
    msg.rsplit(": ").next().unwrap_or(msg)
}

/// Maps a symphonia error to the crate error, in the user's terms (what is damaged or not
/// supported, by container or codec name), with the decoder's own words as a detail.
fn map_err(path: &Path, err: SymError, stage: Stage) -> AudioError {
    let (what, part) = match stage {
        Stage::Container(c) => (c, "structure"),
        Stage::Setup(c) => (c, "stream parameters"),
        Stage::Data(c) => (c, "audio data"),
    };
    match err {
        SymError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioError::truncated(
                path,
                format!("unexpected end of file while reading the {what} {part}"),
            )
        }
        SymError::IoError(e) => AudioError::from_read(path, e),
        // a decoder "unsupported" in the middle of the data is damaged data
        SymError::DecodeError(msg) | SymError::Unsupported(msg)
            if matches!(stage, Stage::Data(_)) =>
        {
            AudioError::corrupt(path, format!("damaged {what} {part} ({})", detail(msg)))
        }
        SymError::DecodeError(msg) => {
            AudioError::corrupt(path, format!("damaged {what} {part} ({})", detail(msg)))
        }
        SymError::Unsupported(msg) => AudioError::unsupported(
            path,
            format!(
                "{what} {part} of a kind this tool cannot read ({})",
                detail(msg)
            ),
        ),
        SymError::LimitError(msg) => AudioError::corrupt(
            path,
            format!("the {what} {part} exceed a decoder limit ({})", detail(msg)),
        ),
        SymError::ResetRequired => AudioError::unsupported(
            path,
            "the stream changes its parameters mid-file (chained streams are not supported)",
        ),
        SymError::SeekError(_) => {
            AudioError::corrupt(path, format!("damaged {what} {part} (seek error)"))
        }
    }
}

/// A demuxer plus decoder for the first audio track of a file.
pub(crate) struct SymSource {
    format: Box<dyn FormatReader>,
    decoder: Box<dyn Decoder>,
    track_id: u32,
    channels: usize,
    /// Frames announced by the container, used to detect truncation (lossless codecs only).
    expected_frames: Option<u64>,
    /// Output is cut at this many frames (Ogg: the end granule position).
    max_frames: Option<u64>,
    frames_read: u64,
    done: bool,
    /// The container's and the codec's names for messages.
    container: &'static str,
    codec: &'static str,
}

impl SymSource {
    /// Opens `file` (positioned at byte 0) as `container`.
    pub(crate) fn open(
        mut file: File,
        path: &Path,
        container: Container,
    ) -> Result<(Self, AudioInfo), AudioError> {
        // symphonia trusts metadata lengths when it allocates: check them first
        super::guard::check(&mut file, container, path)?;
        let mut hint = Hint::new();
        hint.with_extension(container.extension());
        let mss = MediaSourceStream::new(Box::new(file), MediaSourceStreamOptions::default());
        // Gapless mode trims the encoder delay and padding of MP3 (LAME/Xing info tag) and the
        // pre-skip of Ogg streams, which is what libsndfile (mpg123, libvorbis) returns too.
        let format_opts = FormatOptions {
            enable_gapless: true,
            ..Default::default()
        };
        let probed = guarded(path, "container parser", || {
            symphonia::default::get_probe().format(
                &hint,
                mss,
                &format_opts,
                &MetadataOptions::default(),
            )
        })?
        .map_err(|e| map_err(path, e, Stage::Container(container_name(container))))?;
        let format = probed.format;

        let track = format
            .tracks()
            .iter()
            .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
            .ok_or_else(|| AudioError::unsupported(path, "no audio track found"))?;
        let params = track.codec_params.clone();
        let track_id = track.id;

        let sample_rate = params.sample_rate.ok_or_else(|| {
            AudioError::corrupt(path, "the stream does not state its sample rate")
        })?;
        if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&sample_rate) {
            return Err(AudioError::InvalidSampleRate {
                path: path.to_path_buf(),
                rate: u64::from(sample_rate),
            });
        }
        let channels = params
            .channels
            .ok_or_else(|| {
                AudioError::corrupt(path, "the stream does not state its channel count")
            })?
            .count();
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(AudioError::InvalidChannelCount {
                path: path.to_path_buf(),
                channels: channels as u64,
            });
        }

        let codecs = symphonia::default::get_codecs();
        let codec = codecs
            .get_codec(params.codec)
            .map_or("unknown", |d| d.short_name);
        let decoder = guarded(path, "decoder", || {
            codecs.make(&params, &DecoderOptions::default())
        })?
        .map_err(|e| map_err(path, e, Stage::Setup(codec_name(codec))))?;

        // Frame counts that a healthy file must reach: FLAC STREAMINFO, the WAV data chunk
        // size, and for MP3 the Xing/Info frame count when a LAME tag gives the exact
        // delay and padding (without it, symphonia only estimates the length).
        let exact_count = params.codec == CODEC_TYPE_FLAC
            || container == Container::Wav
            || (container == Container::Mp3 && params.delay.is_some());
        let expected_frames = if exact_count {
            params.n_frames.filter(|&n| n > 0)
        } else {
            None
        };
        // symphonia 0.5 does not trim the end of an Ogg stream to the final granule position
        // (the padding of the last packet), which libvorbis / libsndfile do; it does compute
        // that length as the track's frame count, so cut the output there.
        let max_frames = if container == Container::Ogg {
            params.n_frames
        } else {
            None
        };

        let info = AudioInfo {
            sample_rate,
            channels,
            frames: params.n_frames,
            codec,
            container,
        };
        let source = SymSource {
            format,
            decoder,
            track_id,
            channels,
            expected_frames,
            max_frames,
            frames_read: 0,
            done: false,
            container: container_name(container),
            codec: codec_name(codec),
        };
        Ok((source, info))
    }

    /// Decodes the next packet of the track, appending interleaved f32 frames to `out`.
    /// Returns the number of frames appended; 0 at the end of the stream.
    pub(crate) fn read_block(
        &mut self,
        out: &mut Vec<f32>,
        path: &Path,
    ) -> Result<usize, AudioError> {
        while !self.done {
            let packet = match guarded(path, "container parser", || self.format.next_packet())? {
                Ok(p) => p,
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    self.done = true;
                    break;
                }
                Err(e) => {
                    self.done = true;
                    return Err(map_err(path, e, Stage::Container(self.container)));
                }
            };
            if packet.track_id() != self.track_id {
                continue;
            }
            let decoder = &mut self.decoder;
            let channels = self.channels;
            let start = out.len();
            let decoded = guarded(path, "decoder", || match decoder.decode(&packet) {
                Ok(buf) => Ok(interleave(&buf, channels, out)),
                Err(e) => Err(e),
            });
            let mut frames = match decoded {
                Ok(Ok(Ok(frames))) => frames,
                Ok(Ok(Err(()))) => {
                    self.done = true;
                    return Err(AudioError::corrupt(
                        path,
                        "the channel count changes mid-stream",
                    ));
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(map_err(path, e, Stage::Data(self.codec)));
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            if let Some(max) = self.max_frames {
                let keep = max.saturating_sub(self.frames_read).min(frames as u64) as usize;
                out.truncate(start + keep * channels);
                frames = keep;
            }
            if frames > 0 {
                self.frames_read += frames as u64;
                return Ok(frames);
            }
        }
        if let Some(total) = self.expected_frames {
            if self.frames_read < total {
                return Err(AudioError::truncated(
                    path,
                    format!(
                        "the header announces {total} frames but the stream ends after {} frames",
                        self.frames_read
                    ),
                ));
            }
        }
        Ok(0)
    }
}

/// Appends the decoded buffer to `out` as interleaved f32, converting integer samples with
/// the libsndfile scaling (see [`super::riff::convert`]).
fn interleave(buf: &AudioBufferRef<'_>, channels: usize, out: &mut Vec<f32>) -> Result<usize, ()> {
    if buf.spec().channels.count() != channels {
        return Err(());
    }
    let frames = buf.frames();
    match buf {
        AudioBufferRef::U8(b) => push(b, out, |s: u8| (i32::from(s) - 128) as f32 * (1.0 / 128.0)),
        AudioBufferRef::U16(b) => push(b, out, |s: u16| {
            (i32::from(s) - 32_768) as f32 * (1.0 / 32_768.0)
        }),
        AudioBufferRef::U24(b) => push(b, out, |s: u24| {
            (s.inner() as i32 - 8_388_608) as f32 * (1.0 / 8_388_608.0)
        }),
        AudioBufferRef::U32(b) => push(b, out, |s: u32| {
            (i64::from(s) - 2_147_483_648) as f32 * (1.0 / 2_147_483_648.0)
        }),
        AudioBufferRef::S8(b) => push(b, out, |s: i8| f32::from(s) * (1.0 / 128.0)),
        AudioBufferRef::S16(b) => push(b, out, |s: i16| f32::from(s) * (1.0 / 32_768.0)),
        AudioBufferRef::S24(b) => push(b, out, |s: i24| s.inner() as f32 * (1.0 / 8_388_608.0)),
        AudioBufferRef::S32(b) => push(b, out, |s: i32| s as f32 * (1.0 / 2_147_483_648.0)),
        AudioBufferRef::F32(b) => push(b, out, |s: f32| s),
        AudioBufferRef::F64(b) => push(b, out, |s: f64| s as f32),
    }
    Ok(frames)
}

/// Interleaves the planes of `buf` into `out` through `conv`.
fn push<S: Sample>(buf: &AudioBuffer<S>, out: &mut Vec<f32>, conv: impl Fn(S) -> f32) {
    let channels = buf.spec().channels.count();
    let frames = buf.frames();
    out.reserve(frames * channels);
    let planes: Vec<&[S]> = (0..channels).map(|c| buf.chan(c)).collect();
    for f in 0..frames {
        for plane in &planes {
            out.push(conv(plane[f]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors() {
        let r: Result<(), AudioError> = guarded(Path::new("bad.mp3"), "decoder", || panic!("boom"));
        match r {
            Err(AudioError::Corrupt { path, reason }) => {
                assert_eq!(path, Path::new("bad.mp3"));
                assert!(reason.contains("panicked"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
