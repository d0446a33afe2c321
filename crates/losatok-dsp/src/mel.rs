//! Mel filterbanks.
//!
//! Two conventions are needed, each reproduced to the last bit where the reference allows:
//!
//! * **HTK, no area normalisation**, as torchaudio's `melscale_fbanks(norm=None, mel_scale="htk")`
//!   builds it in float32 (the semantic and acoustic front ends, and the MFD discriminator's
//!   square "re-binning" matrix): [`htk_filterbank`], [`mfd_filterbank`].
//! * **Slaney scale with Slaney area normalisation**, as `librosa.filters.mel` builds it in
//!   float64 and stores it in float32 (the DAC multi-scale mel loss): [`slaney_filterbank`].
//!
//! Every filterbank is returned in the layout `[n_freqs, n_mels]` (frequency-major), so a
//! spectrogram laid out `[.., frames, n_freqs]` is projected with one matmul.

/// A mel filterbank, row-major `[n_freqs, n_mels]`: `data[k * n_mels + m]` is the weight of
/// frequency bin `k` in mel band `m`.
#[derive(Clone, Debug, PartialEq)]
pub struct Filterbank {
    /// Number of linear frequency bins (rows), `n_fft / 2 + 1`.
    pub n_freqs: usize,
    /// Number of mel bands (columns).
    pub n_mels: usize,
    /// The weights, `[n_freqs, n_mels]` row-major.
    pub data: Vec<f32>,
}

impl Filterbank {
    /// Weight of frequency bin `k` in band `m`.
    pub fn get(&self, k: usize, m: usize) -> f32 {
        self.data[k * self.n_mels + m]
    }

    /// The transposed table, `[n_mels, n_freqs]` row-major (librosa's layout).
    pub fn transposed(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.data.len()];
        for k in 0..self.n_freqs {
            for m in 0..self.n_mels {
                out[m * self.n_freqs + k] = self.data[k * self.n_mels + m];
            }
        }
        out
    }
}

/// HTK mel scale: `m(f) = 2595·log10(1 + f/700)`.
pub fn hz_to_mel_htk(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

/// `torch.linspace` for float32 on CPU: endpoints rounded to f32, `step = (b − a)/(n − 1)` in f32,
/// the first half counted up from `a` and the second half down from `b`, each value one fused
/// multiply-add.
fn linspace_f32(a: f64, b: f64, n: usize) -> Vec<f32> {
    let (a, b) = (a as f32, b as f32);
    if n == 1 {
        return vec![a];
    }
    let step = (b - a) / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                step.mul_add(i as f32, a)
            } else {
                (-step).mul_add((n - 1 - i) as f32, b)
            }
        })
        .collect()
}

/// The raw HTK triangles `min(down, up)` (not yet clipped), computed in float32 step by step
/// the way torchaudio does (model-spec §9.3), `[n_freqs, n_mels]`.
///
/// The mel points go back to Hz as `700·(10^(m/2595) − 1)`. Model-spec §9.3 evaluates the power
/// in f64 and rounds it to f32; torch's CPU `10 ** tensor` is not correctly rounded (SLEEF
/// `powf` on full 32-element SIMD steps, glibc `powf` on the rest), and about 1–2 % of its points
/// are one ulp off the rounded f64 value. The power therefore comes from
/// [`crate::torch_pow`], which reproduces torch's per-element choice bit for bit; the division
/// by 2595 and the `700·(p − 1)` stay plain f32 operations as in torchaudio.
fn htk_triangles(
    n_freqs: usize,
    f_min: f64,
    f_max: f64,
    n_mels: usize,
    sample_rate: u32,
) -> Vec<f32> {
    // torchaudio: all_freqs = linspace(0, sample_rate // 2, n_freqs)
    let all_freqs = linspace_f32(0.0, (sample_rate / 2) as f64, n_freqs);
    let m_pts = linspace_f32(hz_to_mel_htk(f_min), hz_to_mel_htk(f_max), n_mels + 2);
    // f = 700·(10^(m/2595) − 1): the division and the subtraction/multiplication in f32, the
    // power as torch's float32 `10 ** tensor` over the whole vector of points.
    let e: Vec<f32> = m_pts.iter().map(|&m| m / 2595.0f32).collect();
    let f_pts: Vec<f32> = crate::torch_pow::pow10_f32_tensor_like(&e)
        .into_iter()
        .map(|p| 700.0f32 * (p - 1.0f32))
        .collect();
    let f_diff: Vec<f32> = f_pts.windows(2).map(|w| w[1] - w[0]).collect();
    let mut fb = vec![0f32; n_freqs * n_mels];
    for (k, &f) in all_freqs.iter().enumerate() {
        for m in 0..n_mels {
            let down = (-(f_pts[m] - f)) / f_diff[m];
            let up = (f_pts[m + 2] - f) / f_diff[m + 1];
            fb[k * n_mels + m] = down.min(up);
        }
    }
    fb
}

