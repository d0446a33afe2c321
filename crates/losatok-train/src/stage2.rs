//! Stage 2: the LoSATok generator and its discriminator.
//!
//! `L_G = w_mel·L_mel + w_sem·L_sem + λ_KL·L_KL + w_fm·L_fm + w_adv·L_adv` and the hinge `L_D`.
//! Each step first updates the discriminator on the detached reconstruction, then the generator
//! through the *updated* discriminator (whose parameters are kept out of the graph), as DAC's
//! trainer does. The frozen semantic encoder and SemBo run once per micro-batch on the inner
//! backend, without autodiff.

use std::path::Path;

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use losatok_losses::{l_kl, l_logvar, l_sem, MultiScaleMelLoss};
use losatok_models::discriminator::Discriminator;
use losatok_models::latent::{reparameterize, standard_normal};
use losatok_models::{Losatok, Sampling, SemanticEncoder};

use crate::clip::{clip_to, grad_sq_norm, read_scalars};
use crate::collective::{all_reduce_gradients, Collective, BUCKET_BYTES};
use crate::config::Stage2Config;
use crate::error::TrainError;
use crate::faults::{all_finite, FaultGuard};
use crate::schedule::WarmupCosine;
use crate::state;

/// The stage-2 loss terms, one field per term of the paper's objective
/// `L_G = w_mel·L_mel + w_sem·L_sem + λ_KL·L_KL + w_fm·L_fm + w_adv·L_adv` and of `L_D`.
///
/// The step keeps them on the device as `Stage2Losses<Tensor<_, 1>>` while it sums micro-batches,
/// reads them to the host once, agrees on them across ranks as `Stage2Losses<f64>`, and logs
/// them under [`Stage2Losses::NAMES`]. Terms that are not active (the GAN terms before
/// `gan_start_step`, `L_KL` in autoencoder mode) are 0.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stage2Losses<T = f64> {
    /// The weighted generator objective `L_G`.
    pub generator: T,
    /// `L_mel`, the multi-scale mel reconstruction loss.
    pub mel: T,
    /// `L_sem = L_H + L_L` (or one of them), the dual-level semantic loss.
    pub semantic: T,
    /// `L_KL`, the latent's KL divergence (with free bits).
    pub kl: T,
    /// `L_adv`, the generator's hinge adversarial loss.
    pub adv: T,
    /// `L_fm`, discriminator feature matching.
    pub fm: T,
    /// `L_D`, the discriminator's hinge loss.
    pub d: T,
}

impl<T> Stage2Losses<T> {
    /// The log names of the fields, in the order of [`Self::into_array`].
    pub const NAMES: [&'static str; 7] = ["loss_g", "mel", "semantic", "kl", "adv", "fm", "loss_d"];

    /// The fields in the order of [`Self::NAMES`] (for one transfer or one all-reduce).
    pub fn into_array(self) -> [T; 7] {
        [
            self.generator,
            self.mel,
            self.semantic,
            self.kl,
            self.adv,
            self.fm,
            self.d,
        ]
    }

    /// The inverse of [`Self::into_array`].
    pub fn from_array([generator, mel, semantic, kl, adv, fm, d]: [T; 7]) -> Self {
        Self {
            generator,
            mel,
            semantic,
            kl,
            adv,
            fm,
            d,
        }
    }

    /// Apply `f` to every term.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Stage2Losses<U> {
        Stage2Losses::from_array(self.into_array().map(f))
    }

    /// Combine two sets of terms field by field.
    pub fn zip_with<U, V>(
        self,
        other: Stage2Losses<U>,
        mut f: impl FnMut(T, U) -> V,
    ) -> Stage2Losses<V> {
        let mut other = other.into_array().into_iter();
        self.map(|a| f(a, other.next().expect("seven terms")))
    }
}

impl Stage2Losses<f64> {
    /// `(log name, value)` for every term.
    pub fn named(&self) -> [(&'static str, f64); 7] {
        let values = self.into_array();
        std::array::from_fn(|i| (Self::NAMES[i], values[i]))
    }
}

/// What one stage-2 step did (values averaged over ranks; GAN terms 0 before they start).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stage2Stats {
    /// The loss terms.
    pub losses: Stage2Losses,
    /// Generator gradient norm before clipping.
    pub grad_norm_g: f64,
    /// Discriminator gradient norm before clipping (0 before the GAN starts).
    pub grad_norm_d: f64,
    /// Learning rate of the step.
    pub lr: f64,
    /// A non-finite value made the step skip an update.
    pub skipped: bool,
}

