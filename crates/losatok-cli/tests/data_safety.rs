//! Data safety of the `losatok` binary, one test per class of risk: outputs that would clobber or
//! lose data, interrupted jobs (signals, `kill -9`, blocking inputs), run folders (locks, config
//! changes on resume, failed starts, permissions), and hostile inputs. Failures are one line
//! (the rule of `bad_input.rs`); nothing the user had is changed, and no temporary is left.

mod common;

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn with_model(args: &[&str]) -> Vec<OsString> {
    let mut a = os(args);
    a.extend(model_args());
    a
}

fn ok(args: &[OsString], dir: &Path) -> (String, String) {
    let out = run(args, dir);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "losatok {args:?}: {err}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), err)
}

/// Hidden entries (temporaries, spools) under `dir`, recursively; `.losatok-owned` and
/// `.losatok.lock` are the tool's own visible state and not counted.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    snapshot(dir)
        .into_keys()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with('.') && name != ".losatok-owned" && name != ".losatok.lock"
        })
        .collect()
}

/// A 16 kHz mono 16-bit wav of `seconds`.
fn wav_of(seconds: f64) -> Vec<u8> {
    wav_bytes(1, 1, 16_000, 16, &pcm16((seconds * 16_000.0) as usize))
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

// ---------------------------------------------------------------------------------------------
// data loss and clobbering

/// `demo --force` replaces only a demo's own output: never `.`, `/`, the home folder or a
/// folder it did not create.
#[test]
fn demo_never_replaces_what_it_did_not_make() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let home = d.join("home");
    let theirs = d.join("theirs");
    let cwd = d.join("a/work");
    std::fs::create_dir_all(&cwd).unwrap();
    for f in [&home, &theirs] {
        std::fs::create_dir_all(f).unwrap();
        std::fs::write(f.join("precious.txt"), b"mine").unwrap();
    }
    let mut r = Report::default();
    for (case, out, needle) in [
        ("the current folder", ".", "it is the current folder"),
        (
            "the current folder by path",
            cwd.to_str().unwrap(),
            "it is the current folder",
        ),
        ("the root", "/", "it is the root folder"),
        (
            "the home folder",
            home.to_str().unwrap(),
            "it is the home folder",
        ),
        (
            "a folder with other files",
            theirs.to_str().unwrap(),
            "not created by losatok",
        ),
        (
            "an ancestor of the current folder",
            d.join("a").to_str().unwrap(),
            "it contains the current folder",
        ),
        (
            "an ancestor of the home folder",
            d.to_str().unwrap(),
            "it contains the home folder",
        ),
    ] {
        let mut c = command(&os(&["demo", "--quick", "--force", "--out", out]), &cwd);
        c.env("HOME", &home);
        let before = snapshot(d);
        let o = c.output().unwrap();
        r.judge(
            &format!("demo --force --out {case}"),
            &o,
            &["refusing to replace", needle],
            &before,
            d,
        );
    }
    r.finish();
}

