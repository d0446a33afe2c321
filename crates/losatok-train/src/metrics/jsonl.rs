//! `metrics.jsonl`: one JSON object per line,
//! `{"step": 120, "time": 35.2, "wall": 1718000000.25, "loss/total": 1.5, …}`.
//!
//! * `step` is the training step, `time` the seconds of training since the run started
//!   (continued across resumes), `wall` the Unix time of the record; the metrics follow in the
//!   order they were given. Non-finite values (NaN, ±∞) are written as `null`.
//! * The file is opened in append mode, so a resumed run continues the same file, and each
//!   record is written with a single `write` call (no buffering), so it is visible to readers
//!   at once and a crash can at worst tear the last line.
//! * On resume from the checkpoint of step `s`, [`truncate_after_step`] removes the records
//!   with `step > s` written by the interrupted run after that checkpoint (and a torn last
//!   line), by rewriting the file to a temporary file and renaming it over the original.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::MetricsError;

/// File name of the metrics log inside a run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Keys present in every record; metric names may not use them.
const RESERVED: [&str; 3] = ["step", "time", "wall"];

/// Appends metrics records to a `metrics.jsonl` file.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
    start: Instant,
    /// `time` of the last record already in the file (0 for a new file).
    time_offset: f64,
    line: String,
}

/// What [`truncate_after_step`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Truncation {
    /// Lines kept.
    pub kept: usize,
    /// Lines removed (records with a larger step, plus a torn last line).
    pub removed: usize,
    /// The `time` field of the last kept record, if any.
    pub last_time: Option<f64>,
}

impl MetricsLog {
    /// Opens `<run_dir>/metrics.jsonl` for appending, creating the folder and the file as
    /// needed.
    ///
    /// With `resume_from_step = Some(s)`, records with `step > s` are removed first (see
    /// [`truncate_after_step`]). Without it, only a torn last line (one without its newline)
    /// is cut off. In both cases `time` continues from the last record left in the file.
    pub fn open(
        run_dir: impl AsRef<Path>,
        resume_from_step: Option<u64>,
    ) -> Result<Self, MetricsError> {
        let run_dir = run_dir.as_ref();
        fs::create_dir_all(run_dir).map_err(|source| MetricsError::Write {
            path: run_dir.to_path_buf(),
            source,
        })?;
        Self::open_file(run_dir.join(METRICS_FILE), resume_from_step)
    }

