//! Streaming covariance of frame-level features: frames are rows, channels are columns.
//!
//! [`CovarianceAccumulator`] folds rows in as they come (from the host, or as a tensor on any
//! backend) into `f64` sums, so memory is `O(d²)` whatever the number of frames. To avoid the
//! cancellation of `Σxxᵀ/n − x̄x̄ᵀ` when the mean is large next to the spread, every row is
//! shifted by a fixed reference vector (the mean of the first batch) before it is summed;
//! the covariance does not depend on the shift. [`Moments`] (count, mean, centred scatter)
//! combine exactly across accumulators with Chan et al.'s pairwise formula.

use burn::prelude::*;

/// Streaming sums of shifted rows: `n`, `s = Σ(x − c)` and the upper triangle of
/// `S = Σ(x − c)(x − c)ᵀ`, in `f64`, for a fixed shift `c` (the mean of the first rows added).
#[derive(Clone, Debug)]
pub struct CovarianceAccumulator {
    dim: usize,
    count: u64,
    shift: Option<Vec<f32>>,
    sum: Vec<f64>,
    /// Row-major `d × d`; only the upper triangle (`j ≥ i`) is maintained.
    scatter: Vec<f64>,
}

impl CovarianceAccumulator {
    /// An empty accumulator for `dim` channels.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            count: 0,
            shift: None,
            sum: vec![0.0; dim],
            scatter: vec![0.0; dim * dim],
        }
    }

    /// Number of channels.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rows (frames) added.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn ensure_shift(&mut self, first_rows: impl FnOnce() -> Vec<f32>) -> &[f32] {
        if self.shift.is_none() {
            self.shift = Some(first_rows());
        }
        self.shift.as_deref().expect("set")
    }

    /// Add `rows.len() / dim` rows given row-major on the host.
    ///
    /// # Panics
    /// If `rows.len()` is not a multiple of the dimension.
    pub fn add_rows(&mut self, rows: &[f32]) {
        let d = self.dim;
        if d == 0 || rows.is_empty() {
            return;
        }
        assert_eq!(rows.len() % d, 0, "rows of {d} values expected");
        let t = rows.len() / d;
        let shift = self
            .ensure_shift(|| {
                let mut m = vec![0f64; d];
                for r in rows.chunks_exact(d) {
                    for (a, &x) in m.iter_mut().zip(r) {
                        *a += f64::from(x);
                    }
                }
                m.iter().map(|v| (v / t as f64) as f32).collect()
            })
            .to_vec();
        // Shifted rows in f64, in blocks, then a cache-blocked upper-triangular rank-k update.
        const BLOCK: usize = 64;
        const TILE: usize = 256;
        let mut block = vec![0f64; BLOCK * d];
        for rows in rows.chunks(BLOCK * d) {
            let b = rows.len() / d;
            for (dst, src) in block.chunks_exact_mut(d).zip(rows.chunks_exact(d)) {
                for ((y, &x), &c) in dst.iter_mut().zip(src).zip(&shift) {
                    *y = f64::from(x) - f64::from(c);
                }
            }
            for r in block[..b * d].chunks_exact(d) {
                for (s, y) in self.sum.iter_mut().zip(r) {
                    *s += y;
                }
            }
            for i0 in (0..d).step_by(TILE) {
                let i1 = (i0 + TILE).min(d);
                for j0 in (i0..d).step_by(TILE) {
                    let j1 = (j0 + TILE).min(d);
                    for r in block[..b * d].chunks_exact(d) {
                        for i in i0..i1 {
                            let xi = r[i];
                            if xi == 0.0 {
                                continue;
                            }
                            let lo = j0.max(i);
                            if lo >= j1 {
                                continue;
                            }
                            let dst = &mut self.scatter[i * d + lo..i * d + j1];
                            for (a, &y) in dst.iter_mut().zip(&r[lo..j1]) {
                                *a += xi * y;
                            }
                        }
                    }
                }
            }
        }
        self.count += t as u64;
    }

    /// Add the rows of a `[t, d]` tensor on any backend. The shifted Gram matrix is formed by the
    /// backend (one `[d, t] × [t, d]` matmul in its float type, fast on a GPU) and added to the
    /// `f64` sums on the host. With `t` up to a few hundred rows per call, the float32 Gram's
    /// relative rounding (~`√t·6e-8` of the centred scatter, thanks to the shift) is negligible.
    pub fn add_tensor<B: Backend>(&mut self, x: Tensor<B, 2>) {
        let [t, d] = x.dims();
        assert_eq!(d, self.dim, "a [t, {}] tensor expected", self.dim);
        if t == 0 || d == 0 {
            return;
        }
        let device = x.device();
        let shift = self
            .ensure_shift(|| {
                x.clone()
                    .mean_dim(0)
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .expect("f32 data")
            })
            .to_vec();
        let c: Tensor<B, 2> = Tensor::from_data(TensorData::new(shift, [1, d]), &device);
        let xs = x - c;
        let sum = xs.clone().sum_dim(0);
        let gram = xs.clone().transpose().matmul(xs);
        let sum = to_f64(sum);
        let gram = to_f64(gram);
        for (s, v) in self.sum.iter_mut().zip(&sum) {
            *s += v;
        }
        for i in 0..d {
            let (dst, src) = (
                &mut self.scatter[i * d + i..(i + 1) * d],
                &gram[i * d + i..(i + 1) * d],
            );
            for (a, b) in dst.iter_mut().zip(src) {
                *a += b;
            }
        }
        self.count += t as u64;
    }

    /// The centred moments of everything added so far.
    pub fn moments(&self) -> Moments {
        let d = self.dim;
        let n = self.count;
        if n == 0 {
            return Moments::empty(d);
        }
        let shift = self.shift.as_deref().expect("rows were added");
        let nf = n as f64;
        let mean: Vec<f64> = self
            .sum
            .iter()
            .zip(shift)
            .map(|(s, &c)| f64::from(c) + s / nf)
            .collect();
        let mut m2 = vec![0f64; d * d];
        for i in 0..d {
            for j in i..d {
                let v = self.scatter[i * d + j] - self.sum[i] * self.sum[j] / nf;
                m2[i * d + j] = v;
                m2[j * d + i] = v;
            }
        }
        Moments {
            dim: d,
            count: n,
            mean,
            m2,
        }
    }
}

