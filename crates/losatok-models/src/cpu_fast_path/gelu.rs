//! Exact GELU on every rayon thread.
//!
//! Flex runs element-wise activations on one thread with a scalar `libm` erf: on 2 threads the
//! exact GELU was 9–12 % of the decoder's CPU time and, being serial, about a fifth of its wall
//! time. [`gelu`] computes the same function on every rayon thread with a branch-free,
//! vectorisable formula.

use burn::prelude::*;
use burn::tensor::DType;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::on_flex;

/// Elements per rayon task: large enough to amortise scheduling, small enough to split a
/// `[250, 5120]` activation across threads.
const CHUNK: usize = 1 << 14;

/// Exact (erf) GELU, `x·Φ(x)`, with Φ the standard normal CDF: the same function as
/// `burn::tensor::activation::gelu` and PyTorch's `nn.GELU()`. On Flex it runs multi-threaded
/// through [`gelu_f32`] (absolute error below 2e-7·|x|); elsewhere it is Burn's `gelu`.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    match on_flex(x, |t| map_f32(t, gelu_f32)) {
        Ok(y) => y,
        Err(x) => burn::tensor::activation::gelu(x),
    }
}

/// Apply `op` to every element of a contiguous f32 tensor on all rayon threads (in place when
/// the storage is not shared); declines other layouts and dtypes.
fn map_f32<F: Fn(f32) -> f32 + Copy + Sync>(
    mut t: FlexTensor,
    op: F,
) -> Result<FlexTensor, FlexTensor> {
    if t.dtype() != DType::F32 || !t.is_contiguous() || t.layout().start_offset() != 0 {
        return Err(t);
    }
    let n = t.layout().num_elements();
    if t.is_unique() {
        let data: &mut [f32] = &mut t.storage_mut()[..n];
        data.par_chunks_mut(CHUNK).for_each(|c| map_slice(c, op));
        return Ok(t);
    }
    let mut out = t.storage::<f32>()[..n].to_vec();
    out.par_chunks_mut(CHUNK).for_each(|c| map_slice(c, op));
    Ok(FlexTensor::from_data(TensorData::new(
        out,
        t.layout().shape().clone(),
    )))
}

/// The per-chunk loop, compiled for AVX-512 and AVX2 as well, picked at run time.
fn map_slice<F: Fn(f32) -> f32 + Copy>(c: &mut [f32], op: F) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked above).
            return unsafe { map_slice_avx512(c, op) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked above).
            return unsafe { map_slice_avx2(c, op) };
        }
    }
    map_slice_generic(c, op)
}

