//! The training side of the CLI end to end: the demo (the README's first command), and the
//! full journey manifest → train-sembo → train → export → reconstruct with the export.

use std::path::Path;
use std::process::Command;

fn losatok(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_losatok"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run losatok")
}

fn ok(args: &[&str], dir: &Path) -> String {
    let out = losatok(args, dir);
    assert!(
        out.status.success(),
        "losatok {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn quick_demo_trains_and_lowers_the_mel_distance() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ok(&["demo", "--quick", "--out", "demo"], tmp.path());
    assert!(out.contains("mel distance of the held-back clip"), "{out}");
    for f in [
        "reference.wav",
        "reconstruction_before.wav",
        "reconstruction_after.wav",
        "spectrograms.png",
        "loss_curves.png",
        "stage2/losatok.safetensors",
        "stage2/model.yml",
    ] {
        assert!(tmp.path().join("demo").join(f).exists(), "{f} missing");
    }
    // a second run does not silently replace the first
    let again = losatok(&["demo", "--quick", "--out", "demo"], tmp.path());
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    // with --force it replaces what the first wrote, and only that
    let notes = tmp.path().join("demo/my-notes.txt");
    std::fs::write(&notes, b"mine").unwrap();
    let out = ok(&["demo", "--quick", "--out", "demo", "--force"], tmp.path());
    assert!(out.contains("mel distance of the held-back clip"), "{out}");
    assert_eq!(std::fs::read(&notes).unwrap(), b"mine");
    assert!(tmp.path().join("demo/stage2/losatok.safetensors").exists());
}

#[test]
fn manifest_train_export_reconstruct_journey() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // audio to train on
    losatok_train::data::synthesize_dataset(&d.join("audio"), 3.0, 3).unwrap();
    let m = ok(
        &[
            "manifest",
            "speech=audio/speech",
            "music=audio/music",
            "audio/general",
            "--out",
            "train.jsonl",
        ],
        d,
    );
    assert!(m.contains("wrote train.jsonl"), "{m}");

    std::fs::write(
        d.join("s1.yml"),
        "model: {preset: tiny}\nsemantic_encoder: random\noptim: {lr: 2.0e-3, warmup_steps: 2}\n\
         data: {manifest: train.jsonl, loader: {segment_samples: 16000, workers: 1}}\n\
         run: {steps: 4, batch_size: 2, log_every: 2, checkpoint_every: 2}\n",
    )
    .unwrap();
    let s1 = ok(&["train-sembo", "s1.yml", "--run-dir", "runs/s1"], d);
    assert!(s1.contains("exported"), "{s1}");

    std::fs::write(
        d.join("s2.yml"),
        "model: {preset: tiny}\nsemantic_encoder: runs/s1/semantic_encoder.safetensors\n\
         gan_start_step: 2\n\
         discriminator: {kind: mfd, sample_rate: 16000, hop_lengths: [256, 1024], hidden_channels: [32, 32]}\n\
         optim_g: {lr: 2.0e-3, warmup_steps: 2}\noptim_d: {lr: 2.0e-3, warmup_steps: 2}\n\
         data: {manifest: train.jsonl, loader: {segment_samples: 10240, workers: 1}}\n\
         run: {steps: 4, batch_size: 2, log_every: 2, checkpoint_every: 2, sample_every: 0}\n",
    )
    .unwrap();
    // run 4 steps; resuming a finished run finds nothing left to do
    let s2 = ok(&["train", "s2.yml", "--run-dir", "runs/s2"], d);
    assert!(s2.contains("exported"), "{s2}");
    let again = ok(&["train", "s2.yml", "--run-dir", "runs/s2", "--resume"], d);
    assert!(again.contains("resumed from step 4"), "{again}");
    // a fresh run into the same folder is refused
    let refused = losatok(&["train", "s2.yml", "--run-dir", "runs/s2"], d);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"));

    // export the latest checkpoint and use it for inference
    ok(&["export", "runs/s2", "exported.safetensors"], d);
    let input = d
        .join("audio/speech")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let r = ok(
        &[
            "reconstruct",
            input.to_str().unwrap(),
            "out.wav",
            "--checkpoint",
            "exported.safetensors",
            "--config",
            "runs/s2/model.yml",
        ],
        d,
    );
    assert!(r.contains("reconstructed"), "{r}");
    // exporting the last checkpoint gives exactly the run's own export
    assert_eq!(
        std::fs::read(d.join("exported.safetensors")).unwrap(),
        std::fs::read(d.join("runs/s2/losatok.safetensors")).unwrap()
    );
}

#[test]
fn bad_training_configs_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("bad.yml"), "model: {preset: huge}\n").unwrap();
    let out = losatok(&["train", "bad.yml", "--run-dir", "r"], tmp.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("huge"), "{err}");
    let out = losatok(&["train", "missing.yml", "--run-dir", "r"], tmp.path());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.yml"));
}
