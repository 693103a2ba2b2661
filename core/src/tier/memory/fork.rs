//! L1 across a `fork()`.
//!
//! A child process created by `fork()` must not touch a lock that one of the
//! parent's threads held at that instant. [`L1`] holds the tier behind a
//! pointer and gives a forked child a new, empty tier on its first use; the
//! parent's copy is leaked in the child (its pages are shared with the
//! parent until written, and nothing in the child reads them again).

use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use super::MemoryTier;
use crate::stats::Counters;

/// L1 as the engine holds it: replaced by a new, empty tier on the first use
/// in a forked child (see the module docs).
pub(crate) struct L1 {
    current: AtomicPtr<MemoryTier>,
    /// The fork generation (see [`crate::fork`]) `current` belongs to.
    generation: AtomicU64,
    /// The generation a new tier is being built for, by one thread.
    building: AtomicU64,
    max_bytes: u64,
    counters: Arc<Counters>,
    check_every: Option<u64>,
    hash_seed: Option<u64>,
}

impl L1 {
    /// `check_every`, `hash_seed`: as in [`MemoryTier::new`].
    pub(crate) fn new(
        max_bytes: u64,
        counters: Arc<Counters>,
        check_every: Option<u64>,
        hash_seed: Option<u64>,
    ) -> Self {
        let tier = MemoryTier::new(max_bytes, counters.clone(), 1, check_every, hash_seed);
        // A fork must be seen even by a cache without a file.
        crate::fork::watch_forks();
        let generation = crate::fork::fork_generation();
        Self {
            current: AtomicPtr::new(Box::into_raw(Box::new(tier))),
            generation: AtomicU64::new(generation),
            building: AtomicU64::new(generation),
            max_bytes,
            counters,
            check_every,
            hash_seed,
        }
    }

    /// The tier of this process.
    #[inline]
    pub(crate) fn get(&self) -> &MemoryTier {
        if crate::fork::fork_generation() != self.generation.load(Ordering::Acquire) {
            return self.after_fork();
        }
        // SAFETY: `current` always points to a live tier: tiers are freed
        // only by `drop`, never replaced ones (see `after_fork`).
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    /// In a forked child: installs a new tier (one thread builds it, the
    /// others wait), leaking the parent's, whose locks may be held forever.
    #[cold]
    fn after_fork(&self) -> &MemoryTier {
        let generation = crate::fork::fork_generation();
        let building = self.building.load(Ordering::Acquire);
        // A build for an older generation was abandoned by a fork: take over.
        if building != generation
            && self
                .building
                .compare_exchange(building, generation, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // SAFETY: as in `get`; the parent's tier is only read here.
            let old = unsafe { &*self.current.load(Ordering::Acquire) };
            // Versions go on from the parent's, so a host's value kept under
            // an old version never matches a new entry.
            let tier = MemoryTier::new(
                self.max_bytes,
                self.counters.clone(),
                old.next_version(),
                self.check_every,
                self.hash_seed,
            );
            self.current
                .store(Box::into_raw(Box::new(tier)), Ordering::Release);
            self.generation.store(generation, Ordering::Release);
        }
        while self.generation.load(Ordering::Acquire) != generation {
            std::thread::yield_now();
        }
        // SAFETY: as in `get`.
        unsafe { &*self.current.load(Ordering::Acquire) }
    }
}

impl Drop for L1 {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::into_raw` and nothing else
        // frees it; `&mut self` means no reference from `get` is alive.
        drop(unsafe { Box::from_raw(*self.current.get_mut()) });
    }
}
