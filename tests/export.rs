//! Export in the official key layout: the exported safetensors holds exactly the keys, shapes
//! and values of the reference state dict, and loading it gives the same model.

mod common;

use std::collections::BTreeMap;

use common::*;
use losatok_models::checkpoint::{
    export_safetensors, load_losatok, open_losatok_checkpoint, TensorSource,
};
use losatok_models::{LosatokConfig, Sampling};

#[test]
fn export_has_the_reference_keys_and_values_and_reloads_identically() {
    let dir = fixture_path("model");
    let cfg = LosatokConfig::from_file(dir.join("tiny_config.yml")).unwrap();
    let pth = dir.join("losatok_tiny.pth");
    let src = open_losatok_checkpoint(&pth, &cfg).unwrap();
    let dev = Default::default();
    let (model, cfg, _) = load_losatok::<Cpu>(&cfg, &src, &pth, &dev).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("export.safetensors");
    let meta = BTreeMap::from([("producer".to_string(), "losatok-rs test".to_string())]);
    export_safetensors(&model, &out, &meta).unwrap();

    // same key set as the reference .pth (84 keys, buffers included), same shapes and values
    let exported = TensorSource::open(&out, "").unwrap();
    let theirs: Vec<&str> = src.keys().collect();
    let ours: Vec<&str> = exported.keys().collect();
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 84);
    for k in src.keys() {
        assert_eq!(
            exported.info(k).unwrap().shape,
            src.info(k).unwrap().shape,
            "{k}"
        );
        if k.ends_with("num_batches_tracked") {
            assert_eq!(exported.info(k).unwrap().dtype, "I64");
            continue;
        }
        let (ours, theirs) = (exported.read_f32(k).unwrap(), src.read_f32(k).unwrap());
        if k.ends_with(".window") {
            // f64-exact Hann windows rounded once vs torch's float32 ones (as in parity_dsp)
            assert_close(k, &ours, &theirs, 2e-7);
        } else {
            assert_eq!(ours, theirs, "{k}");
        }
    }

    // and it loads back into the same model
    let (again, _, _) = load_losatok::<Cpu>(&cfg, &exported, &out, &dev).unwrap();
    let f = Fixture::open("model/tiny_io.safetensors");
    let x = f.tensor::<Cpu, 2>("a.input", &dev);
    let a = model.encode(x.clone(), Sampling::Mean);
    let b = again.encode(x, Sampling::Mean);
    assert_eq!(to_vec(a.mu), to_vec(b.mu.clone()));
    assert_eq!(
        to_vec(model.decode(b.mu.clone())),
        to_vec(again.decode(b.mu))
    );
}
