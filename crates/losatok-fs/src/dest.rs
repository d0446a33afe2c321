//! Where data goes and where it comes from: standard streams, symbolic links, special files,
//! and files that must not be both input and output.

use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};

use crate::temp::TempFile;
use crate::FsError;

/// Whether `path` is `-`, which names standard input (as an input) or standard output (as an
/// output), as in most command-line tools. A file literally called `-` is `./-`.
pub fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// What a path that is neither a regular file nor a folder is, for messages.
pub fn file_kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "folder";
    }
    if t.is_file() {
        return "regular file";
    }
    if t.is_symlink() {
        return "symbolic link";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return "character device";
        }
        if t.is_block_device() {
            return "block device";
        }
        if t.is_fifo() {
            return "FIFO (named pipe)";
        }
        if t.is_socket() {
            return "socket";
        }
    }
    "special file"
}

/// `path` with every symbolic link along it followed, including a final link whose target does
/// not exist yet (so that writing "through" a dangling link creates its target). Fails on link
/// loops.
pub fn real_path(path: &Path) -> io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&p)?;
                p = if target.is_absolute() {
                    target
                } else {
                    crate::temp::parent_dir(&p).join(target)
                };
            }
            _ => return Ok(p),
        }
    }
    Err(io::Error::other("too many levels of symbolic links"))
}

/// Where an output goes, once resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Standard output (`-`).
    Stdout,
    /// A regular file: `path` is where it is written (a symbolic link's final target);
    /// `existing_mode` the permission bits of the file it replaces, if any.
    File {
        /// The file written (after following links).
        path: PathBuf,
        /// Permission bits of the existing file it replaces.
        existing_mode: Option<u32>,
    },
}

