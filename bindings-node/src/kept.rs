//! Decoded values kept per key, so an L1 hit does not decode again.
//!
//! `JSON.parse` of a ~2 KB object costs more than the whole L1 hit, so each
//! storage keeps the JS value it last decoded for a key together with the
//! engine's version of the L1 entry the bytes came from
//! (`tierstack::blocking::Cache::lookup_versioned`). Every write of a key
//! gives its L1 entry a new version, so while the version read on a hit is
//! the kept one, the kept value is exactly what decoding would give, and it
//! is returned as it is. Reads from L2 and entries that L1 does not hold are
//! always decoded.
//!
//! A hit hands back the same object to every caller (as a `Map` of objects
//! does): callers should not mutate what they read.
//!
//! The map is bounded by [`MAX_ENTRIES`] and by [`MAX_BYTES`] of encoded
//! value (never more than the L1 budget); when full, the oldest insertion
//! goes first.

use std::collections::{HashMap, VecDeque};

use napi::Env;

use crate::js::{Held, Value};

/// The most values kept per storage.
pub(crate) const MAX_ENTRIES: usize = 10_000;

/// The most encoded bytes whose decoded values are kept per storage.
pub(crate) const MAX_BYTES: u64 = 16 * 1024 * 1024;

struct Slot {
    version: u64,
    value: Held,
    size: usize,
}

/// Decoded values by key, tagged with their L1 entry's version.
pub(crate) struct Kept {
    slots: HashMap<Box<str>, Slot, foldhash::fast::RandomState>,
    /// Insertions, oldest first; an insertion whose slot has since been
    /// replaced or removed is skipped when it comes up.
    order: VecDeque<(Box<str>, u64)>,
    bytes: usize,
    max_bytes: usize,
}

impl Kept {
    /// An empty map holding at most `max_bytes` of encoded values (capped at
    /// [`MAX_BYTES`]).
    pub(crate) fn new(max_bytes: u64) -> Self {
        Self {
            slots: HashMap::default(),
            order: VecDeque::new(),
            bytes: 0,
            max_bytes: max_bytes.min(MAX_BYTES) as usize,
        }
    }

    /// The kept value of `key` if it was decoded from L1 entry `version`.
    #[inline]
    pub(crate) fn get(&self, env: &Env, key: &str, version: u64) -> Option<Value> {
        let slot = self.slots.get(key)?;
        (slot.version == version)
            .then(|| slot.value.get(env).ok())
            .flatten()
    }

    /// Keeps `value`, decoded from `size` bytes of L1 entry `version`.
    pub(crate) fn insert(&mut self, env: &Env, key: &str, version: u64, value: Value, size: usize) {
        self.remove(env, key);
        if size > self.max_bytes {
            return;
        }
        let Ok(value) = Held::new(env, value) else {
            return;
        };
        self.slots.insert(
            key.into(),
            Slot {
                version,
                value,
                size,
            },
        );
        self.bytes += size;
        self.order.push_back((key.into(), version));
        while self.slots.len() > MAX_ENTRIES || self.bytes > self.max_bytes {
            let Some((key, version)) = self.order.pop_front() else {
                break;
            };
            if self.slots.get(&key).is_some_and(|s| s.version == version) {
                self.remove(env, &key);
            }
        }
        if self.order.len() > 2 * self.slots.len() + 64 {
            let slots = &self.slots;
            self.order
                .retain(|(key, version)| slots.get(key).is_some_and(|s| s.version == *version));
        }
    }

    /// Forgets `key`.
    pub(crate) fn remove(&mut self, env: &Env, key: &str) {
        if let Some(slot) = self.slots.remove(key) {
            self.bytes -= slot.size;
            slot.value.release(env);
        }
    }

    /// Forgets every key.
    pub(crate) fn clear(&mut self, env: &Env) {
        for (_, slot) in self.slots.drain() {
            slot.value.release(env);
        }
        self.order.clear();
        self.bytes = 0;
    }
}
