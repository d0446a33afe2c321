//! `losatok`: reconstruct, encode and decode audio with LoSATok; train it; run the demo.
//!
//! Thin by design: parse the command line, pick the backend, call the library, print progress
//! and one-line errors. Every failure exits non-zero with a single `error: …` line.

mod analysis;
mod batch;
mod device;
mod dist;
mod infer;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// LoSATok: a low-dimensional semantic-acoustic audio tokenizer (16 kHz audio ↔ 128-d latent at 25 Hz).
#[derive(Parser, Debug)]
#[command(name = "losatok", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Encode and decode audio: INPUT (file or folder) → reconstructed wav(s) at OUTPUT.
    Reconstruct {
        /// Audio file (wav, flac, ogg, mp3) or a folder of them.
        input: PathBuf,
        /// Output wav (or folder, mirroring INPUT's tree).
        output: PathBuf,
        /// Also write all nine features (safetensors) to this file (or folder).
        #[arg(long, value_name = "PATH")]
        save_features: Option<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        run: RunArgs,
        /// Write 16-bit PCM instead of 32-bit float.
        #[arg(long)]
        pcm16: bool,
    },
    /// Encode audio: INPUT (file or folder) → feature file(s) with z, mu, logvar.
    Encode {
        /// Audio file or folder.
        input: PathBuf,
        /// Output .safetensors (or folder).
        output: PathBuf,
        /// Write all nine features, not only z, mu and logvar.
        #[arg(long)]
        all_features: bool,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Train a tiny LoSATok on synthetic audio on the CPU (nothing to download) and show the result.
    Demo {
        /// Output folder.
        #[arg(long, default_value = "losatok-demo")]
        out: PathBuf,
        /// Fewer steps (about half a minute).
        #[arg(long)]
        quick: bool,
        /// Seed of the data, the initialisation and the noise.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Replace the output of an earlier demo in that folder (only what the demo wrote;
        /// other folders are never replaced).
        #[arg(long)]
        force: bool,
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Stage 1: train SemBo on the frozen MiDashengLM encoder (config: see configs/).
    TrainSembo(TrainArgs),
    /// Stage 2: train the LoSATok generator and discriminator (config: see configs/).
    Train(TrainArgs),
    /// Start one training process per GPU on this node, with the variables torchrun sets:
    /// `losatok launch --nproc-per-node 8 -- train CONFIG --run-dir DIR --device cuda`.
    Launch(LaunchArgs),
    /// Check a multi-process setup before a long job: every rank meets rank 0 at
    /// MASTER_ADDR:MASTER_PORT (with --nccl, on CUDA builds, also an NCCL all-reduce).
    DistCheck {
        /// Also create an NCCL communicator and all-reduce across the ranks.
        #[arg(long)]
        nccl: bool,
    },
    /// Build a training manifest (JSONL) from folders of audio: DIR or DOMAIN=DIR, repeated.
    Manifest {
        /// Folders, optionally with a domain: speech=/data/libritts music=/data/fma /data/misc
        #[arg(required = true)]
        roots: Vec<String>,
        /// Output manifest.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite an existing manifest.
        #[arg(long)]
        force: bool,
    },
    /// Export a stage-2 run in the official key layout (safetensors), for inference and PyTorch.
    Export {
        /// The stage-2 run folder.
        run_dir: PathBuf,
        /// Output .safetensors.
        output: PathBuf,
        /// A specific checkpoint folder (default: the latest).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Overwrite an existing output.
        #[arg(long)]
        force: bool,
    },
    /// Decode latents: INPUT (.safetensors with `z`, or a folder) → wav(s).
    Decode {
        /// Feature/latent file or folder.
        input: PathBuf,
        /// Output wav (or folder).
        output: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        run: RunArgs,
        /// Write 16-bit PCM instead of 32-bit float.
        #[arg(long)]
        pcm16: bool,
    },
    /// Feature statistics per domain: effective rank, PCA-90, explained-variance curves (paper
    /// Appendix B.1), with the channel-merge and PCA-128 baselines.
    Analyze {
        /// Folder of audio (first-level subfolders are domains), manifest (.jsonl/.tsv) or file.
        input: PathBuf,
        #[command(flatten)]
        select: analysis::SelectArgs,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Reconstruction metrics against references: Mel-16k, STFT-16k, SI-SDR, real-time factor.
    Eval {
        /// Reference audio file or folder.
        references: PathBuf,
        /// Pre-computed reconstructions: a folder mirroring REFERENCES by relative path (a .wav
        /// in place of the original extension is found too), or a file when REFERENCES is one.
        /// Without it, the model reconstructs each reference into OUT/recon/ and the real-time
        /// factor is measured.
        #[arg(long, value_name = "PATH")]
        recon: Option<PathBuf>,
        #[command(flatten)]
        select: analysis::SelectArgs,
        #[command(flatten)]
        model: ModelArgs,
    },
}

/// `train-sembo` and `train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Training config (YAML).
    pub config: PathBuf,
    /// Run folder (checkpoints, metrics, samples, export).
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Continue from the run folder's latest intact checkpoint (an empty folder starts fresh).
    #[arg(long)]
    pub resume: bool,
    /// With --resume: accept a config that changes the model, batch, data or seed of the run
    /// (recorded in the run folder's config_changes.jsonl). Learning rate, step count, loss
    /// weights and logging may change without it.
    #[arg(long, requires = "resume")]
    pub allow_config_change: bool,
    /// cpu, cuda or cuda:N. Under a launcher, `cuda` is the rank's GPU (LOCAL_RANK).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Gradient all-reduce: auto (NCCL when WORLD_SIZE > 1), local, or nccl (even for one rank).
    #[arg(long, default_value = "auto")]
    pub collective: String,
}

/// `launch`: the processes of one node.
#[derive(clap::Args, Debug)]
pub struct LaunchArgs {
    /// Processes (GPUs) on this node.
    #[arg(long)]
    pub nproc_per_node: usize,
    /// Nodes in the job (run `losatok launch` once on each).
    #[arg(long, default_value_t = 1)]
    pub nnodes: usize,
    /// This node's index, 0..nnodes.
    #[arg(long, default_value_t = 0)]
    pub node_rank: usize,
    /// Host of node 0 (where rank 0 runs).
    #[arg(long, default_value = "127.0.0.1")]
    pub master_addr: String,
    /// Port on node 0 (default: a free port, single node only).
    #[arg(long)]
    pub master_port: Option<u16>,
    /// The losatok command every rank runs, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

/// Which model to run, and where.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// LoSATok checkpoint (losatok_kl1e-2.pth, losatok_kl1e-3.pth, or an export).
    #[arg(long, value_name = "PATH", env = "LOSATOK_CHECKPOINT")]
    pub checkpoint: Option<PathBuf>,
    /// Model config (YAML in the official layout). Default: the official config.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// How to run.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Sample z = mu + ε·σ instead of z = mu.
    #[arg(long)]
    pub sample: bool,
    /// Seed of the sampling noise (with --sample).
    #[arg(long, default_value_t = 0, requires = "sample")]
    pub seed: u64,
    /// Use only the first SECONDS of each input.
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub max_duration: Option<f64>,
    /// Overwrite existing outputs (otherwise they are never replaced; in folder mode, files
    /// already done are skipped).
    #[arg(long)]
    pub force: bool,
    /// Full 10.08 s chunks encoded together (more: faster, more memory).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub chunks_per_step: usize,
}

fn main() -> ExitCode {
    // One line, no backtrace: an internal failure is reported like any other error. The hook
    // only records the message; `main` prints it if the panic reaches it, so a panic that the
    // library catches and turns into an error (e.g. in a third-party checkpoint reader) does
    // not add a second line.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(one_line(&msg));
    }));
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOSATOK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();

    let empty: Vec<&'static str> = OPTION_VARIABLES
        .into_iter()
        .filter(|v| std::env::var_os(v).is_some_and(|x| x.to_string_lossy().trim().is_empty()))
        .collect();
    for v in &empty {
        // single-threaded here: nothing else reads the environment yet
        std::env::remove_var(v);
    }
    let _ = EMPTY_VARIABLES.set(empty);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            {
                e.exit();
            }
            eprintln!("{}", clap_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    // temporaries are removed on Ctrl-C, SIGTERM and SIGHUP (the launcher forwards signals to
    // its ranks instead, which do this themselves)
    if !matches!(cli.command, Command::Launch(_) | Command::DistCheck { .. }) {
        if let Err(e) = losatok::fs::install_signal_cleanup() {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    match std::panic::catch_unwind(|| infer::run(cli)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("error: {}", error_line(&e));
            ExitCode::FAILURE
        }
        Err(_) => {
            let msg = LAST_PANIC
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_else(|| "unknown panic".into());
            eprintln!("error: internal error: {msg} (please report this)");
            ExitCode::from(70)
        }
    }
}

/// clap's message on one line: the error and its tips ("a similar subcommand exists"), without
/// the usage block, and where to look.
fn clap_line(text: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut in_usage = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") {
            in_usage = true;
            continue;
        }
        if line.is_empty() {
            in_usage = false;
            continue;
        }
        if in_usage || line.starts_with("For more information") {
            continue;
        }
        parts.push(line.to_string());
    }
    format!("{} (see losatok --help)", parts.join("; "))
}

