//! [`OwnedDir`]: output folders that may be replaced, because we can prove we made them.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::FsError;

/// The ownership marker inside an [`OwnedDir`]: JSON naming the tool, the purpose and every
/// entry the tool created in the folder.
pub const MARKER: &str = ".losatok-owned";

/// A folder made by (or given empty to) a tool, with a marker recording what the tool put in
/// it. Replacing it removes exactly those entries, nothing a user added.
#[derive(Debug)]
pub struct OwnedDir {
    path: PathBuf,
    purpose: String,
    entries: BTreeSet<String>,
}

/// Why a folder may never be replaced: it is (or contains) the root, the home folder or the
/// current folder.
fn protected(path: &Path) -> Option<&'static str> {
    let real = fs::canonicalize(path).ok()?;
    if real.parent().is_none() {
        return Some("it is the root folder");
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .and_then(|h| fs::canonicalize(h).ok());
    if let Some(home) = home {
        if home == real {
            return Some("it is the home folder");
        }
        if home.starts_with(&real) {
            return Some("it contains the home folder");
        }
    }
    if let Ok(cwd) = std::env::current_dir().and_then(fs::canonicalize) {
        if cwd == real {
            return Some("it is the current folder");
        }
        if cwd.starts_with(&real) {
            return Some("it contains the current folder");
        }
    }
    None
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name != MARKER
        && !name.contains(['/', '\\', '\0'])
}

