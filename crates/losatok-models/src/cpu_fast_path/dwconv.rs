//! The depthwise convolution of a ConvNeXt block on channels-last activations.

use burn::nn::conv::Conv1d;
use burn::nn::PaddingConfig1d;
use burn::prelude::*;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::{f32_elements, flex_f32, into_flex, on_flex};

/// Output frames per rayon task.
const FRAMES_PER_TASK: usize = 16;

/// A depthwise [`Conv1d`] (`groups` = channels in = channels out, stride 1, dilation 1) applied
/// to channels-last `x` `[B, T, C]`, giving `[B, T′, C]`: the same values as
/// `conv.forward(x.swap_dims(1, 2)).swap_dims(1, 2)`.
///
/// On Flex with `f32` tensors each output frame is `bias + Σⱼ w[·, j] ⊙ x[t + j − left]`, a
/// vectorised sum over whole frames, with frames split across threads: no transposes, no
/// im2col. Other convolutions, and other backends, take the generic route.
pub fn depthwise_conv1d_channels_last<B: Backend>(
    conv: &Conv1d<B>,
    x: Tensor<B, 3>,
) -> Tensor<B, 3> {
    let [_, _, channels] = x.dims();
    let [c_out, c_in_per_group, k] = conv.weight.dims();
    let depthwise = conv.groups == channels
        && c_out == channels
        && c_in_per_group == 1
        && conv.stride == 1
        && conv.dilation == 1
        && k == conv.kernel_size;
    let pads = match conv.padding {
        PaddingConfig1d::Explicit(left, right) => Some((left, right)),
        PaddingConfig1d::Valid => Some((0, 0)),
        // "same" with an odd kernel is symmetric; leave even kernels to Burn's rule
        PaddingConfig1d::Same if k % 2 == 1 => Some((k / 2, k / 2)),
        PaddingConfig1d::Same => None,
    };
    let Some(pads) = pads.filter(|_| depthwise) else {
        return generic(conv, x);
    };
    on_flex(x, |t| {
        let t = t.to_contiguous();
        let w = into_flex(conv.weight.val()).ok();
        let bias = conv.bias.as_ref().and_then(|b| into_flex(b.val()).ok());
        w.and_then(|w| dwconv_f32(&t, &w, bias.as_ref(), pads))
            .ok_or(t)
    })
    .unwrap_or_else(|x| generic(conv, x))
}

fn generic<B: Backend>(conv: &Conv1d<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    conv.forward(x.swap_dims(1, 2)).swap_dims(1, 2)
}

fn dwconv_f32(
    x: &FlexTensor,
    w: &FlexTensor,
    bias: Option<&FlexTensor>,
    (left, right): (usize, usize),
) -> Option<FlexTensor> {
    let xs = f32_elements(x)?;
    let ws = f32_elements(w)?;
    let bs = match bias {
        Some(b) => Some(f32_elements(b)?),
        None => None,
    };
    let &[batch, frames, c] = x.layout().shape().to_vec().as_slice() else {
        return None;
    };
    let k = ws.len() / c.max(1);
    if c == 0 || ws.len() != c * k || bs.is_some_and(|b| b.len() != c) || frames + left + right < k
    {
        return None;
    }
    let out_frames = frames + left + right - k + 1;
    // the taps frame-major: taps[j·C + ch] = w[ch, 0, j]
    let mut taps = vec![0f32; k * c];
    for ch in 0..c {
        for j in 0..k {
            taps[j * c + ch] = ws[ch * k + j];
        }
    }
    let mut out = vec![0f32; batch * out_frames * c];
    out.par_chunks_mut(FRAMES_PER_TASK * c)
        .enumerate()
        .for_each(|(task, block)| {
            for (i, y) in block.chunks_exact_mut(c).enumerate() {
                let row = task * FRAMES_PER_TASK + i;
                let (item, t) = (row / out_frames, row % out_frames);
                match bs {
                    Some(b) => y.copy_from_slice(b),
                    None => y.fill(0.0),
                }
                for j in 0..k {
                    // input frame t + j − left, zero outside [0, frames)
                    let Some(src) = (t + j).checked_sub(left).filter(|&s| s < frames) else {
                        continue;
                    };
                    let xrow = &xs[(item * frames + src) * c..][..c];
                    let tap = &taps[j * c..][..c];
                    for ((y, &xv), &wv) in y.iter_mut().zip(xrow).zip(tap) {
                        *y += wv * xv;
                    }
                }
            }
        });
    Some(flex_f32(out, vec![batch, out_frames, c]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv1dConfig;
    use burn::tensor::{Distribution, Tolerance};

    type F = burn::backend::Flex;

    /// Seven products summed in another order: a few ulps.
    const SUM_ORDER: f32 = 1e-6;

    #[test]
    fn equals_burn_conv1d_on_transposed_input() {
        let dev = Default::default();
        for (channels, frames, pad, bias) in [
            (64, 50, (3, 3), true),
            (5, 4, (3, 3), false),
            (16, 33, (0, 0), true),
        ] {
            let conv = Conv1dConfig::new(channels, channels, 7)
                .with_groups(channels)
                .with_bias(bias)
                .with_padding(PaddingConfig1d::Explicit(pad.0, pad.1))
                .init::<F>(&dev);
            let x =
                Tensor::<F, 3>::random([2, frames, channels], Distribution::Normal(0.0, 1.0), &dev);
            let want = generic(&conv, x.clone());
            let got = depthwise_conv1d_channels_last(&conv, x);
            assert_eq!(got.dims(), want.dims());
            got.into_data()
                .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(SUM_ORDER));
        }
    }

    #[test]
    fn an_ordinary_convolution_takes_the_generic_path() {
        let dev = Default::default();
        let conv = Conv1dConfig::new(8, 8, 3).init::<F>(&dev);
        let x = Tensor::<F, 3>::random([1, 10, 8], Distribution::Normal(0.0, 1.0), &dev);
        let want = generic(&conv, x.clone());
        depthwise_conv1d_channels_last(&conv, x)
            .into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(0.0));
    }
}
