//! Inputs found by fuzzing the readers (`fuzz/`, target `audio_decode`; see the README's
//! "Fuzzing" section). Each must give a result or a one-line error naming the file, never a
//! panic, in debug builds (overflow checks on) as in release builds.

use std::path::{Path, PathBuf};

use losatok_audio::{decode, load, probe, Mono16kStream};

fn input(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(name)
}

/// A mutated MS-ADPCM wav on which symphonia's decoder multiplies with overflow
/// (`codec_ms.rs`: `MS_ADAPTATION_TABLE[nibble] * delta`). With overflow checks that is a
/// panic, which the reader catches and reports as a corrupt file; without, the samples wrap.
#[test]
fn ms_adpcm_decoder_overflow() {
    let p = input("ms_adpcm_overflow.wav");
    assert!(probe(&p).is_ok());
    let results = [
        decode(&p).map(|_| ()),
        load(&p).map(|_| ()),
        Mono16kStream::open(&p)
            .and_then(|s| s.read_to_end())
            .map(|_| ()),
    ];
    for r in results {
        if let Err(e) = r {
            let msg = e.to_string();
            eprintln!("{msg}");
            assert!(
                msg.contains("ms_adpcm_overflow.wav") && !msg.contains('\n'),
                "{msg}"
            );
        }
    }
}

/// A 13 kB FLAC file whose comment block claims a 3.3 GB comment: symphonia allocates the
/// comment's buffer before reading it (an out-of-memory under the fuzzer's 2 GB limit). The
/// length fields are checked first and the file is reported as damaged, at no cost in memory.
#[test]
fn flac_comment_longer_than_its_block() {
    let p = input("flac_comment_3gb.flac");
    for r in [
        probe(&p).map(|_| ()),
        decode(&p).map(|_| ()),
        load(&p).map(|_| ()),
        Mono16kStream::open(&p).map(|_| ()),
    ] {
        let msg = r.unwrap_err().to_string();
        assert!(
            msg.contains("flac_comment_3gb.flac") && msg.contains("damaged FLAC comment block"),
            "{msg}"
        );
    }
}
