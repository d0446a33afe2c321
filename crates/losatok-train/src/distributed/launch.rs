//! `losatok launch`: start one process per GPU on this node with the variables `torchrun`
//! would set, watch them, and stop them all when one fails (a rank that dies would otherwise
//! leave the others blocked inside a collective for ever).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use super::{DistEnv, DistError, EnvSource};

/// What to start.
#[derive(Clone, Debug)]
pub struct LaunchSpec {
    /// The program (normally the running `losatok` binary).
    pub program: PathBuf,
    /// Its arguments, the same for every rank.
    pub args: Vec<OsString>,
    /// Processes on this node (one per GPU).
    pub nproc_per_node: usize,
    /// Nodes in the job.
    pub nnodes: usize,
    /// This node's index, `0..nnodes`.
    pub node_rank: usize,
    /// Host of global rank 0.
    pub master_addr: String,
    /// Port on it; `None` picks a free port (single node only).
    pub master_port: Option<u16>,
    /// After one rank fails, how long the others get to stop after SIGTERM before SIGKILL.
    pub grace: Duration,
}

/// How the ranks ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LaunchOutcome {
    /// Every rank exited with status 0.
    Success,
    /// A rank failed first (global rank, its exit code or `None` for a signal); the others
    /// were stopped.
    Failed {
        /// Global rank.
        rank: usize,
        /// Exit code, `None` when killed by a signal.
        code: Option<i32>,
        /// The signal, when killed by one.
        signal: Option<i32>,
    },
    /// The launcher was asked to stop (SIGINT/SIGTERM) and stopped its ranks.
    Interrupted(i32),
}

static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    STOP.store(sig, Ordering::SeqCst);
}

impl LaunchSpec {
    /// Check the numbers and resolve the port.
    fn envs(&self) -> Result<Vec<DistEnv>, DistError> {
        if self.nproc_per_node == 0 || self.nnodes == 0 {
            return Err(DistError::Env(
                "--nproc-per-node and --nnodes must be at least 1".into(),
            ));
        }
        if self.node_rank >= self.nnodes {
            return Err(DistError::Env(format!(
                "--node-rank {} is not below --nnodes {}",
                self.node_rank, self.nnodes
            )));
        }
        let port = match self.master_port {
            Some(0) | None if self.nnodes > 1 => {
                return Err(DistError::Env(
                    "a multi-node launch needs --master-port (the same on every node)".into(),
                ))
            }
            Some(0) | None => free_port()?,
            Some(p) => p,
        };
        let world = self.nproc_per_node * self.nnodes;
        Ok((0..self.nproc_per_node)
            .map(|local| DistEnv {
                rank: self.node_rank * self.nproc_per_node + local,
                world_size: world,
                local_rank: local,
                master_addr: self.master_addr.clone(),
                master_port: port,
                source: EnvSource::Torchrun,
            })
            .collect())
    }

    /// Start the ranks of this node and wait for them. Standard output and error are shared
    /// with the launcher.
    pub fn run(&self) -> Result<LaunchOutcome, DistError> {
        let envs = self.envs()?;
        STOP.store(0, Ordering::SeqCst);
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let previous: Vec<(libc::c_int, libc::sighandler_t)> = [libc::SIGINT, libc::SIGTERM]
            .into_iter()
            .map(|s| unsafe {
                (
                    s,
                    libc::signal(
                        s,
                        on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
                    ),
                )
            })
            .collect();
        let outcome = self.supervise(&envs);
        for (s, h) in previous {
            // SAFETY: restoring the handler that was installed before.
            unsafe { libc::signal(s, h) };
        }
        outcome
    }

