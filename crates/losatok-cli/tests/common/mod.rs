//! What the command-line test suites share: running the binary, the one-line error rule,
//! folder snapshots, and small builders of audio and safetensors files.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

// ---------------------------------------------------------------------------------------------
// running the binary and checking the rule

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/model")
}

pub fn ckpt() -> PathBuf {
    fixtures().join("losatok_tiny.pth")
}

pub fn config() -> PathBuf {
    fixtures().join("tiny_config.yml")
}

/// `--checkpoint … --config …` of the tiny test model.
pub fn model_args() -> Vec<OsString> {
    vec![
        "--checkpoint".into(),
        ckpt().into(),
        "--config".into(),
        config().into(),
    ]
}

pub fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

pub fn command(args: &[OsString], dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_losatok"));
    c.args(args)
        .current_dir(dir)
        .env_remove("LOSATOK_CHECKPOINT")
        .env_remove("LOSATOK_LOG")
        .env_remove("RUST_BACKTRACE");
    c
}

pub fn run(args: &[OsString], dir: &Path) -> Output {
    command(args, dir).output().expect("run losatok")
}

/// Like [`run`], with the size of any file the process writes limited to `bytes` (writes
/// beyond it fail with EFBIG, as on a full disk).
pub fn run_with_file_size_limit(args: &[OsString], dir: &Path, bytes: u64) -> Output {
    let mut c = command(args, dir);
    // SAFETY: only async-signal-safe calls (setrlimit, signal) between fork and exec.
    unsafe {
        c.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    c.output().expect("run losatok")
}

/// The rule: non-zero exit (not the internal-error code 70, not a signal), exactly one stderr
/// line starting with `error: `, no panic or backtrace, mentioning every `needles`.
///
/// With `allow_warnings`, log lines of skipped data files (`… WARN … skipping unreadable …`,
/// the training data loader's report) may come before the error line.
pub fn check_error(out: &Output, needles: &[&str], allow_warnings: bool) -> Result<String, String> {
    let mut err = String::from_utf8_lossy(&out.stderr).into_owned();
    if allow_warnings {
        err = err
            .lines()
            .filter(|l| !(l.contains(" WARN ") && l.contains("skipping unreadable")))
            .map(|l| format!("{l}\n"))
            .collect();
    }
    let mut problems = Vec::new();
    match out.status.code() {
        None => problems.push(format!("killed by a signal ({:?})", out.status)),
        Some(0) => problems.push("exit code 0".into()),
        Some(70) => problems.push("exit code 70 (internal error)".into()),
        Some(_) => {}
    }
    let lines = err.trim_end().lines().count();
    if lines != 1 {
        problems.push(format!("{lines} stderr lines"));
    }
    if !err.starts_with("error: ") {
        problems.push("stderr does not start with `error: `".into());
    }
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE", "internal error"] {
        if err.contains(bad) {
            problems.push(format!("stderr contains {bad:?}"));
        }
    }
    for n in needles {
        if !err.contains(n) {
            problems.push(format!("stderr does not mention {n:?}"));
        }
    }
    if problems.is_empty() {
        Ok(err)
    } else {
        Err(format!("{}; stderr: {err:?}", problems.join(", ")))
    }
}

/// Every file under a folder: relative path → (bytes, mtime). Symbolic links are recorded by
/// their target.
pub type Tree = BTreeMap<PathBuf, (Vec<u8>, Option<SystemTime>)>;

pub fn snapshot(root: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, out: &mut Tree) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(rel, (target.into_os_string().into_encoded_bytes(), None));
            } else if meta.is_dir() {
                out.insert(rel.clone(), (b"<dir>".to_vec(), None));
                walk(root, &p, out);
            } else if !meta.is_file() {
                // a FIFO or device: never opened (a FIFO would block)
                out.insert(rel, (b"<special>".to_vec(), None));
            } else {
                out.insert(rel, (std::fs::read(&p).unwrap(), meta.modified().ok()));
            }
        }
    }
    let mut t = Tree::new();
    walk(root, root, &mut t);
    t
}

