//! # losatok
//!
//! LoSATok — a low-dimensional semantic-acoustic audio tokenizer — in Rust on Burn: 16 kHz audio
//! → a 128-dimensional continuous latent at 25 Hz → audio, plus the nine intermediate features of
//! the reference implementation.
//!
//! ```no_run
//! use losatok::{Cpu, LosatokConfig, Sampling, Tokenizer};
//!
//! # fn main() -> Result<(), losatok::Error> {
//! let device = Default::default();
//! let tok = Tokenizer::<Cpu>::load(
//!     "ckpts/losatok_kl1e-2.pth".as_ref(),
//!     &LosatokConfig::official(),
//!     &device,
//! )?;
//! // whole tensors, as the reference's encode/decode
//! let wav = losatok::audio::load("speech.wav")?; // 16 kHz mono, as librosa.load
//! let x = losatok::samples_to_tensor::<Cpu>(&wav, &device);
//! let features = tok.encode(x, Sampling::Mean)?; // z, mu, logvar, … each [1, t, ·]
//! let audio = tok.decode(features.z.clone())?; // [1, 640·t]
//! # let _ = audio;
//! // files of any length, in bounded memory
//! tok.reconstruct_file("long.flac".as_ref(), "long.recon.wav".as_ref(), &Default::default())?;
//! # Ok(())
//! # }
//! ```
//!
//! Crates: [`audio`] (file I/O matching librosa), [`dsp`] (the differentiable STFT / mel layer),
//! [`models`] (the networks, configs, checkpoints, chunked processing), [`losses`] (training
//! objectives), [`fs`] (how every output is written: atomically, never over an input, never
//! into a device, with temporaries removed on signals).
//!
//! File paths given to the file operations may be `-`: standard input for inputs, standard
//! output for outputs. Programs that want temporaries removed on Ctrl-C call
//! [`fs::install_signal_cleanup`] once at start-up.

pub mod error;
pub mod features_file;
pub mod tokenizer;

pub use losatok_audio as audio;
pub use losatok_dsp as dsp;
pub use losatok_fs as fs;
pub use losatok_losses as losses;
pub use losatok_models as models;

pub use error::Error;
pub use features_file::{FeatureFile, FeatureMetadata, FeatureWriter};
pub use losatok_audio::WavFormat;
pub use losatok_models::{Features, Losatok, LosatokConfig, Sampling};
pub use tokenizer::{
    check_file_outputs, file_blocks, FileOptions, FileSummary, Progress, Tokenizer,
};

use burn::prelude::*;

/// The CPU backend (Burn's Flex).
pub type Cpu = burn::backend::Flex;

/// The CUDA backend (with kernel fusion), behind the `cuda` feature.
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda;

/// The wgpu backend (Vulkan, Metal, DirectX 12; with kernel fusion), behind the `wgpu` feature.
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu;

/// A mono signal as a `[1, N]` tensor.
pub fn samples_to_tensor<B: Backend>(samples: &[f32], device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(
        TensorData::new(samples.to_vec(), [1, samples.len()]),
        device,
    )
}

/// A `[1, N]` (or `[N]`-like) tensor's values on the host.
pub fn tensor_to_samples<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("float data")
}
