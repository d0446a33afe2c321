//! X-Codec (v1) `MultiFrequencyDiscriminator`, the default "MFD" (loss-spec §5).
//!
//! One sub-discriminator per hop `h` (16 kHz: 32 … 1024). Each branch sees a two-channel image
//! `[B, 2, F, T]` with `F = 2h + 1` and `T = ⌊N/h⌋ + 1`:
//!
//! 1. normalised STFT (`n_fft = win = 4h`, hop `h`, periodic Hann, centred, reflect padding),
//! 2. `mag = √max(re² + im², 1e-7)`,
//! 3. square HTK re-binning `mel = magᵀ·fb`, `fb` `[F, F]` floored at 1e-6,
//! 4. channels `[mel, clamp((20·log10(mel) − 20 + 100)/100, 0, 1)]` ("double" domain),
//!
//! then seven `ReflectionPad2d(1)` + weight-normalised 3×3 convolutions with LeakyReLU(0.2)
//! before every block but the first and stride 2 in blocks 1, 3 and 5. The logits are the
//! output of block 6 (`[B, 1, F', T']`); the feature maps are the **post-activation** outputs
//! `lrelu(conv_j(…))` of blocks 0–5 (the reference's in-place LeakyReLU overwrites the stored
//! maps).

use burn::prelude::*;
use burn::tensor::activation::leaky_relu;
use losatok_dsp::{filterbank_tensor, mel_project, mfd_filterbank, Stft, StftConfig};
use serde::{Deserialize, Serialize};

use super::weight_norm::{WnConv2d, WnConv2dConfig};
use super::DiscriminatorError;

/// Floor of the STFT power before the square root.
pub const MFD_POWER_FLOOR: f64 = 1e-7;
/// Slope of the LeakyReLU activations.
pub const MFD_LEAKY_SLOPE: f64 = 0.2;
/// `ref_level_db` of the log channel.
pub const MFD_REF_LEVEL_DB: f64 = 20.0;
/// `min_level_db` of the log channel.
pub const MFD_MIN_LEVEL_DB: f64 = -100.0;
/// Number of convolution blocks per branch.
pub const MFD_BLOCKS: usize = 7;
/// Output channels of block `j` as a divisor of the branch's `hidden_channels` (block 6 has 1).
const MFD_DIVISORS: [usize; 6] = [32, 16, 8, 4, 2, 1];

/// Settings of a [`MultiFrequencyDiscriminator`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfdConfig {
    /// Sample rate of the waveforms (sets the filterbank's frequency axis, 0 to sr/2).
    pub sample_rate: u32,
    /// STFT hop of each branch; the FFT (and window) size is four times the hop.
    pub hop_lengths: Vec<usize>,
    /// Widest channel count `c` of each branch; block channels are
    /// `c/32, c/16, c/8, c/4, c/2, c, 1`, so each must be a positive multiple of 32.
    pub hidden_channels: Vec<usize>,
}

impl MfdConfig {
    /// X-Codec's 16 kHz configuration: hops 32…1024, hidden channels 64, 128, 256, 512, 512,
    /// 512 (5.26 M parameters).
    pub fn official() -> Self {
        Self {
            sample_rate: 16_000,
            hop_lengths: vec![32, 64, 128, 256, 512, 1024],
            hidden_channels: vec![64, 128, 256, 512, 512, 512],
        }
    }

    /// The tiny configuration of the loss fixtures: the same hops, 32 hidden channels in every
    /// branch.
    pub fn tiny_fixture() -> Self {
        Self {
            hidden_channels: vec![32; 6],
            ..Self::official()
        }
    }

