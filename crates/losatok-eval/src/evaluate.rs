//! `losatok eval`: reconstruction metrics over a set of references, per file and summarised.
//!
//! Each reference is loaded as 16 kHz mono (exactly as `librosa.load(sr=16000, mono=True)`),
//! cut to `max_samples` if set, and compared with its estimate — a pre-computed file (resampled
//! to 16 kHz if needed), or a reconstruction made on the fly with
//! [`Tokenizer::reconstruct_file`] — by [`ReconstructionMetrics`]. The real-time factor of an
//! on-the-fly reconstruction is the wall time of `reconstruct_file` (reading, encoding,
//! decoding and writing the file; model loading excluded) divided by the duration of the
//! reconstruction.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use burn::prelude::*;
use losatok::{FileOptions, Tokenizer};

use crate::analyze::csv_field;
use crate::error::EvalError;
use crate::metrics::{MetricValues, ReconstructionMetrics, SAMPLE_RATE};

/// The metrics of one file.
#[derive(Clone, Debug, PartialEq)]
pub struct FileResult {
    /// The reference, relative to the references' root.
    pub file: String,
    /// Seconds of audio compared (the common length).
    pub seconds: f64,
    /// Mel distance, STFT distance and SI-SDR.
    pub values: MetricValues,
    /// Real-time factor of the reconstruction, when made on the fly.
    pub rtf: Option<f64>,
    /// Processing seconds of the reconstruction, when made on the fly.
    pub processing_seconds: Option<f64>,
    /// Seconds of reconstructed audio, when made on the fly.
    pub output_seconds: Option<f64>,
}

fn load(path: &Path, max_samples: Option<u64>) -> Result<Vec<f32>, EvalError> {
    let mut x = losatok::audio::load(path)?;
    if let Some(m) = max_samples {
        x.truncate(m.min(x.len() as u64) as usize);
    }
    Ok(x)
}

fn with_path(path: &Path, e: EvalError) -> EvalError {
    match e {
        EvalError::Invalid(m) => EvalError::Invalid(format!("{}: {m}", path.display())),
        other => other,
    }
}

/// Compare the estimate file `estimate` with the reference file `reference`.
pub fn evaluate_files<B: Backend>(
    metrics: &ReconstructionMetrics<B>,
    name: &str,
    reference: &Path,
    estimate: &Path,
    max_samples: Option<u64>,
) -> Result<FileResult, EvalError> {
    let r = load(reference, max_samples)?;
    let e = load(estimate, max_samples)?;
    let values = metrics
        .compute(&e, &r)
        .map_err(|e| with_path(reference, e))?;
    Ok(FileResult {
        file: name.to_string(),
        seconds: values.samples as f64 / f64::from(SAMPLE_RATE),
        values,
        rtf: None,
        processing_seconds: None,
        output_seconds: None,
    })
}

/// Reconstruct `reference` into `output` (a wav) with `tok`, timing it, then compare.
pub fn reconstruct_and_evaluate<B: Backend, M: Backend>(
    tok: &Tokenizer<B>,
    metrics: &ReconstructionMetrics<M>,
    name: &str,
    reference: &Path,
    output: &Path,
    opts: &FileOptions,
) -> Result<FileResult, EvalError> {
    let max_samples = opts.max_duration.map(|d| (d * 16_000.0) as u64);
    let t0 = Instant::now();
    let summary = tok.reconstruct_file(reference, output, opts)?;
    let secs = t0.elapsed().as_secs_f64();
    let out_secs = summary.output_samples as f64 / f64::from(SAMPLE_RATE);
    let mut res = evaluate_files(metrics, name, reference, output, max_samples)?;
    res.rtf = Some(secs / out_secs.max(1e-9));
    res.processing_seconds = Some(secs);
    res.output_seconds = Some(out_secs);
    Ok(res)
}

fn num(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "NaN".into()
    }
}

/// `eval.csv`: `file,seconds,mel,stft,si_sdr,rtf` (rtf empty without on-the-fly
/// reconstruction).
pub fn results_csv(results: &[FileResult]) -> String {
    let mut s = String::from("file,seconds,mel,stft,si_sdr,rtf\n");
    for r in results {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{}",
            csv_field(&r.file),
            num(r.seconds, 3),
            num(r.values.mel, 6),
            num(r.values.stft, 6),
            num(r.values.si_sdr, 3),
            r.rtf.map(|v| num(v, 5)).unwrap_or_default()
        );
    }
    s
}

/// Mean and median of one metric over the files where it is defined.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    /// Files with a finite value.
    pub n: usize,
    /// Mean (NaN when `n = 0`).
    pub mean: f64,
    /// Median (the mean of the two middle values for even `n`; NaN when `n = 0`).
    pub median: f64,
}

impl Stat {
    /// Over the finite values of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Self {
                n,
                mean: f64::NAN,
                median: f64::NAN,
            };
        }
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Self {
            n,
            mean: v.iter().sum::<f64>() / n as f64,
            median,
        }
    }

    fn json(&self) -> serde_json::Value {
        let f = |x: f64| {
            if x.is_finite() {
                serde_json::Value::from(x)
            } else {
                serde_json::Value::Null
            }
        };
        serde_json::json!({"n": self.n, "mean": f(self.mean), "median": f(self.median)})
    }
}

