//! X-Codec-2.0 `SpecDiscriminator`, the alternative multi-resolution STFT discriminator
//! (loss-spec §6.1).
//!
//! One sub-discriminator (`NLayerSpecDiscriminator`) per resolution. Each sees
//! `mag = √clamp(re² + im², 1e-7, 1e3)` of an unnormalised, centred, reflect-padded STFT with a
//! periodic Hann window (`win = n_fft`), arranged `[B, 1, F, T]` with `F = n_fft/2 + 1`, and
//! applies six zero-padded weight-normalised convolutions:
//!
//! | layer | kernel | stride | channels | activation |
//! |---|---|---|---|---|
//! | 0 | k₀×k₀ | 2 | 1 → C | LeakyReLU(0.2) |
//! | 1–3 | k₀×k₀ | 2 | doubling, capped at `max_downsample_channels` | LeakyReLU(0.2) |
//! | 4 | k₁×k₁ | 1 | doubling, capped | LeakyReLU(0.2) |
//! | 5 | k₁×k₁ | 1 | → 1 (the logits) | none |
//!
//! with `(k₀, k₁) = kernel_sizes` (5, 3) and padding `(k − 1)/2`. The outputs of layers 0–4
//! (post-activation) are the feature maps. The three downsampling layers are fixed (the
//! reference's `downsample_scales = [2, 2, 2]`), which fixes the PyTorch names
//! `model.disc_{i}.model.layer_{0..4}.0.*` and `…layer_5.*`.

use burn::prelude::*;
use burn::tensor::activation::leaky_relu;
use losatok_dsp::{Stft, StftConfig};
use serde::{Deserialize, Serialize};

use super::weight_norm::{WnConv2d, WnConv2dConfig};
use super::DiscriminatorError;

/// Lower clamp of the STFT power.
pub const SPEC_POWER_FLOOR: f64 = 1e-7;
/// Upper clamp of the STFT power (magnitude capped at √1000).
pub const SPEC_POWER_CEIL: f64 = 1e3;
/// Slope of the LeakyReLU activations.
pub const SPEC_LEAKY_SLOPE: f64 = 0.2;
/// Number of convolutions per sub-discriminator; the last one gives the logits.
pub const SPEC_LAYERS: usize = 6;
/// Stride-2 layers after layer 0 (`downsample_scales = [2, 2, 2]`).
const SPEC_DOWNSAMPLE: usize = 3;

/// Settings of a [`SpecDiscriminator`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecConfig {
    /// FFT size (= window length) of each resolution.
    pub fft_sizes: Vec<usize>,
    /// Hop of each resolution.
    pub hop_sizes: Vec<usize>,
    /// Channels of the first layer.
    pub channels: usize,
    /// Cap of the channel doubling.
    pub max_downsample_channels: usize,
    /// Kernel sizes `(k₀, k₁)`: layers 0–3 use `k₀×k₀`, layers 4–5 `k₁×k₁`; both odd.
    pub kernel_sizes: [usize; 2],
}

impl SpecConfig {
    /// X-Codec-2.0's configuration: FFT sizes 78…2296 (golden-ratio spaced, hop = FFT/2),
    /// 32 channels, cap 512, kernels (5, 3) (18.1 M parameters).
    pub fn official() -> Self {
        Self {
            fft_sizes: vec![78, 126, 206, 334, 542, 876, 1418, 2296],
            hop_sizes: vec![39, 63, 103, 167, 271, 438, 709, 1148],
            channels: 32,
            max_downsample_channels: 512,
            kernel_sizes: [5, 3],
        }
    }

    /// The tiny configuration of the loss fixtures: the same resolutions, 2 channels, cap 8.
    pub fn tiny_fixture() -> Self {
        Self {
            channels: 2,
            max_downsample_channels: 8,
            ..Self::official()
        }
    }

    /// Check the configuration.
    pub fn validate(&self) -> Result<(), DiscriminatorError> {
        let bad = |m: String| Err(DiscriminatorError::InvalidConfig(m));
        if self.fft_sizes.is_empty() || self.fft_sizes.len() != self.hop_sizes.len() {
            return bad(format!(
                "the Spec discriminator needs one hop per FFT size ({} FFT sizes, {} hops)",
                self.fft_sizes.len(),
                self.hop_sizes.len()
            ));
        }
        if self
            .fft_sizes
            .iter()
            .chain(&self.hop_sizes)
            .any(|&v| v == 0)
        {
            return bad("Spec discriminator FFT sizes and hops must be positive".into());
        }
        if self.channels == 0 || self.max_downsample_channels == 0 {
            return bad("Spec discriminator channel counts must be positive".into());
        }
        if self.kernel_sizes.iter().any(|k| k % 2 == 0) {
            return bad(format!(
                "Spec discriminator kernel sizes {:?} must be odd",
                self.kernel_sizes
            ));
        }
        Ok(())
    }

    /// The shortest accepted waveform: the largest STFT's reflect padding needs more than
    /// `n_fft/2` samples (zero-padded convolutions accept any size).
    pub fn min_input_len(&self) -> usize {
        self.fft_sizes
            .iter()
            .zip(&self.hop_sizes)
            .map(|(&n, &h)| StftConfig::new(n, h).min_input_len())
            .max()
            .unwrap_or(0)
    }