    /// Like [`open`](Self::open) for an explicit file path (its folder must exist).
    pub fn open_file(
        path: impl Into<PathBuf>,
        resume_from_step: Option<u64>,
    ) -> Result<Self, MetricsError> {
        let path = path.into();
        let time_offset = match resume_from_step {
            Some(step) => truncate_after_step(&path, step)?.last_time,
            None => cut_torn_tail(&path)?,
        }
        .unwrap_or(0.0);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| MetricsError::Write {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            path,
            file,
            start: Instant::now(),
            time_offset,
            line: String::new(),
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Seconds of training so far: the `time` of the last record of a resumed file plus the
    /// time since this log was opened.
    pub fn elapsed(&self) -> f64 {
        self.time_offset + self.start.elapsed().as_secs_f64()
    }

    /// Appends one record with `step`, `time`, `wall` and `metrics` (in order), and writes it
    /// out at once. Names `step`, `time` and `wall` are refused
    /// ([`MetricsError::ReservedName`]).
    pub fn log(&mut self, step: u64, metrics: &[(&str, f64)]) -> Result<(), MetricsError> {
        if let Some((name, _)) = metrics.iter().find(|(n, _)| RESERVED.contains(n)) {
            return Err(MetricsError::ReservedName {
                name: name.to_string(),
                path: self.path.clone(),
            });
        }
        let time = (self.elapsed() * 1e3).round() / 1e3;
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let wall = (wall * 1e3).round() / 1e3;
        let line = &mut self.line;
        line.clear();
        line.push_str("{\"step\":");
        line.push_str(&step.to_string());
        line.push_str(",\"time\":");
        push_number(line, time);
        line.push_str(",\"wall\":");
        push_number(line, wall);
        for (name, value) in metrics {
            line.push(',');
            push_json_string(line, name);
            line.push(':');
            push_number(line, *value);
        }
        line.push_str("}\n");
        self.file
            .write_all(line.as_bytes())
            .map_err(|source| MetricsError::Write {
                path: self.path.clone(),
                source,
            })
    }

    /// Forces the records written so far to disk (`fsync`); they are already visible to
    /// other readers without it.
    pub fn sync(&mut self) -> Result<(), MetricsError> {
        self.file.sync_data().map_err(|source| MetricsError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// Writes a JSON number; non-finite values become `null`.
fn push_number(out: &mut String, v: f64) {
    if v.is_finite() {
        // `{:?}` is the shortest representation that reads back exactly, with an exponent
        // for very small and very large magnitudes ("1e-7", "1.5e20"): all valid JSON.
        out.push_str(&format!("{v:?}"));
    } else {
        out.push_str("null");
    }
}

/// Writes a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Removes from the metrics file at `path` every record whose `step` is greater than `step`,
/// and a torn last line (one without its newline, left by a crash). Lines that are not JSON
/// objects with a numeric `step` are kept as they are.
///
/// The file is rewritten to a temporary file in the same folder, synced and renamed over the
/// original, so it is never seen half-rewritten; nothing is rewritten when nothing is removed.
/// A missing file is not an error (nothing to do).
pub fn truncate_after_step(path: impl AsRef<Path>, step: u64) -> Result<Truncation, MetricsError> {
    let path = path.as_ref();
    let read_err = |source| MetricsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let write_err = |source| MetricsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Truncation::default()),
        Err(e) => return Err(read_err(e)),
    };
    // the rewrite keeps the file's permissions
    let mut tmp =
        losatok_fs::AtomicFile::create(path, true).map_err(|e| super::fs_error(path, e))?;
    let mut out = std::io::BufWriter::new(&mut tmp);
    let mut reader = BufReader::new(file);
    let mut result = Truncation::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            // A torn last line.
            result.removed += 1;
            break;
        }
        let parsed = serde_json::from_slice::<serde_json::Value>(&buf).ok();
        let line_step = parsed.as_ref().and_then(|v| v.get("step")?.as_u64());
        if line_step.is_some_and(|s| s > step) {
            result.removed += 1;
            continue;
        }
        if let Some(t) = parsed.as_ref().and_then(|v| v.get("time")?.as_f64()) {
            result.last_time = Some(t);
        }
        result.kept += 1;
        out.write_all(&buf).map_err(write_err)?;
    }
    out.flush().map_err(write_err)?;
    drop(out);
    if result.removed > 0 {
        tmp.commit().map_err(|e| super::fs_error(path, e))?;
    }
    Ok(result)
}

/// Cuts a torn last line off the file (if it exists) and returns the `time` of its last
/// complete record.
fn cut_torn_tail(path: &Path) -> Result<Option<f64>, MetricsError> {
    let read_err = |source| MetricsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let len = file.metadata().map_err(read_err)?.len();
    // The last complete line is within the tail unless records are huge; then `time`
    // simply restarts from 0.
    const TAIL: u64 = 1 << 16;
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start)).map_err(read_err)?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).map_err(read_err)?;
    let complete = match tail.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None if start == 0 => 0,
        None => return Ok(None),
    };
    if complete < tail.len() {
        file.set_len(start + complete as u64)
            .map_err(|source| MetricsError::Write {
                path: path.to_path_buf(),
                source,
            })?;
    }
    let last_time = tail[..complete]
        .split(|&b| b == b'\n')
        .rev()
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("time")?.as_f64());
    Ok(last_time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn records(path: &Path) -> Vec<Value> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn writes_one_object_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(dir.path(), None).unwrap();
        log.log(
            1,
            &[("loss/total", 1.5), ("lr", 3e-4), ("weird \"name\"\n", 2.0)],
        )
        .unwrap();
        log.log(
            2,
            &[("loss/total", f64::NAN), ("tiny", 1e-30), ("big", 1e300)],
        )
        .unwrap();
        let recs = records(log.path());
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0]["step"], 1);
        assert_eq!(recs[0]["loss/total"], 1.5);
        assert_eq!(recs[0]["lr"], 3e-4);
        assert_eq!(recs[0]["weird \"name\"\n"], 2.0);
        assert!(recs[0]["time"].as_f64().unwrap() >= 0.0);
        assert!(recs[0]["wall"].as_f64().unwrap() > 1.6e9);
        assert!(recs[1]["loss/total"].is_null());
        // Shortest exact representations (serde_json's default parser is not exact).
        let text = fs::read_to_string(log.path()).unwrap();
        assert!(text.contains("\"tiny\":1e-30,\"big\":1e300}"), "{text}");
        // Keys keep their order: step, time, wall, then the metrics.
        assert!(text.starts_with("{\"step\":1,\"time\":"));
        assert!(matches!(
            log.log(3, &[("step", 1.0)]),
            Err(MetricsError::ReservedName { .. })
        ));
    }

    #[test]
    fn resume_truncates_later_steps_and_continues_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        let mut text = String::new();
        for s in 1..=6 {
            text.push_str(&format!(
                "{{\"step\":{s},\"time\":{}.5,\"wall\":1.0,\"x\":{s}}}\n",
                s * 10
            ));
        }
        text.push_str("not json but complete\n");
        text.push_str("{\"step\":7,\"ti"); // torn by a crash
        fs::write(&path, &text).unwrap();

        let t = truncate_after_step(&path, 4).unwrap();
        assert_eq!(t.kept, 5); // steps 1-4 and the unparseable complete line
        assert_eq!(t.removed, 3);
        assert_eq!(t.last_time, Some(40.5));
        let kept = fs::read_to_string(&path).unwrap();
        assert!(kept.ends_with("not json but complete\n"));
        assert_eq!(kept.lines().count(), 5);

        // Nothing left to remove: the file is not rewritten.
        let t = truncate_after_step(&path, 4).unwrap();
        assert_eq!(t.removed, 0);

        let mut log = MetricsLog::open(dir.path(), Some(2)).unwrap();
        assert!(log.elapsed() >= 20.5);
        log.log(3, &[("x", 33.0)]).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let steps: Vec<u64> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["step"].as_u64())
            .collect();
        assert_eq!(steps, vec![1, 2, 3]);
        assert_eq!(text.lines().count(), 4); // the unparseable line is still there
        let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert!(last["time"].as_f64().unwrap() >= 20.5);
        assert_eq!(last["x"], 33.0);
    }

    #[test]
    fn open_without_resume_appends_and_cuts_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        fs::write(
            &path,
            "{\"step\":1,\"time\":7.0,\"wall\":1.0}\n{\"step\":2,",
        )
        .unwrap();
        let mut log = MetricsLog::open(dir.path(), None).unwrap();
        assert!(log.elapsed() >= 7.0);
        log.log(2, &[("a", 1.0)]).unwrap();
        let recs = records(&path);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1]["step"], 2);
        assert_eq!(recs[1]["a"], 1.0);
    }

    #[test]
    fn missing_file_is_fine_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let t = truncate_after_step(dir.path().join("nope.jsonl"), 3).unwrap();
        assert_eq!(t, Truncation::default());
        let err = MetricsLog::open_file(dir.path().join("no/such/dir/m.jsonl"), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("m.jsonl") && !msg.contains('\n'), "{msg}");
    }
}
