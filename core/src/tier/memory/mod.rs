//! L1: this process's memory.
//!
//! A byte-bounded [`quick_cache`] (its CLOCK-Pro-style policy keeps a hot
//! set and a ghost list, so a one-off scan does not flush the hot set),
//! sharded so that readers take only their shard's read lock. Each entry
//! carries its own expiry, checked against the cache's clock on every read.
//!
//! quick_cache was chosen by measurement (see `bench/`): its hit is about
//! 2–4× cheaper than moka's and its hit ratio on a Zipf(0.99) trace matches
//! moka's TinyLFU within a fraction of a point.
//!
//! Each job has its own file: the entries ([`entry`]), the map's options
//! sized from the byte budget ([`estimate`]), the reads they count for L2
//! ([`reads`]), the ordering of writes and promotions ([`ordering`]) and L1
//! across a `fork()` ([`fork`]).

mod entry;
mod estimate;
mod fork;
mod ordering;
mod reads;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use compact_str::CompactString;
use parking_lot::Mutex;
use quick_cache::DefaultHashBuilder;
use quick_cache::sync::Cache as QuickCache;

use crate::stats::Counters;
use entry::ByteWeighter;
pub(crate) use entry::MemEntry;
pub use entry::{ENTRY_OVERHEAD, entry_size};
pub(crate) use fork::L1;
pub(crate) use ordering::Ticket;
use ordering::{STRIPES, Stripe};
pub(crate) use reads::TakenReads;
use reads::{OnEvict, depart, peeking};

/// Keys of up to 24 bytes are stored inline in the map's slot, so a lookup
/// compares them without following a pointer to the heap (and a copy of
/// one allocates nothing).
pub(crate) type Key = CompactString;

type Map = QuickCache<Key, MemEntry, ByteWeighter, MapHasher, OnEvict>;

/// The map's hasher: quick_cache's own (foldhash, quality variant), seeded
/// at random unless `memory.hash_seed` fixes the seed.
type MapHasher = foldhash::quality::SeedableRandomState;

fn map_hasher(seed: Option<u64>) -> MapHasher {
    match seed {
        Some(seed) => MapHasher::with_seed(seed, foldhash::SharedSeed::global_fixed()),
        None => MapHasher::random(),
    }
}

pub(crate) struct MemoryTier {
    map: Map,
    /// Reads of entries that left L1 (evicted, expired, dropped after
    /// another process's change) before they were handed to L2; see
    /// [`MemoryTier::take_reads`].
    departed: Arc<Mutex<TakenReads>>,
    /// Whether a hit was served since [`MemoryTier::take_reads`] last
    /// walked the map. Written by a hit only when it is false (once a
    /// pass), so hits on many threads do not share a written cache line.
    unwalked: AtomicBool,
    max_bytes: u64,
    /// The largest entry L1 keeps ([`entry_size`]): one shard's share of
    /// `max_bytes`.
    max_entry: u64,
    next_version: AtomicU64,
    /// Journaled writes applied so far (see [`ordering`]).
    appends: AtomicU64,
    /// Tag -> the (key, version) pairs written with it. Kept beside the map
    /// so that untagged entries (and the hit path) carry nothing for tags; a
    /// pair whose key now holds another version is stale and ignored.
    tagged: Mutex<HashMap<String, Vec<(Key, u64)>>>,
    stripes: Box<[Stripe]>,
    hasher: DefaultHashBuilder,
    /// When (clock milliseconds) this L1 last checked the L2 file for other
    /// processes' changes (see [`crate::coherence`] and
    /// [`MemoryTier::check_due`]). `u64::MAX` in a new L1 that watches a
    /// file: its first use checks.
    pub(crate) checked_at: AtomicU64,
    /// How long a check holds, in milliseconds (`sqlite.coherence_interval`);
    /// `u64::MAX` when there is nothing to watch.
    check_every: u64,
}

