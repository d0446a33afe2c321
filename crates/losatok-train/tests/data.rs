//! Tests of the training data pipeline: manifests, deterministic sampling, the loader, error
//! handling and the synthetic data set.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use losatok_audio::{load, probe, WavFormat, WavSpec, WavWriter};
use losatok_train::data::{
    build_manifest, read_crop_16k, read_manifest, synthesize_dataset, BuildOptions, DataConfig,
    DataError, Dataset, Loader, ManifestEntry, SkipStats,
};

const SEG: usize = 8320;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/audio")
}

/// Deterministic test signal: a few tones per channel plus noise.
fn signal(sr: u32, channels: u16, frames: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(frames * usize::from(channels));
    for i in 0..frames {
        let t = i as f64 / f64::from(sr);
        for c in 0..channels {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let noise = ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.1;
            let f = 180.0 + 97.0 * f64::from(c) + 13.0 * (seed % 7) as f64;
            let v = 0.4 * (2.0 * std::f64::consts::PI * f * t).sin()
                + 0.2 * (2.0 * std::f64::consts::PI * 3.1 * f * t).sin()
                + noise;
            out.push(v as f32);
        }
    }
    out
}

fn write_wav(path: &Path, sr: u32, channels: u16, seconds: f64, format: WavFormat, seed: u64) {
    let frames = (seconds * f64::from(sr)).round() as usize;
    let spec = WavSpec {
        sample_rate: sr,
        channels,
        format,
    };
    let mut w = WavWriter::create(path, spec).unwrap();
    w.write(&signal(sr, channels, frames, seed)).unwrap();
    w.finish().unwrap();
}

