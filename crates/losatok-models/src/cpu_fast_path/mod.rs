//! CPU fast paths for the hot spots that profiling found on the Flex backend.
//!
//! Each function here computes exactly what a few of Burn's generic ops compute, and takes a
//! multi-threaded, copy-free route when its tensors are plain Flex `f32` tensors. Every other
//! case — CUDA, wgpu, `Autodiff<Flex>` during training (its tensors are not plain Flex tensors),
//! other dtypes or layouts — takes Burn's generic ops, so gradients and other backends are
//! untouched. Each fast path is tested against its generic path.
//!
//! Why they exist (`perf` at full size, 2 threads, AMD EPYC Zen 3): matrix products were 76 %
//! (encode) and 82 % (decode) of the CPU time and ran on both cores, but Flex runs element-wise
//! ops, copies between layouts and attention on one thread, so the process used about 1.5 of 2
//! cores. On the encoder, attention alone (per head, on the calling thread, after copying q, k
//! and v into head-major layout) was 11 % of all CPU time; in the decoder the transposes around
//! each depthwise convolution and the strided residual add were the serial part.
//!
//! * [`linear`]: `x·W + b` with the output columns split across threads (each thread packs only
//!   its share of `W`) and the bias written before the product instead of added after it.
//! * [`attention_from_qkv`]: softmax attention straight from the fused `qkv` projection, one
//!   task per (batch, head), writing each head's output into its columns of `[B, c, E]`; no
//!   head-major copies.
//! * [`depthwise_conv1d_channels_last`]: the ConvNeXt depthwise convolution on `[B, T, C]`, so
//!   the Vocos backbone stays channels-last from its first norm to its last.
//! * [`gelu`]: exact GELU on every thread.
//!
//! The fast paths can be switched off for the whole process, by [`set_enabled`] or by the
//! environment variable `LOSATOK_CPU_FAST_PATH=off` (read once): everything then runs on Burn's
//! generic kernels. That is the reference when a numerical difference is in question, and it
//! makes inference and the autodiff forward of training compute with the same kernels.
//!
//! Why not Burn's own kernels: Flex 0.21 has no fused linear, runs attention serially over
//! heads, and has no channels-last depthwise convolution; a `[patch]` of Burn would be a
//! maintenance cost for the whole workspace, while these functions are small, local and tested
//! against Burn's results.

use std::any::Any;
use std::sync::atomic::{AtomicU8, Ordering};

use burn::prelude::*;
use burn::tensor::{DType, TensorPrimitive};
use burn_flex::FlexTensor;

mod attention;
mod dwconv;
mod gelu;
mod linear;

pub use attention::attention_from_qkv;
pub use dwconv::depthwise_conv1d_channels_last;
pub use gelu::{gelu, gelu_f32};
pub use linear::linear;

/// Below this many multiply-adds a product runs on the calling thread (the threshold Flex uses
/// for its own matrix products, 192³).
const PARALLEL_MACS: usize = 192 * 192 * 192;

/// 0: not decided yet (read the environment), 1: on, 2: off.
static ENABLED: AtomicU8 = AtomicU8::new(0);

/// Whether the fast paths are used: [`set_enabled`] if it was called, else on unless the
/// environment variable `LOSATOK_CPU_FAST_PATH` is `off`, `0` or `false`.
pub fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let off = std::env::var("LOSATOK_CPU_FAST_PATH")
                .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "off" | "0" | "false"));
            // a concurrent set_enabled wins over the environment
            let _ = ENABLED.compare_exchange(
                0,
                if off { 2 } else { 1 },
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            ENABLED.load(Ordering::Relaxed) == 1
        }
    }
}

/// Use the fast paths (`true`, the default) or Burn's generic kernels only, for the whole
/// process from now on.
pub fn set_enabled(on: bool) {
    ENABLED.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// The Flex tensor behind `x`, or `x` back when `B` is not Flex.
fn into_flex<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<FlexTensor, Tensor<B, D>> {
    let TensorPrimitive::Float(p) = x.into_primitive() else {
        unreachable!("float tensors of a quantized model are not used here")
    };
    let boxed: Box<dyn Any> = Box::new(p);
    boxed.downcast::<FlexTensor>().map(|t| *t).map_err(|other| {
        let p = *other
            .downcast::<B::FloatTensorPrimitive>()
            .unwrap_or_else(|_| unreachable!("the primitive's own type"));
        Tensor::from_primitive(TensorPrimitive::Float(p))
    })
}

/// A Flex tensor as a `Tensor<B, D>`; only called on tensors that came out of [`into_flex`].
fn from_flex<B: Backend, const D: usize>(t: FlexTensor) -> Tensor<B, D> {
    let boxed: Box<dyn Any> = Box::new(t);
    let p = *boxed
        .downcast::<B::FloatTensorPrimitive>()
        .unwrap_or_else(|_| unreachable!("called only when B is Flex"));
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// Run `f` on the Flex tensor behind `x`; `Err(x)` unchanged when the fast paths are off, `x`
/// is not a plain Flex tensor or `f` declines it.
fn on_flex<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    f: impl FnOnce(FlexTensor) -> Result<FlexTensor, FlexTensor>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if !enabled() {
        return Err(x);
    }
    let t = into_flex(x)?;
    f(t).map(from_flex).map_err(from_flex)
}

/// The elements of a contiguous `f32` tensor, in order (`None` for other dtypes and layouts).
fn f32_elements(t: &FlexTensor) -> Option<&[f32]> {
    if t.dtype() != DType::F32 || !t.is_contiguous() {
        return None;
    }
    let start = t.layout().start_offset();
    let n = t.layout().num_elements();
    t.storage::<f32>().get(start..start + n)
}

/// A new contiguous `f32` Flex tensor.
fn flex_f32(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// A raw pointer that may cross threads: each task writes a disjoint part of one buffer.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: every user hands each task a disjoint set of elements, and the buffer outlives the
// parallel loop that uses the pointer.
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so that closures capture the `Send` wrapper, not its field).
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// One strided `f32` matrix operand: element `(i, j)` is at `ptr + i·row + j·col`.
#[derive(Clone, Copy)]
struct Mat {
    ptr: *const f32,
    row: isize,
    col: isize,
}

/// `dst = scale·lhs·rhs` (or `dst += scale·lhs·rhs` with `accumulate`) for an `m×k` by `k×n`
/// product on the calling thread, `dst` row-major with row stride `dst_row`.
///
/// # Safety
/// The operands must address `m×k`, `k×n` and `m×n` valid elements, and `dst` must not overlap
/// the others.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_row: isize,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    scale: f32,
) {
    // gemm's convention: dst = alpha·dst + beta·lhs·rhs, alpha read only when read_dst
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row,
            accumulate,
            lhs.ptr,
            lhs.col,
            lhs.row,
            rhs.ptr,
            rhs.col,
            rhs.row,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}
