//! Finding the files of a folder tree: one walker for folder mode, analysis and manifests.
//!
//! [`walk()`] lists the files under a root whose names a caller wants (audio by default, see
//! [`AUDIO_EXTENSIONS`]), sorted, and reports everything it passes over with the reason, so that
//! nothing is skipped silently:
//!
//! * hidden entries (name starting with `.`: version-control folders, macOS `._x.wav` forks,
//!   temporaries) are not entered or read;
//! * symbolic links to files are followed; links to folders are not (no cycles, no escaping
//!   the tree) and are reported; broken links are reported;
//! * devices, FIFOs and sockets are reported and never opened (opening a FIFO blocks);
//! * folders in `exclude` (e.g. an output folder inside the input folder) are not entered;
//! * files of other types are counted per extension.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::AudioError;

/// Extensions (compared without case) of the files read as audio.
pub const AUDIO_EXTENSIONS: [&str; 6] = ["wav", "wave", "flac", "ogg", "oga", "mp3"];

/// Whether `path` has one of the [`AUDIO_EXTENSIONS`].
pub fn is_audio_path(path: &Path) -> bool {
    has_extension(path, &AUDIO_EXTENSIONS)
}

/// Whether `path`'s extension is one of `extensions` (without case).
pub fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|a| a.eq_ignore_ascii_case(e)))
}

/// Why the walker passed over an entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkipReason {
    /// A symbolic link to a folder (not followed).
    LinkedFolder,
    /// A symbolic link whose target does not exist.
    BrokenLink,
    /// A device, FIFO or socket: what it is.
    Special(&'static str),
    /// A folder given in [`WalkOptions::exclude`].
    Excluded,
    /// A folder or file that could not be listed or examined.
    Unreadable(String),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::LinkedFolder => write!(f, "symbolic link to a folder (not followed)"),
            SkipReason::BrokenLink => write!(f, "broken symbolic link"),
            SkipReason::Special(kind) => write!(f, "a {kind}, not a regular file"),
            SkipReason::Excluded => write!(f, "an output folder (not read as input)"),
            SkipReason::Unreadable(why) => write!(f, "cannot be read: {why}"),
        }
    }
}

/// What [`walk()`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Walk {
    /// The wanted files, relative to the root, sorted (so the tree is listed depth-first with
    /// names in byte order at every level).
    pub files: Vec<PathBuf>,
    /// Entries passed over for a reason worth naming one by one, relative to the root.
    pub skipped: Vec<(PathBuf, SkipReason)>,
    /// Files of other types, counted by lower-case extension (`""`: none).
    pub other_files: BTreeMap<String, usize>,
    /// Hidden entries not entered or read.
    pub hidden: usize,
}

impl Walk {
    /// Files of other types, in all.
    pub fn other_count(&self) -> usize {
        self.other_files.values().sum()
    }

