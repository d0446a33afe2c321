//! The frozen MiDashengLM audio encoder ("DashengAudioTransformer"), model-spec §2.
//!
//! dB power mel → eval BatchNorm over the mel bins → 64×4 patch embedding → 252-token chunks, each
//! with its own positional embeddings, through pre-norm ViT blocks → final LayerNorm per chunk.
//! Field names mirror the checkpoint (`init_bn`, `patch_embed.proj`, `blocks.N.attn.qkv`, …).

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, Linear, LinearConfig};
use burn::prelude::*;
use losatok_dsp::{LogPowerMel, LogPowerMelConfig};

use crate::config::AudioEncoderConfig;
use crate::cpu_fast_path::{attention_from_qkv, linear};
use crate::layers::{layer_norm, LayerScale, Mlp};

/// LayerNorm epsilon of the transformer (timm ViT).
const LN_EPS: f64 = 1e-6;
/// BatchNorm epsilon.
const BN_EPS: f64 = 1e-5;

/// Eval-mode BatchNorm over the mel axis of `[B, n_mels, T]`:
/// `y = (x − running_mean)/√(running_var + ε)·weight + bias`. The running statistics are
/// parameters here (frozen with the rest of the encoder), so they load and save like weights.
#[derive(Module, Debug)]
pub struct MelBatchNorm<B: Backend> {
    /// Scale, `[n_mels]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Shift, `[n_mels]`.
    pub bias: Param<Tensor<B, 1>>,
    /// Running mean, `[n_mels]`.
    pub running_mean: Param<Tensor<B, 1>>,
    /// Running variance, `[n_mels]`.
    pub running_var: Param<Tensor<B, 1>>,
}

impl<B: Backend> MelBatchNorm<B> {
    /// Identity statistics (mean 0, variance 1, weight 1, bias 0).
    pub fn new(n_mels: usize, device: &B::Device) -> Self {
        let p = |v: f64| Param::from_tensor(Tensor::full([n_mels], v, device));
        Self {
            weight: p(1.0),
            bias: p(0.0),
            running_mean: p(0.0),
            running_var: p(1.0),
        }
    }

    /// `[B, n_mels, T]` → `[B, n_mels, T]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let col = |t: Tensor<B, 1>| t.unsqueeze_dim::<2>(1).unsqueeze::<3>();
        let std = self.running_var.val().add_scalar(BN_EPS).sqrt();
        (x - col(self.running_mean.val())) / col(std) * col(self.weight.val())
            + col(self.bias.val())
    }
}

/// Conv2d patch embedding (`patch_embed.proj`).
#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    /// `Conv2d(1 → E, kernel = stride = (n_mels, 4))`.
    pub proj: Conv2d<B>,
}

/// Multi-head self-attention with a fused qkv projection (timm `Attention`).
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// `E → 3E`, output order (q | k | v) × head × dim.
    pub qkv: Linear<B>,
    /// `E → E`.
    pub proj: Linear<B>,
    num_heads: usize,
}

impl<B: Backend> Attention<B> {
    /// `[B, c, E]` → `[B, c, E]`: bidirectional softmax attention with scale `d^−½`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let qkv = linear(&self.qkv, x);
        linear(&self.proj, attention_from_qkv(qkv, self.num_heads))
    }
}

/// A pre-norm transformer block with optional layer scale.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// LayerNorm before attention (ε 1e-6).
    pub norm1: LayerNorm<B>,
    /// Self-attention.
    pub attn: Attention<B>,
    /// Layer scale after attention (present iff the checkpoint has `ls1.gamma`).
    pub ls1: Option<LayerScale<B>>,
    /// LayerNorm before the MLP (ε 1e-6).
    pub norm2: LayerNorm<B>,
    /// `E → 4E → E`, exact GELU.
    pub mlp: Mlp<B>,
    /// Layer scale after the MLP.
    pub ls2: Option<LayerScale<B>>,
}

impl<B: Backend> Block<B> {
    /// `x + ls1(attn(norm1(x)))`, then `x + ls2(mlp(norm2(x)))`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let scale = |ls: &Option<LayerScale<B>>, y: Tensor<B, 3>| match ls {
            Some(ls) => ls.forward(y),
            None => y,
        };
        let x = x.clone() + scale(&self.ls1, self.attn.forward(self.norm1.forward(x)));
        x.clone() + scale(&self.ls2, self.mlp.forward(self.norm2.forward(x)))
    }
}

