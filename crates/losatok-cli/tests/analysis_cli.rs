//! `losatok analyze` and `losatok eval` end to end, with the tiny test model on synthetic audio:
//! the outputs exist, the numbers are finite and consistent with each other, known answers
//! (identical files → zero distances) hold, and existing outputs are never overwritten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use losatok::WavFormat;
use losatok_eval::analyze::ANALYSIS_OUTPUTS;
use losatok_eval::metrics::SI_SDR_CAP_DB;
use losatok_eval::Projection;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/model")
}

fn model_args() -> Vec<String> {
    let f = fixtures();
    vec![
        "--checkpoint".into(),
        f.join("losatok_tiny.pth").display().to_string(),
        "--config".into(),
        f.join("tiny_config.yml").display().to_string(),
    ]
}

fn losatok(args: &[&str], with_model: bool) -> Output {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if with_model {
        all.extend(model_args());
    }
    Command::new(env!("CARGO_BIN_EXE_losatok"))
        .args(&all)
        .env_remove("LOSATOK_CHECKPOINT")
        .output()
        .expect("run losatok")
}

fn ok(args: &[&str], with_model: bool) -> String {
    let out = losatok(args, with_model);
    assert!(
        out.status.success(),
        "losatok {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A deterministic speech-like or tonal test signal.
fn signal(seconds: f64, kind: u32) -> Vec<f32> {
    let n = (seconds * 16_000.0) as usize;
    let mut s = 0x1234_5678u32 ^ kind;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let noise = (s as f32 / u32::MAX as f32 - 0.5) * 0.05;
            let t = i as f32 / 16_000.0;
            let f0 = 110.0 * (kind + 1) as f32;
            let env = 0.5 + 0.5 * (t * 3.0 * (kind + 1) as f32).sin();
            0.3 * env * (2.0 * std::f32::consts::PI * f0 * t).sin() + noise
        })
        .collect()
}

/// `root/speech/{a,b}.wav`, `root/music/c.wav`.
fn corpus(root: &Path) -> Vec<PathBuf> {
    let files = [
        ("speech/a.wav", 2.5, 0),
        ("speech/b.wav", 2.0, 1),
        ("music/c.wav", 3.0, 2),
    ];
    files
        .iter()
        .map(|(rel, secs, kind)| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            losatok::audio::write_wav(&p, &signal(*secs, *kind), 16_000, WavFormat::Pcm16).unwrap();
            p
        })
        .collect()
}

/// CSV rows as maps from the header's names.
fn csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines
        .map(|l| {
            let fields: Vec<&str> = if l.contains('"') {
                // only the `source` column is quoted; split it out
                let (a, rest) = l.split_once(",\"").unwrap();
                let (q, b) = rest.split_once("\",").unwrap();
                a.split(',').chain([q]).chain(b.split(',')).collect()
            } else {
                l.split(',').collect()
            };
            assert_eq!(fields.len(), header.len(), "{l}");
            header
                .iter()
                .cloned()
                .zip(fields.iter().map(|s| s.to_string()))
                .collect()
        })
        .collect()
}

fn f(row: &BTreeMap<String, String>, k: &str) -> f64 {
    row[k]
        .parse()
        .unwrap_or_else(|_| panic!("{k} = {}", row[k]))
}

