//! End-to-end tests of the `losatok` binary on the reference fixtures: reconstruct / encode /
//! decode of the 16 kHz and 44.1 kHz stereo wavs against the reference outputs, folder mode,
//! options, and one-line errors that leave existing files alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safetensors::SafeTensors;

/// Reference tolerance for decoded audio and embeddings (fixture README, float32 port).
const TOL: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/model")
}

fn losatok(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_losatok"))
        .args(args)
        .current_dir(dir)
        .env_remove("LOSATOK_CHECKPOINT")
        .output()
        .expect("run losatok")
}

fn model_args() -> Vec<String> {
    let f = fixtures();
    vec![
        "--checkpoint".into(),
        f.join("losatok_tiny.pth").display().to_string(),
        "--config".into(),
        f.join("tiny_config.yml").display().to_string(),
    ]
}

fn run_ok(args: &[&str], dir: &Path) -> String {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(model_args());
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = losatok(&refs, dir);
    assert!(
        out.status.success(),
        "losatok {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_err(args: &[&str], dir: &Path, with_model: bool) -> String {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if with_model {
        all.extend(model_args());
    }
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = losatok(&refs, dir);
    assert!(!out.status.success(), "losatok {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn tensor(bytes: &[u8], name: &str) -> (Vec<f32>, Vec<usize>) {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (v, t.shape().to_vec())
}

fn reference(name: &str) -> Vec<f32> {
    tensor(
        &std::fs::read(fixtures().join("tiny_io.safetensors")).unwrap(),
        name,
    )
    .0
}

fn wav(path: &Path) -> Vec<f32> {
    let d = losatok::audio::decode(path).unwrap();
    assert_eq!(d.sample_rate, 16_000);
    assert_eq!(d.channels, 1);
    d.samples
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn reconstruct_16k_matches_the_reference_decode_and_features() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixtures().join("input_16k_mono_pcm16.wav");
    run_ok(
        &[
            "reconstruct",
            input.to_str().unwrap(),
            "out.wav",
            "--save-features",
            "f.safetensors",
        ],
        tmp.path(),
    );
    let out = wav(&tmp.path().join("out.wav"));
    // the reference clamps to [-1, 1] before writing, as we do
    let want: Vec<f32> = reference("a.decoded")
        .iter()
        .map(|v| v.clamp(-1.0, 1.0))
        .collect();
    assert!(max_diff(&out, &want) < TOL, "{}", max_diff(&out, &want));

    let bytes = std::fs::read(tmp.path().join("f.safetensors")).unwrap();
    for name in [
        "mu",
        "logvar",
        "semantic_emb",
        "acoustic_emb",
        "unified_emb",
        "semantic_emb_low",
        "acoustic_emb_low",
        "unified_emb_low",
    ] {
        let (got, shape) = tensor(&bytes, name);
        assert_eq!(shape[..2], [1, 57], "{name}");
        assert!(
            max_diff(&got, &reference(&format!("a.{name}"))) < TOL,
            "{name}"
        );
    }
    assert_eq!(
        tensor(&bytes, "z").0,
        tensor(&bytes, "mu").0,
        "z = mu by default"
    );
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["format"], "losatok-features");
    assert_eq!(meta["num_samples"], "36850");
    assert_eq!(meta["sample_rate"], "16000");
    assert_eq!(meta["frame_rate"], "25");
    assert_eq!(meta["checkpoint_sha256"].len(), 64);
    assert_eq!(st.len(), 9);
}

#[test]
fn encode_44k_stereo_file_matches_encoding_librosas_resampled_signal() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixtures().join("input_44k1_stereo_pcm16.wav");
    run_ok(
        &["encode", input.to_str().unwrap(), "z.safetensors"],
        tmp.path(),
    );
    let bytes = std::fs::read(tmp.path().join("z.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<_> = st.names().into_iter().cloned().collect();
    names.sort();
    assert_eq!(names, ["logvar", "mu", "z"]);

    // librosa's 16 kHz version of the file, encoded by the library, gives the same tokens
    let f = fixtures();
    let cfg = losatok::LosatokConfig::from_file(f.join("tiny_config.yml")).unwrap();
    let dev = Default::default();
    let tok =
        losatok::Tokenizer::<losatok::Cpu>::load(&f.join("losatok_tiny.pth"), &cfg, &dev).unwrap();
    let librosa = reference("resample.librosa_16k");
    let x = losatok::samples_to_tensor::<losatok::Cpu>(&librosa, &dev);
    let want = tok.encode(x, losatok::Sampling::Mean).unwrap();
    let (got, shape) = tensor(&bytes, "z");
    assert_eq!(shape, [1, 57, 16]);
    let want = losatok::tensor_to_samples(want.z);
    assert!(max_diff(&got, &want) < TOL, "{}", max_diff(&got, &want));
}

#[test]
fn decode_reproduces_reconstruct() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixtures().join("input_16k_mono_pcm16.wav");
    run_ok(
        &[
            "reconstruct",
            input.to_str().unwrap(),
            "r.wav",
            "--save-features",
            "f.safetensors",
        ],
        tmp.path(),
    );
    run_ok(&["decode", "f.safetensors", "d.wav"], tmp.path());
    assert_eq!(
        wav(&tmp.path().join("r.wav")),
        wav(&tmp.path().join("d.wav"))
    );
}

