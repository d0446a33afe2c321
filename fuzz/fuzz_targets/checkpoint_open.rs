//! Any bytes → `TensorSource::open` and every tensor's info and data: errors are fine,
//! panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use losatok_models::checkpoint::TensorSource;

#[path = "common.rs"]
mod common;

fuzz_target!(init: common::tolerate_caught_third_party_panics(), |data: &[u8]| {
    let path = common::scratch(data, "pth");
    let Ok(source) = TensorSource::open(&path, "") else {
        return;
    };
    let keys: Vec<String> = source.keys().map(String::from).collect();
    for key in keys {
        let info = source.info(&key);
        assert!(info.is_some(), "listed key {key} has no info");
        if let (Ok(values), Some(info)) = (source.read_f32(&key), info) {
            let n: usize = info.shape.iter().product();
            assert_eq!(values.len(), n, "{key}: {} values for shape {:?}", values.len(), info.shape);
        }
    }
});
