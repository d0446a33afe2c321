//! Any bytes → `losatok_audio::{probe, decode, load, Mono16kStream}`: errors are fine, panics
//! (and memory errors, under the sanitizer) are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

/// Inputs whose 16 kHz version would be longer than this are only decoded, not resampled
/// (at the lowest rate accepted, 1 kHz, a few kB are still seconds of audio to resample;
/// that is slow, not a bug).
const MAX_RESAMPLED: u64 = 1 << 21;

fuzz_target!(init: common::tolerate_caught_third_party_panics(), |data: &[u8]| {
    let path = common::scratch(data, "wav");
    let Ok(info) = losatok_audio::probe(&path) else {
        return;
    };
    let decoded = losatok_audio::decode(&path);
    if let Ok(d) = &decoded {
        assert_eq!(d.samples.len(), d.frames() * d.channels);
    }
    let frames = match &decoded {
        Ok(d) => d.frames() as u64,
        Err(_) => info.frames.unwrap_or(0),
    };
    let resampled = frames.saturating_mul(16_000) / u64::from(info.sample_rate.max(1));
    if resampled > MAX_RESAMPLED {
        return;
    }
    let whole = losatok_audio::load(&path);
    if let Ok(stream) = losatok_audio::Mono16kStream::open(&path) {
        let streamed = stream.read_to_end();
        // the stream gives what `load` gives, bit for bit
        if let (Ok(a), Ok(b)) = (&whole, &streamed) {
            assert_eq!(a.len(), b.len());
            assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }
});
