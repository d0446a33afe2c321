//! Data-parallel agreement between ranks: the collective operations a training step needs, and
//! the bucketed gradient all-reduce built on them.
//!
//! One process (or thread) per device holds a full replica; after each backward pass every
//! rank's gradients are replaced by their mean over ranks, so every rank applies the same
//! optimiser step. [`Local`] is the single-rank case, [`InProcess`] runs ranks as threads on
//! the CPU, and `distributed::nccl::Nccl` (feature `nccl`) is one process per GPU.
//! Every operation can fail (a lost peer, a NCCL error): the trainer stops with that error.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::distributed::DistError;

/// The collective operations of data-parallel training, on the backend `B` the gradients live on.
pub trait Collective<B: Backend> {
    /// This rank, `0..world_size`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world_size(&self) -> usize;
    /// Element-wise mean over ranks of a 1-D tensor (every rank passes the same length).
    fn all_reduce_mean(&mut self, t: Tensor<B, 1>) -> Result<Tensor<B, 1>, DistError>;
    /// Element-wise sum over ranks of a few host values (agreement on flags and metrics; also
    /// a barrier).
    fn all_reduce_sum_host(&mut self, values: &mut [f64]) -> Result<(), DistError>;
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
    fn all_reduce_mean(&mut self, t: Tensor<B, 1>) -> Result<Tensor<B, 1>, DistError> {
        Ok(t)
    }
    fn all_reduce_sum_host(&mut self, _values: &mut [f64]) -> Result<(), DistError> {
        Ok(())
    }
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
) -> Result<(), DistError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    C: Collective<B::InnerBackend>,
{
    if collective.world_size() == 1 {
        return Ok(());
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
                     reduced: &mut Vec<(ParamId, Tensor<B::InnerBackend, 1>)>|
     -> Result<(), DistError> {
        if bucket.is_empty() {
            return Ok(());
        }
        let sizes: Vec<usize> = bucket.iter().map(|(_, t)| t.dims()[0]).collect();
        let joined = Tensor::cat(bucket.iter().map(|(_, t)| t.clone()).collect(), 0);
        let mean = collective.all_reduce_mean(joined)?;
        let mut start = 0;
        for ((id, _), n) in bucket.drain(..).zip(sizes) {
            reduced.push((id, mean.clone().narrow(0, start, n)));
            start += n;
        }
        Ok(())
    };
    for (id, t) in flat {
        let n = t.dims()[0];
        if size + n > max_elems && !bucket.is_empty() {
            flush(&mut bucket, &mut reduced)?;
            size = 0;
        }
        size += n;
        bucket.push((id, t));
    }
    flush(&mut bucket, &mut reduced)?;

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
    Ok(())
}

/// N ranks in one process (one thread each) on the CPU: the same collective interface as the
/// multi-GPU implementation, for tests and CPU data parallelism. Reductions run on the host in
/// rank order, so every rank receives bit-identical results.
pub struct InProcess {
    rank: usize,
    world: usize,
    shared: std::sync::Arc<Shared>,
}

struct Shared {
    world: usize,
    round: std::sync::Mutex<Round>,
    turn: std::sync::Condvar,
}

#[derive(Default)]
struct Round {
    /// A rank was dropped (its thread ended, e.g. by a panic): waiting ranks must not hang.
    broken: Option<usize>,
    generation: u64,
    slots: Vec<Option<Vec<f64>>>,
    result: Option<std::sync::Arc<Vec<f64>>>,
    taken: usize,
}

impl InProcess {
    /// The ranks of a group of `world` ranks, to be moved to one thread each.
    pub fn group(world: usize) -> Vec<InProcess> {
        assert!(world > 0, "a group needs at least one rank");
        let shared = std::sync::Arc::new(Shared {
            world,
            round: std::sync::Mutex::new(Round {
                slots: vec![None; world],
                ..Round::default()
            }),
            turn: std::sync::Condvar::new(),
        });
        (0..world)
            .map(|rank| InProcess {
                rank,
                world,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Element-wise sum over ranks, in rank order. Fails, instead of waiting for ever, when
    /// another rank of the group has been dropped (its thread ended).
    fn sum(&self, values: Vec<f64>) -> Result<std::sync::Arc<Vec<f64>>, DistError> {
        let s = &self.shared;
        let check = |round: &Round| -> Result<(), DistError> {
            match round.broken {
                Some(r) => Err(DistError::PeerLost(format!(
                    "rank {r} left the in-process group; rank {} cannot continue",
                    self.rank
                ))),
                None => Ok(()),
            }
        };
        let mut round = s.round.lock().unwrap_or_else(|e| e.into_inner());
        // wait until the previous round has been fully taken
        while round.result.is_some() {
            check(&round)?;
            round = s.turn.wait(round).unwrap_or_else(|e| e.into_inner());
        }
        let generation = round.generation;
        round.slots[self.rank] = Some(values);
        if round.slots.iter().all(Option::is_some) {
            let mut slots = std::mem::replace(&mut round.slots, vec![None; s.world]).into_iter();
            let mut acc = slots.next().flatten().expect("rank 0 contributed");
            for other in slots.flatten() {
                assert_eq!(other.len(), acc.len(), "ranks reduced different sizes");
                for (a, b) in acc.iter_mut().zip(other) {
                    *a += b;
                }
            }
            round.result = Some(std::sync::Arc::new(acc));
            s.turn.notify_all();
        } else {
            while !(round.generation == generation && round.result.is_some()) {
                check(&round)?;
                round = s.turn.wait(round).unwrap_or_else(|e| e.into_inner());
            }
        }
        let result = round.result.clone().expect("result present");
        round.taken += 1;
        if round.taken == s.world {
            round.taken = 0;
            round.result = None;
            round.generation += 1;
            s.turn.notify_all();
        }
        Ok(result)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let mut round = self.shared.round.lock().unwrap_or_else(|e| e.into_inner());
        round.broken.get_or_insert(self.rank);
        self.shared.turn.notify_all();
    }
}

impl<B: Backend> Collective<B> for InProcess {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn all_reduce_mean(&mut self, t: Tensor<B, 1>) -> Result<Tensor<B, 1>, DistError> {
        let device = t.device();
        let values: Vec<f64> = t
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("float gradients")
            .into_iter()
            .map(f64::from)
            .collect();
        let n = values.len();
        let sum = self.sum(values)?;
        let mean: Vec<f32> = sum.iter().map(|v| (v / self.world as f64) as f32).collect();
        Ok(Tensor::from_data(TensorData::new(mean, [n]), &device))
    }
    fn all_reduce_sum_host(&mut self, values: &mut [f64]) -> Result<(), DistError> {
        let sum = self.sum(values.to_vec())?;
        values.copy_from_slice(&sum);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn in_process_ranks_agree_on_means_and_sums_over_many_rounds() {
        let handles: Vec<_> = InProcess::group(3)
            .into_iter()
            .map(|mut c| {
                std::thread::spawn(move || {
                    let dev = Default::default();
                    let r = <InProcess as Collective<Flex>>::rank(&c) as f32;
                    let mut out = Vec::new();
                    for round in 0..50 {
                        let t = Tensor::<Flex, 1>::from_data([r + round as f32, 2.0 * r], &dev);
                        let m = c
                            .all_reduce_mean(t)
                            .unwrap()
                            .into_data()
                            .to_vec::<f32>()
                            .unwrap();
                        let mut h = [r as f64, 1.0];
                        <InProcess as Collective<Flex>>::all_reduce_sum_host(&mut c, &mut h)
                            .unwrap();
                        out.push((m, h));
                    }
                    out
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for (round, (m, h)) in results[0].iter().enumerate() {
            assert_eq!(m, &vec![1.0 + round as f32, 2.0]);
            assert_eq!(h, &[3.0, 3.0]);
        }
        assert!(results.iter().all(|r| r == &results[0]), "ranks disagree");
    }

    #[test]
    fn a_rank_that_dies_fails_its_peers_instead_of_hanging_them() {
        let mut group = InProcess::group(2);
        let lost = group.pop().unwrap();
        let mut alive = group.pop().unwrap();
        drop(lost); // e.g. its thread panicked
        let mut v = [1.0];
        let e = <InProcess as Collective<Flex>>::all_reduce_sum_host(&mut alive, &mut v)
            .unwrap_err()
            .to_string();
        assert!(e.contains("rank 1 left"), "{e}");
    }
}
