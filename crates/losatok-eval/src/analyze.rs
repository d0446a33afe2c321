//! `losatok analyze`: covariance spectra of the model's frame-level features, per domain.
//!
//! Every file is encoded with [`Tokenizer::encode_stream`] (bounded memory, `z = μ`); each
//! feature chunk `[1, t, ·]` is folded into per-file [`CovarianceAccumulator`]s, which join
//! their domain's [`Moments`] once the file is done (a file that fails half-way contributes
//! nothing). The feature kinds ([`FeatureKind`]):
//!
//! | name | tensor | dim (official model) |
//! |---|---|---|
//! | `semantic` | `semantic_emb` (frozen MiDashengLM) | 1280 |
//! | `sembo` | `semantic_emb_low` (SemBo output) | 128 |
//! | `z` | `z` = `mu` (the LoSATok latent) | 128 |
//! | `acoustic` | `acoustic_emb` (acoustic branch) | 1280 |
//! | `acoustic_low` | `acoustic_emb_low` (`fc_a(acoustic_emb)`) | 128 |
//! | `channel_merge` | `semantic_emb`, mean of every 10 channels | 128 |
//! | `pca` | `semantic_emb` on its top-128 principal axes | 128 |
//!
//! The two baselines' covariances are `W·C·Wᵀ` of the semantic covariance `C` (exact, no
//! second pass). The PCA is fitted once, on all analysed frames pooled, and applied to every
//! domain. For each (domain, kind): the effective rank, the PCA count for 90 % of the variance
//! and the explained-variance curve ([`crate::spectrum`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use losatok::{Features, Sampling, Tokenizer};

use crate::baselines::{Projection, CHANNEL_MERGE_GROUP, PCA_COMPONENTS};
use crate::covariance::{transform_covariance, CovarianceAccumulator, Moments};
use crate::error::EvalError;
use crate::io::write_atomic;
use crate::spectrum::{SpectrumStats, PCA_VARIANCE_FRACTION};

/// The name of the row that pools every domain.
pub const POOLED: &str = "all";

/// The feature kinds reported by [`AnalysisReport`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FeatureKind {
    /// `semantic_emb`.
    Semantic,
    /// `semantic_emb_low` (SemBo).
    Sembo,
    /// `z` (= `mu`).
    Z,
    /// `acoustic_emb`.
    Acoustic,
    /// `acoustic_emb_low`.
    AcousticLow,
    /// `semantic_emb` averaged over every 10 channels.
    ChannelMerge,
    /// `semantic_emb` projected on its top-128 principal axes.
    Pca,
}

impl FeatureKind {
    /// Every kind, in report order.
    pub const ALL: [FeatureKind; 7] = [
        FeatureKind::Semantic,
        FeatureKind::Sembo,
        FeatureKind::Z,
        FeatureKind::Acoustic,
        FeatureKind::AcousticLow,
        FeatureKind::ChannelMerge,
        FeatureKind::Pca,
    ];

    /// The kinds read directly from the model.
    pub const MEASURED: [FeatureKind; 5] = [
        FeatureKind::Semantic,
        FeatureKind::Sembo,
        FeatureKind::Z,
        FeatureKind::Acoustic,
        FeatureKind::AcousticLow,
    ];

    /// Short name (table and plot).
    pub fn name(self) -> &'static str {
        match self {
            FeatureKind::Semantic => "semantic",
            FeatureKind::Sembo => "sembo",
            FeatureKind::Z => "z",
            FeatureKind::Acoustic => "acoustic",
            FeatureKind::AcousticLow => "acoustic_low",
            FeatureKind::ChannelMerge => "channel_merge",
            FeatureKind::Pca => "pca",
        }
    }

    /// Where the values come from.
    pub fn source(self) -> &'static str {
        match self {
            FeatureKind::Semantic => "semantic_emb",
            FeatureKind::Sembo => "semantic_emb_low",
            FeatureKind::Z => "z",
            FeatureKind::Acoustic => "acoustic_emb",
            FeatureKind::AcousticLow => "acoustic_emb_low",
            FeatureKind::ChannelMerge => "semantic_emb, mean of every 10 channels",
            FeatureKind::Pca => "semantic_emb, PCA to min(128, dim) axes fitted on all frames",
        }
    }

    fn tensor<B: Backend>(self, f: &Features<B>) -> &Tensor<B, 3> {
        match self {
            FeatureKind::Semantic => &f.semantic_emb,
            FeatureKind::Sembo => &f.semantic_emb_low,
            FeatureKind::Z => &f.z,
            FeatureKind::Acoustic => &f.acoustic_emb,
            FeatureKind::AcousticLow => &f.acoustic_emb_low,
            _ => unreachable!("derived kinds have no tensor"),
        }
    }
}

