//! Multi-process plumbing of the CLI on a machine without GPUs: `losatok launch` starts ranks
//! with the torchrun variables, ranks started by hand (as torchrun or srun would) meet rank 0,
//! a failing rank stops the job, and inconsistent environments are one-line errors. (The
//! NCCL all-reduce itself needs GPUs: `losatok dist-check --nccl` on a CUDA build.)

use std::process::{Command, Output};

fn losatok() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_losatok"));
    for k in [
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
        "SLURM_STEP_NUM_TASKS",
        "SLURM_PROCID",
        "SLURM_LOCALID",
    ] {
        c.env_remove(k);
    }
    c
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The token a `dist-check` line reports.
fn token(line: &str) -> &str {
    line.rsplit("token ").next().unwrap()
}

#[test]
fn launch_starts_every_rank_and_they_meet_rank_0() {
    let o = losatok()
        .args(["launch", "--nproc-per-node", "4", "--", "dist-check"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 4, "{out}");
    for (r, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!("rank {r}/4 (local rank {r},")),
            "{line}"
        );
        assert_eq!(
            token(line),
            token(lines[0]),
            "all ranks met the same rank 0"
        );
    }
}

#[test]
fn ranks_started_by_another_launcher_read_the_standard_variables() {
    let port = free_port().to_string();
    // as torchrun would: rank 1 starts first and waits for rank 0
    let spawn = |vars: &[(&str, &str)]| {
        let mut c = losatok();
        c.arg("dist-check");
        for (k, v) in vars {
            c.env(k, v);
        }
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let r1 = spawn(&[
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("LOCAL_RANK", "1"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", &port),
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // and rank 0 as srun would (SLURM variables, MASTER_ADDR/PORT from the batch script)
    let r0 = spawn(&[
        ("SLURM_STEP_NUM_TASKS", "2"),
        ("SLURM_PROCID", "0"),
        ("SLURM_LOCALID", "0"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", &port),
    ]);
    let o0 = r0.wait_with_output().unwrap();
    let o1 = r1.wait_with_output().unwrap();
    let ((out0, err0), (out1, err1)) = (text(&o0), text(&o1));
    assert!(o0.status.success() && o1.status.success(), "{err0} {err1}");
    assert!(out0.starts_with("rank 0/2"), "{out0}");
    assert!(out1.starts_with("rank 1/2"), "{out1}");
    assert_eq!(token(out0.trim()), token(out1.trim()));
}

#[test]
fn a_failing_rank_stops_the_job_with_one_line() {
    // every rank fails: training several ranks needs GPUs
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = losatok()
        .args(["launch", "--nproc-per-node", "2", "--", "train"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../configs/losatok_tiny_cpu.yml"
        ))
        .arg("--run-dir")
        .arg(&run)
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("ranks need GPUs"), "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("error: rank ") && last.contains("the other ranks were stopped"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!run.join("config.yml").exists(), "nothing written");
}

#[test]
fn bad_launch_arguments_and_environments_are_one_line_errors() {
    /// Arguments, environment, expected text.
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["launch", "--nproc-per-node", "0", "--", "dist-check"],
            vec![],
            "at least 1",
        ),
        (
            vec![
                "launch",
                "--nproc-per-node",
                "2",
                "--nnodes",
                "2",
                "--",
                "dist-check",
            ],
            vec![],
            "--master-port",
        ),
        (
            vec![
                "launch",
                "--nproc-per-node",
                "1",
                "--nnodes",
                "2",
                "--node-rank",
                "2",
                "--master-port",
                "29999",
                "--",
                "dist-check",
            ],
            vec![],
            "--node-rank 2",
        ),
        (
            vec!["dist-check"],
            vec![("RANK", "3"), ("WORLD_SIZE", "2")],
            "not below",
        ),
        (vec!["dist-check"], vec![("RANK", "0")], "WORLD_SIZE is not"),
        (
            vec!["dist-check"],
            vec![
                ("RANK", "0"),
                ("WORLD_SIZE", "2"),
                ("LOCAL_RANK", "0"),
                ("MASTER_ADDR", "127.0.0.1"),
                ("MASTER_PORT", "http"),
            ],
            "MASTER_PORT=\"http\"",
        ),
        (
            vec!["train", "x.yml", "--run-dir", "r", "--collective", "mpi"],
            vec![],
            "unknown collective",
        ),
        (
            vec!["dist-check", "--nccl"],
            vec![],
            if cfg!(feature = "cuda") {
                ""
            } else {
                "`cuda` feature"
            },
        ),
    ];
    for (args, vars, want) in cases {
        if want.is_empty() {
            continue;
        }
        let mut c = losatok();
        c.args(&args);
        for (k, v) in &vars {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{args:?} {vars:?} succeeded");
        assert_ne!(o.status.code(), Some(70), "{err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?} {vars:?}: {err}");
    }
}

#[test]
fn a_rank_0_that_never_comes_times_out_with_the_address() {
    let port = free_port().to_string();
    let o = losatok()
        .arg("dist-check")
        .envs([
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", port.as_str()),
            ("LOSATOK_RENDEZVOUS_TIMEOUT", "1"),
        ])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("timed out reaching rank 0 at 127.0.0.1:{port}")),
        "{err}"
    );
}