fn to_f64<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 data")
        .into_iter()
        .map(f64::from)
        .collect()
}

/// First and second centred moments of a set of rows: `n`, the mean `x̄` and the scatter
/// `M₂ = Σ(x − x̄)(x − x̄)ᵀ` (row-major `d × d`, symmetric).
#[derive(Clone, Debug, PartialEq)]
pub struct Moments {
    /// Number of channels.
    pub dim: usize,
    /// Number of rows.
    pub count: u64,
    /// Mean row.
    pub mean: Vec<f64>,
    /// Centred scatter matrix (row-major, symmetric).
    pub m2: Vec<f64>,
}

impl Moments {
    /// No rows.
    pub fn empty(dim: usize) -> Self {
        Self {
            dim,
            count: 0,
            mean: vec![0.0; dim],
            m2: vec![0.0; dim * dim],
        }
    }

    /// The sample covariance `M₂ / (n − 1)` (row-major `d × d`); all zeros when `n < 2`.
    pub fn covariance(&self) -> Vec<f64> {
        if self.count < 2 {
            return vec![0.0; self.dim * self.dim];
        }
        let s = 1.0 / (self.count - 1) as f64;
        self.m2.iter().map(|v| v * s).collect()
    }

    /// Add another set of rows (Chan, Golub & LeVeque): with `δ = x̄_b − x̄_a`,
    /// `x̄ = x̄_a + δ·n_b/n`, `M₂ = M₂a + M₂b + δδᵀ·n_a·n_b/n`.
    pub fn merge(&mut self, other: &Moments) {
        assert_eq!(self.dim, other.dim, "moments of different dimensions");
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta: Vec<f64> = other
            .mean
            .iter()
            .zip(&self.mean)
            .map(|(b, a)| b - a)
            .collect();
        let w = na * nb / n;
        let d = self.dim;
        for i in 0..d {
            for j in 0..d {
                self.m2[i * d + j] += other.m2[i * d + j] + delta[i] * delta[j] * w;
            }
        }
        for (m, dl) in self.mean.iter_mut().zip(&delta) {
            *m += dl * nb / n;
        }
        self.count += other.count;
    }
}

