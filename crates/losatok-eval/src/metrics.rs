//! Reconstruction metrics at 16 kHz: the paper's Table 4 columns Mel-16k and STFT-16k, SI-SDR.
//!
//! All three compare an estimate `x̂` with a reference `x`, both 16 kHz mono, cropped to their
//! common length `N = min(len x̂, len x)` (a LoSATok reconstruction is up to 480 samples
//! shorter than its input). Spectra use a periodic Hann window of the scale's length, a centred
//! (reflect-padded) unnormalised STFT and hop = window/4, as DAC / audiotools do.
//!
//! * **Mel distance** ([`MultiScaleMelLoss`] with [`MelLossConfig::dac`], the DAC definition that
//!   the paper's `L_mel` uses; the paper's evaluation script is not public): for windows
//!   32, 64, …, 2048 with 5, 10, …, 320 Slaney mel bands (0–8 kHz),
//!   `Σ_s mean|log10(max(M_s(x̂), 1e-5)) − log10(max(M_s(x), 1e-5))|` over the mel magnitude
//!   spectrograms `M_s`. Lower is better; 0 for identical signals.
//! * **STFT distance** ([`StftDistanceConfig::dac`], DAC's `MultiScaleSTFTLoss` defaults): for
//!   windows 2048 and 512, with `S_w = |STFT_w|`,
//!   `Σ_w [ mean|log10(max(S_w(x̂), 1e-5)²) − log10(max(S_w(x), 1e-5)²)| + mean|S_w(x̂) − S_w(x)| ]`
//!   (log weight 1, magnitude weight 1, power 2, means over every time-frequency bin).
//! * **SI-SDR** ([`si_sdr`]): with zero-mean `x` and `x̂` (in f64), `α = ⟨x̂, x⟩/‖x‖²`,
//!   `SI-SDR = 10·log10(‖αx‖² / ‖x̂ − αx‖²)` dB, clamped to ±[`SI_SDR_CAP_DB`] (a perfect
//!   estimate has no residual and reports +100 dB); NaN (undefined) when both norms are zero,
//!   e.g. a silent reference. Invariant to the scale of `x̂`.
//!
//! The metrics are computed on whole signals (memory: about 70 MB per minute of audio, measured).

use burn::prelude::*;
use losatok::dsp::{log10_clamped, Stft, StftConfig};
use losatok::losses::mel::{MelLossConfig, MultiScaleMelLoss};

use crate::error::EvalError;

/// The metrics' sample rate.
pub const SAMPLE_RATE: u32 = 16_000;

/// SI-SDR values are clamped to `[−SI_SDR_CAP_DB, SI_SDR_CAP_DB]` dB.
pub const SI_SDR_CAP_DB: f64 = 100.0;

/// Scale-invariant signal-to-distortion ratio (dB) of `estimate` against `reference`, on their
/// common length, zero-mean (see the module documentation). NaN when undefined.
pub fn si_sdr(estimate: &[f32], reference: &[f32]) -> f64 {
    let n = estimate.len().min(reference.len());
    if n == 0 {
        return f64::NAN;
    }
    let (e, r) = (&estimate[..n], &reference[..n]);
    let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
    let (me, mr) = (mean(e), mean(r));
    let (mut dot, mut rr) = (0f64, 0f64);
    for (&a, &b) in e.iter().zip(r) {
        let (a, b) = (f64::from(a) - me, f64::from(b) - mr);
        dot += a * b;
        rr += b * b;
    }
    if rr == 0.0 {
        return f64::NAN;
    }
    let alpha = dot / rr;
    let (mut target, mut residual) = (0f64, 0f64);
    for (&a, &b) in e.iter().zip(r) {
        let t = alpha * (f64::from(b) - mr);
        let res = f64::from(a) - me - t;
        target += t * t;
        residual += res * res;
    }
    if target == 0.0 && residual == 0.0 {
        return f64::NAN;
    }
    let db = 10.0 * (target / residual).log10();
    db.clamp(-SI_SDR_CAP_DB, SI_SDR_CAP_DB)
}

/// Settings of the multi-resolution STFT distance (DAC / audiotools `MultiScaleSTFTLoss`).
#[derive(Clone, Debug, PartialEq)]
pub struct StftDistanceConfig {
    /// Window (= n_fft) of each scale; the hop is a quarter of it.
    pub windows: Vec<usize>,
    /// Floor of the magnitude before the log.
    pub clamp_eps: f64,
    /// Exponent of the floored magnitude inside the log.
    pub pow: f64,
    /// Weight of the log-magnitude L1 term.
    pub log_weight: f64,
    /// Weight of the linear-magnitude L1 term.
    pub mag_weight: f64,
}

impl StftDistanceConfig {
    /// DAC's defaults: windows [2048, 512], clamp 1e-5, pow 2, log weight 1, magnitude weight 1.
    pub fn dac() -> Self {
        Self {
            windows: vec![2048, 512],
            clamp_eps: 1e-5,
            pow: 2.0,
            log_weight: 1.0,
            mag_weight: 1.0,
        }
    }

