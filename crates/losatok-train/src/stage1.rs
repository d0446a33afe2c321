//! Stage 1: SemBo on the frozen MiDashengLM audio encoder.
//!
//! `L_SemBo = λ_recon·L_recon + L_tr` (see `losatok_losses::sembo`): the compressor `C` maps the
//! frozen 1280-d features to 128-d, the restorer `R` maps them back; `L_recon` compares the
//! restored frames with the originals and `L_tr` the frame-to-frame cosine structure of the
//! low-dimensional features with that of the originals. Only `C` and `R` train.

use std::path::Path;

use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use losatok_losses::sembo_loss;
use losatok_models::dasheng::DashengEncoder;
use losatok_models::sembo::SemBo;

use crate::clip::{clip_to, grad_sq_norm, read_scalars};
use crate::collective::{all_reduce_gradients, Collective, BUCKET_BYTES};
use crate::config::Stage1Config;
use crate::error::TrainError;
use crate::faults::{all_finite, FaultGuard};
use crate::schedule::WarmupCosine;
use crate::state;

/// What one stage-1 step did (values averaged over ranks).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stage1Stats {
    /// `λ_recon·L_recon + L_tr`.
    pub loss: f64,
    /// `L_recon`.
    pub recon: f64,
    /// `L_tr`.
    pub tr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate of the step.
    pub lr: f64,
    /// The step had a non-finite loss or gradient and was skipped.
    pub skipped: bool,
}

/// SemBo on a validation clip ([`SemboTrainer::evaluate`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SemboEval {
    /// `λ_recon·L_recon + L_tr`.
    pub loss: f64,
    /// `L_recon`.
    pub recon: f64,
    /// `L_tr`.
    pub tr: f64,
    /// The frozen encoder's features `z_h`, `[frames, channels]` row-major.
    pub features: Vec<f32>,
    /// SemBo's restoration `ẑ_h`, the same layout.
    pub restored: Vec<f32>,
    /// Feature frames (25 Hz).
    pub frames: usize,
    /// Feature channels (1280).
    pub channels: usize,
}

/// The stage-1 trainer: the frozen encoder, SemBo and its optimiser.
pub struct SemboTrainer<B: AutodiffBackend> {
    /// The frozen encoder, on the inner (non-autodiff) backend.
    pub encoder: DashengEncoder<B::InnerBackend>,
    /// The trainable compressor and restorer.
    pub sembo: SemBo<B>,
    opt: OptimizerAdaptor<AdamW, SemBo<B>, B>,
    schedule: WarmupCosine,
    lambda_recon: f64,
    grad_clip: Option<f64>,
    accum: usize,
    /// Optimiser steps done.
    pub step: u64,
    /// Non-finite step accounting.
    pub faults: FaultGuard,
}

impl<B: AutodiffBackend> SemboTrainer<B> {
    /// A trainer for `cfg` with the given encoder and (fresh or loaded) SemBo.
    pub fn new(
        encoder: DashengEncoder<B::InnerBackend>,
        sembo: SemBo<B>,
        cfg: &Stage1Config,
    ) -> Self {
        Self {
            encoder,
            sembo,
            opt: cfg.optim.adamw().init(),
            schedule: cfg.optim.schedule(cfg.run.steps),
            lambda_recon: cfg.lambda_recon,
            grad_clip: cfg.optim.grad_clip,
            accum: cfg.run.grad_accum.max(1),
            step: 0,
            faults: FaultGuard::new(cfg.run.max_bad_steps),
        }
    }

