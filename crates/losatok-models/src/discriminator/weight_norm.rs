//! A weight-normalised 2-D convolution (`torch.nn.utils.weight_norm(Conv2d(...), dim=0)`).
//!
//! Burn has no weight norm, so it is a parametrisation: the trainable parameters are the
//! magnitude `weight_g` `[out, 1, 1, 1]` and the direction `weight_v` `[out, in, kh, kw]` (the
//! PyTorch key names), and every forward recomputes
//!
//! `w = g · v / ‖v‖`, the norm running over `(in, kh, kw)` for each output channel,
//!
//! so gradients reach `g` and `v` exactly as in PyTorch.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::Distribution;

/// Geometry of a [`WnConv2d`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WnConv2dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel size `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// Symmetric zero padding `[ph, pw]` done by the convolution itself.
    pub padding: [usize; 2],
}

impl WnConv2dConfig {
    /// A `kh × kw` convolution with stride 1 and no padding.
    pub fn new(in_channels: usize, out_channels: usize, kernel: [usize; 2]) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel,
            stride: [1, 1],
            padding: [0, 0],
        }
    }

    /// The same convolution with another stride.
    pub fn with_stride(mut self, stride: [usize; 2]) -> Self {
        self.stride = stride;
        self
    }

    /// The same convolution with symmetric zero padding.
    pub fn with_padding(mut self, padding: [usize; 2]) -> Self {
        self.padding = padding;
        self
    }

    /// Initialise as PyTorch does for `weight_norm(Conv2d(...))`: `v` and the bias uniform in
    /// `±1/√fan_in` (the default Kaiming-uniform conv init), and `g = ‖v‖`, so the initial
    /// effective weight equals `v`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> WnConv2d<B> {
        let [kh, kw] = self.kernel;
        let fan_in = self.in_channels * kh * kw;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let v = Tensor::<B, 4>::random(
            [self.out_channels, self.in_channels, kh, kw],
            Distribution::Uniform(-bound, bound),
            device,
        );
        let g = weight_norm_magnitude(v.clone());
        let bias = Tensor::<B, 1>::random(
            [self.out_channels],
            Distribution::Uniform(-bound, bound),
            device,
        );
        WnConv2d {
            weight_g: Param::from_tensor(g),
            weight_v: Param::from_tensor(v),
            bias: Param::from_tensor(bias),
            stride: self.stride,
            padding: self.padding,
        }
    }
}

/// `‖v‖` over every axis but the first, shaped `[out, 1, 1, 1]` (PyTorch's `norm_except_dim`).
pub fn weight_norm_magnitude<B: Backend>(v: Tensor<B, 4>) -> Tensor<B, 4> {
    v.square().sum_dim(3).sum_dim(2).sum_dim(1).sqrt()
}

/// A weight-normalised `Conv2d` with bias. See the module documentation.
#[derive(Module, Debug)]
pub struct WnConv2d<B: Backend> {
    /// Magnitude `g`, `[out, 1, 1, 1]`.
    pub weight_g: Param<Tensor<B, 4>>,
    /// Direction `v`, `[out, in, kh, kw]`.
    pub weight_v: Param<Tensor<B, 4>>,
    /// Bias, `[out]`.
    pub bias: Param<Tensor<B, 1>>,
    #[module(skip)]
    stride: [usize; 2],
    #[module(skip)]
    padding: [usize; 2],
}

impl<B: Backend> WnConv2d<B> {
    /// The effective kernel `w = g · v / ‖v‖`, `[out, in, kh, kw]` (differentiable to `g`, `v`).
    pub fn weight(&self) -> Tensor<B, 4> {
        let v = self.weight_v.val();
        let norm = weight_norm_magnitude(v.clone());
        v * (self.weight_g.val() / norm)
    }

    /// Convolve `x` `[B, in, H, W]` with the effective kernel.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        conv2d(
            x,
            self.weight(),
            Some(self.bias.val()),
            ConvOptions::new(self.stride, self.padding, [1, 1], 1),
        )
    }

    /// Replace `g` by `‖v‖` (keeping its parameter id): after loading a checkpoint whose
    /// weights were folded (`weight = g·v/‖v‖` stored as `v`), the forward is unchanged.
    pub fn reset_magnitude_from_direction(mut self) -> Self {
        let g = weight_norm_magnitude(self.weight_v.val()).detach();
        let require_grad = self.weight_g.val().is_require_grad();
        let id = self.weight_g.id;
        self.weight_g = Param::initialized(id, g.set_require_grad(require_grad));
        self
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight_v.dims()[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    #[test]
    fn initial_weight_equals_direction_and_gradients_reach_g_and_v() {
        type B = Autodiff<Flex>;
        let dev = Default::default();
        let conv = WnConv2dConfig::new(3, 4, [3, 3]).init::<B>(&dev);
        let d = (conv.weight() - conv.weight_v.val())
            .abs()
            .max()
            .into_scalar();
        assert!(d < 1e-6, "{d}");
        let x = Tensor::<B, 4>::random([2, 3, 5, 6], Distribution::Default, &dev);
        let grads = conv.forward(x).square().sum().backward();
        assert!(conv.weight_g.grad(&grads).is_some());
        assert!(conv.weight_v.grad(&grads).is_some());
        assert!(conv.bias.grad(&grads).is_some());
    }

    #[test]
    fn magnitude_scales_each_output_channel() {
        let dev = Default::default();
        let mut conv = WnConv2dConfig::new(2, 2, [1, 1]).init::<Flex>(&dev);
        conv.weight_v = Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![3.0f32, 4.0, 0.0, 2.0], [2, 2, 1, 1]),
            &dev,
        ));
        conv.weight_g = Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![10.0f32, 1.0], [2, 1, 1, 1]),
            &dev,
        ));
        let w = conv.weight().into_data().to_vec::<f32>().unwrap();
        assert_eq!(w, vec![6.0, 8.0, 0.0, 1.0]);
        let conv = conv.reset_magnitude_from_direction();
        let g = conv.weight_g.val().into_data().to_vec::<f32>().unwrap();
        assert_eq!(g, vec![5.0, 2.0]);
    }
}
