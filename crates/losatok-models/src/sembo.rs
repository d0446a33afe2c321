//! SemBo, the semantic bottleneck (model-spec §3): a compressor `C: E → H → D` and a restorer
//! `R: D → H → E`, each `Linear → GELU → Linear`. Checkpoint names: `downsample.{0,2}`,
//! `upsample.{0,2}` (the `fc1`/`fc2` of [`Mlp`]).

use burn::prelude::*;

use crate::layers::Mlp;

/// The compressor and the restorer.
#[derive(Module, Debug)]
pub struct SemBo<B: Backend> {
    /// `C`: high (E) → low (D).
    pub downsample: Mlp<B>,
    /// `R`: low (D) → high (E); used only by the stage-1 reconstruction loss.
    pub upsample: Mlp<B>,
}

impl<B: Backend> SemBo<B> {
    /// Fresh weights for `E = high`, `D = low`, hidden width `hidden`.
    pub fn new(high: usize, hidden: usize, low: usize, device: &B::Device) -> Self {
        Self {
            downsample: Mlp::new(high, hidden, low, device),
            upsample: Mlp::new(low, hidden, high, device),
        }
    }

    /// `z_l = C(z_h)`: `[B, t, E]` → `semantic_emb_low` `[B, t, D]`.
    pub fn compress(&self, z_h: Tensor<B, 3>) -> Tensor<B, 3> {
        self.downsample.forward(z_h)
    }

    /// `ẑ_h = R(z_l)`: `[B, t, D]` → `[B, t, E]`.
    pub fn restore(&self, z_l: Tensor<B, 3>) -> Tensor<B, 3> {
        self.upsample.forward(z_l)
    }
}
