//! `analyze` and `eval`: the paper's measurement tools on the user's data (see
//! `losatok_eval` for the definitions).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use burn::prelude::Backend;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use losatok::{FileOptions, Tokenizer};
use losatok_eval::analyze::{accumulate_file, AnalysisInput, FeatureAnalyzer, ANALYSIS_OUTPUTS};
use losatok_eval::evaluate::{
    evaluate_files, reconstruct_and_evaluate, results_csv, FileResult, Summary,
};
use losatok_eval::io::write_atomic;
use losatok_eval::ReconstructionMetrics;

use crate::batch::{report_skipped, walk_inputs};
use crate::infer::{load_config, Op};
use crate::ModelArgs;
use losatok::audio::{is_audio_path, AUDIO_EXTENSIONS};

/// Which inputs to use, and the output folder.
#[derive(Args, Debug, Clone)]
pub struct SelectArgs {
    /// Output folder (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Use only the first N files (in sorted folder order, or manifest order).
    #[arg(long, value_name = "N")]
    pub max_files: Option<usize>,
    /// Use only the first SECONDS of each file.
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub max_seconds: Option<f64>,
    /// Overwrite existing outputs.
    #[arg(long)]
    pub force: bool,
}

impl SelectArgs {
    fn check(&self) -> Result<Option<u64>> {
        if let Some(s) = self.max_seconds {
            if !(s.is_finite() && s > 0.0) {
                bail!("--max-seconds must be a positive number of seconds, got {s}");
            }
        }
        if self.max_files == Some(0) {
            bail!("--max-files must be at least 1");
        }
        if self.out.exists() && !self.out.is_dir() {
            bail!("--out {} exists and is not a folder", self.out.display());
        }
        Ok(self.max_seconds.map(|s| (s * 16_000.0) as u64))
    }

    fn refuse_existing(&self, names: &[&str]) -> Result<()> {
        if self.force {
            return Ok(());
        }
        for n in names {
            let p = self.out.join(n);
            if p.exists() {
                bail!("{} already exists (use --force to overwrite)", p.display());
            }
        }
        Ok(())
    }
}

/// The audio files under a folder (relative paths), not entering `out` (an output folder
/// inside it); what was passed over is listed on stderr.
fn audio_files(root: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    let walk = walk_inputs(&Op::Reconstruct, root, &[out])?;
    report_skipped(root, &walk);
    Ok(walk.files)
}

