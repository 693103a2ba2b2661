//! [`Counter`]: an event count many threads bump without sharing a cache
//! line.
//!
//! Each counter has one cache-line-padded cell per thread slot. The first
//! [`OWNED_SLOTS`] threads to touch any counter each own a slot until they
//! exit, and bump their cell with a plain load and store: one writer per
//! cell, so no locked instruction on the L1 hit path and no cache line
//! shared between threads. Threads beyond that share one last cell, bumped
//! atomically. Reads sum the cells.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::TIME_SAMPLE_EVERY;

/// Threads that get a cell of their own in every counter.
const OWNED_SLOTS: usize = 15;
/// The cell shared by every other thread.
const SHARED_SLOT: usize = OWNED_SLOTS;
const UNASSIGNED: usize = usize::MAX;

#[repr(align(128))]
#[derive(Default)]
struct Cell128(AtomicU64);

/// A counter that many threads can bump without sharing a cache line.
#[derive(Default)]
pub(crate) struct Counter {
    cells: [Cell128; OWNED_SLOTS + 1],
}

static SLOT_TAKEN: [AtomicBool; OWNED_SLOTS] = [const { AtomicBool::new(false) }; OWNED_SLOTS];

/// Per-thread state: the slot this thread writes. Dropping it (at thread
/// exit) frees the slot.
struct Local {
    slot: Cell<usize>,
}

impl Drop for Local {
    fn drop(&mut self) {
        let slot = self.slot.replace(SHARED_SLOT);
        if slot < OWNED_SLOTS {
            // Release: this thread's last stores are visible to the next owner.
            SLOT_TAKEN[slot].store(false, Ordering::Release);
        }
    }
}

thread_local! {
    static LOCAL: Local = const { Local { slot: Cell::new(UNASSIGNED) } };
}

#[inline]
fn slot() -> usize {
    LOCAL
        .try_with(|l| match l.slot.get() {
            UNASSIGNED => assign_slot(&l.slot),
            slot => slot,
        })
        .unwrap_or(SHARED_SLOT)
}

#[cold]
fn assign_slot(cell: &Cell<usize>) -> usize {
    let slot = SLOT_TAKEN
        .iter()
        .position(|taken| {
            taken
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })
        .unwrap_or(SHARED_SLOT);
    cell.set(slot);
    slot
}

impl Counter {
    /// This thread's cell, for an event that is timed one time in
    /// [`TIME_SAMPLE_EVERY`]: [`Mine::sample_next`] then [`Mine::incr`]
    /// find the thread's slot once between them.
    #[inline]
    pub(crate) fn mine(&self) -> Mine<'_> {
        let slot = slot();
        Mine {
            cell: &self.cells[slot].0,
            shared: slot == SHARED_SLOT,
        }
    }

    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.mine().add(n);
    }

    #[inline]
    pub(crate) fn incr(&self) {
        self.add(1);
    }

    pub(crate) fn get(&self) -> u64 {
        self.cells.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn reset(&self) {
        for c in &self.cells {
            c.0.store(0, Ordering::Relaxed);
        }
    }
}

/// A counter's cell for the calling thread (see [`Counter::mine`]).
pub(crate) struct Mine<'a> {
    cell: &'a AtomicU64,
    shared: bool,
}

impl Mine<'_> {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        if self.shared {
            self.cell.fetch_add(n, Ordering::Relaxed);
        } else {
            // This thread is the cell's only writer.
            self.cell.store(
                self.cell.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        }
    }

    #[inline]
    pub(crate) fn incr(&self) {
        self.add(1);
    }

    /// The start time of the next event to time, if the next bump of this
    /// cell is one in [`TIME_SAMPLE_EVERY`] (the first, then every 64th);
    /// reads only, so the sampling decision adds no store to the hit path.
    #[inline]
    pub(crate) fn sample_next(&self) -> Option<Instant> {
        let n = self.cell.load(Ordering::Relaxed);
        n.is_multiple_of(u64::from(TIME_SAMPLE_EVERY))
            .then(Instant::now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_sums_across_threads_owned_and_shared() {
        let counter = std::sync::Arc::new(Counter::default());
        // More threads than owned slots, so the shared cell is used too.
        let threads = OWNED_SLOTS + 9;
        let all_started = std::sync::Arc::new(std::sync::Barrier::new(threads));
        let threads: Vec<_> = (0..threads)
            .map(|_| {
                let (c, all_started) = (counter.clone(), all_started.clone());
                std::thread::spawn(move || {
                    c.incr();
                    all_started.wait();
                    (1..1000).for_each(|_| c.incr());
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.get(), 1000 * (OWNED_SLOTS as u64 + 9));
    }

    #[test]
    fn one_event_in_sample_every_is_timed() {
        let counter = Counter::default();
        let timed = (0..TIME_SAMPLE_EVERY * 3)
            .filter(|_| {
                let sampled = counter.mine().sample_next().is_some();
                counter.incr();
                sampled
            })
            .count();
        assert_eq!(timed, 3);
    }
}