/// G.711 mu-law encoding of one sample.
fn ulaw(x: f32) -> u8 {
    let mut s = (x.clamp(-1.0, 1.0) * 32767.0) as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(32_635) + 0x84;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// A mu-law WAV (decoded by symphonia, so streamed by the loader). With `keep < 1`, only that
/// fraction of the announced data is written (a truncated file).
fn write_ulaw(path: &Path, sr: u32, channels: u16, seconds: f64, keep: f64, seed: u64) {
    let frames = (seconds * f64::from(sr)).round() as usize;
    let data: Vec<u8> = signal(sr, channels, frames, seed)
        .into_iter()
        .map(ulaw)
        .collect();
    let ch = u32::from(channels);
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(4 + 26 + 12 + 8 + data.len() as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&18u32.to_le_bytes());
    b.extend_from_slice(&7u16.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&sr.to_le_bytes());
    b.extend_from_slice(&(sr * ch).to_le_bytes());
    b.extend_from_slice(&(channels).to_le_bytes());
    b.extend_from_slice(&8u16.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(b"fact");
    b.extend_from_slice(&4u32.to_le_bytes());
    b.extend_from_slice(&(frames as u32).to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    let kept =
        ((data.len() as f64 * keep) as usize) / usize::from(channels) * usize::from(channels);
    b.extend_from_slice(&data[..kept]);
    fs::write(path, b).unwrap();
}

fn config(workers: usize) -> DataConfig {
    DataConfig {
        segment_samples: SEG,
        seed: 1234,
        workers,
        prefetch: 2,
        ..DataConfig::default()
    }
}

fn entry(path: &Path, domain: &str) -> ManifestEntry {
    let secs = probe(path).ok().and_then(|i| i.duration_secs());
    ManifestEntry::new(path, secs, domain)
}

/// A mixed data set: synthetic 16 kHz files, long resampled WAV files (seeked), a long
/// mu-law file (streamed) and the short fixtures of every format.
fn mixed_set(dir: &Path) -> Vec<ManifestEntry> {
    let manifest = synthesize_dataset(&dir.join("synth"), 9.0, 5).unwrap();
    let mut entries = read_manifest(&manifest).unwrap();
    let p = dir.join("long_44k_stereo.wav");
    write_wav(&p, 44_100, 2, 4.0, WavFormat::Pcm16, 1);
    entries.push(entry(&p, "music"));
    let p = dir.join("long_48k_f32.wav");
    write_wav(&p, 48_000, 1, 3.0, WavFormat::Float32, 2);
    entries.push(entry(&p, "speech"));
    let p = dir.join("long_ulaw_22k.wav");
    write_ulaw(&p, 22_050, 2, 3.0, 1.0, 3);
    entries.push(entry(&p, "general"));
    for name in [
        "s16_22k_stereo.flac",
        "mp3_44k_mono.mp3",
        "vorbis_22k_stereo.ogg",
        "ms_adpcm_8k_stereo.wav",
        "f32_8k_10ch.wav",
    ] {
        entries.push(entry(&fixtures().join(name), "general"));
    }
    entries
}

fn batches(loader: &mut Loader, steps: impl IntoIterator<Item = u64>) -> Vec<Vec<u32>> {
    steps
        .into_iter()
        .map(|s| {
            let b = loader.batch(s).unwrap();
            assert_eq!(b.step, s);
            assert_eq!(b.audio.len(), b.batch * b.samples);
            b.audio.iter().map(|v| v.to_bits()).collect()
        })
        .collect()
}

#[test]
fn manifest_files_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(
        d.join("m.jsonl"),
        "{\"path\": \"a/x.wav\", \"duration\": 2.5, \"domain\": \"speech\"}\n\
         {\"path\": \"/abs/y.flac\"}\n",
    )
    .unwrap();
    let e = read_manifest(&d.join("m.jsonl")).unwrap();
    assert_eq!(
        e,
        vec![
            ManifestEntry::new(d.join("a/x.wav"), Some(2.5), "speech"),
            ManifestEntry::new("/abs/y.flac", None, "general"),
        ]
    );
    fs::write(
        d.join("m.tsv"),
        "path\tduration\tdomain\nb.wav\t1.5\tmusic\nc.wav\n",
    )
    .unwrap();
    let e = read_manifest(&d.join("m.tsv")).unwrap();
    assert_eq!(
        e,
        vec![
            ManifestEntry::new(d.join("b.wav"), Some(1.5), "music"),
            ManifestEntry::new(d.join("c.wav"), None, "general"),
        ]
    );
    // Content detection without a known extension.
    fs::write(d.join("list"), "\n{\"path\": \"z.wav\"}\n").unwrap();
    assert_eq!(
        read_manifest(&d.join("list")).unwrap()[0].path,
        d.join("z.wav")
    );

    fs::write(
        d.join("bad.jsonl"),
        "{\"path\": \"a.wav\"}\n\n{\"path\": \"b.wav\",}\n",
    )
    .unwrap();
    let msg = read_manifest(&d.join("bad.jsonl")).unwrap_err().to_string();
    assert!(msg.contains("bad.jsonl:3: invalid JSON"), "{msg}");
    fs::write(d.join("bad.tsv"), "a.wav\t1\nb.wav\tlong\n").unwrap();
    let msg = read_manifest(&d.join("bad.tsv")).unwrap_err().to_string();
    assert!(
        msg.contains("bad.tsv:2: invalid duration \"long\""),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    let msg = read_manifest(&d.join("missing.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("cannot read ") && msg.contains("missing.jsonl"),
        "{msg}"
    );
}

#[test]
fn build_manifest_walks_a_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    for sub in ["speech/a", "music", ".hidden"] {
        fs::create_dir_all(root.join(sub)).unwrap();
    }
    write_wav(
        &root.join("speech/a/x.wav"),
        16_000,
        1,
        1.0,
        WavFormat::Pcm16,
        1,
    );
    write_wav(
        &root.join("speech/y.WAV"),
        16_000,
        1,
        0.5,
        WavFormat::Float32,
        2,
    );
    write_wav(
        &root.join("music/z.wav"),
        44_100,
        2,
        0.75,
        WavFormat::Pcm16,
        3,
    );
    fs::copy(
        fixtures().join("s16_22k_stereo.flac"),
        root.join("music/f.flac"),
    )
    .unwrap();
    write_wav(&root.join("top.wav"), 16_000, 1, 0.25, WavFormat::Pcm16, 4);
    write_wav(
        &root.join(".hidden/h.wav"),
        16_000,
        1,
        0.25,
        WavFormat::Pcm16,
        5,
    );
    fs::write(root.join("music/bad.wav"), b"RIFF\x10\0\0\0WAVEjunkjunk").unwrap();
    fs::write(root.join("notes.txt"), "not audio").unwrap();
    let other = dir.path().join("other");
    fs::create_dir_all(other.join("deep")).unwrap();
    write_wav(
        &other.join("deep/q.wav"),
        16_000,
        1,
        2.0,
        WavFormat::Pcm16,
        6,
    );

    let out = root.join("manifest.jsonl");
    let roots = [
        (root.clone(), None),
        (other.clone(), Some("extra".to_string())),
    ];
    let report = build_manifest(&roots, &out, &BuildOptions::default()).unwrap();
    let got: Vec<(PathBuf, String)> = report
        .entries
        .iter()
        .map(|e| (e.path.clone(), e.domain.clone()))
        .collect();
    let want = vec![
        (root.join("music/f.flac"), "music".to_string()),
        (root.join("music/z.wav"), "music".to_string()),
        (root.join("speech/a/x.wav"), "speech".to_string()),
        (root.join("speech/y.WAV"), "speech".to_string()),
        (root.join("top.wav"), "general".to_string()),
        (other.join("deep/q.wav"), "extra".to_string()),
    ];
    assert_eq!(got, want);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].0, root.join("music/bad.wav"));
    assert!(!report.skipped[0].1.contains('\n'));
    let d = |i: usize| report.entries[i].duration.unwrap();
    assert!((d(1) - 0.75).abs() < 1e-4 && (d(2) - 1.0).abs() < 1e-9 && (d(5) - 2.0).abs() < 1e-9);
    assert!((report.total_seconds() - (d(0) + 0.75 + 1.0 + 0.5 + 0.25 + 2.0)).abs() < 1e-6);
    assert_eq!(report.domains["speech"].files, 2);

    // Paths under the manifest's folder are relative; reading resolves them back.
    let text = fs::read_to_string(&out).unwrap();
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("\"path\":\"music/f.flac\""),
        "{text}"
    );
    assert!(text.contains(&other.join("deep/q.wav").display().to_string()));
    let back = read_manifest(&out).unwrap();
    assert_eq!(back.len(), report.entries.len());
    for (a, b) in back.iter().zip(&report.entries) {
        assert_eq!((&a.path, &a.domain), (&b.path, &b.domain));
        assert!((a.duration.unwrap() - b.duration.unwrap()).abs() < 1e-6);
    }

    // Deterministic output; no temporary files left behind.
    let first = fs::read(&out).unwrap();
    build_manifest(
        &roots,
        &out,
        &BuildOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(fs::read(&out).unwrap(), first);
    let leftovers: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());

    // Errors: missing root, nothing found.
    assert!(build_manifest(
        &[(dir.path().join("nope"), None)],
        &out,
        &BuildOptions::default()
    )
    .is_err());
    let empty = dir.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let e = build_manifest(&[(empty, None)], &out, &BuildOptions::default()).unwrap_err();
    assert!(matches!(e, DataError::NoData(_)), "{e}");
}

