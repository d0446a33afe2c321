//! Mel spectrograms: an [`Stft`], a magnitude or power, and a filterbank projection.

use burn::prelude::*;

use crate::mel::Filterbank;
use crate::stft::{Spectrum, Stft, StftConfig};

/// Which spectrum a [`MelSpectrogram`] projects.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SpectrumKind {
    /// `|X|²` (the MiDashengLM front end).
    Power,
    /// `|X|` with a finite gradient on silence (Vocos front end, DAC mel loss); see
    /// [`Spectrum::magnitude`].
    Magnitude,
    /// `√clamp(|X|², lo, hi)` (the discriminators).
    ClampedMagnitude {
        /// Lower clamp of the power.
        lo: f64,
        /// Optional upper clamp of the power.
        hi: Option<f64>,
    },
}

impl SpectrumKind {
    /// Apply to a complex spectrum, `[B, frames, n_freqs]`.
    pub fn apply<B: Backend>(&self, spec: &Spectrum<B>) -> Tensor<B, 3> {
        match *self {
            SpectrumKind::Power => spec.power(),
            SpectrumKind::Magnitude => spec.magnitude(),
            SpectrumKind::ClampedMagnitude { lo, hi } => spec.magnitude_clamped(lo, hi),
        }
    }
}

/// Upload a filterbank as a `[n_freqs, n_mels]` tensor.
pub fn filterbank_tensor<B: Backend>(fb: &Filterbank, device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(
        TensorData::new(fb.data.clone(), [fb.n_freqs, fb.n_mels]),
        device,
    )
}

/// Project a time-major spectrum `[B, frames, n_freqs]` through a `[n_freqs, n_mels]`
/// filterbank, giving the usual `[B, n_mels, frames]` mel spectrogram (`mel = specᵀ·fb`).
pub fn mel_project<B: Backend>(spec: Tensor<B, 3>, fb: Tensor<B, 2>) -> Tensor<B, 3> {
    spec.matmul(fb.unsqueeze::<3>()).swap_dims(1, 2)
}

/// STFT → power or magnitude → mel projection, `[B, N]` → `[B, n_mels, frames]`.
#[derive(Module, Debug)]
pub struct MelSpectrogram<B: Backend> {
    /// The transform.
    pub stft: Stft<B>,
    /// `[n_freqs, n_mels]` filterbank (a constant, or loaded from a checkpoint buffer).
    pub fb: Tensor<B, 2>,
    #[module(skip)]
    kind: SpectrumKind,
}

impl<B: Backend> MelSpectrogram<B> {
    /// A mel spectrogram from its parts.
    pub fn new(stft: &StftConfig, fb: &Filterbank, kind: SpectrumKind, device: &B::Device) -> Self {
        assert_eq!(
            fb.n_freqs,
            stft.n_freqs(),
            "filterbank rows must match the STFT bins"
        );
        Self {
            stft: stft.init(device),
            fb: filterbank_tensor(fb, device),
            kind,
        }
    }

    /// `[B, N]` → `[B, n_mels, frames]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 3> {
        let spec = self.kind.apply(&self.stft.forward(x));
        mel_project(spec, self.fb.clone())
    }

    /// The same on a segment that already carries its STFT context (see
    /// [`Stft::forward_padded`](crate::Stft::forward_padded)).
    pub fn forward_padded(&self, x: Tensor<B, 2>) -> Tensor<B, 3> {
        let spec = self.kind.apply(&self.stft.forward_padded(x));
        mel_project(spec, self.fb.clone())
    }

    /// Replace the filterbank (e.g. with the table stored in a checkpoint).
    pub fn with_filterbank(mut self, fb: Tensor<B, 2>) -> Self {
        self.fb = fb;
        self
    }
}
