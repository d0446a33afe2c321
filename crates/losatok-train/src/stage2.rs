//! Stage 2: the LoSATok generator and its discriminator.
//!
//! `L_G = w_mel·L_mel + w_sem·L_sem + λ_KL·L_KL + w_fm·L_fm + w_adv·L_adv` and the hinge `L_D`.
//! Each step first updates the discriminator on the detached reconstruction, then the generator
//! through the *updated* discriminator (whose parameters are kept out of the graph). The frozen
//! semantic encoder and SemBo run on the inner backend, without autodiff.

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

use crate::clip::{clip_grad_norm, grad_norm};
use crate::collective::{all_reduce_gradients, Collective, BUCKET_BYTES};
use crate::config::Stage2Config;
use crate::error::TrainError;
use crate::faults::{all_finite, FaultGuard};
use crate::schedule::WarmupCosine;
use crate::state;

/// What one stage-2 step did (values averaged over ranks; GAN terms 0 before they start).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stage2Stats {
    /// The weighted generator objective `L_G`.
    pub loss_g: f64,
    /// `L_mel`.
    pub mel: f64,
    /// `L_sem = L_H + L_L` (or one of them).
    pub semantic: f64,
    /// `L_KL`.
    pub kl: f64,
    /// `L_adv`.
    pub adv: f64,
    /// `L_fm`.
    pub fm: f64,
    /// `L_D`.
    pub loss_d: f64,
    /// Generator gradient norm before clipping.
    pub grad_norm_g: f64,
    /// Discriminator gradient norm before clipping.
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

