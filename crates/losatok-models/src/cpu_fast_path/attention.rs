//! Bidirectional softmax attention straight from a fused `qkv` projection.

use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::{f32_elements, flex_f32, matmul, on_flex, Mat, SharedMut};

/// Multi-head attention `softmax(q·kᵀ/√d)·v` of a fused projection `qkv` `[B, c, 3E]` whose
/// last axis is ordered (q | k | v) × head × dim (timm's `Attention`), with `heads` heads of
/// `d = E/heads`. Returns the heads side by side, `[B, c, E]`: the input of the output
/// projection.
///
/// On Flex with `f32` tensors, one task per (batch item, head) reads its q, k and v in place
/// (strided), keeps its `c×c` scores in a private buffer and writes its output into its own
/// columns, so heads run in parallel and nothing is copied into head-major layout. Elsewhere it
/// is Burn's `attention` on head-major views.
pub fn attention_from_qkv<B: Backend>(qkv: Tensor<B, 3>, heads: usize) -> Tensor<B, 3> {
    let [b, c, e3] = qkv.dims();
    assert!(
        e3 % 3 == 0 && (e3 / 3) % heads == 0,
        "qkv width {e3} is not 3 × heads ({heads}) × head size"
    );
    let e = e3 / 3;
    on_flex(qkv, |t| {
        let t = t.to_contiguous();
        attention_f32(&t, [b, c, e], heads).ok_or(t)
    })
    .unwrap_or_else(|qkv| generic(qkv, heads))
}

/// Burn's attention on `[B, heads, c, d]` views of q, k and v.
fn generic<B: Backend>(qkv: Tensor<B, 3>, h: usize) -> Tensor<B, 3> {
    let [b, c, e3] = qkv.dims();
    let (e, d) = (e3 / 3, e3 / 3 / h);
    let part = |i: usize| {
        qkv.clone()
            .narrow(2, i * e, e)
            .reshape([b, c, h, d])
            .swap_dims(1, 2)
    };
    let o = attention(
        part(0),
        part(1),
        part(2),
        None,
        None,
        AttentionModuleOptions::default(),
    );
    o.swap_dims(1, 2).reshape([b, c, e])
}

fn attention_f32(qkv: &FlexTensor, [b, c, e]: [usize; 3], heads: usize) -> Option<FlexTensor> {
    let src = f32_elements(qkv)?;
    let d = e / heads;
    if c == 0 || d == 0 {
        return None;
    }
    let scale = 1.0 / (d as f32).sqrt();
    let mut out = vec![0f32; b * c * e];
    let dst = SharedMut(out.as_mut_ptr());
    let stride = (3 * e) as isize;
    (0..b * heads).into_par_iter().for_each_init(
        || vec![0f32; c * c],
        |scores, task| {
            let (item, head) = (task / heads, task % heads);
            let base = src[item * c * 3 * e..].as_ptr();
            // SAFETY: q, k and v of this (item, head) are c rows of d elements at row stride
            // 3E inside `src`; the output block (c rows of d at row stride E) belongs to this
            // task alone; `scores` holds c×c.
            unsafe {
                let q = base.add(head * d);
                let k = base.add(e + head * d);
                let v = base.add(2 * e + head * d);
                // scores = scale · q·kᵀ (kᵀ: element (j, t) = k[t, j])
                matmul(
                    c,
                    c,
                    d,
                    scores.as_mut_ptr(),
                    c as isize,
                    false,
                    Mat {
                        ptr: q,
                        row: stride,
                        col: 1,
                    },
                    Mat {
                        ptr: k,
                        row: 1,
                        col: stride,
                    },
                    scale,
                );
                for row in scores.chunks_exact_mut(c) {
                    softmax_in_place(row);
                }
                matmul(
                    c,
                    d,
                    c,
                    dst.ptr().add(item * c * e + head * d),
                    e as isize,
                    false,
                    Mat {
                        ptr: scores.as_ptr(),
                        row: c as isize,
                        col: 1,
                    },
                    Mat {
                        ptr: v,
                        row: stride,
                        col: 1,
                    },
                    1.0,
                );
            }
        },
    );
    Some(flex_f32(out, vec![b, c, e]))
}

/// `row ← exp(row − max)/Σ exp(row − max)`.
fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    let inv = 1.0 / sum;
    for x in row.iter_mut() {
        *x *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    type F = burn::backend::Flex;

    /// Both sides compute the same sums in f32 in different orders (d = 80 for the scores,
    /// c for the weighted values) and the same exponentials: a few ulps of values of order 1.
    const SUM_ORDER: f32 = 2e-6;

    #[test]
    fn equals_burn_attention() {
        let dev = Default::default();
        for (shape, heads) in [([1, 252, 3 * 64], 4), ([3, 75, 3 * 80], 2), ([2, 1, 12], 2)] {
            let qkv = Tensor::<F, 3>::random(shape, Distribution::Normal(0.0, 1.0), &dev);
            let want = generic(qkv.clone(), heads);
            let got = attention_from_qkv(qkv, heads);
            assert_eq!(got.dims(), want.dims());
            got.into_data()
                .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(SUM_ORDER));
        }
    }

    #[test]
    fn a_strided_view_is_made_contiguous_first() {
        let dev = Default::default();
        let x = Tensor::<F, 3>::random([2, 24, 40], Distribution::Normal(0.0, 1.0), &dev);
        let qkv = x.swap_dims(1, 2); // [2, 40, 24], not contiguous
        let want = generic(qkv.clone(), 2);
        attention_from_qkv(qkv, 2)
            .into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(SUM_ORDER));
    }
}
