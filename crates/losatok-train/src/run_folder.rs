//! The run folder of a training run: one trainer at a time, starts that can be retried, and
//! resumes that cannot silently change what a run is.
//!
//! * **Lock**: rank 0 holds an exclusive lock on the folder ([`losatok_fs::DirLock`]) for the
//!   whole run; a second trainer on the same folder stops at once, naming the holder's PID and
//!   host. The operating system releases the lock when the process dies, however it dies.
//! * **Fresh start or resume**: a folder with a checkpoint holds a run, which only a resume may
//!   continue. A folder without one (an attempt that failed or was stopped before its first
//!   checkpoint) never blocks a new start: its configs and logs are replaced.
//! * **Config on resume**: the resolved config is compared with the run's `config.yml` (and the
//!   model config with `model.yml`). Changes to what fixes the run's results or shapes — the
//!   model, the batch, the data, the seed — are refused unless allowed explicitly; the others
//!   (learning rate, step count, loss weights, logging) are accepted. Every accepted change is
//!   appended to `config_changes.jsonl` with the step, and the new config replaces the old.

use std::path::{Path, PathBuf};

use losatok_models::LosatokConfig;

use crate::error::TrainError;
use crate::state::{self, Checkpoints};

/// The resolved training config of a run.
pub const CONFIG_FILE: &str = "config.yml";
/// The model config of a run (official layout).
pub const MODEL_FILE: &str = "model.yml";
/// The record of config changes accepted on resume.
pub const CONFIG_CHANGES_FILE: &str = "config_changes.jsonl";

/// Keys (dotted paths in the training config; a trailing `.` covers a whole section) that may
/// change when a run is resumed: they change how training goes on, not what the run is.
const ADJUSTABLE: [&str; 15] = [
    "run.steps",
    "run.watchdog.",
    "run.log_every",
    "run.checkpoint_every",
    "run.keep_checkpoints",
    "run.sample_every",
    "run.max_bad_steps",
    "optim.",
    "optim_g.",
    "optim_d.",
    "data.loader.workers",
    "data.loader.prefetch",
    "lambda_recon",
    "weights.",
    "gan_start_step",
];

/// One difference between a run's config and the one it is resumed with.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigChange {
    /// Dotted key (`optim.lr`), or `model` for the model config.
    pub key: String,
    /// The run's value (YAML/JSON text; `absent` if the key was not there).
    pub from: String,
    /// The new value.
    pub to: String,
    /// Whether the change may be made without an explicit permission.
    pub adjustable: bool,
}

impl std::fmt::Display for ConfigChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} → {}", self.key, self.from, self.to)
    }
}

fn is_adjustable(key: &str) -> bool {
    ADJUSTABLE.iter().any(|a| match a.strip_suffix('.') {
        Some(section) => key.starts_with(a) || key == section,
        None => key == *a,
    })
}

/// Every leaf of a YAML/JSON tree, by dotted key.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// The differences between two training configs (YAML), classified.
pub fn config_changes(old: &str, new: &str) -> Result<Vec<ConfigChange>, String> {
    let parse = |text: &str| -> Result<Vec<(String, String)>, String> {
        let v: serde_json::Value =
            serde_norway::from_str(text).map_err(|e| format!("unreadable config: {e}"))?;
        let mut leaves = Vec::new();
        flatten("", &v, &mut leaves);
        Ok(leaves)
    };
    let (old, new) = (parse(old)?, parse(new)?);
    let old_map: std::collections::BTreeMap<_, _> = old.into_iter().collect();
    let new_map: std::collections::BTreeMap<_, _> = new.into_iter().collect();
    let keys: std::collections::BTreeSet<&String> = old_map.keys().chain(new_map.keys()).collect();
    let absent = "absent".to_string();
    Ok(keys
        .into_iter()
        .filter_map(|k| {
            let (a, b) = (
                old_map.get(k).unwrap_or(&absent),
                new_map.get(k).unwrap_or(&absent),
            );
            (a != b).then(|| ConfigChange {
                key: k.clone(),
                from: a.clone(),
                to: b.clone(),
                adjustable: is_adjustable(k),
            })
        })
        .collect())
}

/// An open run folder (see the module documentation).
#[derive(Debug)]
pub struct RunFolder {
    dir: PathBuf,
    /// The run's checkpoints.
    pub checkpoints: Checkpoints,
    /// The checkpoint to continue from (step, folder).
    pub resumed: Option<(u64, PathBuf)>,
    _lock: Option<losatok_fs::DirLock>,
}

