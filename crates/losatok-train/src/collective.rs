//! Data-parallel agreement between ranks: the collective operations a training step needs, and
//! the bucketed gradient all-reduce built on them.
//!
//! One process (or thread) per device holds a full replica; after each backward pass every
//! rank's gradients are replaced by their mean over ranks, so every rank applies the same
//! optimiser step. [`Local`] is the single-rank case; the multi-GPU implementation (NCCL) and an
//! in-process CPU implementation of the same interface plug in here.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// The collective operations of data-parallel training, on the backend `B` the gradients live on.
pub trait Collective<B: Backend> {
    /// This rank, `0..world_size`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world_size(&self) -> usize;
    /// Element-wise mean over ranks of a 1-D tensor (every rank passes the same length).
    fn all_reduce_mean(&mut self, t: Tensor<B, 1>) -> Tensor<B, 1>;
    /// Element-wise sum over ranks of a few host values (agreement on flags and metrics).
    fn all_reduce_sum_host(&mut self, values: &mut [f64]);
}

/// A single rank: every operation is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Local;

impl<B: Backend> Collective<B> for Local {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_mean(&mut self, t: Tensor<B, 1>) -> Tensor<B, 1> {
        t
    }
    fn all_reduce_sum_host(&mut self, _values: &mut [f64]) {}
}

/// Default gradient bucket size (bytes of f32 per all-reduce).
pub const BUCKET_BYTES: usize = 32 << 20;

/// Replace every gradient of `module` in `grads` by its mean over ranks, in buckets of about
/// `bucket_bytes`: gradients are flattened and concatenated in parameter order (the same on
/// every rank), reduced, and split back. Ranks must call this with the same module structure.
pub fn all_reduce_gradients<B, M, C>(
    module: &M,
    grads: &mut GradientsParams,
    collective: &mut C,
    bucket_bytes: usize,
) where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    C: Collective<B::InnerBackend>,
{
    if collective.world_size() == 1 {
        return;
    }
    // 1. take the gradients out, flattened, in parameter order
    struct Take<'a, B: AutodiffBackend> {
        grads: &'a mut GradientsParams,
        flat: Vec<(ParamId, Tensor<B::InnerBackend, 1>)>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Take<'_, B> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(p.id) {
                let n = g.shape().num_elements();
                self.flat.push((p.id, g.reshape([n])));
            }
        }
    }
    let mut take = Take::<B> {
        grads,
        flat: Vec::new(),
    };
    module.visit(&mut take);
    let flat = take.flat;

    // 2. reduce bucket by bucket
    let max_elems = (bucket_bytes / 4).max(1);
    let mut reduced: Vec<(ParamId, Tensor<B::InnerBackend, 1>)> = Vec::with_capacity(flat.len());
    let mut bucket: Vec<(ParamId, Tensor<B::InnerBackend, 1>)> = Vec::new();
    let mut size = 0usize;
    let mut flush = |bucket: &mut Vec<(ParamId, Tensor<B::InnerBackend, 1>)>,
                     reduced: &mut Vec<(ParamId, Tensor<B::InnerBackend, 1>)>| {
        if bucket.is_empty() {
            return;
        }
        let sizes: Vec<usize> = bucket.iter().map(|(_, t)| t.dims()[0]).collect();
        let joined = Tensor::cat(bucket.iter().map(|(_, t)| t.clone()).collect(), 0);
        let mean = collective.all_reduce_mean(joined);
        let mut start = 0;
        for ((id, _), n) in bucket.drain(..).zip(sizes) {
            reduced.push((id, mean.clone().narrow(0, start, n)));
            start += n;
        }
    };
    for (id, t) in flat {
        let n = t.dims()[0];
        if size + n > max_elems && !bucket.is_empty() {
            flush(&mut bucket, &mut reduced);
            size = 0;
        }
        size += n;
        bucket.push((id, t));
    }
    flush(&mut bucket, &mut reduced);

    // 3. put them back with their shapes
    struct Put<'a, B: AutodiffBackend> {
        grads: &'a mut GradientsParams,
        reduced: std::collections::HashMap<ParamId, Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Put<'_, B> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            if let Some(g) = self.reduced.remove(&p.id) {
                let shape: [usize; D] = p.lazy_shape().dims();
                self.grads
                    .register::<B::InnerBackend, D>(p.id, g.reshape(shape));
            }
        }
    }
    module.visit(&mut Put::<B> {
        grads,
        reduced: reduced.into_iter().collect(),
    });
}
