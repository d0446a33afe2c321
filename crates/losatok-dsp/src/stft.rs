//! Short-time Fourier transform for any `n_fft`, as a windowed-DFT matrix product.
//!
//! Burn 0.21's own FFT is power-of-two only and not differentiable; LoSATok needs 1280-point
//! transforms and gradients through every spectrogram of the losses. A DFT as one matmul against a
//! precomputed `[n_fft, 2·n_freqs]` basis works on every backend, is differentiable with core ops,
//! and for the sizes used here costs far less than the networks around it.

use std::f64::consts::PI;

use burn::prelude::*;
use burn::tensor::ops::PadMode;

use crate::window::hann_periodic_f64;

/// Settings of a short-time Fourier transform with a periodic Hann window of length `n_fft`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StftConfig {
    /// Transform (and window) length; any positive size, not only powers of two.
    pub n_fft: usize,
    /// Hop between frames, in samples.
    pub hop: usize,
    /// `torch.stft(center=True)`: reflect-pad the signal by `n_fft/2` on both sides, so frame `f`
    /// is centred on sample `f·hop`. Otherwise frames start at sample `f·hop` with no padding.
    pub center: bool,
    /// `torch.stft(normalized=True)`: multiply the spectrum by `1/√n_fft`.
    pub normalized: bool,
}

impl StftConfig {
    /// Centred (reflect-padded), unnormalised STFT: the convention of every LoSATok front end and
    /// of the mel loss.
    pub fn new(n_fft: usize, hop: usize) -> Self {
        Self {
            n_fft,
            hop,
            center: true,
            normalized: false,
        }
    }

    /// The same transform with `normalized` set.
    pub fn with_normalized(mut self, normalized: bool) -> Self {
        self.normalized = normalized;
        self
    }

    /// The same transform with `center` set.
    pub fn with_center(mut self, center: bool) -> Self {
        self.center = center;
        self
    }

    /// Number of one-sided frequency bins, `n_fft/2 + 1`.
    pub fn n_freqs(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Number of frames for a signal of `n` samples: `⌊n/hop⌋ + 1` when centred, otherwise
    /// `⌊(n − n_fft)/hop⌋ + 1` (0 if the signal is shorter than one window).
    pub fn num_frames(&self, n: usize) -> usize {
        if self.center {
            n / self.hop + 1
        } else if n >= self.n_fft {
            (n - self.n_fft) / self.hop + 1
        } else {
            0
        }
    }

    /// The shortest signal the transform accepts: reflect padding by `n_fft/2` needs more than
    /// `n_fft/2` samples; without centring one full window is needed.
    pub fn min_input_len(&self) -> usize {
        if self.center {
            self.n_fft / 2 + 1
        } else {
            self.n_fft
        }
    }

    /// Build the transform on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Stft<B> {
        assert!(
            self.n_fft > 0 && self.hop > 0,
            "STFT needs n_fft > 0 and hop > 0"
        );
        let n = self.n_fft;
        let k = self.n_freqs();
        let w = hann_periodic_f64(n);
        let scale = if self.normalized {
            1.0 / (n as f64).sqrt()
        } else {
            1.0
        };
        // basis[t, j]: columns 0..k are w[t]·cos(2πtj/n), columns k..2k are −w[t]·sin(2πtj/n).
        // The phase is reduced exactly in integers before the f64 trigonometry.
        let mut basis = vec![0f32; n * 2 * k];
        for t in 0..n {
            for j in 0..k {
                let a = 2.0 * PI * ((t * j) % n) as f64 / n as f64;
                basis[t * 2 * k + j] = (scale * w[t] * a.cos()) as f32;
                basis[t * 2 * k + k + j] = (-scale * w[t] * a.sin()) as f32;
            }
        }
        Stft {
            basis: Tensor::from_data(TensorData::new(basis, [n, 2 * k]), device),
            n_fft: n,
            hop: self.hop,
            center: self.center,
        }
    }
}

