//! WAV writing: parity with soundfile, clamping, atomicity and the no-overwrite mode.

mod common;

use std::fs;
use std::path::Path;

use common::{fixture, same, Tensors};
use losatok_audio::{
    decode, probe, write_wav, write_wav_no_overwrite, AudioError, WavFormat, WavSpec, WavWriter,
};

fn write_input() -> Vec<f32> {
    Tensors::open("audio/expected_librosa.safetensors")
        .get("write.input")
        .1
}

/// Bytes of the `data` chunk of a WAV file.
fn data_chunk(bytes: &[u8]) -> &[u8] {
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if &bytes[pos..pos + 4] == b"data" {
            return &bytes[pos + 8..pos + 8 + size];
        }
        pos += 8 + size + (size & 1);
    }
    panic!("no data chunk");
}

/// Names in `dir` (to check that no temporary file is left behind).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn pcm16_matches_soundfile() {
    let x = write_input();
    assert!(
        x.iter().any(|v| v.abs() > 1.0),
        "input should exercise the clamp"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out16.wav");
    write_wav(&p, &x, 16_000, WavFormat::Pcm16).unwrap();
    let ours = fs::read(&p).unwrap();
    let reference = fs::read(fixture("audio/write_ref_pcm16.wav")).unwrap();
    // soundfile.write(np.clip(x, -1, 1), 16000, subtype="PCM_16"): same PCM bytes, including
    // -1.0 -> -32768, 1.0 -> 32767 and the near-tie values at ±0.5/32767, ±1.5/32767.
    assert_eq!(data_chunk(&ours), data_chunk(&reference));
    assert_eq!(ours.len(), 44 + 2 * x.len());
    let info = probe(&p).unwrap();
    assert_eq!(
        (info.sample_rate, info.channels, info.codec),
        (16_000, 1, "pcm_s16le")
    );
    assert_eq!(
        decode(&p).unwrap().samples,
        decode(fixture("audio/write_ref_pcm16.wav"))
            .unwrap()
            .samples
    );
}

#[test]
fn float_matches_soundfile_and_round_trips() {
    let x = write_input();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.wav");
    write_wav(&p, &x, 16_000, WavFormat::default()).unwrap();
    let info = probe(&p).unwrap();
    assert_eq!(
        (info.sample_rate, info.channels, info.codec),
        (16_000, 1, "pcm_f32le")
    );
    assert_eq!(info.frames, Some(x.len() as u64));
    let back = decode(&p).unwrap().samples;
    let clamped: Vec<f32> = x.iter().map(|v| v.clamp(-1.0, 1.0)).collect();
    assert!(same(&back, &clamped));
    let reference = decode(fixture("audio/write_ref_float.wav"))
        .unwrap()
        .samples;
    assert!(same(&back, &reference));
    assert_eq!(
        data_chunk(&fs::read(&p).unwrap()),
        data_chunk(&fs::read(fixture("audio/write_ref_float.wav")).unwrap())
    );
}

#[test]
fn clamps_and_refuses_nan() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.wav");
    write_wav(
        &p,
        &[2.0, -3.0, f32::INFINITY, f32::NEG_INFINITY, 0.5],
        8_000,
        WavFormat::Float32,
    )
    .unwrap();
    assert_eq!(decode(&p).unwrap().samples, [1.0, -1.0, 1.0, -1.0, 0.5]);
    write_wav(&p, &[2.0, -3.0, 0.5], 8_000, WavFormat::Pcm16).unwrap();
    assert_eq!(
        decode(&p).unwrap().samples,
        [32_767.0 / 32_768.0, -1.0, 0.5]
    );
    let before = fs::read(&p).unwrap();
    let e = write_wav(&p, &[0.0, f32::NAN], 8_000, WavFormat::Float32).unwrap_err();
    assert!(matches!(e, AudioError::InvalidInput(_)), "{e}");
    assert_eq!(
        fs::read(&p).unwrap(),
        before,
        "a failed write must not touch the destination"
    );
    assert_eq!(entries(dir.path()), ["c.wav"]);
}

#[test]
fn streaming_writer_multichannel() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("st.wav");
    let spec = WavSpec {
        sample_rate: 44_100,
        channels: 3,
        format: WavFormat::Float32,
    };
    let mut w = WavWriter::create(&p, spec).unwrap();
    assert_eq!(w.spec(), spec);
    assert_eq!(w.path(), p);
    let frames: Vec<f32> = (0..3 * 1000)
        .map(|i| ((i % 200) as f32 - 100.0) / 128.0)
        .collect();
    for block in frames.chunks(3 * 77) {
        w.write(block).unwrap();
    }
    assert!(
        matches!(w.write(&[0.0, 0.0]), Err(AudioError::InvalidInput(_))),
        "not a whole frame"
    );
    assert_eq!(w.frames_written(), 1000);
    assert!(!p.exists(), "the destination appears only at finish");
    w.finish().unwrap();
    let a = decode(&p).unwrap();
    assert_eq!((a.sample_rate, a.channels, a.frames()), (44_100, 3, 1000));
    let frames = &frames;
    let expected: Vec<f32> = (0..3)
        .flat_map(|c| (0..1000).map(move |f| frames[3 * f + c].clamp(-1.0, 1.0)))
        .collect();
    assert!(same(&a.samples, &expected));
    assert_eq!(entries(dir.path()), ["st.wav"]);
}

