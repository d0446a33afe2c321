//! Bad input to every command of the `losatok` binary: each case must exit non-zero with
//! exactly one `error: …` line on stderr (no panic, no backtrace, no "internal error"), and
//! leave no output behind: nothing new in the output folder (no temporary files either), and a
//! pre-existing output byte-for-byte and mtime-for-mtime unchanged. Folder mode must report
//! every failure and carry on with the good files.
//!
//! The bad files are generated here (in temporary folders). Cases are tables; every failing
//! case of a table is reported, not only the first.
//!
//! A device as the output (`/dev/full`, directly and through symbolic links in the temporary
//! folder, so that a regression could never replace the device itself) is refused with and
//! without `--force`: outputs are regular files or standard output (`-`). A full disk is
//! simulated by a file-size limit (`RLIMIT_FSIZE`, with `SIGXFSZ` ignored) that makes writes
//! fail part-way, as a full disk does. A tiny tmpfs would need mount privileges, which tests
//! do not assume.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use common::*;

/// What a bad input is: bytes to write, or a special kind of path.
enum Input {
    Bytes(Vec<u8>),
    Missing,
    Directory,
}

/// The bad audio files: (case, file name, content, what the error must mention).
fn bad_audio() -> Vec<(&'static str, &'static str, Input, &'static str)> {
    let good = good_wav();
    let mut riffx = good.clone();
    riffx[..4].copy_from_slice(b"RIFX");
    let mut wrong = good.clone();
    wrong[..4].copy_from_slice(b"XXXX");
    vec![
        (
            "missing file",
            "missing.wav",
            Input::Missing,
            "No such file",
        ),
        ("directory", "dir.wav", Input::Directory, "directory"),
        ("empty file", "empty.wav", Input::Bytes(Vec::new()), "empty"),
        (
            "truncated wav data",
            "trunc.wav",
            Input::Bytes(good[..5000].to_vec()),
            "truncated",
        ),
        (
            "truncated wav header",
            "trunchead.wav",
            Input::Bytes(good[..30].to_vec()),
            "truncated",
        ),
        (
            "wrong magic (RIFX)",
            "rifx.wav",
            Input::Bytes(riffx),
            "not supported",
        ),
        (
            "wrong magic (XXXX)",
            "xxxx.wav",
            Input::Bytes(wrong),
            "not a WAV",
        ),
        (
            "random bytes",
            "random.wav",
            Input::Bytes(noise(5000, 1)),
            "unrecognised",
        ),
        (
            "text file",
            "notes.wav",
            Input::Bytes(b"just some text\n".repeat(50)),
            "unrecognised",
        ),
        (
            "zero samples",
            "zero.wav",
            Input::Bytes(wav_bytes(1, 1, 16_000, 16, &[])),
            "no samples",
        ),
        (
            "400 samples (< 513)",
            "short.wav",
            Input::Bytes(wav_bytes(1, 1, 16_000, 16, &pcm16(400))),
            "513",
        ),
        (
            "NaN sample",
            "nan.wav",
            Input::Bytes(wav_bytes(3, 1, 16_000, 32, &f32_with(f32::NAN))),
            "non-finite",
        ),
        (
            "+Inf sample",
            "inf.wav",
            Input::Bytes(wav_bytes(3, 1, 16_000, 32, &f32_with(f32::INFINITY))),
            "non-finite",
        ),
        (
            "-Inf sample",
            "ninf.wav",
            Input::Bytes(wav_bytes(3, 1, 16_000, 32, &f32_with(f32::NEG_INFINITY))),
            "non-finite",
        ),
        (
            "sample rate 0",
            "rate0.wav",
            Input::Bytes(wav_bytes(1, 1, 0, 16, &pcm16(16_000))),
            "sample rate 0",
        ),
        (
            "sample rate 10^9",
            "rate1e9.wav",
            Input::Bytes(wav_bytes(1, 1, 1_000_000_000, 16, &pcm16(16_000))),
            "sample rate 1000000000",
        ),
        (
            "0 channels",
            "ch0.wav",
            Input::Bytes(wav_bytes(1, 0, 16_000, 16, &pcm16(16_000))),
            "channel count 0",
        ),
        // a WAV header holds the channel count in 16 bits: 70000 is stored as 70000 mod 65536
        (
            "70000 channels (4464)",
            "ch70000.wav",
            Input::Bytes(wav_bytes(
                1,
                (70_000u32 % 65_536) as u16,
                16_000,
                16,
                &pcm16(16_000),
            )),
            "channel count 4464",
        ),
        (
            "65535 channels",
            "ch65535.wav",
            Input::Bytes(wav_bytes(1, 65_535, 16_000, 16, &pcm16(16_000))),
            "channel count 65535",
        ),
    ]
}

fn materialize(dir: &Path, name: &str, input: &Input) -> PathBuf {
    let p = dir.join(name);
    match input {
        Input::Bytes(b) => std::fs::write(&p, b).unwrap(),
        Input::Missing => {}
        Input::Directory => std::fs::create_dir_all(&p).unwrap(),
    }
    p
}

// ---------------------------------------------------------------------------------------------
// checkpoints

/// CRC-32 (IEEE), for patching a zip entry.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `losatok_tiny.pth` with one key renamed inside its `data.pkl` (same length, CRCs fixed):
/// a well-formed PyTorch zip that lacks `from` and has an unexpected `to`.
fn pth_with_renamed_key(from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut z = std::fs::read(ckpt()).unwrap();
    let u16_at = |z: &[u8], i: usize| u16::from_le_bytes([z[i], z[i + 1]]) as usize;
    let u32_at = |z: &[u8], i: usize| u32::from_le_bytes(z[i..i + 4].try_into().unwrap()) as usize;
    // the central-directory record of …/data.pkl: its size and local header
    let mut pos = 0;
    let cd = loop {
        let rec = pos + find(&z[pos..], b"PK\x01\x02").expect("central directory");
        let n = u16_at(&z, rec + 28);
        if z[rec + 46..rec + 46 + n].ends_with(b"data.pkl") {
            break rec;
        }
        pos = rec + 4;
    };
    let size = u32_at(&z, cd + 20);
    let local = u32_at(&z, cd + 42);
    let start = local + 30 + u16_at(&z, local + 26) + u16_at(&z, local + 28);
    let at = start + find(&z[start..start + size], from.as_bytes()).expect("key in data.pkl");
    z[at..at + to.len()].copy_from_slice(to.as_bytes());
    let crc = crc32(&z[start..start + size]).to_le_bytes();
    z[cd + 16..cd + 20].copy_from_slice(&crc);
    if u16_at(&z, local + 6) & 8 != 0 {
        // streamed entry: the CRC is in the data descriptor after the data
        let dd = start
            + size
            + if &z[start + size..start + size + 4] == b"PK\x07\x08" {
                4
            } else {
                0
            };
        z[dd..dd + 4].copy_from_slice(&crc);
    } else {
        z[local + 14..local + 18].copy_from_slice(&crc);
    }
    z
}

