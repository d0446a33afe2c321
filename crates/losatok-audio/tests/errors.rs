//! Every error path of the loader: the variant, and a one-line message naming the file.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::fixture;
use losatok_audio::{decode, load, probe, AudioError, Mono16kStream};

/// Asserts the `Display` text is one line that names `path`.
fn assert_message(err: &AudioError, path: &Path) {
    let msg = err.to_string();
    assert!(
        !msg.contains('\n') && !msg.contains('\r'),
        "multi-line message: {msg:?}"
    );
    assert!(
        msg.contains(&path.display().to_string()),
        "message does not name the path: {msg}"
    );
}

/// Loads `path` through every entry point; all must fail the same way.
fn load_err(path: &Path) -> AudioError {
    let e = load(path).expect_err("load should fail");
    assert_message(&e, path);
    let streamed = Mono16kStream::open(path)
        .and_then(|s| s.read_to_end())
        .expect_err("stream should fail");
    assert_eq!(
        std::mem::discriminant(&e),
        std::mem::discriminant(&streamed),
        "{e} vs {streamed}"
    );
    e
}

/// A minimal WAV file: canonical 44-byte header (+ optional extra) and `data`.
fn wav_bytes(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let block = channels.wrapping_mul(bits / 8);
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&rate.wrapping_mul(u32::from(block)).to_le_bytes());
    v.extend_from_slice(&block.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

fn pcm16(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

/// Deterministic pseudo-random bytes.
fn noise(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        })
        .collect()
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("does-not-exist.wav");
    assert!(matches!(load_err(&p), AudioError::NotFound { .. }));
    assert!(matches!(probe(&p), Err(AudioError::NotFound { .. })));
}

#[test]
fn directory() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        load_err(dir.path()),
        AudioError::IsDirectory { .. }
    ));
}

#[cfg(unix)]
#[test]
fn permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "locked.wav",
        &wav_bytes(1, 1, 16_000, 16, &pcm16(&[1, 2, 3])),
    );
    fs::set_permissions(&p, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::File::open(&p).is_ok() {
        eprintln!("skipped: running with privileges that ignore file permissions");
        return;
    }
    assert!(matches!(load_err(&p), AudioError::PermissionDenied { .. }));
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "empty.wav", b"");
    assert!(matches!(load_err(&p), AudioError::EmptyFile { .. }));
}

#[test]
fn random_bytes_are_not_audio() {
    let dir = tempfile::tempdir().unwrap();
    for seed in 0..20 {
        let mut bytes = noise(4096, seed);
        bytes[0] = b'x'; // keep clear of the MPEG sync byte 0xFF
        let p = write(dir.path(), "noise.mp3", &bytes);
        assert!(
            matches!(load_err(&p), AudioError::UnsupportedFormat { .. }),
            "seed {seed}"
        );
    }
    let p = write(dir.path(), "text.wav", b"this is a text file, not audio\n");
    assert!(matches!(load_err(&p), AudioError::UnsupportedFormat { .. }));
}

#[test]
fn riff_header_then_garbage() {
    let dir = tempfile::tempdir().unwrap();
    // RIFF magic but not a WAVE form.
    let mut bytes = b"RIFF\x00\x10\x00\x00".to_vec();
    bytes.extend(noise(4096, 1));
    let p = write(dir.path(), "riff.wav", &bytes);
    assert!(matches!(load_err(&p), AudioError::UnsupportedFormat { .. }));
    // RIFF/WAVE magic followed by garbage chunks: no fmt/data chunk to be found.
    let mut bytes = b"RIFF\x00\x10\x00\x00WAVE".to_vec();
    bytes.extend(noise(4096, 2));
    let p = write(dir.path(), "wave.wav", &bytes);
    assert!(matches!(load_err(&p), AudioError::Corrupt { .. }));
    // Only the 12-byte RIFF header.
    let p = write(dir.path(), "short.wav", b"RIFF\x04\x00\x00\x00WAVE");
    assert!(matches!(load_err(&p), AudioError::Corrupt { .. }));
    // Cut inside the RIFF header.
    let p = write(dir.path(), "cut.wav", b"RIFF\x04\x00");
    assert!(matches!(load_err(&p), AudioError::Truncated { .. }));
}

