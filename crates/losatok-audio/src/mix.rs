//! Down-mixing to mono, bit-compatible with `librosa.to_mono`.
//!
//! `librosa.load` decodes with soundfile to an `[N, C]` float32 array, transposes it (a
//! view, so each frame's channels stay contiguous in memory) and calls
//! `np.mean(y, axis=0)`. NumPy therefore reduces each frame's contiguous run of channel
//! values with its pairwise summation kernel, in f32, and divides by `C` (the division is
//! correctly rounded either way, so doing it in f32 gives the same result). For fewer than 8
//! channels that kernel is a plain left-to-right sum; from 8 channels on it uses eight
//! partial sums. [`mean`] reproduces the kernel exactly, so mono signals are bit-identical
//! to librosa's for any channel count.

use crate::decode::DecodedAudio;

/// NumPy's `PW_BLOCKSIZE`.
const PW_BLOCKSIZE: usize = 128;

/// NumPy's pairwise summation (`@TYPE@_pairwise_sum`) over `a`, in f32.
fn pairwise_sum(a: &[f32]) -> f32 {
    let n = a.len();
    if n < 8 {
        // NumPy starts from -0.0 so that a sum of negative zeros stays -0.0.
        let mut res = -0.0f32;
        for &x in a {
            res += x;
        }
        res
    } else if n <= PW_BLOCKSIZE {
        let mut r = [0f32; 8];
        r.copy_from_slice(&a[..8]);
        let full = n - n % 8;
        let mut i = 8;
        while i < full {
            for (acc, &x) in r.iter_mut().zip(&a[i..i + 8]) {
                *acc += x;
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[full..] {
            res += x;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// Mean of `values` exactly as `np.mean` computes it for a contiguous float32 run.
/// Returns NaN for an empty slice (like NumPy).
pub fn mean(values: &[f32]) -> f32 {
    pairwise_sum(values) / values.len() as f32
}

/// Down-mixes interleaved frames (`channels` values per frame) and appends one value per
/// frame to `out`. A single channel is copied unchanged.
///
/// # Panics
/// If `channels` is 0.
pub fn downmix_interleaved(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    assert!(channels > 0, "channel count must be positive");
    if channels == 1 {
        out.extend_from_slice(interleaved);
        return;
    }
    out.reserve(interleaved.len() / channels);
    out.extend(interleaved.chunks_exact(channels).map(mean));
}

/// Down-mixes channel-major planar audio to mono, bit-identical to `librosa.to_mono`.
/// A single channel is returned unchanged.
pub fn downmix(audio: &DecodedAudio) -> Vec<f32> {
    let channels = audio.channels;
    let frames = audio.frames();
    if channels <= 1 {
        return audio.samples.clone();
    }
    let mut frame = vec![0f32; channels];
    let mut out = Vec::with_capacity(frames);
    for i in 0..frames {
        for (c, v) in frame.iter_mut().enumerate() {
            *v = audio.samples[c * frames + i];
        }
        out.push(mean(&frame));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_counts_sum_left_to_right() {
        let v = [0.1f32, 0.7, -0.3, 1e-8, 0.25];
        let seq = ((((0.1f32 + 0.7) + -0.3) + 1e-8) + 0.25) / 5.0;
        assert_eq!(mean(&v).to_bits(), seq.to_bits());
    }

    #[test]
    fn eight_and_more_use_partial_sums() {
        let v: Vec<f32> = (0..11)
            .map(|i| 0.1 * i as f32 + 1e-7 * (i * i) as f32)
            .collect();
        let r = &v;
        let expect = (((r[0] + r[1]) + (r[2] + r[3]))
            + ((r[4] + r[5]) + (r[6] + r[7]))
            + r[8]
            + r[9]
            + r[10])
            / 11.0;
        assert_eq!(mean(&v).to_bits(), expect.to_bits());
    }

    #[test]
    fn planar_and_interleaved_agree() {
        let audio = DecodedAudio {
            sample_rate: 8000,
            channels: 3,
            samples: vec![1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 0.5, 0.25, 0.125],
        };
        let planar = downmix(&audio);
        let mut inter = Vec::new();
        downmix_interleaved(
            &[1.0, 10.0, 0.5, 2.0, 20.0, 0.25, 3.0, 30.0, 0.125],
            3,
            &mut inter,
        );
        assert_eq!(planar, inter);
        assert_eq!(planar[0], (1.0f32 + 10.0 + 0.5) / 3.0);
    }
}