#[test]
fn dropped_writer_leaves_destination_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("keep.wav");
    // No destination yet: nothing appears.
    {
        let mut w = WavWriter::create(&p, WavSpec::mono(16_000, WavFormat::Pcm16)).unwrap();
        w.write(&[0.1; 4000]).unwrap();
        assert_eq!(
            entries(dir.path()).len(),
            1,
            "one temporary file while writing"
        );
    }
    assert!(
        entries(dir.path()).is_empty(),
        "temporary file removed on drop"
    );
    // Existing destination: content unchanged.
    fs::write(&p, b"original").unwrap();
    {
        let mut w = WavWriter::create(&p, WavSpec::mono(16_000, WavFormat::Float32)).unwrap();
        w.write(&[0.2; 4000]).unwrap();
    }
    assert_eq!(fs::read(&p).unwrap(), b"original");
    assert_eq!(entries(dir.path()), ["keep.wav"]);
    // finish() replaces it atomically.
    write_wav(&p, &[0.25; 10], 16_000, WavFormat::Float32).unwrap();
    assert_eq!(decode(&p).unwrap().samples, [0.25; 10]);
    assert_eq!(entries(dir.path()), ["keep.wav"]);
}

#[test]
fn no_overwrite_refuses_existing_destination() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("exists.wav");
    fs::write(&p, b"precious").unwrap();
    let e = write_wav_no_overwrite(&p, &[0.0; 8], 16_000, WavFormat::Float32).unwrap_err();
    assert!(matches!(e, AudioError::AlreadyExists { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&p.display().to_string()) && !msg.contains('\n'),
        "{msg}"
    );
    assert!(matches!(
        WavWriter::create_no_overwrite(&p, WavSpec::mono(16_000, WavFormat::Pcm16)),
        Err(AudioError::AlreadyExists { .. })
    ));
    assert_eq!(fs::read(&p).unwrap(), b"precious");

    // A file that appears while writing (another process) is not clobbered either.
    let q = dir.path().join("race.wav");
    let mut w =
        WavWriter::create_no_overwrite(&q, WavSpec::mono(16_000, WavFormat::Float32)).unwrap();
    w.write(&[0.5; 100]).unwrap();
    fs::write(&q, b"winner").unwrap();
    assert!(matches!(w.finish(), Err(AudioError::AlreadyExists { .. })));
    assert_eq!(fs::read(&q).unwrap(), b"winner");
    assert_eq!(entries(dir.path()), ["exists.wav", "race.wav"]);

    // Without a competitor it simply writes.
    let r = dir.path().join("new.wav");
    write_wav_no_overwrite(&r, &[0.5; 100], 16_000, WavFormat::Float32).unwrap();
    assert_eq!(decode(&r).unwrap().samples, [0.5; 100]);
}

#[test]
fn write_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("missing-dir").join("out.wav");
    let e = write_wav(&p, &[0.0; 8], 16_000, WavFormat::Float32).unwrap_err();
    assert!(matches!(e, AudioError::Write { .. }), "{e}");
    assert!(e.to_string().contains(&p.display().to_string()), "{e}");
    assert!(!e.to_string().contains('\n'));
    // A directory as destination.
    let e = write_wav(dir.path(), &[0.0; 8], 16_000, WavFormat::Float32).unwrap_err();
    assert!(matches!(e, AudioError::IsDirectory { .. }), "{e}");
    // A device is refused, never written in place or replaced.
    let e = write_wav("/dev/null", &[0.0; 8], 16_000, WavFormat::Float32).unwrap_err();
    assert!(
        e.to_string()
            .contains("character device, not a regular file"),
        "{e}"
    );
    // Invalid layout.
    let e = WavWriter::create(
        dir.path().join("x.wav"),
        WavSpec::mono(0, WavFormat::Float32),
    )
    .unwrap_err();
    assert!(matches!(e, AudioError::InvalidInput(_)), "{e}");
}

/// On Linux, /dev/full makes every write fail with ENOSPC; the error must surface.
#[cfg(target_os = "linux")]
#[test]
fn disk_full_is_reported() {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let io_err = f.write_all(&[0u8; 8]).and_then(|_| f.flush()).unwrap_err();
    let e = AudioError::Write {
        path: "/out/x.wav".into(),
        source: io_err,
    };
    let msg = e.to_string();
    assert!(
        msg.contains("/out/x.wav") && msg.to_lowercase().contains("space"),
        "{msg}"
    );
}