    /// Build the distance (its STFT bases) on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> StftDistance<B> {
        StftDistance {
            stfts: self
                .windows
                .iter()
                .map(|&w| StftConfig::new(w, w / 4).init(device))
                .collect(),
            config: self.clone(),
        }
    }
}

/// The multi-resolution STFT distance (see the module documentation).
#[derive(Debug)]
pub struct StftDistance<B: Backend> {
    stfts: Vec<Stft<B>>,
    config: StftDistanceConfig,
}

impl<B: Backend> StftDistance<B> {
    /// The distance between `estimate` and `reference`, both `[B, N]` of equal length
    /// (`N > max window / 2`), averaged over the batch and every bin.
    pub fn distance(&self, estimate: Tensor<B, 2>, reference: Tensor<B, 2>) -> Tensor<B, 1> {
        let c = &self.config;
        self.stfts
            .iter()
            .map(|stft| {
                let x = stft.forward(estimate.clone()).magnitude();
                let y = stft.forward(reference.clone()).magnitude();
                let log = (log10_clamped(x.clone(), c.clamp_eps)
                    - log10_clamped(y.clone(), c.clamp_eps))
                .abs()
                .mean()
                .mul_scalar(c.pow * c.log_weight);
                log + (x - y).abs().mean().mul_scalar(c.mag_weight)
            })
            .reduce(|a, b| a + b)
            .expect("at least one scale")
    }
}

/// The three metrics of one pair of signals.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricValues {
    /// The common length compared, in 16 kHz samples.
    pub samples: usize,
    /// Multi-scale mel distance (Mel-16k).
    pub mel: f64,
    /// Multi-resolution STFT distance (STFT-16k).
    pub stft: f64,
    /// SI-SDR in dB.
    pub si_sdr: f64,
}

/// The metrics, ready to run on a backend.
#[derive(Debug)]
pub struct ReconstructionMetrics<B: Backend> {
    mel: MultiScaleMelLoss<B>,
    stft: StftDistance<B>,
    min_samples: usize,
    device: B::Device,
}

impl<B: Backend> ReconstructionMetrics<B> {
    /// The paper's metrics (DAC mel distance, DAC STFT distance, SI-SDR) on `device`.
    pub fn new(device: &B::Device) -> Self {
        let mel = MelLossConfig::dac();
        let stft = StftDistanceConfig::dac();
        let longest = mel
            .windows
            .iter()
            .chain(&stft.windows)
            .copied()
            .max()
            .unwrap_or(2);
        Self {
            mel: mel.init(device),
            stft: stft.init(device),
            min_samples: longest / 2 + 1,
            device: device.clone(),
        }
    }

    /// The shortest common length the metrics accept (1025 samples: the 2048-sample window's
    /// reflect padding needs more than 1024).
    pub fn min_samples(&self) -> usize {
        self.min_samples
    }

