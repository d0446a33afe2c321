//! Small building blocks shared by the modules.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use crate::cpu_fast_path::{gelu, linear};

/// `Linear → exact GELU → Linear` (transformer MLP, SemBo compressor and restorer).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// First projection.
    pub fc1: Linear<B>,
    /// Second projection.
    pub fc2: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// `d_in → hidden → d_out`, both with bias.
    pub fn new(d_in: usize, hidden: usize, d_out: usize, device: &B::Device) -> Self {
        Self {
            fc1: LinearConfig::new(d_in, hidden).init(device),
            fc2: LinearConfig::new(hidden, d_out).init(device),
        }
    }

    /// `fc2(GELU(fc1(x)))` with the exact (erf) GELU.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        linear(&self.fc2, gelu(linear(&self.fc1, x)))
    }
}

/// Per-channel scale `x·γ` (timm `LayerScale`, Vocos ConvNeXt `gamma`).
#[derive(Module, Debug)]
pub struct LayerScale<B: Backend> {
    /// `[dim]`.
    pub gamma: Param<Tensor<B, 1>>,
}

impl<B: Backend> LayerScale<B> {
    /// Initialised to `init` everywhere.
    pub fn new(dim: usize, init: f64, device: &B::Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::full([dim], init, device)),
        }
    }

    /// Multiply the last dimension by γ.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        x * broadcast_last(self.gamma.val())
    }
}

/// Reshape a `[C]` vector to `[1, …, 1, C]` of rank `D` for broadcasting over the last axis.
pub fn broadcast_last<B: Backend, const D: usize>(v: Tensor<B, 1>) -> Tensor<B, D> {
    let mut shape = [1usize; D];
    shape[D - 1] = v.dims()[0];
    v.reshape(shape)
}

/// LayerNorm over the last axis with the given epsilon (PyTorch default 1e-5; 1e-6 in the
/// transformer and Vocos).
pub fn layer_norm<B: Backend>(dim: usize, eps: f64, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(dim).with_epsilon(eps).init(device)
}