/// The environment variables that stand for options: set but empty (or blank), they are an
/// easy mistake (`LOSATOK_CHECKPOINT=$UNSET_VAR`) that clap would report as a missing value of
/// the option. They are taken out of the environment here and named in the message of the
/// command that needed them.
pub const OPTION_VARIABLES: [&str; 1] = ["LOSATOK_CHECKPOINT"];

/// The [`OPTION_VARIABLES`] that were set but empty.
static EMPTY_VARIABLES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();

/// Whether `name` was set but empty when the program started.
pub fn was_empty(name: &str) -> bool {
    EMPTY_VARIABLES.get().is_some_and(|v| v.contains(&name))
}

/// The message of the latest panic (see the hook in `main`).
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Whitespace (newlines included) collapsed to single spaces.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and its causes on one line. Most library errors already print their cause
/// (`cannot read x.wav: No such file or directory`), so a cause whose text is already in the
/// line is not repeated.
fn error_line(e: &anyhow::Error) -> String {
    let mut line = chain_line(e);
    if let Some(tip) = advice(e) {
        line.push_str(tip);
    }
    line
}

/// What to do about an error, in terms of this program's flags (library errors do not know
/// them).
fn advice(e: &anyhow::Error) -> Option<&'static str> {
    let exists = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<losatok::Error>(),
            Some(losatok::Error::OutputExists(_))
        ) || matches!(
            c.downcast_ref::<losatok::audio::AudioError>(),
            Some(losatok::audio::AudioError::AlreadyExists { .. })
        ) || matches!(fs_error(c), Some(losatok::fs::FsError::Exists { .. }))
            || matches!(
                c.downcast_ref::<losatok_eval::EvalError>(),
                Some(losatok_eval::EvalError::OutputExists(_))
            )
    });
    if exists {
        return Some(" (use --force to overwrite)");
    }
    e.chain()
        .find_map(|c| match c.downcast_ref::<losatok_train::TrainError>() {
            Some(losatok_train::TrainError::RunExists { .. }) => {
                Some(" (pass --resume to continue it)")
            }
            Some(losatok_train::TrainError::ConfigChanged { .. }) => {
                Some(" (resume with the run's config, or pass --allow-config-change)")
            }
            _ => None,
        })
}

/// The file-layer error an error is, or wraps transparently (such wrappers hide it from the
/// source chain).
fn fs_error<'a>(c: &'a (dyn std::error::Error + 'static)) -> Option<&'a losatok::fs::FsError> {
    use losatok_train::data::DataError;
    use losatok_train::TrainError;
    if let Some(f) = c.downcast_ref::<losatok::fs::FsError>() {
        return Some(f);
    }
    match c.downcast_ref::<losatok::Error>() {
        Some(losatok::Error::File(f)) => return Some(f),
        Some(losatok::Error::Audio(losatok::audio::AudioError::Output(f))) => return Some(f),
        _ => {}
    }
    if let Some(losatok::audio::AudioError::Output(f)) = c.downcast_ref() {
        return Some(f);
    }
    match c.downcast_ref::<TrainError>() {
        Some(TrainError::Output(f)) | Some(TrainError::Data(DataError::Output(f))) => Some(f),
        _ => match c.downcast_ref::<DataError>() {
            Some(DataError::Output(f)) => Some(f),
            _ => None,
        },
    }
}

/// The error and its causes, on one line.
fn chain_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = one_line(&cause.to_string());
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
