//! Temporaries: named, registered, locked, and removed on signals or by the next run.
//!
//! A temporary of this crate is a hidden file named after what it becomes,
//! `.<name>.losatok-<6 letters or digits>.tmp`, in the folder of its destination. While it
//! exists:
//!
//! * its path is in a process-wide registry, which [`cleanup_temporaries`] (called by the
//!   handler [`install_signal_cleanup`] installs) empties, removing every file;
//! * its process holds an exclusive `flock` on it, which the kernel drops when the process dies,
//!   however it dies. [`sweep_stale_temporaries`] removes files of this naming whose lock it can
//!   take: their process is gone.
//!
//! Creation and sweeping cannot race: a sweeper removes a file only while holding its lock and
//! only if the path still names the inode it locked; a creator that finds its new file already
//! locked, or unlinked by the time it holds the lock, simply takes another name.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::FsError;

/// The part of a temporary's name that marks it as ours: `.<name>.losatok-XXXXXX.tmp`.
const TAG: &str = ".losatok-";
const SUFFIX: &str = ".tmp";
const RANDOM_LEN: usize = 6;

/// Temporaries alive in this process, and whether the process is stopping.
struct Registry {
    paths: BTreeSet<PathBuf>,
    stopping: bool,
}

fn registry() -> MutexGuard<'static, Registry> {
    static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
        paths: BTreeSet::new(),
        stopping: false,
    });
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds a path the caller has created (a file or a folder) to the registry, so that
/// [`cleanup_temporaries`] removes it. Fails with [`FsError::Interrupted`] once the process is
/// stopping. [`unregister`] takes it out again.
pub fn register(path: &Path) -> Result<(), FsError> {
    let mut reg = registry();
    if reg.stopping {
        return Err(FsError::Interrupted);
    }
    reg.paths.insert(path.to_path_buf());
    Ok(())
}

/// Takes a path out of the registry (it was renamed into place or removed).
pub fn unregister(path: &Path) {
    registry().paths.remove(path);
}

/// Runs `f` (typically the rename that publishes a temporary) unless the process is stopping,
/// with the registry locked, so that a signal's cleanup either happens entirely before `f` (and
/// `f` is not run) or entirely after it.
pub fn publish<T>(
    path: &Path,
    f: impl FnOnce() -> io::Result<T>,
) -> Result<io::Result<T>, FsError> {
    let mut reg = registry();
    if reg.stopping {
        return Err(FsError::Interrupted);
    }
    let result = f();
    if result.is_ok() {
        reg.paths.remove(path);
    }
    Ok(result)
}

/// Removes every registered temporary (files, and folders with their contents) and refuses new
/// ones from now on. Returns the paths removed. For signal handlers and the like: the process
/// is expected to exit afterwards.
pub fn cleanup_temporaries() -> Vec<PathBuf> {
    let mut reg = registry();
    reg.stopping = true;
    let paths = std::mem::take(&mut reg.paths);
    let mut removed = Vec::new();
    for p in paths {
        let gone = match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&p).is_ok(),
            Ok(_) => fs::remove_file(&p).is_ok(),
            Err(_) => false,
        };
        if gone {
            removed.push(p);
        }
    }
    // keep the lock: nothing may register or publish between here and the exit
    std::mem::forget(reg);
    removed
}

/// Installs a handler for `SIGINT` (Ctrl-C), `SIGTERM` and `SIGHUP` that removes every
/// registered temporary and then ends the process as the signal would have (so the exit status
/// still says "killed by SIGINT"). Call once, early, in a program (not in a library: the
/// handler is process-wide). Unix only; elsewhere it does nothing.
pub fn install_signal_cleanup() -> Result<(), FsError> {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        use signal_hook::iterator::Signals;
        static INSTALLED: OnceLock<()> = OnceLock::new();
        if INSTALLED.get().is_some() {
            return Ok(());
        }
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
            .map_err(|e| FsError::write("signal handler", e))?;
        std::thread::Builder::new()
            .name("losatok-signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    cleanup_temporaries();
                    let _ = signal_hook::low_level::emulate_default_handler(sig);
                    // a signal whose default is to be ignored: exit anyway
                    std::process::exit(128 + sig);
                }
            })
            .map_err(|e| FsError::write("signal handler", e))?;
        let _ = INSTALLED.set(());
    }
    Ok(())
}

/// A random suffix of [`RANDOM_LEN`] letters and digits (from the standard library's randomly
/// keyed hasher, the process id and a counter: no two calls in a process give the same input).
fn random_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    let mut v = h.finish();
    (0..RANDOM_LEN)
        .map(|_| {
            let c = ALPHABET[(v % ALPHABET.len() as u64) as usize];
            v /= ALPHABET.len() as u64;
            c as char
        })
        .collect()
}