/// Intermediate tensors of one encoder pass (for parity tests and inspection).
#[derive(Clone, Debug)]
pub struct DashengTrace<B: Backend> {
    /// dB log-mel, `[B, n_mels, T]`.
    pub logmel: Tensor<B, 3>,
    /// After `init_bn`, `[B, n_mels, T]`.
    pub bn: Tensor<B, 3>,
    /// Patch tokens before positional embeddings, `[B, t, E]`.
    pub patch_embed: Tensor<B, 3>,
    /// First chunk with positional embeddings added, `[B, c, E]`.
    pub chunk0_pos_added: Tensor<B, 3>,
    /// First chunk after each block, `[B, c, E]`.
    pub chunk0_blocks: Vec<Tensor<B, 3>>,
}

/// The MiDashengLM audio encoder.
#[derive(Module, Debug)]
pub struct DashengEncoder<B: Backend> {
    /// dB power mel front end (constants; not in any checkpoint).
    pub front_end: LogPowerMel<B>,
    /// Eval BatchNorm over the mel bins.
    pub init_bn: MelBatchNorm<B>,
    /// Patch embedding.
    pub patch_embed: PatchEmbed<B>,
    /// `[1, E, 1, chunk]` time positional embedding (restarts in every chunk).
    pub time_pos_embed: Param<Tensor<B, 4>>,
    /// `[1, E, 1, 1]` frequency positional embedding.
    pub freq_pos_embed: Param<Tensor<B, 4>>,
    /// Transformer blocks.
    pub blocks: Vec<Block<B>>,
    /// Final LayerNorm (ε 1e-6), applied per chunk.
    pub norm: LayerNorm<B>,
    chunk_tokens: usize,
    patch_time: usize,
}

impl AudioEncoderConfig {
    /// Build the encoder with fresh weights (positional embeddings N(0, 0.02²)).
    pub fn init<B: Backend>(&self, device: &B::Device) -> DashengEncoder<B> {
        let e = self.embed_dim;
        let front = LogPowerMelConfig {
            sample_rate: self.sample_rate,
            n_fft: self.n_fft,
            hop: self.hop_length,
            n_mels: self.n_mels,
            f_min: self.f_min,
            f_max: self.f_max,
            ..LogPowerMelConfig::dasheng()
        };
        let blocks = (0..self.depth)
            .map(|_| Block {
                norm1: layer_norm(e, LN_EPS, device),
                attn: Attention {
                    qkv: LinearConfig::new(e, 3 * e)
                        .with_bias(self.qkv_bias)
                        .init(device),
                    proj: LinearConfig::new(e, e).init(device),
                    num_heads: self.num_heads,
                },
                ls1: self.init_values.map(|v| LayerScale::new(e, v, device)),
                norm2: layer_norm(e, LN_EPS, device),
                mlp: Mlp::new(e, self.mlp_hidden(), e, device),
                ls2: self.init_values.map(|v| LayerScale::new(e, v, device)),
            })
            .collect();
        let chunk = self.chunk_tokens();
        let normal = burn::tensor::Distribution::Normal(0.0, 0.02);
        DashengEncoder {
            front_end: front.init(device),
            init_bn: MelBatchNorm::new(self.n_mels, device),
            patch_embed: PatchEmbed {
                proj: Conv2dConfig::new([1, e], self.patch_size)
                    .with_stride(self.patch_stride)
                    .init(device),
            },
            time_pos_embed: Param::from_tensor(Tensor::random([1, e, 1, chunk], normal, device)),
            freq_pos_embed: Param::from_tensor(Tensor::random([1, e, 1, 1], normal, device)),
            blocks,
            norm: layer_norm(e, LN_EPS, device),
            chunk_tokens: chunk,
            patch_time: self.patch_stride[1],
        }
    }
}

impl<B: Backend> DashengEncoder<B> {
    /// `[B, N]` waveform → `semantic_emb` `[B, t, E]`, `t = ⌊(⌊N/hop⌋ + 1)/4⌋`.
    pub fn forward(&self, wav: Tensor<B, 2>) -> Tensor<B, 3> {
        self.run(wav, None)
    }

