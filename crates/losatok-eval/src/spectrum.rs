//! Scalar summaries of a covariance spectrum (paper Appendix B.1).
//!
//! With the eigenvalues `λ₁ ≥ … ≥ λ_d ≥ 0` of the feature covariance (negative rounding
//! residue is clamped to 0):
//!
//! * **effective rank** (Roy & Vetterli 2007; paper eqs. 6–7): `p_i = λ_i / Σ_j λ_j`,
//!   `H = −Σ_i p_i·ln p_i` (terms with `p_i = 0` skipped), `erank = exp(H)`. It equals `k` for
//!   `k` equal non-zero eigenvalues and lies in `[1, d]`.
//! * **PCA count** (eq. 8): the smallest `k` with `Σ_{i≤k} λ_i / Σ_j λ_j ≥ τ` (τ = 0.9), with a
//!   relative tolerance of 1e-12 so that rounding does not push an exact boundary to `k + 1`.
//! * **explained-variance curve**: `c_k = Σ_{i≤k} λ_i / Σ_j λ_j` for `k = 1..d`.
//!
//! A zero spectrum (no variance) has an undefined effective rank (NaN), PCA count 0 and a curve
//! of zeros.

/// The fraction of variance of the paper's PCA count (eq. 8).
pub const PCA_VARIANCE_FRACTION: f64 = 0.9;

/// Eigenvalues clamped at 0 (negative values are rounding residue of a PSD matrix).
fn clamped(eigenvalues: &[f64]) -> impl Iterator<Item = f64> + '_ {
    eigenvalues.iter().map(|&v| v.max(0.0))
}

/// Effective rank `exp(−Σ p_i ln p_i)`, `p_i = λ_i / Σλ` (paper eqs. 6–7). NaN when `Σλ = 0`.
pub fn effective_rank(eigenvalues: &[f64]) -> f64 {
    let total: f64 = clamped(eigenvalues).sum();
    if total.is_nan() || total <= 0.0 || !total.is_finite() {
        return f64::NAN;
    }
    let h: f64 = clamped(eigenvalues)
        .filter(|&v| v > 0.0)
        .map(|v| {
            let p = v / total;
            -p * p.ln()
        })
        .sum();
    h.exp()
}

/// Smallest `k` whose top-`k` eigenvalues hold at least `fraction` of the total (paper eq. 8);
/// the eigenvalues may come in any order. 0 when the total is 0.
pub fn components_for_variance(eigenvalues: &[f64], fraction: f64) -> usize {
    let mut sorted: Vec<f64> = clamped(eigenvalues).collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let total: f64 = sorted.iter().sum();
    if total.is_nan() || total <= 0.0 {
        return 0;
    }
    let target = fraction * total * (1.0 - 1e-12);
    let mut acc = 0.0;
    for (k, v) in sorted.iter().enumerate() {
        acc += v;
        if acc >= target {
            return k + 1;
        }
    }
    sorted.len()
}

/// Cumulative explained variance `c_k`, `k = 1..d` (eigenvalues sorted in descending order
/// first); all zeros when the total is 0.
pub fn explained_variance_curve(eigenvalues: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = clamped(eigenvalues).collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let total: f64 = sorted.iter().sum();
    let mut acc = 0.0;
    sorted
        .iter()
        .map(|v| {
            acc += v;
            if total > 0.0 {
                (acc / total).min(1.0)
            } else {
                0.0
            }
        })
        .collect()
}

/// The summaries of one covariance spectrum.
#[derive(Clone, Debug, PartialEq)]
pub struct SpectrumStats {
    /// Number of channels.
    pub dim: usize,
    /// Effective rank (eqs. 6–7).
    pub effective_rank: f64,
    /// Components for 90 % of the variance (eq. 8).
    pub pca90: usize,
    /// Total variance `Σλ` (the covariance's trace).
    pub total_variance: f64,
    /// Eigenvalues, descending.
    pub eigenvalues: Vec<f64>,
}

impl SpectrumStats {
    /// Summaries of the given eigenvalues (any order).
    pub fn from_eigenvalues(eigenvalues: &[f64]) -> Self {
        let mut sorted = eigenvalues.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        Self {
            dim: sorted.len(),
            effective_rank: effective_rank(&sorted),
            pca90: components_for_variance(&sorted, PCA_VARIANCE_FRACTION),
            total_variance: clamped(&sorted).sum(),
            eigenvalues: sorted,
        }
    }

    /// Summaries of a symmetric `d × d` covariance matrix (row-major).
    pub fn from_covariance(cov: &[f64], d: usize) -> Self {
        Self::from_eigenvalues(&crate::linalg::symmetric_eigenvalues(cov, d))
    }

    /// The cumulative explained-variance curve of [`Self::eigenvalues`].
    pub fn curve(&self) -> Vec<f64> {
        explained_variance_curve(&self.eigenvalues)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_eigenvalues_give_their_count() {
        for k in [1usize, 2, 7, 128] {
            let mut l = vec![3.5; k];
            l.extend(vec![0.0; 10]);
            assert!((effective_rank(&l) - k as f64).abs() < 1e-12 * k as f64);
        }
        // 10 equal values: exactly 9 reach 90 % (no rounding push to 10).
        assert_eq!(components_for_variance(&[1.0; 10], 0.9), 9);
        assert_eq!(components_for_variance(&[0.1; 10], 0.9), 9);
        assert_eq!(components_for_variance(&[2.0; 128], 0.9), 116); // ⌈0.9·128⌉ = 116 (115.2)
    }

    #[test]
    fn geometric_spectrum_matches_the_closed_form() {
        // λ_i = r^i, i = 0..k−1: p_i = r^i / S with S = (1 − r^k)/(1 − r), and
        // H = ln S − ln r · E[i], E[i] = r/(1 − r) − k·r^k/(1 − r^k).
        for (r, k) in [(0.5f64, 20usize), (0.9, 128), (0.99, 1280)] {
            let l: Vec<f64> = (0..k).map(|i| r.powi(i as i32)).collect();
            let s = (1.0 - r.powi(k as i32)) / (1.0 - r);
            let mean_i = r / (1.0 - r) - k as f64 * r.powi(k as i32) / (1.0 - r.powi(k as i32));
            let want = (s.ln() - r.ln() * mean_i).exp();
            let got = effective_rank(&l);
            assert!((got - want).abs() < 1e-9 * want, "r={r}: {got} vs {want}");
            // PCA-90: smallest k' with (1 − r^k')/(1 − r^k) ≥ 0.9.
            let want90 = (1..=k)
                .find(|&m| (1.0 - r.powi(m as i32)) / (1.0 - r.powi(k as i32)) >= 0.9 - 1e-12)
                .unwrap();
            assert_eq!(components_for_variance(&l, 0.9), want90);
        }
    }

    #[test]
    fn curve_and_edge_cases() {
        let c = explained_variance_curve(&[1.0, 3.0, 0.0, -1e-18]);
        assert_eq!(c, vec![0.75, 1.0, 1.0, 1.0]);
        assert!(effective_rank(&[0.0, 0.0]).is_nan());
        assert_eq!(components_for_variance(&[0.0; 3], 0.9), 0);
        assert_eq!(explained_variance_curve(&[0.0; 2]), vec![0.0, 0.0]);
        let s = SpectrumStats::from_covariance(&[2.0, 0.0, 0.0, 2.0], 2);
        assert_eq!(s.pca90, 2);
        assert!((s.effective_rank - 2.0).abs() < 1e-12);
        assert_eq!(s.total_variance, 4.0);
    }
}