/// The name of a new temporary for a file called `name`.
fn temp_name(name: &str) -> String {
    // keep names well under the usual 255-byte limit
    let mut stem: String = name.chars().take(150).collect();
    if stem.is_empty() {
        stem.push_str("output");
    }
    format!(".{stem}{TAG}{}{SUFFIX}", random_suffix())
}

/// Whether `name` is the name of one of this crate's temporaries.
pub fn is_temporary_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_suffix(SUFFIX)) else {
        return false;
    };
    let Some(i) = rest.rfind(TAG) else {
        return false;
    };
    let random = &rest[i + TAG.len()..];
    random.len() == RANDOM_LEN && random.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether `name` is a temporary left by earlier versions of losatok, which used these names
/// (and no lock): `.losatok-spool-*`, `.losatok-*.partial`, `.losatok-*.tmp`.
fn is_legacy_temporary_name(name: &str) -> bool {
    name.starts_with(".losatok-spool-")
        || (name.starts_with(".losatok-") && (name.ends_with(".partial") || name.ends_with(SUFFIX)))
}

/// A registered, locked temporary file; removed when dropped unless [`persist`](Self::persist)ed.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// A new temporary in `dir`, named after `name` (the file it will become), with the
    /// permissions of a new regular file (`0666` less the umask).
    pub fn new_in(dir: &Path, name: &str) -> Result<Self, FsError> {
        for _ in 0..1000 {
            let path = dir.join(temp_name(name));
            let mut options = OpenOptions::new();
            options.read(true).write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o666);
            // registered before it exists, so that a signal between the two cannot leave it
            register(&path)?;
            let file = match options.open(&path) {
                Ok(f) => f,
                Err(e) => {
                    unregister(&path);
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        continue;
                    }
                    return Err(FsError::write(dir.join(name), e));
                }
            };
            match file.try_lock() {
                Ok(()) => {}
                // a sweeper took it first and will remove it: take another name
                Err(TryLockError::WouldBlock) => {
                    unregister(&path);
                    continue;
                }
                // a file system without locks: go on without (sweeping then skips nothing
                // but cannot lock either, see `sweep_stale_temporaries`)
                Err(TryLockError::Error(_)) => {}
            }
            if !same_inode(&file, &path) {
                unregister(&path);
                continue;
            }
            return Ok(Self {
                path,
                file: Some(file),
            });
        }
        Err(FsError::write(
            dir.join(name),
            io::Error::other("cannot create a temporary file (no free name)"),
        ))
    }

    /// A new temporary in the folder of `dest`, named after it.
    pub fn next_to(dest: &Path) -> Result<Self, FsError> {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::new_in(parent_dir(dest), &name)
    }

    /// The temporary's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file (read and write).
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("open until persisted or dropped")
    }

    /// The open file, shared.
    pub fn as_file(&self) -> &File {
        self.file.as_ref().expect("open until persisted or dropped")
    }

    /// Syncs the file and moves it onto `dest` (which must be in the same file system; it is,
    /// for temporaries made with [`next_to`](Self::next_to)): replacing `dest` if `replace`,
    /// otherwise failing with [`FsError::Exists`] if `dest` exists, even if it appeared a
    /// moment ago. Then syncs the folder, so the rename survives a power loss.
    pub fn persist(mut self, dest: &Path, replace: bool) -> Result<(), FsError> {
        let werr = |e| FsError::write(dest, e);
        self.as_file().sync_all().map_err(werr)?;
        let from = self.path.clone();
        let moved = publish(&from, || {
            if replace {
                fs::rename(&from, dest)
            } else {
                rename_no_replace(&from, dest)
            }
        })?;
        match moved {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(FsError::Exists {
                    path: dest.to_path_buf(),
                })
            }
            Err(e) => return Err(werr(e)),
        }
        // the lock goes with the file; the path is no longer a temporary
        self.file = None;
        self.path = PathBuf::new();
        sync_dir(parent_dir(dest));
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        let _ = fs::remove_file(&self.path);
        unregister(&self.path);
    }
}

/// Whether `path` still names the file open as `file`.
fn same_inode(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), fs::symlink_metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        path.exists()
    }
}

/// `rename(from, to)` that fails with `AlreadyExists` if `to` exists: a hard link (which never
/// replaces) and the removal of `from`; on file systems without hard links, a check and a
/// rename.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => {
            let _ = fs::remove_file(from);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(from, to)
        }
    }
}

