//! A TensorBoard event-file writer, self-contained (no TensorFlow or protobuf dependency).
//!
//! An event file, `events.out.tfevents.<unix_secs>.<hostname>`, is a sequence of TFRecords:
//!
//! ```text
//! u64 LE   length of data
//! u32 LE   masked CRC-32C of those 8 length bytes
//! [u8]     data: one serialized `Event` protobuf message
//! u32 LE   masked CRC-32C of data
//! ```
//!
//! with `mask(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8` (wrapping). The first record
//! is `Event{wall_time, file_version: "brain.Event:2"}`; every later one is
//! `Event{wall_time, step, summary}` carrying `Summary.Value`s with a scalar
//! (`simple_value`), a PNG image or a WAV clip. The few protobuf fields needed are encoded by
//! hand below (field numbers from TensorFlow's `event.proto` and `summary.proto`).

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use losatok_audio::WavFormat;

use super::MetricsError;

// ---------------------------------------------------------------------------------------------
// CRC-32C (Castagnoli)
// ---------------------------------------------------------------------------------------------

/// Reflected Castagnoli polynomial.
const CRC32C_POLY: u32 = 0x82F6_3B78;

/// Byte-at-a-time lookup table, built at compile time.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ CRC32C_POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32C (Castagnoli) of `data`, as used by TFRecord. `crc32c(b"123456789") == 0xE3069283`.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = CRC32C_TABLE[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The TFRecord "masked" CRC-32C of `data`: `((crc >> 15) | (crc << 17)) + 0xa282ead8`.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xA282_EAD8)
}

/// Appends `data` to `out` as one TFRecord.
fn frame_record(data: &[u8], out: &mut Vec<u8>) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

// ---------------------------------------------------------------------------------------------
// Protobuf encoding (just what is needed)
// ---------------------------------------------------------------------------------------------

/// Protobuf wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7F) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(out, u64::from((field << 3) | wire));
}

fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, VARINT);
    put_varint(out, v);
}

