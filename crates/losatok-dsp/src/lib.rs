//! The one DSP layer of losatok-rs: windows, STFT / ISTFT for any `n_fft`, mel filterbanks
//! (HTK and Slaney), decibel and log scalings.
//!
//! Everything that runs on audio is a tensor operation generic over `B: Backend` and
//! differentiable under `Autodiff`; the same code serves the model front ends, the ISTFT head of
//! the decoder and the training losses. Constant tables (windows, filterbanks) are plain host
//! functions, built the way the reference libraries build them so that they agree to the bit
//! where the reference allows it.
//!
//! Layout convention: complex spectra are **time-major** (`[B, frames, n_freqs]`, see
//! [`Spectrum`]); mel spectrograms are `[B, n_mels, frames]` as in torch.

pub mod frontend;
pub mod istft;
pub mod mel;
pub mod melspec;
pub mod scale;
pub mod stft;
mod torch_pow;
pub mod window;

pub use frontend::{LogMagnitudeMel, LogMagnitudeMelConfig, LogPowerMel, LogPowerMelConfig};
pub use istft::{overlap_add, Istft, IstftConfig, IstftPadding};
pub use mel::{htk_filterbank, mfd_filterbank, slaney_filterbank, Filterbank};
pub use melspec::{filterbank_tensor, mel_project, MelSpectrogram, SpectrumKind};
pub use scale::{db, log10_clamped, log_clamped, power_to_db, power_to_db_floored};
pub use stft::{reflect_pad, Spectrum, Stft, StftConfig, SILENT_POWER};
pub use window::{hann_periodic, overlap_add_envelope};