impl Target {
    /// Resolves an output path: `-` is standard output; links are followed to their final
    /// target; a folder, device, FIFO or socket is refused; an existing file is refused unless
    /// `replace`.
    pub fn resolve(path: &Path, replace: bool) -> Result<Self, FsError> {
        if is_stdio(path) {
            return Ok(Target::Stdout);
        }
        // what the kernel resolves first: `/dev/stdout` and `/proc/self/fd/N` are links whose
        // text (`pipe:[1234]`) is no path, but they do lead to the pipe
        if let Ok(m) = fs::metadata(path) {
            if !m.is_file() && !m.is_dir() {
                return Err(FsError::Special {
                    path: path.to_path_buf(),
                    kind: file_kind(&m),
                    output: true,
                });
            }
        }
        let real = real_path(path).map_err(|e| FsError::write(path, e))?;
        match fs::metadata(&real) {
            Ok(m) if m.is_dir() => Err(FsError::IsDirectory {
                path: path.to_path_buf(),
            }),
            Ok(m) if !m.is_file() => Err(FsError::Special {
                path: path.to_path_buf(),
                kind: file_kind(&m),
                output: true,
            }),
            Ok(_) if !replace => Err(FsError::Exists {
                path: path.to_path_buf(),
            }),
            Ok(m) => Ok(Target::File {
                path: real,
                existing_mode: mode_of(&m),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Target::File {
                path: real,
                existing_mode: None,
            }),
            Err(e) => Err(FsError::write(path, e)),
        }
    }
}

#[cfg(unix)]
fn mode_of(m: &Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(m.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn mode_of(_: &Metadata) -> Option<u32> {
    None
}

/// Whether two paths name the same existing file (the same device and inode, so also through
/// symbolic and hard links). `false` if either does not exist.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if is_stdio(a) || is_stdio(b) {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (fs::metadata(a), fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Refuses an output that is the input ([`FsError::SameFile`]), whatever links lead to either.
pub fn check_distinct(input: &Path, output: &Path) -> Result<(), FsError> {
    if same_file(input, output) {
        return Err(FsError::SameFile {
            input: input.to_path_buf(),
            output: output.to_path_buf(),
        });
    }
    Ok(())
}

/// Whether `inner` is `outer` or inside it, after resolving links (`false` when either cannot
/// be resolved, e.g. because it does not exist).
pub fn is_within(inner: &Path, outer: &Path) -> bool {
    match (fs::canonicalize(inner), fs::canonicalize(outer)) {
        (Ok(i), Ok(o)) => i.starts_with(o),
        _ => false,
    }
}

/// An input made readable as a regular file: a regular file as it is, or a stream (standard
/// input, a FIFO such as a shell's `<(…)`) copied to a temporary first, because audio is read
/// twice (a level scan, then encoding) and decoders seek. The temporary is removed when this is
/// dropped (or on a signal).
#[derive(Debug)]
pub struct InputSource {
    path: PathBuf,
    spool: Option<TempFile>,
}

impl InputSource {
    /// The path to read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the input was copied from a stream.
    pub fn is_spooled(&self) -> bool {
        self.spool.is_some()
    }
}

/// Opens an input: `-` (standard input) and FIFOs are copied to a temporary in the system's
/// temporary folder; regular files are used as they are; folders, devices and sockets are
/// refused ([`FsError::IsDirectory`], [`FsError::Special`]); a missing file is an error naming
/// it.
pub fn spool_input(path: &Path) -> Result<InputSource, FsError> {
    let stream: Box<dyn io::Read> = if is_stdio(path) {
        Box::new(io::stdin().lock())
    } else {
        let meta = fs::metadata(path).map_err(|e| FsError::read(path, e))?;
        if meta.is_file() {
            return Ok(InputSource {
                path: path.to_path_buf(),
                spool: None,
            });
        }
        if meta.is_dir() {
            return Err(FsError::IsDirectory {
                path: path.to_path_buf(),
            });
        }
        if !is_fifo(&meta) {
            return Err(FsError::Special {
                path: path.to_path_buf(),
                kind: file_kind(&meta),
                output: false,
            });
        }
        Box::new(fs::File::open(path).map_err(|e| FsError::read(path, e))?)
    };
    let name = if is_stdio(path) {
        "stdin".to_string()
    } else {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "input".into())
    };
    let mut spool = TempFile::new_in(&std::env::temp_dir(), &name)?;
    let mut reader = stream;
    io::copy(&mut reader, spool.file()).map_err(|e| {
        // a read error names the input; anything else is the temporary folder's
        if e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
            FsError::write(std::env::temp_dir(), e)
        } else {
            FsError::read(path, e)
        }
    })?;
    Ok(InputSource {
        path: spool.path().to_path_buf(),
        spool: Some(spool),
    })
}

#[cfg(unix)]
fn is_fifo(meta: &Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_fifo()
}

#[cfg(not(unix))]
fn is_fifo(_: &Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_links_and_refuses_what_is_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.wav");
        fs::write(&real, b"x").unwrap();
        let link = dir.path().join("link.wav");
        std::os::unix::fs::symlink("real.wav", &link).unwrap();
        assert!(matches!(
            Target::resolve(&link, false),
            Err(FsError::Exists { .. })
        ));
        match Target::resolve(&link, true).unwrap() {
            Target::File {
                path,
                existing_mode,
            } => {
                assert_eq!(path, real);
                assert!(existing_mode.is_some());
            }
            t => panic!("{t:?}"),
        }
        let dangling = dir.path().join("dangling.wav");
        std::os::unix::fs::symlink("sub/../new.wav", &dangling).unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(
            Target::resolve(&dangling, false).unwrap(),
            Target::File {
                path: dir.path().join("sub/../new.wav"),
                existing_mode: None
            }
        );
        assert_eq!(
            Target::resolve(Path::new("-"), false).unwrap(),
            Target::Stdout
        );
        assert!(matches!(
            Target::resolve(Path::new("/dev/null"), true),
            Err(FsError::Special {
                kind: "character device",
                ..
            })
        ));
        assert!(matches!(
            Target::resolve(dir.path(), true),
            Err(FsError::IsDirectory { .. })
        ));
        let a = dir.path().join("loop-a");
        std::os::unix::fs::symlink("loop-b", &a).unwrap();
        std::os::unix::fs::symlink("loop-a", dir.path().join("loop-b")).unwrap();
        assert!(Target::resolve(&a, true).is_err());
    }

    #[test]
    fn same_file_sees_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.wav");
        fs::write(&a, b"x").unwrap();
        let hard = dir.path().join("hard.wav");
        fs::hard_link(&a, &hard).unwrap();
        let soft = dir.path().join("soft.wav");
        std::os::unix::fs::symlink(&a, &soft).unwrap();
        let other = dir.path().join("b.wav");
        fs::write(&other, b"x").unwrap();
        assert!(same_file(&a, &hard) && same_file(&a, &soft) && same_file(&hard, &soft));
        assert!(!same_file(&a, &other));
        assert!(!same_file(&a, &dir.path().join("missing.wav")));
        assert!(matches!(
            check_distinct(&a, &soft),
            Err(FsError::SameFile { .. })
        ));
        assert!(is_within(&dir.path().join("."), dir.path()));
    }

    #[test]
    fn fifo_inputs_are_spooled_and_devices_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("in.wav");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::write(&fifo, b"RIFF....").unwrap())
        };
        let src = spool_input(&fifo).unwrap();
        writer.join().unwrap();
        assert!(src.is_spooled());
        assert_eq!(fs::read(src.path()).unwrap(), b"RIFF....");
        let spooled = src.path().to_path_buf();
        drop(src);
        assert!(!spooled.exists());
        assert!(matches!(
            spool_input(Path::new("/dev/zero")),
            Err(FsError::Special { output: false, .. })
        ));
        let plain = dir.path().join("plain.wav");
        fs::write(&plain, b"x").unwrap();
        let src = spool_input(&plain).unwrap();
        assert!(!src.is_spooled());
        assert_eq!(src.path(), plain);
    }
}