#[inline(always)]
fn map_slice_generic<F: Fn(f32) -> f32 + Copy>(c: &mut [f32], op: F) {
    // `op` is a concrete, inlined function here, so this loop vectorises.
    for x in c {
        *x = op(*x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn map_slice_avx512<F: Fn(f32) -> f32 + Copy>(c: &mut [f32], op: F) {
    map_slice_generic(c, op)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn map_slice_avx2<F: Fn(f32) -> f32 + Copy>(c: &mut [f32], op: F) {
    map_slice_generic(c, op)
}

/// GELU of one value: `x·Φ(x)` with `Φ(x) = 1 − ½·erfc(x/√2)` for `x ≥ 0` and `½·erfc(|x|/√2)`
/// for `x < 0` (no cancellation on the negative side), `erfc` from `erfc_f32`.
#[inline(always)]
pub fn gelu_f32(x: f32) -> f32 {
    let half_erfc = 0.5 * erfc_f32(x.abs() * std::f32::consts::FRAC_1_SQRT_2);
    let cdf = if x >= 0.0 { 1.0 - half_erfc } else { half_erfc };
    x * cdf
}

/// Complementary error function for `z ≥ 0`: the Chebyshev fit `erfc(z) ≈ t·exp(−z² + P(t))`,
/// `t = 1/(1 + z/2)`, relative error below 1.2e-7 in exact arithmetic (Press et al., *Numerical
/// Recipes*, 2nd ed., §6.2, `erfcc`), evaluated in f32 with [`exp_f32`] (5e-7 in all below
/// `z = 1`). Branch-free, so it vectorises. Rounding `z²` and `P − z²` to f32 adds a relative
/// error of up to `1.2e-7·z²` (1e-5 at `z = 9`), harmless to [`gelu_f32`], where erfc(z) multiplies that error
/// and is below 3e-5 beyond `z = 3`.
#[inline(always)]
fn erfc_f32(z: f32) -> f32 {
    // As published (to 8 decimals; f32 keeps about 7 digits).
    #[allow(clippy::excessive_precision)]
    const C: [f32; 10] = [
        -1.26551223,
        1.00002368,
        0.37409196,
        0.09678418,
        -0.18628806,
        0.27886807,
        -1.13520398,
        1.48851587,
        -0.82215223,
        0.17087277,
    ];
    // erfc(10) < 3e-45 is 0 in f32; the clamp keeps exp's argument in range.
    let z = z.min(10.0);
    let t = 1.0 / (1.0 + 0.5 * z);
    let mut p = C[9];
    for &c in C[..9].iter().rev() {
        p = p * t + c;
    }
    t * exp_f32(p - z * z)
}

/// `eˣ` for `x ≤ 0`, relative error below 2e-7 down to `x = −87` (smaller arguments give
/// ~1e-38, which only ever multiplies a value that is already 0 to f32 precision):
/// `x = n·ln 2 + r`, `|r| ≤ ½·ln 2`, `eˣ = 2ⁿ·e^r` with a degree-7 Taylor polynomial for `e^r`
/// and `2ⁿ` built in the exponent bits.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5·2²³: adding it rounds to the nearest integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 0.0);
    let k = x * std::f32::consts::LOG2_E + ROUND;
    let n = k.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let nf = k - ROUND;
    let r = (x - nf * LN2_HI) - nf * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    p * f32::from_bits(((n + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erfc in f64 (Abramowitz–Stegun 7.1.28-free: continued fraction / series), for the check.
    fn erfc_f64(z: f64) -> f64 {
        if z < 2.0 {
            // erf series: 2/√π · Σ (−1)ⁿ z^(2n+1) / (n!(2n+1))
            let mut sum = 0.0;
            let mut term = z;
            let mut n = 0.0;
            while term.abs() > 1e-20 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -z * z / n;
            }
            1.0 - sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // Lentz continued fraction for erfc.
            let mut f = 0.0;
            for k in (1..200).rev() {
                f = (k as f64 / 2.0) / (z + f);
            }
            (-z * z).exp() / std::f64::consts::PI.sqrt() / (z + f)
        }
    }

    #[test]
    fn exp_matches_f64_to_2e_7_relative() {
        let mut worst = 0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let got = exp_f32(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 2e-7, "worst relative error {worst:e}");
    }

    #[test]
    fn erfc_matches_f64_within_the_fit_and_rounding_bound() {
        // 1.1e-7 for the fit, ~3e-7 for its f32 evaluation with exp_f32 (measured: 4.3e-7 worst
        // below z = 1), plus two f32 roundings at the scale of z² (see erfc_f32).
        let mut worst = 0f64;
        for i in 0..=90_000 {
            let z = i as f32 * 1e-4;
            let got = erfc_f32(z) as f64;
            let want = erfc_f64(z as f64);
            let bound = 5e-7 + 1.2e-7 * (z as f64).powi(2);
            worst = worst.max(((got - want) / want).abs() / bound);
        }
        assert!(worst < 1.0, "worst relative error / bound {worst}");
    }

    #[test]
    fn gelu_matches_f64_definition() {
        let mut worst = 0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4;
            let want = x as f64 * 0.5 * erfc_f64(-(x as f64) / std::f64::consts::SQRT_2);
            let want = if x < 0.0 {
                want
            } else {
                x as f64 * (1.0 - 0.5 * erfc_f64(x as f64 / std::f64::consts::SQRT_2))
            };
            let err = (gelu_f32(x) as f64 - want).abs() / (x.abs() as f64).max(1e-30);
            worst = worst.max(err);
        }
        assert!(worst < 2e-7, "worst error / |x| {worst:e}");
        assert_eq!(gelu_f32(0.0), 0.0);
        assert!(gelu_f32(-100.0).abs() < 1e-30);
        assert_eq!(gelu_f32(100.0), 100.0);
        assert!(gelu_f32(f32::NAN).is_nan());
    }

    #[test]
    fn flex_path_equals_burn_gelu_and_keeps_layouts() {
        type F = burn::backend::Flex;
        let dev = Default::default();
        let x = Tensor::<F, 2>::random(
            [97, 513],
            burn::tensor::Distribution::Normal(0.0, 3.0),
            &dev,
        );
        let want = burn::tensor::activation::gelu(x.clone());
        // shared storage (x is still alive): the copying path
        let got = gelu(x.clone());
        got.clone().into_data().assert_approx_eq::<f32>(
            &want.clone().into_data(),
            burn::tensor::Tolerance::absolute(1e-6),
        );
        // unique storage: in place
        let got_unique = gelu(x.clone() * 1.0);
        got_unique.into_data().assert_approx_eq::<f32>(
            &want.clone().into_data(),
            burn::tensor::Tolerance::absolute(1e-6),
        );
        // a transposed view: Burn's path, same values
        let got_t = gelu(x.clone().transpose());
        got_t.into_data().assert_approx_eq::<f32>(
            &want.transpose().into_data(),
            burn::tensor::Tolerance::absolute(1e-6),
        );
    }

    #[test]
    fn autodiff_tensors_keep_their_gradient() {
        type A = burn::backend::Autodiff<burn::backend::Flex>;
        let dev = Default::default();
        let x = Tensor::<A, 1>::from_floats([-2.0, -0.5, 0.0, 0.5, 2.0], &dev).require_grad();
        let g = gelu(x.clone()).sum().backward();
        let dx = x.grad(&g).unwrap().into_data().into_vec::<f32>().unwrap();
        // d/dx x·Φ(x) = Φ(x) + x·φ(x)
        for (xi, gi) in [-2.0f64, -0.5, 0.0, 0.5, 2.0].iter().zip(dx) {
            let phi = (-xi * xi / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let cdf = 0.5 * erfc_f64(-xi / std::f64::consts::SQRT_2);
            assert!((gi as f64 - (cdf + xi * phi)).abs() < 1e-5, "x={xi}: {gi}");
        }
    }
}