#[test]
fn batches_do_not_depend_on_workers_or_resume() {
    let dir = tempfile::tempdir().unwrap();
    let entries = mixed_set(dir.path());
    let steps = 0..6u64;
    let mut reference = None;
    for workers in [0, 1, 3] {
        let mut loader = Loader::new(entries.clone(), &config(workers), 1, 2, 3).unwrap();
        let got = batches(&mut loader, steps.clone());
        match &reference {
            None => reference = Some(got),
            Some(r) => assert!(r == &got, "{workers} workers gave different batches"),
        }
        assert_eq!(loader.skipped(), SkipStats::default());
    }

    // Resume: a loader created at step 57 gives the same batches as one run from step 0.
    let mut a = Loader::new(entries.clone(), &config(2), 0, 2, 3).unwrap();
    let all = batches(&mut a, 0..=59);
    let mut b = Loader::new(entries.clone(), &config(3), 0, 2, 3).unwrap();
    b.prefetch_from(57);
    assert_eq!(batches(&mut b, [57, 58, 59]), all[57..=59].to_vec());
    // Jumping back and forth is fine too.
    assert_eq!(
        batches(&mut b, [3, 40, 41]),
        vec![all[3].clone(), all[40].clone(), all[41].clone()]
    );
    let mut c = Loader::new(entries, &config(0), 0, 2, 3).unwrap();
    assert_eq!(batches(&mut c, [57]), all[57..=57].to_vec());

    // Every format shows up, and items carry their origin.
    let mut seen = HashSet::new();
    let mut d = Loader::new(mixed_set(dir.path()), &config(2), 0, 1, 8).unwrap();
    for s in 0..40 {
        let batch = d.batch(s).unwrap();
        for (i, info) in batch.items.iter().enumerate() {
            assert_eq!(info.index, s * 8 + i as u64);
            assert!(info.valid_samples <= SEG);
            let row = batch.row(i);
            assert!(row[info.valid_samples..].iter().all(|&v| v == 0.0));
            assert!(row.iter().all(|v| v.is_finite() && v.abs() <= 1.5));
            seen.insert(info.path.extension().unwrap().to_string_lossy().to_string());
        }
    }
    for ext in ["wav", "flac", "mp3", "ogg"] {
        assert!(seen.contains(ext), "{ext} never drawn: {seen:?}");
    }
}

