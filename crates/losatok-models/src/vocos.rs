//! The decoder (model-spec §6): ConvTranspose1d upsampler, Vocos ConvNeXt backbone and ISTFT head.

use burn::module::Param;
use burn::nn::conv::{Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig};
use burn::nn::{LayerNorm, Linear, LinearConfig, PaddingConfig1d};
use burn::prelude::*;
use losatok_dsp::{Istft, IstftConfig, IstftPadding};

use crate::config::TokenizerConfig;
use crate::cpu_fast_path::{depthwise_conv1d_channels_last, gelu, linear};
use crate::layers::{broadcast_last, layer_norm};

/// LayerNorm epsilon of every Vocos norm.
const LN_EPS: f64 = 1e-6;
/// Upper clip of the head's magnitude, applied after the exponential.
pub const MAX_MAGNITUDE: f64 = 100.0;

/// One ConvNeXt block: depthwise conv k7 → LayerNorm → Linear(C→4C′) → GELU → Linear → ·γ, residual.
#[derive(Module, Debug)]
pub struct ConvNeXtBlock<B: Backend> {
    /// Depthwise `Conv1d(C, C, 7, padding 3, groups C)`.
    pub dwconv: Conv1d<B>,
    /// LayerNorm over channels.
    pub norm: LayerNorm<B>,
    /// `C → intermediate`.
    pub pwconv1: Linear<B>,
    /// `intermediate → C`.
    pub pwconv2: Linear<B>,
    /// Layer scale `[C]`.
    pub gamma: Param<Tensor<B, 1>>,
}

impl<B: Backend> ConvNeXtBlock<B> {
    /// `[B, C, T]` → `[B, C, T]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward_channels_last(x.swap_dims(1, 2))
            .swap_dims(1, 2)
    }

    /// The same block on channels-last activations, `[B, T, C]` → `[B, T, C]` (how the
    /// backbone runs it: every op but the depthwise convolution works on the channel axis).
    pub fn forward_channels_last(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = depthwise_conv1d_channels_last(&self.dwconv, x.clone());
        let h = self.norm.forward(h);
        let h = linear(&self.pwconv2, gelu(linear(&self.pwconv1, h)));
        x + h * broadcast_last::<B, 3>(self.gamma.val())
    }
}

/// Vocos backbone: embedding conv, LayerNorm, ConvNeXt blocks, final LayerNorm.
#[derive(Module, Debug)]
pub struct VocosBackbone<B: Backend> {
    /// `Conv1d(E → C, 7, padding 3)`.
    pub embed: Conv1d<B>,
    /// LayerNorm after the embedding.
    pub norm: LayerNorm<B>,
    /// The blocks.
    pub convnext: Vec<ConvNeXtBlock<B>>,
    /// Final LayerNorm.
    pub final_layer_norm: LayerNorm<B>,
}

impl<B: Backend> VocosBackbone<B> {
    /// `[B, E, T2]` → `[B, T2, C]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self.embed.forward(x);
        let mut x = self.norm.forward(x.swap_dims(1, 2));
        for block in &self.convnext {
            x = block.forward_channels_last(x);
        }
        self.final_layer_norm.forward(x)
    }
}

/// The ISTFT head: `Linear(C → n_fft + 2)` giving log-magnitude and phase, then an inverse STFT
/// with "same" padding.
#[derive(Module, Debug)]
pub struct IstftHead<B: Backend> {
    /// `C → 2·(n_fft/2 + 1)`.
    pub out: Linear<B>,
    /// Inverse STFT (constant).
    pub istft: Istft<B>,
}

