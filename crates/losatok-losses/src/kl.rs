//! Stage 2: the KL term of the Gaussian latent (loss-spec §3.2).
//!
//! `mu = fc_mu(u)` and `logvar = clamp(fc_logvar(u), −20, 20)` are `[B, T, 128]`; the clamp is
//! the model's ([`losatok_models::latent::clamp_logvar`], re-exported here as
//! [`clamp_logvar`]) and has zero gradient outside the range.

use burn::prelude::*;

pub use losatok_models::latent::{clamp_logvar, LOGVAR_BOUND};

/// `kl_d = −½·(1 + logvar − mu² − exp(logvar))`, per dimension (same shape as the inputs).
pub fn kl_per_dim<B: Backend, const D: usize>(
    mu: Tensor<B, D>,
    logvar: Tensor<B, D>,
) -> Tensor<B, D> {
    (logvar.clone().add_scalar(1.0) - mu.square() - logvar.exp()).mul_scalar(-0.5)
}

/// `L_KL = mean_{b,t} Σ_{d} max(kl_d, c)` with `kl_d` from [`kl_per_dim`], `[B, T, D]` inputs.
///
/// `logvar` is the **clamped** log-variance ([`clamp_logvar`]). With `free_bits = Some(c)`
/// every dimension below `c` counts as the constant `c` (zero gradient), so the KL of a frame
/// is at least `D·c`; `None` applies no floor. The generator weight `λ_KL` is the caller's.
pub fn l_kl<B: Backend>(
    mu: Tensor<B, 3>,
    logvar: Tensor<B, 3>,
    free_bits: Option<f64>,
) -> Tensor<B, 1> {
    let kl = kl_per_dim(mu, logvar);
    let kl = match free_bits {
        Some(c) => kl.clamp_min(c),
        None => kl,
    };
    kl.sum_dim(2).mean()
}

/// The optional log-variance penalty `L_lv = mean_{b,t} Σ_d logvar²` (`exp_use_logvar_loss`;
/// off by default, weight unknown), on the clamped `logvar` `[B, T, D]`.
pub fn l_logvar<B: Backend>(logvar: Tensor<B, 3>) -> Tensor<B, 1> {
    logvar.square().sum_dim(2).mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn standard_normal_has_zero_kl_and_free_bits_floor_it() {
        let dev = Default::default();
        let z = Tensor::<Flex, 3>::zeros([2, 3, 4], &dev);
        assert_eq!(l_kl(z.clone(), z.clone(), None).into_scalar(), 0.0);
        let floored = l_kl(z.clone(), z, Some(0.01)).into_scalar();
        assert!((floored - 0.04).abs() < 1e-7, "{floored}");
    }
}