#[test]
fn ranks_get_disjoint_parts_of_the_global_batch() {
    let dir = tempfile::tempdir().unwrap();
    let entries = read_manifest(&synthesize_dataset(dir.path(), 12.0, 9).unwrap()).unwrap();
    let cfg = config(1);
    let dataset = Arc::new(Dataset::new(entries, &cfg).unwrap());
    let (world, per_rank) = (4usize, 2usize);
    let step = 5u64;
    let mut indices = Vec::new();
    let mut crops = HashSet::new();
    for rank in 0..world {
        let mut loader =
            Loader::with_dataset(dataset.clone(), 1, 1, rank, world, per_rank).unwrap();
        assert_eq!(loader.global_batch(), 8);
        let batch = loader.batch(step).unwrap();
        for (i, info) in batch.items.iter().enumerate() {
            indices.push(info.index);
            crops.insert((info.path.clone(), info.offset));
            let item = dataset.item(info.index).unwrap();
            assert_eq!(item.info, *info);
            assert_eq!(item.audio, batch.row(i));
        }
    }
    indices.sort_unstable();
    assert_eq!(indices, (40..48).collect::<Vec<u64>>());
    assert_eq!(crops.len(), 8, "ranks drew the same crop");
}

#[test]
fn domain_and_file_weights_are_respected() {
    let mut entries = Vec::new();
    for i in 0..50 {
        entries.push(ManifestEntry::new(format!("/a/{i}.wav"), Some(3.0), "a"));
    }
    for i in 0..10 {
        entries.push(ManifestEntry::new(format!("/b/{i}.wav"), Some(3.0), "b"));
    }
    entries.push(ManifestEntry::new("/c/0.wav", Some(3.0), "c"));
    let mut cfg = config(0);
    cfg.domain_weights = BTreeMap::from([("a".into(), 3.0), ("b".into(), 1.0), ("c".into(), 0.0)]);
    let ds = Dataset::new(entries.clone(), &cfg).unwrap();
    let mut counts = BTreeMap::new();
    for g in 0..4000u64 {
        *counts.entry(ds.draw(g, 0).0.to_string()).or_insert(0usize) += 1;
    }
    let a = counts["a"] as f64 / 4000.0;
    assert!((a - 0.75).abs() < 0.025, "{counts:?}");
    assert!(!counts.contains_key("c"));
    assert_eq!(ds.domain_infos().len(), 2);

    // Within a domain, files are drawn in proportion to their duration.
    let two = vec![
        ManifestEntry::new("/s/short.wav", Some(10.0), "x"),
        ManifestEntry::new("/s/long.wav", Some(30.0), "x"),
    ];
    let ds = Dataset::new(two, &config(0)).unwrap();
    let long = (0..4000u64)
        .filter(|&g| ds.draw(g, 0).1.ends_with("long.wav"))
        .count() as f64
        / 4000.0;
    assert!((long - 0.75).abs() < 0.025, "{long}");

    // Nothing left: a clear error.
    cfg.domain_weights = BTreeMap::from([("a".into(), 0.0), ("b".into(), 0.0), ("c".into(), 0.0)]);
    let e = Dataset::new(entries.clone(), &cfg).unwrap_err().to_string();
    assert!(e.contains("weight 0") && e.contains("a, b, c"), "{e}");
    cfg.domain_weights.clear();
    cfg.min_duration = Some(5.0);
    let e = Dataset::new(entries, &cfg).unwrap_err().to_string();
    assert!(e.contains("shorter than min_duration"), "{e}");
    let e = Dataset::new(Vec::new(), &config(0))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("no usable audio"), "{e}");
}

