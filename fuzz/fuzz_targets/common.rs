//! Shared by the fuzz targets: the readers take paths, so each input is written to one scratch
//! file per process (in /dev/shm when there is one, to stay off the disk).

use std::io::Write;
use std::path::PathBuf;

/// Writes `data` to this process's scratch file (named with `ext`) and returns its path.
pub fn scratch(data: &[u8], ext: &str) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("losatok-fuzz-{}.{ext}", std::process::id()));
    let mut f = std::fs::File::create(&path).expect("scratch file");
    f.write_all(data).expect("write scratch file");
    path
}

/// Third-party decoders whose panics the readers catch (`catch_unwind`) and report as errors:
/// symphonia (audio) and burn-store (PyTorch checkpoints). In production such a panic is one
/// error line; here it must not count as a crash. Every other panic still aborts (libFuzzer's
/// hook), and so does one of theirs that nothing catches (it cannot unwind out of the target).
pub fn tolerate_caught_third_party_panics() {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let third_party = info.location().is_some_and(|l| {
            let f = l.file();
            f.contains("/symphonia") || f.contains("/burn-store-")
        });
        if !third_party {
            abort(info);
        }
    }));
}
