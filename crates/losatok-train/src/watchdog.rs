//! A hang watchdog for training runs.
//!
//! The usual failure of a multi-GPU job is not a crash but a hang: one rank stuck in a NCCL
//! collective, a data-loader read or a device synchronisation while the others wait for it,
//! burning node-hours until someone looks. Each rank's run loop tells its [`Watchdog`] where it
//! is (step and [`Phase`]); a monitor thread compares the time spent in the current phase with
//! a limit, `max(floor, multiple × median step time)` — or `startup` until [`MIN_TIMED_STEPS`]
//! steps have been timed, because the first steps include kernel compilation and autotuning.
//! Past the limit it hands a [`HangReport`] to the run's handler. The handler a command-line
//! run installs, [`exit_on_hang`], logs the rank, step and phase, writes every thread's
//! backtrace to stderr, removes the process's registered temporary files and exits with
//! [`HANG_EXIT_CODE`], so that the launcher (`losatok launch`, torchrun, SLURM) stops the whole
//! job; `--resume` then continues from the last checkpoint.
//!
//! The monitor never touches the training thread: a hang may be anywhere, holding any lock.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::collective::Collective;
use crate::distributed::DistError;

/// Exit status of a process stopped by [`exit_on_hang`] (as `timeout(1)` uses it).
pub const HANG_EXIT_CODE: i32 = 124;

/// Steps timed before the median replaces the start-up limit.
pub const MIN_TIMED_STEPS: usize = 3;

/// Steps the median is taken over (the most recent ones).
const STEP_WINDOW: usize = 64;

/// When a rank counts as hung (`run.watchdog` in a training config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchdogConfig {
    /// Watch at all.
    pub enabled: bool,
    /// A phase may last this many median step times.
    pub multiple: f64,
    /// … but always at least this many seconds (checkpoints and sample logging included).
    pub floor_seconds: f64,
    /// The limit before [`MIN_TIMED_STEPS`] steps have been timed (start-up, compilation,
    /// autotuning, the first checkpoint load).
    pub startup_seconds: f64,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            multiple: 20.0,
            floor_seconds: 300.0,
            startup_seconds: 1800.0,
        }
    }
}

impl WatchdogConfig {
    /// The configuration's own problems, as one line.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |v: f64, name: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "run.watchdog.{name} must be a positive number, not {v}"
                ))
            }
        };
        positive(self.multiple, "multiple")?;
        positive(self.floor_seconds, "floor_seconds")?;
        positive(self.startup_seconds, "startup_seconds")
    }

    /// The limit for a phase, given the recent step times (seconds).
    fn limit(&self, recent: &VecDeque<f64>) -> Duration {
        if recent.len() < MIN_TIMED_STEPS {
            return Duration::from_secs_f64(self.startup_seconds);
        }
        let mut sorted: Vec<f64> = recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        Duration::from_secs_f64((self.multiple * median).max(self.floor_seconds))
    }
}

/// What a rank is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the data loader's batch.
    Data,
    /// Forward and backward passes, optimiser update.
    Compute,
    /// In a collective operation with the other ranks (gradient all-reduce, agreement).
    Collective,
    /// Writing a checkpoint.
    Checkpoint,
    /// Logging validation samples.
    Samples,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Data => "waiting for data",
            Phase::Compute => "forward/backward/update",
            Phase::Collective => "collective with the other ranks",
            Phase::Checkpoint => "writing a checkpoint",
            Phase::Samples => "logging samples",
        })
    }
}

/// A phase that outlasted its limit.
#[derive(Clone, Debug, PartialEq)]
pub struct HangReport {
    /// The rank.
    pub rank: usize,
    /// The step being worked on (optimiser steps done before it).
    pub step: u64,
    /// Where it is stuck.
    pub phase: Phase,
    /// How long it has been in that phase.
    pub stuck_for: Duration,
    /// The limit it passed.
    pub limit: Duration,
    /// The median step time the limit came from (`None` during start-up).
    pub median_step: Option<Duration>,
}

impl std::fmt::Display for HangReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rank {} has been stuck for {:.1} s in step {} ({}); the limit is {:.1} s",
            self.rank,
            self.stuck_for.as_secs_f64(),
            self.step,
            self.phase,
            self.limit.as_secs_f64()
        )?;
        match self.median_step {
            Some(m) => write!(f, " (median step {:.3} s)", m.as_secs_f64()),
            None => f.write_str(" (start-up)"),
        }
    }
}

/// What happens when a rank hangs.
pub type HangHandler = Arc<dyn Fn(&HangReport) + Send + Sync>;