#[test]
fn unreadable_files_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut entries = Vec::new();
    for i in 0..4 {
        let p = d.join(format!("good{i}.wav"));
        write_wav(&p, 16_000, 1, 1.5, WavFormat::Pcm16, i);
        entries.push(entry(&p, "general"));
    }
    fs::write(d.join("garbage.wav"), b"this is not a wav file at all").unwrap();
    let trunc = d.join("truncated.wav");
    write_wav(&trunc, 16_000, 1, 1.0, WavFormat::Pcm16, 9);
    let bytes = fs::read(&trunc).unwrap();
    fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    fs::write(d.join("empty.wav"), b"").unwrap();
    let short_ulaw = d.join("cut_ulaw.wav");
    write_ulaw(&short_ulaw, 8_000, 1, 0.4, 0.5, 4);
    for name in [
        "garbage.wav",
        "truncated.wav",
        "empty.wav",
        "missing.wav",
        "cut_ulaw.wav",
    ] {
        entries.push(ManifestEntry::new(d.join(name), Some(1.0), "general"));
    }
    let mut reference = None;
    for workers in [0, 3] {
        let mut loader = Loader::new(entries.clone(), &config(workers), 0, 1, 4).unwrap();
        let mut got = Vec::new();
        for s in 0..25 {
            let batch = loader.batch(s).unwrap();
            for info in &batch.items {
                let name = info.path.file_name().unwrap().to_string_lossy();
                assert!(name.starts_with("good"), "{name}");
            }
            got.push(batch.audio);
        }
        match &reference {
            None => reference = Some(got),
            Some(r) => assert!(r == &got),
        }
        let stats = loader.skipped();
        assert_eq!(stats.broken_files, 5, "{stats:?}");
        assert!(stats.replaced_items > 0 && stats.failed_draws >= stats.replaced_items);
        let broken = loader.broken_files();
        let names: Vec<String> = broken
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "garbage.wav",
                "truncated.wav",
                "empty.wav",
                "missing.wav",
                "cut_ulaw.wav"
            ]
        );
        for (p, msg) in &broken {
            assert!(
                msg.contains(&*p.to_string_lossy()) && !msg.contains('\n'),
                "{msg}"
            );
        }
        assert!(broken[1].1.contains("truncated"), "{}", broken[1].1);
    }
}

#[test]
fn a_partly_decodable_stream_is_used_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.wav");
    // 6 s announced, 3 s present: crops in the first part load, later ones fail.
    write_ulaw(&p, 22_050, 1, 6.0, 0.5, 7);
    let other = dir.path().join("ok.wav");
    write_wav(&other, 16_000, 1, 2.0, WavFormat::Pcm16, 8);
    let entries = vec![
        ManifestEntry::new(&p, Some(6.0), "general"),
        ManifestEntry::new(&other, Some(2.0), "general"),
    ];
    let mut reference = None;
    for workers in [0, 1, 3] {
        let mut loader = Loader::new(entries.clone(), &config(workers), 0, 1, 4).unwrap();
        let mut got = Vec::new();
        let mut from_cut = 0;
        for s in 0..30 {
            let b = loader.batch(s).unwrap();
            for info in &b.items {
                if info.path == p {
                    from_cut += 1;
                    // Region end (crop + margin) lies within the 3 s that exist.
                    assert!(info.offset + SEG as u64 + 512 <= 48_000, "{}", info.offset);
                }
            }
            got.push((b.audio, b.items));
        }
        assert!(from_cut > 0);
        let stats = loader.skipped();
        assert_eq!(stats.broken_files, 0);
        assert!(stats.failed_draws > 0);
        match &reference {
            None => reference = Some(got),
            Some(r) => assert!(r == &got, "{workers} workers differ"),
        }
    }
}