fn bar(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{pos}/{len} [{bar:30}] eta {eta} {wide_msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

fn load_tokenizer<B: Backend>(model: &ModelArgs, device: &B::Device) -> Result<Tokenizer<B>> {
    let config = load_config(model.config.as_deref())?;
    let ckpt = crate::infer::checkpoint_path(model)?;
    Ok(Tokenizer::<B>::load(ckpt, &config, device)?)
}

fn report_failures(failures: &[(PathBuf, String)]) -> ExitCode {
    if failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!("error: {} file(s) failed:", failures.len());
    for (path, msg) in failures {
        let msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
        eprintln!("  {}: {msg}", path.display());
    }
    ExitCode::FAILURE
}

/// The inputs of `analyze`: a folder (first-level subfolders are domains; files directly in
/// it are the domain `root`, or `all` when there are no subfolders), a manifest (its domains),
/// or one audio file (domain `all`).
fn analysis_inputs(input: &Path, out: &Path) -> Result<Vec<AnalysisInput>> {
    let meta =
        std::fs::metadata(input).with_context(|| format!("cannot read {}", input.display()))?;
    if meta.is_dir() {
        let rels = audio_files(input, out)?;
        let nested = rels.iter().any(|r| r.components().count() > 1);
        return Ok(rels
            .into_iter()
            .map(|rel| {
                let mut comps = rel.components();
                let domain = if rel.components().count() > 1 {
                    comps
                        .next()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .unwrap_or_default()
                } else if nested {
                    "root".to_string()
                } else {
                    "all".to_string()
                };
                AnalysisInput {
                    path: input.join(&rel),
                    domain,
                }
            })
            .collect());
    }
    if is_audio_path(input) {
        return Ok(vec![AnalysisInput {
            path: input.to_path_buf(),
            domain: "all".into(),
        }]);
    }
    let entries = losatok_train::data::manifest::read_manifest(input)?;
    Ok(entries
        .into_iter()
        .map(|e| AnalysisInput {
            path: e.path,
            domain: e.domain,
        })
        .collect())
}

/// `losatok analyze`.
pub fn analyze(input: PathBuf, select: SelectArgs, model: ModelArgs) -> Result<ExitCode> {
    let max_samples = select.check()?;
    select.refuse_existing(&ANALYSIS_OUTPUTS)?;
    let mut inputs = analysis_inputs(&input, &select.out)?;
    if let Some(n) = select.max_files {
        inputs.truncate(n);
    }
    if inputs.is_empty() {
        bail!(
            "no {} files in {}",
            AUDIO_EXTENSIONS.join("/"),
            input.display()
        );
    }
    crate::device::with_backend!(&model.device, |B, device| analyze_on::<B>(
        &inputs,
        &select,
        &model,
        max_samples,
        &device
    ))
}

fn analyze_on<B: Backend>(
    inputs: &[AnalysisInput],
    select: &SelectArgs,
    model: &ModelArgs,
    max_samples: Option<u64>,
    device: &B::Device,
) -> Result<ExitCode> {
    let tok = load_tokenizer::<B>(model, device)?;
    let mut analyzer = FeatureAnalyzer::new();
    let mut failures: Vec<(PathBuf, String)> = Vec::new();
    let bar = bar(inputs.len());
    for inp in inputs {
        bar.set_message(inp.path.display().to_string());
        let result = accumulate_file(&tok, &inp.path, max_samples)
            .and_then(|(acc, samples)| analyzer.add_file(&inp.domain, &acc, samples));
        if let Err(e) = result {
            failures.push((inp.path.clone(), e.to_string()));
        }
        bar.inc(1);
    }
    bar.set_message("eigen-decomposition");
    let report = analyzer.finish();
    bar.finish_and_clear();
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            report_failures(&failures);
            bail!("{e}");
        }
    };
    report.write(&select.out, select.force)?;
    let pooled = &report.pooled;
    let domains = report.domains().len();
    let domains = if domains > 1 { domains - 1 } else { 1 };
    if let Some(r) = report.rows.iter().find(|r| &r.domain == pooled) {
        println!(
            "analysed {} file(s), {:.1} s of audio, {} frames, {domains} domain(s); {pooled}:",
            r.files, r.seconds, r.frames
        );
    }
    println!(
        "  {:<14} {:>5} {:>15} {:>7}",
        "feature", "dim", "effective rank", "PCA-90"
    );
    for r in report.rows.iter().filter(|r| &r.domain == pooled) {
        println!(
            "  {:<14} {:>5} {:>15.2} {:>7}",
            r.kind.name(),
            r.stats.dim,
            r.stats.effective_rank,
            r.stats.pca90
        );
    }
    println!("wrote {}", select.out.join("analysis.md").display());
    Ok(report_failures(&failures))
}

/// What `eval` compares each reference with.
enum Estimates {
    /// Pre-computed files mirrored under this folder (or this one file).
    Recon(PathBuf),
    /// Reconstructions made now, written under `OUT/recon/`.
    OnTheFly,
}