/// The generator pass: frozen semantic features, trainable acoustic branch, latent, decoder;
/// `real` and `x_hat` cropped to the common length.
fn generator<B: Backend>(
    model: &Losatok<B>,
    frozen: impl Fn(Tensor<B, 2>) -> (Tensor<B, 3>, Tensor<B, 3>),
    x: Tensor<B, 2>,
    noise: Option<&dyn Fn(usize, usize) -> Vec<f32>>,
) -> Forward<B> {
    let (sem_high, sem_low) = frozen(x.clone());
    let acoustic = model.dasheng_tokenizer.encoder.forward(x.clone());
    let emb = model.fuse(sem_high, sem_low, acoustic);
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

    fn frozen(&self) -> impl Fn(Tensor<B, 2>) -> (Tensor<B, 3>, Tensor<B, 3>) + '_ {
        move |x: Tensor<B, 2>| {
            let (h, l) = self.semantic.forward(x.inner());
            (Tensor::from_inner(h), Tensor::from_inner(l))
        }
    }

    /// One optimiser step (discriminator, then generator) on this rank's batch `[rows, samples]`;
    /// `first_row` is the index of its first row in the global batch (for the noise).
    pub fn train_step<C: Collective<B::InnerBackend>>(
        &mut self,
        audio: &[f32],
        rows: usize,
        samples: usize,
        first_row: u64,
        collective: &mut C,
    ) -> Result<Stage2Stats, TrainError> {
        let accum = self.cfg.run.grad_accum.max(1);
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
            Tensor::<B, 2>::from_data(TensorData::new(chunk, [micro, samples]), &device)
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

        let mut stats = Stage2Stats::default();
        let mut sums = [0f64; 7]; // loss_g, mel, sem, kl, adv, fm, loss_d

        // ---- discriminator update, on detached reconstructions ----
        let mut d_norm = 0.0;
        let mut d_ok = true;
        if gan {
            let mut acc_d = GradientsAccumulator::<Discriminator<B>>::new();
            for m in 0..accum {
                // the generator without autodiff: the same values the graph pass computes
                let inner = self.model.valid();
                let sem = &self.semantic;
                let frozen = |x: Tensor<B::InnerBackend, 2>| sem.forward(x);
                let noise = noise_for(m);
                let f = generator(
                    &inner,
                    frozen,
                    input(m).inner(),
                    sampling.then_some(&noise as &dyn Fn(usize, usize) -> Vec<f32>),
                );
                let real = Tensor::<B, 2>::from_inner(f.real);
                let fake = Tensor::<B, 2>::from_inner(f.x_hat);
                let d_real = self.disc.forward(real);
                let d_fake = self.disc.forward(fake);
                let l_d = self.cfg.gan.l_d(&d_real.logits, &d_fake.logits);
                sums[6] += l_d.clone().into_scalar().elem::<f64>() / accum as f64;
                let grads = l_d.div_scalar(accum as f64).backward();
                acc_d.accumulate(&self.disc, GradientsParams::from_grads(grads, &self.disc));
            }
            let mut grads_d = acc_d.grads();
            all_reduce_gradients(&self.disc, &mut grads_d, collective, BUCKET_BYTES)?;
            d_norm = match self.cfg.optim_d.grad_clip {
                Some(c) => clip_grad_norm(&self.disc, &mut grads_d, c),
                None => grad_norm(&self.disc, &grads_d),
            };
            let mut flag = [(bad_input || !all_finite(&[sums[6], d_norm])) as u8 as f64];
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
        for m in 0..accum {
            let noise = noise_for(m);
            let f = generator(
                &self.model,
                self.frozen(),
                input(m),
                sampling.then_some(&noise as &dyn Fn(usize, usize) -> Vec<f32>),
            );
            let l_mel = self.mel.mel_loss(f.x_hat.clone(), f.real.clone());
            let l_s = l_sem(
                self.cfg.semantic_loss_mode,
                f.acoustic,
                f.semantic,
                f.acoustic_low,
                f.semantic_low,
            )
            .total;
            let mut l_g = l_mel.clone().mul_scalar(w.mel) + l_s.clone().mul_scalar(w.semantic);
            let mut parts = [0f64; 4]; // kl, adv, fm
            if !self.cfg.ae_mode && w.kl > 0.0 {
                let kl = l_kl(f.mu.clone(), f.logvar.clone(), self.cfg.kl_free_bits);
                parts[0] = kl.clone().into_scalar().elem();
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
                parts[1] = adv.clone().into_scalar().elem();
                parts[2] = fm.clone().into_scalar().elem();
                l_g = l_g + adv.mul_scalar(w.adv) + fm.mul_scalar(w.fm);
            }
            let a = accum as f64;
            sums[0] += l_g.clone().into_scalar().elem::<f64>() / a;
            sums[1] += l_mel.into_scalar().elem::<f64>() / a;
            sums[2] += l_s.into_scalar().elem::<f64>() / a;
            sums[3] += parts[0] / a;
            sums[4] += parts[1] / a;
            sums[5] += parts[2] / a;
            let grads = l_g.div_scalar(a).backward();
            acc_g.accumulate(&self.model, GradientsParams::from_grads(grads, &self.model));
        }
        let mut grads_g = acc_g.grads();
        all_reduce_gradients(&self.model, &mut grads_g, collective, BUCKET_BYTES)?;
        let g_norm = match self.cfg.optim_g.grad_clip {
            Some(c) => clip_grad_norm(&self.model, &mut grads_g, c),
            None => grad_norm(&self.model, &grads_g),
        };
        let mut agreed = [
            sums[0],
            sums[1],
            sums[2],
            sums[3],
            sums[4],
            sums[5],
            sums[6],
            (bad_input || !all_finite(&[sums[0], g_norm])) as u8 as f64,
        ];
        collective.all_reduce_sum_host(&mut agreed)?;
        let g_ok = agreed[7] == 0.0;
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
        let world = collective.world_size() as f64;
        stats.loss_g = agreed[0] / world;
        stats.mel = agreed[1] / world;
        stats.semantic = agreed[2] / world;
        stats.kl = agreed[3] / world;
        stats.adv = agreed[4] / world;
        stats.fm = agreed[5] / world;
        stats.loss_d = agreed[6] / world;
        stats.grad_norm_g = g_norm;
        stats.grad_norm_d = d_norm;
        stats.lr = lr;
        stats.skipped = !(g_ok && d_ok);
        Ok(stats)
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
