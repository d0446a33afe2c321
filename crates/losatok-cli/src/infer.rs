//! `reconstruct`, `encode`, `decode`: argument checks, backend choice, one file or a folder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::prelude::Backend;
use indicatif::{ProgressBar, ProgressStyle};
use losatok::fs::is_stdio;
use losatok::{FileOptions, LosatokConfig, Progress, Sampling, Tokenizer, WavFormat};

use crate::batch;
use crate::{Cli, Command, ModelArgs, RunArgs};

/// What to do with each input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Audio → wav (+ features).
    Reconstruct,
    /// Audio → features.
    Encode,
    /// Features → wav.
    Decode,
}

impl Op {
    /// Verb for messages.
    pub fn verb(&self) -> &'static str {
        match self {
            Op::Reconstruct => "reconstructed",
            Op::Encode => "encoded",
            Op::Decode => "decoded",
        }
    }

    /// Extension of the outputs.
    pub fn output_ext(&self) -> &'static str {
        match self {
            Op::Encode => "safetensors",
            _ => "wav",
        }
    }
}

/// One command, resolved.
pub struct Job {
    pub op: Op,
    pub input: PathBuf,
    pub output: PathBuf,
    pub save_features: Option<PathBuf>,
    pub opts: FileOptions,
    pub chunks_per_step: usize,
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let (job, model) = match cli.command {
        Command::Reconstruct {
            input,
            output,
            save_features,
            model,
            run,
            pcm16,
        } => (
            job(
                Op::Reconstruct,
                input,
                output,
                save_features,
                &run,
                pcm16,
                false,
            )?,
            model,
        ),
        Command::Encode {
            input,
            output,
            all_features,
            model,
            run,
        } => (
            job(Op::Encode, input, output, None, &run, false, all_features)?,
            model,
        ),
        Command::Decode {
            input,
            output,
            model,
            run,
            pcm16,
        } => (
            job(Op::Decode, input, output, None, &run, pcm16, false)?,
            model,
        ),
        Command::Demo {
            out,
            quick,
            seed,
            force,
            device,
        } => return crate::train::demo(out, quick, seed, force, &device),
        Command::TrainSembo(args) => return crate::train::train(1, args),
        Command::Train(args) => return crate::train::train(2, args),
        Command::Launch(args) => return crate::dist::launch(args),
        Command::DistCheck { nccl } => return crate::dist::dist_check(nccl),
        Command::Manifest { roots, out, force } => {
            return crate::train::manifest(roots, out, force)
        }
        Command::Export {
            run_dir,
            output,
            checkpoint,
            force,
        } => return crate::train::export(run_dir, output, checkpoint, force),
        Command::Analyze {
            input,
            select,
            model,
        } => return crate::analysis::analyze(input, select, model),
        Command::Eval {
            references,
            recon,
            select,
            model,
        } => return crate::analysis::eval(references, recon, select, model),
    };
    crate::device::with_backend!(&model.device, |B, dev| run_on::<B>(&job, &model, dev))
}

fn job(
    op: Op,
    input: PathBuf,
    output: PathBuf,
    save_features: Option<PathBuf>,
    run: &RunArgs,
    pcm16: bool,
    all_features: bool,
) -> Result<Job> {
    if let Some(d) = run.max_duration {
        if !(d.is_finite() && d > 0.0) {
            bail!("--max-duration must be a positive number of seconds, got {d}");
        }
    }
    if op == Op::Decode && run.max_duration.is_some() {
        bail!("--max-duration applies to audio inputs (reconstruct, encode), not to decode");
    }
    if run.chunks_per_step == 0 {
        bail!("--chunks-per-step must be at least 1");
    }
    let folder = !is_stdio(&input)
        && std::fs::metadata(&input)
            .with_context(|| format!("cannot read {}", input.display()))?
            .is_dir();
    if folder {
        for (what, p) in [
            ("OUTPUT", Some(&output)),
            ("--save-features", save_features.as_ref()),
        ] {
            let Some(p) = p else { continue };
            if is_stdio(p) {
                bail!("{what} cannot be `-` (standard output) when INPUT is a folder");
            }
            if p.exists() && !p.is_dir() {
                bail!(
                    "{} is a folder, so {what} must be a folder too, but {} is a file",
                    input.display(),
                    p.display()
                );
            }
            if losatok::fs::same_file(&input, p) {
                bail!(
                    "{what} {} is the input folder; write the outputs to another folder",
                    p.display()
                );
            }
        }
    } else {
        if !is_stdio(&output) && output.is_dir() {
            bail!("{} is a folder; give an output file name", output.display());
        }
        if let Some(f) = &save_features {
            if *f == output || losatok::fs::same_file(f, &output) {
                bail!("--save-features must differ from OUTPUT");
            }
        }
        let outputs: Vec<&Path> = std::iter::once(output.as_path())
            .chain(save_features.as_deref())
            .collect();
        losatok::check_file_outputs(&input, &outputs, run.force)?;
    }
    Ok(Job {
        op,
        input,
        output,
        save_features: save_features.clone(),
        opts: FileOptions {
            sampling: if run.sample {
                Sampling::Seeded(run.seed)
            } else {
                Sampling::Mean
            },
            max_duration: run.max_duration,
            overwrite: run.force,
            wav_format: if pcm16 {
                WavFormat::Pcm16
            } else {
                WavFormat::Float32
            },
            all_features,
            save_features,
            progress: None,
        },
        chunks_per_step: run.chunks_per_step,
    })
}