#[test]
fn wav_truncated_mid_data() {
    let dir = tempfile::tempdir().unwrap();
    let full = wav_bytes(1, 2, 16_000, 16, &pcm16(&vec![1000; 2 * 5000]));
    let p = write(dir.path(), "cut.wav", &full[..44 + 4 * 3000 + 3]);
    let e = load_err(&p);
    assert!(matches!(e, AudioError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("5000 frames"), "{e}");
    // The real fixture, cut in half.
    let bytes = fs::read(fixture("model/input_44k1_stereo_pcm16.wav")).unwrap();
    let p = write(dir.path(), "half.wav", &bytes[..bytes.len() / 2]);
    assert!(matches!(load_err(&p), AudioError::Truncated { .. }));
    // Cut inside the fmt chunk.
    let p = write(dir.path(), "fmt.wav", &full[..30]);
    assert!(matches!(load_err(&p), AudioError::Truncated { .. }));
}

#[test]
fn compressed_files_truncated() {
    let dir = tempfile::tempdir().unwrap();
    // FLAC (STREAMINFO frame count), MP3 (LAME tag frame count), Ogg (cut page).
    for name in [
        "s16_22k_stereo.flac",
        "s24_22k_stereo.flac",
        "mp3_22k_stereo.mp3",
        "mp3_44k_mono.mp3",
        "vorbis_22k_stereo.ogg",
    ] {
        let bytes = fs::read(fixture(&format!("audio/{name}"))).unwrap();
        for frac in [2, 4] {
            let p = write(dir.path(), name, &bytes[..bytes.len() * (frac - 1) / frac]);
            let e = load_err(&p);
            assert!(
                matches!(e, AudioError::Truncated { .. }),
                "{name} cut at {}/{frac}: {e}",
                frac - 1
            );
        }
    }
}

#[test]
fn nan_and_inf_in_float_wav() {
    let dir = tempfile::tempdir().unwrap();
    for (bad, name) in [
        (f32::NAN, "nan.wav"),
        (f32::INFINITY, "inf.wav"),
        (f32::NEG_INFINITY, "ninf.wav"),
    ] {
        let mut samples = vec![0.25f32; 2 * 100];
        samples[2 * 37 + 1] = bad;
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let p = write(dir.path(), name, &wav_bytes(3, 2, 22_050, 32, &data));
        match load_err(&p) {
            AudioError::NonFinite { frame, .. } => assert_eq!(frame, 37),
            e => panic!("{name}: {e}"),
        }
    }
    // Same through a 64-bit float file and the 16 kHz (non-resampling) path.
    let mut samples = vec![0.5f64; 64];
    samples[63] = f64::NAN;
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let p = write(dir.path(), "nan64.wav", &wav_bytes(3, 1, 16_000, 64, &data));
    assert!(matches!(
        load_err(&p),
        AudioError::NonFinite { frame: 63, .. }
    ));
}

#[test]
fn absurd_sample_rate_or_channel_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = pcm16(&[0; 64]);
    let cases = [
        ("rate0.wav", wav_bytes(1, 1, 0, 16, &data), "rate"),
        (
            "rate_huge.wav",
            wav_bytes(1, 1, 10_000_000, 16, &data),
            "rate",
        ),
        ("ch0.wav", wav_bytes(1, 0, 16_000, 16, &data), "channels"),
        (
            "ch_huge.wav",
            wav_bytes(1, 1000, 16_000, 16, &data),
            "channels",
        ),
    ];
    for (name, bytes, what) in cases {
        let p = write(dir.path(), name, &bytes);
        let e = load_err(&p);
        match what {
            "rate" => assert!(
                matches!(e, AudioError::InvalidSampleRate { .. }),
                "{name}: {e}"
            ),
            _ => assert!(
                matches!(e, AudioError::InvalidChannelCount { .. }),
                "{name}: {e}"
            ),
        }
        assert!(matches!(
            probe(&p),
            Err(AudioError::InvalidSampleRate { .. } | AudioError::InvalidChannelCount { .. })
        ));
    }
    // Limits are inclusive: 256 channels at 768 kHz are fine.
    let p = write(
        dir.path(),
        "max.wav",
        &wav_bytes(1, 256, 768_000, 16, &pcm16(&vec![0; 256 * 4])),
    );
    let info = probe(&p).unwrap();
    assert_eq!((info.channels, info.sample_rate), (256, 768_000));
    assert_eq!(decode(&p).unwrap().frames(), 4);
}

