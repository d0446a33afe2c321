//! Parity of the whole inference path against the reference PyTorch fixtures
//! (`tests/fixtures/model/`, tiny sizes, all DSP constants real): every intermediate of cases a
//! (2.3 s), b (10.5 s, two 252-token chunks) and c (batch of 2, per-item top_db), the
//! layer-scale / no-qkv-bias variant, both checkpoint wrappings and the semantic-encoder path.
//!
//! Tolerances: the fixture README's suggested max-abs values for a float32 port (an independent
//! f32 implementation measured 3–10× below each).

mod common;

use std::path::Path;

use burn::prelude::*;
use common::*;
use losatok_models::checkpoint::{
    load_losatok, open_losatok_checkpoint, torch_names, CheckpointError, Problem, TensorSource,
};
use losatok_models::{Losatok, LosatokConfig, Sampling};

/// dB log-mel (values up to ~100 dB).
const TOL_SEM_LOGMEL: f32 = 1e-3;
const TOL_SEM_BN: f32 = 1e-4;
const TOL_AC_LOGMEL: f32 = 2e-4;
/// Patch embeddings and first-chunk block outputs (values up to ~36).
const TOL_PATCH: f32 = 2e-4;
/// Embeddings, SemBo, mu, logvar, decoder activations, head projection.
const TOL_EMB: f32 = 1e-4;
/// The complex spectrum S = min(exp(logmag), 100)·e^{iφ} (values up to 100).
const TOL_SPEC: f32 = 5e-3;
/// Decoded waveform.
const TOL_DECODED: f32 = 1e-4;

fn model_dir() -> std::path::PathBuf {
    fixture_path("model")
}

fn tiny_config() -> LosatokConfig {
    LosatokConfig::from_file(model_dir().join("tiny_config.yml")).expect("tiny config")
}

fn load(path: &Path, cfg: &LosatokConfig) -> Result<Losatok<Cpu>, CheckpointError> {
    let src = open_losatok_checkpoint(path, cfg)?;
    Ok(load_losatok::<Cpu>(cfg, &src, path, &Default::default())?.0)
}

fn tiny() -> Losatok<Cpu> {
    load(&model_dir().join("losatok_tiny.pth"), &tiny_config()).expect("tiny checkpoint loads")
}

fn io() -> Fixture {
    Fixture::open("model/tiny_io.safetensors")
}

fn check(f: &Fixture, key: &str, got: Tensor<Cpu, 3>, tol: f32) {
    let (want, shape) = f.get(key);
    assert_eq!(got.dims().to_vec(), shape, "{key}: shape");
    assert_close(key, &to_vec(got), &want, tol);
}

fn check2(f: &Fixture, key: &str, got: Tensor<Cpu, 2>, tol: f32) {
    let (want, shape) = f.get(key);
    assert_eq!(got.dims().to_vec(), shape, "{key}: shape");
    assert_close(key, &to_vec(got), &want, tol);
}

/// Stored `[B, F, T]` spectra are frequency-major; ours are time-major.
fn freq_major(x: Tensor<Cpu, 3>) -> Tensor<Cpu, 3> {
    x.swap_dims(1, 2)
}

