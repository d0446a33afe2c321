//! Amplitude scalings: decibels with a per-item dynamic-range floor, clipped logarithms.

use burn::prelude::*;
use std::f64::consts::LN_10;

/// Power to decibels, as torchaudio's `AmplitudeToDB(stype="power", top_db)` applied to each
/// batch item separately:
///
/// `v = 10·log10(max(x, amin))`, then, if `top_db` is set, `v[b] = max(v[b], max(v[b]) − top_db)`
/// where the maximum runs over every element of item `b` (dimension 0).
///
/// Per item, not per batch: a quiet clip in a batch is not floored by a loud neighbour (the
/// MiDashengLM front end; model-spec §2.1).
pub fn power_to_db<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    amin: f64,
    top_db: Option<f64>,
) -> Tensor<B, D> {
    let v = db(x, amin);
    match top_db {
        None => v,
        Some(top_db) => {
            let dims = v.dims();
            let b = dims[0];
            let item_max: Tensor<B, 2> = v.clone().reshape([b as i64, -1]).max_dim(1);
            let mut floor_shape = [1usize; D];
            floor_shape[0] = b;
            let floor: Tensor<B, D> = item_max.sub_scalar(top_db).reshape(floor_shape);
            v.max_pair(floor.expand(dims))
        }
    }
}

/// The dB value of a power, `10·log10(max(p, amin))`, computed with the same tensor operations
/// as [`power_to_db`] (so that a maximum found separately reproduces its floor exactly).
pub fn db<B: Backend, const D: usize>(x: Tensor<B, D>, amin: f64) -> Tensor<B, D> {
    x.clamp_min(amin).log().mul_scalar(10.0 / LN_10)
}

/// [`power_to_db`] with a floor given per item instead of computed from the input:
/// `v[b] = max(10·log10(max(x[b], amin)), floor[b])`. With `floor[b] = max_all(v[b]) − top_db`
/// computed over a whole signal, segments of it convert exactly as the whole would.
pub fn power_to_db_floored<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    amin: f64,
    floor: Tensor<B, 1>,
) -> Tensor<B, D> {
    let v = db(x, amin);
    let dims = v.dims();
    let mut floor_shape = [1usize; D];
    floor_shape[0] = dims[0];
    v.max_pair(floor.reshape(floor_shape).expand(dims))
}

/// Natural log with a floor: `ln(max(x, floor))` (the Vocos log-mel, floor 1e-7).
/// Below the floor the gradient is zero.
pub fn log_clamped<B: Backend, const D: usize>(x: Tensor<B, D>, floor: f64) -> Tensor<B, D> {
    x.clamp_min(floor).log()
}

/// Base-10 log with a floor: `log10(max(x, floor))` (the DAC mel loss, floor 1e-5).
/// Below the floor the gradient is zero.
pub fn log10_clamped<B: Backend, const D: usize>(x: Tensor<B, D>, floor: f64) -> Tensor<B, D> {
    x.clamp_min(floor).log().mul_scalar(1.0 / LN_10)
}
