//! Reads served by L1, counted per entry without a lock, and handed to L2
//! (which records them for eviction): taken from the map, and kept for
//! entries that leave it.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use quick_cache::Lifecycle;

use super::{Key, MemEntry, MemoryTier};
use crate::stats::Counters;

/// Reads taken from L1 for L2: by row id, and by key for the entries
/// written before their row existed (a write journaled, whose row the
/// drain makes; see `tier::sqlite::journal`), whose row L2 finds by key.
#[derive(Debug, Default)]
pub(crate) struct TakenReads {
    pub(crate) rows: Vec<(i64, u64)>,
    pub(crate) keys: Vec<(Key, u64)>,
    /// Whether entries without a row may get one (there is an L2): their
    /// reads are kept by key, else dropped.
    keyed: bool,
}

impl TakenReads {
    pub(super) fn new(keyed: bool) -> Self {
        Self {
            keyed,
            ..Self::default()
        }
    }

    fn push(&mut self, key: &str, row: i64, reads: u64) {
        match row {
            0 if self.keyed => self.keys.push((Key::new(key), reads)),
            0 => {}
            row => self.rows.push((row, reads)),
        }
    }

    /// Takes what was kept, leaving none.
    pub(super) fn take(&mut self) -> Self {
        std::mem::replace(self, Self::new(self.keyed))
    }
}

thread_local! {
    /// Set while the map copies entries out for something that is not a
    /// read (a peek, a walk); see [`Reads`].
    static PEEKING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, whose copies of entries are not reads (see [`Reads`]).
pub(super) fn peeking<R>(f: impl FnOnce() -> R) -> R {
    PEEKING.set(true);
    let out = f();
    PEEKING.set(false);
    out
}

/// The reads of one L1 entry not yet handed to L2.
///
/// The map hands an entry out only as a copy (`Clone`), made under its
/// shard's read lock from the entry in its slot, and a copy is a read
/// unless made inside [`peeking`] (which every peek and walk of this
/// module is): it adds one to the slot's count, an atomic add on a cache
/// line the lookup has just read, with no lock and no second probe. The hit
/// path reads the thread-local flag once and writes nothing but the count.
/// Threads reading one key at once share that cache line, as they share the
/// value's refcount.
#[derive(Debug, Default)]
pub(super) struct Reads(AtomicU64);

impl Reads {
    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Clone for Reads {
    #[inline]
    fn clone(&self) -> Self {
        let n = if PEEKING.get() {
            self.get()
        } else {
            self.0.fetch_add(1, Ordering::Relaxed) + 1
        };
        Self(AtomicU64::new(n))
    }
}

/// Counts evictions, and keeps the reads of an evicted entry for L2.
#[derive(Clone)]
pub(super) struct OnEvict {
    pub(super) counters: Arc<Counters>,
    pub(super) departed: Arc<Mutex<TakenReads>>,
}

impl Lifecycle<Key, MemEntry> for OnEvict {
    /// The entries an insert evicted, counted and their reads kept, left
    /// for the inserting caller to drop once the map's lock is released
    /// (see [`MemoryTier::insert`]).
    type RequestState = Vec<MemEntry>;

    fn on_evict(&self, evicted: &mut Vec<MemEntry>, key: Key, val: MemEntry) {
        self.counters.memory.evictions.incr();
        depart(&self.departed, &key, &val, 0);
        evicted.push(val);
    }
}

/// Keeps the reads of `entry`, which leaves L1, for L2 to count (but
/// `not_reads` of them, lookups that turned out not to be reads).
pub(super) fn depart(departed: &Mutex<TakenReads>, key: &str, entry: &MemEntry, not_reads: u64) {
    let reads = entry.reads.get().saturating_sub(not_reads);
    if reads > 0 {
        departed.lock().push(key, entry.row, reads);
    }
}

impl MemoryTier {
    /// Reads of `key` counted here and not yet handed to L2 (`row`: the L2
    /// row the count belongs to; 0: no L2): its entry's (that of the row,
    /// or one written before its row existed), and those of its entries
    /// that left L1.
    pub(crate) fn pending_reads(&self, key: &str, row: i64) -> u64 {
        let held = self
            .peek(key)
            .filter(|e| e.row == row || e.row == 0)
            .map_or(0, |e| e.reads.get());
        let departed = self.departed.lock();
        let by_row: u64 = match row {
            0 => 0,
            _ => departed
                .rows
                .iter()
                .filter(|(r, _)| *r == row)
                .map(|(_, n)| n)
                .sum(),
        };
        let by_key: u64 = departed
            .keys
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, n)| n)
            .sum();
        held + by_row + by_key
    }
    /// Takes the reads counted since the last call, of the entries held in
    /// an L2 row and of those that left L1 meanwhile, for L2 to add to the
    /// rows' read counts. Walks L1 (a shard at a time, under its write
    /// lock) only if it served a hit since the last walk.
    pub(crate) fn take_reads(&self) -> TakenReads {
        let taken = RefCell::new(self.departed.lock().take());
        if self.unwalked.swap(false, Ordering::Relaxed) {
            self.map.retain(|key, entry| {
                let reads = entry.reads.0.swap(0, Ordering::Relaxed);
                if reads > 0 {
                    taken.borrow_mut().push(key, entry.row, reads);
                }
                true
            });
        }
        taken.into_inner()
    }
    /// Forgets the reads kept for `key`, deleted, and its row `row`: a new
    /// row given the same id, or the key's next row, must not inherit them.
    pub(crate) fn forget_reads(&self, key: &str, row: i64) {
        let mut departed = self.departed.lock();
        if row != 0 {
            departed.rows.retain(|(r, _)| *r != row);
        }
        departed.keys.retain(|(k, _)| k != key);
    }
}
