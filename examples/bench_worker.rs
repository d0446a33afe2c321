//! A timing worker: loads the model once, then runs one operation per command line, so that
//! `scripts/time_reference.py` can alternate it run by run with the PyTorch reference, and so
//! that a profiler sees only the steady state.
//!
//! ```text
//! cargo build --release --example bench_worker
//! target/release/examples/bench_worker --checkpoint losatok.pth [--config model.yml]
//! target/release/examples/bench_worker --random            # random official-size weights
//! cargo build --release --example bench_worker --features cuda
//! target/release/examples/bench_worker --random --device cuda   # on the GPU
//! ```
//!
//! Once loaded it prints `{"ready": true, "load_s": …}` on stdout, then reads JSON commands on
//! stdin, one per line, and answers each with one JSON line on stdout:
//!
//! | command | what is timed |
//! |---|---|
//! | `{"op": "reconstruct_file", "input": IN, "output": OUT}` | read, reconstruct, write (as `losatok reconstruct` per file) |
//! | `{"op": "encode_file", "input": IN, "output": OUT}` | read, encode, write a feature file |
//! | `{"op": "decode_file", "input": FEATURES, "output": OUT}` | read a feature file, decode, write |
//! | `{"op": "stage1_step", "batch": N}` | one SemBo training step on N × 3 s clips |
//! | `{"op": "stage2_step", "batch": N}` | one generator + discriminator step on N × 3 s clips |
//! | `{"op": "quit"}` | — |
//!
//! The answer is `{"op": …, "wall_s": …, "cpu_s": …}` (`cpu_s`: this process's CPU time over the
//! operation, all threads) or `{"op": …, "error": …}`. The training models have random weights
//! of the loaded config's size, built on first use of each stage (not timed; one stage's
//! trainer at a time is kept). Threads: rayon's pool,
//! `RAYON_NUM_THREADS`.
//!
//! For a profile, pipe the commands in: `yes '{"op":"stage1_step","batch":1}' | head -5 |
//! perf record -g target/release/examples/bench_worker --random`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::backend::Autodiff;
use burn::prelude::Backend;
use losatok::models::sembo::SemBo;
use losatok::{Cpu, FileOptions, LosatokConfig, Tokenizer};
use losatok_train::collective::Local;
use losatok_train::config::ModelSpec;
use losatok_train::data::{synth_clip, SynthKind};
use losatok_train::run::{seeded, stage2_model};
use losatok_train::stage1::SemboTrainer;
use losatok_train::stage2::LosatokTrainer;
use losatok_train::{RunOptions, Stage1Config, Stage2Config};
use serde_json::{json, Value};

/// The paper's training crop: 3 s at 16 kHz.
const SEGMENT: usize = 48_000;

/// User plus system CPU seconds of this process, all threads (Linux `/proc/self/stat`, in
/// ticks of 10 ms; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // the fields after the command name, which is in parentheses and may hold spaces:
    // utime and stime are the 12th and 13th of them
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: f64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// Training clips of the three synthetic kinds, row-major.
fn clips(rows: usize) -> Vec<f32> {
    let kinds = [SynthKind::Speech, SynthKind::Music, SynthKind::General];
    (0..rows)
        .flat_map(|i| synth_clip(kinds[i % 3], SEGMENT, 100 + i as u64))
        .collect()
}

/// The stage trainers, each built on first use for a given batch size.
struct Trainers<B: Backend> {
    stage1: Option<(usize, SemboTrainer<Autodiff<B>>)>,
    stage2: Option<(usize, LosatokTrainer<Autodiff<B>>)>,
}

struct Worker<B: Backend> {
    tokenizer: Tokenizer<B>,
    device: B::Device,
    /// The model of both trainers: the loaded config's file, or the official preset.
    model: ModelSpec,
    trainers: Trainers<B>,
}

