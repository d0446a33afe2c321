//! Stage 2: semantic distillation `L_H`, `L_L` (loss-spec §3.1).
//!
//! The acoustic branch is taught to reproduce the frozen semantic features: `L_H` on the
//! 1280-dimensional encoder features, `L_L` on the 128-dimensional SemBo compressor features.
//! Which of the two count is the checkpoint's `semantic_loss_mode` ([`SemanticLossMode`]).

use burn::prelude::*;
use burn::tensor::Int;

pub use losatok_models::SemanticLossMode;

/// Crop two `[B, T, D]` sequences to their common length `T = min(T_a, T_b)` (leading frames).
pub fn crop_to_common<B: Backend>(
    a: Tensor<B, 3>,
    b: Tensor<B, 3>,
) -> (Tensor<B, 3>, Tensor<B, 3>) {
    let t = a.dims()[1].min(b.dims()[1]);
    (a.narrow(1, 0, t), b.narrow(1, 0, t))
}

/// Linear interpolation along time, `[B, T, D]` → `[B, len, D]`, as
/// `F.interpolate(x.transpose(1, 2), size=len, mode="linear", align_corners=False)`: output frame
/// `i` samples the input at `max((i + ½)·T/len − ½, 0)`, the upper neighbour clamped to `T − 1`.
/// Used to bring the semantic features to the acoustic frame rate when it is above 25 Hz.
///
/// # Panics
/// If `T` or `len` is 0.
pub fn interpolate_time_linear<B: Backend>(x: Tensor<B, 3>, len: usize) -> Tensor<B, 3> {
    let [_, t, _] = x.dims();
    assert!(t > 0 && len > 0, "interpolation needs non-empty sequences");
    if t == len {
        return x;
    }
    let scale = t as f64 / len as f64;
    let mut i0 = Vec::with_capacity(len);
    let mut i1 = Vec::with_capacity(len);
    let mut w1 = Vec::with_capacity(len);
    for i in 0..len {
        // torch computes the source coordinate in the input's float type
        let src = (((i as f32) + 0.5) * scale as f32 - 0.5).max(0.0);
        let lo = (src.floor() as usize).min(t - 1);
        i0.push(lo as i64);
        i1.push((lo + usize::from(lo < t - 1)) as i64);
        w1.push(src - lo as f32);
    }
    let device = x.device();
    let idx = |v: Vec<i64>| Tensor::<B, 1, Int>::from_data(TensorData::new(v, [len]), &device);
    let w1 = Tensor::<B, 1>::from_data(TensorData::new(w1, [len]), &device).reshape([1, len, 1]);
    let w0 = w1.clone().neg().add_scalar(1.0);
    x.clone().select(1, idx(i0)) * w0 + x.select(1, idx(i1)) * w1
}

/// `L_H = mean_{b,t,d} ( acoustic_emb − sg(semantic_emb) )²` over `[B, T, 1280]`, both first
/// cropped to the common length. `acoustic_emb` is the trainable front end → `patch_embed` →
/// encoder `norm`; `semantic_emb` the frozen encoder output `z_h`.
pub fn l_h<B: Backend>(acoustic_emb: Tensor<B, 3>, semantic_emb: Tensor<B, 3>) -> Tensor<B, 1> {
    let (a, s) = crop_to_common(acoustic_emb, semantic_emb);
    (a - s.detach()).square().mean()
}

/// `L_L = mean_{b,t,d} ( fc_a(acoustic_emb) − sg(semantic_emb_low) )²` over `[B, T, 128]`, both
/// first cropped to the common length. `acoustic_emb_low` is `fc_a(acoustic_emb)`;
/// `semantic_emb_low` the frozen SemBo compressor output `z_l`.
pub fn l_l<B: Backend>(
    acoustic_emb_low: Tensor<B, 3>,
    semantic_emb_low: Tensor<B, 3>,
) -> Tensor<B, 1> {
    let (a, s) = crop_to_common(acoustic_emb_low, semantic_emb_low);
    (a - s.detach()).square().mean()
}

/// `L_sem` and the components it was made of.
#[derive(Clone, Debug)]
pub struct SemanticLoss<B: Backend> {
    /// `L_sem` for the mode (`L_H + L_L`, `L_H` or `L_L`).
    pub total: Tensor<B, 1>,
    /// `L_H` if the mode uses it.
    pub high: Option<Tensor<B, 1>>,
    /// `L_L` if the mode uses it.
    pub low: Option<Tensor<B, 1>>,
}

/// `L_sem = L_H + L_L` ([`SemanticLossMode::Both`]), `L_H` (`HighOnly`) or `L_L` (`LowOnly`);
/// see [`l_h`] and [`l_l`]. Only the terms the mode needs are computed. The generator weight
/// (45 in the paper) is the caller's.
pub fn l_sem<B: Backend>(
    mode: SemanticLossMode,
    acoustic_emb: Tensor<B, 3>,
    semantic_emb: Tensor<B, 3>,
    acoustic_emb_low: Tensor<B, 3>,
    semantic_emb_low: Tensor<B, 3>,
) -> SemanticLoss<B> {
    match mode {
        SemanticLossMode::Both => {
            let high = l_h(acoustic_emb, semantic_emb);
            let low = l_l(acoustic_emb_low, semantic_emb_low);
            SemanticLoss {
                total: high.clone() + low.clone(),
                high: Some(high),
                low: Some(low),
            }
        }
        SemanticLossMode::HighOnly => {
            let high = l_h(acoustic_emb, semantic_emb);
            SemanticLoss {
                total: high.clone(),
                high: Some(high),
                low: None,
            }
        }
        SemanticLossMode::LowOnly => {
            let low = l_l(acoustic_emb_low, semantic_emb_low);
            SemanticLoss {
                total: low.clone(),
                high: None,
                low: Some(low),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn interpolation_follows_torch_align_corners_false() {
        let dev = Default::default();
        let x = Tensor::<Flex, 3>::from_data(
            TensorData::new(vec![0.0f32, 1.0, 2.0, 3.0], [1, 4, 1]),
            &dev,
        );
        let y = interpolate_time_linear(x, 8)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(y, vec![0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]);
    }

    #[test]
    fn sequences_are_cropped_to_the_shorter() {
        let dev = Default::default();
        let a = Tensor::<Flex, 3>::ones([2, 7, 3], &dev);
        let b = Tensor::<Flex, 3>::ones([2, 5, 3], &dev);
        let l = l_h(a, b).into_scalar();
        assert_eq!(l, 0.0);
    }
}