/// The streaming accumulators of one file: one per measured kind.
#[derive(Clone, Debug, Default)]
pub struct FileAccumulator {
    accs: Vec<CovarianceAccumulator>,
    frames: u64,
}

impl FileAccumulator {
    /// Empty (sized on the first chunk).
    pub fn new() -> Self {
        Self::default()
    }

    /// Fold one chunk of features (`[1, t, ·]` each) in.
    pub fn add<B: Backend>(&mut self, f: &Features<B>) {
        if self.accs.is_empty() {
            self.accs = FeatureKind::MEASURED
                .iter()
                .map(|k| CovarianceAccumulator::new(k.tensor(f).dims()[2]))
                .collect();
        }
        for (acc, kind) in self.accs.iter_mut().zip(FeatureKind::MEASURED) {
            let x = kind.tensor(f).clone();
            let [b, t, d] = x.dims();
            acc.add_tensor(x.reshape([b * t, d]));
        }
        self.frames += f.num_frames() as u64;
    }

    /// Frames added.
    pub fn frames(&self) -> u64 {
        self.frames
    }
}

#[derive(Clone, Debug)]
struct DomainMoments {
    files: usize,
    samples: u64,
    moments: Vec<Moments>,
}

/// Collects per-domain moments, file by file, then computes the [`AnalysisReport`].
#[derive(Clone, Debug, Default)]
pub struct FeatureAnalyzer {
    domains: BTreeMap<String, DomainMoments>,
}

impl FeatureAnalyzer {
    /// No data yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a finished file of `samples` 16 kHz samples to `domain`.
    pub fn add_file(
        &mut self,
        domain: &str,
        file: &FileAccumulator,
        samples: u64,
    ) -> Result<(), EvalError> {
        if file.accs.is_empty() {
            return Ok(());
        }
        let moments: Vec<Moments> = file.accs.iter().map(|a| a.moments()).collect();
        if let Some(first) = self.domains.values().next() {
            let dims: Vec<usize> = first.moments.iter().map(|m| m.dim).collect();
            let new: Vec<usize> = moments.iter().map(|m| m.dim).collect();
            if dims != new {
                return Err(EvalError::Invalid(format!(
                    "feature sizes changed between files ({dims:?} then {new:?})"
                )));
            }
        }
        match self.domains.get_mut(domain) {
            Some(d) => {
                d.files += 1;
                d.samples += samples;
                for (a, b) in d.moments.iter_mut().zip(&moments) {
                    a.merge(b);
                }
            }
            None => {
                self.domains.insert(
                    domain.to_string(),
                    DomainMoments {
                        files: 1,
                        samples,
                        moments,
                    },
                );
            }
        }
        Ok(())
    }

    /// Domains seen so far.
    pub fn domains(&self) -> Vec<String> {
        self.domains.keys().cloned().collect()
    }