/// Every tensor of one case that the fixture stores, computed end to end from `<case>.input`.
fn check_case(m: &Losatok<Cpu>, f: &Fixture, case: &str, full_trace: bool) {
    let dev = Default::default();
    let k = |name: &str| format!("{case}.{name}");
    let x = f.tensor::<Cpu, 2>(&k("input"), &dev);

    let feats = m.encode(x.clone(), Sampling::Mean);
    for (name, t) in feats.named() {
        if name == "z" {
            continue;
        }
        check(f, &k(name), t.clone(), TOL_EMB);
    }
    let recon = m
        .semantic_encoder
        .bottleneck
        .restore(feats.semantic_emb_low.clone());
    check(f, &k("sembo_recon"), recon, TOL_EMB);

    if full_trace {
        let (_, tr) = m.semantic_encoder.encoder.forward_traced(x.clone());
        check(f, &k("sem.logmel"), tr.logmel, TOL_SEM_LOGMEL);
        check(f, &k("sem.bn"), tr.bn, TOL_SEM_BN);
        check(f, &k("sem.patch_embed"), tr.patch_embed, TOL_PATCH);
        check(
            f,
            &k("sem.chunk0.pos_added"),
            tr.chunk0_pos_added,
            TOL_PATCH,
        );
        for (i, b) in tr.chunk0_blocks.into_iter().enumerate() {
            check(f, &k(&format!("sem.chunk0.block{i}")), b, TOL_PATCH);
        }
        let (mel, tokens, _) = m.dasheng_tokenizer.encoder.forward_traced(x);
        check(f, &k("ac.logmel"), mel, TOL_AC_LOGMEL);
        check(f, &k("ac.patch_embed"), tokens, TOL_PATCH);

        let (wav, tr) = m.decode_traced(feats.z.clone());
        check(f, &k("dec.upsampled"), tr.upsampled, TOL_EMB);
        check(f, &k("dec.backbone_out"), tr.backbone_out, TOL_EMB);
        check(f, &k("dec.head_linear"), tr.head_linear, TOL_EMB);
        check(f, &k("dec.spec_real"), freq_major(tr.spec_real), TOL_SPEC);
        check(f, &k("dec.spec_imag"), freq_major(tr.spec_imag), TOL_SPEC);
        check2(f, &k("dec.audio_from_spec"), wav.clone(), TOL_DECODED);
        check2(f, &k("decoded"), wav, TOL_DECODED);
    } else {
        check2(f, &k("decoded"), m.decode(feats.z), TOL_DECODED);
    }
}

#[test]
fn tiny_config_file_equals_the_tiny_preset() {
    let mut cfg = tiny_config();
    assert_eq!(
        cfg.semantic_encoder_path.as_deref(),
        Some(model_dir().join("semantic_encoder_tiny.pth").as_path())
    );
    cfg.semantic_encoder_path = None;
    assert_eq!(cfg, LosatokConfig::tiny());
}

#[test]
fn official_config_file_equals_the_official_preset() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/16k_16k_25Hz_losatok.yml");
    let mut cfg = LosatokConfig::from_file(&shipped).expect("official config parses");
    assert!(cfg.semantic_encoder_path.is_some());
    cfg.semantic_encoder_path = None;
    assert_eq!(cfg, LosatokConfig::official());
}

#[test]
fn case_a_matches_every_intermediate() {
    check_case(&tiny(), &io(), "a", true);
}

#[test]
fn case_b_matches_across_two_attention_chunks() {
    // 262 tokens = a chunk of 252 and one of 10; the first chunk's trace has 252 tokens
    check_case(&tiny(), &io(), "b", true);
}

#[test]
fn case_c_batch_of_two_matches_per_item() {
    let m = tiny();
    let f = io();
    check_case(&m, &f, "c", false);
    let dev = Default::default();
    check(
        &f,
        "c.sem.logmel",
        m.semantic_encoder
            .encoder
            .forward_traced(f.tensor::<Cpu, 2>("c.input", &dev))
            .1
            .logmel,
        TOL_SEM_LOGMEL,
    );
    check(
        &f,
        "c.ac.logmel",
        m.dasheng_tokenizer
            .encoder
            .forward_traced(f.tensor::<Cpu, 2>("c.input", &dev))
            .0,
        TOL_AC_LOGMEL,
    );
}

#[test]
fn layer_scale_variant_without_qkv_bias_matches() {
    // LoSATok tiny weights with the variant semantic encoder (ls1/ls2 gammas, no qkv bias)
    let mut src = TensorSource::new();
    src.add(&model_dir().join("losatok_tiny.pth"), |k| {
        (!k.starts_with("semantic_encoder.")).then(|| k.to_string())
    })
    .unwrap();
    src.add(
        &model_dir().join("semantic_encoder_tiny_variant.pth"),
        |k| Some(format!("semantic_encoder.{k}")),
    )
    .unwrap();
    let (m, _, report) = load_losatok::<Cpu>(
        &tiny_config(),
        &src,
        Path::new("variant"),
        &Default::default(),
    )
    .expect("variant loads");
    assert!(report.layer_scale && !report.qkv_bias);
    let f = io();
    let dev = Default::default();
    for case in ["a", "b"] {
        let x = f.tensor::<Cpu, 2>(&format!("{case}.input"), &dev);
        let (high, low) = m.semantic_encoder.forward(x);
        check(&f, &format!("variant.{case}.semantic_emb"), high, TOL_EMB);
        check(
            &f,
            &format!("variant.{case}.semantic_emb_low"),
            low.clone(),
            TOL_EMB,
        );
        if case == "a" {
            let recon = m.semantic_encoder.bottleneck.restore(low);
            check(&f, "variant.a.sembo_recon", recon, TOL_EMB);
        }
    }
}

