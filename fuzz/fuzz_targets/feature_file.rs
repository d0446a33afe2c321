//! Any bytes → `FeatureFile::open`, the shape checks and frame reads: errors are fine,
//! panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(init: common::tolerate_caught_third_party_panics(), |data: &[u8]| {
    let path = common::scratch(data, "safetensors");
    let Ok(file) = losatok::FeatureFile::open(&path) else {
        return;
    };
    let _ = file.check_metadata(16_000, 25);
    let names: Vec<String> = file.names().map(String::from).collect();
    for name in names {
        let _ = file.shape(&name);
        if let Ok((t, d)) = file.frames_and_dim(&name) {
            if let Ok(all) = file.rows(&name, 0, t) {
                assert_eq!(all.len(), t * d);
            }
            let _ = file.rows(&name, t / 2, t - t / 2);
            let _ = file.rows(&name, t, 1);
            let _ = file.rows(&name, usize::MAX, 2);
            let _ = file.rows(&name, 1, usize::MAX);
        }
    }
});
