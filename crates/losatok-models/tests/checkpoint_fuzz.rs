//! Regression tests for what fuzzing the checkpoint reader found (`fuzz/`, target
//! `checkpoint_open`), and for the guards added with them. Every case must be an error that
//! names the file, never a panic or an abort.
//!
//! * A pickle whose string opcode announces 2.7 GB (`X` = BINUNICODE with length 0xa3000016,
//!   found by the fuzzer): the third-party reader allocated the announced length before reading,
//!   so larger values aborted the process ("memory allocation failed"). The pickles are now
//!   walked first and every length checked against the data.
//! * The same in `data.pkl` inside a well-formed zip (valid CRCs).
//! * A tensor whose shape (in a well-formed pickle) needs more bytes than the file holds: the
//!   reader would allocate it when the data is read.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use losatok_models::checkpoint::{CheckpointError, TensorSource};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/model/losatok_tiny.pth")
}

fn format_error(path: &Path, needle: &str) {
    match TensorSource::open(path, "") {
        Err(e @ CheckpointError::Format { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "{msg}");
            assert!(
                msg.contains(&path.display().to_string()) && !msg.contains('\n'),
                "{msg}"
            );
        }
        Err(e) => panic!("unexpected error kind: {e}"),
        Ok(_) => panic!("{} opened", path.display()),
    }
}

/// The minimised fuzzer input: a plain pickle (`\x80\x02 }`, then a 2.7 GB BINUNICODE).
#[test]
fn huge_string_lengths_in_a_plain_pickle_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<u8>); 4] = [
        ("binunicode", b"\x80\x02}q\x00X\x16\x00\x00\xa3abc".to_vec()),
        (
            "binunicode8",
            [
                b"\x80\x04\x8d".as_slice(),
                &(1u64 << 62).to_le_bytes(),
                b"abc",
            ]
            .concat(),
        ),
        (
            "binbytes8",
            [b"\x80\x04\x8e".as_slice(), &u64::MAX.to_le_bytes(), b"abc"].concat(),
        ),
        ("no stop", b"\x80\x02}q\x00N0N0N0".to_vec()),
    ];
    for (name, bytes) in cases {
        let p = dir.path().join(format!("{name}.pth"));
        std::fs::write(&p, bytes).unwrap();
        format_error(&p, "corrupt pickle");
    }
}

/// `losatok_tiny.pth` rewritten with `edit` applied to its `data.pkl` (CRCs recomputed).
fn rezip(edit: impl Fn(&mut Vec<u8>), out: &Path) {
    let mut src = zip::ZipArchive::new(std::fs::File::open(fixture()).unwrap()).unwrap();
    let mut w = zip::ZipWriter::new(std::fs::File::create(out).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..src.len() {
        let mut entry = src.by_index(i).unwrap();
        if entry.name().ends_with("data.pkl") {
            let name = entry.name().to_string();
            let mut pkl = Vec::new();
            entry.read_to_end(&mut pkl).unwrap();
            edit(&mut pkl);
            w.start_file(name, opts).unwrap();
            w.write_all(&pkl).unwrap();
        } else {
            w.raw_copy_file(entry).unwrap();
        }
    }
    w.finish().unwrap();
}

fn replace(hay: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let i = hay
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern in data.pkl");
    hay[i..i + to.len()].copy_from_slice(to);
}

#[test]
fn a_huge_string_length_inside_a_valid_zip_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.pth");
    // the length of the first key string (63 bytes) becomes 0xa300003f
    rezip(
        |pkl| replace(pkl, b"X?\x00\x00\x00dasheng", b"X?\x00\x00\xa3dasheng"),
        &p,
    );
    format_error(&p, "corrupt pickle");
    // the untouched rewrite opens (the rewriting itself is sound)
    let ok = dir.path().join("same.pth");
    rezip(|_| {}, &ok);
    assert!(TensorSource::open(&ok, "").is_ok());
}

#[test]
fn a_shape_larger_than_the_file_is_an_error_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("shape.pth");
    // mel_scale.fb [513, 128] → [65535, 255]: 67 MB in a 1.6 MB file
    rezip(
        |pkl| replace(pkl, b"M\x01\x02K\x80\x86", b"M\xff\xffK\xff\x86"),
        &p,
    );
    let key = "dasheng_tokenizer.encoder.front_end.mel_spec.mel_scale.fb";
    // the pickle is well formed, so the file opens; reading the tensor is refused
    let src = TensorSource::open(&p, "").unwrap();
    assert_eq!(src.info(key).unwrap().shape, [65535, 255]);
    let e = src.read_f32(key).unwrap_err();
    assert!(e.contains("more bytes than the file holds"), "{e}");
}