/// The tiny model exported as safetensors (official key layout), once per test binary.
fn tiny_safetensors() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = losatok::LosatokConfig::from_file(config()).unwrap();
        let tok =
            losatok::Tokenizer::<losatok::Cpu>::load(&ckpt(), &cfg, &Default::default()).unwrap();
        let p = dir.path().join("tiny.safetensors");
        losatok::models::checkpoint::export_safetensors(tok.model(), &p, &Default::default())
            .unwrap();
        std::fs::read(&p).unwrap()
    })
}

/// The export with each tensor passed through `edit` (return `None` to drop it).
fn edited_safetensors(
    mut edit: impl FnMut(
        &str,
        &str,
        Vec<usize>,
        Vec<u8>,
    ) -> Option<(String, String, Vec<usize>, Vec<u8>)>,
) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(tiny_safetensors()).unwrap();
    let mut names: Vec<String> = st.names().into_iter().cloned().collect();
    names.sort();
    let mut out: Vec<(String, String, Vec<usize>, Vec<u8>)> = Vec::new();
    for n in names {
        let t = st.tensor(&n).unwrap();
        let dtype = format!("{:?}", t.dtype());
        if let Some(e) = edit(&n, &dtype, t.shape().to_vec(), t.data().to_vec()) {
            out.push(e);
        }
    }
    let refs: Vec<(&str, &str, Vec<usize>, Vec<u8>)> = out
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), d.as_str(), s.clone(), b.clone()))
        .collect();
    safetensors_file(&refs)
}