    /// Build the discriminator with freshly initialised weights (PyTorch's default conv init
    /// with `g = ‖v‖`; the reference's own N(0, 0.02) write is overwritten by weight norm).
    pub fn init<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<SpecDiscriminator<B>, DiscriminatorError> {
        self.validate()?;
        let stfts = self
            .fft_sizes
            .iter()
            .zip(&self.hop_sizes)
            .map(|(&n, &h)| StftConfig::new(n, h).init(device))
            .collect();
        let model = self
            .fft_sizes
            .iter()
            .map(|_| NLayerSpecDiscriminator::new(self, device))
            .collect();
        Ok(SpecDiscriminator {
            model,
            stfts,
            min_input_len: self.min_input_len(),
        })
    }
}

/// One resolution's convolution stack (`NLayerSpecDiscriminator`).
#[derive(Module, Debug)]
pub struct NLayerSpecDiscriminator<B: Backend> {
    /// The six convolutions (PyTorch: `model.layer_{j}.0` for j < 5, `model.layer_5`).
    pub model: Vec<WnConv2d<B>>,
}

impl<B: Backend> NLayerSpecDiscriminator<B> {
    fn new(cfg: &SpecConfig, device: &B::Device) -> Self {
        let [k0, k1] = cfg.kernel_sizes;
        let conv = |cin: usize, cout: usize, k: usize, s: usize| {
            WnConv2dConfig::new(cin, cout, [k, k])
                .with_stride([s, s])
                .with_padding([(k - 1) / 2, (k - 1) / 2])
                .init(device)
        };
        let mut model = vec![conv(1, cfg.channels, k0, 2)];
        let mut c = cfg.channels;
        for _ in 0..SPEC_DOWNSAMPLE {
            let next = (2 * c).min(cfg.max_downsample_channels);
            model.push(conv(c, next, k0, 2));
            c = next;
        }
        let next = (2 * c).min(cfg.max_downsample_channels);
        model.push(conv(c, next, k1, 1));
        model.push(conv(next, 1, k1, 1));
        Self { model }
    }

    /// `[B, 1, F, T]` → (logits `[B, 1, F', T']`, five post-activation feature maps).
    pub fn forward(&self, x: Tensor<B, 4>) -> (Tensor<B, 4>, Vec<Tensor<B, 4>>) {
        let last = self.model.len().saturating_sub(1);
        let mut fmaps = Vec::with_capacity(last);
        let mut h = x;
        for (j, conv) in self.model.iter().enumerate() {
            h = conv.forward(h);
            if j < last {
                h = leaky_relu(h, SPEC_LEAKY_SLOPE);
                fmaps.push(h.clone());
            }
        }
        (h, fmaps)
    }
}

/// X-Codec-2.0's `SpecDiscriminator` (see the module documentation).
#[derive(Module, Debug)]
pub struct SpecDiscriminator<B: Backend> {
    /// One convolution stack per resolution (PyTorch: `model.disc_{i}`).
    pub model: Vec<NLayerSpecDiscriminator<B>>,
    /// The STFT of each resolution.
    pub stfts: Vec<Stft<B>>,
    min_input_len: usize,
}

impl<B: Backend> SpecDiscriminator<B> {
    /// The shortest accepted waveform (see [`SpecConfig::min_input_len`]).
    pub fn min_input_len(&self) -> usize {
        self.min_input_len
    }

    /// The input `[B, 1, F, T]` of resolution `i`: `√clamp(|X|², 1e-7, 1e3)`.
    pub fn input(&self, i: usize, wave: Tensor<B, 2>) -> Tensor<B, 4> {
        self.stfts[i]
            .forward(wave)
            .magnitude_clamped(SPEC_POWER_FLOOR, Some(SPEC_POWER_CEIL))
            .swap_dims(1, 2)
            .unsqueeze_dim(1)
    }

    /// `wave` `[B, N]` (N ≥ [`Self::min_input_len`], unchecked) → per resolution the logits and
    /// the five feature maps.
    pub(crate) fn forward_unchecked(
        &self,
        wave: Tensor<B, 2>,
    ) -> (Vec<Tensor<B, 4>>, Vec<Vec<Tensor<B, 4>>>) {
        self.model
            .iter()
            .enumerate()
            .map(|(i, disc)| disc.forward(self.input(i, wave.clone())))
            .unzip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_chain_follows_the_reference() {
        let dev = Default::default();
        let d = NLayerSpecDiscriminator::<burn::backend::Flex>::new(&SpecConfig::official(), &dev);
        let outs: Vec<usize> = d.model.iter().map(|c| c.out_channels()).collect();
        assert_eq!(outs, vec![32, 64, 128, 256, 512, 1]);
        let d =
            NLayerSpecDiscriminator::<burn::backend::Flex>::new(&SpecConfig::tiny_fixture(), &dev);
        let outs: Vec<usize> = d.model.iter().map(|c| c.out_channels()).collect();
        assert_eq!(outs, vec![2, 4, 8, 8, 8, 1]);
    }

    #[test]
    fn minimum_length_is_set_by_the_largest_fft() {
        assert_eq!(SpecConfig::official().min_input_len(), 1149);
    }
}