#[test]
fn all_broken_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("a.wav"), b"garbage").unwrap();
    fs::write(d.join("b.flac"), b"fLaC garbage").unwrap();
    let entries = vec![
        ManifestEntry::new(d.join("a.wav"), Some(2.0), "speech"),
        ManifestEntry::new(d.join("b.flac"), None, "music"),
        ManifestEntry::new(d.join("c.wav"), None, "music"),
    ];
    for workers in [0, 2] {
        let mut loader = Loader::new(entries.clone(), &config(workers), 0, 1, 2).unwrap();
        let e = loader.batch(0).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("all 3 audio files are unreadable"), "{msg}");
        assert!(!msg.contains('\n'));
        assert!(loader.batch(1).is_err());
        assert_eq!(loader.skipped().broken_files, 3);
    }
}

#[test]
fn short_files_are_zero_padded() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("short.wav");
    write_wav(&p, 16_000, 1, 0.2, WavFormat::Float32, 3);
    let mut loader = Loader::new(vec![entry(&p, "speech")], &config(0), 0, 1, 2).unwrap();
    let b = loader.batch(0).unwrap();
    let full = load(&p).unwrap();
    for (i, info) in b.items.iter().enumerate() {
        assert_eq!((info.offset, info.valid_samples), (0, 3200));
        assert_eq!(&b.row(i)[..3200], &full[..]);
        assert!(b.row(i)[3200..].iter().all(|&v| v == 0.0));
    }
}

#[test]
fn whole_file_crops_match_load_for_every_format() {
    for name in [
        "u8_22k_stereo.wav",
        "s24_22k_stereo.wav",
        "s32_22k_stereo.wav",
        "f32_22k_stereo.wav",
        "f64_22k_stereo.wav",
        "s16_22k_stereo.flac",
        "s24_22k_stereo.flac",
        "vorbis_22k_stereo.ogg",
        "mp3_22k_stereo.mp3",
        "mp3_44k_mono.mp3",
        "s16_48k_mono.wav",
        "s16_32k_6ch.wav",
        "f32_8k_10ch.wav",
        "f32_16k_mono.wav",
        "ulaw_8k_stereo.wav",
        "ms_adpcm_8k_stereo.wav",
    ] {
        let p = fixtures().join(name);
        let full = load(&p).unwrap();
        assert!(full.len() < SEG, "{name} is not short");
        let (crop, valid) = read_crop_16k(&p, 0, SEG).unwrap();
        assert_eq!(valid, full.len(), "{name}");
        assert!(
            crop[..valid]
                .iter()
                .zip(&full)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}"
        );
        assert!(crop[valid..].iter().all(|&v| v == 0.0));
    }
}

#[test]
fn crops_of_long_files_match_load() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(PathBuf, bool)> = vec![
        (dir.path().join("a.wav"), false),
        (dir.path().join("b.wav"), false),
        (dir.path().join("c.wav"), true),
        (dir.path().join("u.wav"), false),
    ];
    write_wav(&cases[0].0, 44_100, 2, 5.0, WavFormat::Pcm16, 1);
    write_wav(&cases[1].0, 11_025, 1, 5.0, WavFormat::Float32, 2);
    write_wav(&cases[2].0, 16_000, 2, 5.0, WavFormat::Pcm16, 3);
    write_ulaw(&cases[3].0, 22_050, 2, 5.0, 1.0, 4);
    for (p, exact) in &cases {
        let full = load(p).unwrap();
        let last = (full.len() - SEG) as u64;
        for offset in [0, 333, 20_000, last / 2 + 1, last] {
            let (crop, valid) = read_crop_16k(p, offset, SEG).unwrap();
            assert_eq!(valid, SEG);
            let want = &full[offset as usize..offset as usize + SEG];
            let err = crop
                .iter()
                .zip(want)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            if *exact {
                assert_eq!(err, 0.0);
            } else {
                assert!(err < 1e-6, "{} at {offset}: {err}", p.display());
            }
        }
        // Past the end: zero padding.
        let (crop, valid) = read_crop_16k(p, full.len() as u64 - 100, SEG).unwrap();
        assert_eq!(valid, 100);
        assert!(crop[100..].iter().all(|&v| v == 0.0));
    }
}