    /// Compare `estimate` with `reference` (16 kHz, cropped to their common length).
    pub fn compute(&self, estimate: &[f32], reference: &[f32]) -> Result<MetricValues, EvalError> {
        let n = estimate.len().min(reference.len());
        if n < self.min_samples {
            return Err(EvalError::Invalid(format!(
                "too short to compare: {n} common samples, the metrics need at least {} \
                 ({:.0} ms at 16 kHz)",
                self.min_samples,
                self.min_samples as f64 / 16.0
            )));
        }
        let (e, r) = (&estimate[..n], &reference[..n]);
        if e.iter().chain(r).any(|v| !v.is_finite()) {
            return Err(EvalError::Invalid(
                "the audio contains NaN or infinite samples".into(),
            ));
        }
        let te = losatok::samples_to_tensor::<B>(e, &self.device);
        let tr = losatok::samples_to_tensor::<B>(r, &self.device);
        let scalar = |t: Tensor<B, 1>| -> f64 {
            t.into_data()
                .convert::<f64>()
                .into_vec::<f64>()
                .expect("f64")[0]
        };
        let mel = scalar(self.mel.mel_loss(te.clone(), tr.clone()));
        let stft = scalar(self.stft.distance(te, tr));
        Ok(MetricValues {
            samples: n,
            mel,
            stft,
            si_sdr: si_sdr(e, r),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::Flex;

    fn signal(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let noise = (s as f32 / u32::MAX as f32 - 0.5) * 0.05;
                0.3 * (i as f32 * 0.031).sin() + 0.2 * (i as f32 * 0.173).sin() + noise
            })
            .collect()
    }

    #[test]
    fn si_sdr_known_values() {
        let x = signal(8000, 1);
        assert_eq!(si_sdr(&x, &x), SI_SDR_CAP_DB);
        // Exact scaling: no residual at all.
        let half: Vec<f32> = x.iter().map(|v| v * 0.5).collect();
        assert_eq!(si_sdr(&half, &x), SI_SDR_CAP_DB);
        // Orthogonal residual of known energy: x̂ = x + n with ⟨n, x⟩ = 0 ⇒ SI-SDR = 10 log10(‖x‖²/‖n‖²).
        let x: Vec<f32> = (0..1000)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let n: Vec<f32> = (0..1000)
            .map(|i| if (i / 2) % 2 == 0 { 0.125 } else { -0.125 })
            .collect();
        let est: Vec<f32> = x.iter().zip(&n).map(|(a, b)| a + b).collect();
        let got = si_sdr(&est, &x);
        let want = 10.0 * 64f64.log10(); // ‖x‖²/‖n‖² = 1/0.125²
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // Silent reference: undefined.
        assert!(si_sdr(&x, &[0.0; 1000]).is_nan());
        // Common length: a longer estimate is cropped.
        let mut longer = x.clone();
        longer.extend([5.0; 100]);
        assert_eq!(si_sdr(&longer, &x), SI_SDR_CAP_DB);
    }

    #[test]
    fn si_sdr_is_scale_invariant() {
        let x = signal(16000, 2);
        let est: Vec<f32> = signal(16000, 3)
            .iter()
            .zip(&x)
            .map(|(n, s)| s + 0.3 * n)
            .collect();
        let base = si_sdr(&est, &x);
        assert!(base.is_finite() && base < 50.0);
        for c in [0.1f32, 3.0, -2.0] {
            let scaled: Vec<f32> = est.iter().map(|v| v * c).collect();
            // A negative gain flips the projection, not the ratio.
            assert!((si_sdr(&scaled, &x) - base).abs() < 1e-4, "gain {c}");
        }
    }

    #[test]
    fn identical_signals_have_zero_distances() {
        let m = ReconstructionMetrics::<B>::new(&Default::default());
        let x = signal(16000, 4);
        let v = m.compute(&x, &x).unwrap();
        assert_eq!(v.mel, 0.0);
        assert_eq!(v.stft, 0.0);
        assert_eq!(v.si_sdr, SI_SDR_CAP_DB);
        assert_eq!(v.samples, 16000);
    }

    #[test]
    fn scaled_copy_keeps_si_sdr_but_not_spectral_distances() {
        let m = ReconstructionMetrics::<B>::new(&Default::default());
        let x = signal(16000, 5);
        let scaled: Vec<f32> = x.iter().map(|v| v * 0.5).collect();
        let v = m.compute(&scaled, &x).unwrap();
        assert_eq!(v.si_sdr, SI_SDR_CAP_DB);
        assert!(v.mel > 0.1, "mel {}", v.mel);
        // The STFT log term alone is 2·log10(2) per bin wherever both are above the floor.
        assert!(v.stft > 0.5, "stft {}", v.stft);
        // Too short, and non-finite input.
        assert!(m.compute(&x[..1024], &x[..1024]).is_err());
        let mut bad = x.clone();
        bad[5] = f32::NAN;
        assert!(m.compute(&bad, &x).is_err());
    }

    #[test]
    fn stft_distance_matches_a_direct_computation() {
        // One scale, window 4, on a short signal: compare with a host DFT.
        let cfg = StftDistanceConfig {
            windows: vec![8],
            ..StftDistanceConfig::dac()
        };
        let d = cfg.init::<B>(&Default::default());
        let x: Vec<f32> = (0..32).map(|i| ((i * 7) % 5) as f32 * 0.1).collect();
        let y: Vec<f32> = (0..32).map(|i| ((i * 3) % 4) as f32 * 0.2).collect();
        let got = d
            .distance(
                losatok::samples_to_tensor::<B>(&x, &Default::default()),
                losatok::samples_to_tensor::<B>(&y, &Default::default()),
            )
            .into_data()
            .convert::<f64>()
            .into_vec::<f64>()
            .unwrap()[0];
        let mag = |s: &[f32]| -> Vec<f64> {
            // centred: reflect-pad by 4, frames every 2 samples, periodic Hann of 8.
            let n = s.len() as i64;
            let at = |i: i64| {
                let j = if i < 0 {
                    -i
                } else if i >= n {
                    2 * (n - 1) - i
                } else {
                    i
                };
                f64::from(s[j as usize])
            };
            let mut out = Vec::new();
            for f in 0..(s.len() / 2 + 1) as i64 {
                for k in 0..5 {
                    let (mut re, mut im) = (0f64, 0f64);
                    for t in 0..8i64 {
                        let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * t as f64 / 8.0).cos();
                        let a = -2.0 * std::f64::consts::PI * (k * t) as f64 / 8.0;
                        let v = w * at(f * 2 + t - 4);
                        re += v * a.cos();
                        im += v * a.sin();
                    }
                    out.push(re.hypot(im));
                }
            }
            out
        };
        let (mx, my) = (mag(&x), mag(&y));
        let nb = mx.len() as f64;
        let log: f64 = mx
            .iter()
            .zip(&my)
            .map(|(a, b)| (2.0 * a.max(1e-5).log10() - 2.0 * b.max(1e-5).log10()).abs())
            .sum::<f64>()
            / nb;
        let lin: f64 = mx.iter().zip(&my).map(|(a, b)| (a - b).abs()).sum::<f64>() / nb;
        assert!(
            (got - (log + lin)).abs() < 1e-4 * (log + lin),
            "{got} vs {}",
            log + lin
        );
    }
}