#[test]
fn zero_samples() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "nodata.wav", &wav_bytes(1, 1, 16_000, 16, &[]));
    assert!(matches!(load_err(&p), AudioError::NoSamples { .. }));
    // A header that promises nothing, even if bytes follow.
    let mut bytes = wav_bytes(1, 1, 16_000, 16, &[]);
    bytes.extend_from_slice(b"LIST\x04\x00\x00\x00abcd");
    let p = write(dir.path(), "nodata2.wav", &bytes);
    assert!(matches!(load_err(&p), AudioError::NoSamples { .. }));
}

#[test]
fn unsupported_encodings() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "g721.wav",
        &wav_bytes(0x0040, 1, 8_000, 4, &[0; 64]),
    );
    assert!(matches!(load_err(&p), AudioError::UnsupportedFormat { .. }));
    let p = write(dir.path(), "f16.wav", &wav_bytes(3, 1, 8_000, 16, &[0; 64]));
    assert!(matches!(load_err(&p), AudioError::UnsupportedFormat { .. }));
    let p = write(dir.path(), "rf64.wav", b"RF64\xff\xff\xff\xffWAVEds64");
    assert!(matches!(load_err(&p), AudioError::UnsupportedFormat { .. }));
}

/// Odd but valid WAV layouts: extra chunks before fmt and data, odd-sized chunk padding,
/// WAVE_FORMAT_EXTENSIBLE, a trailing partial frame, and an "until end of file" size.
#[test]
fn unusual_valid_wav_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let samples: Vec<i16> = (0..200).map(|i| (i * 97 % 2000 - 1000) as i16).collect();
    let expected: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();

    let mut v = b"RIFF\0\0\0\0WAVE".to_vec();
    v.extend_from_slice(b"JUNK\x03\x00\x00\x00abc\x00"); // odd size + pad byte
    v.extend_from_slice(b"fmt \x28\x00\x00\x00");
    v.extend_from_slice(&0xFFFEu16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&16_000u32.to_le_bytes());
    v.extend_from_slice(&32_000u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(&22u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(&4u32.to_le_bytes());
    v.extend_from_slice(&[
        1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71,
    ]);
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(400u32 + 1).to_le_bytes()); // a trailing partial frame
    v.extend_from_slice(&pcm16(&samples));
    v.push(0x7f);
    let p = write(dir.path(), "ext.wav", &v);
    let a = decode(&p).unwrap();
    assert_eq!(a.samples, expected);
    assert_eq!(load(&p).unwrap(), expected);

    let mut v = wav_bytes(1, 1, 16_000, 16, &pcm16(&samples));
    v[40..44].copy_from_slice(&u32::MAX.to_le_bytes()); // streamed: length unknown
    let p = write(dir.path(), "stream.wav", &v);
    assert_eq!(probe(&p).unwrap().frames, None);
    assert_eq!(decode(&p).unwrap().samples, expected);
}

/// Corrupted and truncated versions of every fixture: decoding may succeed or fail, but must
/// never panic and every error must be a one-line message naming the file.
#[test]
fn mangled_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "u8_22k_stereo.wav",
        "f64_22k_stereo.wav",
        "s16_22k_stereo.flac",
        "s24_22k_stereo.flac",
        "vorbis_22k_stereo.ogg",
        "mp3_22k_stereo.mp3",
        "mp3_44k_mono.mp3",
    ];
    let mut errors = 0;
    for (k, name) in names.iter().enumerate() {
        let original = fs::read(fixture(&format!("audio/{name}"))).unwrap();
        for trial in 0..24u64 {
            let mut bytes = original.clone();
            let r = noise(64, 1000 * k as u64 + trial);
            if trial % 3 == 0 {
                // Truncate somewhere.
                let cut = (usize::from(r[0]) << 8 | usize::from(r[1])) % bytes.len();
                bytes.truncate(cut.max(1));
            } else {
                // Overwrite a few bytes, often in the header.
                let span = if trial % 3 == 1 {
                    200.min(bytes.len())
                } else {
                    bytes.len()
                };
                for j in 0..8 {
                    let pos = (usize::from(r[2 * j]) << 8 | usize::from(r[2 * j + 1])) % span;
                    bytes[pos] = r[16 + j];
                }
            }
            let p = write(dir.path(), &format!("m_{trial}_{name}"), &bytes);
            if let Err(e) = load(&p) {
                assert_message(&e, &p);
                errors += 1;
            }
        }
    }
    assert!(errors > 0);
}