fn bad_checkpoints() -> Vec<(&'static str, &'static str, Input, &'static str)> {
    let pth = std::fs::read(ckpt()).unwrap();
    let n = pth.len();
    let flip = |at: usize| {
        let mut b = pth.clone();
        for x in &mut b[at..at + 8] {
            *x ^= 0x5a;
        }
        b
    };
    // the data section of the first stored tensor, and the pickle
    let data_at = find(&pth, b"data/0").unwrap() + 200;
    let const_shape = "dasheng_tokenizer.decoder.head.out.weight";
    vec![
        ("missing file", "missing.pth", Input::Missing, "missing.pth"),
        ("directory", "dir.pth", Input::Directory, "directory"),
        (
            "empty file",
            "empty.pth",
            Input::Bytes(Vec::new()),
            "0 bytes",
        ),
        (
            "random bytes",
            "random.pth",
            Input::Bytes(noise(4096, 7)),
            "not a valid",
        ),
        (
            "truncated zip (100 bytes)",
            "t100.pth",
            Input::Bytes(pth[..100].to_vec()),
            "truncated zip",
        ),
        (
            "truncated zip (half)",
            "thalf.pth",
            Input::Bytes(pth[..n / 2].to_vec()),
            "truncated zip",
        ),
        (
            "truncated zip (last byte)",
            "tlast.pth",
            Input::Bytes(pth[..n - 1].to_vec()),
            "truncated zip",
        ),
        (
            "flipped bytes in the pickle",
            "flip_pkl.pth",
            Input::Bytes(flip(200)),
            "data.pkl",
        ),
        (
            "flipped bytes in tensor data",
            "flip_data.pth",
            Input::Bytes(flip(data_at)),
            "corrupt zip entry",
        ),
        (
            "pth with a missing key",
            "renamed.pth",
            Input::Bytes(pth_with_renamed_key("fc_mu.weight", "fc_mu.weighX")),
            "1 missing: fc_mu.weight",
        ),
        (
            "safetensors with a missing key",
            "missing_key.safetensors",
            Input::Bytes(edited_safetensors(|n, d, s, b| {
                (n != "fc_a.weight").then(|| (n.into(), d.into(), s, b))
            })),
            "1 missing: fc_a.weight",
        ),
        (
            "safetensors with a wrong shape",
            "shape.safetensors",
            Input::Bytes(edited_safetensors(|n, d, mut s, mut b| {
                if n == const_shape {
                    s[0] -= 2;
                    b.truncate(s.iter().product::<usize>() * 4);
                }
                Some((n.into(), d.into(), s, b))
            })),
            "wrong shape",
        ),
        (
            "safetensors with an int dtype",
            "int.safetensors",
            Input::Bytes(edited_safetensors(|n, d, s, b| {
                let d = if n == "fc_mu.bias" { "I32" } else { d };
                Some((n.into(), d.into(), s, b))
            })),
            "wrong dtype: fc_mu.bias",
        ),
        (
            "safetensors with NaN weights",
            "nan.safetensors",
            Input::Bytes(edited_safetensors(|n, d, s, b| {
                let b = if n == "fc_mu.bias" {
                    f32s(b.len() / 4, f32::NAN)
                } else {
                    b
                };
                Some((n.into(), d.into(), s, b))
            })),
            "NaN or infinite values: fc_mu.bias",
        ),
        (
            "truncated safetensors",
            "trunc.safetensors",
            Input::Bytes(tiny_safetensors()[..tiny_safetensors().len() - 100].to_vec()),
            "not a valid",
        ),
        (
            "semantic-encoder checkpoint instead of LoSATok",
            "semantic.pth",
            Input::Bytes(std::fs::read(fixtures().join("semantic_encoder_tiny.pth")).unwrap()),
            "semantic-encoder checkpoint",
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// the tests

/// Every bad audio file, to `reconstruct` (with and without `--save-features`) and `encode`,
/// into an empty output folder and onto an existing output with `--force`.
#[test]
fn bad_audio_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let (inp, out) = (tmp.path().join("in"), tmp.path().join("out"));
    std::fs::create_dir_all(&inp).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.wav"), b"precious wav").unwrap();
    std::fs::write(out.join("keep.safetensors"), b"precious features").unwrap();
    let mut r = Report::default();
    for (case, name, input, needle) in bad_audio() {
        let p = materialize(&inp, name, &input);
        let needles = [needle, name];
        for (cmd, o, extra) in [
            ("reconstruct", "out/o.wav", vec![]),
            (
                "reconstruct",
                "out/o.wav",
                os(&["--save-features", "out/f.safetensors"]),
            ),
            (
                "reconstruct",
                "out/keep.wav",
                os(&["--force", "--save-features", "out/keep.safetensors"]),
            ),
            ("encode", "out/o.safetensors", vec![]),
            ("encode", "out/keep.safetensors", os(&["--force"])),
            ("encode", "out/o.safetensors", os(&["--all-features"])),
        ] {
            let mut args = os(&[cmd]);
            args.push(p.clone().into());
            args.push(o.into());
            args.extend(extra.iter().cloned());
            args.extend(model_args());
            // a folder input is folder mode: here, with nothing to do or a file as OUTPUT
            let needles: &[&str] = if matches!(input, Input::Directory) {
                &[name]
            } else {
                &needles
            };
            r.expect_error(
                &format!("{cmd} {case} {extra:?}"),
                &args,
                tmp.path(),
                &out,
                needles,
            );
        }
    }
    // an audio file where a latent is expected, and the other way round
    let good = inp.join("good.wav");
    std::fs::write(&good, good_wav()).unwrap();
    let mut args = os(&["decode"]);
    args.extend([good.clone().into(), "out/o.wav".into()]);
    args.extend(model_args());
    r.expect_error(
        "decode a wav",
        &args,
        tmp.path(),
        &out,
        &["good.wav", "not a valid safetensors"],
    );
    let lat = inp.join("z.safetensors");
    std::fs::write(
        &lat,
        safetensors_file(&[("z", "F32", vec![1, 10, 16], f32s(160, 0.1))]),
    )
    .unwrap();
    let mut args = os(&["reconstruct"]);
    args.extend([lat.into(), "out/o.wav".into()]);
    args.extend(model_args());
    r.expect_error(
        "reconstruct a latent file",
        &args,
        tmp.path(),
        &out,
        &["z.safetensors", "unrecognised"],
    );
    r.finish();
}

/// Bad latent / feature files to `decode`.
#[test]
fn bad_latent_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let (inp, out) = (tmp.path().join("in"), tmp.path().join("out"));
    std::fs::create_dir_all(&inp).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.wav"), b"precious wav").unwrap();
    let z = |shape: Vec<usize>, v: f32| {
        let n = shape.iter().product();
        Input::Bytes(safetensors_file(&[("z", "F32", shape, f32s(n, v))]))
    };
    let good = safetensors_file(&[("z", "F32", vec![1, 10, 16], f32s(160, 0.1))]);
    let cases: Vec<(&str, &str, Input, &str)> = vec![
        (
            "missing file",
            "missing.safetensors",
            Input::Missing,
            "No such file",
        ),
        (
            "directory holding no latents",
            "dir.safetensors",
            Input::Directory,
            "dir.safetensors",
        ),
        (
            "empty file",
            "empty.safetensors",
            Input::Bytes(Vec::new()),
            "not a safetensors file",
        ),
        (
            "random bytes",
            "random.safetensors",
            Input::Bytes(noise(4096, 3)),
            "not a valid safetensors",
        ),
        (
            "header length beyond the file",
            "hdr.safetensors",
            Input::Bytes([(1u64 << 40).to_le_bytes().as_slice(), b"{}"].concat()),
            "not a valid safetensors",
        ),
        (
            "truncated",
            "trunc.safetensors",
            Input::Bytes(good[..good.len() - 10].to_vec()),
            "not a valid safetensors",
        ),
        (
            "no z",
            "noz.safetensors",
            Input::Bytes(safetensors_file(&[(
                "mu",
                "F32",
                vec![1, 10, 16],
                f32s(160, 0.1),
            )])),
            "no tensor named \"z\"",
        ),
        (
            "z of the wrong dimension [1, 10, 7]",
            "dim7.safetensors",
            z(vec![1, 10, 7], 0.1),
            "dimension 7",
        ),
        (
            "2-D z of the wrong dimension [10, 7]",
            "dim7_2d.safetensors",
            z(vec![10, 7], 0.1),
            "dimension 7",
        ),
        (
            "1-D z",
            "z1d.safetensors",
            z(vec![160], 0.1),
            "[1, T, D] is expected",
        ),
        (
            "4-D z",
            "z4d.safetensors",
            z(vec![1, 1, 10, 16], 0.1),
            "[1, T, D] is expected",
        ),
        (
            "a batch of two",
            "batch.safetensors",
            z(vec![2, 10, 16], 0.1),
            "batch of 2",
        ),
        (
            "zero frames",
            "empty_z.safetensors",
            z(vec![1, 0, 16], 0.1),
            "no frames",
        ),
        (
            "int dtype",
            "int.safetensors",
            Input::Bytes(safetensors_file(&[(
                "z",
                "I32",
                vec![1, 10, 16],
                vec![0; 640],
            )])),
            "I32",
        ),
        (
            "f16 dtype",
            "f16.safetensors",
            Input::Bytes(safetensors_file(&[(
                "z",
                "F16",
                vec![1, 10, 16],
                vec![0; 320],
            )])),
            "F16",
        ),
        (
            "NaN in z",
            "nan.safetensors",
            z(vec![1, 10, 16], f32::NAN),
            "NaN or infinite",
        ),
        (
            "Inf in z",
            "inf.safetensors",
            z(vec![1, 10, 16], f32::INFINITY),
            "NaN or infinite",
        ),
        (
            "z far out of range (1e30)",
            "huge.safetensors",
            z(vec![1, 10, 16], 1e30),
            "NaN or infinite audio",
        ),
    ];
    let mut r = Report::default();
    for (case, name, input, needle) in cases {
        let p = materialize(&inp, name, &input);
        for (o, extra) in [
            ("out/o.wav", vec![]),
            ("out/keep.wav", os(&["--force"])),
            ("out/p.wav", os(&["--pcm16"])),
        ] {
            let mut args = os(&["decode"]);
            args.extend([p.clone().into(), o.into()]);
            args.extend(extra.iter().cloned());
            args.extend(model_args());
            r.expect_error(
                &format!("decode {case} {extra:?}"),
                &args,
                tmp.path(),
                &out,
                &[needle, name],
            );
        }
    }
    r.finish();
}

/// Bad checkpoints to every command that loads one.
#[test]
fn bad_checkpoint_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let (inp, out) = (tmp.path().join("in"), tmp.path().join("out"));
    std::fs::create_dir_all(&inp).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let wav = inp.join("good.wav");
    std::fs::write(&wav, good_wav()).unwrap();
    let lat = inp.join("good.safetensors");
    std::fs::write(
        &lat,
        safetensors_file(&[("z", "F32", vec![1, 10, 16], f32s(160, 0.1))]),
    )
    .unwrap();
    std::fs::write(out.join("keep.wav"), b"precious").unwrap();

    let mut r = Report::default();
    let mut cases = bad_checkpoints();
    // a checkpoint without the semantic encoder, with a config that names none
    let cfg_no_sem = inp.join("no_sem.yml");
    let text = std::fs::read_to_string(config()).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("AudioVAE.semantic_encoder_path"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&cfg_no_sem, text).unwrap();
    cases.push((
        "LoSATok checkpoint without semantic encoder",
        "no_semantic.pth",
        Input::Bytes(std::fs::read(fixtures().join("losatok_tiny_no_semantic.pth")).unwrap()),
        "no semantic_encoder",
    ));
    for (case, name, input, needle) in cases {
        let p = materialize(&inp, name, &input);
        let cfg = if name == "no_semantic.pth" {
            cfg_no_sem.clone()
        } else {
            config()
        };
        for (cmd, i, o, extra) in [
            ("reconstruct", &wav, "out/o.wav", vec![]),
            ("reconstruct", &wav, "out/keep.wav", os(&["--force"])),
            ("encode", &wav, "out/o.safetensors", vec![]),
            ("decode", &lat, "out/o.wav", vec![]),
        ] {
            let mut args = os(&[cmd]);
            args.extend([i.clone().into(), o.into()]);
            args.extend(extra.iter().cloned());
            args.extend([
                "--checkpoint".into(),
                p.clone().into(),
                "--config".into(),
                cfg.clone().into(),
            ]);
            r.expect_error(
                &format!("{cmd} {case} {extra:?}"),
                &args,
                tmp.path(),
                &out,
                &[needle, name],
            );
        }
        // LOSATOK_CHECKPOINT takes the same path
        let before = snapshot(&out);
        let mut args = os(&["encode"]);
        args.extend([
            wav.clone().into(),
            "out/o.safetensors".into(),
            "--config".into(),
            cfg.clone().into(),
        ]);
        let o = command(&args, tmp.path())
            .env("LOSATOK_CHECKPOINT", &p)
            .output()
            .unwrap();
        r.judge(
            &format!("encode {case} via LOSATOK_CHECKPOINT"),
            &o,
            &[needle, name],
            &before,
            &out,
        );
    }
    r.finish();
}