impl MemoryTier {
    /// A tier whose first entry version is `first_version`; `check_every`:
    /// how often (milliseconds) an L2 file is checked for other processes'
    /// changes, `None` if there is none to watch; `hash_seed`: as
    /// `memory.hash_seed`.
    pub(crate) fn new(
        max_bytes: u64,
        counters: Arc<Counters>,
        first_version: u64,
        check_every: Option<u64>,
        hash_seed: Option<u64>,
    ) -> Self {
        let options = estimate::map_options(max_bytes)
            .build()
            .expect("estimated capacity and weight are set");
        // With an L2 (a file to watch), an entry's row may be made after it.
        let departed = Arc::new(Mutex::new(TakenReads::new(check_every.is_some())));
        let map = Map::with_options(
            options,
            ByteWeighter,
            map_hasher(hash_seed),
            OnEvict {
                counters,
                departed: departed.clone(),
            },
        );
        // A shard holds at most its share of the budget; larger entries are not kept in L1.
        let max_entry = map.shard_capacity();
        Self {
            map,
            departed,
            unwalked: AtomicBool::new(false),
            max_bytes,
            max_entry,
            next_version: AtomicU64::new(first_version),
            appends: AtomicU64::new(0),
            tagged: Mutex::new(HashMap::new()),
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            hasher: DefaultHashBuilder::default(),
            checked_at: AtomicU64::new(if check_every.is_some() { u64::MAX } else { 0 }),
            check_every: check_every.unwrap_or(u64::MAX),
        }
    }

    /// Whether an L2 file is below (there is one to watch).
    fn over_file(&self) -> bool {
        self.check_every != u64::MAX
    }

    /// Whether a check for other processes' changes is due at `now_ms`: one
    /// interval after the last check, or at once if the clock now reads
    /// earlier than it did then. The clock is the wall clock, which can be
    /// stepped back (NTP, an administrator); waiting for it to catch up
    /// would put the checks off for as long as the step, and L1 would serve
    /// what other processes replaced meanwhile. (A thread whose `now_ms` was
    /// read just before another thread's check also checks again: a cheap
    /// `data_version` read, and rare.) Never due without a file to watch.
    #[inline]
    pub(crate) fn check_due(&self, now_ms: u64) -> bool {
        let last = self.checked_at.load(Ordering::Relaxed);
        now_ms >= last.saturating_add(self.check_every) || now_ms < last
    }

    /// The version the next stored entry will get.
    pub(crate) fn next_version(&self) -> u64 {
        self.next_version.load(Ordering::Relaxed)
    }

    /// A fresh entry, or `None`, counted as a read of it (see [`Reads`](reads::Reads)).
    /// An expired entry is removed on the way.
    #[inline(always)]
    pub(crate) fn get(&self, key: &str, now_ms: u64) -> Option<MemEntry> {
        let entry = self.map.get(key)?;
        if now_ms < entry.expires_ms {
            if !self.unwalked.load(Ordering::Relaxed) {
                self.unwalked.store(true, Ordering::Relaxed);
            }
            return Some(entry);
        }
        self.remove_expired(key, now_ms);
        None
    }

    #[cold]
    fn remove_expired(&self, key: &str, now_ms: u64) {
        // L2 may keep the row longer than L1 (`memory.ttl`): its reads stay,
        // but for the lookup that found it expired.
        if let Some((_, old)) = self.map.remove_if(key, |e| now_ms >= e.expires_ms) {
            depart(&self.departed, key, &old, 1);
        }
    }

    /// The fresh entry of `key`, not counted as a read.
    pub(crate) fn peek_fresh(&self, key: &str, now_ms: u64) -> Option<MemEntry> {
        self.peek(key).filter(|e| now_ms < e.expires_ms)
    }

    /// Whether `key` holds a fresh entry; does not count as a use.
    pub(crate) fn contains_fresh(&self, key: &str, now_ms: u64) -> bool {
        self.peek(key).is_some_and(|e| now_ms < e.expires_ms)
    }

