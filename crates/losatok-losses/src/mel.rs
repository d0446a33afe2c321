//! `L_mel`: the multi-scale mel-spectrogram L1 loss in DAC's configuration (loss-spec §3.3).
//! The paper's term is [`MultiScaleMelLoss::mel_loss`] (weight 45 in `L_G`, applied by the caller).

use burn::prelude::*;
use losatok_dsp::{log10_clamped, slaney_filterbank, MelSpectrogram, SpectrumKind, StftConfig};

/// Settings of [`MultiScaleMelLoss`].
#[derive(Clone, Debug, PartialEq)]
pub struct MelLossConfig {
    /// Sample rate of the waveforms.
    pub sample_rate: u32,
    /// Window (= n_fft) of each scale; the hop is a quarter of it.
    pub windows: Vec<usize>,
    /// Mel bands of each scale (Slaney scale and normalisation, 0 to sr/2).
    pub n_mels: Vec<usize>,
    /// Floor of the mel magnitude before the log.
    pub clamp_eps: f64,
    /// Exponent applied to the floored mel magnitude inside the log.
    pub pow: f64,
    /// Weight of the log-mel L1 term.
    pub log_weight: f64,
    /// Weight of the linear-mel L1 term (0 in DAC's `base.yml`).
    pub mag_weight: f64,
}

impl MelLossConfig {
    /// DAC `conf/base.yml` at 16 kHz, as named by the paper: windows 32…2048 (hop = window/4),
    /// 5…320 mel bands, clamp 1e-5, pow 1, log weight 1, magnitude weight 0.
    pub fn dac() -> Self {
        Self {
            sample_rate: 16_000,
            windows: vec![32, 64, 128, 256, 512, 1024, 2048],
            n_mels: vec![5, 10, 20, 40, 80, 160, 320],
            clamp_eps: 1e-5,
            pow: 1.0,
            log_weight: 1.0,
            mag_weight: 0.0,
        }
    }

    /// Build the loss (its spectrogram constants) on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> MultiScaleMelLoss<B> {
        assert_eq!(
            self.windows.len(),
            self.n_mels.len(),
            "one mel count per window"
        );
        let scales = self
            .windows
            .iter()
            .zip(&self.n_mels)
            .map(|(&w, &m)| {
                let fb =
                    slaney_filterbank(self.sample_rate, w, m, 0.0, self.sample_rate as f64 / 2.0);
                MelSpectrogram::new(
                    &StftConfig::new(w, w / 4),
                    &fb,
                    SpectrumKind::Magnitude,
                    device,
                )
            })
            .collect();
        MultiScaleMelLoss {
            scales,
            clamp_eps: self.clamp_eps,
            pow: self.pow,
            log_weight: self.log_weight,
            mag_weight: self.mag_weight,
        }
    }
}

/// The multi-scale mel loss; a constant module (no parameters).
#[derive(Module, Debug)]
pub struct MultiScaleMelLoss<B: Backend> {
    scales: Vec<MelSpectrogram<B>>,
    clamp_eps: f64,
    pow: f64,
    log_weight: f64,
    mag_weight: f64,
}

impl<B: Backend> MultiScaleMelLoss<B> {
    /// `L_mel(x̂, x) = Σ_s [ w_log · mean|log10(max(M_s(x̂), ε)^p) − log10(max(M_s(x), ε)^p)|
    ///                    + w_mag · mean|M_s(x̂) − M_s(x)| ]`
    ///
    /// where `M_s` is the Slaney mel magnitude spectrogram of scale `s` (periodic Hann window,
    /// centred reflect-padded STFT, hop = window/4) and each mean runs over every element. A sum
    /// over scales of per-scale means, as DAC's `MelSpectrogramLoss`. `estimate` and `reference`
    /// are `[B, N]`; the gradient is finite on digital silence.
    pub fn mel_loss(&self, estimate: Tensor<B, 2>, reference: Tensor<B, 2>) -> Tensor<B, 1> {
        self.per_scale(estimate, reference)
            .into_iter()
            .reduce(|a, b| a + b)
            .expect("at least one scale")
    }

    /// The terms `ℓ_s` of [`Self::mel_loss`], one per scale, in window order.
    pub fn per_scale(&self, estimate: Tensor<B, 2>, reference: Tensor<B, 2>) -> Vec<Tensor<B, 1>> {
        self.scales
            .iter()
            .map(|mel| {
                let m_est = mel.forward(estimate.clone());
                let m_ref = mel.forward(reference.clone());
                let mut loss = (log10_clamped(m_est.clone(), self.clamp_eps)
                    - log10_clamped(m_ref.clone(), self.clamp_eps))
                .abs()
                .mean()
                .mul_scalar(self.pow * self.log_weight);
                if self.mag_weight != 0.0 {
                    loss = loss + (m_est - m_ref).abs().mean().mul_scalar(self.mag_weight);
                }
                loss
            })
            .collect()
    }

    /// Mel magnitude spectrogram of scale `s`, `[B, n_mels, frames]` (for inspection and tests).
    pub fn mel(&self, s: usize, x: Tensor<B, 2>) -> Tensor<B, 3> {
        self.scales[s].forward(x)
    }
}
