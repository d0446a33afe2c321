//! Stage 2: adversarial and feature-matching losses (loss-spec §7).
//!
//! `D_k(·)` are the logits of sub-discriminator `k` (K = 6 for the MFD, 8 for the Spec
//! discriminator) and `f_{k,l}(·)` its feature maps (L = 6 / 5). Every "mean" runs over all
//! elements of one logit or feature-map tensor. The defaults ([`GanLossConfig::default`]) are the
//! spec's recommendation for LoSATok: hinge losses averaged over sub-discriminators and the
//! Vocos feature-matching reduction, which is the balance its weights (mel 45, FM 1, adv 1)
//! come from.
//!
//! Gradient isolation is the caller's: the discriminator loss takes the logits of `D(sg(x̂))`
//! (the fake waveform detached *before* the discriminator), and the generator losses are
//! back-propagated through a discriminator whose parameters take no gradient
//! (`d.clone().no_grad()`), so only the generator is updated by them.

use burn::prelude::*;
use burn::tensor::activation::relu;

/// Form of the discriminator objective.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DLoss {
    /// `mean relu(1 − D(x)) + mean relu(1 + D(x̂))` (the paper; X-Codec `HingeDLoss`, Vocos).
    #[default]
    Hinge,
    /// `mean (1 − D(x))² + mean D(x̂)²` (DAC, X-Codec v1 and 2).
    Lsgan,
}

/// Form of the generator's adversarial objective.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GLoss {
    /// `mean relu(1 − D(x̂))` (the paper; X-Codec `HingeGLoss`, Vocos).
    #[default]
    Hinge,
    /// `−mean D(x̂)` (MelGAN / EnCodec style).
    NegMean,
    /// `mean (1 − D(x̂))²`.
    Lsgan,
}

/// How per-sub-discriminator terms are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// `(1/K) Σ_k` (Vocos, X-Codec v1; recommended).
    #[default]
    Mean,
    /// `Σ_k` (DAC, X-Codec-2.0).
    Sum,
}

/// How feature-matching terms `mean|f_{k,l}(x̂) − sg(f_{k,l}(x))|` are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FmReduction {
    /// `(1/K) Σ_k Σ_l` (Vocos; recommended).
    #[default]
    SumLayersMeanDiscs,
    /// `(1/(K·L)) Σ_k Σ_l`, the mean over all maps (X-Codec v1 `FeatureMatchLoss`).
    MeanItems,
    /// `Σ_k Σ_l` (DAC, X-Codec-2.0).
    Sum,
}

/// The GAN loss forms and reductions of a training run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GanLossConfig {
    /// Discriminator objective.
    pub d_loss: DLoss,
    /// Generator adversarial objective.
    pub g_loss: GLoss,
    /// Reduction over sub-discriminators of both.
    pub reduction: Reduction,
    /// Feature-matching reduction.
    pub fm_reduction: FmReduction,
}

impl GanLossConfig {
    /// [`l_d`] with these settings.
    pub fn l_d<B: Backend, const D: usize>(
        &self,
        real_logits: &[Tensor<B, D>],
        fake_logits: &[Tensor<B, D>],
    ) -> Tensor<B, 1> {
        l_d(real_logits, fake_logits, self.d_loss, self.reduction)
    }

    /// [`l_adv`] with these settings.
    pub fn l_adv<B: Backend, const D: usize>(&self, fake_logits: &[Tensor<B, D>]) -> Tensor<B, 1> {
        l_adv(fake_logits, self.g_loss, self.reduction)
    }

    /// [`l_fm`] with these settings.
    pub fn l_fm<B: Backend, const D: usize>(
        &self,
        real_fmaps: &[Vec<Tensor<B, D>>],
        fake_fmaps: &[Vec<Tensor<B, D>>],
    ) -> Tensor<B, 1> {
        l_fm(real_fmaps, fake_fmaps, self.fm_reduction)
    }
}

fn reduce<B: Backend>(terms: Vec<Tensor<B, 1>>, reduction: Reduction, what: &str) -> Tensor<B, 1> {
    let k = terms.len();
    let sum = terms
        .into_iter()
        .reduce(|a, b| a + b)
        .unwrap_or_else(|| panic!("{what}: no sub-discriminator outputs"));
    match reduction {
        Reduction::Mean => sum.div_scalar(k as f64),
        Reduction::Sum => sum,
    }
}

/// The discriminator loss
///
/// * hinge: `L_D = (1/K) Σ_k [ mean relu(1 − D_k(x)) + mean relu(1 + D_k(sg(x̂))) ]`,
/// * LSGAN: `L_D = (1/K) Σ_k [ mean (1 − D_k(x))² + mean D_k(sg(x̂))² ]`,
///
/// (`Σ_k` without `1/K` for [`Reduction::Sum`]). `fake_logits` must come from the detached
/// generator output.
///
/// # Panics
/// If the lists are empty or of different lengths.
pub fn l_d<B: Backend, const D: usize>(
    real_logits: &[Tensor<B, D>],
    fake_logits: &[Tensor<B, D>],
    form: DLoss,
    reduction: Reduction,
) -> Tensor<B, 1> {
    assert_eq!(
        real_logits.len(),
        fake_logits.len(),
        "l_d: real and fake logits of different sub-discriminator counts"
    );
    let terms = real_logits
        .iter()
        .zip(fake_logits)
        .map(|(r, f)| match form {
            DLoss::Hinge => {
                relu(r.clone().neg().add_scalar(1.0)).mean()
                    + relu(f.clone().add_scalar(1.0)).mean()
            }
            DLoss::Lsgan => {
                r.clone().neg().add_scalar(1.0).square().mean() + f.clone().square().mean()
            }
        })
        .collect();
    reduce(terms, reduction, "l_d")
}

