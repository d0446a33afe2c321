//! Training checkpoints: crash-consistent folders of module and optimiser records.
//!
//! A checkpoint `checkpoints/step-000012000/` is written under a temporary name, synced, and
//! renamed into place, so a run killed at any moment leaves every earlier checkpoint intact
//! and loadable; leftovers of an interrupted write are removed at the next start. The last
//! `keep` checkpoints are kept. Records use Burn's recorder (full precision), which restores
//! parameter ids, so optimiser state re-attaches to the right tensors on resume.
//!
//! Each checkpoint also holds `checksums.json`, the CRC-32 of every file in it, written before
//! the folder is renamed into place and checked ([`verify`]) before anything is loaded, so a
//! file damaged later (disk errors, a partial copy) is reported as such instead of being decoded
//! into wrong weights; `--resume` then falls back to the newest undamaged checkpoint.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::Optimizer;
use burn::prelude::*;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::TrainError;

/// The recorder of training checkpoints.
pub type Rec = BinFileRecorder<FullPrecisionSettings>;

const PREFIX: &str = "step-";
const TMP_PREFIX: &str = ".tmp-step-";
/// The checksum file of a checkpoint folder.
pub const CHECKSUMS: &str = "checksums.json";

fn state_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::State {
        path: path.to_path_buf(),
        message: e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// The `checkpoints/` folder of a run.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    root: PathBuf,
    keep: usize,
}