/// A complex one-sided spectrum, time-major: `re` and `im` are `[B, frames, n_freqs]`.
#[derive(Clone, Debug)]
pub struct Spectrum<B: Backend> {
    /// Real part, `[B, frames, n_freqs]`.
    pub re: Tensor<B, 3>,
    /// Imaginary part, `[B, frames, n_freqs]`.
    pub im: Tensor<B, 3>,
}

/// Power below which [`Spectrum::magnitude`] treats a bin as silent: its magnitude becomes
/// `1e-10` and its gradient zero. A plain `sqrt` has an infinite derivative at 0, which turns the
/// zero upstream gradient of a clamp into NaN (`0·∞`) on digital silence; torch's complex `abs`
/// has gradient 0 there. Every consumer clamps far above `1e-10` (mel 1e-7, loss 1e-5), so no
/// value changes.
pub const SILENT_POWER: f64 = 1e-20;

impl<B: Backend> Spectrum<B> {
    /// `|X|² = re² + im²`.
    pub fn power(&self) -> Tensor<B, 3> {
        self.re.clone().square() + self.im.clone().square()
    }

    /// `|X| = √max(re² + im², SILENT_POWER)`, finite gradient everywhere (see [`SILENT_POWER`]).
    pub fn magnitude(&self) -> Tensor<B, 3> {
        self.power().clamp_min(SILENT_POWER).sqrt()
    }

    /// `√clamp(re² + im², lo, hi)`: the discriminators' magnitudes (`lo` 1e-7, and for the
    /// SpecDiscriminator `hi` 1e3). Outside the clamp the gradient is zero.
    pub fn magnitude_clamped(&self, lo: f64, hi: Option<f64>) -> Tensor<B, 3> {
        let p = self.power().clamp_min(lo);
        match hi {
            Some(hi) => p.clamp_max(hi).sqrt(),
            None => p.sqrt(),
        }
    }

    /// Number of frames.
    pub fn num_frames(&self) -> usize {
        self.re.dims()[1]
    }
}

/// A short-time Fourier transform (see [`StftConfig`]); a constant module (no parameters) that
/// moves with the model it belongs to.
#[derive(Module, Debug)]
pub struct Stft<B: Backend> {
    /// `[n_fft, 2·n_freqs]`: windowed cosine columns, then windowed negative-sine columns.
    basis: Tensor<B, 2>,
    n_fft: usize,
    hop: usize,
    center: bool,
}

impl<B: Backend> Stft<B> {
    /// Transform `x` `[B, N]` into its spectrum `[B, frames, n_freqs]` (time-major).
    ///
    /// With `center`, this equals `torch.stft(x, n_fft, hop, window=hann_window(n_fft),
    /// center=True, pad_mode="reflect", onesided=True)` transposed to time-major.
    ///
    /// # Panics
    /// If `N` is shorter than [`StftConfig::min_input_len`]. Callers that take user input
    /// check the length first and return an error.
    pub fn forward(&self, x: Tensor<B, 2>) -> Spectrum<B> {
        let [_, n] = x.dims();
        let k = self.n_fft / 2 + 1;
        let padded = if self.center {
            let p = self.n_fft / 2;
            assert!(
                n > p,
                "STFT with n_fft {} needs more than {p} samples, got {n}",
                self.n_fft
            );
            x.pad([(p, p)], PadMode::Reflect)
        } else {
            assert!(
                n >= self.n_fft,
                "STFT with n_fft {} needs at least {} samples, got {n}",
                self.n_fft,
                self.n_fft
            );
            x
        };
        self.frames_of(padded, k)
    }

