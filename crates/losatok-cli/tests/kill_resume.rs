//! Crash consistency: tiny stage-1 and stage-2 runs of the `losatok` binary are SIGKILLed at
//! seeded pseudo-random points (right after a checkpoint appears, while a checkpoint is being
//! written, after random delays) and resumed with `--resume` until they finish. After every
//! kill the newest checkpoint must be complete (its checksums verify), and the exported
//! weights of the interrupted runs must be byte-identical to those of uninterrupted runs.
//!
//! The kill points depend on timing, the outcome must not: whatever the machine's speed, each
//! kill either hits or finds the process finished, and the comparison is exact.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use losatok_train::state::{verify, Checkpoints};

/// Seeded choices (SplitMix64), so every run of the test tries the same kill schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// When to kill a running process.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// As soon as a checkpoint newer than the newest one at launch appears.
    NewCheckpoint,
    /// As soon as a checkpoint is being written (its temporary folder exists).
    MidCheckpointWrite,
    /// After this many milliseconds.
    Delay(u64),
}

fn spawn(args: &[&str], dir: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_losatok"))
        .args(args)
        .current_dir(dir)
        .env_remove("LOSATOK_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start losatok")
}

fn latest_step(run: &Path) -> Option<u64> {
    let root = run.join("checkpoints");
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("step-")?
                .parse::<u64>()
                .ok()
        })
        .max()
}

fn writing_checkpoint(run: &Path) -> bool {
    std::fs::read_dir(run.join("checkpoints")).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-step-"))
    })
}

