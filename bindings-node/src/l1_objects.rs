//! Decoded values kept per L1 entry, so an L1 hit does not decode again.
//!
//! `JSON.parse` of a ~2 KB object costs more than the whole L1 hit, so each
//! storage keeps the JS value it decoded from an L1 entry, found by that
//! entry's version (`tierstack::blocking::Cache::lookup_versioned`,
//! `memory_hit_configured`). Every write or promotion of a key gives its L1
//! entry a new version, unique within the cache, and another process's write
//! drops the key from L1 (coherence), so its next read promotes a new
//! version: while a hit reports a version that is kept, the kept value is
//! exactly what decoding would give, and it is returned as it is. Values L1
//! does not hold are always decoded. A read from L2 keeps the value it
//! decoded for the L1 entry its promotion made, except through the load
//! path (a storage with a source), which does not report that entry: there
//! the first L1 hit after it decodes and keeps.
//!
//! A hit hands back the same object to every caller (as a `Map` of objects
//! does): callers should not mutate what they read.
//!
//! # Bound
//!
//! The values kept are bounded by the L1 budget (`memory.maxSize`), each
//! charged as L1 charges its entry ([`memory_entry_size`]: key + value
//! bytes + a fixed overhead), so everything L1 holds can be kept at once.
//! One value is kept per key: keeping a new version of a key lets the old
//! one go, and a write of the key through this storage lets it go at once.
//! What L1 dropped on its own (evicted, expired, replaced by another
//! process) stays until the budget needs its room; then the values kept
//! longest go first. The decoded objects live on the V8 heap and take more
//! room there than their JSON (about 2–3× for objects of strings).

use std::collections::{HashMap, VecDeque};

use foldhash::fast::RandomState;
use napi::Env;
use tierstack::tier::memory_entry_size;

use crate::js_values::{Held, Value};

/// What is known of a kept value besides the value.
struct Slot {
    key: Box<str>,
    /// What the value is charged against the budget.
    size: usize,
}

/// Decoded values by the version of the L1 entry they were decoded from.
pub(crate) struct L1Objects {
    /// The values, alone in their map so that a hit reads little memory.
    values: HashMap<u64, Held, RandomState>,
    slots: HashMap<u64, Slot, RandomState>,
    /// The version kept for each key (one per key).
    versions: HashMap<Box<str>, u64, RandomState>,
    /// Versions in the order they were kept, oldest first; one whose slot
    /// has since gone is skipped when it comes up.
    order: VecDeque<u64>,
    bytes: usize,
    max_bytes: usize,
}

impl L1Objects {
    /// An empty map for an L1 of `max_bytes` (0: no L1, nothing is kept).
    pub(crate) fn new(max_bytes: u64) -> Self {
        Self {
            values: HashMap::default(),
            slots: HashMap::default(),
            versions: HashMap::default(),
            order: VecDeque::new(),
            bytes: 0,
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        }
    }

    /// The value decoded from L1 entry `version`, if it is kept.
    // Inlined: it is on the L1 hit path.
    #[inline(always)]
    pub(crate) fn get<'e>(&self, env: &'e Env, version: u64) -> Option<Value<'e>> {
        self.values.get(&version)?.get(env).ok()
    }

    /// Keeps `value`, decoded from the `len` bytes of L1 entry `version` of
    /// `key`, in place of any value kept for `key`.
    pub(crate) fn insert(&mut self, env: &Env, key: &str, version: u64, value: Value, len: usize) {
        self.remove(env, key);
        let size = usize::try_from(memory_entry_size(key, len)).unwrap_or(usize::MAX);
        if size > self.max_bytes {
            return;
        }
        let Ok(value) = Held::new(env, value) else {
            return;
        };
        // A version is unique to one stored value: it is never kept twice.
        debug_assert!(!self.slots.contains_key(&version));
        self.release(env, version);
        let key: Box<str> = key.into();
        self.versions.insert(key.clone(), version);
        self.slots.insert(version, Slot { key, size });
        self.values.insert(version, value);
        self.bytes += size;
        self.order.push_back(version);
        while self.bytes > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.release(env, oldest);
        }
        if self.order.len() > 2 * self.slots.len() + 64 {
            let slots = &self.slots;
            self.order.retain(|version| slots.contains_key(version));
        }
    }

    /// Lets the value kept for `key` go.
    pub(crate) fn remove(&mut self, env: &Env, key: &str) {
        if let Some(version) = self.versions.get(key).copied() {
            self.release(env, version);
        }
    }

    /// Lets the value of L1 entry `version` go, if it is kept.
    fn release(&mut self, env: &Env, version: u64) {
        if let Some(slot) = self.slots.remove(&version) {
            self.versions.remove(&slot.key);
            self.bytes -= slot.size;
        }
        if let Some(value) = self.values.remove(&version) {
            value.release(env);
        }
    }

    /// Lets every value go.
    pub(crate) fn clear(&mut self, env: &Env) {
        for (_, value) in self.values.drain() {
            value.release(env);
        }
        self.slots.clear();
        self.versions.clear();
        self.order.clear();
        self.bytes = 0;
    }
}
