//! The LoSATok model (the reference's `AudioVAE`), composed from its branches, and the feature
//! set it produces. Field names mirror the checkpoint: `dasheng_tokenizer.{encoder, upsampler,
//! decoder}`, `semantic_encoder.{encoder, bottleneck}`, `fc_a`, `fc_mu`, `fc_logvar`.

use burn::nn::conv::ConvTranspose1d;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use crate::acoustic::AcousticEncoder;
use crate::config::LosatokConfig;
use crate::dasheng::DashengEncoder;
use crate::latent::{clamp_logvar, reparameterize, standard_normal};
use crate::sembo::SemBo;
use crate::vocos::{DecoderTrace, VocosDecoder};

/// The DashengTokenizer without its transformer: acoustic encoder, token upsampler, decoder.
#[derive(Module, Debug)]
pub struct DashengTokenizer<B: Backend> {
    /// Acoustic branch.
    pub encoder: AcousticEncoder<B>,
    /// `ConvTranspose1d(D → E)`.
    pub upsampler: ConvTranspose1d<B>,
    /// Vocos backbone and ISTFT head.
    pub decoder: VocosDecoder<B>,
}

impl<B: Backend> DashengTokenizer<B> {
    /// `z` `[B, t, D]` → waveform `[B, L]`, `L = upsample·hop·t`.
    pub fn decode(&self, z: Tensor<B, 3>) -> Tensor<B, 2> {
        self.decoder
            .forward(self.upsampler.forward(z.swap_dims(1, 2)))
    }
}

/// The frozen semantic encoder: MiDashengLM audio encoder and SemBo (`semantic_encoder.pth`).
#[derive(Module, Debug)]
pub struct SemanticEncoder<B: Backend> {
    /// MiDashengLM audio encoder.
    pub encoder: DashengEncoder<B>,
    /// SemBo.
    pub bottleneck: SemBo<B>,
}

impl<B: Backend> SemanticEncoder<B> {
    /// `[B, N]` → (`semantic_emb` `[B, t, E]`, `semantic_emb_low` `[B, t, D]`).
    pub fn forward(&self, wav: Tensor<B, 2>) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let high = self.encoder.forward(wav);
        let low = self.bottleneck.compress(high.clone());
        (high, low)
    }
}

/// The encoder-side embeddings (`AudioVAE.encoder_forward`), each `[B, t, ·]`.
#[derive(Clone, Debug)]
pub struct Embeddings<B: Backend> {
    /// Frozen MiDashengLM features, `[B, t, E]`.
    pub semantic_emb: Tensor<B, 3>,
    /// Acoustic branch output, `[B, t, E]`.
    pub acoustic_emb: Tensor<B, 3>,
    /// `semantic_emb + acoustic_emb` (returned, not used for decoding).
    pub unified_emb: Tensor<B, 3>,
    /// SemBo compressor output, `[B, t, D]`.
    pub semantic_emb_low: Tensor<B, 3>,
    /// `fc_a(acoustic_emb)`, `[B, t, D]`.
    pub acoustic_emb_low: Tensor<B, 3>,
    /// `acoustic_emb_low + semantic_emb_low`, `[B, t, D]`.
    pub unified_emb_low: Tensor<B, 3>,
}

/// The nine features of the reference `encode`, each `[B, t, ·]`.
#[derive(Clone, Debug)]
pub struct Features<B: Backend> {
    /// The latent: `mu`, or `mu + ε·σ` when sampling.
    pub z: Tensor<B, 3>,
    /// Gaussian mean `fc_mu(unified_emb_low)`.
    pub mu: Tensor<B, 3>,
    /// `clamp(fc_logvar(unified_emb_low), −20, 20)`.
    pub logvar: Tensor<B, 3>,
    /// See [`Embeddings::semantic_emb`].
    pub semantic_emb: Tensor<B, 3>,
    /// See [`Embeddings::acoustic_emb`].
    pub acoustic_emb: Tensor<B, 3>,
    /// See [`Embeddings::unified_emb`].
    pub unified_emb: Tensor<B, 3>,
    /// See [`Embeddings::semantic_emb_low`].
    pub semantic_emb_low: Tensor<B, 3>,
    /// See [`Embeddings::acoustic_emb_low`].
    pub acoustic_emb_low: Tensor<B, 3>,
    /// See [`Embeddings::unified_emb_low`].
    pub unified_emb_low: Tensor<B, 3>,
}

impl<B: Backend> Features<B> {
    /// The names of the features, in the reference's order.
    pub const NAMES: [&'static str; 9] = [
        "z",
        "mu",
        "logvar",
        "semantic_emb",
        "acoustic_emb",
        "unified_emb",
        "semantic_emb_low",
        "acoustic_emb_low",
        "unified_emb_low",
    ];

