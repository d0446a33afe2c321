//! Data-parallel training across processes: one process per GPU, started by `torchrun`,
//! SLURM's `srun` or `losatok launch`, configured from the standard environment
//! (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`), with gradients summed by
//! NCCL (feature `nccl`).
//!
//! Why cudarc's NCCL bindings and not Burn 0.21's `distributed` feature: Burn's collective
//! runs its ranks as threads of one process, which rules out `torchrun`/`srun` launches and
//! multi-node jobs, and enabling it breaks `Autodiff<Flex>`, the CPU backend everything else
//! is tested on. NCCL through cudarc keeps one process per GPU — the way PyTorch jobs are
//! launched and scheduled — and is only linked (at run time) into CUDA builds.

pub mod env;
pub mod launch;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod rendezvous;

use std::time::Duration;

use burn::prelude::*;

use crate::collective::{Collective, InProcess, Local};
pub use env::{DistEnv, EnvSource};

/// Failures of the distributed setup and of collective operations.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// Launcher variables missing or inconsistent.
    #[error("distributed environment: {0}")]
    Env(String),
    /// Ranks could not meet at `MASTER_ADDR:MASTER_PORT`.
    #[error("rendezvous: {0}")]
    Rendezvous(String),
    /// NCCL or CUDA failed.
    #[error("NCCL: {0}")]
    Nccl(String),
    /// Another rank of the group is gone; this one cannot continue.
    #[error("{0}")]
    PeerLost(String),
}

/// How long ranks wait for each other at start-up: `LOSATOK_RENDEZVOUS_TIMEOUT` seconds,
/// 900 by default (long enough for every node of a large job to load its weights).
pub fn rendezvous_timeout() -> Result<Duration, DistError> {
    // unset and empty alike mean the default, as for the launcher's variables
    match std::env::var("LOSATOK_RENDEZVOUS_TIMEOUT") {
        Err(_) => Ok(Duration::from_secs(900)),
        Ok(v) if v.trim().is_empty() => Ok(Duration::from_secs(900)),
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                DistError::Env(format!(
                    "LOSATOK_RENDEZVOUS_TIMEOUT={v:?} is not a positive number of seconds"
                ))
            }),
    }
}

/// Which collective a training process uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CollectiveKind {
    /// NCCL when the launcher started more than one rank, none otherwise.
    #[default]
    Auto,
    /// No communication (a single process; refused when `WORLD_SIZE` > 1).
    Local,
    /// NCCL, even for a single rank (to check an installation).
    Nccl,
}

impl std::str::FromStr for CollectiveKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "local" | "none" => Ok(Self::Local),
            "nccl" => Ok(Self::Nccl),
            other => Err(format!("unknown collective {other:?} (auto, local, nccl)")),
        }
    }
}

/// The collective of one training process.
pub enum Group {
    /// A single rank.
    Local(Local),
    /// Ranks as threads of one process (CPU).
    InProcess(InProcess),
    /// One process per GPU.
    #[cfg(feature = "nccl")]
    Nccl(nccl::Nccl),
}

impl Group {
    /// The collective for this process: `env` from [`DistEnv::from_env`]; `cuda_ordinal` is
    /// the GPU this rank trains on (NCCL's buffers live there), `None` for a CPU run.
    pub fn join(
        env: Option<&DistEnv>,
        kind: CollectiveKind,
        cuda_ordinal: Option<usize>,
    ) -> Result<Self, DistError> {
        let world = env.map_or(1, |e| e.world_size);
        let nccl = match kind {
            CollectiveKind::Local if world > 1 => {
                return Err(DistError::Env(format!(
                    "--collective local cannot train a world of {world} ranks"
                )))
            }
            CollectiveKind::Local => false,
            CollectiveKind::Auto => world > 1,
            CollectiveKind::Nccl => true,
        };
        if !nccl {
            return Ok(Self::Local(Local));
        }
        let Some(ordinal) = cuda_ordinal else {
            return Err(DistError::Env(if world == 1 {
                "the NCCL collective needs a GPU: NCCL reduces gradients on CUDA devices \
                 (--device cuda)"
                    .to_string()
            } else {
                format!(
                    "{world} ranks need GPUs: multi-process training runs on CUDA with NCCL \
                     (--device cuda)"
                )
            }));
        };
        let single = DistEnv::single();
        let env = env.unwrap_or(&single);
        Self::nccl(env, ordinal)
    }

    #[cfg(feature = "nccl")]
    fn nccl(env: &DistEnv, ordinal: usize) -> Result<Self, DistError> {
        Ok(Self::Nccl(nccl::Nccl::init(
            env,
            ordinal,
            rendezvous_timeout()?,
        )?))
    }

    #[cfg(not(feature = "nccl"))]
    fn nccl(env: &DistEnv, _ordinal: usize) -> Result<Self, DistError> {
        Err(DistError::Env(format!(
            "this build has no NCCL (world size {}): build with `--features cuda`",
            env.world_size
        )))
    }
}

impl<B: Backend> Collective<B> for Group {
    fn rank(&self) -> usize {
        match self {
            Self::Local(c) => <Local as Collective<B>>::rank(c),
            Self::InProcess(c) => <InProcess as Collective<B>>::rank(c),
            #[cfg(feature = "nccl")]
            Self::Nccl(c) => <nccl::Nccl as Collective<B>>::rank(c),
        }
    }
    fn world_size(&self) -> usize {
        match self {
            Self::Local(c) => <Local as Collective<B>>::world_size(c),
            Self::InProcess(c) => <InProcess as Collective<B>>::world_size(c),
            #[cfg(feature = "nccl")]
            Self::Nccl(c) => <nccl::Nccl as Collective<B>>::world_size(c),
        }
    }
    fn all_reduce_mean(&mut self, t: Tensor<B, 1>) -> Result<Tensor<B, 1>, DistError> {
        match self {
            Self::Local(c) => c.all_reduce_mean(t),
            Self::InProcess(c) => c.all_reduce_mean(t),
            #[cfg(feature = "nccl")]
            Self::Nccl(c) => c.all_reduce_mean(t),
        }
    }
    fn all_reduce_sum_host(&mut self, values: &mut [f64]) -> Result<(), DistError> {
        match self {
            Self::Local(c) => <Local as Collective<B>>::all_reduce_sum_host(c, values),
            Self::InProcess(c) => <InProcess as Collective<B>>::all_reduce_sum_host(c, values),
            #[cfg(feature = "nccl")]
            Self::Nccl(c) => <nccl::Nccl as Collective<B>>::all_reduce_sum_host(c, values),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joining_without_a_launcher_or_gpu() {
        assert!(matches!(
            Group::join(None, CollectiveKind::Auto, None).unwrap(),
            Group::Local(_)
        ));
        let mut env = DistEnv::single();
        env.world_size = 4;
        env.rank = 1;
        let e = Group::join(Some(&env), CollectiveKind::Auto, None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("4 ranks need GPUs"), "{e}");
        let e = Group::join(Some(&env), CollectiveKind::Local, Some(0))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cannot train a world of 4"), "{e}");
        assert_eq!(
            "NCCL".parse::<CollectiveKind>().unwrap(),
            CollectiveKind::Nccl
        );
        assert!("mpi".parse::<CollectiveKind>().is_err());
    }
}