#[test]
fn loader_arguments_are_validated() {
    let entries = vec![ManifestEntry::new("/x.wav", None, "speech")];
    for bad in [8192usize, 8000, 640, 16_001] {
        let mut cfg = config(0);
        cfg.segment_samples = bad;
        let e = Loader::new(entries.clone(), &cfg, 0, 1, 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid data configuration: segment_samples must be a multiple of 640"),
            "{e}"
        );
    }
    assert!(Loader::new(entries.clone(), &config(0), 2, 2, 1).is_err());
    assert!(Loader::new(entries.clone(), &config(0), 0, 0, 1).is_err());
    assert!(Loader::new(entries.clone(), &config(0), 0, 1, 0).is_err());
    let mut cfg = config(0);
    cfg.domain_weights.insert("speech".into(), -2.0);
    assert!(Loader::new(entries, &cfg, 0, 1, 1).is_err());
}

#[test]
fn data_config_deserializes_with_defaults() {
    let cfg: DataConfig = serde_json::from_str(
        r#"{"segment_samples": 16000, "domain_weights": {"speech": 2.0, "music": 0}, "seed": 7}"#,
    )
    .unwrap();
    assert_eq!(cfg.segment_samples, 16_000);
    assert_eq!(cfg.domain_weights["music"], 0.0);
    assert_eq!((cfg.seed, cfg.workers), (7, DataConfig::default().workers));
    assert!(serde_json::from_str::<DataConfig>(r#"{"segment": 16000}"#).is_err());
}

#[test]
fn loader_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let entries = read_manifest(&synthesize_dataset(dir.path(), 6.0, 2).unwrap()).unwrap();
    let mut cfg = config(4);
    cfg.prefetch = 8;
    for _ in 0..5 {
        let mut loader = Loader::new(entries.clone(), &cfg, 0, 1, 4).unwrap();
        loader.batch(0).unwrap();
        drop(loader);
    }
    // A loader that is never asked for anything also stops.
    drop(Loader::new(entries, &cfg, 0, 1, 4).unwrap());
}

#[test]
fn synthetic_dataset_is_deterministic() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ma = synthesize_dataset(a.path(), 7.0, 11).unwrap();
    let mb = synthesize_dataset(b.path(), 7.0, 11).unwrap();
    assert_eq!(fs::read(&ma).unwrap(), fs::read(&mb).unwrap());
    let entries = read_manifest(&ma).unwrap();
    let mut per_domain: BTreeMap<String, f64> = BTreeMap::new();
    for e in &entries {
        let rel = e.path.strip_prefix(a.path()).unwrap();
        assert_eq!(
            fs::read(&e.path).unwrap(),
            fs::read(b.path().join(rel)).unwrap()
        );
        let info = probe(&e.path).unwrap();
        assert_eq!((info.sample_rate, info.channels), (16_000, 1));
        let secs = e.duration.unwrap();
        assert!((2.0..=6.0).contains(&secs), "{secs}");
        assert!((info.duration_secs().unwrap() - secs).abs() < 1e-6);
        *per_domain.entry(e.domain.clone()).or_default() += secs;
        let audio = load(&e.path).unwrap();
        let peak = audio.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(peak > 0.25 && peak <= 0.9, "{peak}");
    }
    assert_eq!(per_domain.len(), 3);
    for secs in per_domain.values() {
        assert!((secs - 7.0).abs() < 1e-5, "{per_domain:?}");
    }
    let c = tempfile::tempdir().unwrap();
    let mc = synthesize_dataset(c.path(), 7.0, 12).unwrap();
    assert_ne!(
        fs::read(&ma).unwrap(),
        fs::read(&mc).unwrap_or_default().clone()
    );
    assert!(synthesize_dataset(c.path(), 0.5, 1).is_err());
}