    /// Eigen-decompose every covariance and build the report (a few seconds per 1280-d
    /// matrix). Errors when no frames were collected.
    pub fn finish(&self) -> Result<AnalysisReport, EvalError> {
        if self.domains.is_empty() {
            return Err(EvalError::Invalid("no features were collected".into()));
        }
        // Groups: each domain, then all pooled when there are several.
        let mut groups: Vec<(String, DomainMoments)> = self
            .domains
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let pooled = if groups.len() > 1 {
            let mut all = groups[0].1.clone();
            for (_, d) in &groups[1..] {
                all.files += d.files;
                all.samples += d.samples;
                for (a, b) in all.moments.iter_mut().zip(&d.moments) {
                    a.merge(b);
                }
            }
            let name = if self.domains.contains_key(POOLED) {
                format!("{POOLED} (pooled)")
            } else {
                POOLED.to_string()
            };
            groups.push((name, all.clone()));
            all
        } else {
            groups[0].1.clone()
        };
        let semantic = &pooled.moments[0];
        if semantic.count < 2 {
            return Err(EvalError::Invalid(format!(
                "only {} frame(s) were collected; the covariance needs at least 2",
                semantic.count
            )));
        }
        let pca = Projection::pca(semantic, PCA_COMPONENTS, "semantic_emb");
        let merge = Projection::channel_merge(semantic.dim, CHANNEL_MERGE_GROUP, "semantic_emb");

        let mut rows = Vec::new();
        for (domain, g) in &groups {
            let sem_cov = g.moments[0].covariance();
            let d = g.moments[0].dim;
            for kind in FeatureKind::ALL {
                let (stats, m) = match kind {
                    FeatureKind::ChannelMerge => (
                        SpectrumStats::from_covariance(
                            &transform_covariance(&sem_cov, d, &merge.components, merge.output_dim),
                            merge.output_dim,
                        ),
                        &g.moments[0],
                    ),
                    FeatureKind::Pca => (
                        SpectrumStats::from_covariance(
                            &transform_covariance(&sem_cov, d, &pca.components, pca.output_dim),
                            pca.output_dim,
                        ),
                        &g.moments[0],
                    ),
                    _ => {
                        let i = FeatureKind::MEASURED
                            .iter()
                            .position(|k| *k == kind)
                            .expect("measured");
                        let m = &g.moments[i];
                        (SpectrumStats::from_covariance(&m.covariance(), m.dim), m)
                    }
                };
                rows.push(AnalysisRow {
                    domain: domain.clone(),
                    kind,
                    files: g.files,
                    frames: m.count,
                    seconds: g.samples as f64 / 16_000.0,
                    stats,
                });
            }
        }
        Ok(AnalysisReport {
            rows,
            pca,
            channel_merge: merge,
            pooled: groups.last().expect("a group").0.clone(),
        })
    }
}

/// One line of the table: one feature kind in one domain.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisRow {
    /// Domain (or the pooled row).
    pub domain: String,
    /// Feature kind.
    pub kind: FeatureKind,
    /// Files in the domain.
    pub files: usize,
    /// Frames (feature vectors) analysed.
    pub frames: u64,
    /// Seconds of audio analysed.
    pub seconds: f64,
    /// Effective rank, PCA-90 and the spectrum.
    pub stats: SpectrumStats,
}

/// The result of an analysis: the table, and the two baseline projections.
#[derive(Clone, Debug)]
pub struct AnalysisReport {
    /// Rows by domain (alphabetical, the pooled row last), then kind.
    pub rows: Vec<AnalysisRow>,
    /// PCA of the semantic features, fitted on every frame analysed.
    pub pca: Projection,
    /// The channel-merging projection of the semantic features.
    pub channel_merge: Projection,
    /// The name of the row over all the data (the only domain if there is one).
    pub pooled: String,
}

/// A CSV field, quoted when needed.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn num(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "NaN".into()
    }
}

/// The file names an analysis writes into its output folder.
pub const ANALYSIS_OUTPUTS: [&str; 7] = [
    "analysis.csv",
    "analysis.md",
    "explained_variance.csv",
    "explained_variance.png",
    "explained_variance_first128.png",
    "pca128.safetensors",
    "channel_merge128.safetensors",
];

impl AnalysisReport {
    /// Domains in report order (the pooled row last).
    pub fn domains(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.rows {
            if !out.contains(&r.domain) {
                out.push(r.domain.clone());
            }
        }
        out
    }

    /// The row of `kind` in `domain`.
    pub fn row(&self, domain: &str, kind: FeatureKind) -> Option<&AnalysisRow> {
        self.rows
            .iter()
            .find(|r| r.domain == domain && r.kind == kind)
    }

