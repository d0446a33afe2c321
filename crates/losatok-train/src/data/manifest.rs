//! Manifests: the list of audio files a run trains on.
//!
//! A manifest entry is `{path, duration (seconds, optional), domain (optional, default
//! "general")}`. Two text formats are read:
//!
//! * **JSONL**: one JSON object per line, e.g.
//!   `{"path": "speech/a.wav", "duration": 3.2, "domain": "speech"}`. `duration` and `domain`
//!   may be missing or `null`; other keys are ignored.
//! * **TSV**: `path<TAB>duration<TAB>domain`; trailing fields may be missing and a field may be
//!   empty. An optional header line (a first line with a field `path`) names the columns:
//!   then `path`, `duration` (or `seconds`) and `domain` may come in any order and other
//!   columns are ignored. Lines starting with `#` are comments.
//!
//! The format is chosen from the extension (`.jsonl`, `.ndjson`, `.json` → JSONL; `.tsv`,
//! `.txt` → TSV) and otherwise from the content (a first non-blank character `{` means JSONL).
//! Blank lines are skipped in both formats. Relative paths are resolved against the folder of
//! the manifest. Malformed lines are reported as `manifest:LINE: what is wrong`.
//!
//! [`build_manifest`] walks folders for audio files and writes a JSONL manifest atomically.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use losatok_audio::AudioDecoder;
use serde::Deserialize;

use super::{one_line, DataError};

/// The domain of entries that do not name one.
pub const DEFAULT_DOMAIN: &str = "general";

/// File extensions (compared without case) that [`build_manifest`] treats as audio.
pub use losatok_audio::AUDIO_EXTENSIONS;

/// One audio file of a manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct ManifestEntry {
    /// Path of the audio file (resolved against the manifest's folder when read).
    pub path: PathBuf,
    /// Duration in seconds, if known.
    pub duration: Option<f64>,
    /// Domain name (`"speech"`, `"music"`, `"general"`, ...).
    pub domain: String,
}

impl ManifestEntry {
    /// An entry with a path, an optional duration and a domain.
    pub fn new(path: impl Into<PathBuf>, duration: Option<f64>, domain: impl Into<String>) -> Self {
        ManifestEntry {
            path: path.into(),
            duration,
            domain: domain.into(),
        }
    }
}

/// The text format of a manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestFormat {
    /// One JSON object per line.
    Jsonl,
    /// Tab-separated `path, duration, domain`.
    Tsv,
}

impl ManifestFormat {
    /// Chooses the format from the file extension, or else from the first non-blank
    /// character of `text` (`{` means JSONL).
    pub fn detect(path: &Path, text: &str) -> ManifestFormat {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("jsonl" | "ndjson" | "json") => ManifestFormat::Jsonl,
            Some("tsv" | "txt") => ManifestFormat::Tsv,
            _ => {
                if text.trim_start().starts_with('{') {
                    ManifestFormat::Jsonl
                } else {
                    ManifestFormat::Tsv
                }
            }
        }
    }
}

/// Reads a manifest file (format detected with [`ManifestFormat::detect`]); relative paths
/// are resolved against its folder.
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestEntry>, DataError> {
    let bytes = fs::read(path).map_err(|source| DataError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
        DataError::Manifest {
            path: path.to_path_buf(),
            line,
            message: "the manifest is not valid UTF-8".into(),
        }
    })?;
    let format = ManifestFormat::detect(path, &text);
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parse_manifest(&text, format, &base, path)
}