    /// [`Self::forward`] that also returns the intermediate tensors.
    pub fn forward_traced(&self, wav: Tensor<B, 2>) -> (Tensor<B, 3>, DashengTrace<B>) {
        let mut trace = None;
        let out = self.run(wav, Some(&mut trace));
        (out, trace.expect("trace filled"))
    }

    /// Mel frames per token (4).
    pub fn patch_time(&self) -> usize {
        self.patch_time
    }

    /// Tokens per attention chunk (252).
    pub fn chunk_tokens(&self) -> usize {
        self.chunk_tokens
    }

    /// Patch tokens `[B, t, E]` (before positional embeddings) from a dB log-mel `[B, n_mels, T]`:
    /// BatchNorm, then the strided conv; the trailing `T mod 4` frames are dropped.
    pub fn tokens_from_logmel(&self, logmel: Tensor<B, 3>) -> Tensor<B, 3> {
        self.tokens_and_bn(logmel).1
    }

    fn tokens_and_bn(&self, logmel: Tensor<B, 3>) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let bn = self.init_bn.forward(logmel);
        let [b, _, frames] = bn.dims();
        let t = frames / self.patch_time;
        let x = self.patch_embed.proj.forward(
            bn.clone()
                .narrow(2, 0, t * self.patch_time)
                .unsqueeze_dim(1),
        );
        let e = x.dims()[1];
        (bn, x.reshape([b, e, t]).swap_dims(1, 2))
    }

    /// Positional embeddings for the first `c` positions, `[1, c, E]`.
    fn positions(&self, c: usize) -> Tensor<B, 3> {
        let [_, e, _, n] = self.time_pos_embed.dims();
        let time = self.time_pos_embed.val().reshape([1, e, n]).narrow(2, 0, c);
        let freq = self.freq_pos_embed.val().reshape([1, e, 1]);
        (time + freq).swap_dims(1, 2)
    }

    /// Blocks and final norm on independent chunks `[B', c, E]` (positions already added).
    fn transform(&self, mut x: Tensor<B, 3>) -> Tensor<B, 3> {
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.norm.forward(x)
    }

    fn run(&self, wav: Tensor<B, 2>, trace: Option<&mut Option<DashengTrace<B>>>) -> Tensor<B, 3> {
        let logmel = self.front_end.forward(wav);
        let (bn, tokens) = self.tokens_and_bn(logmel.clone());
        if let Some(slot) = trace {
            let k = self.chunk_tokens;
            let t = tokens.dims()[1];
            let c = t.min(k);
            let mut x = tokens.clone().narrow(1, 0, c) + self.positions(c);
            let pos_added = x.clone();
            let mut blocks = Vec::new();
            for block in &self.blocks {
                x = block.forward(x);
                blocks.push(x.clone());
            }
            *slot = Some(DashengTrace {
                logmel,
                bn,
                patch_embed: tokens.clone(),
                chunk0_pos_added: pos_added,
                chunk0_blocks: blocks,
            });
        }
        self.encode_tokens(tokens)
    }

    /// The transformer on patch tokens `[B, t, E]`: consecutive chunks of 252 tokens, each with
    /// positional embeddings restarting at 0, through the blocks and the final norm, with no
    /// attention across chunks. `[B, t, E]` → `semantic_emb` `[B, t, E]`.
    pub fn encode_tokens(&self, tokens: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, e] = tokens.dims();
        assert!(
            t > 0,
            "the semantic encoder needs at least one token (N ≥ 480 samples)"
        );
        let k = self.chunk_tokens;
        // Full chunks share the same positions: run them as one batch of B·n sequences.
        let full = t / k;
        let rest = t - full * k;
        let mut parts = Vec::with_capacity(2);
        if full > 0 {
            let x = tokens
                .clone()
                .narrow(1, 0, full * k)
                .reshape([b * full, k, e])
                + self.positions(k);
            parts.push(self.transform(x).reshape([b, full * k, e]));
        }
        if rest > 0 {
            let x = tokens.narrow(1, full * k, rest) + self.positions(rest);
            parts.push(self.transform(x));
        }
        if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Tensor::cat(parts, 1)
        }
    }
}