impl<B: Backend> Worker<B> {
    fn file_options() -> FileOptions {
        FileOptions {
            overwrite: true,
            ..FileOptions::default()
        }
    }

    fn path(cmd: &Value, key: &str) -> Result<PathBuf, String> {
        cmd[key]
            .as_str()
            .map(PathBuf::from)
            .ok_or_else(|| format!("missing \"{key}\""))
    }

    fn batch(cmd: &Value) -> Result<usize, String> {
        match cmd["batch"].as_u64() {
            Some(n) if n > 0 => Ok(n as usize),
            _ => Err("\"batch\" must be a positive integer".into()),
        }
    }

    fn stage1(&mut self, rows: usize) -> &mut SemboTrainer<Autodiff<B>> {
        let config = self.tokenizer.config().clone();
        self.trainers.stage2 = None; // one trainer in memory at a time
        let slot = &mut self.trainers.stage1;
        if slot.as_ref().is_none_or(|(n, _)| *n != rows) {
            *slot = None; // free the previous one first
            let device = self.device.clone();
            let mut cfg = Stage1Config::paper();
            cfg.model = self.model.clone();
            cfg.run.batch_size = rows;
            cfg.run.grad_accum = 1;
            let encoder = seeded::<B, _>(&device, 1, || config.audio_encoder.init(&device));
            let sembo = seeded::<Autodiff<B>, _>(&device, 2, || {
                SemBo::new(
                    config.tokenizer.embed_dim,
                    config.sembo_hidden_dim,
                    config.tokenizer.decoder_dim,
                    &device,
                )
            });
            *slot = Some((rows, SemboTrainer::new(encoder, sembo, &cfg)));
        }
        &mut slot.as_mut().expect("built above").1
    }

    fn stage2(&mut self, rows: usize) -> Result<&mut LosatokTrainer<Autodiff<B>>, String> {
        self.trainers.stage1 = None; // one trainer in memory at a time
        let slot = &mut self.trainers.stage2;
        if slot.as_ref().is_none_or(|(n, _)| *n != rows) {
            *slot = None;
            let device = self.device.clone();
            let mut cfg = Stage2Config::paper();
            cfg.model = self.model.clone();
            cfg.semantic_encoder = "random".into();
            cfg.gan_start_step = 0;
            cfg.run.batch_size = rows;
            cfg.run.grad_accum = 1;
            let opts = RunOptions {
                config_dir: Path::new(".").to_path_buf(),
                ..RunOptions::default()
            };
            let (generator, _) =
                stage2_model::<Autodiff<B>>(&cfg, &opts, &device).map_err(|e| e.to_string())?;
            let disc = cfg
                .discriminator
                .init::<Autodiff<B>>(&device)
                .map_err(|e| e.to_string())?;
            *slot = Some((rows, LosatokTrainer::new(generator, disc, &cfg)));
        }
        Ok(&mut slot.as_mut().expect("built above").1)
    }