    /// `analysis.csv`: `domain,feature,source,dim,files,frames,seconds,effective_rank,pca90,total_variance`.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "domain,feature,source,dim,files,frames,seconds,effective_rank,pca90,total_variance\n",
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{:.6e}",
                csv_field(&r.domain),
                r.kind.name(),
                csv_field(r.kind.source()),
                r.stats.dim,
                r.files,
                r.frames,
                num(r.seconds, 3),
                num(r.stats.effective_rank, 4),
                r.stats.pca90,
                r.stats.total_variance,
            );
        }
        s
    }

    /// `analysis.md`: one readable table per domain, and the definitions.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from("# Feature analysis\n\n");
        s.push_str(
            "Effective rank: exp(−Σ p_i ln p_i) with p_i = λ_i/Σλ over the eigenvalues of the \
             frame covariance (paper eqs. 6–7). PCA-90: the fewest principal components holding \
             90 % of the variance (eq. 8). `channel_merge`: the mean of every 10 semantic \
             channels; `pca`: the semantic features on their top-128 principal axes, fitted on \
             all frames analysed.\n",
        );
        for domain in self.domains() {
            let rows: Vec<&AnalysisRow> = self.rows.iter().filter(|r| r.domain == domain).collect();
            let first = rows[0];
            let _ = write!(
                s,
                "\n## {domain}\n\n{} file(s), {:.1} s of audio, {} frames.\n\n\
                 | feature | source | dim | effective rank | PCA-90 |\n|---|---|---:|---:|---:|\n",
                first.files, first.seconds, first.frames
            );
            for r in rows {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} |",
                    r.kind.name(),
                    r.kind.source(),
                    r.stats.dim,
                    num(r.stats.effective_rank, 2),
                    r.stats.pca90
                );
            }
        }
        s
    }

    /// `explained_variance.csv`: `domain,feature,k,explained_variance` (cumulative, k from 1).
    pub fn curves_csv(&self) -> String {
        let mut s = String::from("domain,feature,k,cumulative_explained_variance\n");
        for r in &self.rows {
            for (k, v) in r.stats.curve().iter().enumerate() {
                let _ = writeln!(
                    s,
                    "{},{},{},{v:.8}",
                    csv_field(&r.domain),
                    r.kind.name(),
                    k + 1
                );
            }
        }
        s
    }

    /// The explained-variance curves of `domain` as a PNG: cumulative explained variance
    /// against the number of components (from the point (0, 0), up to `max_components` or
    /// all), one curve per kind, each named with its dimension and PCA-90 count.
    pub fn curves_png(
        &self,
        domain: &str,
        max_components: Option<usize>,
    ) -> Result<Vec<u8>, EvalError> {
        let rows: Vec<&AnalysisRow> = self.rows.iter().filter(|r| r.domain == domain).collect();
        let names: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{} ({}-d, PCA-{:.0} {})",
                    r.kind.name(),
                    r.stats.dim,
                    PCA_VARIANCE_FRACTION * 100.0,
                    r.stats.pca90
                )
            })
            .collect();
        let points: Vec<Vec<(u64, f64)>> = rows
            .iter()
            .map(|r| {
                std::iter::once((0, 0.0))
                    .chain(
                        r.stats
                            .curve()
                            .iter()
                            .enumerate()
                            .take(max_components.unwrap_or(usize::MAX))
                            .map(|(k, &v)| (k as u64 + 1, v)),
                    )
                    .collect()
            })
            .collect();
        let series: Vec<(&str, &[(u64, f64)])> = names
            .iter()
            .zip(&points)
            .map(|(n, p)| (n.as_str(), p.as_slice()))
            .collect();
        losatok_train::metrics::loss_curves_png(&series, 960, 600, false)
            .map_err(|e| EvalError::Invalid(format!("cannot draw the curves: {e}")))
    }

    /// Write every output into `dir` (created if missing): [`ANALYSIS_OUTPUTS`], plus
    /// `explained_variance_<domain>.png` per domain when there are several. Without
    /// `overwrite`, nothing is written if any output already exists. Returns the paths written.
    pub fn write(&self, dir: &Path, overwrite: bool) -> Result<Vec<PathBuf>, EvalError> {
        std::fs::create_dir_all(dir).map_err(|e| EvalError::Write {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut files: Vec<(PathBuf, Vec<u8>)> = vec![
            (dir.join(ANALYSIS_OUTPUTS[0]), self.to_csv().into_bytes()),
            (
                dir.join(ANALYSIS_OUTPUTS[1]),
                self.to_markdown().into_bytes(),
            ),
            (
                dir.join(ANALYSIS_OUTPUTS[2]),
                self.curves_csv().into_bytes(),
            ),
            (
                dir.join(ANALYSIS_OUTPUTS[3]),
                self.curves_png(&self.pooled, None)?,
            ),
            (
                dir.join(ANALYSIS_OUTPUTS[4]),
                self.curves_png(&self.pooled, Some(128))?,
            ),
            (dir.join(ANALYSIS_OUTPUTS[5]), self.pca.to_safetensors()),
            (
                dir.join(ANALYSIS_OUTPUTS[6]),
                self.channel_merge.to_safetensors(),
            ),
        ];
        let domains = self.domains();
        if domains.len() > 1 {
            for d in &domains[..domains.len() - 1] {
                let safe: String = d
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                files.push((
                    dir.join(format!("explained_variance_{safe}.png")),
                    self.curves_png(d, None)?,
                ));
            }
        }
        if !overwrite {
            if let Some((p, _)) = files.iter().find(|(p, _)| p.exists()) {
                return Err(EvalError::OutputExists(p.clone()));
            }
        }
        for (p, bytes) in &files {
            write_atomic(p, bytes, overwrite)?;
        }
        Ok(files.into_iter().map(|(p, _)| p).collect())
    }
}

/// One input of an analysis.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisInput {
    /// The audio file.
    pub path: PathBuf,
    /// Its domain.
    pub domain: String,
}

