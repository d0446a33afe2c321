//! The per-rank batch loader with background prefetching.
//!
//! Step `s` of rank `r` holds the items at global indices
//! `g = s · global_batch + r · per_rank_batch + i` for `i < per_rank_batch`, with
//! `global_batch = world_size · per_rank_batch`: the ranks of one step share out one global
//! batch of disjoint indices, and since every item is a pure function of its index
//! ([`Dataset::item`]), a batch is identical whatever the number of workers, their timing,
//! or the step the loader started at. Resuming a run at step `s` only needs a loader created
//! with the same manifest, configuration, rank and world size, asked for step `s`.
//!
//! `workers` threads compute the items of the requested step first, then those of the next
//! `prefetch` steps. Asking for a step other than the next one (a resume, a jump) discards
//! the prepared steps that fall outside the new window. Dropping the loader stops and joins
//! the workers (each finishes at most the crop it is reading).

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::dataset::{DataConfig, Dataset, Item, ItemInfo, SkipStats};
use super::manifest::ManifestEntry;
use super::DataError;

/// The crops of one rank for one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// The training step.
    pub step: u64,
    /// `batch × samples` values, row-major (one crop per row).
    pub audio: Vec<f32>,
    /// Number of crops (the per-rank batch size).
    pub batch: usize,
    /// Samples per crop (16 kHz).
    pub samples: usize,
    /// Origin of each crop, in row order.
    pub items: Vec<ItemInfo>,
}

impl Batch {
    /// Row `i` of [`Batch::audio`].
    ///
    /// # Panics
    /// If `i >= self.batch`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.audio[i * self.samples..(i + 1) * self.samples]
    }
}

/// Item indices of one rank.
#[derive(Clone, Copy, Debug)]
struct Layout {
    rank: usize,
    per_rank: usize,
    global: usize,
}

impl Layout {
    fn index(&self, step: u64, i: usize) -> Result<u64, DataError> {
        step.checked_mul(self.global as u64)
            .and_then(|v| v.checked_add((self.rank * self.per_rank + i) as u64))
            .ok_or_else(|| DataError::InvalidConfig(format!("step {step} is too large")))
    }
}

type ItemResult = Result<Item, DataError>;

struct Slot {
    id: u64,
    items: Vec<Option<ItemResult>>,
    claimed: usize,
    filled: usize,
}

struct Sched {
    /// The step expected next; the window is `next .. next + window`.
    next: u64,
    slots: BTreeMap<u64, Slot>,
    serial: u64,
    shutdown: bool,
}

struct Shared {
    dataset: Arc<Dataset>,
    layout: Layout,
    window: u64,
    sched: Mutex<Sched>,
    /// Workers wait here for work.
    work: Condvar,
    /// The consumer waits here for a finished step.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Sched> {
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the window to start at `step`, keeping the prepared steps still inside it.
    fn reposition(&self, st: &mut Sched, step: u64) {
        if st.next != step {
            let end = step.saturating_add(self.window);
            st.slots.retain(|&s, _| s >= step && s < end);
            st.next = step;
        }
    }

    /// Claims the first unclaimed item of the window: `(step, slot id, item)`.
    fn claim(&self, st: &mut Sched) -> Option<(u64, u64, usize)> {
        let n = self.layout.per_rank;
        for step in st.next..st.next.saturating_add(self.window) {
            let serial = &mut st.serial;
            let slot = st.slots.entry(step).or_insert_with(|| {
                *serial += 1;
                Slot {
                    id: *serial,
                    items: (0..n).map(|_| None).collect(),
                    claimed: 0,
                    filled: 0,
                }
            });
            if slot.claimed < n {
                slot.claimed += 1;
                return Some((step, slot.id, slot.claimed - 1));
            }
        }
        None
    }

    /// Computes one item, turning a panic into an error.
    fn compute(&self, step: u64, i: usize) -> ItemResult {
        let index = self.layout.index(step, i)?;
        panic::catch_unwind(AssertUnwindSafe(|| self.dataset.item(index))).unwrap_or_else(|p| {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(DataError::Worker(super::one_line(format!(
                "panic while loading item {index}: {what}"
            ))))
        })
    }