/// Wait for `at` (or the end of the process); kill the process if it is still running.
/// Returns whether it was killed.
fn kill_at(child: &mut Child, run: &Path, at: KillAt) -> bool {
    let start = Instant::now();
    let before = latest_step(run);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "run failed on its own: {status:?}");
            return false;
        }
        let now = match at {
            KillAt::NewCheckpoint => latest_step(run) > before,
            KillAt::MidCheckpointWrite => writing_checkpoint(run),
            KillAt::Delay(ms) => start.elapsed() >= Duration::from_millis(ms),
        };
        // give up waiting for a checkpoint event after a while (then it is a plain delay)
        if now || start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill(); // SIGKILL (a no-op if it has just exited)
            let status = child.wait().unwrap();
            // it may have finished just before the signal
            return !status.success();
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Run `cmd config --run-dir run` to the end, killing it at the scheduled points and resuming;
/// returns the number of kills that hit.
fn run_with_kills(dir: &Path, cmd: &str, config: &str, run: &str, schedule: &[KillAt]) -> usize {
    let run_path = dir.join(run);
    let mut kills = 0;
    let mut launches = 0;
    let mut newest = None;
    let mut events = schedule.iter();
    loop {
        let mut args = vec![cmd, config, "--run-dir", run];
        if launches > 0 {
            args.push("--resume");
        }
        let log = dir.join(format!("{run}.{launches}.log"));
        let mut child = spawn(&args, dir, &log);
        launches += 1;
        let Some(&at) = events.next() else {
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "{cmd}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            break;
        };
        if !kill_at(&mut child, &run_path, at) {
            break; // finished before the kill
        }
        kills += 1;
        // the newest complete checkpoint is intact, and never older than before the kill
        if let Some((step, ckpt)) = Checkpoints::open(&run_path, usize::MAX)
            .unwrap()
            .latest()
            .unwrap()
        {
            verify(&ckpt).unwrap_or_else(|e| panic!("after kill {kills} ({at:?}): {e}"));
            assert!(
                Some(step) >= newest,
                "checkpoint went back from {newest:?} to {step}"
            );
            newest = Some(step);
        }
        eprintln!("{cmd}: killed at {at:?}; newest checkpoint {newest:?}");
        assert!(launches < 40, "too many launches");
    }
    kills
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A kill schedule: first right after a checkpoint, then a mix of the three kinds.
fn schedule(rng: &mut Rng, n: usize, max_delay_ms: u64) -> Vec<KillAt> {
    let mut s = vec![KillAt::NewCheckpoint];
    for _ in 1..n {
        s.push(match rng.below(3) {
            0 => KillAt::NewCheckpoint,
            1 => KillAt::MidCheckpointWrite,
            _ => KillAt::Delay(rng.below(max_delay_ms)),
        });
    }
    s
}

#[test]
fn sigkill_at_random_points_then_resume_gives_the_uninterrupted_result() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let manifest: PathBuf =
        losatok_train::data::synthesize_dataset(&d.join("data"), 2.0, 11).unwrap();
    std::fs::write(
        d.join("s1.yml"),
        format!(
            "model: {{preset: tiny}}\nsemantic_encoder: random\n\
             optim: {{lr: 2.0e-3, warmup_steps: 2}}\n\
             data: {{manifest: {}, loader: {{segment_samples: 16000, workers: 2}}}}\n\
             run: {{steps: 16, batch_size: 2, log_every: 1, checkpoint_every: 1, keep_checkpoints: 2}}\n",
            manifest.display()
        ),
    )
    .unwrap();
    // stage 2 on the reference stage-1 export, so that its comparison stands on its own
    std::fs::write(
        d.join("s2.yml"),
        format!(
            "model: {{preset: tiny}}\nsemantic_encoder: ref1/semantic_encoder.safetensors\n\
             gan_start_step: 3\n\
             discriminator: {{kind: mfd, sample_rate: 16000, hop_lengths: [256, 1024], hidden_channels: [32, 32]}}\n\
             optim_g: {{lr: 2.0e-3, warmup_steps: 2}}\noptim_d: {{lr: 2.0e-3, warmup_steps: 2}}\n\
             data: {{manifest: {}, loader: {{segment_samples: 10240, workers: 2}}}}\n\
             run: {{steps: 8, batch_size: 2, log_every: 1, checkpoint_every: 1, keep_checkpoints: 2, sample_every: 0}}\n",
            manifest.display()
        ),
    )
    .unwrap();

    // uninterrupted
    let t = Instant::now();
    assert_eq!(run_with_kills(d, "train-sembo", "s1.yml", "ref1", &[]), 0);
    let stage1_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    assert_eq!(run_with_kills(d, "train", "s2.yml", "ref2", &[]), 0);
    let stage2_secs = t.elapsed().as_secs_f64();

    // interrupted: delays up to the length of an uninterrupted run
    let mut rng = Rng(0x105a_70c0);
    let s1 = schedule(&mut rng, 8, (stage1_secs * 1000.0) as u64);
    let s2 = schedule(&mut rng, 8, (stage2_secs * 1000.0) as u64);
    let k1 = run_with_kills(d, "train-sembo", "s1.yml", "kill1", &s1);
    let k2 = run_with_kills(d, "train", "s2.yml", "kill2", &s2);
    eprintln!(
        "stage 1: {k1} kills ({stage1_secs:.1} s uninterrupted); stage 2: {k2} kills \
         ({stage2_secs:.1} s uninterrupted); {:.0} s in all",
        t0.elapsed().as_secs_f64()
    );
    assert!(k1 >= 1 && k2 >= 1, "no kill hit (k1 {k1}, k2 {k2})");

    assert_eq!(
        read(&d.join("kill1/semantic_encoder.safetensors")),
        read(&d.join("ref1/semantic_encoder.safetensors")),
        "stage-1 exports differ"
    );
    assert_eq!(
        read(&d.join("kill2/losatok.safetensors")),
        read(&d.join("ref2/losatok.safetensors")),
        "stage-2 exports differ"
    );
    // the resumed run's metrics hold each step once (torn or repeated records were cut)
    let metrics = std::fs::read_to_string(d.join("kill2/metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, (1..=8).collect::<Vec<_>>(), "{metrics}");
}
