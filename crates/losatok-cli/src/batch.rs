//! Folder mode: every input under INPUT, outputs mirrored under OUTPUT, a progress bar, files
//! already done skipped (unless --force), failures reported at the end without stopping, and
//! everything passed over listed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use burn::prelude::Backend;
use indicatif::{ProgressBar, ProgressStyle};
use losatok::audio::{has_extension, is_audio_path, Walk, WalkOptions, AUDIO_EXTENSIONS};
use losatok::Tokenizer;

use crate::infer::{process, Job, Op};

/// The inputs of `op` under `root` (see [`losatok::audio::walk()`]), not entering the folders in
/// `exclude` (outputs inside the input folder).
pub fn walk_inputs(op: &Op, root: &Path, exclude: &[&Path]) -> Result<Walk> {
    let features = |p: &Path| has_extension(p, &["safetensors"]);
    let wanted: &dyn Fn(&Path) -> bool = match op {
        Op::Decode => &features,
        _ => &is_audio_path,
    };
    Ok(losatok::audio::walk(
        root,
        &WalkOptions {
            wanted,
            exclude: exclude.iter().map(|p| p.to_path_buf()).collect(),
        },
    )?)
}

/// What the inputs of `op` are, for messages.
pub fn input_kinds(op: &Op) -> String {
    match op {
        Op::Decode => ".safetensors".to_string(),
        _ => AUDIO_EXTENSIONS.join("/"),
    }
}

/// Prints (to stderr) what a folder walk passed over: a summary line, then the entries worth
/// naming (linked folders, special files, broken links), at most 20.
pub fn report_skipped(root: &Path, walk: &Walk) {
    let Some(line) = walk.skipped_summary() else {
        return;
    };
    eprintln!("passed over in {}: {line}", root.display());
    const SHOWN: usize = 20;
    for (path, why) in walk.skipped.iter().take(SHOWN) {
        eprintln!("  {}: {why}", root.join(path).display());
    }
    if walk.skipped.len() > SHOWN {
        eprintln!("  … and {} more", walk.skipped.len() - SHOWN);
    }
}

/// Run the job on every input of a folder.
pub fn run_dir<B: Backend>(tok: &Tokenizer<B>, job: &Job) -> Result<ExitCode> {
    let exclude: Vec<&Path> = std::iter::once(job.output.as_path())
        .chain(job.save_features.as_deref())
        .collect();
    let walk = walk_inputs(&job.op, &job.input, &exclude)?;
    if walk.files.is_empty() {
        report_skipped(&job.input, &walk);
        anyhow::bail!(
            "no {} files under {}",
            input_kinds(&job.op),
            job.input.display()
        );
    }
    let inputs = &walk.files;
    let bar = ProgressBar::new(inputs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{pos}/{len} [{bar:30}] eta {eta} {wide_msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let (mut done, mut skipped, mut stale) = (0usize, 0usize, 0usize);
    let mut failures: Vec<(PathBuf, String)> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut claimed = std::collections::HashMap::<PathBuf, PathBuf>::new();
    let mut swept = HashSet::<PathBuf>::new();
    for rel in inputs {
        bar.set_message(rel.display().to_string());
        let input = job.input.join(rel);
        let output = job.output.join(rel).with_extension(job.op.output_ext());
        let features = job
            .save_features
            .as_ref()
            .map(|d| d.join(rel).with_extension("safetensors"));
        if let Some(first) = claimed.insert(output.clone(), input.clone()) {
            failures.push((
                input,
                format!(
                    "its output {} is also {}'s; rename one",
                    output.display(),
                    first.display()
                ),
            ));
            bar.inc(1);
            continue;
        }
        let outputs_exist = output.exists() && features.as_ref().is_none_or(|f| f.exists());
        if outputs_exist && !job.opts.overwrite {
            skipped += 1;
            bar.inc(1);
            continue;
        }
        let result = (|| -> Result<losatok::FileSummary, losatok::Error> {
            for p in std::iter::once(&output).chain(features.as_ref()) {
                let dir = losatok::fs::temp::parent_dir(p).to_path_buf();
                losatok::fs::temp::create_dir_all(&dir).map_err(losatok::Error::File)?;
                // leftovers of an interrupted run writing here (never anyone else's files)
                if swept.insert(dir.clone()) {
                    stale += losatok::fs::sweep_stale_temporaries(&dir).len();
                }
            }
            let opts = losatok::FileOptions {
                save_features: features.clone(),
                ..job.opts.clone()
            };
            process(tok, job, &input, &output, &opts)
        })();
        match result {
            Ok(summary) => {
                done += 1;
                warnings.extend(summary.warnings);
            }
            Err(e) => failures.push((input, e.to_string())),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "{} {done} file(s) into {}; {skipped} already done; {} failed",
        job.op.verb(),
        job.output.display(),
        failures.len()
    );
    if stale > 0 {
        eprintln!("removed {stale} temporary file(s) left by an interrupted run");
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    report_skipped(&job.input, &walk);
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("error: {} file(s) failed:", failures.len());
    for (path, msg) in &failures {
        let msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
        eprintln!("  {}: {msg}", path.display());
    }
    Ok(ExitCode::FAILURE)
}