    /// Check the configuration.
    pub fn validate(&self) -> Result<(), DiscriminatorError> {
        let bad = |m: String| Err(DiscriminatorError::InvalidConfig(m));
        if self.hop_lengths.is_empty() {
            return bad("the MFD needs at least one hop length".into());
        }
        if self.hop_lengths.len() != self.hidden_channels.len() {
            return bad(format!(
                "the MFD needs one hidden channel count per hop ({} hops, {} channel counts)",
                self.hop_lengths.len(),
                self.hidden_channels.len()
            ));
        }
        if let Some(h) = self.hop_lengths.iter().find(|&&h| h == 0) {
            return bad(format!("MFD hop length {h} must be positive"));
        }
        if let Some(c) = self
            .hidden_channels
            .iter()
            .find(|&&c| c == 0 || !c.is_multiple_of(32))
        {
            return bad(format!(
                "MFD hidden channels {c} must be a positive multiple of 32"
            ));
        }
        if self.sample_rate == 0 {
            return bad("the MFD sample rate must be positive".into());
        }
        Ok(())
    }

    /// The shortest waveform every branch accepts: each reflect padding needs both spatial
    /// dimensions ≥ 2 at every block, so the largest hop `h` needs `⌊N/h⌋ + 1 ≥ 9` frames,
    /// i.e. `N ≥ 8·h` (8192 samples at 16 kHz).
    pub fn min_input_len(&self) -> usize {
        self.hop_lengths
            .iter()
            .map(|&h| branch_min_input_len(h))
            .max()
            .unwrap_or(0)
    }

    /// Build the discriminator with freshly initialised weights (PyTorch's default conv init
    /// with `g = ‖v‖`).
    pub fn init<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<MultiFrequencyDiscriminator<B>, DiscriminatorError> {
        self.validate()?;
        let stfts = self
            .hop_lengths
            .iter()
            .map(|&h| MfdInput::new(h, self.sample_rate, device))
            .collect();
        let discriminators = self
            .hidden_channels
            .iter()
            .map(|&c| FrequencyDiscriminator::new(c, device))
            .collect();
        Ok(MultiFrequencyDiscriminator {
            discriminators,
            stfts,
            min_input_len: self.min_input_len(),
        })
    }
}

/// Whether a spatial size `d` survives the seven blocks (reflect padding by 1 needs `d ≥ 2`
/// before every block; stride-2 blocks map `d` to `⌈d/2⌉`).
fn survives_blocks(mut d: usize) -> bool {
    for j in 0..MFD_BLOCKS {
        if d < 2 {
            return false;
        }
        if j % 2 == 1 {
            d = d.div_ceil(2);
        }
    }
    true
}

/// Shortest input of the branch with hop `h`.
fn branch_min_input_len(h: usize) -> usize {
    let stft_min = StftConfig::new(4 * h, h).min_input_len();
    // frames T = ⌊N/h⌋ + 1; the smallest T that survives, then the smallest N giving it
    let t_min = (1..).find(|&t| survives_blocks(t)).unwrap_or(1);
    // F = 2h + 1 ≥ 3 survives for any h ≥ 1
    stft_min.max((t_min - 1) * h)
}

/// The input representation of one branch: STFT, floored magnitude, square HTK re-binning and
/// the "double" domain (a constant module).
#[derive(Module, Debug)]
pub struct MfdInput<B: Backend> {
    /// Normalised STFT, `n_fft = 4·hop`.
    pub stft: Stft<B>,
    /// The square HTK table `[F, F]`, applied as `magᵀ·fb` (the reference's
    /// `stfts.{i}.mel_scale.fb` buffer).
    pub fb: Tensor<B, 2>,
}

impl<B: Backend> MfdInput<B> {
    /// The branch with hop `hop` at `sample_rate`.
    pub fn new(hop: usize, sample_rate: u32, device: &B::Device) -> Self {
        let cfg = StftConfig::new(4 * hop, hop).with_normalized(true);
        let fb = mfd_filterbank(cfg.n_freqs(), sample_rate);
        Self {
            stft: cfg.init(device),
            fb: filterbank_tensor(&fb, device),
        }
    }

