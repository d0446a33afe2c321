//! What both benches share: the sizes to run and the per-iteration timer.

use std::time::{Duration, Instant};

use losatok::LosatokConfig;

/// The sizes to run: `LOSATOK_BENCH_SIZES` (comma-separated `tiny`, `full`), default both.
pub fn sizes() -> Vec<(&'static str, LosatokConfig)> {
    let wanted = std::env::var("LOSATOK_BENCH_SIZES").unwrap_or_else(|_| "tiny,full".into());
    let mut out = Vec::new();
    for name in wanted.split(',').map(str::trim) {
        match name {
            "tiny" => out.push(("tiny", LosatokConfig::tiny())),
            "full" => out.push(("full", LosatokConfig::official())),
            "" => {}
            other => panic!("LOSATOK_BENCH_SIZES: unknown size {other:?} (tiny, full)"),
        }
    }
    out
}

/// Time `f` once per criterion iteration; returns the total and records each duration (for
/// the median printed next to criterion's statistics).
pub fn timed(samples: &mut Vec<Duration>, iters: u64, mut f: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t = Instant::now();
        f();
        let d = t.elapsed();
        samples.push(d);
        total += d;
    }
    total
}

/// The median of the recorded durations, in seconds (`None` before any).
pub fn median_s(samples: &mut [Duration]) -> Option<f64> {
    samples.sort();
    samples.get(samples.len() / 2).map(Duration::as_secs_f64)
}