    fn worker(&self) {
        let mut st = self.lock();
        loop {
            if st.shutdown {
                return;
            }
            let Some((step, id, i)) = self.claim(&mut st) else {
                st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            drop(st);
            let result = self.compute(step, i);
            st = self.lock();
            if let Some(slot) = st.slots.get_mut(&step) {
                if slot.id == id && slot.items[i].is_none() {
                    slot.items[i] = Some(result);
                    slot.filled += 1;
                    if slot.filled == slot.items.len() {
                        self.done.notify_all();
                    }
                }
            }
        }
    }
}

/// Produces the per-rank batch of any training step; see the module documentation.
pub struct Loader {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("rank", &self.shared.layout.rank)
            .field("per_rank_batch", &self.shared.layout.per_rank)
            .field("global_batch", &self.shared.layout.global)
            .field("workers", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl Loader {
    /// A loader for `rank` of `world_size` ranks, each taking `per_rank_batch` crops per step
    /// (the global batch is `world_size · per_rank_batch`). Starts `config.workers` threads.
    pub fn new(
        entries: Vec<ManifestEntry>,
        config: &DataConfig,
        rank: usize,
        world_size: usize,
        per_rank_batch: usize,
    ) -> Result<Self, DataError> {
        let dataset = Arc::new(Dataset::new(entries, config)?);
        Self::with_dataset(
            dataset,
            config.workers,
            config.prefetch,
            rank,
            world_size,
            per_rank_batch,
        )
    }

    /// Like [`Loader::new`] over an existing dataset (its file cache and counters are shared,
    /// for example between the loaders of several ranks in one process).
    pub fn with_dataset(
        dataset: Arc<Dataset>,
        workers: usize,
        prefetch: usize,
        rank: usize,
        world_size: usize,
        per_rank_batch: usize,
    ) -> Result<Self, DataError> {
        if world_size == 0 || rank >= world_size {
            return Err(DataError::InvalidConfig(format!(
                "rank {rank} is not in 0..{world_size} (world size)"
            )));
        }
        if per_rank_batch == 0 {
            return Err(DataError::InvalidConfig(
                "the per-rank batch size must be at least 1".into(),
            ));
        }
        let global = world_size.checked_mul(per_rank_batch).ok_or_else(|| {
            DataError::InvalidConfig("world_size · per_rank_batch overflows".into())
        })?;
        let shared = Arc::new(Shared {
            dataset,
            layout: Layout {
                rank,
                per_rank: per_rank_batch,
                global,
            },
            window: prefetch as u64 + 1,
            sched: Mutex::new(Sched {
                next: 0,
                slots: BTreeMap::new(),
                serial: 0,
                shutdown: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let mut threads = Vec::with_capacity(workers);
        for k in 0..workers {
            let s = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("losatok-data-{k}"))
                .spawn(move || s.worker());
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    let loader = Loader { shared, threads };
                    drop(loader);
                    return Err(DataError::Worker(format!(
                        "cannot start a data worker thread: {e}"
                    )));
                }
            }
        }
        Ok(Loader { shared, threads })
    }

    /// The batch of training step `step` for this rank. Identical for a given manifest,
    /// configuration, rank and world size, whatever happened before.
    pub fn batch(&mut self, step: u64) -> Result<Batch, DataError> {
        let shared = &self.shared;
        let n = shared.layout.per_rank;
        let results: Vec<ItemResult> = if self.threads.is_empty() {
            (0..n).map(|i| shared.compute(step, i)).collect()
        } else {
            let mut st = shared.lock();
            shared.reposition(&mut st, step);
            shared.work.notify_all();
            loop {
                if st.slots.get(&step).is_some_and(|s| s.filled == n) {
                    break;
                }
                st = shared.done.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            let slot = st.slots.remove(&step);
            st.next = step.saturating_add(1);
            shared.work.notify_all();
            drop(st);
            slot.map(|s| s.items.into_iter().flatten().collect())
                .unwrap_or_default()
        };
        if results.len() != n {
            return Err(DataError::Worker(format!(
                "step {step}: {} of {n} items were produced",
                results.len()
            )));
        }
        let segment = shared.dataset.segment_samples();
        let mut audio = Vec::with_capacity(n * segment);
        let mut items = Vec::with_capacity(n);
        for r in results {
            let item = r?;
            audio.extend_from_slice(&item.audio);
            items.push(item.info);
        }
        Ok(Batch {
            step,
            audio,
            batch: n,
            samples: segment,
            items,
        })
    }

    /// Starts preparing `step` and the `prefetch` steps after it without waiting, for
    /// example right after creating the loader of a resumed run (a new loader starts with
    /// step 0). Results never depend on this call.
    pub fn prefetch_from(&mut self, step: u64) {
        if self.threads.is_empty() {
            return;
        }
        let mut st = self.shared.lock();
        self.shared.reposition(&mut st, step);
        drop(st);
        self.shared.work.notify_all();
    }

    /// Counters of unreadable files and replaced draws (see [`SkipStats`]).
    pub fn skipped(&self) -> SkipStats {
        self.shared.dataset.skipped()
    }

    /// The files found unreadable so far, with their one-line errors.
    pub fn broken_files(&self) -> Vec<(PathBuf, String)> {
        self.shared.dataset.broken_files()
    }

    /// The underlying dataset.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.shared.dataset
    }

    /// Crops per step for this rank.
    pub fn per_rank_batch(&self) -> usize {
        self.shared.layout.per_rank
    }

    /// Crops per step over all ranks.
    pub fn global_batch(&self) -> usize {
        self.shared.layout.global
    }

    /// Global index of item `i` of `step` for this rank.
    pub fn global_index(&self, step: u64, i: usize) -> Result<u64, DataError> {
        self.shared.layout.index(step, i)
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.shutdown = true;
            st.slots.clear();
        }
        self.shared.work.notify_all();
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}