    /// Transform a segment that already carries its context: frame `f` covers samples
    /// `[f·hop, f·hop + n_fft)` of `x`, with no padding added. A long signal can be processed in
    /// overlapping segments this way and give exactly the frames of the whole-signal transform
    /// (pad the true signal edges with [`reflect_pad`] as centring does).
    ///
    /// # Panics
    /// If `x` is shorter than `n_fft`.
    pub fn forward_padded(&self, x: Tensor<B, 2>) -> Spectrum<B> {
        let [_, n] = x.dims();
        assert!(
            n >= self.n_fft,
            "STFT with n_fft {} needs at least {} samples, got {n}",
            self.n_fft,
            self.n_fft
        );
        self.frames_of(x, self.n_fft / 2 + 1)
    }

    fn frames_of(&self, padded: Tensor<B, 2>, k: usize) -> Spectrum<B> {
        // The frames, `[B·F, n_fft]`, as a plain matrix built item by item. An unfolded view
        // overlaps (row stride `hop` < `n_fft`), and on Burn 0.21's cubecl backends (CUDA,
        // wgpu) such a view breaks two ways: its matmul refuses the layout ("Invalid or
        // non-contiguous matrix layout", tracel-ai/burn#4226), and reshaping a batched one
        // misplaces every item after the first (found by `tests/device_parity.rs` on wgpu).
        // Unfolding each item's own 1-D signal and concatenating the copies avoids both; on
        // Flex the copy is 3.2× the signal, small next to the transform.
        let [b, n] = padded.dims();
        let items: Vec<Tensor<B, 2>> = (0..b)
            .map(|i| {
                padded
                    .clone()
                    .narrow(0, i, 1)
                    .reshape([n])
                    .unfold(0, self.n_fft, self.hop)
            })
            .collect();
        let frames = Tensor::cat(items, 0);
        let f = frames.dims()[0] / b;
        let spec = frames.matmul(self.basis.clone()).reshape([b, f, 2 * k]);
        Spectrum {
            re: spec.clone().narrow(2, 0, k),
            im: spec.narrow(2, k, k),
        }
    }

    /// Transform length.
    pub fn n_fft(&self) -> usize {
        self.n_fft
    }

    /// Hop in samples.
    pub fn hop(&self) -> usize {
        self.hop
    }
}