    /// `(name, tensor)` pairs in the reference's order.
    pub fn named(&self) -> [(&'static str, &Tensor<B, 3>); 9] {
        [
            ("z", &self.z),
            ("mu", &self.mu),
            ("logvar", &self.logvar),
            ("semantic_emb", &self.semantic_emb),
            ("acoustic_emb", &self.acoustic_emb),
            ("unified_emb", &self.unified_emb),
            ("semantic_emb_low", &self.semantic_emb_low),
            ("acoustic_emb_low", &self.acoustic_emb_low),
            ("unified_emb_low", &self.unified_emb_low),
        ]
    }

    /// Number of latent frames `t`.
    pub fn num_frames(&self) -> usize {
        self.z.dims()[1]
    }
}

/// How `z` is taken from the Gaussian.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sampling {
    /// `z = mu` (the reference default).
    #[default]
    Mean,
    /// `z = mu + ε·exp(½·logvar)` with `ε` from [`standard_normal`] seeded by this value.
    Seeded(u64),
}

/// The LoSATok model.
#[derive(Module, Debug)]
pub struct Losatok<B: Backend> {
    /// Acoustic encoder, upsampler and decoder.
    pub dasheng_tokenizer: DashengTokenizer<B>,
    /// Frozen MiDashengLM encoder and SemBo.
    pub semantic_encoder: SemanticEncoder<B>,
    /// `E → D`.
    pub fc_a: Linear<B>,
    /// `D → D`.
    pub fc_mu: Linear<B>,
    /// `D → D`.
    pub fc_logvar: Linear<B>,
    semantic_upsample: usize,
}

impl LosatokConfig {
    /// The whole model with fresh weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Losatok<B> {
        let t = &self.tokenizer;
        Losatok {
            dasheng_tokenizer: DashengTokenizer {
                encoder: t.init_acoustic(device),
                upsampler: t.init_upsampler(device),
                decoder: t.init_decoder(device),
            },
            semantic_encoder: SemanticEncoder {
                encoder: self.audio_encoder.init(device),
                bottleneck: SemBo::new(t.embed_dim, self.sembo_hidden_dim, t.decoder_dim, device),
            },
            fc_a: LinearConfig::new(t.embed_dim, t.decoder_dim).init(device),
            fc_mu: LinearConfig::new(t.decoder_dim, t.decoder_dim).init(device),
            fc_logvar: LinearConfig::new(t.decoder_dim, t.decoder_dim).init(device),
            semantic_upsample: self.semantic_upsample_factor(),
        }
    }
}

impl<B: Backend> Losatok<B> {
    /// `AudioVAE.encoder_forward`: both branches, fused at the common length.
    pub fn embeddings(&self, wav: Tensor<B, 2>) -> Embeddings<B> {
        let (semantic_emb, semantic_emb_low) = self.semantic_encoder.forward(wav.clone());
        let acoustic_emb = self.dasheng_tokenizer.encoder.forward(wav);
        self.fuse(semantic_emb, semantic_emb_low, acoustic_emb)
    }

    /// Fusion of given branch outputs: upsample the semantic features to the frame rate, crop
    /// both to the common length, `unified = semantic + acoustic`, `acoustic_low = fc_a(acoustic)`,
    /// `unified_low = acoustic_low + semantic_low`.
    pub fn fuse(
        &self,
        semantic_emb: Tensor<B, 3>,
        semantic_emb_low: Tensor<B, 3>,
        acoustic_emb: Tensor<B, 3>,
    ) -> Embeddings<B> {
        let (semantic_emb, semantic_emb_low) = if self.semantic_upsample > 1 {
            let n = semantic_emb.dims()[1] * self.semantic_upsample;
            (
                upsample_linear_time(semantic_emb, n),
                upsample_linear_time(semantic_emb_low, n),
            )
        } else {
            (semantic_emb, semantic_emb_low)
        };
        let n = semantic_emb.dims()[1].min(acoustic_emb.dims()[1]);
        let crop = |x: Tensor<B, 3>| {
            if x.dims()[1] == n {
                x
            } else {
                x.narrow(1, 0, n)
            }
        };
        let (semantic_emb, semantic_emb_low, acoustic_emb) = (
            crop(semantic_emb),
            crop(semantic_emb_low),
            crop(acoustic_emb),
        );
        let unified_emb = semantic_emb.clone() + acoustic_emb.clone();
        let acoustic_emb_low = self.fc_a.forward(acoustic_emb.clone());
        let unified_emb_low = acoustic_emb_low.clone() + semantic_emb_low.clone();
        Embeddings {
            semantic_emb,
            acoustic_emb,
            unified_emb,
            semantic_emb_low,
            acoustic_emb_low,
            unified_emb_low,
        }
    }