    /// One optimiser step on this rank's batch `[rows, samples]` (row-major), split into
    /// `grad_accum` micro-batches; gradients are averaged over micro-batches and ranks.
    pub fn train_step<C: Collective<B::InnerBackend>>(
        &mut self,
        audio: &[f32],
        rows: usize,
        samples: usize,
        collective: &mut C,
    ) -> Result<Stage1Stats, TrainError> {
        let device = self.sembo.downsample.fc1.weight.device();
        // a non-finite sample is a fault even where the front end would mask it (its dB floor
        // turns NaN into a finite value)
        let bad_input = audio.iter().any(|v| !v.is_finite());
        let micro = rows / self.accum;
        let mut acc = GradientsAccumulator::<SemBo<B>>::new();
        // total, recon, tr: summed on the device and read once with the gradient norm
        let mut sums: [Tensor<B::InnerBackend, 1>; 3] =
            std::array::from_fn(|_| Tensor::zeros([1], &device));
        let a = self.accum as f64;
        for m in 0..self.accum {
            let chunk = audio[m * micro * samples..(m + 1) * micro * samples].to_vec();
            let x = Tensor::<B::InnerBackend, 2>::from_data(
                TensorData::new(chunk, [micro, samples]),
                &device,
            );
            let z_h = Tensor::<B, 3>::from_inner(self.encoder.forward(x));
            let z_l = self.sembo.compress(z_h.clone());
            let zh_hat = self.sembo.restore(z_l.clone());
            let l = sembo_loss(z_h, zh_hat, z_l, self.lambda_recon);
            let terms = [&l.total, &l.recon, &l.tr].map(|t| t.clone().inner().div_scalar(a));
            sums = std::array::from_fn(|i| sums[i].clone() + terms[i].clone());
            let grads = l.total.div_scalar(a).backward();
            acc.accumulate(&self.sembo, GradientsParams::from_grads(grads, &self.sembo));
        }
        let mut grads = acc.grads();
        all_reduce_gradients(&self.sembo, &mut grads, collective, BUCKET_BYTES)?;
        let mut values = sums.to_vec();
        values.push(grad_sq_norm(&self.sembo, &grads, &device));
        let host = read_scalars(values);
        let (sums, norm) = ([host[0], host[1], host[2]], host[3].sqrt());
        if let Some(c) = self.grad_clip {
            clip_to(&self.sembo, &mut grads, norm, c);
        }
        // every rank decides the same: losses averaged, any rank's fault counts
        let world = collective.world_size() as f64;
        let mut agreed = [
            sums[0],
            sums[1],
            sums[2],
            (bad_input || !all_finite(&[sums[0], norm])) as u8 as f64,
        ];
        collective.all_reduce_sum_host(&mut agreed)?;
        let ok = agreed[3] == 0.0;
        let lr = self.schedule.lr(self.step);
        self.faults
            .record(self.step, ok, "SemBo input, loss or gradient")?;
        if ok {
            self.sembo = self.opt.step(lr, self.sembo.clone(), grads);
        }
        self.step += 1;
        Ok(Stage1Stats {
            loss: agreed[0] / world,
            recon: agreed[1] / world,
            tr: agreed[2] / world,
            grad_norm: norm,
            lr,
            skipped: !ok,
        })
    }

    /// SemBo on one 16 kHz clip with the current weights, without training (validation).
    pub fn evaluate(&self, wav: &[f32]) -> SemboEval {
        use burn::module::AutodiffModule;
        let sembo = self.sembo.valid();
        let device = sembo.downsample.fc1.weight.device();
        let x = Tensor::<B::InnerBackend, 2>::from_data(
            TensorData::new(wav.to_vec(), [1, wav.len()]),
            &device,
        );
        let z_h = self.encoder.forward(x);
        let z_l = sembo.compress(z_h.clone());
        let zh_hat = sembo.restore(z_l.clone());
        let [_, frames, channels] = z_h.dims();
        let rows = |t: Tensor<B::InnerBackend, 3>| {
            t.into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .expect("float data")
        };
        let l = sembo_loss(z_h.clone(), zh_hat.clone(), z_l, self.lambda_recon);
        SemboEval {
            loss: l.total.into_scalar().elem(),
            recon: l.recon.into_scalar().elem(),
            tr: l.tr.into_scalar().elem(),
            features: rows(z_h),
            restored: rows(zh_hat),
            frames,
            channels,
        }
    }

    /// Write SemBo, the optimiser state and the step into a checkpoint folder.
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        state::save_module(&self.sembo, dir, "sembo")?;
        state::save_optimizer::<B, SemBo<B>, _>(&self.opt, dir, "opt")?;
        state::write_json(
            &dir.join("trainer.json"),
            &serde_json::json!({"stage": 1, "step": self.step, "faults": self.faults}),
        )
    }

    /// Restore from a checkpoint folder written by [`Self::save`].
    pub fn load(mut self, dir: &Path) -> Result<Self, TrainError> {
        state::verify(dir)?;
        let device = self.sembo.downsample.fc1.weight.device();
        self.sembo = state::load_module(self.sembo, dir, "sembo", &device)?;
        self.opt = state::load_optimizer::<B, SemBo<B>, _>(self.opt, dir, "opt", &device)?;
        let meta: serde_json::Value = state::read_json(&dir.join("trainer.json"))?;
        self.step = meta["step"].as_u64().ok_or_else(|| TrainError::State {
            path: dir.to_path_buf(),
            message: "trainer.json has no step".into(),
        })?;
        self.faults = serde_json::from_value(meta["faults"].clone()).unwrap_or_default();
        Ok(self)
    }
}