#[test]
fn analyze_writes_consistent_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    corpus(&data);
    let out = dir.path().join("out");
    let (d, o) = (data.display().to_string(), out.display().to_string());
    let stdout = ok(&["analyze", &d, "--out", &o], true);
    assert!(stdout.contains("analysed 3 file(s)"), "{stdout}");
    for name in ANALYSIS_OUTPUTS {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    for name in [
        "explained_variance_music.png",
        "explained_variance_speech.png",
    ] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    let png = std::fs::read(out.join("explained_variance.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    let rows = csv(&out.join("analysis.csv"));
    assert_eq!(rows.len(), 3 * 7, "music, speech, all × 7 kinds");
    for r in &rows {
        let (erank, dim, pca90) = (f(r, "effective_rank"), f(r, "dim"), f(r, "pca90"));
        assert!(
            erank.is_finite() && (1.0 - 1e-9..=dim + 1e-9).contains(&erank),
            "{r:?}"
        );
        assert!(pca90 >= 1.0 && pca90 <= dim, "{r:?}");
        assert!(f(r, "total_variance") > 0.0, "{r:?}");
    }
    let get = |domain: &str, feature: &str| {
        rows.iter()
            .find(|r| r["domain"] == domain && r["feature"] == feature)
            .unwrap_or_else(|| panic!("no row {domain}/{feature}"))
            .clone()
    };
    // 25 frames per second: 2.5 s → 62, 2 s → 50, 3 s → 75 (⌊(⌊N/160⌋+1)/4⌋).
    assert_eq!(f(&get("speech", "z"), "frames"), 62.0 + 50.0);
    assert_eq!(f(&get("music", "z"), "frames"), 75.0);
    assert_eq!(f(&get("all", "semantic"), "frames"), 187.0);
    assert_eq!(f(&get("all", "semantic"), "files"), 3.0);
    // The tiny model's semantic features are 64-d: PCA keeps min(128, 64) = 64 axes, so its
    // spectrum (pooled) equals the semantic one; channel merging gives ⌈64/10⌉ = 7 channels.
    let (sem, pca) = (get("all", "semantic"), get("all", "pca"));
    assert_eq!(f(&pca, "dim"), 64.0);
    assert!((f(&sem, "effective_rank") - f(&pca, "effective_rank")).abs() < 1e-3);
    assert_eq!(sem["pca90"], pca["pca90"]);
    assert_eq!(f(&get("all", "channel_merge"), "dim"), 7.0);
    // Averaging channels cannot add variance: tr(WCWᵀ) ≤ tr(C)/10 · … ≤ tr(C).
    assert!(f(&get("all", "channel_merge"), "total_variance") <= f(&sem, "total_variance"));

    let p = Projection::load(&out.join("pca128.safetensors")).unwrap();
    assert_eq!(
        (p.kind.as_str(), p.input_dim, p.output_dim, p.frames),
        ("pca", 64, 64, 187)
    );
    let ev = p.explained_variance.unwrap();
    assert!((ev.iter().sum::<f64>() - f(&sem, "total_variance")).abs() < 1e-3 * ev[0]);
    let m = Projection::load(&out.join("channel_merge128.safetensors")).unwrap();
    assert_eq!((m.input_dim, m.output_dim), (64, 7));

    // Outputs are never overwritten without --force; nothing changes.
    let before = std::fs::read(out.join("analysis.csv")).unwrap();
    let err = losatok(&["analyze", &d, "--out", &o], true);
    assert!(!err.status.success());
    let msg = String::from_utf8_lossy(&err.stderr);
    assert_eq!(msg.trim_end().lines().count(), 1, "{msg}");
    assert!(msg.contains("--force"), "{msg}");
    assert_eq!(std::fs::read(out.join("analysis.csv")).unwrap(), before);

    // A manifest with its own domains, limited to two files and one second each.
    let manifest = dir.path().join("m.jsonl");
    std::fs::write(
        &manifest,
        "{\"path\": \"data/music/c.wav\", \"domain\": \"tones\"}\n\
         {\"path\": \"data/speech/a.wav\", \"domain\": \"voices\"}\n\
         {\"path\": \"data/speech/b.wav\", \"domain\": \"voices\"}\n",
    )
    .unwrap();
    let out2 = dir.path().join("out2");
    let (m, o2) = (manifest.display().to_string(), out2.display().to_string());
    ok(
        &[
            "analyze",
            &m,
            "--out",
            &o2,
            "--max-files",
            "2",
            "--max-seconds",
            "1",
        ],
        true,
    );
    let rows = csv(&out2.join("analysis.csv"));
    let domains: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r["domain"].as_str()).collect();
    assert_eq!(domains, ["all", "tones", "voices"].into_iter().collect());
    let all = rows
        .iter()
        .find(|r| r["domain"] == "all" && r["feature"] == "z")
        .unwrap();
    assert_eq!((f(all, "files"), f(all, "frames")), (2.0, 50.0));
}

#[test]
fn eval_gives_known_answers_and_consistent_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let refs = dir.path().join("refs");
    corpus(&refs);
    let r = refs.display().to_string();

    // Identical copies: zero distances, SI-SDR at its cap.
    let copies = dir.path().join("copies");
    corpus(&copies);
    let out = dir.path().join("same");
    let (c, o) = (copies.display().to_string(), out.display().to_string());
    let stdout = ok(&["eval", &r, "--recon", &c, "--out", &o], false);
    assert!(stdout.contains("3 file(s)"), "{stdout}");
    let rows = csv(&out.join("eval.csv"));
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert_eq!(f(row, "mel"), 0.0);
        assert_eq!(f(row, "stft"), 0.0);
        assert_eq!(f(row, "si_sdr"), SI_SDR_CAP_DB);
        assert_eq!(row["rtf"], "");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval_summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["files"], 3);
    assert_eq!(summary["metrics"]["mel"]["mean"], 0.0);
    assert!(summary["metrics"].get("rtf").is_none());

    // On the fly: reconstructions written, finite metrics, a real-time factor.
    let fly = dir.path().join("fly");
    let fl = fly.display().to_string();
    ok(&["eval", &r, "--out", &fl], true);
    let rows = csv(&fly.join("eval.csv"));
    assert_eq!(rows.len(), 3);
    for row in &rows {
        for k in ["mel", "stft", "si_sdr", "rtf"] {
            assert!(f(row, k).is_finite(), "{row:?}");
        }
        assert!(f(row, "mel") > 0.0 && f(row, "stft") > 0.0 && f(row, "rtf") > 0.0);
        assert!(fly.join("recon").join(&row["file"]).is_file(), "{row:?}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fly.join("eval_summary.json")).unwrap())
            .unwrap();
    assert!(summary["overall_rtf"].as_f64().unwrap() > 0.0);
    // The same reconstructions evaluated from disk give the same numbers.
    let again = dir.path().join("again");
    let (rc, ag) = (
        fly.join("recon").display().to_string(),
        again.display().to_string(),
    );
    ok(&["eval", &r, "--recon", &rc, "--out", &ag], false);
    for (a, b) in rows.iter().zip(csv(&again.join("eval.csv"))) {
        assert_eq!(a["file"], b["file"]);
        for k in ["seconds", "mel", "stft", "si_sdr"] {
            assert_eq!(a[k], b[k], "{k}");
        }
    }

    // A missing estimate: listed, the others still evaluated, non-zero exit.
    std::fs::remove_file(copies.join("music/c.wav")).unwrap();
    let partial = dir.path().join("partial");
    let p = partial.display().to_string();
    let out = losatok(&["eval", &r, "--recon", &c, "--out", &p], false);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("c.wav"));
    assert_eq!(csv(&partial.join("eval.csv")).len(), 2);
}
