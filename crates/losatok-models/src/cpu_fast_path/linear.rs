//! `x·W + b` with the output columns split across threads.

use burn::nn::Linear;
use burn::prelude::*;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::{f32_elements, flex_f32, into_flex, matmul, on_flex, Mat, SharedMut, PARALLEL_MACS};

/// Output columns per task are a multiple of this (the widest f32 micro-kernel's width).
const COLUMN_QUANTUM: usize = 16;

/// A Burn [`Linear`] layer applied to `x` (`[…, d_in]` → `[…, d_out]`): the same values as
/// `layer.forward(x)`.
///
/// On Flex with `f32` tensors, `W`'s columns are split into one block per rayon thread; each
/// thread writes the bias into its block of the output and then accumulates `x·W` into it with
/// a single-threaded product, so no thread waits on another and none repacks another's part of
/// `W`. Elsewhere it is `layer.forward(x)`.
pub fn linear<B: Backend, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    let fast = on_flex(x, |input| {
        let input = input.to_contiguous();
        let weight = into_flex(layer.weight.val()).ok();
        let bias = layer.bias.as_ref().and_then(|b| into_flex(b.val()).ok());
        weight
            .and_then(|w| linear_f32(&input, &w, bias.as_ref()))
            .ok_or(input)
    });
    fast.unwrap_or_else(|x| layer.forward(x))
}

/// The fast path; `None` when a tensor is not contiguous `f32` or the shapes do not fit.
fn linear_f32(x: &FlexTensor, w: &FlexTensor, bias: Option<&FlexTensor>) -> Option<FlexTensor> {
    let (xs, ws) = (f32_elements(x)?, f32_elements(w)?);
    let bs = match bias {
        Some(b) => Some(f32_elements(b)?),
        None => None,
    };
    let x_shape = x.layout().shape().to_vec();
    let &[k, n] = w.layout().shape().to_vec().as_slice() else {
        return None;
    };
    if x_shape.last() != Some(&k) || bs.is_some_and(|b| b.len() != n) || k == 0 || n == 0 {
        return None;
    }
    let m = xs.len() / k;
    let mut out = vec![0f32; m * n];
    let tasks = if m * n * k < PARALLEL_MACS {
        1
    } else {
        rayon::current_num_threads().clamp(1, n.div_ceil(COLUMN_QUANTUM))
    };
    let width = n.div_ceil(tasks).div_ceil(COLUMN_QUANTUM) * COLUMN_QUANTUM;
    let dst = SharedMut(out.as_mut_ptr());
    let block = |i: usize| {
        let (c0, c1) = (i * width, ((i + 1) * width).min(n));
        if c0 >= c1 {
            return;
        }
        // SAFETY: this task writes only columns c0..c1 of `out` (m×n, alive for the loop);
        // x is m×k and W k×n, both contiguous.
        unsafe {
            let dst = dst.ptr().add(c0);
            if let Some(b) = bs {
                for r in 0..m {
                    std::slice::from_raw_parts_mut(dst.add(r * n), c1 - c0)
                        .copy_from_slice(&b[c0..c1]);
                }
            }
            matmul(
                m,
                c1 - c0,
                k,
                dst,
                n as isize,
                bs.is_some(),
                Mat {
                    ptr: xs.as_ptr(),
                    row: k as isize,
                    col: 1,
                },
                Mat {
                    ptr: ws.as_ptr().add(c0),
                    row: n as isize,
                    col: 1,
                },
                1.0,
            );
        }
    };
    if tasks == 1 {
        block(0);
    } else {
        (0..tasks).into_par_iter().for_each(block);
    }
    let mut shape = x_shape;
    *shape.last_mut().expect("rank ≥ 1") = n;
    Some(flex_f32(out, shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::{Distribution, Tolerance};

    type F = burn::backend::Flex;

    /// Both products sum the same k terms in f32, in different orders: about
    /// √k·ε·Σ|xᵢwᵢ| apart; 1e-5 absolute covers k = 1280 at these magnitudes.
    const SUM_ORDER: f32 = 1e-5;

    fn check(shape: [usize; 3], d_out: usize, bias: bool) {
        let dev = Default::default();
        let layer = LinearConfig::new(shape[2], d_out)
            .with_bias(bias)
            .init::<F>(&dev);
        let x = Tensor::<F, 3>::random(shape, Distribution::Normal(0.0, 1.0), &dev);
        let want = layer.forward(x.clone());
        let got = linear(&layer, x);
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(SUM_ORDER));
    }

    #[test]
    fn equals_burn_linear_on_one_and_many_threads() {
        check([1, 3, 8], 5, true); // one task
        check([2, 125, 256], 1000, true); // split, ragged last block
        check([1, 250, 320], 960, false); // no bias
        check([3, 1, 192], 257, true); // n not a multiple of 16
    }

    #[test]
    fn transposed_input_and_autodiff_take_the_generic_path() {
        let dev = Default::default();
        let layer = LinearConfig::new(64, 48).init::<F>(&dev);
        let x = Tensor::<F, 3>::random([2, 64, 30], Distribution::Normal(0.0, 1.0), &dev);
        let xt = x.swap_dims(1, 2);
        let want = layer.forward(xt.clone());
        linear(&layer, xt)
            .into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(SUM_ORDER));

        type A = burn::backend::Autodiff<F>;
        let layer = LinearConfig::new(4, 3).init::<A>(&dev);
        let x = Tensor::<A, 2>::random([5, 4], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let g = linear(&layer, x.clone()).sum().backward();
        let want = layer.forward(x.clone()).sum().backward();
        x.grad(&g).unwrap().into_data().assert_approx_eq::<f32>(
            &x.grad(&want).unwrap().into_data(),
            Tolerance::absolute(1e-6),
        );
    }
}