/// Intermediate tensors of one decoder pass.
#[derive(Clone, Debug)]
pub struct DecoderTrace<B: Backend> {
    /// Upsampler output, `[B, T2, E]`.
    pub upsampled: Tensor<B, 3>,
    /// Backbone output, `[B, T2, C]`.
    pub backbone_out: Tensor<B, 3>,
    /// Head projection, `[B, T2, n_fft + 2]`.
    pub head_linear: Tensor<B, 3>,
    /// Real part of the spectrum, `[B, T2, n_fft/2 + 1]` (time-major).
    pub spec_real: Tensor<B, 3>,
    /// Imaginary part, `[B, T2, n_fft/2 + 1]`.
    pub spec_imag: Tensor<B, 3>,
}

impl<B: Backend> IstftHead<B> {
    /// ISTFT hop: output samples per decoder frame.
    pub fn istft_hop(&self) -> usize {
        self.istft.hop()
    }

    /// `[B, T2, C]` → waveform `[B, hop·T2]`, with the complex spectrum
    /// `S = min(exp(logmag), 100)·(cos φ + i·sin φ)`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 2> {
        self.forward_traced(x).0
    }

    /// The waveform, the head projection and the spectrum (real, imaginary; time-major).
    pub fn forward_traced(
        &self,
        x: Tensor<B, 3>,
    ) -> (Tensor<B, 2>, Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>) {
        let h = linear(&self.out, x);
        let k = h.dims()[2] / 2;
        let mag = h.clone().narrow(2, 0, k).exp().clamp_max(MAX_MAGNITUDE);
        let phase = h.clone().narrow(2, k, k);
        let re = mag.clone() * phase.clone().cos();
        let im = mag * phase.sin();
        (self.istft.forward(re.clone(), im.clone()), h, re, im)
    }
}

/// The decoder: `upsampler` and `decoder` of the DashengTokenizer.
#[derive(Module, Debug)]
pub struct VocosDecoder<B: Backend> {
    /// Backbone.
    pub backbone: VocosBackbone<B>,
    /// Head.
    pub head: IstftHead<B>,
}

impl TokenizerConfig {
    /// The token upsampler `ConvTranspose1d(D → E, kernel = stride = upsample_tokens)`.
    pub fn init_upsampler<B: Backend>(&self, device: &B::Device) -> ConvTranspose1d<B> {
        ConvTranspose1dConfig::new([self.decoder_dim, self.embed_dim], self.upsample_tokens)
            .with_stride(self.upsample_tokens)
            .init(device)
    }

    /// The Vocos decoder with fresh weights (γ = 1/depth as in Vocos).
    pub fn init_decoder<B: Backend>(&self, device: &B::Device) -> VocosDecoder<B> {
        let c = self.decoder_embed_dim;
        let convnext = (0..self.decoder_depth)
            .map(|_| ConvNeXtBlock {
                dwconv: Conv1dConfig::new(c, c, 7)
                    .with_groups(c)
                    .with_padding(PaddingConfig1d::Explicit(3, 3))
                    .init(device),
                norm: layer_norm(c, LN_EPS, device),
                pwconv1: LinearConfig::new(c, self.decoder_intermediate_size).init(device),
                pwconv2: LinearConfig::new(self.decoder_intermediate_size, c).init(device),
                gamma: Param::from_tensor(Tensor::full(
                    [c],
                    1.0 / self.decoder_depth as f64,
                    device,
                )),
            })
            .collect();
        VocosDecoder {
            backbone: VocosBackbone {
                embed: Conv1dConfig::new(self.embed_dim, c, 7)
                    .with_padding(PaddingConfig1d::Explicit(3, 3))
                    .init(device),
                norm: layer_norm(c, LN_EPS, device),
                convnext,
                final_layer_norm: layer_norm(c, LN_EPS, device),
            },
            head: IstftHead {
                out: LinearConfig::new(c, self.istft_n_fft + 2).init(device),
                istft: IstftConfig::new(self.istft_n_fft, self.istft_hop, IstftPadding::Same)
                    .init(device),
            },
        }
    }
}

impl<B: Backend> VocosDecoder<B> {
    /// Upsampled tokens `[B, E, T2]` → waveform `[B, hop·T2]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 2> {
        self.head.forward(self.backbone.forward(x))
    }
}