    /// Prepare the command's operation (untimed), then time running it.
    fn run(&mut self, cmd: &Value) -> Result<(f64, f64), String> {
        let op = cmd["op"].as_str().unwrap_or_default();
        let time = |f: &mut dyn FnMut() -> Result<(), String>| {
            let (t, c) = (Instant::now(), cpu_seconds());
            f()?;
            Ok((t.elapsed().as_secs_f64(), cpu_seconds() - c))
        };
        match op {
            "reconstruct_file" | "encode_file" | "decode_file" => {
                let (input, output) = (Self::path(cmd, "input")?, Self::path(cmd, "output")?);
                let opts = Self::file_options();
                let tok = &self.tokenizer;
                time(&mut || {
                    let done = match op {
                        "reconstruct_file" => tok.reconstruct_file(&input, &output, &opts),
                        "encode_file" => tok.encode_file(&input, &output, &opts),
                        _ => tok.decode_file(&input, &output, &opts),
                    };
                    done.map(drop).map_err(|e| e.to_string())
                })
            }
            "stage1_step" => {
                let rows = Self::batch(cmd)?;
                let audio = clips(rows);
                let trainer = self.stage1(rows);
                time(&mut || {
                    trainer
                        .train_step(&audio, rows, SEGMENT, &mut Local)
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
            }
            "stage2_step" => {
                let rows = Self::batch(cmd)?;
                let audio = clips(rows);
                let trainer = self.stage2(rows)?;
                time(&mut || {
                    trainer
                        .train_step(&audio, rows, SEGMENT, 0, &mut Local)
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
            }
            other => Err(format!("unknown op {other:?}")),
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: bench_worker (--checkpoint FILE [--config FILE] | --random) [--device cpu|cuda[:N]]");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let device = args
        .iter()
        .position(|a| a == "--device")
        .map(|i| args.get(i + 1).cloned().unwrap_or_else(|| usage()))
        .unwrap_or_else(|| "cpu".into());
    match device
        .split_once(':')
        .map_or((device.as_str(), "0"), |(k, n)| (k, n))
    {
        ("cpu", _) => serve::<Cpu>(&args, Default::default()),
        #[cfg(feature = "cuda")]
        ("cuda", n) => {
            let index = n.parse().unwrap_or_else(|_| usage());
            serve::<losatok::Cuda>(&args, burn::backend::cuda::CudaDevice::new(index))
        }
        _ => {
            eprintln!("bench_worker: unknown or not built device {device:?} (cuda needs the `cuda` feature)");
            std::process::exit(2)
        }
    }
}

/// Load the model on `device`, say ready, then answer commands until `quit` or end of input.
fn serve<B: Backend>(args: &[String], device: B::Device) {
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args.get(i + 1).cloned().unwrap_or_else(|| usage()))
    };
    let config = match value("--config") {
        Some(path) => LosatokConfig::from_file(&path).unwrap_or_else(|e| {
            eprintln!("bench_worker: {path}: {e}");
            std::process::exit(1)
        }),
        None => LosatokConfig::official(),
    };
    let start = Instant::now();
    let tokenizer = match (value("--checkpoint"), args.iter().any(|a| a == "--random")) {
        (Some(path), false) => Tokenizer::<B>::load(Path::new(&path), &config, &device)
            .unwrap_or_else(|e| {
                eprintln!("bench_worker: {path}: {e}");
                std::process::exit(1)
            }),
        (None, true) => {
            let model = seeded::<B, _>(&device, 7, || config.init::<B>(&device));
            Tokenizer::from_model(model, config)
        }
        _ => usage(),
    };
    let model = match value("--config") {
        Some(path) => ModelSpec {
            preset: None,
            file: Some(std::path::absolute(&path).unwrap_or_else(|_| PathBuf::from(&path))),
        },
        None => ModelSpec::preset("official"),
    };
    let mut worker = Worker {
        tokenizer,
        device,
        model,
        trainers: Trainers {
            stage1: None,
            stage2: None,
        },
    };
    let mut out = std::io::stdout().lock();
    let say = |out: &mut std::io::StdoutLock, v: Value| {
        writeln!(out, "{v}").and_then(|_| out.flush()).is_ok()
    };
    if !say(
        &mut out,
        json!({
            "ready": true,
            "load_s": start.elapsed().as_secs_f64(),
            "version": env!("CARGO_PKG_VERSION"),
            "threads": rayon::current_num_threads(),
        }),
    ) {
        return;
    }
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let cmd: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                say(&mut out, json!({"error": format!("not JSON: {e}")}));
                continue;
            }
        };
        let op = cmd["op"].clone();
        if op == "quit" {
            break;
        }
        let reply = match worker.run(&cmd) {
            Ok((wall, cpu)) => json!({"op": op, "wall_s": wall, "cpu_s": cpu}),
            Err(e) => json!({"op": op, "error": e}),
        };
        if !say(&mut out, reply) {
            break;
        }
    }
}