/// The model config: `--config` or the official one.
pub fn load_config(path: Option<&Path>) -> Result<LosatokConfig> {
    Ok(match path {
        Some(p) => LosatokConfig::from_file(p)?,
        None => LosatokConfig::from_yaml_str(losatok::models::config::OFFICIAL_CONFIG_YAML)?,
    })
}

/// The checkpoint of `--checkpoint` or `LOSATOK_CHECKPOINT`, or an error saying how to give one.
pub fn checkpoint_path(model: &ModelArgs) -> Result<&Path> {
    match &model.checkpoint {
        Some(p) => Ok(p),
        None if crate::was_empty("LOSATOK_CHECKPOINT") => bail!(
            "no checkpoint: LOSATOK_CHECKPOINT is set but empty; set it to a checkpoint file, \
             or pass --checkpoint PATH"
        ),
        None => bail!(
            "no checkpoint: pass --checkpoint PATH (or set LOSATOK_CHECKPOINT); the official \
             losatok_kl1e-2.pth / losatok_kl1e-3.pth are at https://huggingface.co/wxzyd123/LoSATok"
        ),
    }
}

fn run_on<B: Backend>(job: &Job, model: &ModelArgs, device: B::Device) -> Result<ExitCode> {
    let config = load_config(model.config.as_deref())?;
    let ckpt = checkpoint_path(model)?;
    let started = Instant::now();
    let tok =
        Tokenizer::<B>::load(ckpt, &config, &device)?.with_chunks_per_step(job.chunks_per_step);
    tracing::info!("model loaded in {:.2} s", started.elapsed().as_secs_f64());
    if !is_stdio(&job.input) && job.input.is_dir() {
        return batch::run_dir(&tok, job);
    }
    // leftovers of an interrupted run writing here (never anyone else's files)
    let outputs = std::iter::once(job.output.as_path()).chain(job.save_features.as_deref());
    let stale = losatok::fs::temp::sweep_for_outputs(outputs.filter(|p| !is_stdio(p)));
    if !stale.is_empty() {
        eprintln!(
            "removed {} temporary file(s) left by an interrupted run",
            stale.len()
        );
    }
    let bar = progress_bar();
    let opts = FileOptions {
        progress: Some(progress_callback(bar.clone(), &job.op)),
        ..job.opts.clone()
    };
    let t0 = Instant::now();
    let summary = process(&tok, job, &job.input, &job.output, &opts)?;
    bar.finish_and_clear();
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    let secs = t0.elapsed().as_secs_f64();
    let audio_secs = match job.op {
        Op::Decode => summary.output_samples as f64 / 16_000.0,
        _ => summary.input_samples as f64 / 16_000.0,
    };
    let line = format!(
        "{} {} → {}: {:.2} s of audio, {} frames, {:.2} s (real-time factor {:.3})",
        job.op.verb(),
        job.input.display(),
        job.output.display(),
        audio_secs,
        summary.frames,
        secs,
        secs / audio_secs.max(1e-9)
    );
    // standard output carries the data when the output is `-`
    if is_stdio(&job.output) {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Run the job's operation on one input.
pub fn process<B: Backend>(
    tok: &Tokenizer<B>,
    job: &Job,
    input: &Path,
    output: &Path,
    opts: &FileOptions,
) -> Result<losatok::FileSummary, losatok::Error> {
    match job.op {
        Op::Reconstruct => tok.reconstruct_file(input, output, opts),
        Op::Encode => tok.encode_file(input, output, opts),
        Op::Decode => tok.decode_file(input, output, opts),
    }
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {percent:>3}% eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

fn progress_callback(bar: ProgressBar, op: &Op) -> Arc<dyn Fn(Progress) + Send + Sync> {
    let op = op.clone();
    Arc::new(move |p: Progress| {
        if let Some(t) = p.total {
            bar.set_length(t);
        }
        bar.set_position(p.done);
        let msg = match (&op, p.pass, p.passes) {
            (Op::Decode, _, _) => "decoding",
            (_, 1, 2) => "scanning",
            (Op::Encode, _, _) => "encoding",
            _ => "processing",
        };
        bar.set_message(msg);
    })
}
