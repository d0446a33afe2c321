//! Output files, through the project's one atomic writer ([`losatok::fs::write_atomic`]): a
//! failure never leaves a half-written output; existing files are replaced only on request.

use std::path::Path;

use losatok::fs::FsError;

use crate::error::EvalError;

/// Write `bytes` to `path` atomically. Without `overwrite`, an existing `path` is an error
/// ([`EvalError::OutputExists`]) and is left untouched.
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<(), EvalError> {
    losatok::fs::write_atomic(path, bytes, overwrite).map_err(|e| match e {
        FsError::Exists { .. } => EvalError::OutputExists(path.to_path_buf()),
        FsError::Write { source, .. } => EvalError::Write {
            path: path.to_path_buf(),
            message: source.to_string(),
        },
        other => EvalError::Write {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    })
}
