//! How LoSATok writes files without ever losing a user's data.
//!
//! Every file the project writes goes through this crate, so the rules below hold everywhere
//! (audio, feature files, checkpoints, exports, manifests, logs):
//!
//! * **Atomic outputs** ([`AtomicFile`], [`write_atomic`]): data goes to a hidden temporary file
//!   next to the destination, which is synced and renamed onto it only when complete. A failure,
//!   a panic or a signal leaves the destination as it was. Without permission to replace, an
//!   existing destination is never touched, even one that appears while the file is written.
//! * **Deliberate destinations** ([`Target::resolve`]): `-` is standard output; a symbolic link
//!   to a regular file is written through, atomically, at the link's target (the link stays a
//!   link); devices, FIFOs and sockets are refused; a folder is refused. A replaced file keeps its
//!   permissions; a new one gets `0666` less the umask.
//! * **Temporaries that do not outlive their process** ([`temp`]): every temporary is
//!   registered while it exists; [`install_signal_cleanup`] removes them on `SIGINT`, `SIGTERM`
//!   and `SIGHUP`; each holds a lock, so [`sweep_stale_temporaries`] can tell the leftovers of a
//!   process killed outright (`kill -9`, power loss) from the temporaries of a live one, and
//!   removes only files of this crate's own naming.
//! * **Inputs are never outputs** ([`same_file`], [`check_distinct`]): also through symbolic
//!   and hard links.
//! * **Only what we made is removed** ([`OwnedDir`]): a folder is replaced only if it carries
//!   this crate's ownership marker, and then only the entries recorded in it; the file-system
//!   root, the home folder and the current folder (and their ancestors) never.
//! * **One writer per run folder** ([`DirLock`]): an exclusive lock that the operating system
//!   releases when the process dies, naming its holder (PID, host) when refused.
//!
//! # Why not existing crates
//! `tempfile` creates and renames temporaries well, but it keeps no process-wide record of them
//! (so a signal handler cannot remove them), its names do not mark a file as ours, and it does
//! not lock them (so a later run cannot tell a dead process's leftovers from a live one's); it
//! also replaces symbolic links and special files instead of writing through or refusing.
//! `atomicwrites` has the same gaps. `fd-lock` and `fs4` give the lock but not the holder's
//! identity; the standard library's `File::try_lock` does the locking here.

mod atomic;
mod dest;
mod lock;
mod owned;
pub mod temp;

use std::path::PathBuf;

pub use atomic::{write_atomic, AtomicFile};
pub use dest::{
    check_distinct, file_kind, is_stdio, is_within, real_path, same_file, spool_input, InputSource,
    Target,
};
pub use lock::{hostname, DirLock, LOCK_FILE};
pub use owned::{OwnedDir, MARKER};
pub use temp::{install_signal_cleanup, sweep_stale_temporaries, TempFile};

/// What can go wrong. Every variant displays as one line naming the path concerned, in the
/// terms of a library user (no command-line flags).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// A file or folder could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file or folder could not be created or written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The destination.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The destination exists and replacing it was not allowed.
    #[error("{} already exists", .path.display())]
    Exists {
        /// The destination.
        path: PathBuf,
    },
    /// A file was expected and a folder found.
    #[error("{} is a folder, not a file", .path.display())]
    IsDirectory {
        /// The path.
        path: PathBuf,
    },
    /// The destination (or input) is a device, FIFO or socket.
    #[error("{} is a {kind}, not a regular file{}", .path.display(), if *.output { " (write to `-` for standard output)" } else { "" })]
    Special {
        /// The path.
        path: PathBuf,
        /// What it is ("character device", "FIFO", …).
        kind: &'static str,
        /// Whether it was asked for as an output.
        output: bool,
    },
    /// An output would overwrite an input.
    #[error("{} is the same file as the input {}", .output.display(), .input.display())]
    SameFile {
        /// The input.
        input: PathBuf,
        /// The output.
        output: PathBuf,
    },
    /// Another process holds the folder's lock.
    #[error("{} is in use by another process ({holder})", .path.display())]
    Locked {
        /// The folder.
        path: PathBuf,
        /// Who holds it: "losatok, PID 1234 on host-a, since 2026-12-07 18:45:12 UTC".
        holder: String,
    },
    /// A folder may not be replaced or removed.
    #[error("refusing to replace {}: {reason}", .path.display())]
    NotOwned {
        /// The folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The process is being stopped by a signal; nothing more is written.
    #[error("interrupted")]
    Interrupted,
}

impl FsError {
    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FsError::Read {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FsError::Write {
            path: path.into(),
            source,
        }
    }

    /// The path the error is about, if any.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            FsError::Read { path, .. }
            | FsError::Write { path, .. }
            | FsError::Exists { path }
            | FsError::IsDirectory { path }
            | FsError::Special { path, .. }
            | FsError::Locked { path, .. }
            | FsError::NotOwned { path, .. } => Some(path),
            FsError::SameFile { output, .. } => Some(output),
            FsError::Interrupted => None,
        }
    }
}