impl RunFolder {
    /// Creates (if needed) and, on rank 0, locks the run folder, removes leftovers of an
    /// interrupted checkpoint write, and finds the checkpoint to continue from. Without
    /// `resume`, a folder holding a checkpoint is refused.
    pub fn open(dir: &Path, resume: bool, keep: usize, rank0: bool) -> Result<Self, TrainError> {
        losatok_fs::temp::create_dir_all(dir)?;
        let lock = match rank0 {
            true => Some(losatok_fs::DirLock::acquire(dir, "training")?),
            false => None,
        };
        let checkpoints = Checkpoints::open(dir, keep)?;
        let resumed = resume_point(dir, &checkpoints, resume, rank0)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            checkpoints,
            resumed,
            _lock: lock,
        })
    }

    /// The step resumed from.
    pub fn resumed_step(&self) -> Option<u64> {
        self.resumed.as_ref().map(|r| r.0)
    }

    /// Rank 0: records the run's configs. A fresh start writes `config.yml` and `model.yml`
    /// (replacing those of an attempt that never reached a checkpoint). A resume compares them
    /// with the saved ones: changes that are not adjustable are refused unless
    /// `allow_changes`; accepted changes are recorded and returned.
    pub fn settle_config(
        &self,
        train_yaml: &str,
        model: &LosatokConfig,
        allow_changes: bool,
    ) -> Result<Vec<ConfigChange>, TrainError> {
        let mut m = model.clone();
        m.semantic_encoder_path = None;
        let model_yaml = m.to_yaml_string();
        let config_path = self.dir.join(CONFIG_FILE);
        let model_path = self.dir.join(MODEL_FILE);
        let Some(step) = self.resumed_step() else {
            state::write_atomic(&config_path, train_yaml.as_bytes())?;
            state::write_atomic(&model_path, model_yaml.as_bytes())?;
            return Ok(Vec::new());
        };
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| TrainError::State {
                path: p.to_path_buf(),
                message: e.to_string(),
            })
        };
        let mut changes =
            config_changes(&read(&config_path)?, train_yaml).map_err(|m| TrainError::State {
                path: config_path.clone(),
                message: m,
            })?;
        if read(&model_path)? != model_yaml {
            changes.push(ConfigChange {
                key: "model".into(),
                from: MODEL_FILE.into(),
                to: "a different model config".into(),
                adjustable: false,
            });
        }
        let fixed: Vec<&ConfigChange> = changes.iter().filter(|c| !c.adjustable).collect();
        if !fixed.is_empty() && !allow_changes {
            return Err(TrainError::ConfigChanged {
                run_dir: self.dir.clone(),
                changes: fixed
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if changes.is_empty() {
            return Ok(changes);
        }
        let record = serde_json::json!({
            "step": step,
            "wall": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            "changes": changes
                .iter()
                .map(|c| serde_json::json!({
                    "key": c.key,
                    "from": c.from,
                    "to": c.to,
                    "adjustable": c.adjustable,
                }))
                .collect::<Vec<_>>(),
        });
        append_line(&self.dir.join(CONFIG_CHANGES_FILE), &record.to_string())?;
        state::write_atomic(&config_path, train_yaml.as_bytes())?;
        state::write_atomic(&model_path, model_yaml.as_bytes())?;
        for c in &changes {
            tracing::warn!("resuming with a changed config: {c}");
        }
        Ok(changes)
    }
}

/// Appends one line to a text file (created with the umask's permissions), synced.
fn append_line(path: &Path, line: &str) -> Result<(), TrainError> {
    use std::io::Write;
    let err = |e: std::io::Error| TrainError::State {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(err)?;
    f.write_all(format!("{line}\n").as_bytes()).map_err(err)?;
    f.sync_data().map_err(err)
}

/// The checkpoint to continue from. A fresh start refuses a folder that holds a checkpoint (so
/// nothing of a run is overwritten or mixed); one that never reached a checkpoint does not
/// count. Rank 0 decides: the other ranks could otherwise see what rank 0 has just written.
fn resume_point(
    dir: &Path,
    ckpts: &Checkpoints,
    resume: bool,
    rank0: bool,
) -> Result<Option<(u64, PathBuf)>, TrainError> {
    if resume {
        // the newest checkpoint that is intact (a damaged one is reported and skipped)
        let all = ckpts.list()?;
        let mut damaged = Vec::new();
        for (step, ckpt) in all.iter().rev() {
            match state::verify(ckpt) {
                Ok(()) => {
                    for e in &damaged {
                        tracing::warn!("skipping damaged checkpoint: {e}");
                    }
                    return Ok(Some((*step, ckpt.clone())));
                }
                Err(e) => damaged.push(e.to_string()),
            }
        }
        if let Some(first) = damaged.first() {
            return Err(TrainError::Invalid(format!(
                "no intact checkpoint to resume from in {} ({first})",
                dir.display()
            )));
        }
        return Ok(None);
    }
    if rank0 {
        if let Some((step, _)) = ckpts.latest()? {
            return Err(TrainError::RunExists {
                run_dir: dir.to_path_buf(),
                step,
            });
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_config_changes() {
        let old = "model:\n  preset: tiny\noptim:\n  lr: 0.001\nrun:\n  steps: 10\n  batch_size: 4\n  seed: 0\ndata:\n  manifest: /a.jsonl\n  loader:\n    workers: 2\n";
        let new = "model:\n  preset: tiny\noptim:\n  lr: 0.0005\nrun:\n  steps: 20\n  batch_size: 8\n  seed: 0\ndata:\n  manifest: /b.jsonl\n  loader:\n    workers: 4\n";
        let c = config_changes(old, new).unwrap();
        let show: Vec<(String, bool)> = c.iter().map(|c| (c.key.clone(), c.adjustable)).collect();
        assert_eq!(
            show,
            [
                ("data.loader.workers".to_string(), true),
                ("data.manifest".to_string(), false),
                ("optim.lr".to_string(), true),
                ("run.batch_size".to_string(), false),
                ("run.steps".to_string(), true),
            ]
        );
        assert_eq!(c[4].to_string(), "run.steps 10 → 20");
        assert!(config_changes(old, old).unwrap().is_empty());
        // a key that appears is a change too, and unknown keys are not adjustable
        let c = config_changes(old, &format!("{old}extra: 1\n")).unwrap();
        assert_eq!(c.len(), 1);
        assert!(!c[0].adjustable && c[0].from == "absent");
    }
}