/// Parses manifest text. Relative paths are joined to `base_dir`; `source` names the
/// manifest in error messages.
pub fn parse_manifest(
    text: &str,
    format: ManifestFormat,
    base_dir: &Path,
    source: &Path,
) -> Result<Vec<ManifestEntry>, DataError> {
    let err = |line: usize, message: String| DataError::Manifest {
        path: source.to_path_buf(),
        line,
        message: one_line(message),
    };
    let mut entries = Vec::new();
    let mut columns: Option<[Option<usize>; 3]> = None;
    let mut first = true;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let line = if i == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
        };
        if line.trim().is_empty() {
            continue;
        }
        let (path, duration, domain) = match format {
            ManifestFormat::Jsonl => parse_json_line(line).map_err(|m| err(line_no, m))?,
            ManifestFormat::Tsv => {
                if line.starts_with('#') {
                    continue;
                }
                let fields: Vec<&str> = line.split('\t').collect();
                if first {
                    first = false;
                    if fields.iter().any(|f| f.trim().eq_ignore_ascii_case("path")) {
                        columns = Some(header_columns(&fields));
                        continue;
                    }
                }
                parse_tsv_fields(&fields, columns).map_err(|m| err(line_no, m))?
            }
        };
        first = false;
        let path = PathBuf::from(path);
        let path = if path.is_relative() {
            base_dir.join(path)
        } else {
            path
        };
        entries.push(ManifestEntry {
            path,
            duration,
            domain: domain.unwrap_or_else(|| DEFAULT_DOMAIN.to_string()),
        });
    }
    Ok(entries)
}

#[derive(Deserialize)]
struct JsonEntry {
    path: Option<serde_json::Value>,
    #[serde(default)]
    duration: Option<serde_json::Value>,
    #[serde(default)]
    domain: Option<serde_json::Value>,
}

type Fields = (String, Option<f64>, Option<String>);

fn parse_json_line(line: &str) -> Result<Fields, String> {
    let entry: JsonEntry = match serde_json::from_str::<serde_json::Value>(line) {
        Ok(v @ serde_json::Value::Object(_)) => {
            serde_json::from_value(v).map_err(|e| format!("invalid entry: {e}"))?
        }
        Ok(_) => return Err("expected a JSON object with a \"path\" key".into()),
        Err(e) => return Err(format!("invalid JSON: {e}")),
    };
    let path = match entry.path {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s,
        Some(serde_json::Value::String(_)) => return Err("\"path\" is empty".into()),
        Some(_) => return Err("\"path\" must be a string".into()),
        None => return Err("missing \"path\"".into()),
    };
    let duration = match entry.duration {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => Some(check_duration(n.as_f64())?),
        Some(serde_json::Value::String(s)) => Some(parse_duration(&s)?),
        Some(_) => return Err("\"duration\" must be a number of seconds".into()),
    };
    let domain = match entry.domain {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => check_domain(&s)?,
        Some(_) => return Err("\"domain\" must be a string".into()),
    };
    Ok((path, duration, domain))
}

fn header_columns(fields: &[&str]) -> [Option<usize>; 3] {
    let mut cols = [None; 3];
    for (i, f) in fields.iter().enumerate() {
        let name = f.trim().to_ascii_lowercase();
        let slot = match name.as_str() {
            "path" => 0,
            "duration" | "seconds" => 1,
            "domain" => 2,
            _ => continue,
        };
        cols[slot].get_or_insert(i);
    }
    cols
}

fn parse_tsv_fields(
    fields: &[&str],
    columns: Option<[Option<usize>; 3]>,
) -> Result<Fields, String> {
    let field = |slot: usize| -> Option<&str> {
        let idx = match columns {
            Some(cols) => cols[slot]?,
            None => slot,
        };
        fields.get(idx).copied()
    };
    if columns.is_none() && fields.len() > 3 {
        return Err(format!(
            "expected at most 3 tab-separated fields (path, duration, domain), found {}",
            fields.len()
        ));
    }
    let path = field(0).unwrap_or("");
    if path.is_empty() {
        return Err("empty path".into());
    }
    let duration = match field(1).map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(parse_duration(s)?),
    };
    let domain = match field(2) {
        None => None,
        Some(s) => check_domain(s)?,
    };
    Ok((path.to_string(), duration, domain))
}

fn parse_duration(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (expected seconds)"))?;
    check_duration(Some(v))
}

