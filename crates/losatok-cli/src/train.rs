//! `demo`, `train-sembo`, `train`, `manifest`, `export`: the training side of the CLI.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use losatok_train::demo::{run_demo, DemoOptions};
use losatok_train::distributed::{CollectiveKind, DistEnv, Group};
use losatok_train::run::{stage2_model, ProgressFn};
use losatok_train::{
    train_stage1, train_stage2, RunOptions, Stage1Config, Stage2Config, TrainProgress,
};

use crate::device::DeviceChoice;
use crate::TrainArgs;

fn progress_bar() -> (ProgressBar, ProgressFn) {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "stage {msg} [{bar:30}] {pos}/{len} steps, {per_sec}, eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let b = bar.clone();
    let f: ProgressFn = Arc::new(move |p: TrainProgress| {
        b.set_length(p.total);
        b.set_position(p.step);
        b.set_message(format!("{} (loss {:.4})", p.stage, p.loss));
    });
    (bar, f)
}

/// `losatok demo`.
pub fn demo(out: PathBuf, quick: bool, seed: u64, force: bool, device: &str) -> Result<ExitCode> {
    let (bar, progress) = progress_bar();
    let mut opts = DemoOptions {
        out_dir: out.clone(),
        seed,
        progress: Some(progress),
        replace: force,
        ..DemoOptions::default()
    };
    if quick {
        opts.seconds_per_domain = 15.0;
        opts.stage1_steps = 40;
        opts.stage2_steps = 80;
    }
    println!(
        "losatok demo: synthetic speech / music / general audio → tiny SemBo ({} steps) → tiny LoSATok GAN ({} steps), on {device}",
        opts.stage1_steps, opts.stage2_steps
    );
    let t0 = Instant::now();
    let report = crate::device::with_backend!(device, |Inner, dev| run_demo::<
        burn::backend::Autodiff<Inner>,
    >(&opts, &dev))?;
    bar.finish_and_clear();
    println!(
        "mel distance of the held-back clip: {:.4} before training → {:.4} after ({:.0} % lower), in {:.0} s",
        report.mel_before,
        report.mel_after,
        100.0 * (1.0 - report.mel_after / report.mel_before),
        t0.elapsed().as_secs_f64()
    );
    for f in &report.files {
        println!("  {}", f.display());
    }
    if report.mel_after >= report.mel_before {
        bail!("training did not lower the mel distance");
    }
    Ok(ExitCode::SUCCESS)
}

fn run_options(config: &Path, run_dir: PathBuf, resume: bool) -> RunOptions {
    RunOptions {
        run_dir,
        config_dir: config.parent().map(Path::to_path_buf).unwrap_or_default(),
        resume,
        // a hung rank (see `run.watchdog`) ends the process so the launcher stops the job
        on_hang: Some(losatok_train::watchdog::exit_on_hang(
            std::time::Duration::from_secs(30),
        )),
        ..RunOptions::default()
    }
}

/// `losatok train-sembo` / `losatok train`: one process, or one rank of a job started by
/// `losatok launch`, torchrun or srun (see [`losatok_train::distributed`]).
pub fn train(stage: u8, args: TrainArgs) -> Result<ExitCode> {
    let env = DistEnv::from_env()?;
    let rank = env.as_ref().map_or(0, |e| e.rank);
    let world = env.as_ref().map_or(1, |e| e.world_size);
    let result = train_rank(stage, args, env.as_ref());
    if world > 1 {
        return result.with_context(|| format!("rank {rank} of {world}"));
    }
    result
}

