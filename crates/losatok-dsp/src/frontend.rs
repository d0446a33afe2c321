//! The two spectrogram front ends of LoSATok, composed from the primitives of this crate.

use burn::prelude::*;

use crate::mel::{htk_filterbank, Filterbank};
use crate::melspec::{MelSpectrogram, SpectrumKind};
use crate::scale::{db, log_clamped, power_to_db, power_to_db_floored};
use crate::stft::StftConfig;

/// Settings of [`LogPowerMel`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogPowerMelConfig {
    /// Sample rate (Hz).
    pub sample_rate: u32,
    /// STFT size (= window length).
    pub n_fft: usize,
    /// STFT hop.
    pub hop: usize,
    /// Mel bands.
    pub n_mels: usize,
    /// Lowest band edge (Hz).
    pub f_min: f64,
    /// Highest band edge (Hz).
    pub f_max: f64,
    /// Floor of the power before the log.
    pub amin: f64,
    /// Dynamic range kept below each item's maximum (dB).
    pub top_db: Option<f64>,
}

impl LogPowerMelConfig {
    /// MiDashengLM's audio-encoder front end (model-spec §2.1): 16 kHz, n_fft 512, hop 160,
    /// 64 HTK bands over 0–8 kHz, amin 1e-10, top_db 120 per item.
    pub fn dasheng() -> Self {
        Self {
            sample_rate: 16_000,
            n_fft: 512,
            hop: 160,
            n_mels: 64,
            f_min: 0.0,
            f_max: 8000.0,
            amin: 1e-10,
            top_db: Some(120.0),
        }
    }

    /// The filterbank this front end computes (torchaudio's f32 recipe).
    pub fn filterbank(&self) -> Filterbank {
        htk_filterbank(
            self.n_fft / 2 + 1,
            self.f_min,
            self.f_max,
            self.n_mels,
            self.sample_rate,
        )
    }

    /// The STFT settings.
    pub fn stft(&self) -> StftConfig {
        StftConfig::new(self.n_fft, self.hop)
    }

    /// Build on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> LogPowerMel<B> {
        LogPowerMel {
            mel: MelSpectrogram::new(
                &self.stft(),
                &self.filterbank(),
                SpectrumKind::Power,
                device,
            ),
            amin: self.amin,
            top_db: self.top_db,
        }
    }
}

/// Power mel spectrogram in decibels: `v = 10·log10(max(|X|²ᵀ·W, amin))`, floored per item at
/// `max(v[b]) − top_db`. `[B, N]` → `[B, n_mels, ⌊N/hop⌋ + 1]`.
#[derive(Module, Debug)]
pub struct LogPowerMel<B: Backend> {
    mel: MelSpectrogram<B>,
    amin: f64,
    top_db: Option<f64>,
}

impl<B: Backend> LogPowerMel<B> {
    /// `[B, N]` → `[B, n_mels, frames]` in dB.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 3> {
        power_to_db(self.mel.forward(x), self.amin, self.top_db)
    }

    /// The dB mel of a segment that carries its own STFT context (`n_fft/2` samples each side,
    /// reflected at the true signal edges), floored at `floor` (per item) instead of at the
    /// segment's own `max − top_db`. With the floor of the whole signal (see
    /// [`Self::max_db_padded`]), consecutive segments reproduce [`Self::forward`] exactly.
    pub fn forward_padded(&self, x: Tensor<B, 2>, floor: Tensor<B, 1>) -> Tensor<B, 3> {
        power_to_db_floored(self.mel.forward_padded(x), self.amin, floor)
    }

    /// Per-item maximum of `10·log10(max(mel, amin))` over the frames of a context-carrying
    /// segment, `[B]`.
    pub fn max_db_padded(&self, x: Tensor<B, 2>) -> Tensor<B, 1> {
        let v = db(self.mel.forward_padded(x), self.amin);
        let b = v.dims()[0];
        v.reshape([b as i64, -1]).max_dim(1).reshape([b])
    }

    /// The dynamic range kept below the maximum, if any.
    pub fn top_db(&self) -> Option<f64> {
        self.top_db
    }

    /// STFT size.
    pub fn n_fft(&self) -> usize {
        self.mel.stft.n_fft()
    }

    /// STFT hop.
    pub fn hop(&self) -> usize {
        self.mel.stft.hop()
    }
}

/// Settings of [`LogMagnitudeMel`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogMagnitudeMelConfig {
    /// Sample rate (Hz).
    pub sample_rate: u32,
    /// STFT size (= window length).
    pub n_fft: usize,
    /// STFT hop.
    pub hop: usize,
    /// Mel bands (HTK, 0 to sr/2, no normalisation).
    pub n_mels: usize,
    /// Floor of the mel magnitude before the natural log.
    pub clip: f64,
}

impl LogMagnitudeMelConfig {
    /// The Vocos / DashengTokenizer acoustic front end (model-spec §4): n_fft 1024, hop 160,
    /// 128 HTK bands over 0–8 kHz, magnitude (power 1), `ln(max(mel, 1e-7))`.
    pub fn vocos() -> Self {
        Self {
            sample_rate: 16_000,
            n_fft: 1024,
            hop: 160,
            n_mels: 128,
            clip: 1e-7,
        }
    }

    /// The filterbank this front end computes (bit-exact with the checkpoint's `mel_scale.fb`).
    pub fn filterbank(&self) -> Filterbank {
        htk_filterbank(
            self.n_fft / 2 + 1,
            0.0,
            self.sample_rate as f64 / 2.0,
            self.n_mels,
            self.sample_rate,
        )
    }

    /// The STFT settings.
    pub fn stft(&self) -> StftConfig {
        StftConfig::new(self.n_fft, self.hop)
    }

    /// Build on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> LogMagnitudeMel<B> {
        LogMagnitudeMel {
            mel: MelSpectrogram::new(
                &self.stft(),
                &self.filterbank(),
                SpectrumKind::Magnitude,
                device,
            ),
            clip: self.clip,
        }
    }
}

/// Natural-log magnitude mel spectrogram: `ln(max(|X|ᵀ·W, clip))`, `[B, N]` →
/// `[B, n_mels, ⌊N/hop⌋ + 1]`.
#[derive(Module, Debug)]
pub struct LogMagnitudeMel<B: Backend> {
    mel: MelSpectrogram<B>,
    clip: f64,
}

impl<B: Backend> LogMagnitudeMel<B> {
    /// `[B, N]` → `[B, n_mels, frames]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 3> {
        log_clamped(self.mel.forward(x), self.clip)
    }

    /// The same on a segment that carries its own STFT context (`n_fft/2` samples each side).
    pub fn forward_padded(&self, x: Tensor<B, 2>) -> Tensor<B, 3> {
        log_clamped(self.mel.forward_padded(x), self.clip)
    }

    /// Replace the filterbank with a loaded `[n_freqs, n_mels]` table (the checkpoint buffer).
    pub fn with_filterbank(mut self, fb: Tensor<B, 2>) -> Self {
        self.mel = self.mel.with_filterbank(fb);
        self
    }

    /// The filterbank in use, `[n_freqs, n_mels]`.
    pub fn filterbank(&self) -> Tensor<B, 2> {
        self.mel.fb.clone()
    }

    /// STFT size.
    pub fn n_fft(&self) -> usize {
        self.mel.stft.n_fft()
    }

    /// STFT hop.
    pub fn hop(&self) -> usize {
        self.mel.stft.hop()
    }
}
