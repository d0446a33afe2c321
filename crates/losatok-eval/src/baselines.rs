//! The training-free low-dimensional baselines of the paper's Table 1, as linear projections
//! `y = (x − mean)·Wᵀ` of the semantic features:
//!
//! * **channel merging**: the average of every `g = 10` consecutive channels (1280 → 128);
//!   `W[p, c] = 1/|G_p|` for channel `c` in group `G_p = [p·g, min((p+1)·g, d))`, `mean = 0`.
//!   When `d` is not a multiple of `g` the last group is shorter.
//! * **PCA-k**: the projection onto the top-`k` principal axes (`k = min(128, d)`) of the
//!   features' covariance, fitted on the analysed data: `mean` is their mean, the rows of `W` are
//!   the unit eigenvectors of the `k` largest eigenvalues, in descending order, each signed so
//!   that its entry of largest magnitude is positive.
//!
//! A [`Projection`] is saved as safetensors (float32): `mean` `[d]`, `components` `[k, d]`
//! (the rows of `W`) and, for PCA, `explained_variance` `[k]` (the eigenvalues, i.e. the
//! variance of each output channel). The metadata holds `format` (`losatok-projection`),
//! `format_version`, `kind` (`pca` or `channel_merge`), `source` (the feature projected, e.g.
//! `semantic_emb`), `frames` (the frames fitted on) and `formula`. In PyTorch:
//! `y = (x - t["mean"]) @ t["components"].T`.

use std::collections::HashMap;
use std::path::Path;

use crate::covariance::Moments;
use crate::error::EvalError;
use crate::linalg::symmetric_eigen;

/// `__metadata__["format"]` of projection files.
pub const PROJECTION_FORMAT: &str = "losatok-projection";
/// `__metadata__["format_version"]` of projection files.
pub const PROJECTION_FORMAT_VERSION: &str = "1";
/// Channels averaged together by the channel-merging baseline.
pub const CHANNEL_MERGE_GROUP: usize = 10;
/// Components of the PCA baseline.
pub const PCA_COMPONENTS: usize = 128;

/// A linear projection `y = (x − mean)·Wᵀ` from `d` to `k` channels.
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    /// `"pca"` or `"channel_merge"`.
    pub kind: String,
    /// The feature it applies to (e.g. `semantic_emb`).
    pub source: String,
    /// Input channels `d`.
    pub input_dim: usize,
    /// Output channels `k`.
    pub output_dim: usize,
    /// Subtracted before projecting, `[d]` (zeros for channel merging).
    pub mean: Vec<f64>,
    /// `W`, row-major `[k, d]`.
    pub components: Vec<f64>,
    /// PCA: the variance along each component (descending eigenvalues), `[k]`.
    pub explained_variance: Option<Vec<f64>>,
    /// Frames the projection was fitted on (0 for channel merging).
    pub frames: u64,
}

impl Projection {
    /// Channel merging: the mean of every `group` consecutive channels of `d`.
    pub fn channel_merge(d: usize, group: usize, source: &str) -> Self {
        assert!(group > 0, "group size must be positive");
        let k = d.div_ceil(group);
        let mut w = vec![0f64; k * d];
        for p in 0..k {
            let (lo, hi) = (p * group, ((p + 1) * group).min(d));
            for c in lo..hi {
                w[p * d + c] = 1.0 / (hi - lo) as f64;
            }
        }
        Self {
            kind: "channel_merge".into(),
            source: source.into(),
            input_dim: d,
            output_dim: k,
            mean: vec![0.0; d],
            components: w,
            explained_variance: None,
            frames: 0,
        }
    }

    /// PCA with `min(k, d)` components fitted on `moments` (their sample covariance).
    pub fn pca(moments: &Moments, k: usize, source: &str) -> Self {
        let d = moments.dim;
        let k = k.min(d);
        let eig = symmetric_eigen(&moments.covariance(), d, true);
        let vectors = eig.vectors.as_ref().expect("vectors requested");
        let mut w = Vec::with_capacity(k * d);
        for p in 0..k {
            let v = &vectors[p * d..(p + 1) * d];
            let pivot = v
                .iter()
                .fold(0f64, |m, &x| if x.abs() > m.abs() { x } else { m });
            let sign = if pivot < 0.0 { -1.0 } else { 1.0 };
            w.extend(v.iter().map(|x| x * sign));
        }
        Self {
            kind: "pca".into(),
            source: source.into(),
            input_dim: d,
            output_dim: k,
            mean: moments.mean.clone(),
            components: w,
            explained_variance: Some(eig.values[..k].iter().map(|v| v.max(0.0)).collect()),
            frames: moments.count,
        }
    }