    /// `[B, N]` → `[B, 2, F, T]`: channel 0 the re-binned magnitude, channel 1 its clamped,
    /// normalised decibel value `clamp((20·log10(mel) − 20 + 100)/100, 0, 1)`.
    pub fn forward(&self, wave: Tensor<B, 2>) -> Tensor<B, 4> {
        let mag = self
            .stft
            .forward(wave)
            .magnitude_clamped(MFD_POWER_FLOOR, None);
        let mel = mel_project(mag, self.fb.clone()); // [B, F, T]
        let log = mel
            .clone()
            .log()
            .mul_scalar(20.0 / std::f64::consts::LN_10)
            .sub_scalar(MFD_REF_LEVEL_DB)
            .sub_scalar(MFD_MIN_LEVEL_DB)
            .div_scalar(-MFD_MIN_LEVEL_DB)
            .clamp(0.0, 1.0);
        Tensor::stack(vec![mel, log], 1)
    }

    /// Number of frequency bins `F`.
    pub fn n_freqs(&self) -> usize {
        self.fb.dims()[0]
    }
}

/// One sub-discriminator (`FrequenceDiscriminator(2, c)`): seven reflect-padded weight-normalised
/// 3×3 convolutions.
#[derive(Module, Debug)]
pub struct FrequencyDiscriminator<B: Backend> {
    /// The seven convolutions (PyTorch: `discriminator.{j}.{1|2}`, the conv's index in its
    /// `nn.Sequential`).
    pub discriminator: Vec<WnConv2d<B>>,
}

impl<B: Backend> FrequencyDiscriminator<B> {
    /// A branch whose widest block has `c` channels.
    pub fn new(c: usize, device: &B::Device) -> Self {
        let mut chans = vec![2usize];
        chans.extend(MFD_DIVISORS.iter().map(|d| c / d));
        chans.push(1);
        let discriminator = (0..MFD_BLOCKS)
            .map(|j| {
                let s = if j % 2 == 1 { 2 } else { 1 };
                WnConv2dConfig::new(chans[j], chans[j + 1], [3, 3])
                    .with_stride([s, s])
                    .init(device)
            })
            .collect();
        Self { discriminator }
    }

    /// `[B, 2, F, T]` → (logits `[B, 1, F', T']`, six post-activation feature maps).
    pub fn forward(&self, x: Tensor<B, 4>) -> (Tensor<B, 4>, Vec<Tensor<B, 4>>) {
        let mut fmaps = Vec::with_capacity(self.discriminator.len().saturating_sub(1));
        let mut h = x;
        for (j, conv) in self.discriminator.iter().enumerate() {
            if j > 0 {
                h = leaky_relu(h, MFD_LEAKY_SLOPE);
                fmaps.push(h.clone());
            }
            h = conv.forward(reflect_pad_1(h));
        }
        (h, fmaps)
    }
}

/// Reflection padding by one on each side of the last two dimensions (PyTorch's
/// `ReflectionPad2d(1)`), `[B, C, H, W]` → `[B, C, H + 2, W + 2]`; `H, W ≥ 2`.
///
/// Written as one gather per dimension (indices `1, 0, 1, …, n − 1, n − 2`) rather than with
/// `Tensor::pad`: Burn 0.21 builds a reflect pad from a zero tensor and three `slice_assign`s per
/// dimension, and under autodiff each of those costs full-size copies in the backward pass. In
/// the stage-2 step at full size on the CPU those copies were about a ninth of all the time;
/// a gather's backward is one scatter-add. The values are identical.
pub fn reflect_pad_1<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    let device = x.device();
    let indices = |n: usize| {
        let n = n as i64;
        let v: Vec<i64> = std::iter::once(1)
            .chain(0..n)
            .chain(std::iter::once(n - 2))
            .collect();
        let len = v.len();
        Tensor::<B, 1, Int>::from_data(TensorData::new(v, [len]), &device)
    };
    x.select(2, indices(h)).select(3, indices(w))
}