/// What changed between two snapshots, or `Ok`.
pub fn same_tree(before: &Tree, after: &Tree) -> Result<(), String> {
    let mut diffs = Vec::new();
    for (k, v) in after {
        match before.get(k) {
            None => diffs.push(format!("new {}", k.display())),
            Some(b) if b != v => diffs.push(format!("changed {}", k.display())),
            _ => {}
        }
    }
    for k in before.keys() {
        if !after.contains_key(k) {
            diffs.push(format!("removed {}", k.display()));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join(", "))
    }
}

/// Collects the failures of a table of cases and reports them all at the end.
#[derive(Default)]
pub struct Report(pub Vec<String>, pub bool);

impl Report {
    /// Run `args` in `dir`, expecting the rule to hold and `watch` to be left as it was.
    pub fn expect_error(
        &mut self,
        case: &str,
        args: &[OsString],
        dir: &Path,
        watch: &Path,
        needles: &[&str],
    ) {
        let before = snapshot(watch);
        let out = run(args, dir);
        self.judge(case, &out, needles, &before, watch);
    }

    pub fn judge(
        &mut self,
        case: &str,
        out: &Output,
        needles: &[&str],
        before: &Tree,
        watch: &Path,
    ) {
        let after = snapshot(watch);
        let mut msgs = Vec::new();
        match check_error(out, needles, self.1) {
            Ok(err) => eprintln!("ok   {case}: {}", err.trim_end()),
            Err(e) => msgs.push(e),
        }
        if let Err(e) = same_tree(before, &after) {
            msgs.push(format!("output folder touched: {e}"));
        }
        if !msgs.is_empty() {
            let m = format!("FAIL {case}: {}", msgs.join("; "));
            eprintln!("{m}");
            self.0.push(m);
        }
    }

    /// Allow the training loader's warnings about skipped files before the error line.
    pub fn allowing_warnings() -> Self {
        Report(Vec::new(), true)
    }

    pub fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} case(s) failed:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// bad files

/// A canonical 44-byte-header WAV.
pub fn wav_bytes(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let block = channels.wrapping_mul(bits / 8);
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&rate.wrapping_mul(u32::from(block)).to_le_bytes());
    v.extend_from_slice(&block.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

/// `n` samples of a sine as 16-bit PCM bytes.
pub fn pcm16(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (((i as f32 * 0.05).sin() * 10_000.0) as i16).to_le_bytes())
        .collect()
}

/// 2000 float samples with `bad` at sample 1000.
pub fn f32_with(bad: f32) -> Vec<u8> {
    (0..2000)
        .map(|i| {
            if i == 1000 {
                bad
            } else {
                0.1 * (i as f32 * 0.05).sin()
            }
        })
        .flat_map(f32::to_le_bytes)
        .collect()
}

/// Deterministic pseudo-random bytes.
pub fn noise(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as u8
        })
        .collect()
}

/// A good one-second 16 kHz wav.
pub fn good_wav() -> Vec<u8> {
    wav_bytes(1, 1, 16_000, 16, &pcm16(16_000))
}

/// A minimal safetensors file.
pub fn safetensors_file(tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let mut header = serde_json_like_header(tensors);
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    for (_, _, _, data) in tensors {
        v.extend_from_slice(data);
    }
    v
}

pub fn serde_json_like_header(tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) -> String {
    let mut parts = Vec::new();
    let mut offset = 0;
    for (name, dtype, shape, data) in tensors {
        let shape: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        parts.push(format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{offset},{}]}}",
            shape.join(","),
            offset + data.len()
        ));
        offset += data.len();
    }
    format!("{{{}}}", parts.join(","))
}

pub fn f32s(n: usize, v: f32) -> Vec<u8> {
    std::iter::repeat_n(v, n)
        .flat_map(f32::to_le_bytes)
        .collect()
}
