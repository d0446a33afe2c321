//! Numerical faults: a step whose loss or gradient is not finite is skipped (no optimiser
//! update) and logged; too many in a row stop the run with a clear message.

use crate::error::TrainError;

/// Counts consecutive non-finite steps.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FaultGuard {
    /// Current run of non-finite steps.
    pub consecutive: u32,
    /// Non-finite steps since the start of training.
    pub total: u64,
    /// Limit of `consecutive`.
    pub max_consecutive: u32,
}

impl FaultGuard {
    /// A guard that stops after `max_consecutive` bad steps in a row.
    pub fn new(max_consecutive: u32) -> Self {
        Self {
            max_consecutive,
            ..Self::default()
        }
    }

    /// Record a step: `ok` when every loss and gradient norm was finite. Returns an error once
    /// the limit is reached.
    pub fn record(&mut self, step: u64, ok: bool, what: &str) -> Result<(), TrainError> {
        if ok {
            self.consecutive = 0;
            return Ok(());
        }
        self.consecutive += 1;
        self.total += 1;
        tracing::warn!(
            step,
            "non-finite {what}: step skipped ({} in a row)",
            self.consecutive
        );
        if self.consecutive >= self.max_consecutive {
            return Err(TrainError::Diverged(format!(
                "{} consecutive steps with non-finite {what} (last at step {step}); lower the \
                 learning rate or resume from an earlier checkpoint",
                self.consecutive
            )));
        }
        Ok(())
    }
}

/// Whether every value is finite.
pub fn all_finite(values: &[f64]) -> bool {
    values.iter().all(|v| v.is_finite())
}
