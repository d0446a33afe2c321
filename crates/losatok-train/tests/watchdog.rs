//! The hang watchdog on a real run: two in-process ranks of a tiny stage-1 run, one of which
//! stalls inside its collective at a chosen step.
//!
//! * In process, with a recording handler: both ranks are reported, at that step, in the
//!   collective phase; once the stall is released the run finishes.
//! * In a child process (this test binary run again), with the command line's handler: the
//!   process exits with `HANG_EXIT_CODE` after writing the report and every thread's backtrace
//!   (the stalled thread's among them), and the run resumes from its last checkpoint.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use losatok_train::collective::{Collective, InProcess, Local};
use losatok_train::data::synthesize_dataset;
use losatok_train::demo::stage1_config;
use losatok_train::distributed::DistError;
use losatok_train::watchdog::{exit_on_hang, HangReport, Phase, WatchdogConfig, HANG_EXIT_CODE};
use losatok_train::{train_stage1, RunOptions, Stage1Config};

type Ad = Autodiff<Flex>;

/// Steps of the run, the step rank 1 stalls in, and the checkpoint interval.
const STEPS: u64 = 8;
const STALL_AT: u64 = 5;
const CHECKPOINT_EVERY: u64 = 2;

/// A collective whose rank 1 blocks in its first host all-reduce of step [`STALL_AT`] until
/// `release` is set (never, in the child process).
struct Stalling {
    inner: InProcess,
    calls: u64,
    release: Arc<AtomicBool>,
}

impl Stalling {
    #[inline(never)]
    fn stall_here(&self) {
        while !self.release.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Collective<Flex> for Stalling {
    fn rank(&self) -> usize {
        <InProcess as Collective<Flex>>::rank(&self.inner)
    }
    fn world_size(&self) -> usize {
        <InProcess as Collective<Flex>>::world_size(&self.inner)
    }
    fn all_reduce_mean(&mut self, t: Tensor<Flex, 1>) -> Result<Tensor<Flex, 1>, DistError> {
        self.inner.all_reduce_mean(t)
    }
    fn all_reduce_sum_host(&mut self, values: &mut [f64]) -> Result<(), DistError> {
        // the run's start agreement is call 1 and each stage-1 step makes one host all-reduce
        // (its agreement), so step k's is call k + 2
        self.calls += 1;
        if self.rank() == 1 && self.calls == STALL_AT + 2 {
            self.stall_here();
        }
        <InProcess as Collective<Flex>>::all_reduce_sum_host(&mut self.inner, values)
    }
}

fn config(data_dir: &Path) -> Stage1Config {
    let manifest = synthesize_dataset(&data_dir.join("data"), 8.0, 3).unwrap();
    let mut cfg = stage1_config(&manifest, STEPS, 0, 1);
    cfg.run.batch_size = 4;
    cfg.run.checkpoint_every = CHECKPOINT_EVERY;
    cfg.run.keep_checkpoints = 2;
    cfg.run.sample_every = 0;
    // tiny steps take milliseconds: the floor decides
    cfg.run.watchdog = WatchdogConfig {
        enabled: true,
        multiple: 20.0,
        floor_seconds: 1.0,
        startup_seconds: 30.0,
    };
    cfg
}

fn options(dir: &Path, resume: bool) -> RunOptions {
    RunOptions {
        run_dir: dir.join("run"),
        config_dir: dir.to_path_buf(),
        resume,
        ..RunOptions::default()
    }
}

/// Run both ranks to the end (or until the process exits); each rank's result.
fn run_two_ranks(cfg: &Stage1Config, opts: &RunOptions, release: &Arc<AtomicBool>) -> Vec<u64> {
    let handles: Vec<_> = InProcess::group(2)
        .into_iter()
        .map(|inner| {
            let (cfg, opts) = (cfg.clone(), opts.clone());
            let mut c = Stalling {
                inner,
                calls: 0,
                release: Arc::clone(release),
            };
            std::thread::Builder::new()
                .name(format!("rank{}", c.rank()))
                .spawn(move || {
                    train_stage1::<Ad, _>(&cfg, &opts, &Default::default(), &mut c)
                        .unwrap()
                        .steps
                })
                .unwrap()
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn both_ranks_are_reported_in_the_collective_of_the_stalled_step() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let release = Arc::new(AtomicBool::new(false));
    let reports: Arc<Mutex<Vec<HangReport>>> = Arc::default();
    let (seen, free) = (Arc::clone(&reports), Arc::clone(&release));
    let opts = RunOptions {
        on_hang: Some(Arc::new(move |r: &HangReport| {
            let mut all = seen.lock().unwrap();
            all.push(r.clone());
            // once both ranks are reported, let the stalled one go on
            if all.len() >= 2 {
                free.store(true, Ordering::SeqCst);
            }
        })),
        ..options(tmp.path(), false)
    };
    let steps = run_two_ranks(&cfg, &opts, &release);
    assert_eq!(steps, vec![STEPS, STEPS]);
    let mut reports = reports.lock().unwrap().clone();
    reports.sort_by_key(|r| r.rank);
    assert_eq!(reports.len(), 2, "{reports:?}");
    for (rank, r) in reports.iter().enumerate() {
        assert_eq!(
            (r.rank, r.step, r.phase),
            (rank, STALL_AT, Phase::Collective),
            "{r}"
        );
        assert!(
            r.stuck_for >= Duration::from_secs(1) && r.median_step.is_some(),
            "{r}"
        );
    }
}

/// The child process of the next test: the same run with the command line's handler. Does
/// nothing unless started by that test.
#[test]
fn child_run_that_hangs() {
    let Some(dir) = std::env::var_os("LOSATOK_WATCHDOG_CHILD") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let opts = RunOptions {
        on_hang: Some(exit_on_hang(Duration::from_secs(20))),
        ..options(&dir, false)
    };
    run_two_ranks(&config(&dir), &opts, &Arc::new(AtomicBool::new(false)));
    panic!("the watchdog did not stop the process");
}

#[test]
fn a_hung_rank_stops_the_process_with_backtraces_and_the_run_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_run_that_hangs",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LOSATOK_WATCHDOG_CHILD", tmp.path())
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(HANG_EXIT_CODE), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "in step {STALL_AT} (collective with the other ranks)"
        )),
        "{stderr}"
    );
    // one backtrace per thread: both ranks' among them, the stalled one inside its collective
    assert!(stderr.matches("\n--- thread ").count() >= 2, "{stderr}");
    assert!(
        stderr.contains("(rank1)") && stderr.contains("(rank0)"),
        "{stderr}"
    );
    assert!(stderr.contains("stall_here"), "{stderr}");

    // the last checkpoint before the stall; resume on one rank to the end
    let cfg = config(tmp.path());
    let summary = train_stage1::<Ad, _>(
        &cfg,
        &options(tmp.path(), true),
        &Default::default(),
        &mut Local,
    )
    .unwrap();
    let last = STALL_AT / CHECKPOINT_EVERY * CHECKPOINT_EVERY;
    assert_eq!(summary.resumed_from, Some(last));
    assert_eq!(summary.steps, STEPS);
}
