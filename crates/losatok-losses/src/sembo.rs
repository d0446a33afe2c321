//! Stage 1: the SemBo losses (loss-spec §2).
//!
//! `z_h` `[B, T, 1280]` is the frozen encoder output, `z_l = C(z_h)` `[B, T, 128]` the compressed
//! features and `ẑ_h = R(z_l)` `[B, T, 1280]` the restored ones. `n(x) = x / max(‖x‖₂, 1e-12)`
//! normalises each frame vector (last axis), as `F.normalize`.

use burn::prelude::*;

/// Floor of the norm in [`l2_normalize`] (`F.normalize`'s `eps`).
pub const NORMALIZE_EPS: f64 = 1e-12;

/// The paper's weight on `L_recon` (the released code's `total_loss` uses 1).
pub const LAMBDA_RECON: f64 = 1e3;

/// `n(x) = x / max(‖x‖₂, 1e-12)` along the last axis.
///
/// Computed as `x / √max(Σx², 1e-24)`: the same value, and a zero gradient (not NaN) for an
/// all-zero frame, as torch's norm backward gives.
pub fn l2_normalize<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let norm = x
        .clone()
        .square()
        .sum_dim(D - 1)
        .clamp_min(NORMALIZE_EPS * NORMALIZE_EPS)
        .sqrt();
    x / norm
}

/// The cosine-similarity (time-relation) matrix `G = n(x)·n(x)ᵀ`, `[B, T, D]` → `[B, T, T]`.
pub fn cosine_gram<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    let n = l2_normalize(x);
    n.clone().matmul(n.swap_dims(1, 2))
}

/// `L_recon = mean_{b,t,d} ( n(ẑ_h) − sg(n(z_h)) )²`: a mean squared error over `B·T·1280`
/// elements (not an L2 norm).
pub fn l_recon<B: Backend>(zh_hat: Tensor<B, 3>, z_h: Tensor<B, 3>) -> Tensor<B, 1> {
    (l2_normalize(zh_hat) - l2_normalize(z_h).detach())
        .square()
        .mean()
}

/// `L_tr = mean_{b,i,j} ( G_l − sg(G_h) )²` with `G_l = n(z_l)·n(z_l)ᵀ` and
/// `G_h = n(z_h)·n(z_h)ᵀ` (`[B, T, T]`): a mean squared error over `B·T·T` elements.
pub fn l_tr<B: Backend>(z_l: Tensor<B, 3>, z_h: Tensor<B, 3>) -> Tensor<B, 1> {
    (cosine_gram(z_l) - cosine_gram(z_h).detach())
        .square()
        .mean()
}

/// The stage-1 objective and its components.
#[derive(Clone, Debug)]
pub struct SemboLoss<B: Backend> {
    /// `λ_recon·L_recon + L_tr`.
    pub total: Tensor<B, 1>,
    /// `L_recon`.
    pub recon: Tensor<B, 1>,
    /// `L_tr`.
    pub tr: Tensor<B, 1>,
}

/// `L_SemBo = λ_recon·L_recon(ẑ_h, z_h) + L_tr(z_l, z_h)` ([`l_recon`], [`l_tr`]).
///
/// `λ_recon` = [`LAMBDA_RECON`] (1e3) is the paper's training loss; `λ_recon = 1` reproduces the
/// released code's `total_loss`.
pub fn sembo_loss<B: Backend>(
    z_h: Tensor<B, 3>,
    zh_hat: Tensor<B, 3>,
    z_l: Tensor<B, 3>,
    lambda_recon: f64,
) -> SemboLoss<B> {
    let recon = l_recon(zh_hat, z_h.clone());
    let tr = l_tr(z_l, z_h);
    SemboLoss {
        total: recon.clone().mul_scalar(lambda_recon) + tr.clone(),
        recon,
        tr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn normalised_frames_have_unit_norm_and_zero_stays_zero() {
        let dev = Default::default();
        let x = Tensor::<Flex, 3>::from_data(
            TensorData::new(vec![3.0f32, 4.0, 0.0, 0.0], [1, 2, 2]),
            &dev,
        );
        let n = l2_normalize(x).into_data().to_vec::<f32>().unwrap();
        assert_eq!(n, vec![0.6, 0.8, 0.0, 0.0]);
    }

    #[test]
    fn identical_features_give_zero_loss() {
        let dev = Default::default();
        let z = Tensor::<Flex, 3>::random([2, 5, 8], burn::tensor::Distribution::Default, &dev);
        let l = sembo_loss(z.clone(), z.clone().mul_scalar(3.0), z, LAMBDA_RECON);
        assert!(l.total.into_scalar().abs() < 1e-10);
    }
}