impl OwnedDir {
    /// Makes `path` ready for a run of `purpose` (e.g. "demo"):
    ///
    /// * missing: created, with the marker;
    /// * empty: adopted, with the marker;
    /// * marked by an earlier run of the same purpose: with `replace`, the entries it recorded
    ///   are removed (anything else in the folder stays); without, [`FsError::Exists`];
    /// * anything else: [`FsError::NotOwned`], whatever `replace` says. So are the root, the
    ///   home folder, the current folder and their ancestors, even empty.
    pub fn prepare(path: &Path, purpose: &str, replace: bool) -> Result<Self, FsError> {
        let not_owned = |reason: String| FsError::NotOwned {
            path: path.to_path_buf(),
            reason,
        };
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::temp::create_dir_all(path)?;
                return Self::adopt(path, purpose);
            }
            Err(e) => return Err(FsError::read(path, e)),
            Ok(m) if !fs::metadata(path).is_ok_and(|m| m.is_dir()) => {
                return Err(not_owned(format!(
                    "it is a {}, not a folder",
                    crate::file_kind(&m)
                )))
            }
            Ok(_) => {}
        }
        if let Some(why) = protected(path) {
            return Err(not_owned(why.into()));
        }
        let names: Vec<String> = fs::read_dir(path)
            .map_err(|e| FsError::read(path, e))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if names.is_empty() {
            return Self::adopt(path, purpose);
        }
        let marker = path.join(MARKER);
        let Ok(text) = fs::read_to_string(&marker) else {
            return Err(not_owned(
                "it is not empty and was not created by losatok".into(),
            ));
        };
        let parsed: Option<(String, BTreeSet<String>)> = (|| {
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            if v.get("tool")?.as_str()? != "losatok" {
                return None;
            }
            let purpose = v.get("purpose")?.as_str()?.to_string();
            let entries = v
                .get("entries")?
                .as_array()?
                .iter()
                .map(|e| e.as_str().map(str::to_string))
                .collect::<Option<BTreeSet<String>>>()?;
            Some((purpose, entries))
        })();
        let Some((found, entries)) = parsed else {
            return Err(not_owned(format!("its {MARKER} file is not losatok's")));
        };
        if found != purpose {
            return Err(not_owned(format!(
                "it holds the output of a losatok {found}, not of a {purpose}"
            )));
        }
        if !replace {
            return Err(FsError::Exists {
                path: path.to_path_buf(),
            });
        }
        let mut dir = Self {
            path: path.to_path_buf(),
            purpose: purpose.to_string(),
            entries,
        };
        dir.clear()?;
        Ok(dir)
    }

    /// Marks an empty folder as ours, with nothing in it yet.
    fn adopt(path: &Path, purpose: &str) -> Result<Self, FsError> {
        let dir = Self {
            path: path.to_path_buf(),
            purpose: purpose.to_string(),
            entries: BTreeSet::new(),
        };
        dir.save()?;
        Ok(dir)
    }

    /// Removes every entry this folder's marker records.
    fn clear(&mut self) -> Result<(), FsError> {
        for name in std::mem::take(&mut self.entries) {
            if !is_plain_name(&name) {
                continue;
            }
            let p = self.path.join(&name);
            let result = match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&p),
                Ok(_) => fs::remove_file(&p),
                Err(_) => Ok(()),
            };
            result.map_err(|e| FsError::write(&p, e))?;
        }
        self.save()
    }

    fn save(&self) -> Result<(), FsError> {
        let text = serde_json::json!({
            "tool": "losatok",
            "purpose": self.purpose,
            "entries": self.entries,
        });
        crate::write_atomic(
            &self.path.join(MARKER),
            format!("{text:#}\n").as_bytes(),
            true,
        )
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that the tool is about to create `name` directly in the folder (so a later
    /// replacement removes it) and returns its path. A name that already exists and was not
    /// recorded is the user's: [`FsError::NotOwned`].
    pub fn claim(&mut self, name: &str) -> Result<PathBuf, FsError> {
        let p = self.path.join(name);
        if !is_plain_name(name) {
            return Err(FsError::NotOwned {
                path: p,
                reason: "not a plain file name".into(),
            });
        }
        if self.entries.contains(name) {
            return Ok(p);
        }
        if fs::symlink_metadata(&p).is_ok() {
            return Err(FsError::NotOwned {
                path: p,
                reason: "it was not created by losatok".into(),
            });
        }
        self.entries.insert(name.to_string());
        self.save()?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_what_it_made() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("demo");
        let mut d = OwnedDir::prepare(&out, "demo", false).unwrap();
        fs::create_dir(d.claim("stage1").unwrap()).unwrap();
        fs::write(d.claim("clip.wav").unwrap(), b"x").unwrap();
        fs::write(out.join("my-notes.txt"), b"mine").unwrap();
        assert!(matches!(
            d.claim("my-notes.txt"),
            Err(FsError::NotOwned { .. })
        ));
        drop(d);
        assert!(matches!(
            OwnedDir::prepare(&out, "demo", false),
            Err(FsError::Exists { .. })
        ));
        assert!(matches!(
            OwnedDir::prepare(&out, "eval", true),
            Err(FsError::NotOwned { .. })
        ));
        OwnedDir::prepare(&out, "demo", true).unwrap();
        assert!(!out.join("stage1").exists() && !out.join("clip.wav").exists());
        assert_eq!(fs::read(out.join("my-notes.txt")).unwrap(), b"mine");
    }

    #[test]
    fn refuses_folders_it_did_not_make() {
        let root = tempfile::tempdir().unwrap();
        let theirs = root.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        fs::write(theirs.join("a.txt"), b"x").unwrap();
        for replace in [false, true] {
            let e = OwnedDir::prepare(&theirs, "demo", replace).unwrap_err();
            assert!(e.to_string().contains("not created by losatok"), "{e}");
        }
        // a forged or foreign marker is not ours either
        fs::write(theirs.join(MARKER), b"{\"tool\": \"other\"}").unwrap();
        assert!(OwnedDir::prepare(&theirs, "demo", true).is_err());
        assert!(theirs.join("a.txt").exists());
        for p in ["/", "."] {
            let e = OwnedDir::prepare(Path::new(p), "demo", true).unwrap_err();
            assert!(matches!(e, FsError::NotOwned { .. }), "{p}: {e}");
        }
        // an empty folder is adopted
        let empty = root.path().join("empty");
        fs::create_dir(&empty).unwrap();
        OwnedDir::prepare(&empty, "demo", false).unwrap();
        assert!(empty.join(MARKER).exists());
    }
}