/// Outputs are never an input (through symbolic or hard links, with or without `--force`),
/// never a device, FIFO or folder; symbolic links to regular files are written through.
#[test]
fn outputs_never_clobber_inputs_or_special_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("in.wav"), good_wav()).unwrap();
    std::os::unix::fs::symlink("in.wav", out.join("soft.wav")).unwrap();
    std::fs::hard_link(out.join("in.wav"), out.join("hard.wav")).unwrap();
    std::os::unix::fs::symlink("/dev/null", out.join("null.wav")).unwrap();
    mkfifo(&out.join("fifo.wav"));
    let (_, _) = ok(
        &with_model(&["encode", "out/in.wav", "out/f.safetensors"]),
        d,
    );
    let mut r = Report::default();
    for force in [false, true] {
        let f = |args: &[&str]| {
            let mut a = with_model(args);
            if force {
                a.push("--force".into());
            }
            a
        };
        let cases: Vec<(&str, Vec<OsString>, &[&str])> = vec![
            (
                "reconstruct onto a symbolic link to the input",
                f(&["reconstruct", "out/in.wav", "out/soft.wav"]),
                &["out/soft.wav", "is the same file as the input"],
            ),
            (
                "reconstruct onto a hard link of the input",
                f(&["reconstruct", "out/in.wav", "out/hard.wav"]),
                &["out/hard.wav", "is the same file as the input"],
            ),
            (
                "reconstruct onto the input itself",
                f(&["reconstruct", "out/in.wav", "out/in.wav"]),
                &["is the same file as the input"],
            ),
            (
                "--save-features onto the input",
                f(&[
                    "reconstruct",
                    "out/in.wav",
                    "out/new.wav",
                    "--save-features",
                    "out/hard.wav",
                ]),
                &["is the same file as the input"],
            ),
            (
                "decode onto its own feature file",
                f(&["decode", "out/f.safetensors", "out/f.safetensors"]),
                &["is the same file as the input"],
            ),
            (
                "reconstruct onto a link to /dev/null",
                f(&["reconstruct", "out/in.wav", "out/null.wav"]),
                &["character device, not a regular file", "`-`"],
            ),
            (
                "reconstruct onto a FIFO",
                f(&["reconstruct", "out/in.wav", "out/fifo.wav"]),
                &["FIFO (named pipe), not a regular file"],
            ),
            (
                "encode onto /dev/stdout (a pipe here)",
                f(&["encode", "out/in.wav", "/dev/stdout"]),
                &["not a regular file", "`-`"],
            ),
        ];
        for (case, args, needles) in cases {
            r.expect_error(
                &format!("{case}{}", if force { " --force" } else { "" }),
                &args,
                d,
                &out,
                needles,
            );
        }
    }
    r.finish();
    assert_eq!(std::fs::read(out.join("in.wav")).unwrap(), good_wav());

    // a link to a regular file is written through, atomically, and stays a link
    std::fs::write(out.join("target.wav"), b"old").unwrap();
    std::fs::set_permissions(
        out.join("target.wav"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::os::unix::fs::symlink("target.wav", out.join("link.wav")).unwrap();
    let refused = run(
        &with_model(&["reconstruct", "out/in.wav", "out/link.wav"]),
        d,
    );
    assert!(check_error(&refused, &["already exists", "--force"], false).is_ok());
    ok(
        &with_model(&["reconstruct", "out/in.wav", "out/link.wav", "--force"]),
        d,
    );
    let link = std::fs::symlink_metadata(out.join("link.wav")).unwrap();
    assert!(link.file_type().is_symlink());
    let written = std::fs::read(out.join("target.wav")).unwrap();
    assert_eq!(&written[..4], b"RIFF");
    let mode = std::fs::metadata(out.join("target.wav"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640, "a replaced file keeps its permissions");
    // a dangling link gets its target created
    std::os::unix::fs::symlink("made.wav", out.join("dangling.wav")).unwrap();
    ok(
        &with_model(&["reconstruct", "out/in.wav", "out/dangling.wav"]),
        d,
    );
    assert_eq!(&std::fs::read(out.join("made.wav")).unwrap()[..4], b"RIFF");
    assert!(temporaries(&out).is_empty(), "{:?}", temporaries(&out));
}

/// `-` is standard input and output: pipelines give the same bytes as files, and the
/// progress line does not mix with the data.
#[test]
fn standard_streams_work_as_pipelines_expect() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("in.wav"), wav_of(3.0)).unwrap();
    ok(&with_model(&["reconstruct", "in.wav", "ref.wav"]), d);
    ok(&with_model(&["encode", "in.wav", "ref.safetensors"]), d);
    let reference = std::fs::read(d.join("ref.wav")).unwrap();

    // reconstruct in.wav -
    let (stdout, _) = {
        let o = run(&with_model(&["reconstruct", "in.wav", "-"]), d);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (o.stdout, ())
    };
    assert_eq!(stdout, reference, "reconstruct to stdout");

    // reconstruct - out.wav < in.wav, and through a shell's process substitution (a FIFO)
    let piped = |args: Vec<OsString>, input: &[u8]| {
        let mut c = command(&args, d);
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let feeder = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
        let o = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    piped(
        with_model(&["reconstruct", "-", "from-stdin.wav"]),
        &std::fs::read(d.join("in.wav")).unwrap(),
    );
    assert_eq!(std::fs::read(d.join("from-stdin.wav")).unwrap(), reference);
    let fifo = d.join("fifo.wav");
    mkfifo(&fifo);
    let writer = {
        let (fifo, bytes) = (fifo.clone(), std::fs::read(d.join("in.wav")).unwrap());
        std::thread::spawn(move || std::fs::write(fifo, bytes).unwrap())
    };
    ok(
        &with_model(&["reconstruct", "fifo.wav", "from-fifo.wav"]),
        d,
    );
    writer.join().unwrap();
    assert_eq!(std::fs::read(d.join("from-fifo.wav")).unwrap(), reference);

    // encode in.wav - | decode - out.wav
    let enc = run(&with_model(&["encode", "in.wav", "-"]), d);
    assert!(enc.status.success());
    assert_eq!(
        enc.stdout,
        std::fs::read(d.join("ref.safetensors")).unwrap(),
        "encode to stdout"
    );
    piped(with_model(&["decode", "-", "decoded.wav"]), &enc.stdout);
    ok(
        &with_model(&["decode", "ref.safetensors", "ref-decoded.wav"]),
        d,
    );
    assert_eq!(
        std::fs::read(d.join("decoded.wav")).unwrap(),
        std::fs::read(d.join("ref-decoded.wav")).unwrap()
    );
    // a bad input on stdin is named `-`
    let mut c = command(&with_model(&["reconstruct", "-", "x.wav"]), d);
    let o = c.stdin(Stdio::null()).output().unwrap();
    assert!(check_error(&o, &["-"], false).is_ok(), "{o:?}");
    assert!(!d.join("x.wav").exists());
    assert!(temporaries(d).is_empty(), "{:?}", temporaries(d));
}

/// Folder mode: an output folder inside the input folder is not read as input; the input folder
/// as output is refused; what the walk passed over (other files, linked folders, FIFOs) is
/// listed, and a FIFO never blocks the run.
#[test]
fn folder_mode_keeps_inputs_and_outputs_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let inp = d.join("in");
    std::fs::create_dir_all(inp.join("sub")).unwrap();
    std::fs::write(inp.join("a.wav"), good_wav()).unwrap();
    std::fs::write(inp.join("sub/b.wav"), good_wav()).unwrap();
    std::fs::write(inp.join("notes.txt"), b"x").unwrap();
    let elsewhere = d.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("c.wav"), good_wav()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, inp.join("linked")).unwrap();
    mkfifo(&inp.join("pipe.wav"));
    std::os::unix::fs::symlink("in", d.join("in-link")).unwrap();

    let mut r = Report::default();
    for (case, out) in [("the input folder", "in"), ("a link to it", "in-link")] {
        r.expect_error(
            &format!("reconstruct into {case}"),
            &with_model(&["reconstruct", "in", out]),
            d,
            &inp,
            &["is the input folder"],
        );
    }
    r.finish();

    // an output folder inside the input: written, and never walked as input
    let start = Instant::now();
    for _ in 0..2 {
        let (stdout, stderr) = ok(&with_model(&["reconstruct", "in", "in/out"]), d);
        assert!(stdout.contains("file(s) into in/out"), "{stdout}");
        for needle in [
            "passed over in in:",
            ".txt ×1",
            "in/linked: symbolic link to a folder (not followed)",
            "in/pipe.wav: a FIFO (named pipe), not a regular file",
        ] {
            assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "the FIFO blocked"
    );
    let outs: Vec<String> = snapshot(&inp.join("out"))
        .into_keys()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(outs, ["a.wav", "sub", "sub/b.wav"]);
    assert!(temporaries(d).is_empty());
}