/// The folder a file is in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Best effort: sync a folder so that a rename in it is durable.
pub fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Removes from `dir` (not its subfolders) the temporaries of this crate's naming, and of
/// earlier losatok versions, whose process is gone; returns their paths. Files of any other
/// name, and temporaries of live processes, are never touched. Unreadable folders are skipped
/// (nothing to clean there).
pub fn sweep_stale_temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let legacy = is_legacy_temporary_name(name);
        if !(is_temporary_name(name) || legacy) {
            continue;
        }
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = File::open(&path) else {
            continue;
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => continue,
            // no locks on this file system: only the lock-free legacy names are safe to judge,
            // and only when old enough that no live process can still be writing them
            Err(TryLockError::Error(_)) => {
                let old = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 24 * 3600);
                if !(legacy && old) {
                    continue;
                }
            }
        }
        if same_inode(&file, &path) && fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// Removes the temporaries of dead processes in the folders that `outputs` will be written to
/// (each output's own folder), once per folder. Returns what was removed.
pub fn sweep_for_outputs<'a>(outputs: impl IntoIterator<Item = &'a Path>) -> Vec<PathBuf> {
    let mut seen = BTreeSet::new();
    let mut removed = Vec::new();
    for o in outputs {
        let dir = parent_dir(o).to_path_buf();
        if seen.insert(dir.clone()) {
            removed.extend(sweep_stale_temporaries(&dir));
        }
    }
    removed
}

/// The registered temporaries (for tests).
pub fn registered() -> Vec<PathBuf> {
    registry().paths.iter().cloned().collect()
}

/// Creates `dir` and its missing parents with the umask's permissions (`create_dir_all`), as
/// every output folder is created.
pub fn create_dir_all(dir: &Path) -> Result<(), FsError> {
    fs::create_dir_all(dir).map_err(|e| FsError::write(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_recognised() {
        let n = temp_name("a b.wav");
        assert!(
            n.starts_with(".a b.wav.losatok-") && n.ends_with(".tmp"),
            "{n}"
        );
        assert!(is_temporary_name(&n));
        for other in [
            ".a.wav.tmp",
            "a.wav.losatok-abcdef.tmp",
            ".a.wav.losatok-abc.tmp",
            ".a.wav.losatok-abc_ef.tmp",
            ".a.wav.losatok-abcdef.tmpx",
            ".x.wav.Ab12Cd.tmp",
        ] {
            assert!(!is_temporary_name(other), "{other}");
        }
        assert!(is_legacy_temporary_name(".losatok-spool-Ab12Cd"));
        assert!(is_legacy_temporary_name(".losatok-Ab12Cd.partial"));
        assert!(!is_legacy_temporary_name(".x.wav.Ab12Cd.tmp"));
        assert_ne!(random_suffix(), random_suffix());
    }

    #[test]
    fn a_dropped_temporary_is_removed_and_unregistered() {
        let dir = tempfile::tempdir().unwrap();
        let t = TempFile::next_to(&dir.path().join("x.wav")).unwrap();
        let p = t.path().to_path_buf();
        assert!(p.exists());
        assert!(registered().contains(&p));
        drop(t);
        assert!(!p.exists());
        assert!(!registered().contains(&p));
    }

    #[test]
    fn live_temporaries_survive_a_sweep_and_dead_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let live = TempFile::next_to(&dir.path().join("a.wav")).unwrap();
        // a dead process's temporary: ours by name, no lock holder
        let dead = dir.path().join(temp_name("b.wav"));
        fs::write(&dead, b"x").unwrap();
        let legacy = dir.path().join(".losatok-spool-Xy12Zq");
        fs::write(&legacy, b"x").unwrap();
        // someone else's files, whatever they look like
        let others = [".b.wav.Ab12Cd.tmp", "notes.tmp", ".hidden"];
        for o in others {
            fs::write(dir.path().join(o), b"x").unwrap();
        }
        let removed = sweep_stale_temporaries(dir.path());
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(!dead.exists() && !legacy.exists());
        assert!(live.path().exists());
        for o in others {
            assert!(dir.path().join(o).exists(), "{o}");
        }
    }

    #[test]
    fn persist_without_replace_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.txt");
        fs::write(&dest, b"mine").unwrap();
        let mut t = TempFile::next_to(&dest).unwrap();
        std::io::Write::write_all(t.file(), b"new").unwrap();
        let tmp = t.path().to_path_buf();
        assert!(matches!(
            t.persist(&dest, false),
            Err(FsError::Exists { .. })
        ));
        assert_eq!(fs::read(&dest).unwrap(), b"mine");
        assert!(!tmp.exists(), "the temporary is removed");
        let mut t = TempFile::next_to(&dest).unwrap();
        std::io::Write::write_all(t.file(), b"new").unwrap();
        t.persist(&dest, true).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }
}