/// Samples `[start, end)` of `x` extended by reflection beyond both ends (`x[−i] = x[i]`,
/// `x[n−1+i] = x[n−1−i]`), as centred STFTs pad. Reflection by `p` is a prefix of reflection by
/// any `p′ > p`, so a segment cut from a wider reflection is exact. Needs `start > −n` and
/// `end < 2n − 1`.
pub fn reflect_pad(x: &[f32], start: isize, end: isize) -> Vec<f32> {
    let n = x.len() as isize;
    assert!(
        start > -n && end < 2 * n - 1 && start <= end,
        "reflection of [{start}, {end}) is outside a signal of {n} samples"
    );
    (start..end)
        .map(|i| {
            let j = if i < 0 {
                -i
            } else if i >= n {
                2 * (n - 1) - i
            } else {
                i
            };
            x[j as usize]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn segments_with_context_give_the_whole_signal_frames() {
        let dev = Default::default();
        let n = 5000;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let cfg = StftConfig::new(512, 160);
        let stft = cfg.init::<Flex>(&dev);
        let whole = stft
            .forward(Tensor::from_data(TensorData::new(x.clone(), [1, n]), &dev))
            .re
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let k = cfg.n_freqs();
        // frames 10..20, then the last frames (touching the right edge)
        for (f0, f1) in [
            (0usize, 7usize),
            (10, 20),
            (cfg.num_frames(n) - 5, cfg.num_frames(n)),
        ] {
            let (a, b) = ((160 * f0) as isize - 256, (160 * (f1 - 1)) as isize + 256);
            let seg = reflect_pad(&x, a, b);
            let len = seg.len();
            let part = stft
                .forward_padded(Tensor::from_data(TensorData::new(seg, [1, len]), &dev))
                .re
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            assert_eq!(part.len(), (f1 - f0) * k);
            let max = part
                .iter()
                .zip(&whole[f0 * k..f1 * k])
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(max < 1e-5, "frames {f0}..{f1}: {max}");
        }
    }

    fn naive_dft(x: &[f64], n_fft: usize, hop: usize) -> Vec<(f64, f64)> {
        // centred reflect-padded, periodic Hann, f64: [frames][bins]
        let p = n_fft / 2;
        let n = x.len();
        let padded: Vec<f64> = (0..n + 2 * p)
            .map(|i| {
                let j = i as isize - p as isize;
                let j = if j < 0 {
                    -j
                } else if j as usize >= n {
                    2 * (n as isize - 1) - j
                } else {
                    j
                };
                x[j as usize]
            })
            .collect();
        let w = hann_periodic_f64(n_fft);
        let frames = n / hop + 1;
        let mut out = Vec::new();
        for f in 0..frames {
            for k in 0..n_fft / 2 + 1 {
                let (mut re, mut im) = (0.0, 0.0);
                for t in 0..n_fft {
                    let a = 2.0 * PI * (t * k) as f64 / n_fft as f64;
                    let v = padded[f * hop + t] * w[t];
                    re += v * a.cos();
                    im -= v * a.sin();
                }
                out.push((re, im));
            }
        }
        out
    }

    #[test]
    fn matches_a_naive_dft_for_non_power_of_two_sizes() {
        let dev = Default::default();
        for (n_fft, hop, n) in [(78usize, 39usize, 500usize), (1280, 320, 3000), (20, 5, 64)] {
            let x: Vec<f64> = (0..n)
                .map(|i| (i as f64 * 0.37).sin() + 0.3 * (i as f64 * 2.1).cos())
                .collect();
            let xs: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let stft = StftConfig::new(n_fft, hop).init::<Flex>(&dev);
            let spec = stft.forward(Tensor::from_data(TensorData::new(xs, [1, n]), &dev));
            let frames = StftConfig::new(n_fft, hop).num_frames(n);
            assert_eq!(spec.num_frames(), frames);
            let re = spec.re.into_data().to_vec::<f32>().unwrap();
            let im = spec.im.into_data().to_vec::<f32>().unwrap();
            let want = naive_dft(&x, n_fft, hop);
            let scale = want
                .iter()
                .fold(0f64, |m, (r, i)| m.max(r.abs()).max(i.abs()));
            for (i, (r, im_)) in want.iter().enumerate() {
                assert!(
                    (re[i] as f64 - r).abs() < 1e-5 * scale,
                    "n_fft {n_fft} re[{i}]"
                );
                assert!(
                    (im[i] as f64 - im_).abs() < 1e-5 * scale,
                    "n_fft {n_fft} im[{i}]"
                );
            }
        }
    }

    #[test]
    fn normalized_scales_by_inverse_sqrt_n() {
        let dev = Default::default();
        let x = Tensor::<Flex, 2>::from_data(
            TensorData::new(
                (0..300).map(|i| (i as f32 * 0.1).sin()).collect::<Vec<_>>(),
                [1, 300],
            ),
            &dev,
        );
        let a = StftConfig::new(64, 16)
            .init::<Flex>(&dev)
            .forward(x.clone())
            .re;
        let b = StftConfig::new(64, 16)
            .with_normalized(true)
            .init::<Flex>(&dev)
            .forward(x)
            .re;
        let d = (a.mul_scalar(1.0 / 8.0) - b).abs().max().into_scalar();
        assert!(d < 1e-6, "{d}");
    }

    #[test]
    fn frame_counts_follow_torch() {
        let c = StftConfig::new(512, 160);
        assert_eq!(c.num_frames(36850), 231);
        assert_eq!(c.num_frames(160000), 1001);
        assert_eq!(c.min_input_len(), 257);
        let nc = c.with_center(false);
        assert_eq!(nc.num_frames(511), 0);
        assert_eq!(nc.num_frames(512 + 320), 3);
    }
}