/// Seed of the reparameterisation noise of global batch row `row` at `step`: training noise is
/// a pure function of (seed, step, row), so resumed and multi-rank runs draw the same noise.
fn noise_seed(seed: u64, step: u64, row: u64) -> u64 {
    let mut z =
        seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ row.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Generator outputs of one micro-batch.
struct Forward<B: Backend> {
    x_hat: Tensor<B, 2>,
    real: Tensor<B, 2>,
    mu: Tensor<B, 3>,
    logvar: Tensor<B, 3>,
    acoustic: Tensor<B, 3>,
    acoustic_low: Tensor<B, 3>,
    semantic: Tensor<B, 3>,
    semantic_low: Tensor<B, 3>,
}

/// The frozen semantic encoder's features of one micro-batch (`[rows, frames, channels]`, high
/// and low level), computed once per step without autodiff.
#[derive(Clone)]
struct SemanticFeatures<B: Backend> {
    high: Tensor<B, 3>,
    low: Tensor<B, 3>,
}

/// Reparameterisation noise of one micro-batch: `(frames, dims) → [rows·frames·dims]`.
type Noise<'a> = &'a dyn Fn(usize, usize) -> Vec<f32>;

/// The trainable part of the generator on given frozen features: acoustic branch, fusion,
/// latent (`μ`, or a sample with `noise`), decoder; `real` and `x_hat` cropped to the common
/// length.
fn generator<B: Backend>(
    model: &Losatok<B>,
    frozen: SemanticFeatures<B>,
    x: Tensor<B, 2>,
    noise: Option<Noise>,
) -> Forward<B> {
    let acoustic = model.dasheng_tokenizer.encoder.forward(x.clone());
    let emb = model.fuse(frozen.high, frozen.low, acoustic);
    let (mu, logvar) = model.gaussian(emb.unified_emb_low.clone());
    let z = match noise {
        None => mu.clone(),
        Some(f) => {
            let [b, t, d] = mu.dims();
            let eps = Tensor::from_data(TensorData::new(f(t, d), [b, t, d]), &mu.device());
            reparameterize(mu.clone(), logvar.clone(), eps)
        }
    };
    let x_hat = model.decode(z);
    let n = x.dims()[1].min(x_hat.dims()[1]);
    Forward {
        x_hat: x_hat.narrow(1, 0, n),
        real: x.narrow(1, 0, n),
        mu,
        logvar,
        acoustic: emb.acoustic_emb,
        acoustic_low: emb.acoustic_emb_low,
        semantic: emb.semantic_emb,
        semantic_low: emb.semantic_emb_low,
    }
}

/// Lift features of the inner backend into the autodiff backend (as constants).
fn lift<B: AutodiffBackend>(f: SemanticFeatures<B::InnerBackend>) -> SemanticFeatures<B> {
    SemanticFeatures {
        high: Tensor::from_inner(f.high),
        low: Tensor::from_inner(f.low),
    }
}

/// Sum this rank's loss terms and fault flag with every rank's: the mean terms, and whether no
/// rank had a fault (every rank decides the same).
fn agree<B: Backend, C: Collective<B>>(
    collective: &mut C,
    losses: Stage2Losses,
    fault: bool,
) -> Result<(Stage2Losses, bool), TrainError> {
    let mut values = [0f64; 8];
    values[..7].copy_from_slice(&losses.into_array());
    values[7] = fault as u8 as f64;
    collective.all_reduce_sum_host(&mut values)?;
    let world = collective.world_size() as f64;
    let mean = Stage2Losses::from_array(std::array::from_fn(|i| values[i] / world));
    Ok((mean, values[7] == 0.0))
}

/// The stage-2 trainer.
pub struct LosatokTrainer<B: AutodiffBackend> {
    /// The model (its semantic encoder is frozen and never enters the graph).
    pub model: Losatok<B>,
    semantic: SemanticEncoder<B::InnerBackend>,
    /// The discriminator.
    pub disc: Discriminator<B>,
    opt_g: OptimizerAdaptor<AdamW, Losatok<B>, B>,
    opt_d: OptimizerAdaptor<AdamW, Discriminator<B>, B>,
    mel: MultiScaleMelLoss<B>,
    sched_g: WarmupCosine,
    sched_d: WarmupCosine,
    cfg: Stage2Config,
    /// Optimiser steps done.
    pub step: u64,
    /// Non-finite step accounting.
    pub faults: FaultGuard,
}

impl<B: AutodiffBackend> LosatokTrainer<B> {
    /// A trainer for `cfg` around a (fresh or loaded) model and discriminator.
    pub fn new(model: Losatok<B>, disc: Discriminator<B>, cfg: &Stage2Config) -> Self {
        let device = model.fc_a.weight.device();
        let semantic = model.semantic_encoder.valid();
        Self {
            model,
            semantic,
            disc,
            opt_g: cfg.optim_g.adamw().init(),
            opt_d: cfg.optim_d.adamw().init(),
            mel: cfg.mel.loss().init(&device),
            sched_g: cfg.optim_g.schedule(cfg.run.steps),
            sched_d: cfg.optim_d.schedule(cfg.run.steps),
            cfg: cfg.clone(),
            step: 0,
            faults: FaultGuard::new(cfg.run.max_bad_steps),
        }
    }

    fn gan_active(&self) -> bool {
        self.step >= self.cfg.gan_start_step
            && (self.cfg.weights.adv > 0.0 || self.cfg.weights.fm > 0.0)
    }

    /// One optimiser step (discriminator, then generator) on this rank's batch `[rows, samples]`;
    /// `first_row` is the index of its first row in the global batch (for the noise).
    ///
    /// The frozen semantic encoder runs once per micro-batch. With one micro-batch the generator
    /// also runs once: its reconstruction, detached, trains the discriminator, and the same graph
    /// then gives the generator's loss through the updated discriminator. With gradient
    /// accumulation the discriminator's reconstructions come from a pass without autodiff, so
    /// that only one micro-batch's graph is alive at a time (what accumulation is for), and the
    /// generator's pass recomputes the trainable part alone. Loss terms and gradient norms stay
    /// on the device and are read once per optimiser (two transfers per step).
    pub fn train_step<C: Collective<B::InnerBackend>>(
        &mut self,
        audio: &[f32],
        rows: usize,
        samples: usize,
        first_row: u64,
        collective: &mut C,
    ) -> Result<Stage2Stats, TrainError> {
        let accum = self.cfg.run.grad_accum.max(1);
        let a = accum as f64;
        // a non-finite sample is a fault even where a front end would mask it
        let bad_input = audio.iter().any(|v| !v.is_finite());
        let micro = rows / accum;
        let device = self.model.fc_a.weight.device();
        let gan = self.gan_active();
        let step = self.step;
        let seed = self.cfg.run.seed;
        let sampling = !self.cfg.ae_mode;
        let w = self.cfg.weights.clone();
        let input = |m: usize| {
            let chunk = audio[m * micro * samples..(m + 1) * micro * samples].to_vec();
            Tensor::<B::InnerBackend, 2>::from_data(
                TensorData::new(chunk, [micro, samples]),
                &device,
            )
        };
        let noise_for = |m: usize| {
            move |t: usize, d: usize| {
                (0..micro)
                    .flat_map(|i| {
                        let row = first_row + (m * micro + i) as u64;
                        standard_normal(noise_seed(seed, step, row), 0, t * d)
                    })
                    .collect::<Vec<f32>>()
            }
        };
        let frozen: Vec<SemanticFeatures<B::InnerBackend>> = (0..accum)
            .map(|m| {
                let (high, low) = self.semantic.forward(input(m));
                SemanticFeatures { high, low }
            })
            .collect();
        let zero = || Tensor::<B::InnerBackend, 1>::zeros([1], &device);

        // ---- discriminator update, on detached reconstructions ----
        let mut graphs: Vec<Option<Forward<B>>> = (0..accum).map(|_| None).collect();
        let (mut loss_d, mut d_norm, mut d_ok) = (0.0, 0.0, true);
        if gan {
            let no_graph = (accum > 1).then(|| self.model.valid());
            let mut acc_d = GradientsAccumulator::<Discriminator<B>>::new();
            let mut l_d_sum = zero();
            for (m, features) in frozen.iter().enumerate() {
                let noise = noise_for(m);
                let noise = sampling.then_some(&noise as Noise);
                let (real, fake) = match &no_graph {
                    None => {
                        let x = Tensor::from_inner(input(m));
                        let f = generator(&self.model, lift::<B>(features.clone()), x, noise);
                        let pair = (f.real.clone(), f.x_hat.clone().detach());
                        graphs[m] = Some(f);
                        pair
                    }
                    Some(inner) => {
                        let f = generator(inner, features.clone(), input(m), noise);
                        (Tensor::from_inner(f.real), Tensor::from_inner(f.x_hat))
                    }
                };
                let d_real = self.disc.forward(real);
                let d_fake = self.disc.forward(fake);
                let l_d = self
                    .cfg
                    .gan
                    .l_d(&d_real.logits, &d_fake.logits)
                    .div_scalar(a);
                l_d_sum = l_d_sum + l_d.clone().inner();
                acc_d.accumulate(
                    &self.disc,
                    GradientsParams::from_grads(l_d.backward(), &self.disc),
                );
            }
            let mut grads_d = acc_d.grads();
            all_reduce_gradients(&self.disc, &mut grads_d, collective, BUCKET_BYTES)?;
            let host = read_scalars(vec![l_d_sum, grad_sq_norm(&self.disc, &grads_d, &device)]);
            (loss_d, d_norm) = (host[0], host[1].sqrt());
            if let Some(c) = self.cfg.optim_d.grad_clip {
                clip_to(&self.disc, &mut grads_d, d_norm, c);
            }
            let mut flag = [(bad_input || !all_finite(&[loss_d, d_norm])) as u8 as f64];
            collective.all_reduce_sum_host(&mut flag)?;
            d_ok = flag[0] == 0.0;
            if d_ok {
                let lr = self.sched_d.lr(step);
                self.disc = self.opt_d.step(lr, self.disc.clone(), grads_d);
            }
        }

        // ---- generator update, through the updated discriminator ----
        let disc_ng = self.disc.clone().no_grad();
        let mut acc_g = GradientsAccumulator::<Losatok<B>>::new();
        let mut sums = Stage2Losses::from_array(std::array::from_fn(|_| zero()));
        for (m, features) in frozen.into_iter().enumerate() {
            let f = match graphs[m].take() {
                Some(f) => f,
                None => {
                    let noise = noise_for(m);
                    let noise = sampling.then_some(&noise as Noise);
                    let x = Tensor::from_inner(input(m));
                    generator(&self.model, lift::<B>(features), x, noise)
                }
            };
            let mel = self.mel.mel_loss(f.x_hat.clone(), f.real.clone());
            let semantic = l_sem(
                self.cfg.semantic_loss_mode,
                f.acoustic,
                f.semantic,
                f.acoustic_low,
                f.semantic_low,
            )
            .total;
            let mut l_g = mel.clone().mul_scalar(w.mel) + semantic.clone().mul_scalar(w.semantic);
            let mut terms = Stage2Losses {
                mel: mel.inner(),
                semantic: semantic.inner(),
                ..Stage2Losses::from_array(std::array::from_fn(|_| zero()))
            };
            if !self.cfg.ae_mode && w.kl > 0.0 {
                let kl = l_kl(f.mu.clone(), f.logvar.clone(), self.cfg.kl_free_bits);
                terms.kl = kl.clone().inner();
                l_g = l_g + kl.mul_scalar(w.kl);
            }
            if let Some(wl) = w.logvar.filter(|&v| v > 0.0) {
                l_g = l_g + l_logvar(f.logvar.clone()).mul_scalar(wl);
            }
            if gan {
                let fake = disc_ng.forward(f.x_hat.clone());
                let real = disc_ng.forward(f.real.clone());
                let real_fmaps: Vec<Vec<Tensor<B, 4>>> = real
                    .fmaps
                    .into_iter()
                    .map(|v| v.into_iter().map(|t| t.detach()).collect())
                    .collect();
                let adv = self.cfg.gan.l_adv(&fake.logits);
                let fm = self.cfg.gan.l_fm(&real_fmaps, &fake.fmaps);
                terms.adv = adv.clone().inner();
                terms.fm = fm.clone().inner();
                l_g = l_g + adv.mul_scalar(w.adv) + fm.mul_scalar(w.fm);
            }
            terms.generator = l_g.clone().inner();
            sums = sums.zip_with(terms, |s, t| s + t.div_scalar(a));
            let grads = l_g.div_scalar(a).backward();
            acc_g.accumulate(&self.model, GradientsParams::from_grads(grads, &self.model));
        }
        let mut grads_g = acc_g.grads();
        all_reduce_gradients(&self.model, &mut grads_g, collective, BUCKET_BYTES)?;
        let mut values = sums.into_array().to_vec();
        values.push(grad_sq_norm(&self.model, &grads_g, &device));
        let host = read_scalars(values);
        let g_norm = host[7].sqrt();
        if let Some(c) = self.cfg.optim_g.grad_clip {
            clip_to(&self.model, &mut grads_g, g_norm, c);
        }
        let losses = Stage2Losses {
            d: loss_d,
            ..Stage2Losses::from_array(std::array::from_fn(|i| host[i]))
        };
        let fault = bad_input || !all_finite(&[losses.generator, g_norm]);
        let (losses, g_ok) = agree(collective, losses, fault)?;
        let lr = self.sched_g.lr(step);
        if g_ok {
            self.model = self.opt_g.step(lr, self.model.clone(), grads_g);
        }
        self.faults.record(
            step,
            g_ok && d_ok,
            "input, generator or discriminator loss or gradient",
        )?;
        self.step += 1;
        Ok(Stage2Stats {
            losses,
            grad_norm_g: g_norm,
            grad_norm_d: d_norm,
            lr,
            skipped: !(g_ok && d_ok),
        })
    }

    /// Reconstruct a 16 kHz signal with the current weights (`z = μ`, no autodiff).
    pub fn reconstruct(&self, wav: &[f32]) -> Vec<f32> {
        let model = self.model.valid();
        let device = model.fc_a.weight.device();
        let x = Tensor::from_data(TensorData::new(wav.to_vec(), [1, wav.len()]), &device);
        let f = model.encode(x, Sampling::Mean);
        model
            .decode(f.z)
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("float samples")
    }

    /// `L_mel` between a signal and its reconstruction with the current weights: the "mel
    /// distance" reported by the demo and the periodic samples.
    pub fn mel_distance(&self, wav: &[f32]) -> f64 {
        let recon = self.reconstruct(wav);
        let n = recon.len().min(wav.len());
        let mel = self.mel.valid();
        let device = self.model.fc_a.weight.device();
        let t = |v: &[f32]| {
            Tensor::<B::InnerBackend, 2>::from_data(
                TensorData::new(v[..n].to_vec(), [1, n]),
                &device,
            )
        };
        mel.mel_loss(t(&recon), t(wav)).into_scalar().elem()
    }

    /// Write the trainable parts, both optimisers and the step into a checkpoint folder (the
    /// frozen semantic encoder is not repeated: it is named by the run's config).
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        state::save_module(&self.model.dasheng_tokenizer, dir, "tokenizer")?;
        state::save_module(&self.model.fc_a, dir, "fc_a")?;
        state::save_module(&self.model.fc_mu, dir, "fc_mu")?;
        state::save_module(&self.model.fc_logvar, dir, "fc_logvar")?;
        state::save_module(&self.disc, dir, "disc")?;
        state::save_optimizer::<B, Losatok<B>, _>(&self.opt_g, dir, "opt_g")?;
        state::save_optimizer::<B, Discriminator<B>, _>(&self.opt_d, dir, "opt_d")?;
        state::write_json(
            &dir.join("trainer.json"),
            &serde_json::json!({"stage": 2, "step": self.step, "faults": self.faults}),
        )
    }

    /// Restore from a checkpoint folder written by [`Self::save`].
    pub fn load(mut self, dir: &Path) -> Result<Self, TrainError> {
        state::verify(dir)?;
        let device = self.model.fc_a.weight.device();
        let m = &mut self.model;
        m.dasheng_tokenizer =
            state::load_module(m.dasheng_tokenizer.clone(), dir, "tokenizer", &device)?;
        m.fc_a = state::load_module(m.fc_a.clone(), dir, "fc_a", &device)?;
        m.fc_mu = state::load_module(m.fc_mu.clone(), dir, "fc_mu", &device)?;
        m.fc_logvar = state::load_module(m.fc_logvar.clone(), dir, "fc_logvar", &device)?;
        self.disc = state::load_module(self.disc, dir, "disc", &device)?;
        self.opt_g = state::load_optimizer::<B, Losatok<B>, _>(self.opt_g, dir, "opt_g", &device)?;
        self.opt_d =
            state::load_optimizer::<B, Discriminator<B>, _>(self.opt_d, dir, "opt_d", &device)?;
        let meta: serde_json::Value = state::read_json(&dir.join("trainer.json"))?;
        self.step = meta["step"].as_u64().ok_or_else(|| TrainError::State {
            path: dir.to_path_buf(),
            message: "trainer.json has no step".into(),
        })?;
        self.faults = serde_json::from_value(meta["faults"].clone()).unwrap_or_default();
        Ok(self)
    }
}