    /// `(mu, logvar) = (fc_mu(u), clamp(fc_logvar(u), −20, 20))` for `u = unified_emb_low`.
    pub fn gaussian(&self, unified_emb_low: Tensor<B, 3>) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let mu = self.fc_mu.forward(unified_emb_low.clone());
        let logvar = clamp_logvar(self.fc_logvar.forward(unified_emb_low));
        (mu, logvar)
    }

    /// Waveform `[B, N]` at 16 kHz → the nine features (`infer.encode`).
    pub fn encode(&self, wav: Tensor<B, 2>, sampling: Sampling) -> Features<B> {
        let emb = self.embeddings(wav);
        self.features(emb, sampling, 0)
    }

    /// The Gaussian head and the latent on given embeddings. `first_frame` is the index of the
    /// first frame within the whole signal (it selects the seeded noise; 0 for a whole signal).
    pub fn features(
        &self,
        emb: Embeddings<B>,
        sampling: Sampling,
        first_frame: usize,
    ) -> Features<B> {
        let (mu, logvar) = self.gaussian(emb.unified_emb_low.clone());
        let z = match sampling {
            Sampling::Mean => mu.clone(),
            Sampling::Seeded(seed) => {
                let [b, t, d] = mu.dims();
                let mut eps = Vec::with_capacity(b * t * d);
                for _ in 0..b {
                    eps.extend(standard_normal(seed, first_frame * d, t * d));
                }
                let eps = Tensor::from_data(TensorData::new(eps, [b, t, d]), &mu.device());
                reparameterize(mu.clone(), logvar.clone(), eps)
            }
        };
        Features {
            z,
            mu,
            logvar,
            semantic_emb: emb.semantic_emb,
            acoustic_emb: emb.acoustic_emb,
            unified_emb: emb.unified_emb,
            semantic_emb_low: emb.semantic_emb_low,
            acoustic_emb_low: emb.acoustic_emb_low,
            unified_emb_low: emb.unified_emb_low,
        }
    }

    /// Latent `[B, t, D]` → waveform `[B, 640·t]` (`infer.decode`; 2-D, not `[B, 1, L]`).
    pub fn decode(&self, z: Tensor<B, 3>) -> Tensor<B, 2> {
        self.dasheng_tokenizer.decode(z)
    }

    /// [`Self::decode`] with the intermediate tensors.
    pub fn decode_traced(&self, z: Tensor<B, 3>) -> (Tensor<B, 2>, DecoderTrace<B>) {
        let up = self.dasheng_tokenizer.upsampler.forward(z.swap_dims(1, 2));
        let backbone_out = self.dasheng_tokenizer.decoder.backbone.forward(up.clone());
        let (wav, head_linear, spec_real, spec_imag) = self
            .dasheng_tokenizer
            .decoder
            .head
            .forward_traced(backbone_out.clone());
        let trace = DecoderTrace {
            upsampled: up.swap_dims(1, 2),
            backbone_out,
            head_linear,
            spec_real,
            spec_imag,
        };
        (wav, trace)
    }

    /// Latent size D.
    pub fn latent_dim(&self) -> usize {
        self.fc_mu.weight.dims()[1]
    }
}

/// Linear interpolation along time (`F.interpolate(mode="linear", align_corners=False)` on
/// `[B, D, T]`), `[B, T, D]` → `[B, n, D]`: source position `(j + ½)·T/n − ½`, clamped at 0.
pub fn upsample_linear_time<B: Backend>(x: Tensor<B, 3>, n: usize) -> Tensor<B, 3> {
    let [_, t, _] = x.dims();
    let scale = t as f32 / n as f32;
    let mut i0 = Vec::with_capacity(n);
    let mut i1 = Vec::with_capacity(n);
    let mut w1 = Vec::with_capacity(n);
    for j in 0..n {
        let src = (scale * (j as f32 + 0.5) - 0.5).max(0.0);
        let lo = (src.floor() as usize).min(t - 1);
        i0.push(lo as i64);
        i1.push((lo + 1).min(t - 1) as i64);
        w1.push(src - lo as f32);
    }
    let device = x.device();
    let idx = |v: Vec<i64>| Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n]), &device);
    let w1 = Tensor::<B, 1>::from_data(TensorData::new(w1, [n]), &device).reshape([1, n, 1]);
    let w0 = w1.clone().neg().add_scalar(1.0);
    x.clone().select(1, idx(i0)) * w0 + x.select(1, idx(i1)) * w1
}
