//! The run's two logs, `metrics.jsonl` and the TensorBoard event file, stay consistent through
//! crashes and resumes: every point is on disk as soon as it is logged (so a crash loses
//! neither log's points), and a resume cuts both back to the checkpoint's step, leaving no
//! empty event files behind.

use std::path::{Path, PathBuf};

use losatok_train::metrics::{RunLogger, METRICS_FILE};

/// The event files of a run folder.
fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
        })
        .collect();
    v.sort();
    v
}

fn varint(b: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let x = b[*pos];
        *pos += 1;
        v |= u64::from(x & 0x7f) << shift;
        if x & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

/// The steps of the summary events of an event file (TFRecord framing, `Event.step` = field 2,
/// `Event.summary` = field 5).
fn summary_steps(path: &Path) -> Vec<u64> {
    let bytes = std::fs::read(path).unwrap();
    let mut steps = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let len = u64::from_le_bytes(bytes[pos..pos + 8].try_into().unwrap()) as usize;
        let event = &bytes[pos + 12..pos + 12 + len];
        pos += 12 + len + 4;
        let (mut p, mut step, mut summary) = (0, None, false);
        while p < event.len() {
            let key = varint(event, &mut p);
            match key & 7 {
                0 => {
                    let v = varint(event, &mut p);
                    if key >> 3 == 2 {
                        step = Some(v);
                    }
                }
                1 => p += 8,
                5 => p += 4,
                2 => {
                    let n = varint(event, &mut p) as usize;
                    summary |= key >> 3 == 5;
                    p += n;
                }
                w => panic!("wire type {w}"),
            }
        }
        if summary {
            steps.push(step.unwrap_or(0));
        }
    }
    steps
}

fn jsonl_steps(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join(METRICS_FILE))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn all_event_steps(dir: &Path) -> Vec<u64> {
    event_files(dir)
        .iter()
        .flat_map(|f| summary_steps(f))
        .collect()
}

#[test]
fn both_logs_survive_crashes_and_are_cut_back_together() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut log = RunLogger::open(dir, None).unwrap();
    for step in 1..=10 {
        log.log_scalars(step, &[("loss", step as f64)]).unwrap();
        // on disk at once, in both logs, while the logger lives
        let want: Vec<u64> = (1..=step).collect();
        assert_eq!(jsonl_steps(dir), want);
        assert_eq!(all_event_steps(dir), want);
    }
    // a crash: no flush, no drop
    std::mem::forget(log);

    // resumed from the checkpoint of step 6: both logs end at step 6, in one event file
    let mut log = RunLogger::open(dir, Some(6)).unwrap();
    let want: Vec<u64> = (1..=6).collect();
    assert_eq!(jsonl_steps(dir), want);
    assert_eq!(all_event_steps(dir), want);
    assert_eq!(event_files(dir).len(), 1);
    log.log_scalars(7, &[("loss", 7.0)]).unwrap();
    drop(log);
    let want: Vec<u64> = (1..=7).collect();
    assert_eq!(jsonl_steps(dir), want);
    assert_eq!(all_event_steps(dir), want);

    // resuming from the same checkpoint again changes nothing before it, adds no file
    drop(RunLogger::open(dir, Some(7)).unwrap());
    assert_eq!(event_files(dir).len(), 1);
    assert_eq!(all_event_steps(dir), want);

    // a new start over an attempt that never checkpointed: nothing of it is kept, and there
    // is one (fresh) event file, not a trail of empty ones
    for _ in 0..3 {
        drop(RunLogger::open(dir, Some(0)).unwrap());
    }
    assert!(jsonl_steps(dir).is_empty());
    assert!(all_event_steps(dir).is_empty());
    assert_eq!(event_files(dir).len(), 1, "{:?}", event_files(dir));

    // a torn tail (a crash in the middle of a record) is cut off too
    let mut log = RunLogger::open(dir, Some(0)).unwrap();
    log.log_scalars(1, &[("loss", 1.0)]).unwrap();
    log.log_scalars(2, &[("loss", 2.0)]).unwrap();
    drop(log);
    let file = &event_files(dir)[0];
    let bytes = std::fs::read(file).unwrap();
    std::fs::write(file, &bytes[..bytes.len() - 3]).unwrap();
    drop(RunLogger::open(dir, Some(5)).unwrap());
    assert_eq!(all_event_steps(dir), [1]);
}