/// HTK triangular mel filterbank without area normalisation, bit-faithful to torchaudio's
/// float32 `melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate, norm=None,
/// mel_scale="htk")`:
///
/// `W[k, m] = max(0, min((f_k − p_m)/(p_{m+1} − p_m), (p_{m+2} − f_k)/(p_{m+2} − p_{m+1})))`
/// with bin frequencies `f_k` equally spaced over `[0, sr/2]` and `p_0..p_{M+1}` equally spaced
/// on the HTK mel scale between `f_min` and `f_max`.
pub fn htk_filterbank(
    n_freqs: usize,
    f_min: f64,
    f_max: f64,
    n_mels: usize,
    sample_rate: u32,
) -> Filterbank {
    let data = htk_triangles(n_freqs, f_min, f_max, n_mels, sample_rate)
        .into_iter()
        .map(|v| v.max(0.0))
        .collect();
    Filterbank {
        n_freqs,
        n_mels,
        data,
    }
}

/// The square `[F, F]` HTK "mel re-binning" matrix of X-Codec's MultiFrequencyDiscriminator
/// (`n_mels = n_freqs = F`, 0 to sr/2): the same triangles as [`htk_filterbank`], clamped to
/// `[1e-6, 1]` instead of `[0, ∞)`, so every entry is at least 1e-6.
pub fn mfd_filterbank(n_freqs: usize, sample_rate: u32) -> Filterbank {
    let data = htk_triangles(n_freqs, 0.0, (sample_rate / 2) as f64, n_freqs, sample_rate)
        .into_iter()
        .map(|v| v.clamp(1e-6, 1.0))
        .collect();
    Filterbank {
        n_freqs,
        n_mels: n_freqs,
        data,
    }
}

const SLANEY_F_SP: f64 = 200.0 / 3.0;
const SLANEY_MIN_LOG_HZ: f64 = 1000.0;
const SLANEY_MIN_LOG_MEL: f64 = SLANEY_MIN_LOG_HZ / SLANEY_F_SP;

fn slaney_logstep() -> f64 {
    6.4f64.ln() / 27.0
}

/// Slaney mel scale (librosa's default, `htk=False`): linear below 1 kHz, logarithmic above.
pub fn hz_to_mel_slaney(f: f64) -> f64 {
    if f >= SLANEY_MIN_LOG_HZ {
        SLANEY_MIN_LOG_MEL + (f / SLANEY_MIN_LOG_HZ).ln() / slaney_logstep()
    } else {
        f / SLANEY_F_SP
    }
}

/// Inverse of [`hz_to_mel_slaney`].
pub fn mel_to_hz_slaney(m: f64) -> f64 {
    if m >= SLANEY_MIN_LOG_MEL {
        SLANEY_MIN_LOG_HZ * (slaney_logstep() * (m - SLANEY_MIN_LOG_MEL)).exp()
    } else {
        SLANEY_F_SP * m
    }
}

/// `numpy.linspace` in f64 (endpoint included): `start + i·step`, last value exactly `stop`.
fn linspace_f64(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    v[n - 1] = stop;
    v
}

