//! The acoustic branch (model-spec §4): the DashengTokenizer encoder with its transformer removed,
//! i.e. a Vocos log-magnitude mel, a Conv2d patch embedding over all 128 mel bands, and a
//! LayerNorm with ε 1e-5 (the only 1e-5 LayerNorm of the model).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::LayerNorm;
use burn::prelude::*;
use losatok_dsp::{LogMagnitudeMel, LogMagnitudeMelConfig};

use crate::config::TokenizerConfig;
use crate::layers::layer_norm;

/// `dasheng_tokenizer.encoder`.
#[derive(Module, Debug)]
pub struct AcousticEncoder<B: Backend> {
    /// `ln(max(|X|ᵀ·W, 1e-7))`, n_fft 1024, hop 160; the filterbank is the checkpoint buffer
    /// `front_end.mel_spec.mel_scale.fb` when one is loaded.
    pub front_end: LogMagnitudeMel<B>,
    /// `Conv2d(1 → E, kernel = stride = (n_mels, patch_stride_time))`.
    pub patch_embed: Conv2d<B>,
    /// LayerNorm(E), ε 1e-5.
    pub norm: LayerNorm<B>,
    patch_time: usize,
}

impl TokenizerConfig {
    /// The acoustic branch with fresh weights.
    pub fn init_acoustic<B: Backend>(&self, device: &B::Device) -> AcousticEncoder<B> {
        let front = LogMagnitudeMelConfig {
            hop: self.hop_length,
            n_mels: self.n_mels_patch,
            ..LogMagnitudeMelConfig::vocos()
        };
        AcousticEncoder {
            front_end: front.init(device),
            patch_embed: Conv2dConfig::new(
                [1, self.embed_dim],
                [self.n_mels_patch, self.patch_stride_time],
            )
            .with_stride([self.n_mels_patch, self.patch_stride_time])
            .init(device),
            norm: layer_norm(self.embed_dim, 1e-5, device),
            patch_time: self.patch_stride_time,
        }
    }
}

impl<B: Backend> AcousticEncoder<B> {
    /// `[B, N]` → `acoustic_emb` `[B, t, E]`.
    pub fn forward(&self, wav: Tensor<B, 2>) -> Tensor<B, 3> {
        self.forward_traced(wav).2
    }

    /// The log-mel `[B, n_mels, T]`, the patch tokens before the norm `[B, t, E]`, and
    /// `acoustic_emb` `[B, t, E]`.
    pub fn forward_traced(&self, wav: Tensor<B, 2>) -> (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>) {
        let mel = self.front_end.forward(wav);
        let (tokens, emb) = self.tokens_from_logmel(mel.clone());
        (mel, tokens, emb)
    }

    /// Patch tokens before the norm and `acoustic_emb` (`[B, t, E]` each) from a log-mel
    /// `[B, n_mels, T]`; the trailing `T mod patch_stride_time` frames are dropped.
    pub fn tokens_from_logmel(&self, mel: Tensor<B, 3>) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let [b, _, frames] = mel.dims();
        let t = frames / self.patch_time;
        let x = self.patch_embed.forward(
            mel.clone()
                .narrow(2, 0, t * self.patch_time)
                .unsqueeze_dim(1),
        );
        let e = x.dims()[1];
        let tokens = x.reshape([b, e, t]).swap_dims(1, 2);
        (tokens.clone(), self.norm.forward(tokens))
    }

    /// Token time stride in mel frames.
    pub fn patch_time(&self) -> usize {
        self.patch_time
    }
}