    /// One line about what was passed over, e.g. `12 other files (.txt ×10, .json ×2),
    /// 1 symbolic link to a folder, 3 hidden entries`; `None` if nothing was.
    pub fn skipped_summary(&self) -> Option<String> {
        let mut parts = Vec::new();
        let other = self.other_count();
        if other > 0 {
            let kinds: Vec<String> = self
                .other_files
                .iter()
                .map(|(ext, n)| {
                    if ext.is_empty() {
                        format!("no extension ×{n}")
                    } else {
                        format!(".{ext} ×{n}")
                    }
                })
                .collect();
            parts.push(format!(
                "{other} file(s) of other types ({})",
                kinds.join(", ")
            ));
        }
        if !self.skipped.is_empty() {
            parts.push(format!("{} listed below", self.skipped.len()));
        }
        if self.hidden > 0 {
            parts.push(format!("{} hidden entr(y/ies)", self.hidden));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// Options of [`walk()`].
pub struct WalkOptions<'a> {
    /// Which files are wanted (default: [`is_audio_path`]).
    pub wanted: &'a dyn Fn(&Path) -> bool,
    /// Folders not to enter (compared after resolving links).
    pub exclude: Vec<PathBuf>,
}

impl Default for WalkOptions<'_> {
    fn default() -> Self {
        Self {
            wanted: &is_audio_path,
            exclude: Vec::new(),
        }
    }
}

/// Lists the wanted files under the folder `root` (see the module documentation). Fails only if
/// `root` itself cannot be listed; unreadable subfolders are reported in [`Walk::skipped`].
pub fn walk(root: &Path, options: &WalkOptions<'_>) -> Result<Walk, AudioError> {
    let exclude: Vec<PathBuf> = options
        .exclude
        .iter()
        .filter_map(|p| fs::canonicalize(p).ok())
        .collect();
    let mut out = Walk::default();
    fs::read_dir(root).map_err(|e| AudioError::from_read(root, e))?;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).to_path_buf();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                out.skipped
                    .push((rel(&dir), SkipReason::Unreadable(e.to_string())));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    out.skipped
                        .push((rel(&dir), SkipReason::Unreadable(e.to_string())));
                    continue;
                }
            };
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                out.hidden += 1;
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                out.skipped
                    .push((rel(&path), SkipReason::Unreadable("unknown type".into())));
                continue;
            };
            if kind.is_dir() {
                let excluded = fs::canonicalize(&path).is_ok_and(|c| exclude.contains(&c));
                if excluded {
                    out.skipped.push((rel(&path), SkipReason::Excluded));
                } else {
                    stack.push(path);
                }
                continue;
            }
            let meta = if kind.is_symlink() {
                match fs::metadata(&path) {
                    Ok(m) if m.is_dir() => {
                        out.skipped.push((rel(&path), SkipReason::LinkedFolder));
                        continue;
                    }
                    Ok(m) => m,
                    Err(_) => {
                        out.skipped.push((rel(&path), SkipReason::BrokenLink));
                        continue;
                    }
                }
            } else {
                match entry.metadata() {
                    Ok(m) => m,
                    Err(e) => {
                        out.skipped
                            .push((rel(&path), SkipReason::Unreadable(e.to_string())));
                        continue;
                    }
                }
            };
            if !(options.wanted)(&path) {
                let ext = path
                    .extension()
                    .map(|e| e.to_string_lossy().to_lowercase())
                    .unwrap_or_default();
                *out.other_files.entry(ext).or_default() += 1;
                continue;
            }
            if !meta.is_file() {
                out.skipped.push((
                    rel(&path),
                    SkipReason::Special(losatok_fs::file_kind(&meta)),
                ));
                continue;
            }
            out.files.push(rel(&path));
        }
    }
    out.files.sort();
    out.skipped.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_everything_it_passes_over() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("in");
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::create_dir_all(root.join(".git")).unwrap();
        fs::create_dir_all(root.join("out")).unwrap();
        for f in [
            "a.wav",
            "b/c/x.FLAC",
            "b/notes.txt",
            "README",
            "._a.wav",
            "out/r.wav",
        ] {
            fs::write(root.join(f), b"x").unwrap();
        }
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        fs::write(elsewhere.join("e.wav"), b"x").unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("linked")).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("e.wav"), root.join("l.wav")).unwrap();
        std::os::unix::fs::symlink("missing.wav", root.join("broken.wav")).unwrap();
        let c = std::ffi::CString::new(root.join("pipe.wav").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let w = walk(
            &root,
            &WalkOptions {
                exclude: vec![root.join("out")],
                ..WalkOptions::default()
            },
        )
        .unwrap();
        let files: Vec<&str> = w.files.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(files, ["a.wav", "b/c/x.FLAC", "l.wav"]);
        let skipped: Vec<(String, SkipReason)> = w
            .skipped
            .iter()
            .map(|(p, r)| (p.display().to_string(), r.clone()))
            .collect();
        assert_eq!(
            skipped,
            [
                ("broken.wav".into(), SkipReason::BrokenLink),
                ("linked".into(), SkipReason::LinkedFolder),
                ("out".into(), SkipReason::Excluded),
                ("pipe.wav".into(), SkipReason::Special("FIFO (named pipe)")),
            ]
        );
        assert_eq!(w.other_count(), 2);
        assert_eq!(w.hidden, 2);
        let line = w.skipped_summary().unwrap();
        assert!(
            line.contains(".txt ×1") && line.contains("no extension ×1"),
            "{line}"
        );
    }
}
