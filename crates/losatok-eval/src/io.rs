//! Atomic output files: written to a temporary file next to the destination, then renamed, so
//! a failure never leaves a half-written output; existing files are replaced only on request.

use std::io::Write;
use std::path::Path;

use crate::error::EvalError;

/// Write `bytes` to `path` atomically. Without `overwrite`, an existing `path` is an error
/// ([`EvalError::OutputExists`]) and is left untouched.
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<(), EvalError> {
    let err = |e: &dyn std::fmt::Display| EvalError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if !overwrite && path.exists() {
        return Err(EvalError::OutputExists(path.to_path_buf()));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".losatok-tmp-")
        .tempfile_in(dir)
        .map_err(|e| err(&e))?;
    tmp.write_all(bytes).map_err(|e| err(&e))?;
    tmp.as_file().sync_all().map_err(|e| err(&e))?;
    if overwrite {
        tmp.persist(path).map_err(|e| err(&e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                EvalError::OutputExists(path.to_path_buf())
            } else {
                err(&e.error)
            }
        })?;
    }
    Ok(())
}
