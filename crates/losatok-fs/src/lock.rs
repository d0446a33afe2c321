//! [`DirLock`]: one process at a time in a folder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::FsError;

/// The lock file a [`DirLock`] keeps in its folder.
pub const LOCK_FILE: &str = ".losatok.lock";

/// An exclusive lock on a folder, held until dropped or until the process dies (the operating
/// system releases it then, so a crash never leaves a folder locked). The lock file,
/// [`LOCK_FILE`], says who holds it; a refused [`acquire`](Self::acquire) quotes that.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
    file: File,
}

impl Drop for DirLock {
    /// Empties the lock file (while still holding the lock), so that nobody reading it later
    /// takes a finished process for the holder.
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

impl DirLock {
    /// Locks `dir` (which must exist) for `what` (e.g. "training"), or fails with
    /// [`FsError::Locked`] naming the holder's PID, host and start time.
    pub fn acquire(dir: &Path, what: &str) -> Result<Self, FsError> {
        let path = dir.join(LOCK_FILE);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o666);
        let mut file = options.open(&path).map_err(|e| FsError::write(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(FsError::Locked {
                    path: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "a process that is starting".into()
                    } else {
                        holder.split_whitespace().collect::<Vec<_>>().join(" ")
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(FsError::write(&path, e)),
        }
        let me = format!(
            "losatok {what}, PID {} on {}, since {}\n",
            std::process::id(),
            hostname(),
            utc_now()
        );
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(me.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(|e| FsError::write(&path, e))?;
        Ok(Self { path, file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// This machine's host name (`localhost` if it cannot be read).
pub fn hostname() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; the result is NUL-terminated or full.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
            if !name.is_empty() {
                return name;
            }
        }
    }
    "localhost".to_string()
}

/// The current time as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_string(secs)
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian calendar).
fn utc_string(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil date from days since 1970-01-01 (H. Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        assert_eq!(utc_string(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_string(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_string(1_796_672_712), "2026-12-07 19:45:12 UTC");
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holder_named() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), "training").unwrap();
        let err = DirLock::acquire(dir.path(), "training").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("PID {}", std::process::id())) && text.contains(&hostname()),
            "{text}"
        );
        drop(first);
        DirLock::acquire(dir.path(), "training").unwrap();
    }
}
