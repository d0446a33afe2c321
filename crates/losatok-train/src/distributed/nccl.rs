//! The multi-GPU collective: NCCL through cudarc's bindings, one process per GPU.
//!
//! `libnccl.so.2` is loaded at run time (like NVRTC for the CUDA backend), so a CUDA build
//! starts, and trains on one GPU, on machines without NCCL. Gradient buckets are staged
//! through host memory: Burn 0.21 exposes no stable handle to a tensor's device buffer, so
//! each bucket is read back (`into_data`), copied to an NCCL buffer on this rank's GPU,
//! summed across ranks in place, and uploaded again. With 32 MiB buckets the two extra copies
//! run at PCIe speed (about 2 × 8 ms per 100 M parameters on an H100 host link); the README's
//! scaling section counts them.

use std::sync::Arc;
use std::time::Duration;

use burn::prelude::*;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use cudarc::nccl::{Comm, Id, ReduceOp};

use super::rendezvous::{share_id, ID_BYTES};
use super::{DistEnv, DistError};
use crate::collective::Collective;

/// The CUDA device a rank trains on: its local rank, or device 0 when the scheduler shows
/// each rank only its own GPU (SLURM's `--gpus-per-task=1`, `CUDA_VISIBLE_DEVICES` set per
/// rank).
pub fn cuda_ordinal(local_rank: usize) -> Result<usize, DistError> {
    let count = guarded("counting CUDA devices", CudaContext::device_count)? as usize;
    match count {
        0 => Err(DistError::Nccl("no CUDA device is visible".into())),
        1 => Ok(0),
        n if local_rank < n => Ok(local_rank),
        n => Err(DistError::Env(format!(
            "LOCAL_RANK {local_rank} but only {n} CUDA devices are visible on this node"
        ))),
    }
}

/// One rank of an NCCL communicator, on one CUDA device.
pub struct Nccl {
    comm: Comm,
    stream: Arc<CudaStream>,
    rank: usize,
    world: usize,
    /// The staging buffer, grown to the largest bucket and reused.
    buffer: Option<CudaSlice<f32>>,
}

/// Run a cudarc call that may panic (it panics when a shared library or symbol is missing)
/// and turn both kinds of failure into one-line errors.
fn guarded<T, E: std::fmt::Debug>(
    what: &str,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, DistError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(DistError::Nccl(format!("{what}: {e:?}"))),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown failure".into());
            Err(DistError::Nccl(format!(
                "{what}: {} (is NCCL installed? libnccl.so.2 must be on the library path)",
                msg.split_whitespace().collect::<Vec<_>>().join(" ")
            )))
        }
    }
}

impl Nccl {
    /// Join the job described by `env`: rank 0 creates the NCCL id, the rendezvous hands it
    /// to every rank, and all ranks create the communicator together.
    pub fn init(env: &DistEnv, ordinal: usize, timeout: Duration) -> Result<Self, DistError> {
        let ctx = guarded("opening the CUDA device", || CudaContext::new(ordinal))?;
        let stream = guarded("creating a CUDA stream", || ctx.new_stream())?;
        let id = share_id(
            env,
            || {
                let id = guarded("creating the NCCL id", Id::new)?;
                let mut bytes = [0u8; ID_BYTES];
                for (b, c) in bytes.iter_mut().zip(id.internal()) {
                    *b = *c as u8;
                }
                Ok(bytes)
            },
            timeout,
        )?;
        let mut internal = [0 as std::ffi::c_char; ID_BYTES];
        for (c, b) in internal.iter_mut().zip(id) {
            *c = b as std::ffi::c_char;
        }
        let comm = guarded("creating the NCCL communicator", || {
            Comm::from_rank(
                stream.clone(),
                env.rank,
                env.world_size,
                Id::uninit(internal),
            )
        })?;
        Ok(Self {
            comm,
            stream,
            rank: env.rank,
            world: env.world_size,
            buffer: None,
        })
    }

    /// Sum `values` over ranks, in place.
    pub fn sum_f32(&mut self, values: &mut [f32]) -> Result<(), DistError> {
        let n = values.len();
        if n == 0 {
            return Ok(());
        }
        if self.buffer.as_ref().is_none_or(|b| b.len() < n) {
            let stream = self.stream.clone();
            self.buffer = Some(guarded("allocating the NCCL buffer", || {
                stream.alloc_zeros::<f32>(n)
            })?);
        }
        let stream = self.stream.clone();
        let buf = self.buffer.as_mut().expect("allocated above");
        let mut view = buf.slice_mut(0..n);
        guarded("copying a gradient bucket to the GPU", || {
            stream.memcpy_htod(values, &mut view)
        })?;
        let comm = &self.comm;
        guarded("NCCL all-reduce", || {
            comm.all_reduce_in_place(&mut view, &ReduceOp::Sum)
        })?;
        guarded("copying a gradient bucket back", || {
            stream.memcpy_dtoh(&view, values)
        })?;
        guarded("waiting for NCCL", || stream.synchronize())?;
        Ok(())
    }

    /// Sum `values` over ranks, in place, in double precision.
    pub fn sum_f64(&mut self, values: &mut [f64]) -> Result<(), DistError> {
        if values.is_empty() {
            return Ok(());
        }
        let stream = self.stream.clone();
        let mut buf = guarded("copying values to the GPU", || stream.clone_htod(values))?;
        let comm = &self.comm;
        guarded("NCCL all-reduce", || {
            comm.all_reduce_in_place(&mut buf, &ReduceOp::Sum)
        })?;
        guarded("copying values back", || stream.memcpy_dtoh(&buf, values))?;
        guarded("waiting for NCCL", || stream.synchronize())?;
        Ok(())
    }
}

impl<B: Backend> Collective<B> for Nccl {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn all_reduce_mean(&mut self, t: Tensor<B, 1>) -> Result<Tensor<B, 1>, DistError> {
        let device = t.device();
        let mut values = t
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| DistError::Nccl(format!("reading a gradient bucket: {e:?}")))?;
        self.sum_f32(&mut values)?;
        let inv = 1.0 / self.world as f32;
        values.iter_mut().for_each(|v| *v *= inv);
        let n = values.len();
        Ok(Tensor::from_data(TensorData::new(values, [n]), &device))
    }
    fn all_reduce_sum_host(&mut self, values: &mut [f64]) -> Result<(), DistError> {
        self.sum_f64(values)
    }
}
