//! [`AtomicFile`]: an output that appears complete or not at all.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::dest::Target;
use crate::temp::TempFile;
use crate::FsError;

/// An output file written through a temporary (see the [crate documentation](crate)).
///
/// ```no_run
/// use std::io::Write;
/// let mut f = losatok_fs::AtomicFile::create("out.txt".as_ref(), false)?;
/// f.write_all(b"complete or nothing")?;
/// f.commit()?; // only now does out.txt appear
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AtomicFile {
    /// The destination as given (for messages).
    dest: PathBuf,
    target: Target,
    replace: bool,
    tmp: TempFile,
}

impl AtomicFile {
    /// Starts writing `dest` (`-`: standard output). Fails at once if `dest` is a folder, a
    /// device, a FIFO or a socket, or exists and `replace` is false. Standard output receives
    /// the data at [`commit`](Self::commit) (it is gathered in a temporary first, so a failed
    /// job writes nothing to a pipe either).
    pub fn create(dest: &Path, replace: bool) -> Result<Self, FsError> {
        let target = Target::resolve(dest, replace)?;
        let tmp = match &target {
            Target::Stdout => TempFile::new_in(&std::env::temp_dir(), "stdout")?,
            Target::File { path, .. } => TempFile::next_to(path)?,
        };
        Ok(Self {
            dest: dest.to_path_buf(),
            target,
            replace,
            tmp,
        })
    }

    /// The destination as given.
    pub fn path(&self) -> &Path {
        &self.dest
    }

    /// Whether the destination is standard output.
    pub fn is_stdout(&self) -> bool {
        self.target == Target::Stdout
    }

    /// The temporary, open for reading and writing.
    pub fn file(&mut self) -> &mut File {
        self.tmp.file()
    }

    /// Syncs the data and publishes it: renames the temporary onto the destination (replacing
    /// it only if allowed when created; a file that appeared meanwhile is never replaced
    /// without permission), keeping a replaced file's permissions; or copies it to standard
    /// output.
    pub fn commit(mut self) -> Result<(), FsError> {
        let werr = |e| FsError::write(&self.dest, e);
        self.tmp.file().flush().map_err(werr)?;
        match &self.target {
            Target::Stdout => {
                let f = self.tmp.file();
                f.seek(SeekFrom::Start(0)).map_err(werr)?;
                let mut out = io::stdout().lock();
                copy_all(f, &mut out).map_err(werr)?;
                out.flush().map_err(werr)?;
                Ok(())
            }
            Target::File {
                path,
                existing_mode,
            } => {
                #[cfg(unix)]
                if let Some(mode) = existing_mode {
                    use std::os::unix::fs::PermissionsExt;
                    self.tmp
                        .as_file()
                        .set_permissions(std::fs::Permissions::from_mode(*mode))
                        .map_err(werr)?;
                }
                #[cfg(not(unix))]
                let _ = existing_mode;
                let path = path.clone();
                self.tmp.persist(&path, self.replace).map_err(|e| match e {
                    // name the destination as the caller gave it
                    FsError::Exists { .. } => FsError::Exists {
                        path: self.dest.clone(),
                    },
                    FsError::Write { source, .. } => FsError::write(&self.dest, source),
                    e => e,
                })
            }
        }
    }
}

fn copy_all(from: &mut File, to: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.file().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.tmp.file().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.file().flush()
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.tmp.file().seek(pos)
    }
}

/// Writes `bytes` to `path` atomically (see [`AtomicFile`]), creating missing parent folders.
pub fn write_atomic(path: &Path, bytes: &[u8], replace: bool) -> Result<(), FsError> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !crate::is_stdio(path) {
            crate::temp::create_dir_all(dir)?;
        }
    }
    let mut f = AtomicFile::create(path, replace)?;
    f.write_all(bytes).map_err(|e| FsError::write(path, e))?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_through_links_keeps_modes_and_leaves_nothing_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.txt");
        fs::write(&real, b"old").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink("real.txt", &link).unwrap();
        write_atomic(&link, b"new", true).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o640
        );
        // dropped without commit: nothing changes, no temporary remains
        let mut f = AtomicFile::create(&real, true).unwrap();
        f.write_all(b"half").unwrap();
        drop(f);
        assert_eq!(fs::read(&real).unwrap(), b"new");
        assert_eq!(entries(dir.path()), ["link.txt", "real.txt"]);
    }

    #[test]
    fn new_files_get_the_umask_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("shared.yml");
        write_atomic(&p, b"a: 1\n", false).unwrap();
        // the process's umask, read without changing it (Linux)
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let umask = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|m| u32::from_str_radix(m.trim(), 8).unwrap())
            .unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o666 & !umask
        );
        assert!(matches!(
            write_atomic(&p, b"b", false),
            Err(FsError::Exists { .. })
        ));
    }
}
