//! Inverse STFT for any `n_fft`: inverse real DFT as a matmul, windowed overlap-add, and division
//! by the exact window envelope.

use std::f64::consts::PI;

use burn::prelude::*;
use burn::tensor::ops::PadMode;

use crate::window::{hann_periodic_f64, overlap_add_envelope};

/// How much of the overlap-added signal an [`Istft`] keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IstftPadding {
    /// Vocos "same" padding: trim `(n_fft − hop)/2` samples from both ends, giving `hop·F`
    /// samples for `F` frames (the LoSATok decoder head).
    Same,
    /// `torch.istft(center=True)`: trim `n_fft/2` from both ends, giving `hop·(F − 1)` samples.
    Center,
}

/// Settings of an inverse STFT with a periodic Hann synthesis window of length `n_fft`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IstftConfig {
    /// Transform (and window) length; any positive size.
    pub n_fft: usize,
    /// Hop between frames.
    pub hop: usize,
    /// Which part of the overlap-added signal is returned.
    pub padding: IstftPadding,
}

impl IstftConfig {
    /// A new inverse transform.
    pub fn new(n_fft: usize, hop: usize, padding: IstftPadding) -> Self {
        Self {
            n_fft,
            hop,
            padding,
        }
    }

    /// Samples trimmed from each end of the overlap-added buffer.
    pub fn trim(&self) -> usize {
        match self.padding {
            IstftPadding::Same => (self.n_fft - self.hop) / 2,
            IstftPadding::Center => self.n_fft / 2,
        }
    }

    /// Output length for `frames` frames.
    pub fn output_len(&self, frames: usize) -> usize {
        let full = (frames.max(1) - 1) * self.hop + self.n_fft;
        full.saturating_sub(2 * self.trim())
    }

    /// Build the transform on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Istft<B> {
        let n = self.n_fft;
        assert!(
            n > 0 && self.hop > 0 && self.hop <= n,
            "ISTFT needs 0 < hop ≤ n_fft"
        );
        let k = n / 2 + 1;
        let w = hann_periodic_f64(n);
        // basis[j, t]: rows 0..k give c_j/n·cos(2πjt/n)·w[t], rows k..2k give −c_j/n·sin(2πjt/n)·w[t],
        // with c_j = 1 for DC and Nyquist and 2 otherwise. The sine rows of DC and Nyquist are
        // zero: a c2r inverse ignores those imaginary parts.
        let mut basis = vec![0f32; 2 * k * n];
        for j in 0..k {
            let edge = j == 0 || 2 * j == n;
            let c = if edge { 1.0 } else { 2.0 } / n as f64;
            for t in 0..n {
                let a = 2.0 * PI * ((j * t) % n) as f64 / n as f64;
                basis[j * n + t] = (c * a.cos() * w[t]) as f32;
                if !edge {
                    basis[(k + j) * n + t] = (-c * a.sin() * w[t]) as f32;
                }
            }
        }
        Istft {
            basis: Tensor::from_data(TensorData::new(basis, [2 * k, n]), device),
            window: w,
            n_fft: n,
            hop: self.hop,
            trim: self.trim(),
        }
    }
}

/// Windowed overlap-add: frames `[B, F, n]` placed `hop` apart and summed, `[B, (F − 1)·hop + n]`.
///
/// Implemented as `⌈n/hop⌉` shifted, padded slices summed together (differentiable, and far
/// cheaper than a transposed convolution with an identity kernel).
pub fn overlap_add<B: Backend>(frames: Tensor<B, 3>, hop: usize) -> Tensor<B, 2> {
    let [b, f, n] = frames.dims();
    let r = n.div_ceil(hop);
    let frames = if r * hop > n {
        frames.pad([(0, r * hop - n)], PadMode::Constant(0.0))
    } else {
        frames
    };
    let out_len = (f - 1) * hop + n;
    let mut acc: Option<Tensor<B, 2>> = None;
    for j in 0..r {
        let piece = frames
            .clone()
            .narrow(2, j * hop, hop)
            .reshape([b, f * hop])
            .pad([(j * hop, (r - 1 - j) * hop)], PadMode::Constant(0.0));
        acc = Some(match acc {
            Some(a) => a + piece,
            None => piece,
        });
    }
    acc.expect("at least one slice").narrow(1, 0, out_len)
}

/// An inverse short-time Fourier transform (see [`IstftConfig`]); a constant module.
#[derive(Module, Debug)]
pub struct Istft<B: Backend> {
    /// `[2·n_freqs, n_fft]`: scaled, windowed inverse-DFT rows (cosine, then negative sine).
    basis: Tensor<B, 2>,
    window: Vec<f64>,
    n_fft: usize,
    hop: usize,
    trim: usize,
}

