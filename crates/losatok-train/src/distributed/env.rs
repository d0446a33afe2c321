//! Which rank this process is, from the environment that `torchrun`, SLURM's `srun` and
//! `losatok launch` set up.

use super::DistError;

/// Default rendezvous port when `srun` starts the ranks and `MASTER_PORT` is not set (the
/// port `torchrun` uses by default).
pub const DEFAULT_MASTER_PORT: u16 = 29500;

/// The place of this process in a data-parallel job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistEnv {
    /// This rank, `0..world_size`.
    pub rank: usize,
    /// Number of ranks in the job (all nodes).
    pub world_size: usize,
    /// This rank's index on its node: the CUDA device it drives.
    pub local_rank: usize,
    /// Host of rank 0 (where the NCCL id is handed out).
    pub master_addr: String,
    /// Port on `master_addr`.
    pub master_port: u16,
    /// Which launcher's variables were read.
    pub source: EnvSource,
}

/// Where the rank came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvSource {
    /// `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT` (torchrun,
    /// `losatok launch`, hand-written scripts).
    Torchrun,
    /// `SLURM_PROCID`, `SLURM_STEP_NUM_TASKS`, `SLURM_LOCALID` of an `srun` job step, with
    /// `MASTER_ADDR` (and optionally `MASTER_PORT`) from the batch script.
    Slurm,
}

impl DistEnv {
    /// A single process: rank 0 of 1.
    pub fn single() -> Self {
        Self {
            rank: 0,
            world_size: 1,
            local_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: DEFAULT_MASTER_PORT,
            source: EnvSource::Torchrun,
        }
    }

