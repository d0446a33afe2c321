//! Folder mode: every input under INPUT, outputs mirrored under OUTPUT, a progress bar, files
//! already done skipped (unless --force), failures reported at the end without stopping.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use burn::prelude::Backend;
use indicatif::{ProgressBar, ProgressStyle};
use losatok::Tokenizer;

use crate::infer::{process, Job, Op};

/// Extensions read as audio in folder mode.
pub const AUDIO_EXTENSIONS: [&str; 5] = ["wav", "flac", "ogg", "oga", "mp3"];

fn wanted(op: &Op, path: &Path) -> bool {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return false;
    };
    let ext = ext.to_ascii_lowercase();
    match op {
        Op::Decode => ext == "safetensors",
        _ => AUDIO_EXTENSIONS.contains(&ext.as_str()),
    }
}

/// Inputs under `root`, sorted, as paths relative to it.
pub fn collect_inputs(op: &Op, root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
            } else if wanted(op, &path) {
                out.push(path.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Run the job on every input of a folder.
pub fn run_dir<B: Backend>(tok: &Tokenizer<B>, job: &Job) -> Result<ExitCode> {
    let inputs = collect_inputs(&job.op, &job.input)?;
    if inputs.is_empty() {
        anyhow::bail!(
            "no {} files under {}",
            match job.op {
                Op::Decode => ".safetensors".to_string(),
                _ => AUDIO_EXTENSIONS.join("/"),
            },
            job.input.display()
        );
    }
    let bar = ProgressBar::new(inputs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{pos}/{len} [{bar:30}] eta {eta} {wide_msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let (mut done, mut skipped) = (0usize, 0usize);
    let mut failures: Vec<(PathBuf, String)> = Vec::new();
    let mut claimed = std::collections::HashMap::<PathBuf, PathBuf>::new();
    for rel in &inputs {
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
        let result = (|| -> Result<(), losatok::Error> {
            for p in std::iter::once(&output).chain(features.as_ref()) {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| losatok::Error::Write {
                        path: parent.to_path_buf(),
                        message: e.to_string(),
                    })?;
                }
            }
            let opts = losatok::FileOptions {
                save_features: features.clone(),
                ..job.opts.clone()
            };
            process(tok, job, &input, &output, &opts).map(|_| ())
        })();
        match result {
            Ok(()) => done += 1,
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
