//! Peak memory does not grow with the length of the audio: `losatok reconstruct` (with all
//! features saved) on 30 s and on 10 min of audio peaks at the same resident size, because the
//! input is streamed, encoded in 252-token chunks, decoded in windows and written as it goes.
//! (Its own test binary: `getrusage(RUSAGE_CHILDREN)` reports the largest child seen so far.)

use std::path::Path;
use std::process::Command;

fn peak_rss_of_children_kib() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    assert_eq!(rc, 0);
    // SAFETY: initialised by the successful call above.
    unsafe { usage.assume_init() }.ru_maxrss
}

fn tone(seconds: usize) -> Vec<f32> {
    (0..seconds * 16_000)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            0.3 * (2.0 * std::f32::consts::PI * (220.0 + 20.0 * (t * 0.1).sin()) * t).sin()
        })
        .collect()
}

fn reconstruct(input: &Path, dir: &Path) {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/model");
    let out = Command::new(env!("CARGO_BIN_EXE_losatok"))
        .arg("reconstruct")
        .arg(input)
        .arg(dir.join(format!(
            "{}.out.wav",
            input.file_stem().unwrap().to_str().unwrap()
        )))
        .arg("--save-features")
        .arg(dir.join(format!(
            "{}.safetensors",
            input.file_stem().unwrap().to_str().unwrap()
        )))
        .arg("--checkpoint")
        .arg(fx.join("losatok_tiny.pth"))
        .arg("--config")
        .arg(fx.join("tiny_config.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn peak_memory_is_flat_in_audio_length() {
    let tmp = tempfile::tempdir().unwrap();
    let short = tmp.path().join("short.wav");
    let long = tmp.path().join("long.wav");
    losatok::audio::write_wav(&short, &tone(30), 16_000, losatok::WavFormat::Float32).unwrap();
    losatok::audio::write_wav(&long, &tone(600), 16_000, losatok::WavFormat::Float32).unwrap();

    reconstruct(&short, tmp.path());
    let after_short = peak_rss_of_children_kib();
    reconstruct(&long, tmp.path());
    let after_long = peak_rss_of_children_kib();
    eprintln!("peak RSS: 30 s → {after_short} KiB, 600 s → {after_long} KiB");
    // 20× the audio (38 MB more input, 38 MB more output, 15 MB more features) may add at most
    // 8 MiB of allocator noise to the peak.
    assert!(
        after_long <= after_short + 8 * 1024,
        "peak grew from {after_short} KiB to {after_long} KiB"
    );
}