/// Bad model configs (`--config`) and training configs.
#[test]
fn bad_configs() {
    let tmp = tempfile::tempdir().unwrap();
    let (inp, out) = (tmp.path().join("in"), tmp.path().join("out"));
    std::fs::create_dir_all(&inp).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let wav = inp.join("good.wav");
    std::fs::write(&wav, good_wav()).unwrap();
    let lat = inp.join("good.safetensors");
    std::fs::write(
        &lat,
        safetensors_file(&[("z", "F32", vec![1, 10, 16], f32s(160, 0.1))]),
    )
    .unwrap();
    let text = std::fs::read_to_string(config()).unwrap().replace(
        "semantic_encoder_tiny.pth",
        &fixtures()
            .join("semantic_encoder_tiny.pth")
            .display()
            .to_string(),
    );
    let edit = |from: &str, to: &str| {
        assert!(text.contains(from), "{from}");
        Input::Bytes(text.replace(from, to).into_bytes())
    };
    let model_cases: Vec<(&str, &str, Input, &str)> = vec![
        ("missing file", "missing.yml", Input::Missing, "missing.yml"),
        ("directory", "dir.yml", Input::Directory, "dir.yml"),
        (
            "empty file",
            "empty.yml",
            Input::Bytes(Vec::new()),
            "missing field",
        ),
        (
            "binary bytes",
            "binary.yml",
            Input::Bytes(vec![0xff, 0xfe, 0, 1, 2]),
            "UTF-8",
        ),
        (
            "malformed YAML",
            "malformed.yml",
            Input::Bytes(b"sample_rate: [16000\n".to_vec()),
            "invalid config",
        ),
        (
            "unknown key",
            "unknown.yml",
            Input::Bytes(format!("{text}AudioVAE.bogus: 1\n").into_bytes()),
            "unknown field `AudioVAE.bogus`",
        ),
        (
            "unknown nested key",
            "unknown2.yml",
            edit("embed_dim: 64\n", "embed_dim: 64\n  bogus: 3\n"),
            "bogus",
        ),
        (
            "negative size",
            "neg.yml",
            edit("decoder_depth: 2,", "decoder_depth: -2,"),
            "decoder_depth",
        ),
        (
            "zero size",
            "zero.yml",
            edit("decoder_depth: 2,", "decoder_depth: 0,"),
            "decoder_depth must be positive",
        ),
        (
            "wrong type",
            "type.yml",
            edit("decoder_depth: 2,", "decoder_depth: two,"),
            "decoder_depth",
        ),
        (
            "heads not dividing the width",
            "heads.yml",
            edit("num_heads: 4", "num_heads: 3"),
            "not divisible",
        ),
        (
            "sample rate 44100",
            "rate.yml",
            edit(
                "sample_rate: 16000\nAudioVAE.sample_rate: 16000",
                "sample_rate: 44100\nAudioVAE.sample_rate: 44100",
            ),
            "16000",
        ),
        (
            "absurd f_max",
            "fmax.yml",
            edit("f_max: 8000.0", "f_max: 1.0e9"),
            "f_max",
        ),
        (
            "sizes that do not match the checkpoint",
            "depth.yml",
            edit("decoder_depth: 2,", "decoder_depth: 3,"),
            "Vocos blocks",
        ),
    ];
    let mut r = Report::default();
    for (case, name, input, needle) in model_cases {
        let p = materialize(&inp, name, &input);
        for (cmd, i, o) in [
            ("reconstruct", &wav, "out/o.wav"),
            ("encode", &wav, "out/o.safetensors"),
            ("decode", &lat, "out/o.wav"),
        ] {
            let mut args = os(&[cmd]);
            args.extend([i.clone().into(), o.into()]);
            args.extend([
                "--checkpoint".into(),
                ckpt().into(),
                "--config".into(),
                p.clone().into(),
            ]);
            r.expect_error(
                &format!("{cmd} --config {case}"),
                &args,
                tmp.path(),
                &out,
                &[needle],
            );
        }
    }

    // training configs
    let manifest = training_data();
    let base1 = format!(
        "model: {{preset: tiny}}\nsemantic_encoder: random\n\
         data: {{manifest: {}, loader: {{segment_samples: 16000, workers: 1}}}}\n\
         run: {{steps: 2, batch_size: 1, log_every: 1, checkpoint_every: 1}}\n",
        manifest.display()
    );
    let base2 = stage2_yaml(&manifest, 1);
    let train_cases: Vec<(&str, &str, &str, Input, &str)> = vec![
        (
            "train-sembo",
            "missing file",
            "missing.yml",
            Input::Missing,
            "missing.yml",
        ),
        (
            "train",
            "missing file",
            "missing.yml",
            Input::Missing,
            "missing.yml",
        ),
        (
            "train-sembo",
            "directory",
            "dir.yml",
            Input::Directory,
            "dir.yml",
        ),
        ("train", "directory", "dir.yml", Input::Directory, "dir.yml"),
        (
            "train-sembo",
            "binary bytes",
            "bin.yml",
            Input::Bytes(noise(300, 5)),
            "bin.yml",
        ),
        (
            "train",
            "malformed YAML",
            "bad.yml",
            Input::Bytes(b"run: {steps: [\n".to_vec()),
            "bad.yml",
        ),
        (
            "train-sembo",
            "unknown key",
            "unknown1.yml",
            Input::Bytes(format!("{base1}bogus: 1\n").into_bytes()),
            "bogus",
        ),
        (
            "train",
            "unknown key",
            "unknown2.yml",
            Input::Bytes(format!("{base2}bogus: 1\n").into_bytes()),
            "bogus",
        ),
        (
            "train",
            "unknown nested key",
            "unknown3.yml",
            Input::Bytes(
                base2
                    .replace("sample_every: 0", "sample_every: 0, bogus: 2")
                    .into_bytes(),
            ),
            "bogus",
        ),
        (
            "train-sembo",
            "unknown preset",
            "preset.yml",
            Input::Bytes(base1.replace("preset: tiny", "preset: huge").into_bytes()),
            "huge",
        ),
        (
            "train-sembo",
            "zero batch",
            "batch.yml",
            Input::Bytes(base1.replace("batch_size: 1", "batch_size: 0").into_bytes()),
            "batch_size",
        ),
        (
            "train",
            "negative steps",
            "steps.yml",
            Input::Bytes(base2.replace("steps: 1,", "steps: -1,").into_bytes()),
            "steps",
        ),
        (
            "train",
            "NaN learning rate",
            "lr.yml",
            Input::Bytes(base2.replace("lr: 2.0e-3", "lr: .nan").into_bytes()),
            "lr",
        ),
        (
            "train",
            "segment shorter than the model minimum",
            "seg.yml",
            Input::Bytes(
                base2
                    .replace("segment_samples: 10240", "segment_samples: 400")
                    .into_bytes(),
            ),
            "segment_samples",
        ),
        (
            "train-sembo",
            "stage-2 config given to stage 1",
            "s2.yml",
            Input::Bytes(base2.clone().into_bytes()),
            "s2.yml",
        ),
        (
            "train-sembo",
            "missing semantic encoder file",
            "sem.yml",
            Input::Bytes(
                base1
                    .replace("semantic_encoder: random", "semantic_encoder: nothere.pth")
                    .into_bytes(),
            ),
            "nothere.pth",
        ),
    ];
    for (cmd, case, name, input, needle) in train_cases {
        let p = materialize(&inp, name, &input);
        let run_dir = out.join(format!("run-{}", name.replace('.', "_")));
        let mut args = os(&[cmd]);
        args.extend([p.into(), "--run-dir".into(), run_dir.clone().into()]);
        r.expect_error(&format!("{cmd} {case}"), &args, tmp.path(), &out, &[needle]);
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    r.finish();
}

/// A small synthetic training set (shared by the tests of this binary); its manifest.
fn training_data() -> PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let m = losatok_train::data::synthesize_dataset(&dir.path().join("data"), 1.0, 3).unwrap();
        (dir, m)
    })
    .1
    .clone()
}