fn put_double(out: &mut Vec<u8>, field: u32, v: f64) {
    put_key(out, field, FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_float(out: &mut Vec<u8>, field: u32, v: f32) {
    put_key(out, field, FIXED32);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

// `Event` fields.
const EVENT_WALL_TIME: u32 = 1;
const EVENT_STEP: u32 = 2;
const EVENT_FILE_VERSION: u32 = 3;
const EVENT_SUMMARY: u32 = 5;
const EVENT_SESSION_LOG: u32 = 7;
// `SessionLog` fields and values.
const SESSION_LOG_STATUS: u32 = 1;
const SESSION_LOG_START: u64 = 1;
// `Summary` fields.
const SUMMARY_VALUE: u32 = 1;
// `Summary.Value` fields.
const VALUE_TAG: u32 = 1;
const VALUE_SIMPLE_VALUE: u32 = 2;
const VALUE_IMAGE: u32 = 4;
const VALUE_AUDIO: u32 = 6;
// `Summary.Image` fields.
const IMAGE_HEIGHT: u32 = 1;
const IMAGE_WIDTH: u32 = 2;
const IMAGE_COLORSPACE: u32 = 3;
const IMAGE_ENCODED: u32 = 4;
// `Summary.Audio` fields.
const AUDIO_SAMPLE_RATE: u32 = 1;
const AUDIO_NUM_CHANNELS: u32 = 2;
const AUDIO_LENGTH_FRAMES: u32 = 3;
const AUDIO_ENCODED: u32 = 4;
const AUDIO_CONTENT_TYPE: u32 = 5;

/// The payload of one `Summary.Value`.
enum ValueKind<'a> {
    Scalar(f32),
    Image {
        png: &'a [u8],
        width: u32,
        height: u32,
        colorspace: u32,
    },
    Audio {
        wav: &'a [u8],
        sample_rate: u32,
        frames: u64,
    },
}

/// Appends one serialized `Summary.Value` (as field 1 of `Summary`) to `summary`.
fn put_value(summary: &mut Vec<u8>, tag: &str, kind: &ValueKind<'_>) {
    let mut value = Vec::new();
    put_bytes(&mut value, VALUE_TAG, tag.as_bytes());
    match *kind {
        ValueKind::Scalar(v) => put_float(&mut value, VALUE_SIMPLE_VALUE, v),
        ValueKind::Image {
            png,
            width,
            height,
            colorspace,
        } => {
            let mut image = Vec::with_capacity(png.len() + 16);
            put_uint(&mut image, IMAGE_HEIGHT, u64::from(height));
            put_uint(&mut image, IMAGE_WIDTH, u64::from(width));
            put_uint(&mut image, IMAGE_COLORSPACE, u64::from(colorspace));
            put_bytes(&mut image, IMAGE_ENCODED, png);
            put_bytes(&mut value, VALUE_IMAGE, &image);
        }
        ValueKind::Audio {
            wav,
            sample_rate,
            frames,
        } => {
            let mut audio = Vec::with_capacity(wav.len() + 32);
            put_float(&mut audio, AUDIO_SAMPLE_RATE, sample_rate as f32);
            put_uint(&mut audio, AUDIO_NUM_CHANNELS, 1);
            put_uint(&mut audio, AUDIO_LENGTH_FRAMES, frames);
            put_bytes(&mut audio, AUDIO_ENCODED, wav);
            put_bytes(&mut audio, AUDIO_CONTENT_TYPE, b"audio/wav");
            put_bytes(&mut value, VALUE_AUDIO, &audio);
        }
    }
    put_bytes(summary, SUMMARY_VALUE, &value);
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A protobuf `int64` step (TensorBoard steps are signed).
fn step_i64(step: u64) -> u64 {
    step.min(i64::MAX as u64)
}

// ---------------------------------------------------------------------------------------------
// WAV encoding
// ---------------------------------------------------------------------------------------------

/// Encodes a mono clip as a WAV file in memory: 16-bit PCM (`WAVE_FORMAT_PCM`, playable by
/// every browser, what TensorBoard shows) or 32-bit float (`WAVE_FORMAT_IEEE_FLOAT`).
///
/// Samples are clamped to `[-1, 1]` (NaN becomes 0); 16-bit values are
/// `floor(x · 32768)` limited to `[-32768, 32767]`, like libsndfile.
pub fn encode_wav(samples: &[f32], sample_rate: u32, format: WavFormat) -> Vec<u8> {
    let (format_tag, bytes_per_sample): (u16, u16) = match format {
        WavFormat::Pcm16 => (1, 2),
        WavFormat::Float32 => (3, 4),
    };
    let data_len = (samples.len() as u64 * u64::from(bytes_per_sample)).min(u32::MAX as u64 - 64);
    let n = (data_len / u64::from(bytes_per_sample)) as usize;
    let data_len = data_len as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&format_tag.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // channels
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate.wrapping_mul(u32::from(bytes_per_sample))).to_le_bytes());
    out.extend_from_slice(&bytes_per_sample.to_le_bytes()); // block align
    out.extend_from_slice(&(bytes_per_sample * 8).to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for &x in &samples[..n] {
        let x = if x.is_nan() { 0.0 } else { x.clamp(-1.0, 1.0) };
        match format {
            WavFormat::Pcm16 => {
                let v = (f64::from(x) * 32768.0).floor().clamp(-32768.0, 32767.0) as i16;
                out.extend_from_slice(&v.to_le_bytes());
            }
            WavFormat::Float32 => out.extend_from_slice(&x.to_le_bytes()),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The writer
// ---------------------------------------------------------------------------------------------

/// The host name for event file names ([`losatok_fs::hostname`]), restricted to
/// `[A-Za-z0-9._-]`.
fn hostname() -> String {
    let name: String = losatok_fs::hostname()
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// Whether `name` is the name of a TensorBoard event file.
pub fn is_event_file_name(name: &str) -> bool {
    name.starts_with("events.out.tfevents.")
}

/// The complete records of an event file, as byte ranges of their data: reading stops at the
/// first record that is torn (a crash while writing) or fails its checksums.
fn record_spans(file: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let mut pos = 0usize;
    while file.len() - pos >= 12 {
        let len_bytes: [u8; 8] = file[pos..pos + 8].try_into().expect("8 bytes");
        let crc = u32::from_le_bytes(file[pos + 8..pos + 12].try_into().expect("4 bytes"));
        if crc != masked_crc32c(&len_bytes) {
            break;
        }
        let Ok(len) = usize::try_from(u64::from_le_bytes(len_bytes)) else {
            break;
        };
        let start = pos + 12;
        let Some(end) = start.checked_add(len).filter(|e| e + 4 <= file.len()) else {
            break;
        };
        let crc = u32::from_le_bytes(file[end..end + 4].try_into().expect("4 bytes"));
        if crc != masked_crc32c(&file[start..end]) {
            break;
        }
        spans.push(start..end);
        pos = end + 4;
    }
    spans
}

/// A protobuf varint at `*pos`, advancing it.
fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The `step` of a serialized `Event`, and whether it carries data (a summary or a session
/// log, as opposed to the `file_version` header).
fn event_step(event: &[u8]) -> (Option<u64>, bool) {
    let mut pos = 0;
    let (mut step, mut data) = (None, false);
    while pos < event.len() {
        let Some(key) = get_varint(event, &mut pos) else {
            break;
        };
        let (field, wire) = ((key >> 3) as u32, (key & 7) as u32);
        let skipped = match wire {
            VARINT => match get_varint(event, &mut pos) {
                Some(v) if field == EVENT_STEP => {
                    step = Some(v);
                    true
                }
                Some(_) => true,
                None => false,
            },
            FIXED64 => {
                pos += 8;
                true
            }
            FIXED32 => {
                pos += 4;
                true
            }
            LEN => match get_varint(event, &mut pos).and_then(|n| usize::try_from(n).ok()) {
                Some(n) => {
                    data |= field == EVENT_SUMMARY || field == EVENT_SESSION_LOG;
                    pos = pos.saturating_add(n);
                    true
                }
                None => false,
            },
            _ => false,
        };
        if !skipped {
            break;
        }
    }
    (step, data)
}

/// What [`truncate_events_after_step`] left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventTruncation {
    /// Events with data (summaries, session logs) kept.
    pub kept: usize,
    /// Records removed (later steps, and a torn tail).
    pub removed: usize,
}

/// Removes from the event file at `path` every event of a step greater than `step`, and a torn
/// or damaged tail, so that a run resumed from the checkpoint of `step` continues a consistent
/// history (the same cut [`super::truncate_after_step`] makes in `metrics.jsonl`). The file is
/// rewritten atomically, only if something is removed.
pub fn truncate_events_after_step(path: &Path, step: u64) -> Result<EventTruncation, MetricsError> {
    let bytes = fs::read(path).map_err(|source| MetricsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let spans = record_spans(&bytes);
    let mut result = EventTruncation::default();
    let mut out = Vec::with_capacity(bytes.len());
    for span in &spans {
        let (event_step, data) = event_step(&bytes[span.clone()]);
        if event_step.is_some_and(|s| s > step) {
            result.removed += 1;
            continue;
        }
        result.kept += usize::from(data);
        frame_record(&bytes[span.clone()], &mut out);
    }
    let torn = bytes.len() != spans.iter().map(|s| s.len() + 16).sum::<usize>();
    result.removed += usize::from(torn);
    if result.removed > 0 {
        losatok_fs::write_atomic(path, &out, true).map_err(|e| super::fs_error(path, e))?;
    }
    Ok(result)
}

/// Writes a TensorBoard event file.
///
/// Events are buffered; call [`flush`](Self::flush) (e.g. after each logging step) to make
/// them visible to a running TensorBoard. Dropping the writer flushes it too (errors
/// ignored).
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
    record: Vec<u8>,
}

impl EventWriter {
    /// Creates `<dir>/events.out.tfevents.<unix_secs>.<hostname>` (the folder is created
    /// as needed; an existing file of that name is never overwritten, a `.1`, `.2`… suffix is
    /// added instead) and writes the `file_version` event.
    pub fn create(dir: impl AsRef<Path>) -> Result<Self, MetricsError> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|source| MetricsError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let wall = now_unix();
        let base = format!("events.out.tfevents.{}.{}", wall as u64, hostname());
        let mut suffix = 0u32;
        let (path, file) = loop {
            let name = if suffix == 0 {
                base.clone()
            } else {
                format!("{base}.{suffix}")
            };
            let path = dir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => break (path, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && suffix < 1000 => {
                    suffix += 1;
                }
                Err(source) => return Err(MetricsError::Write { path, source }),
            }
        };
        let mut writer = Self {
            path,
            out: BufWriter::new(file),
            record: Vec::new(),
        };
        let mut event = Vec::new();
        put_double(&mut event, EVENT_WALL_TIME, wall);
        put_bytes(&mut event, EVENT_FILE_VERSION, b"brain.Event:2");
        writer.write_event(&event)?;
        writer.flush()?;
        Ok(writer)
    }

    /// Continues an existing event file (see [`truncate_events_after_step`] to cut it back to
    /// a checkpoint first).
    pub fn append(path: &Path) -> Result<Self, MetricsError> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| MetricsError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            record: Vec::new(),
        })
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logs one scalar (stored as `f32`, TensorBoard's `simple_value`).
    pub fn scalar(&mut self, tag: &str, step: u64, value: f64) -> Result<(), MetricsError> {
        self.scalars(step, &[(tag, value)])
    }

    /// Logs several scalars of one step in a single event (stored as `f32`).
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<(), MetricsError> {
        if values.is_empty() {
            return Ok(());
        }
        let mut summary = Vec::with_capacity(values.len() * 32);
        for (tag, v) in values {
            put_value(&mut summary, tag, &ValueKind::Scalar(*v as f32));
        }
        self.summary_event(step, &summary)
    }

    /// Logs an image given as PNG bytes of `width × height` pixels. The colour space
    /// (grey, grey + alpha, RGB or RGBA) is read from the PNG header (RGB if unreadable).
    pub fn image_png(
        &mut self,
        tag: &str,
        step: u64,
        png: &[u8],
        width: u32,
        height: u32,
    ) -> Result<(), MetricsError> {
        let colorspace = match png.get(25) {
            Some(0) => 1, // greyscale
            Some(4) => 2, // greyscale + alpha
            Some(6) => 4, // RGBA
            _ => 3,       // RGB, palette
        };
        let mut summary = Vec::with_capacity(png.len() + 64);
        put_value(
            &mut summary,
            tag,
            &ValueKind::Image {
                png,
                width,
                height,
                colorspace,
            },
        );
        self.summary_event(step, &summary)
    }

    /// Logs a mono clip (`[-1, 1]`, `sample_rate` Hz), encoded as a 16-bit PCM WAV.
    pub fn audio_wav(
        &mut self,
        tag: &str,
        step: u64,
        samples: &[f32],
        sample_rate: u32,
    ) -> Result<(), MetricsError> {
        self.audio_wav_format(tag, step, samples, sample_rate, WavFormat::Pcm16)
    }

    /// Like [`audio_wav`](Self::audio_wav) with a chosen WAV sample format (32-bit float
    /// keeps full precision but not every browser plays it).
    pub fn audio_wav_format(
        &mut self,
        tag: &str,
        step: u64,
        samples: &[f32],
        sample_rate: u32,
        format: WavFormat,
    ) -> Result<(), MetricsError> {
        let wav = encode_wav(samples, sample_rate, format);
        let mut summary = Vec::with_capacity(wav.len() + 64);
        put_value(
            &mut summary,
            tag,
            &ValueKind::Audio {
                wav: &wav,
                sample_rate,
                frames: samples.len() as u64,
            },
        );
        self.summary_event(step, &summary)
    }

    /// Writes a `SessionLog{status: START}` event at `step`. TensorBoard then discards the
    /// points at steps `>= step` read before it (from an interrupted run), which is what a
    /// resumed run wants, with `step` = checkpoint step + 1.
    pub fn session_start(&mut self, step: u64) -> Result<(), MetricsError> {
        let mut session_log = Vec::new();
        put_uint(&mut session_log, SESSION_LOG_STATUS, SESSION_LOG_START);
        let mut event = Vec::new();
        put_double(&mut event, EVENT_WALL_TIME, now_unix());
        put_uint(&mut event, EVENT_STEP, step_i64(step));
        put_bytes(&mut event, EVENT_SESSION_LOG, &session_log);
        self.write_event(&event)
    }

    /// Pushes buffered events to the file.
    pub fn flush(&mut self) -> Result<(), MetricsError> {
        self.out.flush().map_err(|source| MetricsError::Write {
            path: self.path.clone(),
            source,
        })
    }

    fn summary_event(&mut self, step: u64, summary: &[u8]) -> Result<(), MetricsError> {
        let mut event = Vec::with_capacity(summary.len() + 24);
        put_double(&mut event, EVENT_WALL_TIME, now_unix());
        put_uint(&mut event, EVENT_STEP, step_i64(step));
        put_bytes(&mut event, EVENT_SUMMARY, summary);
        self.write_event(&event)
    }

    fn write_event(&mut self, event: &[u8]) -> Result<(), MetricsError> {
        self.record.clear();
        frame_record(event, &mut self.record);
        self.out
            .write_all(&self.record)
            .map_err(|source| MetricsError::Write {
                path: self.path.clone(),
                source,
            })
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoded protobuf field: number and value.
    #[derive(Debug, Clone, PartialEq)]
    enum Field {
        Varint(u64),
        Fixed64([u8; 8]),
        Fixed32([u8; 4]),
        Bytes(Vec<u8>),
    }

    fn read_varint(buf: &[u8], pos: &mut usize) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = buf[*pos];
            *pos += 1;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }

    /// Decodes one protobuf message into its (field number, value) pairs.
    fn decode(buf: &[u8]) -> Vec<(u32, Field)> {
        let mut pos = 0;
        let mut fields = Vec::new();
        while pos < buf.len() {
            let key = read_varint(buf, &mut pos);
            let (num, wire) = ((key >> 3) as u32, (key & 7) as u32);
            let field = match wire {
                VARINT => Field::Varint(read_varint(buf, &mut pos)),
                FIXED64 => {
                    pos += 8;
                    Field::Fixed64(buf[pos - 8..pos].try_into().unwrap())
                }
                FIXED32 => {
                    pos += 4;
                    Field::Fixed32(buf[pos - 4..pos].try_into().unwrap())
                }
                LEN => {
                    let n = read_varint(buf, &mut pos) as usize;
                    pos += n;
                    Field::Bytes(buf[pos - n..pos].to_vec())
                }
                w => panic!("unexpected wire type {w}"),
            };
            fields.push((num, field));
        }
        fields
    }

    fn get(fields: &[(u32, Field)], num: u32) -> Option<&Field> {
        fields.iter().find(|(n, _)| *n == num).map(|(_, f)| f)
    }

    fn bytes(fields: &[(u32, Field)], num: u32) -> &[u8] {
        match get(fields, num) {
            Some(Field::Bytes(b)) => b,
            other => panic!("field {num}: {other:?}"),
        }
    }

    fn varint(fields: &[(u32, Field)], num: u32) -> u64 {
        match get(fields, num) {
            Some(Field::Varint(v)) => *v,
            other => panic!("field {num}: {other:?}"),
        }
    }

    /// Splits a file into records, checking both CRCs of each.
    fn records(file: &[u8]) -> Vec<Vec<u8>> {
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < file.len() {
            let len_bytes = &file[pos..pos + 8];
            let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
            let len_crc = u32::from_le_bytes(file[pos + 8..pos + 12].try_into().unwrap());
            assert_eq!(len_crc, masked_crc32c(len_bytes));
            let data = &file[pos + 12..pos + 12 + len];
            let data_crc =
                u32::from_le_bytes(file[pos + 12 + len..pos + 16 + len].try_into().unwrap());
            assert_eq!(data_crc, masked_crc32c(data));
            out.push(data.to_vec());
            pos += 16 + len;
        }
        assert_eq!(pos, file.len());
        out
    }

    #[test]
    #[allow(clippy::manual_rotate)] // the formula exactly as TFRecord documents it
    fn crc32c_known_vectors() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // RFC 3720 (iSCSI) test vectors.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let inc: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&inc), 0x46DD_794E);
        // Masking.
        let crc = crc32c(b"123456789");
        assert_eq!(
            masked_crc32c(b"123456789"),
            ((crc >> 15) | (crc << 17)).wrapping_add(0xa282ead8)
        );
        assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
    }

    #[test]
    fn varints_encode_like_protobuf() {
        let mut v = Vec::new();
        put_varint(&mut v, 300);
        assert_eq!(v, [0xAC, 0x02]);
        v.clear();
        put_varint(&mut v, 0);
        assert_eq!(v, [0]);
        v.clear();
        put_varint(&mut v, u64::MAX);
        assert_eq!(v.len(), 10);
    }

    #[test]
    fn wav_encoding() {
        let wav = encode_wav(
            &[0.0, 1.0, -1.0, 0.5, f32::NAN, 2.0],
            16_000,
            WavFormat::Pcm16,
        );
        assert_eq!(wav.len(), 44 + 12);
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(wav[4..8].try_into().unwrap()), 36 + 12);
        assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 16_000);
        let s: Vec<i16> = wav[44..]
            .chunks(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(s, [0, 32767, -32768, 16384, 0, 32767]);
        let wav = encode_wav(&[0.25], 8_000, WavFormat::Float32);
        assert_eq!(u16::from_le_bytes([wav[20], wav[21]]), 3);
        assert_eq!(f32::from_le_bytes(wav[44..48].try_into().unwrap()), 0.25);
    }

    #[test]
    fn writes_readable_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        let name = w.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        w.scalar("loss/total", 7, 1.5).unwrap();
        w.scalars(300, &[("a", 0.25), ("b", -2.0)]).unwrap();
        let png = [
            0x89, b'P', b'N', b'G', 13, 10, 26, 10, 0, 0, 0, 13, b'I', b'H', b'D', b'R',
        ]
        .iter()
        .copied()
        .chain([0, 0, 0, 4, 0, 0, 0, 3, 8, 6, 0, 0, 0])
        .collect::<Vec<u8>>();
        w.image_png("img", 9, &png, 4, 3).unwrap();
        w.audio_wav("clip", 10, &[0.0, 0.5, -0.5], 16_000).unwrap();
        w.session_start(11).unwrap();
        let path = w.path().to_path_buf();
        drop(w);

        // A second writer in the same second gets another file.
        let w2 = EventWriter::create(dir.path()).unwrap();
        assert_ne!(w2.path(), path);

        let file = fs::read(&path).unwrap();
        let recs = records(&file);
        assert_eq!(recs.len(), 6);

        let first = decode(&recs[0]);
        assert!(matches!(
            get(&first, EVENT_WALL_TIME),
            Some(Field::Fixed64(_))
        ));
        assert_eq!(bytes(&first, EVENT_FILE_VERSION), b"brain.Event:2");

        let summary_values = |rec: &[u8]| -> (u64, Vec<Vec<(u32, Field)>>) {
            let ev = decode(rec);
            let wall = match get(&ev, EVENT_WALL_TIME) {
                Some(Field::Fixed64(b)) => f64::from_le_bytes(*b),
                other => panic!("{other:?}"),
            };
            assert!(wall > 1.6e9);
            let summary = decode(bytes(&ev, EVENT_SUMMARY));
            let values = summary
                .iter()
                .map(|(n, f)| {
                    assert_eq!(*n, SUMMARY_VALUE);
                    match f {
                        Field::Bytes(b) => decode(b),
                        other => panic!("{other:?}"),
                    }
                })
                .collect();
            (varint(&ev, EVENT_STEP), values)
        };
        let simple = |v: &[(u32, Field)]| match get(v, VALUE_SIMPLE_VALUE) {
            Some(Field::Fixed32(b)) => f32::from_le_bytes(*b),
            other => panic!("{other:?}"),
        };

        let (step, values) = summary_values(&recs[1]);
        assert_eq!(step, 7);
        assert_eq!(values.len(), 1);
        assert_eq!(bytes(&values[0], VALUE_TAG), b"loss/total");
        assert_eq!(simple(&values[0]), 1.5);

        let (step, values) = summary_values(&recs[2]);
        assert_eq!(step, 300);
        assert_eq!(values.len(), 2);
        assert_eq!(bytes(&values[1], VALUE_TAG), b"b");
        assert_eq!(simple(&values[0]), 0.25);
        assert_eq!(simple(&values[1]), -2.0);

        let (step, values) = summary_values(&recs[3]);
        assert_eq!(step, 9);
        let image = decode(bytes(&values[0], VALUE_IMAGE));
        assert_eq!(varint(&image, IMAGE_HEIGHT), 3);
        assert_eq!(varint(&image, IMAGE_WIDTH), 4);
        assert_eq!(varint(&image, IMAGE_COLORSPACE), 4);
        assert_eq!(bytes(&image, IMAGE_ENCODED), &png[..]);

        let (step, values) = summary_values(&recs[4]);
        assert_eq!(step, 10);
        assert_eq!(bytes(&values[0], VALUE_TAG), b"clip");
        let audio = decode(bytes(&values[0], VALUE_AUDIO));
        assert_eq!(
            get(&audio, AUDIO_SAMPLE_RATE),
            Some(&Field::Fixed32(16_000f32.to_le_bytes()))
        );
        assert_eq!(varint(&audio, AUDIO_NUM_CHANNELS), 1);
        assert_eq!(varint(&audio, AUDIO_LENGTH_FRAMES), 3);
        assert_eq!(bytes(&audio, AUDIO_CONTENT_TYPE), b"audio/wav");
        let wav = bytes(&audio, AUDIO_ENCODED);
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(wav.len(), 44 + 6);

        let ev = decode(&recs[5]);
        assert_eq!(varint(&ev, EVENT_STEP), 11);
        let log = decode(bytes(&ev, EVENT_SESSION_LOG));
        assert_eq!(varint(&log, SESSION_LOG_STATUS), SESSION_LOG_START);
    }
}