/// Encode one file (its first `max_samples` samples, if set) and fold its features into a new
/// [`FileAccumulator`]. Returns it with the number of 16 kHz samples used.
pub fn accumulate_file<B: Backend>(
    tok: &Tokenizer<B>,
    path: &Path,
    max_samples: Option<u64>,
) -> Result<(FileAccumulator, u64), EvalError> {
    let mut acc = FileAccumulator::new();
    let summary = tok
        .encode_stream(
            |_pass| losatok::file_blocks(path, max_samples, |_, _| {}),
            Sampling::Mean,
            |f| {
                acc.add(&f);
                Ok(())
            },
        )
        .map_err(|e| match e {
            losatok::Error::Signal { path: None, source } => {
                EvalError::Losatok(losatok::Error::Signal {
                    path: Some(path.to_path_buf()),
                    source,
                })
            }
            other => EvalError::Losatok(other),
        })?;
    Ok((acc, summary.samples as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::Flex;

    /// Features whose kinds all share one known spectrum: `rows` `[t, d]` for every tensor.
    fn features(rows: &[f32], t: usize, d: usize) -> Features<B> {
        let x = Tensor::<B, 3>::from_data(
            TensorData::new(rows.to_vec(), [1, t, d]),
            &Default::default(),
        );
        Features {
            z: x.clone(),
            mu: x.clone(),
            logvar: x.clone(),
            semantic_emb: x.clone(),
            acoustic_emb: x.clone(),
            unified_emb: x.clone(),
            semantic_emb_low: x.clone(),
            acoustic_emb_low: x.clone(),
            unified_emb_low: x,
        }
    }

    /// `n` rows whose sample covariance is exactly diagonal with the given variances: the
    /// columns are ±1 patterns of a Sylvester-Hadamard matrix (orthogonal, zero mean).
    fn design(n: usize, sd: &[f64]) -> Vec<f32> {
        assert!(n.is_power_of_two() && sd.len() < n);
        let h = |i: usize, j: usize| {
            if (i & j).count_ones().is_multiple_of(2) {
                1.0
            } else {
                -1.0
            }
        };
        (0..n)
            .flat_map(|i| {
                sd.iter()
                    .enumerate()
                    .map(move |(c, s)| (s * h(i, c + 1) + 2.0) as f32)
            })
            .collect()
    }

    #[test]
    fn known_rank_features_give_that_effective_rank() {
        // 20 channels, 6 of equal variance and 14 constant: erank 6, PCA-90 = 6 (5.4 → 6).
        let mut sd = vec![0.0; 20];
        for s in sd.iter_mut().take(6) {
            *s = 1.5;
        }
        let rows = design(64, &sd);
        let mut file = FileAccumulator::new();
        for chunk in rows.chunks(20 * 16) {
            file.add(&features(chunk, chunk.len() / 20, 20));
        }
        let mut an = FeatureAnalyzer::new();
        an.add_file("speech", &file, 64 * 640).unwrap();
        let rep = an.finish().unwrap();
        assert_eq!(rep.domains(), vec!["speech".to_string()]);
        let r = rep.row("speech", FeatureKind::Semantic).unwrap();
        assert!(
            (r.stats.effective_rank - 6.0).abs() < 1e-9,
            "{}",
            r.stats.effective_rank
        );
        assert_eq!(r.stats.pca90, 6);
        assert_eq!(r.frames, 64);
        // PCA onto the top min(128, 20) = 20 axes keeps the spectrum.
        let p = rep.row("speech", FeatureKind::Pca).unwrap();
        assert_eq!(p.stats.dim, 20);
        assert!((p.stats.effective_rank - 6.0).abs() < 1e-9);
        // Channel merge of 20 → 2 groups: group 0 averages 6 independent unit-variance
        // channels (+ 4 constant ones), group 1 is constant: rank 1.
        let m = rep.row("speech", FeatureKind::ChannelMerge).unwrap();
        assert_eq!(m.stats.dim, 2);
        assert!((m.stats.effective_rank - 1.0).abs() < 1e-9);
        let v = 6.0 * 1.5f64.powi(2) / 100.0 * 64.0 / 63.0;
        assert!(
            (m.stats.total_variance - v).abs() < 1e-9,
            "{}",
            m.stats.total_variance
        );
    }

    #[test]
    fn pooled_row_geometric_spectrum_and_outputs() {
        // Two domains with geometric spectra (ratio 1/2 and 1/4) of 8 channels.
        let sd_a: Vec<f64> = (0..8).map(|i| 0.5f64.powi(i).sqrt()).collect();
        let sd_b: Vec<f64> = (0..8).map(|i| 0.25f64.powi(i).sqrt()).collect();
        let mut an = FeatureAnalyzer::new();
        for (dom, sd) in [("music", &sd_a), ("speech", &sd_b)] {
            let rows = design(16, sd);
            let mut f = FileAccumulator::new();
            f.add(&features(&rows, 16, 8));
            an.add_file(dom, &f, 16 * 640).unwrap();
        }
        let rep = an.finish().unwrap();
        assert_eq!(rep.domains(), vec!["music", "speech", "all"]);
        let want =
            crate::spectrum::effective_rank(&(0..8).map(|i| 0.5f64.powi(i)).collect::<Vec<_>>());
        // (float32 features and Gram matrices: relative rounding ~1e-7)
        let got = rep
            .row("music", FeatureKind::Z)
            .unwrap()
            .stats
            .effective_rank;
        assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
        let all = rep.row("all", FeatureKind::Semantic).unwrap();
        assert_eq!((all.files, all.frames), (2, 32));
        // Pooled variance = mean of the two (equal means, equal counts), scaled by n−1.
        let tv = (sd_a.iter().chain(&sd_b).map(|s| s * s).sum::<f64>()) * 16.0 / 15.0 * 15.0 / 31.0;
        assert!((all.stats.total_variance - tv).abs() < 1e-6 * tv);

        let dir = tempfile::tempdir().unwrap();
        let written = rep.write(dir.path(), false).unwrap();
        assert_eq!(written.len(), ANALYSIS_OUTPUTS.len() + 2);
        assert!(matches!(
            rep.write(dir.path(), false),
            Err(EvalError::OutputExists(_))
        ));
        rep.write(dir.path(), true).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("analysis.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + 3 * FeatureKind::ALL.len());
        let pca = Projection::load(&dir.path().join("pca128.safetensors")).unwrap();
        assert_eq!((pca.input_dim, pca.output_dim, pca.frames), (8, 8, 32));
    }

    #[test]
    fn empty_analysis_is_an_error() {
        assert!(FeatureAnalyzer::new().finish().is_err());
    }
}