fn train_rank(stage: u8, args: TrainArgs, env: Option<&DistEnv>) -> Result<ExitCode> {
    let kind: CollectiveKind = args.collective.parse().map_err(anyhow::Error::msg)?;
    let rank0 = env.is_none_or(|e| e.rank == 0);
    // under a launcher, a plain `cuda` is this rank's own GPU
    let device = match (DeviceChoice::parse(&args.device)?, env) {
        (DeviceChoice::Cuda(_), Some(e)) if args.device.trim().eq_ignore_ascii_case("cuda") => {
            format!("cuda:{}", crate::dist::rank_gpu(e.local_rank)?)
        }
        _ => args.device.clone(),
    };
    let ordinal = match DeviceChoice::parse(&device)? {
        DeviceChoice::Cuda(i) => Some(i),
        DeviceChoice::Cpu | DeviceChoice::Wgpu(_) => None,
    };
    let mut group = Group::join(env, kind, ordinal)?;
    let (bar, progress) = progress_bar();
    let mut opts = run_options(&args.config, args.run_dir.clone(), args.resume);
    opts.allow_config_change = args.allow_config_change;
    if rank0 {
        opts.progress = Some(progress);
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let config = &args.config;
    let summary = if stage == 1 {
        let cfg = Stage1Config::from_file(config)?;
        crate::device::with_backend!(&device, |Inner, dev| train_stage1::<
            burn::backend::Autodiff<Inner>,
            _,
        >(
            &cfg, &opts, &dev, &mut group
        ))?
    } else {
        let cfg = Stage2Config::from_file(config)?;
        crate::device::with_backend!(&device, |Inner, dev| train_stage2::<
            burn::backend::Autodiff<Inner>,
            _,
        >(
            &cfg, &opts, &dev, &mut group, None
        ))?
    };
    bar.finish_and_clear();
    if !rank0 {
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(s) = summary.resumed_from {
        println!("resumed from step {s}");
    }
    for c in &summary.config_changes {
        println!("config changed on resume (recorded in config_changes.jsonl): {c}");
    }
    println!(
        "stage {stage}: {} steps in {}",
        summary.steps,
        args.run_dir.display()
    );
    if summary.skipped_files > 0 {
        println!(
            "{} unreadable data file(s) were skipped (see the log)",
            summary.skipped_files
        );
    }
    if let Some(e) = summary.export {
        println!("exported {}", e.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `losatok manifest`.
pub fn manifest(roots: Vec<String>, out: PathBuf, force: bool) -> Result<ExitCode> {
    use losatok_train::data::{build_manifest, parse_root_spec, BuildOptions};
    losatok::fs::Target::resolve(&out, force)?;
    let roots: Vec<(PathBuf, Option<String>)> = roots.iter().map(|r| parse_root_spec(r)).collect();
    let report = build_manifest(&roots, &out, &BuildOptions::default())?;
    println!(
        "wrote {}: {} files, {:.1} h",
        out.display(),
        report.entries.len(),
        report.total_seconds() / 3600.0
    );
    for (domain, d) in &report.domains {
        println!("  {domain}: {} files, {:.1} h", d.files, d.seconds / 3600.0);
    }
    if !report.skipped.is_empty() {
        eprintln!("{} unreadable file(s) skipped:", report.skipped.len());
        for (p, why) in &report.skipped {
            eprintln!("  {}: {why}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `losatok export`: a stage-2 run's latest (or given) checkpoint → official-layout safetensors.
pub fn export(
    run_dir: PathBuf,
    output: PathBuf,
    checkpoint: Option<PathBuf>,
    force: bool,
) -> Result<ExitCode> {
    losatok::fs::Target::resolve(&output, force)?;
    let cfg_path = run_dir.join("config.yml");
    let cfg = Stage2Config::from_file(&cfg_path)
        .with_context(|| format!("{} is not a stage-2 run folder", run_dir.display()))?;
    let dir = match checkpoint {
        Some(d) => d,
        None => losatok_train::state::Checkpoints::open(&run_dir, usize::MAX)?
            .latest()?
            .map(|(_, d)| d)
            .with_context(|| format!("no checkpoint in {}", run_dir.display()))?,
    };
    type Ad = burn::backend::Autodiff<losatok::Cpu>;
    let dev = Default::default();
    let opts = run_options(&cfg_path, run_dir.clone(), true);
    let (model, _) = stage2_model::<Ad>(&cfg, &opts, &dev)?;
    let disc = cfg
        .discriminator
        .init::<Ad>(&dev)
        .map_err(|e| anyhow::anyhow!("discriminator: {e}"))?;
    let trainer = losatok_train::stage2::LosatokTrainer::new(model, disc, &cfg).load(&dir)?;
    use burn::module::AutodiffModule;
    losatok::models::checkpoint::export_safetensors(
        &trainer.model.valid(),
        &output,
        &losatok_train::run::export_metadata(2, trainer.step),
    )?;
    println!(
        "exported {} (step {}) → {}",
        dir.display(),
        trainer.step,
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}