    /// Read the process environment; `None` when no launcher variables are set (a plain,
    /// single-process run).
    pub fn from_env() -> Result<Option<Self>, DistError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`Self::from_env`] over any variable lookup (tests).
    ///
    /// The torchrun variables win over SLURM's: a job that starts `torchrun` under `srun`
    /// is described by torchrun. SLURM's are read only inside an `srun` job step
    /// (`SLURM_STEP_NUM_TASKS` set), never from the batch script itself, where
    /// `SLURM_NTASKS` counts tasks that have not been started.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, DistError> {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let num = |k: &str| -> Result<Option<usize>, DistError> {
            match var(k) {
                None => Ok(None),
                Some(v) => v.parse::<usize>().map(Some).map_err(|_| {
                    DistError::Env(format!("{k}={v:?} is not a non-negative integer"))
                }),
            }
        };
        let port = || -> Result<Option<u16>, DistError> {
            match var("MASTER_PORT") {
                None => Ok(None),
                Some(v) => match v.parse::<u16>() {
                    Ok(p) if p > 0 => Ok(Some(p)),
                    _ => Err(DistError::Env(format!(
                        "MASTER_PORT={v:?} is not a port number (1–65535)"
                    ))),
                },
            }
        };

        let (rank, world, local, source) = if var("WORLD_SIZE").is_some() || var("RANK").is_some() {
            let world = num("WORLD_SIZE")?
                .ok_or_else(|| DistError::Env("RANK is set but WORLD_SIZE is not".into()))?;
            if world == 0 {
                return Err(DistError::Env("the world size must be at least 1".into()));
            }
            let rank = num("RANK")?
                .ok_or_else(|| DistError::Env("WORLD_SIZE is set but RANK is not".into()))?;
            if rank >= world {
                return Err(DistError::Env(format!(
                    "RANK {rank} is not below WORLD_SIZE {world}"
                )));
            }
            let local = match num("LOCAL_RANK")? {
                Some(l) => l,
                None if world == 1 => 0,
                None => {
                    return Err(DistError::Env(
                        "LOCAL_RANK is not set (it picks this rank's GPU on its node)".into(),
                    ))
                }
            };
            (rank, world, local, EnvSource::Torchrun)
        } else if var("SLURM_STEP_NUM_TASKS").is_some() {
            let world = num("SLURM_STEP_NUM_TASKS")?.unwrap_or(1);
            let rank = num("SLURM_PROCID")?.ok_or_else(|| {
                DistError::Env("SLURM_STEP_NUM_TASKS is set but SLURM_PROCID is not".into())
            })?;
            let local = num("SLURM_LOCALID")?.unwrap_or(0);
            (rank, world, local, EnvSource::Slurm)
        } else {
            return Ok(None);
        };

        if world == 0 {
            return Err(DistError::Env("the world size must be at least 1".into()));
        }
        if rank >= world {
            return Err(DistError::Env(format!(
                "rank {rank} is not below the world size {world}"
            )));
        }
        if local >= world {
            return Err(DistError::Env(format!(
                "local rank {local} is not below the world size {world}"
            )));
        }
        let master_addr = match var("MASTER_ADDR") {
            Some(a) => a,
            None if world == 1 => "127.0.0.1".into(),
            None => {
                return Err(DistError::Env(format!(
                    "MASTER_ADDR is not set (the host of rank 0; {})",
                    match source {
                        EnvSource::Slurm => "e.g. export MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1) in the batch script",
                        EnvSource::Torchrun => "torchrun and `losatok launch` set it",
                    }
                )))
            }
        };
        let master_port = match (port()?, source) {
            (Some(p), _) => p,
            (None, EnvSource::Slurm) => DEFAULT_MASTER_PORT,
            (None, EnvSource::Torchrun) if world == 1 => DEFAULT_MASTER_PORT,
            (None, EnvSource::Torchrun) => {
                return Err(DistError::Env("MASTER_PORT is not set".into()))
            }
        };
        Ok(Some(Self {
            rank,
            world_size: world,
            local_rank: local,
            master_addr,
            master_port,
            source,
        }))
    }

    /// The variables a launcher sets for rank `rank` (what `losatok launch` passes to its
    /// children).
    pub fn to_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("RANK", self.rank.to_string()),
            ("WORLD_SIZE", self.world_size.to_string()),
            ("LOCAL_RANK", self.local_rank.to_string()),
            ("MASTER_ADDR", self.master_addr.clone()),
            ("MASTER_PORT", self.master_port.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)]) -> Result<Option<DistEnv>, DistError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DistEnv::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn no_launcher_is_a_single_process() {
        assert_eq!(read(&[]).unwrap(), None);
        // inside a SLURM batch script but not in an srun step
        assert_eq!(
            read(&[("SLURM_NTASKS", "16"), ("SLURM_PROCID", "0")]).unwrap(),
            None
        );
    }

    #[test]
    fn torchrun_variables() {
        let e = read(&[
            ("RANK", "11"),
            ("WORLD_SIZE", "16"),
            ("LOCAL_RANK", "3"),
            ("MASTER_ADDR", "node-a"),
            ("MASTER_PORT", "29400"),
            ("SLURM_STEP_NUM_TASKS", "2"),
            ("SLURM_PROCID", "1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            e,
            DistEnv {
                rank: 11,
                world_size: 16,
                local_rank: 3,
                master_addr: "node-a".into(),
                master_port: 29400,
                source: EnvSource::Torchrun,
            }
        );
        let back: HashMap<_, _> = e.to_vars().into_iter().collect();
        assert_eq!(back["RANK"], "11");
        assert_eq!(back["MASTER_PORT"], "29400");
    }

    #[test]
    fn slurm_step_variables_with_a_default_port() {
        let e = read(&[
            ("SLURM_STEP_NUM_TASKS", "16"),
            ("SLURM_PROCID", "9"),
            ("SLURM_LOCALID", "1"),
            ("MASTER_ADDR", "10.0.0.7"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((e.rank, e.world_size, e.local_rank), (9, 16, 1));
        assert_eq!(e.master_port, DEFAULT_MASTER_PORT);
        assert_eq!(e.source, EnvSource::Slurm);
    }

    #[test]
    fn a_world_of_one_needs_nothing_else() {
        let e = read(&[("RANK", "0"), ("WORLD_SIZE", "1")])
            .unwrap()
            .unwrap();
        assert_eq!((e.rank, e.world_size, e.local_rank), (0, 1, 0));
    }

    #[test]
    fn inconsistent_variables_are_one_line_errors() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("RANK", "0")], "WORLD_SIZE is not"),
            (&[("WORLD_SIZE", "2")], "RANK is not"),
            (
                &[("RANK", "2"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")],
                "not below",
            ),
            (&[("RANK", "x"), ("WORLD_SIZE", "2")], "RANK=\"x\""),
            (&[("RANK", "0"), ("WORLD_SIZE", "0")], "at least 1"),
            (&[("RANK", "1"), ("WORLD_SIZE", "2")], "LOCAL_RANK"),
            (
                &[("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "1")],
                "MASTER_ADDR",
            ),
            (
                &[
                    ("RANK", "1"),
                    ("WORLD_SIZE", "2"),
                    ("LOCAL_RANK", "1"),
                    ("MASTER_ADDR", "h"),
                ],
                "MASTER_PORT is not set",
            ),
            (
                &[
                    ("RANK", "1"),
                    ("WORLD_SIZE", "2"),
                    ("LOCAL_RANK", "1"),
                    ("MASTER_ADDR", "h"),
                    ("MASTER_PORT", "70000"),
                ],
                "not a port",
            ),
            (
                &[("SLURM_STEP_NUM_TASKS", "4"), ("SLURM_PROCID", "1")],
                "scontrol",
            ),
        ];
        for (vars, want) in cases {
            let e = read(vars).unwrap_err().to_string();
            assert!(e.contains(want), "{vars:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