/// `losatok eval`.
pub fn eval(
    references: PathBuf,
    recon: Option<PathBuf>,
    select: SelectArgs,
    model: ModelArgs,
) -> Result<ExitCode> {
    let max_samples = select.check()?;
    let estimates = match recon {
        Some(r) => {
            if !r.exists() {
                bail!("--recon {} does not exist", r.display());
            }
            Estimates::Recon(r)
        }
        None => Estimates::OnTheFly,
    };
    let mut outputs = vec!["eval.csv", "eval_summary.json"];
    if matches!(estimates, Estimates::OnTheFly) {
        outputs.push("recon");
    }
    select.refuse_existing(&outputs)?;
    let meta = std::fs::metadata(&references)
        .with_context(|| format!("cannot read {}", references.display()))?;
    // (name, reference, estimate)
    let mut pairs: Vec<(String, PathBuf, PathBuf)> = Vec::new();
    if meta.is_dir() {
        for rel in audio_files(&references, &select.out)? {
            let est = match &estimates {
                Estimates::Recon(dir) => {
                    let same = dir.join(&rel);
                    if same.is_file() {
                        same
                    } else {
                        dir.join(&rel).with_extension("wav")
                    }
                }
                Estimates::OnTheFly => select.out.join("recon").join(&rel).with_extension("wav"),
            };
            pairs.push((rel.display().to_string(), references.join(&rel), est));
        }
    } else {
        let name = references
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let est = match &estimates {
            Estimates::Recon(r) if r.is_dir() => {
                let same = r.join(&name);
                if same.is_file() {
                    same
                } else {
                    same.with_extension("wav")
                }
            }
            Estimates::Recon(r) => r.clone(),
            Estimates::OnTheFly => select.out.join("recon").join(&name).with_extension("wav"),
        };
        pairs.push((name, references.clone(), est));
    }
    if let Some(n) = select.max_files {
        pairs.truncate(n);
    }
    if pairs.is_empty() {
        bail!(
            "no {} files under {}",
            AUDIO_EXTENSIONS.join("/"),
            references.display()
        );
    }
    crate::device::with_backend!(&model.device, |B, device| eval_on::<B>(
        &pairs,
        matches!(estimates, Estimates::OnTheFly),
        &select,
        &model,
        max_samples,
        &device
    ))
}

fn eval_on<B: Backend>(
    pairs: &[(String, PathBuf, PathBuf)],
    reconstruct: bool,
    select: &SelectArgs,
    model: &ModelArgs,
    max_samples: Option<u64>,
    device: &B::Device,
) -> Result<ExitCode> {
    let tok = if reconstruct {
        Some(load_tokenizer::<B>(model, device)?)
    } else {
        None
    };
    let metrics = ReconstructionMetrics::<B>::new(device);
    let opts = FileOptions {
        max_duration: select.max_seconds,
        overwrite: select.force,
        ..Default::default()
    };
    let mut results: Vec<FileResult> = Vec::new();
    let mut failures: Vec<(PathBuf, String)> = Vec::new();
    let bar = bar(pairs.len());
    for (name, reference, estimate) in pairs {
        bar.set_message(name.clone());
        let result = match &tok {
            Some(tok) => (|| {
                if let Some(parent) = estimate.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        losatok_eval::EvalError::Write {
                            path: parent.to_path_buf(),
                            message: e.to_string(),
                        }
                    })?;
                }
                reconstruct_and_evaluate(tok, &metrics, name, reference, estimate, &opts)
            })(),
            None if !estimate.is_file() => Err(losatok_eval::EvalError::Invalid(format!(
                "no estimate {} for this reference",
                estimate.display()
            ))),
            None => evaluate_files(&metrics, name, reference, estimate, max_samples),
        };
        match result {
            Ok(r) => results.push(r),
            Err(e) => failures.push((reference.clone(), e.to_string())),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    std::fs::create_dir_all(&select.out)
        .with_context(|| format!("cannot create {}", select.out.display()))?;
    let summary = Summary::of(&results, failures.len());
    let json = serde_json::to_string_pretty(&summary.to_json()).expect("json") + "\n";
    write_atomic(
        &select.out.join("eval.csv"),
        results_csv(&results).as_bytes(),
        select.force,
    )?;
    write_atomic(
        &select.out.join("eval_summary.json"),
        json.as_bytes(),
        select.force,
    )?;
    print!("{}", summary.to_text());
    println!(
        "wrote {} and {}",
        select.out.join("eval.csv").display(),
        select.out.join("eval_summary.json").display()
    );
    Ok(report_failures(&failures))
}