    fn supervise(&self, envs: &[DistEnv]) -> Result<LaunchOutcome, DistError> {
        let mut children: Vec<(usize, Child)> = Vec::with_capacity(envs.len());
        for env in envs {
            let mut cmd = Command::new(&self.program);
            cmd.args(&self.args)
                .envs(env.to_vars())
                .env("LOCAL_WORLD_SIZE", self.nproc_per_node.to_string())
                .env("GROUP_RANK", self.node_rank.to_string());
            match cmd.spawn() {
                Ok(c) => children.push((env.rank, c)),
                Err(e) => {
                    stop_all(&mut children, self.grace);
                    return Err(DistError::Env(format!(
                        "cannot start rank {} ({}): {e}",
                        env.rank,
                        self.program.display()
                    )));
                }
            }
        }
        let mut running: Vec<bool> = vec![true; children.len()];
        loop {
            let sig = STOP.load(Ordering::SeqCst);
            if sig != 0 {
                stop_all(&mut children, self.grace);
                return Ok(LaunchOutcome::Interrupted(sig));
            }
            for (i, (rank, child)) in children.iter_mut().enumerate() {
                if !running[i] {
                    continue;
                }
                if let Some(status) = child
                    .try_wait()
                    .map_err(|e| DistError::Env(format!("cannot watch rank {rank}: {e}")))?
                {
                    running[i] = false;
                    if !status.success() {
                        let rank = *rank;
                        stop_all(&mut children, self.grace);
                        return Ok(failed(rank, status));
                    }
                }
            }
            if running.iter().all(|r| !r) {
                return Ok(LaunchOutcome::Success);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn failed(rank: usize, status: ExitStatus) -> LaunchOutcome {
    use std::os::unix::process::ExitStatusExt;
    LaunchOutcome::Failed {
        rank,
        code: status.code(),
        signal: status.signal(),
    }
}

/// SIGTERM to every rank still running, SIGKILL to those still there after `grace`.
fn stop_all(children: &mut [(usize, Child)], grace: Duration) {
    for (_, c) in children.iter_mut() {
        if matches!(c.try_wait(), Ok(None)) {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline
        && children
            .iter_mut()
            .any(|(_, c)| matches!(c.try_wait(), Ok(None)))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    for (_, c) in children.iter_mut() {
        if matches!(c.try_wait(), Ok(None)) {
            let _ = c.kill();
        }
        let _ = c.wait();
    }
}

/// A TCP port that is free now on this host.
fn free_port() -> Result<u16, DistError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| DistError::Env(format!("cannot find a free port for the rendezvous: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(script: &str, n: usize) -> LaunchSpec {
        LaunchSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            nproc_per_node: n,
            nnodes: 1,
            node_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: None,
            grace: Duration::from_secs(5),
        }
    }

    #[test]
    fn every_rank_gets_the_torchrun_variables() {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "echo $RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $MASTER_ADDR > {}/$RANK",
            dir.path().display()
        );
        assert_eq!(spec(&script, 3).run().unwrap(), LaunchOutcome::Success);
        for r in 0..3 {
            let line = std::fs::read_to_string(dir.path().join(r.to_string())).unwrap();
            assert_eq!(line.trim(), format!("{r} 3 {r} 3 127.0.0.1"));
        }
    }

    #[test]
    fn a_failing_rank_stops_the_others() {
        // rank 1 fails at once; rank 0 would sleep for a minute
        let t = Instant::now();
        let out = spec("if [ $RANK = 1 ]; then exit 7; else sleep 60; fi", 2)
            .run()
            .unwrap();
        assert_eq!(
            out,
            LaunchOutcome::Failed {
                rank: 1,
                code: Some(7),
                signal: None
            }
        );
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    }

    #[test]
    fn node_ranks_offset_the_global_rank_and_bad_numbers_are_refused() {
        let mut s = spec("true", 2);
        s.nnodes = 3;
        s.node_rank = 2;
        s.master_port = Some(29511);
        let envs = s.envs().unwrap();
        assert_eq!(
            envs.iter()
                .map(|e| (e.rank, e.local_rank, e.world_size))
                .collect::<Vec<_>>(),
            vec![(4, 0, 6), (5, 1, 6)]
        );
        s.master_port = None;
        assert!(s.envs().unwrap_err().to_string().contains("--master-port"));
        s.node_rank = 3;
        assert!(s.envs().unwrap_err().to_string().contains("--node-rank 3"));
        let mut z = spec("true", 0);
        z.nproc_per_node = 0;
        assert!(z.envs().is_err());
    }
}