// ---------------------------------------------------------------------------------------------
// interrupted jobs

/// Polls until `dir` holds one of losatok's temporaries (the job is writing), or panics.
fn wait_for_temporary(child: &mut Child, dir: &Path) {
    let t0 = Instant::now();
    loop {
        if !temporaries(dir).is_empty() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the job ended ({status}) before it wrote anything");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no temporary appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn spawn(args: &[OsString], dir: &Path, tmpdir: &Path) -> Child {
    let mut c = command(args, dir);
    c.env("TMPDIR", tmpdir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c.spawn().unwrap()
}

/// Ctrl-C, SIGTERM and SIGHUP during a long single file and during a folder run leave no
/// temporary anywhere (output folder, temporary folder); the rerun completes and equals an
/// uninterrupted run. After `kill -9` (no chance to clean up), the next run in the folder
/// removes the leftovers of its own naming, and nobody else's.
#[test]
fn interrupted_jobs_leave_nothing_and_resume_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let tmpdir = d.join("tmp");
    std::fs::create_dir_all(&tmpdir).unwrap();
    // ten minutes of audio: seconds of work for the tiny model
    std::fs::write(d.join("long.wav"), wav_of(600.0)).unwrap();
    ok(&with_model(&["reconstruct", "long.wav", "ref.wav"]), d);
    let reference = std::fs::read(d.join("ref.wav")).unwrap();

    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let out = d.join(format!("out{sig}"));
        std::fs::create_dir_all(&out).unwrap();
        let target = format!("out{sig}/long.wav");
        let args = with_model(&[
            "reconstruct",
            "long.wav",
            &target,
            "--save-features",
            &format!("out{sig}/long.safetensors"),
        ]);
        let mut child = spawn(&args, d, &tmpdir);
        wait_for_temporary(&mut child, &out);
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(sig), "ended by the signal: {status}");
        assert!(
            temporaries(&out).is_empty(),
            "{sig}: {:?}",
            temporaries(&out)
        );
        assert!(snapshot(&out).is_empty(), "{sig}: nothing published");
        assert!(temporaries(&tmpdir).is_empty(), "{sig}: spools left");
        ok(&args, d);
        assert_eq!(std::fs::read(out.join("long.wav")).unwrap(), reference);
    }

    // a folder run interrupted part-way, then rerun: the same files as an uninterrupted run
    let inp = d.join("many");
    std::fs::create_dir_all(&inp).unwrap();
    for i in 0..6 {
        std::fs::write(inp.join(format!("f{i}.wav")), wav_of(90.0)).unwrap();
    }
    ok(&with_model(&["reconstruct", "many", "many-ref"]), d);
    let mut child = spawn(
        &with_model(&["reconstruct", "many", "many-out"]),
        d,
        &tmpdir,
    );
    std::thread::sleep(Duration::from_millis(50));
    let out = d.join("many-out");
    let t0 = Instant::now();
    while !out.join("f0.wav").exists() {
        assert!(t0.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_for_temporary(&mut child, &out);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGINT));
    assert!(temporaries(&out).is_empty(), "{:?}", temporaries(&out));
    let (stdout, _) = ok(&with_model(&["reconstruct", "many", "many-out"]), d);
    assert!(stdout.contains("already done"), "{stdout}");
    // the same files with the same bytes (modification times aside)
    let contents = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        snapshot(dir)
            .into_iter()
            .map(|(k, (b, _))| (k, b))
            .collect()
    };
    assert_eq!(contents(&out), contents(&d.join("many-ref")));

    // kill -9: the temporary stays; the next run in that folder removes it, and only it
    let out = d.join("killed");
    std::fs::create_dir_all(&out).unwrap();
    for foreign in [".notes.wav.Ab12Cd.tmp", "draft.tmp", ".hidden"] {
        std::fs::write(out.join(foreign), b"not losatok's").unwrap();
    }
    let args = with_model(&["reconstruct", "long.wav", "killed/long.wav"]);
    let mut child = spawn(&args, d, &tmpdir);
    let before = temporaries(&out).len();
    let t0 = Instant::now();
    while temporaries(&out).len() == before {
        assert!(child.try_wait().unwrap().is_none(), "ended too early");
        assert!(t0.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(temporaries(&out).len(), before + 1, "kill -9 leaves it");
    let (_, stderr) = ok(&args, d);
    assert!(
        stderr.contains("removed 1 temporary file(s) left by an interrupted run"),
        "{stderr}"
    );
    for foreign in [".notes.wav.Ab12Cd.tmp", "draft.tmp", ".hidden"] {
        assert!(out.join(foreign).exists(), "{foreign} was removed");
    }
    assert_eq!(temporaries(&out).len(), before);
    assert_eq!(std::fs::read(out.join("long.wav")).unwrap(), reference);
}

// ---------------------------------------------------------------------------------------------
// run folders

/// Training data (synthetic, 13 files) and stage-1 configs of `steps` in `d`.
fn stage1_setup(d: &Path) {
    losatok_train::data::synthesize_dataset(&d.join("audio"), 20.0, 5).unwrap();
    let manifest = d.join("audio/manifest.jsonl");
    assert!(manifest.exists());
    for (name, steps, batch, lr) in [
        ("s1.yml", 4, 2, "2.0e-3"),
        ("s1-long.yml", 1_000_000, 2, "2.0e-3"),
        ("s1-batch.yml", 6, 4, "2.0e-3"),
        ("s1-lr.yml", 8, 4, "1.0e-3"),
    ] {
        std::fs::write(
            d.join(name),
            format!(
                "model: {{preset: tiny}}\nsemantic_encoder: random\n\
                 optim: {{lr: {lr}, warmup_steps: 2}}\n\
                 data: {{manifest: audio/manifest.jsonl, loader: {{segment_samples: 16000, workers: 1}}}}\n\
                 run: {{steps: {steps}, batch_size: {batch}, log_every: 1, checkpoint_every: 2, sample_every: 2}}\n"
            ),
        )
        .unwrap();
    }
}

/// One trainer per run folder: a second is refused with the holder's PID and host; the lock
/// goes with the process, even after `kill -9`.
#[test]
fn a_run_folder_has_one_trainer_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    stage1_setup(d);
    let mut first = command(&os(&["train-sembo", "s1-long.yml", "--run-dir", "run"]), d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = d.join("run/.losatok.lock");
    let t0 = Instant::now();
    while !(std::fs::read_to_string(&lock).is_ok_and(|s| !s.is_empty())
        && d.join("run/checkpoints/step-000000002").exists())
    {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first trainer stopped"
        );
        assert!(t0.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = std::fs::read(d.join("run/metrics.jsonl")).unwrap();
    for args in [
        os(&["train-sembo", "s1-long.yml", "--run-dir", "run"]),
        os(&["train-sembo", "s1-long.yml", "--run-dir", "run", "--resume"]),
    ] {
        let second = run(&args, d);
        let needles = [
            "run is in use by another process",
            &format!("PID {}", first.id()),
            " on ",
        ];
        if let Err(e) = check_error(&second, &needles, false) {
            panic!("{args:?}: {e}");
        }
    }
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first trainer was disturbed"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(std::fs::read(d.join("run/metrics.jsonl")).unwrap().len() >= before.len());
    // the lock died with its process; the run resumes (and a smaller step count ends it)
    let (stdout, _) = ok(
        &os(&["train-sembo", "s1.yml", "--run-dir", "run", "--resume"]),
        d,
    );
    assert!(stdout.contains("resumed from step"), "{stdout}");
}

/// A resume may change how training goes on (learning rate, steps), recorded; changes to what
/// the run is (batch, model, data, seed) need an explicit flag, and are recorded too. A start
/// that failed before its first checkpoint never blocks a retry. Shared files get the umask's
/// permissions, and the run writes its samples.
#[test]
fn run_folders_record_config_changes_and_allow_retries() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    stage1_setup(d);
    // a failed start (an empty manifest) leaves nothing that blocks the next one
    std::fs::write(d.join("empty.jsonl"), b"").unwrap();
    let bad = std::fs::read_to_string(d.join("s1.yml"))
        .unwrap()
        .replace("audio/manifest.jsonl", "empty.jsonl");
    std::fs::write(d.join("s1-empty.yml"), bad).unwrap();
    let o = run(&os(&["train-sembo", "s1-empty.yml", "--run-dir", "run"]), d);
    check_error(&o, &["no usable audio", "0 entries"], false).unwrap();

    // the fresh start, with the umask of the user
    let mut c = command(&os(&["train-sembo", "s1.yml", "--run-dir", "run"]), d);
    unsafe {
        c.pre_exec(|| {
            libc::umask(0o027);
            Ok(())
        });
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "config.yml",
        "model.yml",
        "metrics.jsonl",
        "semantic_encoder.safetensors",
    ] {
        let mode = std::fs::metadata(d.join("run").join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640, "{f}: {mode:o}");
    }
    // samples of the held-out clip at sample_every (2), as images, in TensorBoard and samples/
    for step in [2, 4] {
        let png = d.join(format!("run/samples/eval_clip0_sembo_{step}.png"));
        assert!(png.exists(), "{}", png.display());
    }
    let metrics = std::fs::read_to_string(d.join("run/metrics.jsonl")).unwrap();
    assert!(metrics.contains("eval/sembo_loss"), "{metrics}");

    // a fresh start into a run is refused; so is a resume that changes the batch
    let o = run(&os(&["train-sembo", "s1.yml", "--run-dir", "run"]), d);
    check_error(&o, &["already holds a training run", "--resume"], false).unwrap();
    let o = run(
        &os(&[
            "train-sembo",
            "s1-batch.yml",
            "--run-dir",
            "run",
            "--resume",
        ]),
        d,
    );
    check_error(
        &o,
        &["run.batch_size 2 → 4", "--allow-config-change"],
        false,
    )
    .unwrap();
    assert!(!d.join("run/config_changes.jsonl").exists());
    // allowed explicitly, then a learning-rate change without asking: both recorded
    let (stdout, _) = ok(
        &os(&[
            "train-sembo",
            "s1-batch.yml",
            "--run-dir",
            "run",
            "--resume",
            "--allow-config-change",
        ]),
        d,
    );
    assert!(stdout.contains("run.batch_size 2 → 4"), "{stdout}");
    let (stdout, _) = ok(
        &os(&["train-sembo", "s1-lr.yml", "--run-dir", "run", "--resume"]),
        d,
    );
    assert!(stdout.contains("optim.lr 0.002 → 0.001"), "{stdout}");
    let changes: Vec<serde_json::Value> =
        std::fs::read_to_string(d.join("run/config_changes.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["step"], 4);
    assert_eq!(changes[1]["step"], 6);
    let keys = |c: &serde_json::Value| -> Vec<String> {
        c["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["key"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(keys(&changes[0]).contains(&"run.batch_size".to_string()));
    assert!(keys(&changes[1]).contains(&"optim.lr".to_string()));
    // the run's config is now the latest one
    let cfg = std::fs::read_to_string(d.join("run/config.yml")).unwrap();
    assert!(cfg.contains("0.001"), "{cfg}");
}

// ---------------------------------------------------------------------------------------------
// hostile and absurd inputs

/// Absurd sizes, absurd headers, syntax errors, empty variables, typos, mislabelled feature
/// files: each a clear line, at once (no allocation first, no abort).
#[test]
fn hostile_inputs_are_refused_in_the_users_terms() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(d.join("in.wav"), good_wav()).unwrap();
    // the tiny config, its semantic encoder named by an absolute path
    let tiny = std::fs::read_to_string(config()).unwrap().replace(
        "semantic_encoder_path: semantic_encoder_tiny.pth",
        &format!(
            "semantic_encoder_path: {}",
            fixtures().join("semantic_encoder_tiny.pth").display()
        ),
    );
    let edited = |from: &str, to: &str| {
        assert!(tiny.contains(from), "{from}");
        tiny.replacen(from, to, 1)
    };
    let cfg = |name: &str, text: String| {
        std::fs::write(d.join(name), text).unwrap();
        name.to_string()
    };
    let depth = cfg(
        "depth.yml",
        edited("\n  depth: 2\n", "\n  depth: 100000000\n"),
    );
    let vocos = cfg(
        "vocos.yml",
        edited("{decoder_depth: 2,", "{decoder_depth: 100000000,"),
    );
    let deeper = cfg("deeper.yml", edited("\n  depth: 2\n", "\n  depth: 3\n"));
    let tab = cfg("tab.yml", edited("\n  embed_dim: 64", "\n\tembed_dim: 64"));
    let bracket = cfg(
        "bracket.yml",
        edited("patch_size: [64, 4]", "patch_size: [64, 4"),
    );
    let s1 = |model: &str| {
        format!("model: {{file: {model}}}\nsemantic_encoder: random\ndata: {{manifest: m.jsonl}}\n")
    };
    let train_absurd = cfg("train-absurd.yml", s1(&depth));
    let train_tab = cfg(
        "train-tab.yml",
        "model: {preset: tiny}\nrun:\n\tsteps: 3\n".into(),
    );
    // a WAV that says 1 Hz: 16 KB would become hours of audio
    std::fs::write(d.join("1hz.wav"), wav_bytes(1, 1, 1, 16, &pcm16(8000))).unwrap();
    // IMA ADPCM (a well-formed header, 256-byte blocks of 505 samples) with random data
    let data = noise(4096, 7);
    let mut adpcm = Vec::new();
    adpcm.extend_from_slice(b"RIFF");
    adpcm.extend_from_slice(&(4 + 28 + 8 + data.len() as u32).to_le_bytes());
    adpcm.extend_from_slice(b"WAVEfmt ");
    adpcm.extend_from_slice(&20u32.to_le_bytes());
    for v in [0x11u16, 1] {
        adpcm.extend_from_slice(&v.to_le_bytes());
    }
    for v in [16_000u32, 8_110] {
        adpcm.extend_from_slice(&v.to_le_bytes());
    }
    for v in [256u16, 4, 2, 505] {
        adpcm.extend_from_slice(&v.to_le_bytes());
    }
    adpcm.extend_from_slice(b"data");
    adpcm.extend_from_slice(&(data.len() as u32).to_le_bytes());
    adpcm.extend_from_slice(&data);
    std::fs::write(d.join("adpcm.wav"), adpcm).unwrap();
    // feature files that say they hold something else
    ok(&with_model(&["encode", "in.wav", "f.safetensors"]), d);
    let features = std::fs::read(d.join("f.safetensors")).unwrap();
    // the same file with one metadata entry changed (the header keeps its length)
    let relabel = |name: &str, key: &str, value: &str| {
        let n = u64::from_le_bytes(features[..8].try_into().unwrap()) as usize;
        let mut header: serde_json::Value = serde_json::from_slice(&features[8..8 + n]).unwrap();
        header["__metadata__"][key] = value.into();
        let mut text = header.to_string();
        assert!(text.len() <= n, "keep the header length");
        while text.len() < n {
            text.push(' ');
        }
        let mut bytes = features[..8].to_vec();
        bytes.extend_from_slice(text.as_bytes());
        bytes.extend_from_slice(&features[8 + n..]);
        std::fs::write(d.join(name), bytes).unwrap();
        name.to_string()
    };
    let wrong_format = relabel("fmt.safetensors", "format", "other-features");
    let wrong_rate = relabel("rate.safetensors", "sample_rate", "8000");
    let wrong_fps = relabel("fps.safetensors", "frame_rate", "50");

    let with_config = |args: &[&str], config: &str| {
        let mut a = os(args);
        a.extend(os(&[
            "--checkpoint",
            ckpt().to_str().unwrap(),
            "--config",
            config,
        ]));
        a
    };
    let mut r = Report::default();
    let cases: Vec<(&str, Vec<OsString>, Vec<&str>)> = vec![
        (
            "a model config with a depth of 10^8",
            with_config(&["reconstruct", "in.wav", "out/o.wav"], &depth),
            vec!["depth.yml", "parameters", "depth 100000000"],
        ),
        (
            "a model config with 10^8 Vocos blocks",
            with_config(&["reconstruct", "in.wav", "out/o.wav"], &vocos),
            vec!["decoder_depth 100000000"],
        ),
        (
            "a model config deeper than the checkpoint",
            with_config(&["reconstruct", "in.wav", "out/o.wav"], &deeper),
            vec!["2 semantic blocks (config: 3)"],
        ),
        (
            "a training config naming an absurd model",
            os(&["train-sembo", &train_absurd, "--run-dir", "out/run"]),
            vec!["parameters"],
        ),
        (
            "a tab in a model config",
            with_config(&["reconstruct", "in.wav", "out/o.wav"], &tab),
            vec!["YAML syntax error at line", "tab is used for indentation"],
        ),
        (
            "an unclosed bracket in a model config",
            with_config(&["reconstruct", "in.wav", "out/o.wav"], &bracket),
            vec!["bracket.yml", "YAML syntax error at line"],
        ),
        (
            "a tab in a training config",
            os(&["train-sembo", &train_tab, "--run-dir", "out/run"]),
            vec!["YAML syntax error at line 3", "tab"],
        ),
        (
            "a WAV at 1 Hz",
            with_model(&["reconstruct", "1hz.wav", "out/o.wav"]),
            vec!["invalid sample rate 1 Hz", "expected 1000 to 768000 Hz"],
        ),
        (
            "damaged IMA ADPCM data",
            with_model(&["reconstruct", "adpcm.wav", "out/o.wav"]),
            vec!["IMA ADPCM"],
        ),
        (
            "a feature file of another format",
            with_model(&["decode", &wrong_format, "out/o.wav"]),
            vec!["not a LoSATok feature file"],
        ),
        (
            "a feature file at another sample rate",
            with_model(&["decode", &wrong_rate, "out/o.wav"]),
            vec!["sample_rate 8000 Hz"],
        ),
        (
            "a feature file at another frame rate",
            with_model(&["decode", &wrong_fps, "out/o.wav"]),
            vec!["frame_rate 50 Hz; this model's is 25 Hz"],
        ),
        (
            "a misspelt command",
            os(&["reconstrct", "in.wav", "out/o.wav"]),
            vec![
                "unrecognized subcommand",
                "similar subcommand exists: 'reconstruct'",
            ],
        ),
        (
            "a misspelt flag",
            with_model(&["reconstruct", "in.wav", "out/o.wav", "--forse"]),
            vec!["'--forse'", "--force"],
        ),
    ];
    for (case, args, needles) in cases {
        let t0 = Instant::now();
        r.expect_error(case, &args, d, &out, &needles);
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{case}: took {:?}",
            t0.elapsed()
        );
    }
    // an empty variable is named as such
    for value in ["", "  "] {
        let mut c = command(&os(&["reconstruct", "in.wav", "out/o.wav"]), d);
        c.env("LOSATOK_CHECKPOINT", value);
        let before = snapshot(&out);
        let o = c.output().unwrap();
        r.judge(
            &format!("LOSATOK_CHECKPOINT={value:?}"),
            &o,
            &["LOSATOK_CHECKPOINT is set but empty"],
            &before,
            &out,
        );
    }
    r.finish();
    // no symphonia wording reached the user
    let o = run(&with_model(&["reconstruct", "adpcm.wav", "out/o.wav"]), d);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("adpcm (ima):") && !err.contains("audio data:"),
        "{err}"
    );

    // a feature file from another checkpoint is decoded, with a warning
    let other = relabel("other.safetensors", "checkpoint_sha256", &"0".repeat(64));
    let o = run(&with_model(&["decode", &other, "out/other.wav"]), d);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning:") && err.contains("encoded with another checkpoint"),
        "{err}"
    );
}
