//! The learning-rate schedule: linear warm-up, then cosine decay to a floor.

/// `lr(s)` for optimizer step `s` (0-based):
///
/// * `s < warmup`: `peak · (s + 1)/warmup`;
/// * otherwise: `floor + ½(peak − floor)(1 + cos(π·p))` with `p = min(1, (s − warmup)/(total − warmup))`.
///
/// A pure function of the step, so resuming needs only the step (no scheduler state).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarmupCosine {
    /// Peak learning rate (1e-4 in both stages of the paper).
    pub peak: f64,
    /// Final learning rate (1e-5 in stage 2; 0 for a plain cosine).
    pub floor: f64,
    /// Warm-up steps (1000).
    pub warmup: u64,
    /// Total steps (100 k in stage 1, 1 M in stage 2).
    pub total: u64,
}

impl WarmupCosine {
    /// The learning rate at optimizer step `s`.
    pub fn lr(&self, s: u64) -> f64 {
        if s < self.warmup {
            return self.peak * (s + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let p = ((s - self.warmup) as f64 / span).min(1.0);
        self.floor + 0.5 * (self.peak - self.floor) * (1.0 + (std::f64::consts::PI * p).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_decays_to_the_floor() {
        let s = WarmupCosine {
            peak: 1e-3,
            floor: 1e-4,
            warmup: 3,
            total: 7,
        };
        let lrs: Vec<f64> = (0..10).map(|i| s.lr(i)).collect();
        // warm-up 1/3, 2/3, 1 of the peak; then floor + ½(peak − floor)(1 + cos(π·k/4))
        let want = [
            3.333_333_3e-4,
            6.666_666_7e-4,
            1e-3,
            1e-3,
            8.681_980_5e-4,
            5.5e-4,
            2.318_019_5e-4,
            1e-4,
            1e-4,
            1e-4,
        ];
        for (a, b) in lrs.iter().zip(want) {
            assert!((a - b).abs() < 1e-10, "{lrs:?}");
        }
    }

    #[test]
    fn no_warmup_starts_at_the_peak() {
        let s = WarmupCosine {
            peak: 2.0,
            floor: 0.0,
            warmup: 0,
            total: 4,
        };
        assert_eq!(s.lr(0), 2.0);
        assert!((s.lr(2) - 1.0).abs() < 1e-12);
        assert_eq!(s.lr(100), 0.0);
    }
}