fn stage2_yaml(manifest: &Path, steps: u64) -> String {
    format!(
        "model: {{preset: tiny}}\nsemantic_encoder: random\ngan_start_step: 0\n\
         discriminator: {{kind: mfd, sample_rate: 16000, hop_lengths: [256, 1024], hidden_channels: [32, 32]}}\n\
         optim_g: {{lr: 2.0e-3, warmup_steps: 1}}\noptim_d: {{lr: 2.0e-3, warmup_steps: 1}}\n\
         data: {{manifest: {}, loader: {{segment_samples: 10240, workers: 1}}}}\n\
         run: {{steps: {steps}, batch_size: 1, log_every: 1, checkpoint_every: 1, sample_every: 0}}\n",
        manifest.display()
    )
}

/// A finished one-step stage-2 run (for `export`), shared by the tests of this binary.
fn stage2_run() -> PathBuf {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s2.yml"), stage2_yaml(&training_data(), 1)).unwrap();
        let o = run(&os(&["train", "s2.yml", "--run-dir", "run"]), dir.path());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let run = dir.path().join("run");
        (dir, run)
    })
    .1
    .clone()
}

/// Outputs that cannot be written, or must not be: a path under a regular file (fails even for
/// root), a read-only folder (skipped as root), an existing output without `--force`, an output
/// that is a folder, `/dev/full`, and a file-size limit.
#[test]
fn bad_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (inp, out) = (d.join("in"), d.join("out"));
    std::fs::create_dir_all(&inp).unwrap();
    std::fs::create_dir_all(out.join("folder.wav")).unwrap();
    std::fs::create_dir_all(out.join("folder.safetensors")).unwrap();
    let wav = inp.join("good.wav");
    std::fs::write(&wav, good_wav()).unwrap();
    let lat = inp.join("good.safetensors");
    std::fs::write(
        &lat,
        safetensors_file(&[("z", "F32", vec![1, 10, 16], f32s(160, 0.1))]),
    )
    .unwrap();
    std::fs::write(out.join("file.txt"), b"a regular file").unwrap();
    for f in ["keep.wav", "keep.safetensors", "keep.jsonl"] {
        std::fs::write(out.join(f), b"precious").unwrap();
    }
    std::fs::create_dir_all(out.join("demo")).unwrap();
    std::fs::write(out.join("demo/keep.txt"), b"precious").unwrap();
    let run2 = stage2_run();
    let manifest = training_data();
    let data_dir = manifest.parent().unwrap().to_path_buf();

    let with_model = |args: &[&str]| {
        let mut a = os(args);
        a.extend(model_args());
        a
    };
    let w = wav.to_str().unwrap();
    let l = lat.to_str().unwrap();
    let r2 = run2.to_str().unwrap();
    let dd = data_dir.to_str().unwrap();
    let s2 = d.join("s2.yml");
    std::fs::write(&s2, stage2_yaml(&manifest, 1)).unwrap();
    let s2 = s2.to_str().unwrap();

    #[cfg_attr(feature = "cuda", allow(unused_mut))] // one case is CPU-build only
    let mut cases: Vec<(&str, Vec<OsString>, &[&str])> = vec![
        // a path under a regular file: not writable for anyone
        (
            "reconstruct into file.txt/",
            with_model(&["reconstruct", w, "out/file.txt/o.wav"]),
            &["file.txt/o.wav"],
        ),
        (
            "encode into file.txt/",
            with_model(&["encode", w, "out/file.txt/o.safetensors"]),
            &["file.txt/o.safetensors"],
        ),
        (
            "decode into file.txt/",
            with_model(&["decode", l, "out/file.txt/o.wav"]),
            &["file.txt/o.wav"],
        ),
        (
            "reconstruct --save-features into file.txt/",
            with_model(&[
                "reconstruct",
                w,
                "out/o.wav",
                "--save-features",
                "out/file.txt/f.safetensors",
            ]),
            &["file.txt/f.safetensors"],
        ),
        (
            "export into file.txt/",
            os(&["export", r2, "out/file.txt/e.safetensors"]),
            &["file.txt/e.safetensors"],
        ),
        (
            "manifest into file.txt/",
            os(&["manifest", dd, "--out", "out/file.txt/m.jsonl"]),
            &["file.txt/m.jsonl"],
        ),
        (
            "train --run-dir under file.txt/",
            os(&["train", s2, "--run-dir", "out/file.txt/run"]),
            &["file.txt/run"],
        ),
        (
            "demo --out under file.txt/",
            os(&["demo", "--quick", "--out", "out/file.txt/demo"]),
            &["file.txt/demo"],
        ),
        (
            "demo --out is a file",
            os(&["demo", "--quick", "--out", "out/file.txt"]),
            &["file.txt", "not a folder"],
        ),
        // a missing output folder (single-file mode does not create folders)
        (
            "reconstruct into a missing folder",
            with_model(&["reconstruct", w, "out/nodir/o.wav"]),
            &["nodir/o.wav"],
        ),
        // an existing output without --force
        (
            "reconstruct onto an existing output",
            with_model(&["reconstruct", w, "out/keep.wav"]),
            &["keep.wav", "--force"],
        ),
        (
            "reconstruct onto existing features",
            with_model(&[
                "reconstruct",
                w,
                "out/o.wav",
                "--save-features",
                "out/keep.safetensors",
            ]),
            &["keep.safetensors", "--force"],
        ),
        (
            "encode onto an existing output",
            with_model(&["encode", w, "out/keep.safetensors"]),
            &["keep.safetensors", "--force"],
        ),
        (
            "decode onto an existing output",
            with_model(&["decode", l, "out/keep.wav"]),
            &["keep.wav", "--force"],
        ),
        (
            "export onto an existing output",
            os(&["export", r2, "out/keep.safetensors"]),
            &["keep.safetensors", "--force"],
        ),
        (
            "manifest onto an existing output",
            os(&["manifest", dd, "--out", "out/keep.jsonl"]),
            &["keep.jsonl", "--force"],
        ),
        (
            "demo into a non-empty folder",
            os(&["demo", "--quick", "--out", "out/demo"]),
            &["out/demo", "not created by losatok"],
        ),
        // an output that is a folder (single-file mode)
        (
            "reconstruct onto a folder",
            with_model(&["reconstruct", w, "out/folder.wav", "--force"]),
            &["folder.wav"],
        ),
        (
            "encode onto a folder",
            with_model(&["encode", w, "out/folder.safetensors", "--force"]),
            &["folder.safetensors"],
        ),
        (
            "decode onto a folder",
            with_model(&["decode", l, "out/folder.wav", "--force"]),
            &["folder.wav"],
        ),
        (
            "export onto a folder",
            os(&["export", r2, "out/folder.safetensors", "--force"]),
            &["folder.safetensors"],
        ),
        (
            "manifest onto a folder",
            os(&["manifest", dd, "--out", "out/folder.wav", "--force"]),
            &["folder.wav"],
        ),
        (
            "--save-features same as OUTPUT",
            with_model(&[
                "reconstruct",
                w,
                "out/x.wav",
                "--save-features",
                "out/x.wav",
            ]),
            &["--save-features"],
        ),
        // bad option values
        (
            "--max-duration 0",
            with_model(&["reconstruct", w, "out/o.wav", "--max-duration", "0"]),
            &["--max-duration"],
        ),
        (
            "--max-duration NaN",
            with_model(&["encode", w, "out/o.safetensors", "--max-duration", "NaN"]),
            &["--max-duration"],
        ),
        (
            "--max-duration inf",
            with_model(&["encode", w, "out/o.safetensors", "--max-duration", "inf"]),
            &["--max-duration"],
        ),
        (
            "--max-duration for decode",
            with_model(&["decode", l, "out/o.wav", "--max-duration", "1"]),
            &["--max-duration"],
        ),
        (
            "--chunks-per-step 0",
            with_model(&["reconstruct", w, "out/o.wav", "--chunks-per-step", "0"]),
            &["--chunks-per-step"],
        ),
        (
            "--device tpu",
            with_model(&["encode", w, "out/o.safetensors", "--device", "tpu"]),
            &["tpu"],
        ),
        (
            "train --device tpu",
            os(&["train", s2, "--run-dir", "out/run-tpu", "--device", "tpu"]),
            &["tpu"],
        ),
        (
            "unknown option",
            with_model(&["encode", w, "out/o.safetensors", "--bogus"]),
            &["--bogus"],
        ),
        ("missing argument", os(&["decode", l]), &["OUTPUT"]),
        (
            "no checkpoint",
            os(&["encode", w, "out/o.safetensors"]),
            &["--checkpoint"],
        ),
    ];
    #[cfg(not(feature = "cuda"))]
    cases.push((
        "--device cuda without the feature",
        with_model(&["decode", l, "out/o.wav", "--device", "cuda"]),
        &["cuda"],
    ));

    let mut r = Report::default();
    for (case, args, needles) in &cases {
        r.expect_error(case, args, d, &out, needles);
    }

    // a folder without write permission (permissions do not bind root: then skipped)
    let ro = out.join("readonly");
    std::fs::create_dir_all(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(ro.join("probe"), b"x").is_ok() {
        let _ = std::fs::remove_file(ro.join("probe"));
        eprintln!("skip read-only folder cases: permissions are not enforced (running as root)");
    } else {
        for (case, args) in [
            (
                "reconstruct into a read-only folder",
                with_model(&["reconstruct", w, "out/readonly/o.wav"]),
            ),
            (
                "encode into a read-only folder",
                with_model(&["encode", w, "out/readonly/o.safetensors"]),
            ),
            (
                "decode into a read-only folder",
                with_model(&["decode", l, "out/readonly/o.wav"]),
            ),
            (
                "export into a read-only folder",
                os(&["export", r2, "out/readonly/e.safetensors"]),
            ),
            (
                "manifest into a read-only folder",
                os(&["manifest", dd, "--out", "out/readonly/m.jsonl"]),
            ),
        ] {
            r.expect_error(case, &args, d, &out, &["readonly", "ermission denied"]);
        }
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    r.finish();
}

/// A full disk. `/dev/full` exists, so it is refused without `--force`; with `--force` it is
/// written in place (a device is never replaced by a file) and the write fails. And a file-size
/// limit makes every output fail part-way through, leaving nothing behind.
#[test]
fn full_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (inp, out) = (d.join("in"), d.join("out"));
    std::fs::create_dir_all(&inp).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let wav = inp.join("good.wav");
    std::fs::write(&wav, good_wav()).unwrap();
    let lat = inp.join("good.safetensors");
    std::fs::write(
        &lat,
        safetensors_file(&[("z", "F32", vec![1, 10, 16], f32s(160, 0.1))]),
    )
    .unwrap();
    let run2 = stage2_run();
    let data_dir = training_data().parent().unwrap().to_path_buf();
    let (w, l, r2, dd) = (
        wav.to_str().unwrap(),
        lat.to_str().unwrap(),
        run2.to_str().unwrap(),
        data_dir.to_str().unwrap(),
    );
    let with_model = |args: &[&str]| {
        let mut a = os(args);
        a.extend(model_args());
        a
    };
    let mut r = Report::default();

    let full = Path::new("/dev/full");
    if full.exists() {
        let is_device = |p: &Path| {
            use std::os::unix::fs::FileTypeExt;
            std::fs::metadata(p).unwrap().file_type().is_char_device()
        };
        assert!(is_device(full));
        // without --force: it exists
        for (case, args) in [
            (
                "reconstruct onto /dev/full",
                with_model(&["reconstruct", w, "/dev/full"]),
            ),
            (
                "encode onto /dev/full",
                with_model(&["encode", w, "/dev/full"]),
            ),
            (
                "decode onto /dev/full",
                with_model(&["decode", l, "/dev/full"]),
            ),
            ("export onto /dev/full", os(&["export", r2, "/dev/full"])),
            (
                "manifest onto /dev/full",
                os(&["manifest", dd, "--out", "/dev/full"]),
            ),
        ] {
            r.expect_error(
                case,
                &args,
                d,
                &out,
                &["/dev/full", "character device, not a regular file"],
            );
        }
        // with --force, through links in the output folder (so that a regression would
        // replace the link, never the device)
        for name in ["full.wav", "full.safetensors", "full.jsonl", "full2.wav"] {
            std::os::unix::fs::symlink(full, out.join(name)).unwrap();
        }
        for (case, args) in [
            (
                "reconstruct --force onto /dev/full",
                with_model(&["reconstruct", w, "out/full.wav", "--force"]),
            ),
            (
                "reconstruct --force onto /dev/full, --pcm16",
                with_model(&["reconstruct", w, "out/full2.wav", "--force", "--pcm16"]),
            ),
            (
                "reconstruct --force --save-features onto /dev/full",
                with_model(&[
                    "reconstruct",
                    w,
                    "out/o.wav",
                    "--force",
                    "--save-features",
                    "out/full.safetensors",
                ]),
            ),
            (
                "encode --force onto /dev/full",
                with_model(&["encode", w, "out/full.safetensors", "--force"]),
            ),
            (
                "decode --force onto /dev/full",
                with_model(&["decode", l, "out/full.wav", "--force"]),
            ),
            (
                "export --force onto /dev/full",
                os(&["export", r2, "out/full.safetensors", "--force"]),
            ),
            (
                "manifest --force onto /dev/full",
                os(&["manifest", dd, "--out", "out/full.jsonl", "--force"]),
            ),
        ] {
            r.expect_error(
                case,
                &args,
                d,
                &out,
                &["out/full", "character device, not a regular file"],
            );
        }
        assert!(is_device(full), "/dev/full was replaced");
    } else {
        eprintln!("skip /dev/full cases: no /dev/full on this system");
    }

    // RLIMIT_FSIZE: outputs larger than 16 KiB cannot be written
    std::fs::write(out.join("keep.wav"), b"precious").unwrap();
    std::fs::write(out.join("keep.safetensors"), b"precious").unwrap();
    let limit = 16 * 1024;
    for (case, args) in [
        (
            "reconstruct on a full disk",
            with_model(&["reconstruct", w, "out/o.wav"]),
        ),
        (
            "reconstruct --force on a full disk",
            with_model(&["reconstruct", w, "out/keep.wav", "--force"]),
        ),
        (
            "reconstruct --save-features on a full disk",
            with_model(&[
                "reconstruct",
                w,
                "out/o.wav",
                "--save-features",
                "out/f.safetensors",
                "--pcm16",
            ]),
        ),
        (
            "encode --all-features on a full disk",
            with_model(&["encode", w, "out/o.safetensors", "--all-features"]),
        ),
        (
            "encode --force on a full disk",
            with_model(&[
                "encode",
                w,
                "out/keep.safetensors",
                "--force",
                "--all-features",
            ]),
        ),
        (
            "decode on a full disk",
            with_model(&["decode", l, "out/o.wav"]),
        ),
        (
            "export on a full disk",
            os(&["export", r2, "out/e.safetensors"]),
        ),
    ] {
        let before = snapshot(&out);
        let o = run_with_file_size_limit(&args, d, limit);
        r.judge(case, &o, &["File too large"], &before, &out);
    }
    r.finish();
}