    /// Project host rows `[t, d]` (row-major) to `[t, k]`.
    pub fn project_rows(&self, rows: &[f32]) -> Vec<f32> {
        let (d, k) = (self.input_dim, self.output_dim);
        assert_eq!(rows.len() % d.max(1), 0, "rows of {d} values expected");
        let mut out = Vec::with_capacity(rows.len() / d.max(1) * k);
        let mut centred = vec![0f64; d];
        for r in rows.chunks_exact(d) {
            for ((c, &x), m) in centred.iter_mut().zip(r).zip(&self.mean) {
                *c = f64::from(x) - m;
            }
            for p in 0..k {
                let w = &self.components[p * d..(p + 1) * d];
                out.push(w.iter().zip(&centred).map(|(a, b)| a * b).sum::<f64>() as f32);
            }
        }
        out
    }

    /// Map projected rows `[t, k]` back to `[t, d]`: `x̂ = mean + y·W`. For PCA (orthonormal
    /// rows of `W`) this is the best rank-`k` reconstruction; it is exact for data of rank ≤ `k`.
    pub fn reconstruct_rows(&self, projected: &[f32]) -> Vec<f32> {
        let (d, k) = (self.input_dim, self.output_dim);
        let mut out = Vec::with_capacity(projected.len() / k.max(1) * d);
        for y in projected.chunks_exact(k) {
            let mut x = self.mean.clone();
            for (p, &yp) in y.iter().enumerate() {
                for (xi, w) in x.iter_mut().zip(&self.components[p * d..(p + 1) * d]) {
                    *xi += f64::from(yp) * w;
                }
            }
            out.extend(x.iter().map(|&v| v as f32));
        }
        out
    }

