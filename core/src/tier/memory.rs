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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use compact_str::CompactString;
use parking_lot::Mutex;
use quick_cache::sync::Cache as QuickCache;
use quick_cache::{DefaultHashBuilder, Lifecycle, OptionsBuilder, Weighter};

use crate::stats::Counters;

/// Bytes charged per L1 entry on top of its key and value: the map slot, the
/// key header (keys up to 24 bytes are held inside it), the value handle
/// and the timestamps.
pub const ENTRY_OVERHEAD: u64 = 96;

/// One L1 entry. Cloning it bumps the value's refcount and copies three
/// integers.
#[derive(Clone, Debug)]
pub(crate) struct MemEntry {
    pub(crate) value: Bytes,
    pub(crate) created_ms: u64,
    pub(crate) expires_ms: u64,
    /// Set by [`MemoryTier::insert`]: unique to this stored value.
    pub(crate) version: u64,
}

impl MemEntry {
    /// An entry to insert; its version is assigned on insertion.
    pub(crate) fn new(value: Bytes, created_ms: u64, expires_ms: u64) -> Self {
        Self {
            value,
            created_ms,
            expires_ms,
            version: 0,
        }
    }
}

#[derive(Clone, Copy)]
struct ByteWeighter;

impl Weighter<Key, MemEntry> for ByteWeighter {
    #[inline]
    fn weight(&self, key: &Key, val: &MemEntry) -> u64 {
        key.len() as u64 + val.value.len() as u64 + ENTRY_OVERHEAD
    }
}

#[derive(Clone)]
struct CountEvictions(Arc<Counters>);

impl Lifecycle<Key, MemEntry> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _key: Key, _val: MemEntry) {
        self.0.memory.evictions.incr();
    }
}

/// Keys of up to 24 bytes are stored inline in the map's slot, so a lookup
/// compares them without following a pointer to the heap.
type Key = CompactString;

type Map = QuickCache<Key, MemEntry, ByteWeighter, DefaultHashBuilder, CountEvictions>;

pub(crate) struct MemoryTier {
    map: Map,
    max_bytes: u64,
    max_entry: u64,
    next_version: AtomicU64,
    /// Tag -> the (key, version) pairs written with it. Kept beside the map
    /// so that untagged entries (and the hit path) carry nothing for tags; a
    /// pair whose key now holds another version is stale and ignored.
    tagged: Mutex<HashMap<String, Vec<(Key, u64)>>>,
}

impl MemoryTier {
    pub(crate) fn new(max_bytes: u64, counters: Arc<Counters>) -> Self {
        // quick_cache sizes its ghost list (recently evicted keys, which let a
        // returning key back in) from the estimated entry count; it allocates
        // nothing up front. Under-estimating shortens the ghost list and costs
        // hit ratio on small entries, so assume small ones: 64 bytes of key and
        // value per entry.
        let estimated = (max_bytes / (ENTRY_OVERHEAD + 64)).clamp(64, 1 << 24) as usize;
        let options = OptionsBuilder::new()
            .estimated_items_capacity(estimated)
            .weight_capacity(max_bytes)
            .build()
            .expect("estimated capacity and weight are set");
        let map = Map::with_options(
            options,
            ByteWeighter,
            DefaultHashBuilder::default(),
            CountEvictions(counters),
        );
        // A shard holds at most its share of the budget; larger entries are not kept in L1.
        let max_entry = map.shard_capacity();
        Self {
            map,
            max_bytes,
            max_entry,
            next_version: AtomicU64::new(1),
            tagged: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh entry, or `None`. An expired entry is removed on the way.
    #[inline]
    pub(crate) fn get(&self, key: &str, now_ms: u64) -> Option<MemEntry> {
        let entry = self.map.get(key)?;
        if now_ms < entry.expires_ms {
            return Some(entry);
        }
        self.remove_expired(key, now_ms);
        None
    }

    #[cold]
    fn remove_expired(&self, key: &str, now_ms: u64) {
        self.map.remove_if(key, |e| now_ms >= e.expires_ms);
    }

    /// Whether `key` holds a fresh entry; does not count as a use.
    pub(crate) fn contains_fresh(&self, key: &str, now_ms: u64) -> bool {
        self.map.peek(key).is_some_and(|e| now_ms < e.expires_ms)
    }

    /// Stores an entry under a new version, which it returns; one too large
    /// for L1 is dropped (and any older value for the key removed, so a read
    /// never sees it), and `None` returned.
    pub(crate) fn insert(&self, key: &str, mut entry: MemEntry) -> Option<u64> {
        if key.len() as u64 + entry.value.len() as u64 + ENTRY_OVERHEAD > self.max_entry {
            self.map.remove(key);
            return None;
        }
        entry.version = self.next_version.fetch_add(1, Ordering::Relaxed);
        let version = entry.version;
        self.map.insert(Key::new(key), entry);
        Some(version)
    }

    /// [`MemoryTier::insert`], remembering the entry under each of `tags`.
    pub(crate) fn insert_tagged(&self, key: &str, entry: MemEntry, tags: &[String]) {
        let Some(version) = self.insert(key, entry) else {
            return;
        };
        if tags.is_empty() {
            return;
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
                list.retain(|(k, v)| self.map.peek(k).is_some_and(|e| e.version == *v));
            }
            tagged.retain(|_, list| !list.is_empty());
        }
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
                    .is_some_and(|(_, e)| now_ms < e.expires_ms)
            })
            .map(|(key, _)| key.into_string())
            .collect()
    }

    /// Removes `key`; returns whether it held a fresh entry.
    pub(crate) fn remove(&self, key: &str, now_ms: u64) -> bool {
        self.map
            .remove(key)
            .is_some_and(|(_, e)| now_ms < e.expires_ms)
    }

    pub(crate) fn clear(&self) {
        self.map.clear();
        self.tagged.lock().clear();
    }

    /// Fresh keys, in no particular order.
    pub(crate) fn fresh_keys(&self, now_ms: u64) -> impl Iterator<Item = String> + '_ {
        self.map
            .iter()
            .filter(move |(_, e)| now_ms < e.expires_ms)
            .map(|(k, _)| k.into_string())
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
}