#[test]
fn options_max_duration_sampling_and_pcm16() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixtures().join("input_16k_mono_pcm16.wav");
    let input = input.to_str().unwrap();
    run_ok(
        &["reconstruct", input, "one.wav", "--max-duration", "1.0"],
        tmp.path(),
    );
    // 16000 samples → ⌊(100 + 1)/4⌋ = 25 frames → 16000 samples out
    assert_eq!(wav(&tmp.path().join("one.wav")).len(), 16_000);

    run_ok(
        &["encode", input, "s1.safetensors", "--sample", "--seed", "7"],
        tmp.path(),
    );
    run_ok(
        &["encode", input, "s2.safetensors", "--sample", "--seed", "7"],
        tmp.path(),
    );
    run_ok(
        &["encode", input, "s3.safetensors", "--sample", "--seed", "8"],
        tmp.path(),
    );
    let z = |n: &str| tensor(&std::fs::read(tmp.path().join(n)).unwrap(), "z").0;
    let mu = tensor(
        &std::fs::read(tmp.path().join("s1.safetensors")).unwrap(),
        "mu",
    )
    .0;
    assert_eq!(z("s1.safetensors"), z("s2.safetensors"));
    assert_ne!(z("s1.safetensors"), z("s3.safetensors"));
    assert_ne!(z("s1.safetensors"), mu);

    run_ok(&["reconstruct", input, "p.wav", "--pcm16"], tmp.path());
    let bytes = std::fs::read(tmp.path().join("p.wav")).unwrap();
    assert_eq!(
        u16::from_le_bytes([bytes[34], bytes[35]]),
        16,
        "bits per sample"
    );
}

#[test]
fn folder_mode_mirrors_skips_and_reports_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("in");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::copy(
        fixtures().join("input_16k_mono_pcm16.wav"),
        src.join("one.wav"),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("input_44k1_stereo_pcm16.wav"),
        src.join("a/b/two.wav"),
    )
    .unwrap();
    std::fs::write(src.join("a/broken.wav"), b"RIFF\x10\x00\x00\x00WAVEjunk").unwrap();
    std::fs::write(src.join("a/notes.txt"), b"not audio").unwrap();

    let mut args: Vec<String> = ["reconstruct", "in", "out"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(model_args());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = losatok(&refs, tmp.path());
    assert_eq!(out.status.code(), Some(1), "a failure makes the run fail");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("2 file(s)") && stdout.contains("1 failed"),
        "{stdout}"
    );
    assert!(stderr.contains("broken.wav"), "{stderr}");
    assert!(tmp.path().join("out/one.wav").exists());
    assert!(tmp.path().join("out/a/b/two.wav").exists());
    assert!(!tmp.path().join("out/a/broken.wav").exists());
    assert!(!tmp.path().join("out/a/notes.wav").exists());

    // again: both done files are skipped
    std::fs::remove_file(src.join("a/broken.wav")).unwrap();
    let again = run_ok(&["reconstruct", "in", "out"], tmp.path());
    assert!(
        again.contains("0 file(s)") && again.contains("2 already done"),
        "{again}"
    );
    let again = run_ok(&["reconstruct", "in", "out", "--force"], tmp.path());
    assert!(again.contains("2 file(s)"), "{again}");
}

#[test]
fn errors_are_one_line_and_never_touch_existing_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixtures().join("input_16k_mono_pcm16.wav");
    let input = input.to_str().unwrap();
    std::fs::write(tmp.path().join("keep.wav"), b"precious").unwrap();

    let e = run_err(&["reconstruct", input, "keep.wav"], tmp.path(), true);
    assert!(e.contains("already exists") && e.contains("--force"), "{e}");
    assert_eq!(
        std::fs::read(tmp.path().join("keep.wav")).unwrap(),
        b"precious"
    );

    let e = run_err(&["reconstruct", "missing.wav", "o.wav"], tmp.path(), true);
    assert!(e.contains("missing.wav"), "{e}");
    let e = run_err(&["reconstruct", input, "o.wav"], tmp.path(), false);
    assert!(e.contains("--checkpoint"), "{e}");
    let e = run_err(
        &["reconstruct", input, "o.wav", "--device", "tpu"],
        tmp.path(),
        true,
    );
    assert!(e.contains("--device"), "{e}");
    #[cfg(not(feature = "cuda"))]
    {
        let e = run_err(
            &["reconstruct", input, "o.wav", "--device", "cuda"],
            tmp.path(),
            true,
        );
        assert!(e.contains("cuda"), "{e}");
    }
    let e = run_err(
        &["reconstruct", input, "o.wav", "--max-duration", "-1"],
        tmp.path(),
        true,
    );
    assert!(e.contains("max-duration"), "{e}");
    std::fs::write(tmp.path().join("short.wav"), short_wav(400)).unwrap();
    let e = run_err(&["encode", "short.wav", "o.safetensors"], tmp.path(), true);
    assert!(e.contains("400 samples") && e.contains("513"), "{e}");
    // nothing half-written is left behind
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "keep.wav" && n != "short.wav")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A 16 kHz mono PCM16 wav of `n` samples of a sine.
fn short_wav(n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    let data = (n * 2) as u32;
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&16_000u32.to_le_bytes());
    v.extend_from_slice(&32_000u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data.to_le_bytes());
    for i in 0..n {
        let s = ((i as f32 * 0.05).sin() * 10_000.0) as i16;
        v.extend_from_slice(&s.to_le_bytes());
    }
    v
}