/// The summary of an evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Files evaluated.
    pub files: usize,
    /// Files that failed.
    pub failed: usize,
    /// Seconds of audio compared.
    pub seconds: f64,
    /// Mel distance.
    pub mel: Stat,
    /// STFT distance.
    pub stft: Stat,
    /// SI-SDR (dB).
    pub si_sdr: Stat,
    /// Per-file real-time factor (on-the-fly reconstruction only).
    pub rtf: Option<Stat>,
    /// Total processing seconds / total reconstructed seconds (on-the-fly only).
    pub overall_rtf: Option<f64>,
}

impl Summary {
    /// Summarise per-file results (`failed` files are only counted).
    pub fn of(results: &[FileResult], failed: usize) -> Self {
        let reconstructed = results.iter().all(|r| r.rtf.is_some()) && !results.is_empty();
        let overall_rtf = reconstructed.then(|| {
            let p: f64 = results.iter().filter_map(|r| r.processing_seconds).sum();
            let o: f64 = results.iter().filter_map(|r| r.output_seconds).sum();
            p / o.max(1e-9)
        });
        Self {
            files: results.len(),
            failed,
            seconds: results.iter().map(|r| r.seconds).sum(),
            mel: Stat::of(results.iter().map(|r| r.values.mel)),
            stft: Stat::of(results.iter().map(|r| r.values.stft)),
            si_sdr: Stat::of(results.iter().map(|r| r.values.si_sdr)),
            rtf: reconstructed.then(|| Stat::of(results.iter().filter_map(|r| r.rtf))),
            overall_rtf,
        }
    }

    /// `eval_summary.json`, with the metric definitions.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "files": self.files,
            "failed": self.failed,
            "seconds": self.seconds,
            "sample_rate": SAMPLE_RATE,
            "metrics": {
                "mel": self.mel.json(),
                "stft": self.stft.json(),
                "si_sdr": self.si_sdr.json(),
            },
            "definitions": {
                "mel": "DAC multi-scale mel distance at 16 kHz: sum over windows 32..2048 \
                        (hop window/4, 5..320 Slaney mel bands) of mean |log10(max(mel(x_hat), 1e-5)) \
                        - log10(max(mel(x), 1e-5))|",
                "stft": "DAC multi-scale STFT distance at 16 kHz: sum over windows 2048 and 512 \
                         (hop window/4, Hann, centred) of mean |log10(max(|X_hat|, 1e-5)^2) \
                         - log10(max(|X|, 1e-5)^2)| + mean ||X_hat| - |X||",
                "si_sdr": "scale-invariant SDR in dB, zero-mean, on the common length, clamped to \
                           [-100, 100]",
                "rtf": "wall seconds of reconstruct_file (read, encode, decode, write; model load \
                        excluded) / seconds of reconstructed audio",
                "length": "estimate and reference cropped to the shorter of the two",
            },
        });
        if let (Some(rtf), Some(o)) = (&self.rtf, self.overall_rtf) {
            v["metrics"]["rtf"] = rtf.json();
            v["overall_rtf"] = serde_json::Value::from(o);
        }
        v
    }

    /// A short human-readable table.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{} file(s), {:.1} s of audio{}\n{:<8} {:>12} {:>12}\n",
            self.files,
            self.seconds,
            if self.failed > 0 {
                format!(", {} failed", self.failed)
            } else {
                String::new()
            },
            "metric",
            "mean",
            "median"
        );
        let mut line = |name: &str, st: &Stat| {
            let _ = writeln!(
                s,
                "{name:<8} {:>12} {:>12}",
                num(st.mean, 4),
                num(st.median, 4)
            );
        };
        line("mel", &self.mel);
        line("stft", &self.stft);
        line("si_sdr", &self.si_sdr);
        if let Some(r) = &self.rtf {
            line("rtf", r);
        }
        if let Some(o) = self.overall_rtf {
            let _ = writeln!(s, "overall real-time factor {o:.4}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(mel: f64, si: f64, rtf: Option<f64>) -> FileResult {
        FileResult {
            file: "a,b.wav".into(),
            seconds: 2.0,
            values: MetricValues {
                samples: 32000,
                mel,
                stft: 2.0 * mel,
                si_sdr: si,
            },
            rtf,
            processing_seconds: rtf.map(|r| r * 2.0),
            output_seconds: rtf.map(|_| 2.0),
        }
    }

    #[test]
    fn summary_statistics() {
        let st = Stat::of([3.0, 1.0, f64::NAN, 2.0, 10.0]);
        assert_eq!((st.n, st.mean, st.median), (4, 4.0, 2.5));
        assert!(Stat::of([]).mean.is_nan());
        let rs = [res(1.0, 10.0, Some(0.5)), res(3.0, f64::NAN, Some(1.5))];
        let s = Summary::of(&rs, 1);
        assert_eq!((s.files, s.failed, s.seconds), (2, 1, 4.0));
        assert_eq!((s.mel.mean, s.stft.median, s.si_sdr.n), (2.0, 4.0, 1));
        assert_eq!(s.overall_rtf, Some(1.0));
        let j = s.to_json();
        assert_eq!(j["metrics"]["rtf"]["mean"], 1.0);
        assert_eq!(j["failed"], 1);
        let csv = results_csv(&rs);
        assert!(csv
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("\"a,b.wav\",2.000,1.000000"));
        assert!(csv.lines().nth(2).unwrap().contains(",NaN,1.50000"));
        // Without reconstruction there is no RTF.
        let s = Summary::of(&[res(1.0, 5.0, None)], 0);
        assert!(s.rtf.is_none() && s.to_json()["metrics"].get("rtf").is_none());
        assert!(s.to_text().contains("si_sdr"));
    }
}
