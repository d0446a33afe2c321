//! `launch` and `dist-check`: starting and checking multi-process training.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use losatok_train::distributed::launch::{LaunchOutcome, LaunchSpec};
use losatok_train::distributed::rendezvous::{share_id, ID_BYTES};
use losatok_train::distributed::{rendezvous_timeout, DistEnv};

use crate::LaunchArgs;

/// The GPU of a rank with this local rank (see `losatok_train::distributed::nccl::cuda_ordinal`).
#[cfg(feature = "cuda")]
pub fn rank_gpu(local_rank: usize) -> Result<usize> {
    Ok(losatok_train::distributed::nccl::cuda_ordinal(local_rank)?)
}

/// Without CUDA there is no GPU to pick; `--device cuda` is refused later with its own message.
#[cfg(not(feature = "cuda"))]
pub fn rank_gpu(local_rank: usize) -> Result<usize> {
    Ok(local_rank)
}

/// `losatok launch`.
pub fn launch(args: LaunchArgs) -> Result<ExitCode> {
    let program = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find the losatok binary to launch: {e}"))?;
    let spec = LaunchSpec {
        program,
        args: args.command,
        nproc_per_node: args.nproc_per_node,
        nnodes: args.nnodes,
        node_rank: args.node_rank,
        master_addr: args.master_addr,
        master_port: args.master_port,
        grace: Duration::from_secs(30),
    };
    match spec.run()? {
        LaunchOutcome::Success => Ok(ExitCode::SUCCESS),
        LaunchOutcome::Failed {
            rank, code, signal, ..
        } => {
            let how = match (code, signal) {
                (Some(c), _) => format!("exited with status {c}"),
                (None, Some(s)) => format!("was killed by signal {s}"),
                (None, None) => "failed".to_string(),
            };
            bail!("rank {rank} {how}; the other ranks were stopped")
        }
        LaunchOutcome::Interrupted(sig) => {
            eprintln!("interrupted: all ranks were stopped");
            Ok(ExitCode::from(128u8.saturating_add(sig as u8)))
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "?".into())
}

/// `losatok dist-check`.
pub fn dist_check(nccl: bool) -> Result<ExitCode> {
    let env = DistEnv::from_env()?.unwrap_or_else(DistEnv::single);
    let host = hostname();
    let t = Instant::now();
    let who = format!(
        "rank {}/{} (local rank {}, host {host})",
        env.rank, env.world_size, env.local_rank
    );
    if nccl {
        return nccl_check(&env, &who, t);
    }
    // rank 0 hands every rank the same random token: equal tokens prove they met one rank 0
    let token = share_id(
        &env,
        || {
            let mut id = [0u8; ID_BYTES];
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                ^ u64::from(std::process::id());
            let mut x = seed | 1;
            for b in id.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            Ok(id)
        },
        rendezvous_timeout()?,
    )?;
    let hex: String = token[..6].iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "{who}: met rank 0 at {}:{} in {:.2} s, token {hex}",
        env.master_addr,
        env.master_port,
        t.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "cuda")]
fn nccl_check(env: &DistEnv, who: &str, t: Instant) -> Result<ExitCode> {
    use burn::prelude::*;
    use losatok_train::collective::Collective;
    use losatok_train::distributed::{CollectiveKind, Group};
    type B = losatok::Cuda;
    let gpu = rank_gpu(env.local_rank)?;
    let mut group = Group::join(Some(env), CollectiveKind::Nccl, Some(gpu))?;
    let n = env.world_size as f64;
    let mut v = [env.rank as f64 + 1.0];
    <Group as Collective<B>>::all_reduce_sum_host(&mut group, &mut v)?;
    let device = burn::backend::cuda::CudaDevice::new(gpu);
    let x = Tensor::<B, 1>::from_data([env.rank as f32, 1.0], &device);
    let mean = group
        .all_reduce_mean(x)?
        .into_data()
        .to_vec::<f32>()
        .unwrap_or_default();
    let want = [(n as f32 - 1.0) / 2.0, 1.0];
    if v[0] != n * (n + 1.0) / 2.0 || mean.len() != 2 || (mean[0] - want[0]).abs() > 1e-6 {
        bail!(
            "{who}: NCCL returned wrong sums ({} and {mean:?}; expected {} and {want:?})",
            v[0],
            n * (n + 1.0) / 2.0
        );
    }
    println!(
        "{who}: NCCL all-reduce on GPU {gpu} ok in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "cuda"))]
fn nccl_check(_env: &DistEnv, _who: &str, _t: Instant) -> Result<ExitCode> {
    bail!("--nccl needs a build with the `cuda` feature (cargo build --release --features cuda)")
}
