//! Chunked (bounded-memory) processing equals whole-signal processing: the nine features, the
//! seeded latent and the decoded waveform, on a long synthetic signal whose quiet chunk would be
//! floored differently if the top_db floor were taken per chunk instead of per signal.

mod common;

use burn::prelude::*;
use common::*;
use losatok_models::checkpoint::{load_losatok, open_losatok_checkpoint};
use losatok_models::chunked::{rows, ChunkedDecoder, ChunkedEncoder, DbScanner, StreamError};
use losatok_models::{Features, Losatok, LosatokConfig, Sampling};

/// Chunked vs whole: the same arithmetic on differently sized matrices; float rounding only.
const TOL: f32 = 1e-4;

fn tiny() -> Losatok<Cpu> {
    let dir = fixture_path("model");
    let cfg = LosatokConfig::from_file(dir.join("tiny_config.yml")).unwrap();
    let path = dir.join("losatok_tiny.pth");
    let src = open_losatok_checkpoint(&path, &cfg).unwrap();
    load_losatok::<Cpu>(&cfg, &src, &path, &Default::default())
        .unwrap()
        .0
}

/// ~27.6 s: a loud first chunk, a very quiet second chunk with exact zeros, a mixed tail.
fn signal() -> Vec<f32> {
    let n = 161_280 * 2 + 120_037;
    let mut state = 12345u64;
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    (0..n)
        .map(|i| {
            let t = i as f32 / 16000.0;
            if i < 161_280 {
                0.9 * (2.0 * std::f32::consts::PI * 440.0 * t).sin() + 0.05 * noise()
            } else if i < 2 * 161_280 {
                if (i / 4000) % 3 == 0 {
                    0.0
                } else {
                    2e-4 * noise()
                }
            } else {
                0.3 * (2.0 * std::f32::consts::PI * (200.0 + 300.0 * t) * t).sin() + 0.01 * noise()
            }
        })
        .collect()
}

fn cat_time(parts: &[Features<Cpu>], pick: impl Fn(&Features<Cpu>) -> &Tensor<Cpu, 3>) -> Vec<f32> {
    parts.iter().flat_map(|f| rows(pick(f))).collect()
}

fn chunked_features(
    m: &Losatok<Cpu>,
    x: &[f32],
    block: usize,
    per_step: usize,
    s: Sampling,
) -> Vec<Features<Cpu>> {
    let mut scan = DbScanner::new(m).unwrap();
    for b in x.chunks(block) {
        scan.push(b);
    }
    let summary = scan.finish().unwrap();
    assert_eq!(summary.samples, x.len());
    let mut enc = ChunkedEncoder::new(m, summary, s, per_step).unwrap();
    let mut out = Vec::new();
    for b in x.chunks(block) {
        out.extend(enc.push(b));
    }
    out.extend(enc.finish().unwrap());
    out
}

#[test]
fn chunked_encoding_equals_whole_signal_encoding() {
    let m = tiny();
    let x = signal();
    let dev = Default::default();
    let whole = m.encode(
        Tensor::from_data(TensorData::new(x.clone(), [1, x.len()]), &dev),
        Sampling::Mean,
    );
    let t = whole.num_frames();
    assert_eq!(t, 252 * 2 + 187);
    for (block, per_step) in [(12_345, 1), (161_280 + 1, 2), (999_999, 1)] {
        let parts = chunked_features(&m, &x, block, per_step, Sampling::Mean);
        for (name, want) in whole.named() {
            let got = cat_time(&parts, |f| {
                f.named().into_iter().find(|(n, _)| *n == name).unwrap().1
            });
            assert_close(
                &format!("{name} (block {block}, {per_step}/step)"),
                &got,
                &rows(want),
                TOL,
            );
        }
    }
}

#[test]
fn a_per_chunk_floor_would_differ() {
    // guard: the quiet chunk alone has a lower maximum, so its own floor would be lower than
    // the whole signal's; the equality above therefore depends on the global floor
    let m = tiny();
    let x = signal();
    let dev = Default::default();
    let front = &m.semantic_encoder.encoder.front_end;
    let whole = front.forward(Tensor::from_data(
        TensorData::new(x.clone(), [1, x.len()]),
        &dev,
    ));
    let quiet = &x[161_280 + 1000..2 * 161_280 - 1000];
    let alone = front.forward(Tensor::from_data(
        TensorData::new(quiet.to_vec(), [1, quiet.len()]),
        &dev,
    ));
    let min_whole: f32 = whole.min().into_scalar();
    let min_alone: f32 = alone.min().into_scalar();
    assert!(min_whole > min_alone + 10.0, "{min_whole} vs {min_alone}");
}