/// Slaney-scale, Slaney-normalised mel filterbank, as `librosa.filters.mel(sr, n_fft, n_mels,
/// fmin, fmax, htk=False, norm="slaney")` (the DAC mel loss):
///
/// `W[m, k] = 2/(p_{m+2} − p_m) · max(0, min((f_k − p_m)/(p_{m+1} − p_m), (p_{m+2} − f_k)/(p_{m+2} − p_{m+1})))`
///
/// computed in f64, with librosa's two roundings to f32 (the triangle is stored in a float32
/// array before the area normalisation multiplies it). Returned `[n_freqs, n_mels]`.
pub fn slaney_filterbank(
    sample_rate: u32,
    n_fft: usize,
    n_mels: usize,
    f_min: f64,
    f_max: f64,
) -> Filterbank {
    let n_freqs = n_fft / 2 + 1;
    // numpy.fft.rfftfreq(n_fft, 1/sr): k · (1 / (n_fft · (1/sr)))
    let val = 1.0 / (n_fft as f64 * (1.0 / sample_rate as f64));
    let fft_freqs: Vec<f64> = (0..n_freqs).map(|k| k as f64 * val).collect();
    let mel_pts = linspace_f64(hz_to_mel_slaney(f_min), hz_to_mel_slaney(f_max), n_mels + 2);
    let hz_pts: Vec<f64> = mel_pts.iter().map(|&m| mel_to_hz_slaney(m)).collect();
    let f_diff: Vec<f64> = hz_pts.windows(2).map(|w| w[1] - w[0]).collect();
    let mut data = vec![0f32; n_freqs * n_mels];
    for m in 0..n_mels {
        let enorm = 2.0 / (hz_pts[m + 2] - hz_pts[m]);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = -(hz_pts[m] - f) / f_diff[m];
            let upper = (hz_pts[m + 2] - f) / f_diff[m + 1];
            let tri = 0f64.max(lower.min(upper)) as f32;
            data[k * n_mels + m] = (tri as f64 * enorm) as f32;
        }
    }
    Filterbank {
        n_freqs,
        n_mels,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_f32_hits_both_endpoints_exactly() {
        let v = linspace_f32(0.0, 8000.0, 257);
        assert_eq!(v[0], 0.0);
        assert_eq!(v[256], 8000.0);
        assert_eq!(v[128], 4000.0);
    }

    #[test]
    fn htk_filterbank_triangles_peak_at_one_and_are_non_negative() {
        let fb = htk_filterbank(513, 0.0, 8000.0, 128, 16000);
        assert!(fb.data.iter().all(|&v| (0.0..=1.0).contains(&v)));
        // every band of the acoustic bank has some weight
        for m in 0..fb.n_mels {
            let s: f32 = (0..fb.n_freqs).map(|k| fb.get(k, m)).sum();
            assert!(s > 0.0, "band {m} empty");
        }
    }

    #[test]
    fn mfd_filterbank_has_the_floor_everywhere() {
        let fb = mfd_filterbank(65, 16000);
        assert_eq!(fb.n_mels, 65);
        assert!(fb.data.iter().all(|&v| (1e-6..=1.0).contains(&v)));
    }

    #[test]
    fn slaney_scale_round_trips() {
        for f in [0.0, 300.0, 999.0, 1000.0, 4321.0, 8000.0] {
            let back = mel_to_hz_slaney(hz_to_mel_slaney(f));
            assert!((back - f).abs() < 1e-9 * (1.0 + f), "{f} -> {back}");
        }
    }

    #[test]
    fn slaney_bands_have_unit_area_in_hz_over_two() {
        // Slaney normalisation: each triangle has area 1 in Hz (height 2/width · width/2),
        // approximated by the bin spacing times the sum of the weights.
        let fb = slaney_filterbank(16000, 2048, 40, 0.0, 8000.0);
        let df = 16000.0 / 2048.0;
        for m in 2..fb.n_mels {
            let area: f64 = (0..fb.n_freqs).map(|k| fb.get(k, m) as f64 * df).sum();
            assert!((area - 1.0).abs() < 0.05, "band {m}: area {area}");
        }
    }
}