    /// Serialise as safetensors (see the module documentation).
    pub fn to_safetensors(&self) -> Vec<u8> {
        use safetensors::tensor::{Dtype, TensorView};
        let bytes = |v: &[f64]| -> Vec<u8> {
            v.iter()
                .flat_map(|&x| (x as f32).to_le_bytes())
                .collect::<Vec<u8>>()
        };
        let mean = bytes(&self.mean);
        let comps = bytes(&self.components);
        let ev = self.explained_variance.as_deref().map(bytes);
        let mut tensors: Vec<(&str, TensorView<'_>)> = vec![
            (
                "mean",
                TensorView::new(Dtype::F32, vec![self.input_dim], &mean).expect("shape"),
            ),
            (
                "components",
                TensorView::new(Dtype::F32, vec![self.output_dim, self.input_dim], &comps)
                    .expect("shape"),
            ),
        ];
        if let Some(ev) = &ev {
            tensors.push((
                "explained_variance",
                TensorView::new(Dtype::F32, vec![self.output_dim], ev).expect("shape"),
            ));
        }
        let meta: HashMap<String, String> = [
            ("format", PROJECTION_FORMAT.to_string()),
            ("format_version", PROJECTION_FORMAT_VERSION.to_string()),
            ("kind", self.kind.clone()),
            ("source", self.source.clone()),
            ("frames", self.frames.to_string()),
            ("formula", "y = (x - mean) @ components.T".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        safetensors::serialize(tensors, &Some(meta)).expect("serialise safetensors")
    }

    /// Write the projection to `path` atomically (see [`Self::to_safetensors`]).
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<(), EvalError> {
        crate::io::write_atomic(path, &self.to_safetensors(), overwrite)
    }

    /// Read a projection written by [`Self::save`].
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let bad = |message: String| EvalError::Read {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(PROJECTION_FORMAT) {
            return Err(bad(format!("not a {PROJECTION_FORMAT} file")));
        }
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
        let read = |name: &str| -> Result<(Vec<f64>, Vec<usize>), EvalError> {
            let t = st
                .tensor(name)
                .map_err(|_| bad(format!("no tensor `{name}`")))?;
            if t.dtype() != safetensors::Dtype::F32 {
                return Err(bad(format!("`{name}` is not float32")));
            }
            let v = t
                .data()
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect();
            Ok((v, t.shape().to_vec()))
        };
        let (mean, ms) = read("mean")?;
        let (components, cs) = read("components")?;
        if ms.len() != 1 || cs.len() != 2 || cs[1] != ms[0] {
            return Err(bad(format!(
                "inconsistent shapes: mean {ms:?}, components {cs:?}"
            )));
        }
        let explained_variance = match st.tensor("explained_variance") {
            Ok(_) => Some(read("explained_variance")?.0),
            Err(_) => None,
        };
        Ok(Self {
            kind: meta.get("kind").cloned().unwrap_or_default(),
            source: meta.get("source").cloned().unwrap_or_default(),
            input_dim: ms[0],
            output_dim: cs[0],
            mean,
            components,
            explained_variance,
            frames: meta.get("frames").and_then(|f| f.parse().ok()).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::covariance::CovarianceAccumulator;

    #[test]
    fn channel_merge_averages_groups() {
        let p = Projection::channel_merge(1280, 10, "semantic_emb");
        assert_eq!(p.output_dim, 128);
        let row: Vec<f32> = (0..1280).map(|c| c as f32).collect();
        let y = p.project_rows(&row);
        for (g, v) in y.iter().enumerate() {
            // mean of 10g … 10g+9 = 10g + 4.5
            assert!((v - (10.0 * g as f32 + 4.5)).abs() < 1e-3, "{g}: {v}");
        }
        // A shorter last group: d = 23 → 3 groups of 10, 10, 3.
        let p = Projection::channel_merge(23, 10, "x");
        assert_eq!(p.output_dim, 3);
        let y = p.project_rows(&[1.0; 23]);
        assert_eq!(y, vec![1.0, 1.0, 1.0]);
        let y = p.project_rows(&(0..23).map(|c| c as f32).collect::<Vec<_>>());
        assert_eq!(y, vec![4.5, 14.5, 21.0]);
    }

    #[test]
    fn pca_reproduces_low_rank_data_exactly() {
        // 400 frames of 300 channels, rank 100 (< 128), with a large mean.
        let (n, d, r) = (400usize, 300usize, 100usize);
        let basis: Vec<f64> = (0..r * d)
            .map(|i| (((i * 2654435761) % 1000) as f64 / 500.0 - 1.0) * 0.3)
            .collect();
        let rows: Vec<f32> = (0..n)
            .flat_map(|t| {
                let coef: Vec<f64> = (0..r)
                    .map(|j| {
                        ((t * 7919 + j * 104_729) * 2_654_435_761 % 10_007) as f64 / 5003.5 - 1.0
                    })
                    .collect();
                let basis = &basis;
                (0..d).map(move |c| {
                    (5.0 + (0..r).map(|j| coef[j] * basis[j * d + c]).sum::<f64>()) as f32
                })
            })
            .collect();
        let mut acc = CovarianceAccumulator::new(d);
        acc.add_rows(&rows);
        let p = Projection::pca(&acc.moments(), 128, "semantic_emb");
        assert_eq!((p.input_dim, p.output_dim), (300, 128));
        let back = p.reconstruct_rows(&p.project_rows(&rows));
        let scale = rows.iter().fold(0f32, |m, x| m.max(x.abs()));
        let err = rows
            .iter()
            .zip(&back)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 2e-5 * scale, "max |x − x̂| = {err}");
        // Components are orthonormal, eigenvalues descending, beyond the rank ~0.
        for a in 0..8 {
            for b in 0..8 {
                let dot: f64 = (0..d)
                    .map(|c| p.components[a * d + c] * p.components[b * d + c])
                    .sum();
                assert!((dot - f64::from(u8::from(a == b))).abs() < 1e-10);
            }
        }
        let ev = p.explained_variance.as_ref().unwrap();
        assert!(ev.windows(2).all(|w| w[0] >= w[1]));
        assert!(ev[r] < 1e-9 * ev[0], "λ_{r} = {}", ev[r]);
    }

    #[test]
    fn safetensors_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.safetensors");
        let mut acc = CovarianceAccumulator::new(4);
        acc.add_rows(&[1.0, 2.0, 3.0, 4.0, 2.0, 1.0, 0.0, 4.5, 0.0, 0.0, 1.0, 1.0]);
        let p = Projection::pca(&acc.moments(), 2, "semantic_emb");
        p.save(&path, false).unwrap();
        assert!(matches!(
            p.save(&path, false),
            Err(EvalError::OutputExists(_))
        ));
        let q = Projection::load(&path).unwrap();
        assert_eq!(
            (q.kind.as_str(), q.source.as_str()),
            ("pca", "semantic_emb")
        );
        assert_eq!((q.input_dim, q.output_dim, q.frames), (4, 2, 3));
        for (a, b) in p.components.iter().zip(&q.components) {
            assert!((a - b).abs() < 1e-6);
        }
        assert!(q.explained_variance.is_some());
        let c = Projection::channel_merge(4, 10, "semantic_emb");
        c.save(&path, true).unwrap();
        let q = Projection::load(&path).unwrap();
        assert_eq!(q.output_dim, 1);
        assert!(q.explained_variance.is_none());
    }
}