fn mu_of(m: &Losatok<Cpu>) -> Vec<f32> {
    let f = io();
    let x = f.tensor::<Cpu, 2>("a.input", &Default::default());
    to_vec(m.encode(x, Sampling::Mean).mu)
}

#[test]
fn wrapped_raw_and_split_checkpoints_give_identical_models() {
    let cfg = tiny_config();
    let raw = mu_of(&tiny());
    let wrapped = load(&model_dir().join("losatok_tiny_wrapped.pth"), &cfg).expect("wrapped");
    assert_eq!(mu_of(&wrapped), raw);
    // without semantic_encoder.* the config's semantic_encoder_path (wrapped .pth) is used
    let split = load(&model_dir().join("losatok_tiny_no_semantic.pth"), &cfg).expect("split");
    assert_eq!(mu_of(&split), raw);
    // and without a path that exists, the error says so
    let mut no_path = cfg.clone();
    no_path.semantic_encoder_path = Some(model_dir().join("nope.pth"));
    let err = load(&model_dir().join("losatok_tiny_no_semantic.pth"), &no_path).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("semantic_encoder_path") && msg.contains("nope.pth"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}

#[test]
fn wrong_checkpoint_kind_and_wrong_sizes_are_clear_errors() {
    let cfg = tiny_config();
    let err = load(&model_dir().join("semantic_encoder_tiny.pth"), &cfg).unwrap_err();
    assert!(matches!(err, CheckpointError::WrongKind { .. }), "{err}");
    assert!(
        err.to_string().contains("semantic-encoder checkpoint"),
        "{err}"
    );

    // the tiny checkpoint with the official sizes: a mismatch that names the sizes and keys
    let err = load(
        &model_dir().join("losatok_tiny.pth"),
        &LosatokConfig::official(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("2 semantic blocks (config: 32)"), "{msg}");
    assert!(
        msg.contains("wrong shape") && msg.contains("missing"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    let CheckpointError::Mismatch { problems, .. } = err else {
        panic!("expected a mismatch")
    };
    assert!(problems.contains(&Problem::Missing(
        "semantic_encoder.encoder.blocks.31.attn.qkv.weight".into()
    )));
}

#[test]
fn remap_table_gives_exactly_the_official_key_list() {
    // The official model built lazily (no weights allocated): its parameter names through the
    // remap table must be the reference's state-dict keys with the reference's shapes.
    let m = LosatokConfig::official().init::<Cpu>(&Default::default());
    let mut ours: Vec<(String, Vec<usize>)> = torch_names(&m)
        .into_iter()
        .map(|(k, layout, _, shape)| {
            let shape = match layout {
                losatok_models::checkpoint::Layout::Same => shape,
                losatok_models::checkpoint::Layout::Transposed => shape.into_iter().rev().collect(),
            };
            (k, shape)
        })
        .collect();
    ours.sort();
    let tsv = std::fs::read_to_string(model_dir().join("checkpoint-keys.tsv")).unwrap();
    let buffers = ["window", "mel_scale.fb", "num_batches_tracked"];
    let mut theirs: Vec<(String, Vec<usize>)> = tsv
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter(|l| {
            !buffers
                .iter()
                .any(|b| l.split('\t').next().unwrap().ends_with(b))
        })
        .map(|l| {
            let mut it = l.split('\t');
            let key = it.next().unwrap().to_string();
            let shape: Vec<usize> = serde_json::from_str(it.next().unwrap()).unwrap();
            (key, shape)
        })
        .collect();
    theirs.sort();
    assert_eq!(ours.len(), 534 - 4, "parameter count");
    assert_eq!(ours, theirs);
    let params: usize = ours.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    // model-spec §7.3 counts BN running stats as buffers: 803,612,546 + 2·64
    assert_eq!(params, 803_612_546 + 128);
}

/// Write a safetensors file of float32 tensors.
fn write_f32_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((k, shape, _), b)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, &None, path).unwrap();
}

#[test]
fn midashenglm_sharded_safetensors_load_without_the_language_model() {
    use losatok_models::checkpoint::{load_semantic_encoder, open_semantic_source};
    // MiDashengLM's layout: audio_encoder.* next to the language model's tensors, in shards
    // listed by model.safetensors.index.json
    let sem = TensorSource::open(model_dir().join("semantic_encoder_tiny.pth"), "").unwrap();
    let encoder: Vec<(String, Vec<usize>, Vec<f32>)> = sem
        .keys()
        .filter(|k| k.starts_with("encoder.") && !k.ends_with("num_batches_tracked"))
        .map(|k| {
            let name = format!("audio_encoder.{}", &k["encoder.".len()..]);
            (name, sem.info(k).unwrap().shape, sem.read_f32(k).unwrap())
        })
        .collect();
    let (first, second) = encoder.split_at(encoder.len() / 2);
    let lm = |name: &str| (name.to_string(), vec![4, 4], vec![0.5f32; 16]);
    let tmp = tempfile::tempdir().unwrap();
    let mut shard1 = first.to_vec();
    shard1.push(lm("model.layers.0.mlp.weight"));
    let mut shard2 = second.to_vec();
    shard2.push(lm("model.embed_tokens.weight"));
    write_f32_safetensors(
        &tmp.path().join("model-00001-of-00003.safetensors"),
        &shard1,
    );
    write_f32_safetensors(
        &tmp.path().join("model-00002-of-00003.safetensors"),
        &shard2,
    );
    // a shard with language-model tensors only: never opened (it is not even valid)
    std::fs::write(
        tmp.path().join("model-00003-of-00003.safetensors"),
        b"not read",
    )
    .unwrap();
    let mut map = serde_json::Map::new();
    for (k, ..) in first {
        map.insert(k.clone(), "model-00001-of-00003.safetensors".into());
    }
    for (k, ..) in second {
        map.insert(k.clone(), "model-00002-of-00003.safetensors".into());
    }
    map.insert(
        "model.layers.0.mlp.weight".into(),
        "model-00001-of-00003.safetensors".into(),
    );
    map.insert(
        "model.embed_tokens.weight".into(),
        "model-00002-of-00003.safetensors".into(),
    );
    map.insert(
        "lm_head.weight".into(),
        "model-00003-of-00003.safetensors".into(),
    );
    std::fs::write(
        tmp.path().join("model.safetensors.index.json"),
        serde_json::to_string(&serde_json::json!({"metadata": {}, "weight_map": map})).unwrap(),
    )
    .unwrap();

    let src = open_semantic_source(tmp.path()).unwrap();
    assert_eq!(
        src.num_files(),
        2,
        "only the shards with audio_encoder.* are opened"
    );
    assert!(src.keys().all(|k| k.starts_with("encoder.")));
    let (enc, _) =
        load_semantic_encoder::<Cpu>(&tiny_config(), &src, false, tmp.path(), &Default::default())
            .expect("encoder loads strictly from the shards");
    let f = io();
    let x = f.tensor::<Cpu, 2>("a.input", &Default::default());
    check(&f, "a.semantic_emb", enc.encoder.forward(x), TOL_EMB);
    // and without the bottleneck the encoder alone is a complete load; with it, SemBo is missing
    let e =
        load_semantic_encoder::<Cpu>(&tiny_config(), &src, true, tmp.path(), &Default::default())
            .unwrap_err();
    assert!(
        e.to_string().contains("bottleneck.downsample.0.weight"),
        "{e}"
    );
}