struct State {
    step: u64,
    phase: Phase,
    since: Instant,
    step_started: Instant,
    recent: VecDeque<f64>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// One rank's watchdog: a monitor thread, stopped when this is dropped.
pub struct Watchdog {
    shared: Arc<Shared>,
    monitor: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Start watching rank `rank`, which is about to work on step `step`.
    pub fn start(cfg: WatchdogConfig, rank: usize, step: u64, on_hang: HangHandler) -> Self {
        let now = Instant::now();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                step,
                phase: Phase::Data,
                since: now,
                step_started: now,
                recent: VecDeque::new(),
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let watched = Arc::clone(&shared);
        let monitor = std::thread::Builder::new()
            .name(format!("watchdog-rank{rank}"))
            .spawn(move || monitor(&watched, &cfg, rank, on_hang))
            .expect("spawning the watchdog thread");
        Self {
            shared,
            monitor: Some(monitor),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rank enters `phase` of step `step`; [`Phase::Data`] starts a new step's timing.
    pub fn enter(&self, step: u64, phase: Phase) {
        let now = Instant::now();
        // the Data phase starts the step: (re)start its clock
        let mut s = self.state();
        if phase == Phase::Data {
            s.step_started = now;
        }
        s.step = step;
        s.phase = phase;
        s.since = now;
    }

    /// The step's data, compute and collectives are done: time it (checkpoints and samples
    /// that follow are not part of the step time).
    pub fn step_done(&self) {
        let mut s = self.state();
        let took = s.step_started.elapsed().as_secs_f64();
        if s.recent.len() == STEP_WINDOW {
            s.recent.pop_front();
        }
        s.recent.push_back(took);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.state().stop = true;
        self.shared.wake.notify_all();
        if let Some(m) = self.monitor.take() {
            let _ = m.join();
        }
    }
}

/// A collective that tells a watchdog when the rank is inside a collective operation (and back
/// in [`Phase::Compute`] after it).
pub struct Watched<'a, C> {
    inner: &'a mut C,
    dog: Option<&'a Watchdog>,
    step: u64,
}

impl<'a, C> Watched<'a, C> {
    /// Wrap `inner` for step `step` (`dog: None`: a plain pass-through).
    pub fn new(inner: &'a mut C, dog: Option<&'a Watchdog>, step: u64) -> Self {
        Self { inner, dog, step }
    }

    fn around<T>(&mut self, op: impl FnOnce(&mut C) -> T) -> T {
        if let Some(d) = self.dog {
            d.enter(self.step, Phase::Collective);
        }
        let out = op(self.inner);
        if let Some(d) = self.dog {
            d.enter(self.step, Phase::Compute);
        }
        out
    }
}

impl<B: Backend, C: Collective<B>> Collective<B> for Watched<'_, C> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn world_size(&self) -> usize {
        self.inner.world_size()
    }
    fn all_reduce_mean(&mut self, t: Tensor<B, 1>) -> Result<Tensor<B, 1>, DistError> {
        self.around(|c| c.all_reduce_mean(t))
    }
    fn all_reduce_sum_host(&mut self, values: &mut [f64]) -> Result<(), DistError> {
        self.around(|c| c.all_reduce_sum_host(values))
    }
}

