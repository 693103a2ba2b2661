//! L1 objects: the Python objects of values L1 holds (their bytes, and their
//! decoded JSON once a read decoded it), kept beside L1 so that an L1 hit
//! neither copies the bytes nor decodes the JSON again.
//!
//! Each kept value is tagged with the version of the L1 entry it was read
//! from (see `tierstack::blocking::Cache::memory_version`). A read serves the
//! kept object only while L1 still holds that very version; any write,
//! promotion, expiry or eviction changes or removes the entry, and the kept
//! object is then ignored and replaced. Kept objects are therefore shared
//! between readers, like the values of any in-memory cache.
//!
//! The map is bounded by weight (key, encoded value and a fixed overhead per
//! entry) and evicts with quick_cache's CLOCK-Pro policy. Every method runs
//! with the GIL held; the lock is never held while Python code could run
//! (objects dropped by the map are released after the lock).

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter, unsync};

/// Weight charged per kept value on top of its key and encoded bytes: the
/// map's own entry and the Python objects' headers.
const OVERHEAD: u64 = 160;

/// The Python objects of one value L1 holds.
pub(crate) struct L1Object {
    /// The L1 version the value was read from.
    pub(crate) version: u64,
    /// When the value was written (milliseconds since the Unix epoch).
    pub(crate) created_ms: u64,
    /// The stored bytes.
    pub(crate) raw: Py<PyBytes>,
    /// The decoded JSON, once a JSON read decoded it.
    pub(crate) json: Option<Py<PyAny>>,
    len: u64,
}

impl L1Object {
    pub(crate) fn new(
        version: u64,
        created_ms: u64,
        raw: Py<PyBytes>,
        len: usize,
        json: Option<Py<PyAny>>,
    ) -> Self {
        Self {
            version,
            created_ms,
            raw,
            json,
            len: len as u64,
        }
    }

    fn clone_ref(&self, py: Python<'_>) -> Self {
        Self {
            version: self.version,
            created_ms: self.created_ms,
            raw: self.raw.clone_ref(py),
            json: self.json.as_ref().map(|j| j.clone_ref(py)),
            len: self.len,
        }
    }
}

#[derive(Clone)]
struct Weigh;

impl Weighter<String, L1Object> for Weigh {
    fn weight(&self, key: &String, object: &L1Object) -> u64 {
        key.len() as u64 + object.len + OVERHEAD
    }
}

/// Collects evicted values so they are dropped after the lock is released.
#[derive(Clone, Default)]
struct Collect;

impl Lifecycle<String, L1Object> for Collect {
    type RequestState = Vec<L1Object>;

    fn on_evict(&self, evicted: &mut Vec<L1Object>, _key: String, object: L1Object) {
        evicted.push(object);
    }
}

type Map = unsync::Cache<String, L1Object, Weigh, DefaultHashBuilder, Collect>;

/// The L1 objects of one cache.
pub(crate) struct L1Objects {
    map: Mutex<Map>,
}

impl L1Objects {
    /// Keeps values up to `max_weight` (key + encoded value + overhead each).
    pub(crate) fn new(max_weight: u64) -> Self {
        let estimated = (max_weight / (OVERHEAD + 1024)).clamp(16, 1 << 20) as usize;
        let map = Map::with(
            estimated,
            max_weight.max(1),
            Weigh,
            DefaultHashBuilder::default(),
            Collect,
        );
        Self {
            map: Mutex::new(map),
        }
    }

    /// A new reference to the value kept for `key`.
    #[inline]
    pub(crate) fn get(&self, py: Python<'_>, key: &str) -> Option<L1Object> {
        self.map.lock().get(key).map(|k| k.clone_ref(py))
    }

    /// Keeps `kept` for `key`, replacing what was kept.
    pub(crate) fn keep(&self, key: &str, object: L1Object) {
        let mut evicted = Vec::new();
        let replaced = {
            let mut map = self.map.lock();
            let replaced = map.remove(key);
            map.insert_with_lifecycle(key.to_owned(), object, &mut evicted);
            replaced
        };
        drop((replaced, evicted));
    }

    /// Records the decoded JSON of the value kept for `key`, if it is still
    /// `version`.
    pub(crate) fn set_json(&self, py: Python<'_>, key: &str, version: u64, json: &Py<PyAny>) {
        let mut map = self.map.lock();
        if let Some(mut object) = map.get_mut(key)
            && object.version == version
            && object.json.is_none()
        {
            object.json = Some(json.clone_ref(py));
        }
    }

    /// Forgets the value kept for `key`.
    pub(crate) fn forget(&self, key: &str) {
        let removed = self.map.lock().remove(key);
        drop(removed);
    }

    /// Forgets every kept value.
    pub(crate) fn clear(&self) {
        let mut map = self.map.lock();
        let drained: Vec<(String, L1Object)> = map.drain().collect();
        drop(map);
        drop(drained);
    }
}