impl Checkpoints {
    /// Open (creating it) and remove leftovers of interrupted writes.
    pub fn open(run_dir: &Path, keep: usize) -> Result<Self, TrainError> {
        let root = run_dir.join("checkpoints");
        fs::create_dir_all(&root).map_err(|e| state_err(&root, e))?;
        for entry in fs::read_dir(&root).map_err(|e| state_err(&root, e))? {
            let entry = entry.map_err(|e| state_err(&root, e))?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(Self {
            root,
            keep: keep.max(1),
        })
    }

    /// Complete checkpoints, oldest first.
    pub fn list(&self) -> Result<Vec<(u64, PathBuf)>, TrainError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(|e| state_err(&self.root, e))? {
            let entry = entry.map_err(|e| state_err(&self.root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(step) = name
                .strip_prefix(PREFIX)
                .and_then(|s| s.parse::<u64>().ok())
            {
                out.push((step, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The most recent complete checkpoint.
    pub fn latest(&self) -> Result<Option<(u64, PathBuf)>, TrainError> {
        Ok(self.list()?.pop())
    }

    /// Write checkpoint `step` with `write` (which fills the folder it is given), atomically,
    /// then delete checkpoints beyond the newest `keep`.
    pub fn save(
        &self,
        step: u64,
        write: impl FnOnce(&Path) -> Result<(), TrainError>,
    ) -> Result<PathBuf, TrainError> {
        let final_dir = self.root.join(format!("{PREFIX}{step:09}"));
        let tmp = self.root.join(format!("{TMP_PREFIX}{step:09}"));
        let _ = fs::remove_dir_all(&tmp);
        // removed on a signal, and by the next start if the process dies outright
        losatok_fs::temp::register(&tmp).map_err(|e| state_err(&tmp, e))?;
        let _unregister = Unregister(&tmp);
        fs::create_dir_all(&tmp).map_err(|e| state_err(&tmp, e))?;
        write(&tmp)?;
        let mut sums = std::collections::BTreeMap::new();
        for entry in fs::read_dir(&tmp).map_err(|e| state_err(&tmp, e))? {
            let path = entry.map_err(|e| state_err(&tmp, e))?.path();
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| state_err(&path, e))?;
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            sums.insert(name.into_owned(), file_crc32(&path)?);
        }
        write_json(&tmp.join(CHECKSUMS), &sums)?;
        sync_dir(&tmp)?;
        if final_dir.exists() {
            fs::remove_dir_all(&final_dir).map_err(|e| state_err(&final_dir, e))?;
        }
        losatok_fs::temp::publish(&tmp, || fs::rename(&tmp, &final_dir))
            .map_err(|e| state_err(&final_dir, e))?
            .map_err(|e| state_err(&final_dir, e))?;
        sync_dir(&self.root)?;
        let all = self.list()?;
        if all.len() > self.keep {
            for (_, old) in &all[..all.len() - self.keep] {
                let _ = fs::remove_dir_all(old);
            }
        }
        Ok(final_dir)
    }
}

/// Takes a temporary folder out of the signal-cleanup registry when dropped (it was renamed
/// into place, or the write failed and the next start removes it).
struct Unregister<'a>(&'a Path);

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        losatok_fs::temp::unregister(self.0);
    }
}

/// CRC-32 of a file, as 8 hex digits.
fn file_crc32(path: &Path) -> Result<String, TrainError> {
    use std::io::Read;
    let mut f = fs::File::open(path).map_err(|e| state_err(path, e))?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| state_err(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:08x}", h.finalize()))
}

/// Check a checkpoint folder against its `checksums.json`: every listed file present with its
/// CRC-32. Folders written before checksums existed (no `checksums.json`) pass.
pub fn verify(dir: &Path) -> Result<(), TrainError> {
    let list = dir.join(CHECKSUMS);
    if !dir.is_dir() {
        return Err(state_err(dir, "not a checkpoint folder"));
    }
    if !list.exists() {
        return Ok(());
    }
    let sums: std::collections::BTreeMap<String, String> = read_json(&list)?;
    for (name, want) in &sums {
        let path = dir.join(name);
        if !path.exists() {
            return Err(state_err(&path, "missing file (damaged checkpoint)"));
        }
        if &file_crc32(&path)? != want {
            return Err(state_err(
                &path,
                "checksum mismatch: the file is damaged (resume from another checkpoint)",
            ));
        }
    }
    Ok(())
}

/// A recorder error, on one short line: which file, and whether it is missing or damaged
/// (Burn's own message nests the decoder's debug output).
fn record_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    let file = path.with_extension("bin");
    let text = e.to_string();
    let message = if !file.exists() {
        "missing file (incomplete checkpoint)".to_string()
    } else if text.contains("UnexpectedEof") {
        "truncated file (damaged checkpoint)".to_string()
    } else {
        let short: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let short: String = short.chars().take(160).collect();
        format!("unreadable record, damaged or from another model ({short})")
    };
    TrainError::State {
        path: file,
        message,
    }
}

fn sync_dir(dir: &Path) -> Result<(), TrainError> {
    #[cfg(unix)]
    {
        fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| state_err(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Save a module's record as `<dir>/<name>.bin`.
pub fn save_module<B: Backend, M: Module<B>>(
    module: &M,
    dir: &Path,
    name: &str,
) -> Result<(), TrainError> {
    let path = dir.join(name);
    module
        .clone()
        .save_file(&path, &Rec::new())
        .map_err(|e| state_err(&path, e))
}

/// Load `<dir>/<name>.bin` into `module` (parameter ids restored).
pub fn load_module<B: Backend, M: Module<B>>(
    module: M,
    dir: &Path,
    name: &str,
    device: &B::Device,
) -> Result<M, TrainError> {
    let path = dir.join(name);
    module
        .load_file(&path, &Rec::new(), device)
        .map_err(|e| record_err(&path, e))
}

/// Save an optimiser's state as `<dir>/<name>.bin`.
pub fn save_optimizer<B, M, O>(opt: &O, dir: &Path, name: &str) -> Result<(), TrainError>
where
    B: AutodiffBackend,
    M: burn::module::AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let path = dir.join(name);
    Recorder::<B>::record(&Rec::new(), opt.to_record(), path.clone())
        .map_err(|e| state_err(&path, e))
}

/// Load an optimiser's state from `<dir>/<name>.bin`.
pub fn load_optimizer<B, M, O>(
    opt: O,
    dir: &Path,
    name: &str,
    device: &B::Device,
) -> Result<O, TrainError>
where
    B: AutodiffBackend,
    M: burn::module::AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let path = dir.join(name);
    let record =
        Recorder::<B>::load(&Rec::new(), path.clone(), device).map_err(|e| record_err(&path, e))?;
    Ok(opt.load_record(record))
}

/// Write a small JSON document atomically (temporary file, then rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).expect("serialisable");
    write_atomic(path, text.as_bytes())
}

/// Read a JSON document.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, TrainError> {
    let text = fs::read_to_string(path).map_err(|e| state_err(path, e))?;
    serde_json::from_str(&text).map_err(|e| state_err(path, e))
}

/// Write bytes atomically next to `path` (see [`losatok_fs::write_atomic`]), replacing it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    losatok_fs::write_atomic(path, bytes, true).map_err(|e| match e {
        losatok_fs::FsError::Write { path, source } => state_err(&path, source),
        other => state_err(path, other),
    })
}