/// `W·C·Wᵀ` for a `k × d` matrix `W` and a `d × d` matrix `C` (both row-major): the covariance
/// of the features `y = W·x` when `C` is the covariance of `x`. Linear baselines (channel
/// merging, PCA projection) get their covariance from the semantic features' this way, exactly,
/// without a second pass over the data.
pub fn transform_covariance(cov: &[f64], d: usize, w: &[f64], k: usize) -> Vec<f64> {
    assert_eq!(cov.len(), d * d);
    assert_eq!(w.len(), k * d);
    // T = W·C (k × d), then T·Wᵀ (k × k).
    let mut t = vec![0f64; k * d];
    for p in 0..k {
        let wp = &w[p * d..(p + 1) * d];
        let tp = &mut t[p * d..(p + 1) * d];
        for (i, &wpi) in wp.iter().enumerate() {
            if wpi == 0.0 {
                continue;
            }
            for (a, &c) in tp.iter_mut().zip(&cov[i * d..(i + 1) * d]) {
                *a += wpi * c;
            }
        }
    }
    let mut out = vec![0f64; k * k];
    for p in 0..k {
        for q in p..k {
            let v: f64 = t[p * d..(p + 1) * d]
                .iter()
                .zip(&w[q * d..(q + 1) * d])
                .map(|(a, b)| a * b)
                .sum();
            out[p * k + q] = v;
            out[q * k + p] = v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_cov(rows: &[f32], d: usize) -> Vec<f64> {
        let n = rows.len() / d;
        let mut mean = vec![0f64; d];
        for r in rows.chunks_exact(d) {
            for (m, &x) in mean.iter_mut().zip(r) {
                *m += f64::from(x) / n as f64;
            }
        }
        let mut c = vec![0f64; d * d];
        for r in rows.chunks_exact(d) {
            for i in 0..d {
                for j in 0..d {
                    c[i * d + j] +=
                        (f64::from(r[i]) - mean[i]) * (f64::from(r[j]) - mean[j]) / (n - 1) as f64;
                }
            }
        }
        c
    }

    fn data(n: usize, d: usize, offset: f32) -> Vec<f32> {
        (0..n * d)
            .map(|i| {
                let (t, c) = (i / d, i % d);
                offset + ((t * 7 + c * 13) % 17) as f32 * 0.25
                    - (c as f32 * 0.1).sin() * t as f32 * 0.01
            })
            .collect()
    }

    #[test]
    fn streaming_matches_two_pass_with_a_large_mean() {
        let d = 300; // more than one tile
        let rows = data(150, d, 1000.0);
        let want = naive_cov(&rows, d);
        let mut acc = CovarianceAccumulator::new(d);
        for chunk in rows.chunks(37 * d) {
            acc.add_rows(chunk);
        }
        let got = acc.moments().covariance();
        let scale = want.iter().fold(0f64, |m, x| m.max(x.abs()));
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-10 * scale, "{a} vs {b}");
        }
        assert_eq!(acc.count(), 150);
    }

    #[test]
    fn tensor_path_matches_host_path() {
        type B = burn::backend::Flex;
        let d = 40;
        let rows = data(90, d, 5.0);
        let mut host = CovarianceAccumulator::new(d);
        let mut dev = CovarianceAccumulator::new(d);
        for chunk in rows.chunks(30 * d) {
            host.add_rows(chunk);
            let t = chunk.len() / d;
            dev.add_tensor(Tensor::<B, 2>::from_data(
                TensorData::new(chunk.to_vec(), [t, d]),
                &Default::default(),
            ));
        }
        let (a, b) = (host.moments(), dev.moments());
        let scale = a.m2.iter().fold(0f64, |m, x| m.max(x.abs()));
        for (x, y) in a.m2.iter().zip(&b.m2) {
            assert!((x - y).abs() <= 1e-5 * scale, "{x} vs {y}");
        }
        for (x, y) in a.mean.iter().zip(&b.mean) {
            assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0));
        }
    }

    #[test]
    fn merged_moments_equal_the_pooled_ones() {
        let d = 7;
        let a = data(20, d, 0.0);
        let b = data(33, d, 3.0);
        let mut acc_a = CovarianceAccumulator::new(d);
        acc_a.add_rows(&a);
        let mut acc_b = CovarianceAccumulator::new(d);
        acc_b.add_rows(&b);
        let mut merged = acc_a.moments();
        merged.merge(&acc_b.moments());
        let pooled: Vec<f32> = a.iter().chain(&b).copied().collect();
        let want = naive_cov(&pooled, d);
        for (x, y) in merged.covariance().iter().zip(&want) {
            assert!((x - y).abs() < 1e-10, "{x} vs {y}");
        }
        assert_eq!(merged.count, 53);
        let mut empty = Moments::empty(d);
        empty.merge(&merged);
        assert_eq!(empty, merged);
    }

    #[test]
    fn transformed_covariance_equals_the_covariance_of_transformed_rows() {
        let (d, k) = (6, 3);
        let rows = data(25, d, 1.0);
        let w: Vec<f64> = (0..k * d).map(|i| ((i * 5) % 7) as f64 - 3.0).collect();
        let y: Vec<f32> = rows
            .chunks_exact(d)
            .flat_map(|r| {
                (0..k)
                    .map(|p| (0..d).map(|i| w[p * d + i] * f64::from(r[i])).sum::<f64>() as f32)
                    .collect::<Vec<_>>()
            })
            .collect();
        let want = naive_cov(&y, k);
        let got = transform_covariance(&naive_cov(&rows, d), d, &w, k);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
}