    /// Stores an entry under a new version, which it returns; one too large
    /// for L1 is dropped (and any older value for the key removed, so a read
    /// never sees it), and `None` returned.
    fn insert(&self, key: &str, mut entry: MemEntry) -> Option<u64> {
        if entry_size(key, entry.value.len()) > self.max_entry {
            if let Some((_, old)) = self.map.remove(key) {
                depart(&self.departed, key, &old, 0);
            }
            return None;
        }
        // A rewrite of the key keeps its first write, and the reads of the
        // row it rewrites not yet handed to L2 (insertions of a key are
        // ordered by its stripe's lock, held by every caller).
        let old = match self.peek(key) {
            // No L2: no walk hands reads over, so a copy of the count is
            // exact but for hits racing this write (the map drops the old
            // entry as evicted, and its reads with it: it has no row).
            Some(old) if !self.over_file() => Some(old),
            // Removed first, so that its count is final: no hit adds to it
            // and no walk hands it over after this. Meanwhile a read of the
            // key goes to L2, which holds the value being written.
            Some(_) => self.map.remove(key).map(|(_, old)| old),
            None => None,
        };
        if let Some(old) = old {
            if old.row == entry.row {
                entry.first_ms = old.first_ms;
                entry.reads = old.reads;
            } else {
                depart(&self.departed, key, &old, 0);
            }
        }
        entry.version = self.next_version.fetch_add(1, Ordering::Relaxed);
        let version = entry.version;
        let mut evicted = Vec::new();
        self.map
            .insert_with_lifecycle(Key::new(key), entry, &mut evicted);
        // Dropped past the map's lock: freeing a value another thread
        // allocated waits for that thread's allocator lock, and the other
        // readers of the shard would wait with it.
        drop(evicted);
        Some(version)
    }

    /// [`MemoryTier::insert`], remembering the entry under each of `tags`.
    fn insert_tagged(&self, key: &str, entry: MemEntry, tags: &[String]) -> Option<u64> {
        let version = self.insert(key, entry)?;
        if tags.is_empty() {
            return Some(version);
        }
        let mut tagged = self.tagged.lock();
        for tag in tags {
            tagged
                .entry(tag.clone())
                .or_default()
                .push((Key::new(key), version));
        }
        // Pairs go stale as keys are rewritten or evicted; drop them once
        // they could outnumber the entries.
        let pairs: usize = tagged.values().map(Vec::len).sum();
        if pairs > 2 * self.map.len() + 1024 {
            for list in tagged.values_mut() {
                list.retain(|(k, v)| self.peek(k).is_some_and(|e| e.version == *v));
            }
            tagged.retain(|_, list| !list.is_empty());
        }
        Some(version)
    }

    /// Removes every entry still holding a value written with `tag`;
    /// returns the keys of those that were fresh.
    pub(crate) fn remove_tagged(&self, tag: &str, now_ms: u64) -> Vec<String> {
        let pairs = self.tagged.lock().remove(tag).unwrap_or_default();
        pairs
            .into_iter()
            .filter(|(key, version)| {
                self.map
                    .remove_if(key, |e| e.version == *version)
                    .inspect(|(key, e)| self.forget_reads(key, e.row))
                    .is_some_and(|(_, e)| now_ms < e.expires_ms)
            })
            .map(|(key, _)| key.into_string())
            .collect()
    }

    /// Fresh keys, in no particular order.
    pub(crate) fn fresh_keys(&self, now_ms: u64) -> impl Iterator<Item = String> + '_ {
        let keys: Vec<String> = peeking(|| {
            self.map
                .iter()
                .filter(move |(_, e)| now_ms < e.expires_ms)
                .map(|(k, _)| k.into_string())
                .collect()
        });
        keys.into_iter()
    }

    /// `key`'s entry, fresh or not, not counted as a read.
    fn peek(&self, key: &str) -> Option<MemEntry> {
        peeking(|| self.map.peek(key))
    }

    pub(crate) fn entries(&self) -> u64 {
        self.map.len() as u64
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.map.weight()
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The largest entry ([`entry_size`]) L1 keeps: the budget is split
    /// over the map's shards, and an entry must fit in one.
    pub(crate) fn max_entry(&self) -> u64 {
        self.max_entry
    }

    /// How many shards the budget is split over.
    pub(crate) fn shards(&self) -> usize {
        self.map.num_shards()
    }
}