impl<B: Backend> Istft<B> {
    /// Invert a time-major spectrum (`re`, `im`: `[B, F, n_fft/2 + 1]`) to `[B, L]`.
    ///
    /// Each frame is the inverse real DFT (1/n scaling, imaginary parts of DC and Nyquist
    /// ignored), multiplied by the synthesis window; the frames are overlap-added, trimmed
    /// according to the padding mode, and divided by the identically trimmed envelope
    /// `Σ_k w²[t − hop·k]` (exact at the edges, not a constant).
    pub fn forward(&self, re: Tensor<B, 3>, im: Tensor<B, 3>) -> Tensor<B, 2> {
        let [b, f, _] = re.dims();
        let frames = Tensor::cat(vec![re, im], 2).matmul(self.basis.clone().unsqueeze::<3>());
        let y = overlap_add(frames, self.hop);
        let env = self.envelope(f, &y.device());
        let len = env.dims()[1];
        y.narrow(1, self.trim, len) / env.expand([b, len])
    }

    /// Hop between frames.
    pub fn hop(&self) -> usize {
        self.hop
    }

    /// The trimmed window-square envelope for `frames` frames, `[1, L]`.
    pub fn envelope(&self, frames: usize, device: &B::Device) -> Tensor<B, 2> {
        let env = overlap_add_envelope(&self.window, self.hop, frames);
        let len = env.len().saturating_sub(2 * self.trim);
        let trimmed = env[self.trim..self.trim + len].to_vec();
        Tensor::from_data(TensorData::new(trimmed, [1, len]), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stft::StftConfig;
    use burn::backend::{Autodiff, Flex};

    fn signal(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 0.013).sin() * 0.5 + (i as f32 * 0.7).cos() * 0.1)
            .collect()
    }

    #[test]
    fn center_istft_inverts_center_stft() {
        // torch.istft(center=True) ∘ torch.stft(center=True) is the identity on hop·(F−1) samples
        let dev = Default::default();
        let n = 320 * 20;
        let x = Tensor::<Flex, 2>::from_data(TensorData::new(signal(n), [1, n]), &dev);
        let spec = StftConfig::new(1280, 320)
            .init::<Flex>(&dev)
            .forward(x.clone());
        let y = IstftConfig::new(1280, 320, IstftPadding::Center)
            .init::<Flex>(&dev)
            .forward(spec.re, spec.im);
        assert_eq!(y.dims(), [1, n]);
        let d = (y - x).abs().max().into_scalar();
        assert!(d < 1e-5, "round trip error {d}");
    }

    #[test]
    fn overlap_add_equals_direct_sum() {
        let dev = Default::default();
        let (f, n, hop) = (5, 7, 3);
        let v: Vec<f32> = (0..f * n).map(|i| i as f32 * 0.5 - 3.0).collect();
        let y = overlap_add(
            Tensor::<Flex, 3>::from_data(TensorData::new(v.clone(), [1, f, n]), &dev),
            hop,
        )
        .into_data()
        .to_vec::<f32>()
        .unwrap();
        let mut want = vec![0f32; (f - 1) * hop + n];
        for fr in 0..f {
            for t in 0..n {
                want[fr * hop + t] += v[fr * n + t];
            }
        }
        assert_eq!(y, want);
    }

    #[test]
    fn ignores_imaginary_parts_of_dc_and_nyquist() {
        let dev = Default::default();
        let istft = IstftConfig::new(16, 4, IstftPadding::Same).init::<Flex>(&dev);
        let re = Tensor::<Flex, 3>::ones([1, 6, 9], &dev);
        let im0 = Tensor::<Flex, 3>::zeros([1, 6, 9], &dev);
        let mut v = vec![0f32; 6 * 9];
        for f in 0..6 {
            v[f * 9] = 5.0; // DC
            v[f * 9 + 8] = -3.0; // Nyquist
        }
        let im1 = Tensor::<Flex, 3>::from_data(TensorData::new(v, [1, 6, 9]), &dev);
        let a = istft.forward(re.clone(), im0);
        let b = istft.forward(re, im1);
        assert_eq!(a.into_data(), b.into_data());
    }

    #[test]
    fn gradient_flows_through_the_inverse() {
        let dev = Default::default();
        let istft = IstftConfig::new(1280, 320, IstftPadding::Same).init::<Autodiff<Flex>>(&dev);
        let re = Tensor::<Autodiff<Flex>, 3>::ones([1, 4, 641], &dev).require_grad();
        let im = Tensor::<Autodiff<Flex>, 3>::zeros([1, 4, 641], &dev).require_grad();
        let y = istft.forward(re.clone(), im.clone());
        let g = y.square().sum().backward();
        let gr = re.grad(&g).unwrap();
        assert!(gr.clone().is_finite().all().into_scalar());
        assert!(gr.abs().sum().into_scalar() > 0.0);
    }
}