/// Training inputs: manifests that are missing, empty, malformed or name only broken files;
/// `export` of folders that are not runs; a damaged checkpoint.
#[test]
fn bad_training_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let good = training_data();
    let base2 = stage2_yaml(&good, 1);
    let write = |name: &str, bytes: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    write("broken1.wav", &noise(3000, 9));
    let mut r = Report::allowing_warnings();
    write(
        "broken2.wav",
        &wav_bytes(3, 1, 16_000, 32, &f32_with(f32::NAN)),
    );
    write("broken3.wav", &good_wav()[..30]);
    write("empty.jsonl", b"");
    write("bad.jsonl", b"{\"path\": \"broken1.wav\"\nnot json\n");
    write(
        "broken.jsonl",
        b"{\"path\": \"broken1.wav\", \"domain\": \"speech\"}\n{\"path\": \"broken2.wav\", \"domain\": \"speech\"}\n",
    );
    for (case, manifest, needle) in [
        ("missing manifest", "missing.jsonl", "missing.jsonl"),
        ("empty manifest", "empty.jsonl", "empty.jsonl"),
        ("malformed manifest", "bad.jsonl", "bad.jsonl:1"),
        ("only broken files", "broken.jsonl", "broken"),
    ] {
        let cfg = write(
            &format!("{case}.yml").replace(' ', "_"),
            base2
                .replace(&good.display().to_string(), manifest)
                .as_bytes(),
        );
        for cmd in ["train", "train-sembo"] {
            let cfg = if cmd == "train" {
                cfg.clone()
            } else {
                write(
                    &format!("{case}-1.yml").replace(' ', "_"),
                    format!(
                        "model: {{preset: tiny}}\nsemantic_encoder: random\n\
                         data: {{manifest: {manifest}, loader: {{segment_samples: 16000, workers: 1}}}}\n\
                         run: {{steps: 1, batch_size: 1}}\n"
                    )
                    .as_bytes(),
                )
            };
            let mut args = os(&[cmd]);
            args.extend([cfg.into(), "--run-dir".into(), out.join("run").into()]);
            let before = snapshot(&out);
            let o = run(&args, d);
            // a run folder may be started (config.yml, logs) but holds no checkpoint
            let _ = std::fs::remove_dir_all(out.join("run"));
            r.judge(&format!("{cmd} {case}"), &o, &[needle], &before, &out);
        }
    }

    // export: not a run folder, a file, a run without checkpoints, a damaged checkpoint
    let run2 = stage2_run();
    let empty_run = d.join("empty_run");
    std::fs::create_dir_all(empty_run.join("checkpoints")).unwrap();
    std::fs::copy(run2.join("config.yml"), empty_run.join("config.yml")).unwrap();
    let damaged = d.join("damaged_run");
    copy_tree(&run2, &damaged);
    let ck = damaged.join("checkpoints/step-000000001");
    for f in std::fs::read_dir(&ck).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "bin") {
            let b = std::fs::read(&p).unwrap();
            std::fs::write(&p, &b[..b.len() / 2]).unwrap();
        }
    }
    // the same damage in a checkpoint written before checksums existed: the decoder notices
    let old_format = d.join("old_format_run");
    copy_tree(&damaged, &old_format);
    std::fs::remove_file(old_format.join("checkpoints/step-000000001/checksums.json")).unwrap();
    let wav = write("good.wav", &good_wav());
    for (case, args, needle) in [
        (
            "export a missing run",
            os(&["export", "nothere", "out/e.safetensors"]),
            "nothere",
        ),
        (
            "export a file",
            vec![
                "export".into(),
                wav.clone().into(),
                "out/e.safetensors".into(),
            ],
            "good.wav",
        ),
        (
            "export a run without checkpoints",
            vec![
                "export".into(),
                empty_run.clone().into(),
                "out/e.safetensors".into(),
            ],
            "no checkpoint",
        ),
        (
            "export a damaged checkpoint",
            vec![
                "export".into(),
                damaged.clone().into(),
                "out/e.safetensors".into(),
            ],
            "step-000000001",
        ),
        (
            "export a damaged checkpoint without checksums",
            vec![
                "export".into(),
                old_format.clone().into(),
                "out/e.safetensors".into(),
            ],
            "truncated file",
        ),
        (
            "export --checkpoint missing",
            vec![
                "export".into(),
                run2.clone().into(),
                "out/e.safetensors".into(),
                "--checkpoint".into(),
                "nothere".into(),
            ],
            "nothere",
        ),
        (
            "resume from a damaged checkpoint",
            vec![
                "train".into(),
                damaged.join("config.yml").into(),
                "--run-dir".into(),
                damaged.clone().into(),
                "--resume".into(),
            ],
            "step-000000001",
        ),
        (
            "manifest of a missing folder",
            os(&["manifest", "nothere", "--out", "out/m.jsonl"]),
            "nothere",
        ),
        (
            "manifest of an empty folder",
            os(&["manifest", "out", "--out", "out/m.jsonl"]),
            "no",
        ),
        (
            "manifest of broken files only",
            vec![
                "manifest".into(),
                d.join("broken1.wav").into(),
                d.join("broken3.wav").into(),
                "--out".into(),
                "out/m2.jsonl".into(),
            ],
            "none of the 2",
        ),
        (
            "manifest with an empty domain (a path named =out)",
            os(&["manifest", "=out", "--out", "out/m3.jsonl"]),
            "=out",
        ),
    ] {
        r.expect_error(case, &args, d, &out, &[needle]);
    }
    r.finish();
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Folder mode: every bad file is listed (one line each, after one `error:` line), every good
/// file is processed, the exit code is 1, and nothing is written for the bad ones.
#[test]
fn batch_mode_reports_every_failure_and_carries_on() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let inp = d.join("in");
    std::fs::create_dir_all(inp.join("sub")).unwrap();
    let mut bad_names = Vec::new();
    for (_, name, input, _) in bad_audio() {
        if let Input::Bytes(b) = input {
            std::fs::write(inp.join("sub").join(name), b).unwrap();
            bad_names.push(format!("sub/{name}"));
        }
    }
    std::fs::write(inp.join("a.wav"), good_wav()).unwrap();
    std::fs::write(inp.join("sub/b.wav"), good_wav()).unwrap();
    std::fs::write(inp.join("notes.txt"), b"ignored").unwrap();

    let check = |o: &Output, bad: &[String], good_out: &[&str], out: &Path, ext: &str| {
        let err = String::from_utf8_lossy(&o.stderr);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            !err.contains("panicked") && !err.contains("internal error"),
            "{err}"
        );
        let all: Vec<&str> = err.trim_end().lines().collect();
        // what the walk passed over comes first (the notes file), then the failures
        let first_error = all
            .iter()
            .position(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no error line: {err}"));
        assert!(
            all[..first_error]
                .iter()
                .all(|l| l.starts_with("passed over in ") || l.starts_with("  ")),
            "{err}"
        );
        let lines = &all[first_error..];
        assert_eq!(
            lines[0],
            format!("error: {} file(s) failed:", bad.len()),
            "{err}"
        );
        assert_eq!(lines.len(), 1 + bad.len(), "one line per failure: {err}");
        for b in bad {
            assert!(
                lines.iter().any(|l| l.contains(b.as_str())),
                "{b} not reported: {err}"
            );
        }
        assert!(
            stdout.contains(&format!("{} file(s)", good_out.len())),
            "{stdout}"
        );
        for g in good_out {
            assert!(out.join(g).is_file(), "{g} not written");
        }
        // nothing else (no partial outputs, no temporary files)
        let mut written: Vec<String> = snapshot(out)
            .into_iter()
            .filter(|(_, (b, _))| b != b"<dir>")
            .map(|(k, _)| k.display().to_string())
            .collect();
        written.sort();
        let mut want: Vec<String> = good_out.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(written, want, "only the good files' outputs ({ext})");
    };

    let mut args = os(&["reconstruct", "in", "rec", "--save-features", "feat"]);
    args.extend(model_args());
    let o = run(&args, d);
    check(
        &o,
        &bad_names,
        &["a.wav", "sub/b.wav"],
        &d.join("rec"),
        "wav",
    );
    let feats: Vec<String> = snapshot(&d.join("feat"))
        .into_keys()
        .map(|k| k.display().to_string())
        .collect();
    assert_eq!(feats, ["a.safetensors", "sub", "sub/b.safetensors"]);

    let mut args = os(&["encode", "in", "enc"]);
    args.extend(model_args());
    let o = run(&args, d);
    check(
        &o,
        &bad_names,
        &["a.safetensors", "sub/b.safetensors"],
        &d.join("enc"),
        "safetensors",
    );

    // decode: the good latents, and bad ones among them
    let lat = d.join("lat");
    copy_tree(&d.join("enc"), &lat);
    let bad_lat = [
        (
            "sub/noz.safetensors",
            safetensors_file(&[("mu", "F32", vec![1, 10, 16], f32s(160, 0.1))]),
        ),
        (
            "sub/dim7.safetensors",
            safetensors_file(&[("z", "F32", vec![1, 10, 7], f32s(70, 0.1))]),
        ),
        (
            "sub/nan.safetensors",
            safetensors_file(&[("z", "F32", vec![1, 10, 16], f32s(160, f32::NAN))]),
        ),
        ("sub/empty.safetensors", Vec::new()),
        ("sub/random.safetensors", noise(1000, 4)),
    ];
    for (name, bytes) in &bad_lat {
        std::fs::write(lat.join(name), bytes).unwrap();
    }
    let bad: Vec<String> = bad_lat.iter().map(|(n, _)| n.to_string()).collect();
    let mut args = os(&["decode", "lat", "dec"]);
    args.extend(model_args());
    let o = run(&args, d);
    check(&o, &bad, &["a.wav", "sub/b.wav"], &d.join("dec"), "wav");

    // again: the good ones are skipped as done, the bad ones reported again
    let o = run(&args, d);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 already done"));
}