fn check_duration(v: Option<f64>) -> Result<f64, String> {
    match v {
        Some(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Some(v) => Err(format!(
            "invalid duration {v} (expected a finite number of seconds >= 0)"
        )),
        None => Err("invalid duration (expected seconds)".into()),
    }
}

/// Empty domains mean "default"; control characters are rejected.
fn check_domain(s: &str) -> Result<Option<String>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.chars().any(char::is_control) {
        return Err(format!("invalid domain {s:?} (control characters)"));
    }
    Ok(Some(s.to_string()))
}

/// Writes `entries` as a JSONL manifest at `out`, atomically (temporary file in the same
/// folder, then rename). Paths under the folder of `out` are written relative to it, others
/// as given. Durations are rounded to the microsecond and omitted when unknown.
pub fn write_manifest(entries: &[ManifestEntry], out: &Path) -> Result<(), DataError> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let write_err = |source: std::io::Error| DataError::Write {
        path: out.to_path_buf(),
        source,
    };
    let abs_dir = std::path::absolute(&dir).map_err(write_err)?;
    let mut text = String::new();
    for e in entries {
        let shown = relative_to(&e.path, &abs_dir);
        let Some(path) = shown.to_str() else {
            return Err(DataError::InvalidConfig(format!(
                "path is not valid UTF-8 and cannot be written to a JSON manifest: {}",
                e.path.display()
            )));
        };
        let mut obj = serde_json::Map::new();
        obj.insert("path".into(), path.into());
        if let Some(d) = e.duration {
            if d.is_finite() {
                // Microsecond precision keeps the manifest readable.
                obj.insert("duration".into(), ((d * 1e6).round() / 1e6).into());
            }
        }
        obj.insert("domain".into(), e.domain.clone().into());
        text.push_str(&serde_json::Value::Object(obj).to_string());
        text.push('\n');
    }
    if dir.exists() && !dir.is_dir() {
        return Err(write_err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            format!("{} is not a folder", dir.display()),
        )));
    }
    losatok_fs::write_atomic(out, text.as_bytes(), true).map_err(|e| match e {
        losatok_fs::FsError::Write { source, .. } => write_err(source),
        other => DataError::Output(other),
    })
}

/// `path` relative to `dir` when it lies under it (both made absolute, not canonicalised),
/// else `path` unchanged.
fn relative_to(path: &Path, dir: &Path) -> PathBuf {
    let Ok(abs) = std::path::absolute(path) else {
        return path.to_path_buf();
    };
    let abs = normalize(&abs);
    let dir = normalize(dir);
    match abs.strip_prefix(&dir) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.to_path_buf(),
        _ => path.to_path_buf(),
    }
}

/// Removes `.` components and resolves `..` lexically.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Splits a root given as `domain=path` or `path`. The part before the first `=` is taken as
/// a domain only if it is a plain name (letters, digits, `_`, `-`, `.`).
pub fn parse_root_spec(spec: &str) -> (PathBuf, Option<String>) {
    if let Some((name, path)) = spec.split_once('=') {
        let plain = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if plain && !path.is_empty() {
            return (PathBuf::from(path), Some(name.to_string()));
        }
    }
    (PathBuf::from(spec), None)
}

/// Options of [`build_manifest`].
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Threads probing files (at least 1).
    pub threads: usize,
    /// Decode files whose header does not state a length (MP3 without a Xing/LAME tag, WAV
    /// with an open-ended data chunk, ...) to measure their duration. Otherwise their
    /// duration is left unknown.
    pub measure_unknown_durations: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(16)),
            measure_unknown_durations: true,
        }
    }
}

/// Files and seconds of one domain in a [`BuildReport`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DomainSummary {
    /// Number of files.
    pub files: usize,
    /// Total known duration in seconds.
    pub seconds: f64,
}

/// What [`build_manifest`] did.
#[derive(Clone, Debug, Default)]
pub struct BuildReport {
    /// The entries written, in manifest order.
    pub entries: Vec<ManifestEntry>,
    /// Per-domain totals.
    pub domains: BTreeMap<String, DomainSummary>,
    /// Files that could not be read, with the one-line reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl BuildReport {
    /// Total known duration in seconds.
    pub fn total_seconds(&self) -> f64 {
        self.domains.values().map(|d| d.seconds).sum()
    }
}

