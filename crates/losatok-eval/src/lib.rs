//! # losatok-eval
//!
//! The paper's measurement tools, for any data: the covariance spectra of LoSATok's
//! frame-level features (effective rank, PCA components for 90 % of the variance,
//! explained-variance curves; paper Appendix B.1) with the training-free baselines of its
//! Table 1 (channel merging, PCA-128), and the reconstruction metrics of its Table 4
//! (Mel-16k, STFT-16k) plus SI-SDR and the real-time factor.
//!
//! * [`linalg`]: a symmetric eigen-solver in `f64` (Householder + implicit QL).
//! * [`covariance`]: streaming covariance accumulators, mergeable moments.
//! * [`spectrum`]: effective rank, PCA count, explained-variance curves.
//! * [`baselines`]: channel merging and PCA projections, saved as safetensors.
//! * [`metrics`]: mel distance, STFT distance, SI-SDR.
//! * [`analyze`] and [`evaluate`]: the drivers of `losatok analyze` and `losatok eval`.

#![warn(missing_docs)]

pub mod analyze;
pub mod baselines;
pub mod covariance;
pub mod error;
pub mod evaluate;
pub mod io;
pub mod linalg;
pub mod metrics;
pub mod spectrum;

pub use analyze::{
    accumulate_file, AnalysisInput, AnalysisReport, AnalysisRow, FeatureAnalyzer, FeatureKind,
    FileAccumulator,
};
pub use baselines::Projection;
pub use covariance::{CovarianceAccumulator, Moments};
pub use error::EvalError;
pub use evaluate::{FileResult, Stat, Summary};
pub use linalg::{symmetric_eigen, symmetric_eigenvalues, SymmetricEigen};
pub use metrics::{si_sdr, MetricValues, ReconstructionMetrics, StftDistanceConfig};
pub use spectrum::{
    components_for_variance, effective_rank, explained_variance_curve, SpectrumStats,
};
