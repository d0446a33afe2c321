//! The Gaussian latent (model-spec §5): clamped log-variance and the reparameterisation.

use burn::prelude::*;

/// Bound of the log-variance clamp.
pub const LOGVAR_BOUND: f64 = 20.0;

/// `logvar = clamp(fc_logvar(u), −20, 20)`; zero gradient outside the range.
pub fn clamp_logvar<B: Backend, const D: usize>(raw: Tensor<B, D>) -> Tensor<B, D> {
    raw.clamp(-LOGVAR_BOUND, LOGVAR_BOUND)
}

/// The reparameterisation `z = μ + ε·exp(½·logvar)`, with `ε ~ N(0, I)` given.
pub fn reparameterize<B: Backend, const D: usize>(
    mu: Tensor<B, D>,
    logvar: Tensor<B, D>,
    eps: Tensor<B, D>,
) -> Tensor<B, D> {
    mu + eps * logvar.mul_scalar(0.5).exp()
}

/// Deterministic standard-normal noise for `--sample --seed`: element `i` of the sequence for
/// `seed`, for `i` in `start..start + len`. Generated on the host (SplitMix64 as a counter-based
/// generator and the Box–Muller transform in f64), so a seed gives the same latent on every
/// backend and platform, and any window of the sequence costs only its own length (chunked
/// encoding samples exactly what whole-file encoding samples).
pub fn standard_normal(seed: u64, start: usize, len: usize) -> Vec<f32> {
    // SplitMix64 output number `k` (k ≥ 1): a bijective mix of seed + k·γ.
    let mix = |k: u64| {
        let mut z = seed.wrapping_add(k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    // uniform in (0, 1]: 53 random bits, never 0 (log(0) is undefined)
    let uniform = |k: u64| ((mix(k) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    (start..start + len)
        .map(|i| {
            let pair = (i / 2) as u64;
            let (u1, u2) = (uniform(2 * pair + 1), uniform(2 * pair + 2));
            let r = (-2.0 * u1.ln()).sqrt();
            let a = 2.0 * std::f64::consts::PI * u2;
            (if i % 2 == 0 { r * a.cos() } else { r * a.sin() }) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_noise_is_deterministic_and_standard() {
        let a = standard_normal(7, 0, 100_000);
        assert_eq!(a, standard_normal(7, 0, 100_000));
        assert_ne!(a[..10], standard_normal(8, 0, 10)[..]);
        // any window equals the same slice of the whole sequence
        assert_eq!(standard_normal(7, 12_345, 777), a[12_345..12_345 + 777]);
        assert_eq!(standard_normal(7, 3, 1), a[3..4]);
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.02, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
    }
}
