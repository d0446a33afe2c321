//! Analysis and synthesis windows.

use std::f64::consts::PI;

/// Periodic Hann window of length `n`: `w[i] = 0.5 − 0.5·cos(2πi/n)`.
///
/// "Periodic" means the denominator is `n`, not `n − 1` (`torch.hann_window(n, periodic=True)`,
/// `scipy.signal.get_window("hann", n)`). Every window in LoSATok is of this kind.
/// Computed in f64 and rounded once, so each value is within half an ulp of the exact window.
pub fn hann_periodic(n: usize) -> Vec<f32> {
    hann_periodic_f64(n).into_iter().map(|v| v as f32).collect()
}

/// [`hann_periodic`] in f64, for building other constant tables without an extra rounding.
pub fn hann_periodic_f64(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.5 - 0.5 * (2.0 * PI * i as f64 / n as f64).cos())
        .collect()
}

/// The exact overlap-add envelope `env[n] = Σ_k w²[n − hop·k]` of `frames` windows of length
/// `w.len()`, advanced by `hop`, over the untrimmed buffer of length `(frames − 1)·hop + w.len()`.
///
/// Takes the window in f64 and sums in f64, rounding once, so the envelope is exact to half an
/// ulp (for a periodic Hann window at 75 % overlap it starts at exactly 0.75 and is exactly 1.5
/// inside). The ISTFT divides by this (trimmed the same way as the signal); it is constant in the
/// interior but not at the edges.
pub fn overlap_add_envelope(window: &[f64], hop: usize, frames: usize) -> Vec<f32> {
    let n = window.len();
    if frames == 0 {
        return Vec::new();
    }
    let len = (frames - 1) * hop + n;
    let mut env = vec![0f64; len];
    for f in 0..frames {
        for (i, &w) in window.iter().enumerate() {
            env[f * hop + i] += w * w;
        }
    }
    env.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_hann_has_zero_first_sample_and_peak_at_half() {
        let w = hann_periodic(8);
        assert_eq!(w[0], 0.0);
        assert_eq!(w[4], 1.0);
        // periodic: symmetric around n/2, and w[n-1] != 0
        assert!((w[1] - w[7]).abs() < 1e-7);
        assert!(w[7] > 0.1);
    }

    #[test]
    fn envelope_is_one_and_a_half_in_the_interior_for_quarter_hop() {
        // Hann with 75 % overlap sums (squared) to 1.5 exactly in the interior.
        let w = hann_periodic_f64(1280);
        let env = overlap_add_envelope(&w, 320, 10);
        assert_eq!(env[480], 0.75);
        assert_eq!(env.len(), 9 * 320 + 1280);
        for &v in &env[1280..9 * 320] {
            assert_eq!(v, 1.5);
        }
        // at the edge it is much smaller
        assert!(env[1] < 1e-4);
    }
}