#[test]
fn chunked_sampling_draws_the_same_noise() {
    let m = tiny();
    let x = signal();
    let dev = Default::default();
    let s = Sampling::Seeded(42);
    let whole = m.encode(
        Tensor::from_data(TensorData::new(x.clone(), [1, x.len()]), &dev),
        s,
    );
    let parts = chunked_features(&m, &x, 50_000, 1, s);
    assert_close(
        "z (seeded)",
        &cat_time(&parts, |f| &f.z),
        &rows(&whole.z),
        TOL,
    );
    assert!(
        max_abs_diff(&rows(&whole.z), &rows(&whole.mu)).0 > 0.01,
        "sampling changed nothing"
    );
}

#[test]
fn chunked_decoding_equals_whole_latent_decoding() {
    let m = tiny();
    let x = signal();
    let dev = Default::default();
    let feats = m.encode(
        Tensor::from_data(TensorData::new(x.clone(), [1, x.len()]), &dev),
        Sampling::Mean,
    );
    let whole = to_vec(m.decode(feats.z.clone()));
    let z = rows(&feats.z);
    let d = m.latent_dim();
    for (window, push) in [(100, 37), (252, 1000), (1, 5)] {
        let mut dec = ChunkedDecoder::new(&m, window);
        let mut out = Vec::new();
        for rows in z.chunks(push * d) {
            out.extend(dec.push(rows));
        }
        out.extend(dec.finish());
        assert_eq!(out.len(), whole.len());
        assert_close(
            &format!("decoded (window {window}, push {push})"),
            &out,
            &whole,
            TOL,
        );
    }
}

#[test]
fn too_short_signals_are_an_error_not_a_panic() {
    let m = tiny();
    let mut scan = DbScanner::new(&m).unwrap();
    scan.push(&[0.1; 512]);
    assert_eq!(
        scan.finish().unwrap_err(),
        StreamError::TooShort {
            samples: 512,
            min: 513
        }
    );
    // 513 samples is enough (one token)
    let mut scan = DbScanner::new(&m).unwrap();
    scan.push(&[0.1; 513]);
    let summary = scan.finish().unwrap();
    let mut enc = ChunkedEncoder::new(&m, summary, Sampling::Mean, 1).unwrap();
    assert!(enc.push(&[0.1; 513]).is_empty());
    let parts = enc.finish().unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].num_frames(), 1); // ⌊(⌊513/160⌋ + 1)/4⌋
}

#[test]
fn fifty_hz_models_are_encoded_whole_by_the_file_api() {
    // a 50 Hz model (acoustic patches of 2 frames, semantic features interpolated ×2)
    let mut cfg = LosatokConfig::tiny();
    cfg.frame_rate = 50;
    cfg.tokenizer.patch_stride_time = 2;
    cfg.tokenizer.upsample_tokens = 1;
    cfg.validate().unwrap();
    let dev = Default::default();
    let model = cfg.init::<Cpu>(&dev);
    let tok = losatok::Tokenizer::from_model(model, cfg);
    let tmp = tempfile::tempdir().unwrap();
    let wav = tmp.path().join("in.wav");
    let x: Vec<f32> = signal()[..40_000].to_vec();
    losatok::audio::write_wav(&wav, &x, 16_000, losatok::WavFormat::Float32).unwrap();
    let out = tmp.path().join("out.wav");
    let s = tok
        .reconstruct_file(&wav, &out, &Default::default())
        .unwrap();
    // T = 251 frames: 125 acoustic tokens at 50 Hz, 62 semantic ones interpolated to 124;
    // both are cropped to the shorter (as the reference does) → 124·320 samples
    assert_eq!(s.frames, 124);
    assert_eq!(s.output_samples, 124 * 320);
    let whole = tok
        .reconstruct(
            Tensor::from_data(TensorData::new(x.clone(), [1, x.len()]), &dev),
            Sampling::Mean,
        )
        .unwrap()
        .0;
    let written = losatok::audio::decode(&out).unwrap().samples;
    let want: Vec<f32> = to_vec(whole).iter().map(|v| v.clamp(-1.0, 1.0)).collect();
    assert_eq!(written, want);
}