/// X-Codec's `MultiFrequencyDiscriminator` (see the module documentation).
#[derive(Module, Debug)]
pub struct MultiFrequencyDiscriminator<B: Backend> {
    /// One sub-discriminator per hop.
    pub discriminators: Vec<FrequencyDiscriminator<B>>,
    /// The input representation of each branch.
    pub stfts: Vec<MfdInput<B>>,
    min_input_len: usize,
}

impl<B: Backend> MultiFrequencyDiscriminator<B> {
    /// The shortest accepted waveform (see [`MfdConfig::min_input_len`]).
    pub fn min_input_len(&self) -> usize {
        self.min_input_len
    }

    /// The branch inputs `[B, 2, F, T]` of `wave` `[B, N]` (for inspection and tests).
    pub fn inputs(&self, wave: Tensor<B, 2>) -> Vec<Tensor<B, 4>> {
        self.stfts.iter().map(|s| s.forward(wave.clone())).collect()
    }

    /// `wave` `[B, N]` (N ≥ [`Self::min_input_len`], unchecked) → per branch the logits and the
    /// six feature maps.
    pub(crate) fn forward_unchecked(
        &self,
        wave: Tensor<B, 2>,
    ) -> (Vec<Tensor<B, 4>>, Vec<Vec<Tensor<B, 4>>>) {
        self.stfts
            .iter()
            .zip(&self.discriminators)
            .map(|(input, disc)| disc.forward(input.forward(wave.clone())))
            .unzip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_length_is_eight_hops_of_the_largest_branch() {
        assert_eq!(MfdConfig::official().min_input_len(), 8192);
        assert!(!survives_blocks(8));
        assert!(survives_blocks(9));
        assert_eq!(branch_min_input_len(32), 256);
    }

    #[test]
    fn channel_counts_follow_the_reference() {
        let dev = Default::default();
        let d = FrequencyDiscriminator::<burn::backend::Flex>::new(64, &dev);
        let outs: Vec<usize> = d.discriminator.iter().map(|c| c.out_channels()).collect();
        assert_eq!(outs, vec![2, 4, 8, 16, 32, 64, 1]);
    }

    #[test]
    fn reflect_pad_1_matches_burns_reflect_pad_values_and_gradients() {
        use burn::backend::{Autodiff, Flex};
        use burn::tensor::ops::PadMode;
        type Ad = Autodiff<Flex>;
        let dev = Default::default();
        let values: Vec<f32> = (0..2 * 3 * 4 * 5)
            .map(|i| ((i * 37) % 23) as f32 - 11.0)
            .collect();
        let x = || {
            Tensor::<Ad, 4>::from_data(TensorData::new(values.clone(), [2, 3, 4, 5]), &dev)
                .require_grad()
        };
        // a weight per output element, so the gradient sees where every value went
        let weights = Tensor::<Ad, 4>::from_data(
            TensorData::new(
                (0..2 * 3 * 6 * 7).map(|i| i as f32 * 0.01).collect(),
                [2, 3, 6, 7],
            ),
            &dev,
        );
        let (a, b) = (x(), x());
        let ours = reflect_pad_1(a.clone());
        let burns = b.clone().pad([(1, 1), (1, 1)], PadMode::Reflect);
        assert_eq!(ours.to_data(), burns.to_data());
        let ga = (ours * weights.clone()).sum().backward();
        let gb = (burns * weights).sum().backward();
        assert_eq!(
            a.grad(&ga).unwrap().to_data(),
            b.grad(&gb).unwrap().to_data()
        );
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let mut c = MfdConfig::official();
        c.hidden_channels[2] = 48;
        assert!(c.validate().is_err());
        let mut c = MfdConfig::official();
        c.hop_lengths.pop();
        assert!(c.validate().is_err());
    }
}