/// Walks `roots` recursively for audio files (extensions in [`AUDIO_EXTENSIONS`], any case),
/// probes each for its duration and writes a JSONL manifest to `out` atomically.
///
/// * The domain of a file is the one given with its root, or else the name of the first
///   folder level below the root (`root/speech/x/a.wav` → `speech`); files directly in the
///   root get [`DEFAULT_DOMAIN`]. See [`parse_root_spec`] for `domain=path` strings.
/// * Order is deterministic: roots in the given order, files sorted by path (byte order)
///   within a root. A file reached twice (overlapping roots) is listed once.
/// * Hidden files and folders (name starting with `.`) are ignored; symbolic links to files
///   are followed, links to folders are not (no cycles).
/// * Unreadable files are skipped, logged with `tracing::warn` and listed in the report.
///   Files whose header has no length are decoded to measure it (see [`BuildOptions`]).
///
/// Errors if a root cannot be read or if no readable audio file is found.
pub fn build_manifest(
    roots: &[(PathBuf, Option<String>)],
    out: &Path,
    options: &BuildOptions,
) -> Result<BuildReport, DataError> {
    let mut found: Vec<(PathBuf, String)> = Vec::new();
    let mut passed_over = Vec::new();
    let mut seen = HashSet::new();
    for (root, domain) in roots {
        if let Some(d) = domain {
            if check_domain(d).map_err(DataError::InvalidConfig)?.is_none() {
                return Err(DataError::InvalidConfig(format!(
                    "empty domain name for root {}",
                    root.display()
                )));
            }
        }
        let abs_root = std::path::absolute(root).map_err(|source| DataError::Read {
            path: root.clone(),
            source,
        })?;
        let meta = fs::metadata(&abs_root).map_err(|source| DataError::Read {
            path: root.clone(),
            source,
        })?;
        let mut files = Vec::new();
        if meta.is_dir() {
            let w = losatok_audio::walk(&abs_root, &losatok_audio::WalkOptions::default())
                .map_err(|e| DataError::Read {
                    path: root.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?;
            for (p, why) in w.skipped {
                let p = abs_root.join(p);
                tracing::warn!("skipping {}: {why}", p.display());
                passed_over.push((p, why.to_string()));
            }
            files.extend(w.files.into_iter().map(|f| abs_root.join(f)));
        } else {
            files.push(abs_root.clone());
        }
        for file in files {
            if !seen.insert(file.clone()) {
                continue;
            }
            if file.to_str().is_none() {
                let msg = format!(
                    "path is not valid UTF-8 and cannot be stored in a JSON manifest: {}",
                    file.display()
                );
                tracing::warn!("{msg}");
                passed_over.push((file, msg));
                continue;
            }
            let d = match domain {
                Some(d) => d.trim().to_string(),
                None => domain_from_layout(&abs_root, &file),
            };
            found.push((file, d));
        }
    }
    if found.is_empty() && passed_over.is_empty() {
        return Err(DataError::NoData(format!(
            "no audio files ({}) found under {}",
            AUDIO_EXTENSIONS.join(", "),
            roots
                .iter()
                .map(|(r, _)| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }

    let results = probe_all(&found, options);
    let mut report = BuildReport {
        skipped: passed_over,
        ..BuildReport::default()
    };
    for ((path, domain), result) in found.into_iter().zip(results) {
        match result {
            Ok(duration) => {
                let summary = report.domains.entry(domain.clone()).or_default();
                summary.files += 1;
                summary.seconds += duration.unwrap_or(0.0);
                report
                    .entries
                    .push(ManifestEntry::new(path, duration, domain));
            }
            Err(msg) => {
                // reported to the caller in `BuildReport::skipped`
                tracing::debug!(path = %path.display(), "skipping unreadable audio file: {msg}");
                report.skipped.push((path, msg));
            }
        }
    }
    if report.entries.is_empty() {
        return Err(DataError::NoData(format!(
            "none of the {} audio files found could be read (first error: {})",
            report.skipped.len(),
            report.skipped.first().map_or("", |(_, m)| m.as_str())
        )));
    }
    write_manifest(&report.entries, out)?;
    Ok(report)
}

/// Duration of a probed file (`None`: unknown), or the one-line error.
type ProbeResult = Result<Option<f64>, String>;

/// Probes every file on `options.threads` threads; results keep the input order.
fn probe_all(files: &[(PathBuf, String)], options: &BuildOptions) -> Vec<ProbeResult> {
    let results: Mutex<Vec<Option<ProbeResult>>> = Mutex::new(vec![None; files.len()]);
    let next = AtomicUsize::new(0);
    let threads = options.threads.clamp(1, files.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= files.len() {
                    break;
                }
                let r = probe_duration(&files[i].0, options.measure_unknown_durations);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("file was not probed".into())))
        .collect()
}

/// Duration of a file from its header, or by decoding it when the header has no length and
/// `measure` is set.
fn probe_duration(path: &Path, measure: bool) -> ProbeResult {
    let mut dec = AudioDecoder::open(path).map_err(|e| e.to_string())?;
    let info = dec.info().clone();
    match info.frames {
        Some(0) => Err(format!(
            "audio file contains no samples: {}",
            path.display()
        )),
        Some(_) => Ok(info.duration_secs()),
        None if measure => {
            while dec.next_block().map_err(|e| e.to_string())?.is_some() {}
            Ok(Some(
                dec.frames_decoded() as f64 / f64::from(info.sample_rate),
            ))
        }
        None => Ok(None),
    }
}

/// The first folder level of `file` below `root`, or [`DEFAULT_DOMAIN`].
fn domain_from_layout(root: &Path, file: &Path) -> String {
    let Ok(rel) = file.strip_prefix(root) else {
        return DEFAULT_DOMAIN.to_string();
    };
    let mut comps = rel.components();
    match (comps.next(), comps.next()) {
        (Some(Component::Normal(first)), Some(_)) => {
            let name = first.to_string_lossy().trim().to_string();
            if name.is_empty() || name.chars().any(char::is_control) {
                DEFAULT_DOMAIN.to_string()
            } else {
                name
            }
        }
        _ => DEFAULT_DOMAIN.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, format: ManifestFormat) -> Result<Vec<ManifestEntry>, DataError> {
        parse_manifest(text, format, Path::new("/base"), Path::new("m.txt"))
    }

    #[test]
    fn jsonl_entries_and_defaults() {
        let text = "{\"path\": \"a.wav\", \"duration\": 1.5, \"domain\": \"speech\"}\n\n\
                    {\"path\": \"/abs/b.flac\", \"extra\": 1}\n\
                    {\"path\": \"c.mp3\", \"duration\": null, \"domain\": null}\r\n";
        let e = parse(text, ManifestFormat::Jsonl).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0], ManifestEntry::new("/base/a.wav", Some(1.5), "speech"));
        assert_eq!(e[1], ManifestEntry::new("/abs/b.flac", None, "general"));
        assert_eq!(e[2], ManifestEntry::new("/base/c.mp3", None, "general"));
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let cases = [
            (
                "{\"path\": \"a.wav\"}\n{\"path\": 3}\n",
                2,
                "must be a string",
            ),
            ("{\"path\": \"a.wav\"}\n\n{oops\n", 3, "invalid JSON"),
            ("{\"duration\": 2}\n", 1, "missing \"path\""),
            (
                "{\"path\": \"a\", \"duration\": -1}\n",
                1,
                "invalid duration",
            ),
            (
                "{\"path\": \"a\", \"duration\": \"x\"}\n",
                1,
                "invalid duration",
            ),
            ("[1, 2]\n", 1, "expected a JSON object"),
            (
                "{\"path\": \"a\", \"domain\": 5}\n",
                1,
                "\"domain\" must be a string",
            ),
        ];
        for (text, line, what) in cases {
            let e = parse(text, ManifestFormat::Jsonl).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("m.txt:{line}: ")) && msg.contains(what),
                "{msg}"
            );
            assert!(!msg.contains('\n'));
        }
    }

    #[test]
    fn tsv_with_and_without_header() {
        let text = "a.wav\t2.0\tspeech\nb.wav\nc.wav\t\tmusic\n# comment\nd.wav\t3\n";
        let e = parse(text, ManifestFormat::Tsv).unwrap();
        assert_eq!(
            e,
            vec![
                ManifestEntry::new("/base/a.wav", Some(2.0), "speech"),
                ManifestEntry::new("/base/b.wav", None, "general"),
                ManifestEntry::new("/base/c.wav", None, "music"),
                ManifestEntry::new("/base/d.wav", Some(3.0), "general"),
            ]
        );
        let text = "domain\tpath\tduration\tnote\nspeech\tx.wav\t1.25\thello\n";
        let e = parse(text, ManifestFormat::Tsv).unwrap();
        assert_eq!(
            e,
            vec![ManifestEntry::new("/base/x.wav", Some(1.25), "speech")]
        );
        let text = "path\tduration\tdomain\n";
        assert!(parse(text, ManifestFormat::Tsv).unwrap().is_empty());
    }

    #[test]
    fn tsv_errors_name_the_line() {
        let e = parse("a.wav\t1\nb.wav\tabc\n", ManifestFormat::Tsv).unwrap_err();
        assert!(
            e.to_string().starts_with("m.txt:2: invalid duration"),
            "{e}"
        );
        let e = parse("a.wav\t1\tx\ty\n", ManifestFormat::Tsv).unwrap_err();
        assert!(
            e.to_string().starts_with("m.txt:1: expected at most 3"),
            "{e}"
        );
        let e = parse("a.wav\n\t1\n", ManifestFormat::Tsv).unwrap_err();
        assert!(e.to_string().starts_with("m.txt:2: empty path"), "{e}");
        let e = parse("a.wav\tinf\n", ManifestFormat::Tsv).unwrap_err();
        assert!(
            e.to_string().starts_with("m.txt:1: invalid duration"),
            "{e}"
        );
    }

    #[test]
    fn detection() {
        let p = Path::new;
        assert_eq!(
            ManifestFormat::detect(p("m.jsonl"), ""),
            ManifestFormat::Jsonl
        );
        assert_eq!(ManifestFormat::detect(p("m.tsv"), "{"), ManifestFormat::Tsv);
        assert_eq!(
            ManifestFormat::detect(p("m.list"), "\n  {\"path\": 1}"),
            ManifestFormat::Jsonl
        );
        assert_eq!(
            ManifestFormat::detect(p("m"), "a.wav\t1"),
            ManifestFormat::Tsv
        );
    }

    #[test]
    fn root_specs() {
        assert_eq!(
            parse_root_spec("speech=/data/libritts"),
            (PathBuf::from("/data/libritts"), Some("speech".into()))
        );
        assert_eq!(parse_root_spec("/data/x"), (PathBuf::from("/data/x"), None));
        assert_eq!(
            parse_root_spec("/data/a=b"),
            (PathBuf::from("/data/a=b"), None)
        );
    }

    #[test]
    fn layout_domains() {
        let root = Path::new("/r");
        assert_eq!(
            domain_from_layout(root, Path::new("/r/music/x/a.wav")),
            "music"
        );
        assert_eq!(domain_from_layout(root, Path::new("/r/a.wav")), "general");
    }

    #[test]
    fn relative_paths_when_under_the_manifest_folder() {
        assert_eq!(
            relative_to(Path::new("/d/x/a.wav"), Path::new("/d")),
            PathBuf::from("x/a.wav")
        );
        assert_eq!(
            relative_to(Path::new("/e/a.wav"), Path::new("/d")),
            PathBuf::from("/e/a.wav")
        );
    }
}
