//! Shared helpers for the fixture-parity tests: reading the reference tensors and comparing
//! with a stated tolerance. Every fixture lives under `tests/fixtures/` (copied byte-for-byte
//! from the reference bundle), so a fresh clone runs these tests with nothing else.
#![allow(dead_code)]

use std::path::PathBuf;

use burn::prelude::*;
use safetensors::SafeTensors;

/// CPU backend used by every parity test.
pub type Cpu = burn::backend::Flex;
/// Autodiff on the CPU backend, for the gradient tests.
pub type CpuAd = burn::backend::Autodiff<Cpu>;

/// Absolute path of a file under `tests/fixtures/`.
pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// A safetensors fixture file held in memory.
pub struct Fixture {
    name: String,
    bytes: Vec<u8>,
}

impl Fixture {
    /// Read `tests/fixtures/<rel>`.
    pub fn open(rel: &str) -> Self {
        let path = fixture_path(rel);
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
        Self {
            name: rel.to_string(),
            bytes,
        }
    }

    /// A float32 tensor as (values, shape).
    pub fn get(&self, key: &str) -> (Vec<f32>, Vec<usize>) {
        let st = SafeTensors::deserialize(&self.bytes).expect("valid safetensors");
        let view = st
            .tensor(key)
            .unwrap_or_else(|e| panic!("{}: no tensor {key}: {e}", self.name));
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "{key} is not f32");
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        (values, view.shape().to_vec())
    }

    /// Only the values of a float32 tensor.
    pub fn values(&self, key: &str) -> Vec<f32> {
        self.get(key).0
    }

    /// A scalar (shape `[]`) value.
    pub fn scalar(&self, key: &str) -> f32 {
        let (v, shape) = self.get(key);
        assert!(
            shape.is_empty() || shape == [1],
            "{key} is not a scalar: {shape:?}"
        );
        v[0]
    }

    /// A float32 tensor on a backend, with its rank checked.
    pub fn tensor<B: Backend, const D: usize>(
        &self,
        key: &str,
        device: &B::Device,
    ) -> Tensor<B, D> {
        let (v, shape) = self.get(key);
        assert_eq!(
            shape.len(),
            D,
            "{key} has rank {}, expected {D}",
            shape.len()
        );
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    /// Names of all tensors in the file.
    pub fn keys(&self) -> Vec<String> {
        let st = SafeTensors::deserialize(&self.bytes).expect("valid safetensors");
        st.names().into_iter().cloned().collect()
    }
}

/// Values of a tensor on any backend, as f32.
pub fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 data")
}

/// Largest absolute difference and where it is.
pub fn max_abs_diff(actual: &[f32], expected: &[f32]) -> (f32, usize) {
    assert_eq!(actual.len(), expected.len(), "length mismatch");
    let mut worst = (0f32, 0usize);
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let d = (a - e).abs();
        if d.is_nan() || d > worst.0 {
            worst = (if d.is_nan() { f32::INFINITY } else { d }, i);
        }
    }
    worst
}

/// Assert `|actual − expected| ≤ atol` everywhere, with a message naming the worst element.
pub fn assert_close(name: &str, actual: &[f32], expected: &[f32], atol: f32) {
    let (d, i) = max_abs_diff(actual, expected);
    assert!(
        d <= atol,
        "{name}: max |Δ| = {d:.3e} > {atol:.1e} at index {i} (actual {}, expected {})",
        actual[i],
        expected[i]
    );
    eprintln!("{name}: max |Δ| = {d:.3e} (tolerance {atol:.1e})");
}

/// Assert `|actual − expected| ≤ atol + rtol·|expected|` everywhere.
pub fn assert_close_rel(name: &str, actual: &[f32], expected: &[f32], atol: f32, rtol: f32) {
    assert_eq!(actual.len(), expected.len(), "{name}: length mismatch");
    let mut worst = (0f32, 0usize);
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let excess = (a - e).abs() - (atol + rtol * e.abs());
        if excess.is_nan() || excess > worst.0 {
            worst = (
                if excess.is_nan() {
                    f32::INFINITY
                } else {
                    excess
                },
                i,
            );
        }
    }
    let i = worst.1;
    assert!(
        worst.0 <= 0.0,
        "{name}: |Δ| exceeds {atol:.1e} + {rtol:.1e}·|expected| at index {i} (actual {}, expected {})",
        actual[i],
        expected[i]
    );
    let (d, _) = max_abs_diff(actual, expected);
    eprintln!("{name}: max |Δ| = {d:.3e} (tolerance {atol:.1e} + {rtol:.1e}·|x|)");
}

/// Assert a maximum error relative to the reference's largest magnitude:
/// `max|Δ| ≤ frac·max|expected|` (the loss fixtures' convention for gradients and feature maps).
pub fn assert_close_absmax(name: &str, actual: &[f32], expected: &[f32], frac: f32) {
    let absmax = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    let (d, i) = max_abs_diff(actual, expected);
    assert!(
        d <= frac * absmax,
        "{name}: max |Δ| = {d:.3e} > {frac:.1e}·absmax ({absmax:.3e}) at index {i} (actual {}, expected {})",
        actual[i],
        expected[i]
    );
    eprintln!(
        "{name}: max |Δ| = {d:.3e} = {:.2e}·absmax (tolerance {frac:.1e})",
        d / absmax.max(f32::MIN_POSITIVE)
    );
}

/// Assert a relative difference of two scalars.
pub fn assert_scalar_rel(name: &str, actual: f32, expected: f32, rtol: f32) {
    let rel = ((actual - expected) / expected).abs();
    assert!(
        rel <= rtol,
        "{name}: {actual} vs {expected} (relative {rel:.2e} > {rtol:.1e})"
    );
    eprintln!("{name}: {actual} vs {expected} (relative {rel:.2e}, tolerance {rtol:.1e})");
}

/// Every float parameter of a module, concatenated in visiting order, as host values.
pub fn param_values<B: Backend, M: burn::module::Module<B>>(m: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<B, D>>) {
            self.0.extend(to_vec(p.val()));
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}