/// The monitor thread: wake up regularly, report once per stuck phase.
fn monitor(shared: &Shared, cfg: &WatchdogConfig, rank: usize, on_hang: HangHandler) {
    let mut reported: Option<(u64, Instant)> = None;
    let mut guard = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if guard.stop {
            return;
        }
        let limit = cfg.limit(&guard.recent);
        let stuck_for = guard.since.elapsed();
        let this_phase = (guard.step, guard.since);
        if stuck_for > limit && reported != Some(this_phase) {
            reported = Some(this_phase);
            let report = HangReport {
                rank,
                step: guard.step,
                phase: guard.phase,
                stuck_for,
                limit,
                median_step: (guard.recent.len() >= MIN_TIMED_STEPS).then(|| {
                    let mut v: Vec<f64> = guard.recent.iter().copied().collect();
                    v.sort_by(f64::total_cmp);
                    Duration::from_secs_f64(v[v.len() / 2])
                }),
            };
            drop(guard);
            on_hang(&report);
            guard = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        // check four times per limit, at least every second, at most every 10 ms
        let wait = (limit / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        guard = shared
            .wake
            .wait_timeout(guard, wait)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// The handler of command-line runs: log the report, write every thread's backtrace to stderr,
/// remove registered temporary files and exit with [`HANG_EXIT_CODE`]. If dumping or cleaning
/// up itself hangs (a stuck thread may hold a lock they need), the process exits anyway after
/// `grace`.
pub fn exit_on_hang(grace: Duration) -> HangHandler {
    Arc::new(move |report: &HangReport| {
        // one report per process: a second rank's watchdog (in-process ranks) stays quiet
        static HANDLING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if HANDLING.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        // the deadline first: nothing below may keep the process alive
        std::thread::spawn(move || {
            std::thread::sleep(grace);
            // SAFETY: `_exit` ends the process at once; no Rust state is touched.
            unsafe { libc::_exit(HANG_EXIT_CODE) }
        });
        let line = format!(
            "watchdog: {report}; dumping every thread's backtrace and exiting with status \
             {HANG_EXIT_CODE} (resume with --resume from the last checkpoint)\n"
        );
        write_stderr(line.as_bytes());
        tracing::error!("{}", line.trim_end());
        dump_all_threads(grace / 2);
        let removed = losatok_fs::temp::cleanup_temporaries();
        if !removed.is_empty() {
            write_stderr(
                format!("watchdog: removed {} temporary file(s)\n", removed.len()).as_bytes(),
            );
        }
        // SAFETY: as above.
        unsafe { libc::_exit(HANG_EXIT_CODE) }
    })
}

/// Write to fd 2 directly (not through `std::io::stderr`, whose lock a stuck thread may hold).
fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writing a valid buffer to fd 2.
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Threads that finished writing their backtrace, for [`dump_all_threads`].
static DUMPED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The signal handler of [`dump_all_threads`]: the interrupted thread writes its own backtrace.
///
/// Capturing and formatting allocate, which is not async-signal-safe: a thread interrupted
/// inside the allocator could deadlock here. That is acceptable only because the process is
/// about to end and the dumper waits for each thread with a timeout, then exits regardless.
extern "C" fn dump_own_backtrace(_: libc::c_int) {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let name = std::thread::current()
        .name()
        .map_or_else(|| "unnamed".to_string(), str::to_string);
    let trace = std::backtrace::Backtrace::force_capture();
    write_stderr(format!("\n--- thread {tid} ({name}) ---\n{trace}\n").as_bytes());
    DUMPED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// Write every other thread's backtrace to stderr, one thread at a time, waiting at most
/// `per_thread_total` for all of them. Linux: threads are listed from `/proc/self/task` and
/// signalled with `tgkill`; elsewhere only a note is written.
fn dump_all_threads(total: Duration) {
    #[cfg(target_os = "linux")]
    {
        use std::sync::atomic::Ordering;
        let deadline = Instant::now() + total;
        let signal = libc::SIGRTMIN() + 4;
        // SAFETY: installing a handler for a real-time signal nothing else in the process uses.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = dump_own_backtrace as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
        // SAFETY: no preconditions.
        let (pid, me) = unsafe { (libc::getpid(), libc::gettid()) };
        let tids: Vec<libc::pid_t> = std::fs::read_dir("/proc/self/task")
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .filter(|&t| t != me)
                    .collect()
            })
            .unwrap_or_default();
        for tid in tids {
            let before = DUMPED.load(Ordering::SeqCst);
            // SAFETY: tgkill on a thread of this process with a signal that has a handler.
            let sent = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal) } == 0;
            while sent && DUMPED.load(Ordering::SeqCst) == before && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if Instant::now() >= deadline {
                write_stderr(b"watchdog: out of time for backtraces\n");
                return;
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = total;
        write_stderr(b"watchdog: backtraces of other threads are only written on Linux\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_the_start_up_one_then_a_multiple_of_the_median_above_the_floor() {
        let cfg = WatchdogConfig {
            enabled: true,
            multiple: 10.0,
            floor_seconds: 2.0,
            startup_seconds: 100.0,
        };
        let mut recent = VecDeque::from(vec![0.1, 0.5]);
        assert_eq!(cfg.limit(&recent), Duration::from_secs(100));
        recent.push_back(0.3);
        // median 0.3 s × 10 = 3 s, above the floor
        assert_eq!(cfg.limit(&recent), Duration::from_secs_f64(3.0));
        let fast = VecDeque::from(vec![0.01; 5]);
        assert_eq!(cfg.limit(&fast), Duration::from_secs(2));
        assert!(WatchdogConfig {
            multiple: 0.0,
            ..cfg.clone()
        }
        .validate()
        .is_err());
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn reports_a_stuck_phase_once_and_not_a_busy_one() {
        let cfg = WatchdogConfig {
            enabled: true,
            multiple: 2.0,
            floor_seconds: 0.05,
            startup_seconds: 0.05,
        };
        let reports = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&reports);
        let dog = Watchdog::start(
            cfg,
            3,
            0,
            Arc::new(move |r: &HangReport| seen.lock().unwrap().push(r.clone())),
        );
        // steps that keep moving are never reported
        for step in 0..10 {
            dog.enter(step, Phase::Data);
            dog.enter(step, Phase::Compute);
            std::thread::sleep(Duration::from_millis(5));
            dog.step_done();
        }
        assert!(reports.lock().unwrap().is_empty());
        dog.enter(10, Phase::Collective);
        std::thread::sleep(Duration::from_millis(400));
        drop(dog);
        let r = reports.lock().unwrap();
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(
            (r[0].rank, r[0].step, r[0].phase),
            (3, 10, Phase::Collective)
        );
        assert!(r[0].median_step.is_some());
    }
}