/// The generator's adversarial loss
///
/// * hinge: `L_adv = (1/K) Σ_k mean relu(1 − D_k(x̂))`,
/// * negative mean: `L_adv = (1/K) Σ_k −mean D_k(x̂)`,
/// * LSGAN: `L_adv = (1/K) Σ_k mean (1 − D_k(x̂))²`,
///
/// (`Σ_k` without `1/K` for [`Reduction::Sum`]).
///
/// # Panics
/// If the list is empty.
pub fn l_adv<B: Backend, const D: usize>(
    fake_logits: &[Tensor<B, D>],
    form: GLoss,
    reduction: Reduction,
) -> Tensor<B, 1> {
    let terms = fake_logits
        .iter()
        .map(|f| match form {
            GLoss::Hinge => relu(f.clone().neg().add_scalar(1.0)).mean(),
            GLoss::NegMean => f.clone().mean().neg(),
            GLoss::Lsgan => f.clone().neg().add_scalar(1.0).square().mean(),
        })
        .collect();
    reduce(terms, reduction, "l_adv")
}

/// The feature-matching loss, an unnormalised L1 between feature maps with the real ones
/// detached:
///
/// * Vocos: `L_fm = (1/K) Σ_k Σ_l mean | f_{k,l}(x̂) − sg(f_{k,l}(x)) |`,
/// * X-Codec v1: `(1/(K·L)) Σ_k Σ_l mean |…|` (the mean over all maps),
/// * DAC / X-Codec-2.0: `Σ_k Σ_l mean |…|`.
///
/// # Panics
/// If the lists are empty or their shapes differ.
pub fn l_fm<B: Backend, const D: usize>(
    real_fmaps: &[Vec<Tensor<B, D>>],
    fake_fmaps: &[Vec<Tensor<B, D>>],
    reduction: FmReduction,
) -> Tensor<B, 1> {
    assert_eq!(
        real_fmaps.len(),
        fake_fmaps.len(),
        "l_fm: real and fake feature maps of different sub-discriminator counts"
    );
    let k = real_fmaps.len();
    let mut items = 0usize;
    let per_disc: Vec<Tensor<B, 1>> = real_fmaps
        .iter()
        .zip(fake_fmaps)
        .map(|(real, fake)| {
            assert_eq!(real.len(), fake.len(), "l_fm: different feature-map counts");
            items += real.len();
            real.iter()
                .zip(fake)
                .map(|(r, f)| (f.clone() - r.clone().detach()).abs().mean())
                .reduce(|a, b| a + b)
                .unwrap_or_else(|| panic!("l_fm: a sub-discriminator without feature maps"))
        })
        .collect();
    let sum = reduce(per_disc, Reduction::Sum, "l_fm");
    match reduction {
        FmReduction::SumLayersMeanDiscs => sum.div_scalar(k as f64),
        FmReduction::MeanItems => sum.div_scalar(items as f64),
        FmReduction::Sum => sum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn t(v: Vec<f32>) -> Tensor<Flex, 1> {
        let n = v.len();
        Tensor::from_data(TensorData::new(v, [n]), &Default::default())
    }

    #[test]
    fn hinge_losses_by_hand() {
        let real = [t(vec![2.0, 0.5]), t(vec![-1.0])];
        let fake = [t(vec![-2.0, 0.0]), t(vec![1.0])];
        // k0: mean(0, 0.5) + mean(0, 1) = 0.25 + 0.5; k1: 2 + 2
        let d = l_d(&real, &fake, DLoss::Hinge, Reduction::Mean).into_scalar();
        assert!((d - (0.75 + 4.0) / 2.0).abs() < 1e-6, "{d}");
        // k0: mean(3, 1) = 2; k1: 0
        let g = l_adv(&fake, GLoss::Hinge, Reduction::Sum).into_scalar();
        assert!((g - 2.0).abs() < 1e-6, "{g}");
        let g = l_adv(&fake, GLoss::NegMean, Reduction::Mean).into_scalar();
        assert!((g - 0.0).abs() < 1e-6, "{g}");
    }

    #[test]
    fn feature_matching_reductions_differ_by_k_and_l() {
        let real = vec![vec![t(vec![0.0]), t(vec![0.0])]; 3];
        let fake = vec![vec![t(vec![1.0]), t(vec![2.0])]; 3];
        let v = |r| l_fm(&real, &fake, r).into_scalar();
        assert!((v(FmReduction::Sum) - 9.0).abs() < 1e-6);
        assert!((v(FmReduction::SumLayersMeanDiscs) - 3.0).abs() < 1e-6);
        assert!((v(FmReduction::MeanItems) - 1.5).abs() < 1e-6);
    }
}
