//! `tierstack._native.Cache`: the engine's synchronous cache for Python.
//!
//! `tierstack.Cache` (Python) subclasses it to add the config keywords, the
//! `source` adapter, the `get_or_load_many` family's signatures and the docs;
//! `tierstack.AsyncCache` drives it from a thread pool, answering L1 hits
//! (of reads and of `get_or_load`) on the event loop.
//!
//! The GIL is released around every call that may reach the SQLite file
//! (reads below L1, loads, writes, maintenance, close). An L1 hit never
//! blocks and keeps the GIL: releasing and taking it back would cost more
//! than the hit itself. It is answered with the decoded value kept beside
//! L1 (see [`crate::l1_objects`]), so that JSON is decoded once per stored value.

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::{intern, sync::PyOnceLock};
use tierstack::{BreakerStatus, Clock, Config, GetOptions, Lookup, Strategy, Tier, blocking};

use crate::error::to_py;
use crate::l1_objects::{L1Object, L1Objects};
use crate::load::{self, PyLoader};
use crate::outbox;
use crate::value::{self, decode, encode};

static LOOKUP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// What a read returns. Python names it when a read is split between the
/// event loop and a worker thread (`AsyncCache`): `Read.GET`, ….
#[pyclass(
    frozen,
    eq,
    from_py_object,
    module = "tierstack._native",
    name = "Read"
)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// The decoded JSON (`get`).
    #[pyo3(name = "GET")]
    Json,
    /// The bytes (`get_bytes`).
    #[pyo3(name = "GET_BYTES")]
    Raw,
    /// A `Lookup` of the decoded JSON (`lookup`).
    #[pyo3(name = "LOOKUP")]
    LookupJson,
    /// A `Lookup` of the bytes (`lookup_bytes`).
    #[pyo3(name = "LOOKUP_BYTES")]
    LookupRaw,
}

impl Read {
    fn json(self) -> bool {
        matches!(self, Read::Json | Read::LookupJson)
    }

    fn lookup(self) -> bool {
        matches!(self, Read::LookupJson | Read::LookupRaw)
    }
}

/// A cache handle. Closing goes through the engine, which refuses every
/// later call with `closed`; the handle itself stays, so that a call running
/// without the GIL on another thread never finds it gone.
#[pyclass(frozen, subclass, module = "tierstack._native", name = "Cache")]
pub(crate) struct Cache {
    inner: blocking::Cache,
    /// The Python objects of values L1 holds; `None` without an L1.
    l1_objects: Option<L1Objects>,
    /// The engine's clock (the test clock with `test_clock`), for the age
    /// of a kept value.
    clock: Clock,
}

impl Cache {
    /// The answer of a read if `key` is a fresh L1 entry, without blocking
    /// (one L1 hit counted), from the kept decoded value where there is one;
    /// `None`, with nothing counted, when the caller must read through the
    /// tiers.
    #[inline]
    fn memory_answer<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        read: Read,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        // With a source (handed in, or `github`), a hit of a value not
        // kept yet (the first after a load) brings its bytes, so it is
        // decoded and kept without a second read; a refresh ahead that is
        // due runs through the engine's source.
        match self.inner.has_source() {
            true => self.memory_hit(py, key, read, || self.inner.memory_hit_configured(key)),
            false => self.object_answer(py, key, read),
        }
    }

    /// [`Cache::memory_answer`] without a source: only a kept value is
    /// served here (checking L1 for an entry not kept would count a hit
    /// that the read through the tiers then counts again).
    #[inline]
    fn object_answer<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        read: Read,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(objects) = &self.l1_objects else {
            return Ok(None);
        };
        let Some(hit) = objects.get(py, key) else {
            return Ok(None);
        };
        match self.inner.memory_version(key) {
            Some(version) if version == hit.version => {}
            // L1 holds a newer value (a write raced the read that kept this
            // one, or a refresh ahead replaced it): the caller reads it, and
            // that read counts the hit again.
            Some(_) => return Ok(None),
            None => {
                objects.forget(key);
                return Ok(None);
            }
        }
        let age_ms = self.clock.now_ms().saturating_sub(hit.created_ms);
        let value = object_value(py, objects, key, hit, read)?;
        respond(py, value, Tier::Memory, false, age_ms as f64 / 1000.0, read).map(Some)
    }

    /// An L1 hit of `key` as `hit()` reads it (counted once, starting a
    /// refresh ahead if one is due), answered with the kept decoded value
    /// while L1 still holds the version it was read from (else decoded and
    /// kept). `None` on a miss, with nothing counted.
    #[inline]
    fn memory_hit<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        read: Read,
        hit: impl FnOnce() -> Option<(Lookup, u64)>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(objects) = &self.l1_objects else {
            return Ok(None);
        };
        let Some((found, version)) = hit() else {
            return Ok(None);
        };
        let value = match objects.get(py, key).filter(|hit| hit.version == version) {
            Some(hit) => object_value(py, objects, key, hit, read)?,
            None => keep_object(py, objects, key, &found, version, read, &self.clock)?,
        };
        let age = found.age.as_secs_f64();
        respond(py, value, found.tier, found.stale, age, read).map(Some)
    }

    /// Reads `key` through the tiers without the GIL, and keeps what L1 now
    /// holds. With a source configured (handed in or `github`), a miss
    /// loads from it (and what L1 holds is kept by the next read, for a
    /// source handed in).
    fn tiers_answer<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        read: Read,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        if self.inner.has_source() {
            let found = py
                .detach(|| self.inner.lookup(key))
                .map_err(|e| to_py(py, e))?;
            return found.map(|found| answer(py, found, read)).transpose();
        }
        let found = py
            .detach(|| self.inner.lookup_versioned(key))
            .map_err(|e| to_py(py, e))?;
        let Some((found, version)) = found else {
            return Ok(None);
        };
        let value = match (&self.l1_objects, version) {
            (Some(objects), Some(version)) => {
                keep_object(py, objects, key, &found, version, read, &self.clock)?
            }
            _ => value_of(py, &found.value, read)?,
        };
        let age = found.age.as_secs_f64();
        respond(py, value, found.tier, found.stale, age, read).map(Some)
    }

    /// The value of an L1 hit of `key` for a `get_or_load` read (one hit
    /// counted, as in [`Cache::memory_hit`]), a refresh ahead that is due
    /// running through `loader`, its coroutines resolved on the loop
    /// `event_loop()` gives (asked only then); `None` on a miss.
    #[inline]
    fn load_hit<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        read: Read,
        loader: &Bound<'py, PyAny>,
        event_loop: impl FnOnce() -> Option<Bound<'py, PyAny>>,
        options: &GetOptions,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let make_loader = || PyLoader::new(loader, event_loop().as_ref()).one_async();
        self.memory_hit(py, key, read, || {
            self.inner.memory_hit_or_refresh(key, make_loader, options)
        })
    }

    fn read<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        read: Read,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let key = value::key(key)?;
        match self.memory_answer(py, &key, read)? {
            Some(value) => Ok(Some(value)),
            None => self.tiers_answer(py, &key, read),
        }
    }

    /// The first half of `mget`: the keys as a list, the answers kept
    /// values give, and whether that is every key.
    fn mget_memory<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        read: Read,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyDict>, bool)> {
        let keys = value::keys(keys)?;
        for (_, key) in &keys {
            tierstack::key::validate(key).map_err(|e| to_py(py, e))?;
        }
        let found = PyDict::new(py);
        let mut complete = true;
        for (obj, key) in &keys {
            match self.memory_answer(py, key, read)? {
                Some(value) => found.set_item(obj, value)?,
                None => complete = false,
            }
        }
        let list = PyList::new(py, keys.iter().map(|(obj, _)| obj))?;
        Ok((list, found, complete))
    }

    /// The second half of `mget`: reads the keys `found` lacks through the
    /// tiers in one round each (without the GIL) and returns every answer in
    /// the order of `keys`.
    fn mget_tiers<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyList>,
        found: &Bound<'py, PyDict>,
        read: Read,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut wanted: Vec<(Bound<'py, PyAny>, PyBackedStr)> = Vec::new();
        for obj in keys.iter() {
            if !found.contains(&obj)? {
                let key = value::key(&obj)?;
                wanted.push((obj, key));
            }
        }
        let names: Vec<&str> = wanted.iter().map(|(_, k)| &**k).collect();
        let values = py
            .detach(|| self.inner.mget(&names))
            .map_err(|e| to_py(py, e))?;
        let stored = PyDict::new(py);
        for ((obj, key), value) in wanted.iter().zip(values) {
            // A promotion gave the key a new L1 version: what was kept is old.
            if let Some(objects) = &self.l1_objects {
                objects.forget(key);
            }
            if let Some(value) = value {
                stored.set_item(obj, value_of(py, &value, read)?)?;
            }
        }
        let out = PyDict::new(py);
        for obj in keys.iter() {
            if let Some(value) = found.get_item(&obj)? {
                out.set_item(&obj, value)?;
            } else if let Some(value) = stored.get_item(&obj)? {
                out.set_item(&obj, value)?;
            }
        }
        Ok(out)
    }

    fn mget_all<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        read: Read,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (keys, found, complete) = self.mget_memory(py, keys, read)?;
        match complete {
            true => Ok(found),
            false => self.mget_tiers(py, &keys, &found, read),
        }
    }

    fn forget(&self, key: &str) {
        if let Some(objects) = &self.l1_objects {
            objects.forget(key);
        }
    }

    fn forget_all(&self) {
        if let Some(objects) = &self.l1_objects {
            objects.clear();
        }
    }
}

/// A `tierstack.Lookup`.
fn lookup<'py>(
    py: Python<'py>,
    value: Bound<'py, PyAny>,
    tier: Tier,
    stale: bool,
    age: f64,
) -> PyResult<Bound<'py, PyAny>> {
    let class = LOOKUP.import(py, "tierstack", "Lookup")?;
    let tier = match tier {
        Tier::Memory => intern!(py, "memory"),
        Tier::Sqlite => intern!(py, "sqlite"),
        Tier::Redis => intern!(py, "redis"),
        Tier::Source => intern!(py, "source"),
        other => &PyString::new(py, other.as_str()),
    };
    class.call1((value, tier, stale, age))
}

/// The value a read returns (decoded JSON or bytes) of a value the engine
/// found.
fn value_of<'py>(py: Python<'py>, bytes: &[u8], read: Read) -> PyResult<Bound<'py, PyAny>> {
    let raw = PyBytes::new(py, bytes);
    match read.json() {
        true => decode(&raw),
        false => Ok(raw.into_any()),
    }
}

/// The value a read returns of a value the engine found in L1 as
/// `version`, kept for the reads after it (with its decoded JSON if this
/// read decoded it; its write time by `clock`).
fn keep_object<'py>(
    py: Python<'py>,
    objects: &L1Objects,
    key: &str,
    found: &Lookup,
    version: u64,
    read: Read,
    clock: &Clock,
) -> PyResult<Bound<'py, PyAny>> {
    let raw = PyBytes::new(py, &found.value);
    let json = read.json().then(|| decode(&raw));
    let created_ms = clock.now_ms().saturating_sub(found.age.as_millis() as u64);
    let decoded = json
        .as_ref()
        .and_then(|j| j.as_ref().ok())
        .map(|j| j.clone().unbind());
    objects.keep(
        key,
        L1Object::new(
            version,
            created_ms,
            raw.clone().unbind(),
            found.value.len(),
            decoded,
        ),
    );
    match json {
        Some(json) => json,
        None => Ok(raw.into_any()),
    }
}

/// The value a read returns of the value kept for `key`, decoding (and
/// keeping) the JSON on the first JSON read.
fn object_value<'py>(
    py: Python<'py>,
    objects: &L1Objects,
    key: &str,
    hit: L1Object,
    read: Read,
) -> PyResult<Bound<'py, PyAny>> {
    match (read.json(), hit.json) {
        (false, _) => Ok(hit.raw.into_bound(py).into_any()),
        (true, Some(json)) => Ok(json.into_bound(py)),
        (true, None) => {
            let json = decode(hit.raw.bind(py))?;
            objects.set_json(py, key, hit.version, &json.clone().unbind());
            Ok(json)
        }
    }
}

/// What a read returns: `value` itself, or for a lookup read a `Lookup`
/// of it.
fn respond<'py>(
    py: Python<'py>,
    value: Bound<'py, PyAny>,
    tier: Tier,
    stale: bool,
    age: f64,
    read: Read,
) -> PyResult<Bound<'py, PyAny>> {
    match read.lookup() {
        false => Ok(value),
        true => lookup(py, value, tier, stale, age),
    }
}

/// What a read returns for a value the engine found (not kept).
fn answer<'py>(py: Python<'py>, found: Lookup, read: Read) -> PyResult<Bound<'py, PyAny>> {
    let value = value_of(py, &found.value, read)?;
    let age = found.age.as_secs_f64();
    respond(py, value, found.tier, found.stale, age, read)
}

/// Milliseconds since the epoch as float seconds, or `None`.
fn epoch_seconds(ms: Option<u64>) -> Option<f64> {
    ms.map(|ms| ms as f64 / 1000.0)
}

/// The breaker status as a dict (times in float seconds since the epoch).
fn breaker_dict<'py>(py: Python<'py>, status: &BreakerStatus) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item(intern!(py, "state"), status.state.as_str())?;
    dict.set_item(intern!(py, "failure_count"), status.failure_count)?;
    dict.set_item(intern!(py, "allows_request"), status.allows_request)?;
    dict.set_item(
        intern!(py, "last_failure_at"),
        epoch_seconds(status.last_failure_at),
    )?;
    dict.set_item(
        intern!(py, "next_attempt_at"),
        epoch_seconds(status.next_attempt_at),
    )?;
    dict.set_item(intern!(py, "trips"), status.trips)?;
    Ok(dict)
}

impl Drop for Cache {
    /// A write-behind cache dropped open delivers its outbox (for up to
    /// `outbox.close_timeout`) as `close()` does: without the GIL, which its
    /// source's `store` and `remove` take. (`tierstack` closes the caches
    /// still open at the interpreter's exit, while it can call them.)
    fn drop(&mut self) {
        if self.inner.is_closed() || self.inner.config().strategy != Strategy::WriteBehind {
            return;
        }
        let closed = Python::try_attach(|py| py.detach(|| self.inner.close()));
        if let Some(Err(err)) = closed {
            tracing::warn!(error = %err, "closing the cache on drop failed");
        }
    }
}

#[pymethods]
impl Cache {
    /// Opens the cache described by `config_json` (the JSON config), with
    /// `source(key)` as its source if given, which also stores and removes
    /// if `writable` (see [`crate::load::source`]).
    #[new]
    #[pyo3(signature = (config_json, source=None, writable=false))]
    fn new(
        py: Python<'_>,
        config_json: PyBackedStr,
        source: Option<Py<PyAny>>,
        writable: bool,
    ) -> PyResult<Self> {
        let config = Config::from_json(&config_json).map_err(|e| to_py(py, e))?;
        let l1_objects = config
            .memory
            .enabled
            // As many values as L1 holds (weighed alike, by encoded bytes):
            // a kept object is served only while L1 holds its value.
            .then(|| L1Objects::new(config.memory.max_bytes));
        // The engine's clock, as it chooses it (no clock is handed in here).
        let clock = match config.test_clock {
            true => Clock::test(),
            false => Clock::system(),
        };
        let mut builder = blocking::Cache::builder().config(config);
        if let Some(source) = source.map(|source| load::source(source, writable)) {
            builder = builder.source_arc(source);
        }
        let inner = py
            .detach(|| builder.build_blocking())
            .map_err(|e| to_py(py, e))?;
        Ok(Self {
            inner,
            l1_objects,
            clock,
        })
    }

    /// The value of ``key`` (decoded JSON, as :meth:`get`); on a miss in
    /// every tier, what ``loader`` answers, stored with ``ttl`` (as in
    /// :meth:`set`; a :class:`Loaded` answer may choose its own), or
    /// ``None`` if it answers :data:`NOT_FOUND`.
    ///
    /// ``loader`` is called as ``loader(key)`` if it accepts a positional
    /// argument, else as ``loader()``; once per key however many threads
    /// and processes miss it at once. It raising raises
    /// :class:`SourceError` (``__cause__``: its exception) unless a stale
    /// copy stands in. A bad key or ``ttl`` raises before it is called.
    #[pyo3(signature = (key, loader, ttl=None))]
    fn get_or_load<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        loader: &Bound<'py, PyAny>,
        ttl: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        self._load(py, key, loader, ttl, None, Read::Json)
    }

    /// :meth:`get_or_load` returning the stored bytes (for values that
    /// are not JSON).
    #[pyo3(signature = (key, loader, ttl=None))]
    fn get_or_load_bytes<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        loader: &Bound<'py, PyAny>,
        ttl: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        self._load(py, key, loader, ttl, None, Read::Raw)
    }

    /// `get_or_load` (`Read.GET`) and its kin (`Read.GET_BYTES`:
    /// `get_or_load_bytes`; the `LOOKUP` reads: a `Lookup`): the value of
    /// `key`, loaded on a miss with
    /// `loader` (coroutines resolved on `event_loop`), or `None`. An L1 hit
    /// is answered with the GIL held, as [`Cache::load_hit`].
    #[pyo3(signature = (key, loader, ttl, event_loop, read))]
    fn _load<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        loader: &Bound<'py, PyAny>,
        ttl: Option<&Bound<'py, PyAny>>,
        event_loop: Option<&Bound<'py, PyAny>>,
        read: Read,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let key = value::key(key)?;
        let options = load::options(ttl)?;
        let hit = self.load_hit(py, &key, read, loader, || event_loop.cloned(), &options)?;
        if let Some(hit) = hit {
            return Ok(Some(hit));
        }
        let loader = PyLoader::new(loader, event_loop).one();
        let found = py
            .detach(|| self.inner.lookup_or_load(&key, loader, options))
            .map_err(|e| to_py(py, e))?;
        self.forget(&key);
        found.map(|found| answer(py, found, read)).transpose()
    }

    /// The first half of an async `get_or_load` (reads as in `_load`): the
    /// answer of an L1 hit, which never blocks, else
    /// `missing` (and nothing is counted). A bad key or `ttl` raises here.
    /// Called on the event loop, whose coroutines a refresh ahead runs on.
    #[pyo3(signature = (key, loader, ttl, read, missing))]
    fn _load_hit<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        loader: &Bound<'py, PyAny>,
        ttl: Option<&Bound<'py, PyAny>>,
        read: Read,
        missing: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = value::key(key)?;
        let options = load::options(ttl)?;
        let event_loop = || load::running_loop(py);
        Ok(self
            .load_hit(py, &key, read, loader, event_loop, &options)?
            .unwrap_or(missing))
    }

    /// `get_or_load_many` (`raw`: `get_or_load_many_bytes`): the found
    /// values of `keys`, in their order; the keys missing everywhere go to
    /// one call of `loader` (coroutines resolved on `event_loop`).
    #[pyo3(signature = (keys, loader, ttl, event_loop, raw))]
    fn _load_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        loader: &Bound<'py, PyAny>,
        ttl: Option<&Bound<'py, PyAny>>,
        event_loop: Option<&Bound<'py, PyAny>>,
        raw: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let read = if raw { Read::Raw } else { Read::Json };
        let keys = value::keys(keys)?;
        let options = load::options(ttl)?;
        let names: Vec<String> = keys.iter().map(|(_, k)| k.to_string()).collect();
        let loader = PyLoader::new(loader, event_loop).many();
        let found = py
            .detach(|| self.inner.lookup_or_load_many(&names, loader, options))
            .map_err(|e| to_py(py, e))?;
        let out = PyDict::new(py);
        for ((obj, key), found) in keys.iter().zip(found) {
            self.forget(key);
            if let Some(found) = found {
                out.set_item(obj, answer(py, found, read)?)?;
            }
        }
        Ok(out)
    }

    /// The circuit breaker's status, as a dict.
    fn breaker_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        breaker_dict(py, &self.inner.breaker_status())
    }

    /// Opens the breaker by hand: no source call until `breaker_close()`.
    fn breaker_open(&self) {
        self.inner.breaker_open();
    }

    /// Closes the breaker by hand.
    fn breaker_close(&self) {
        self.inner.breaker_close();
    }

    /// The value of `key` decoded from JSON, or `default` on a miss.
    #[pyo3(signature = (key, default=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self.read(py, key, Read::Json)? {
            Some(value) => value,
            None => default.unwrap_or_else(|| py.None().into_bound(py)),
        })
    }

    /// The stored bytes of `key`, or `default` on a miss.
    #[pyo3(signature = (key, default=None))]
    fn get_bytes<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self.read(py, key, Read::Raw)? {
            Some(value) => value,
            None => default.unwrap_or_else(|| py.None().into_bound(py)),
        })
    }

    /// A `Lookup` of `key` (decoded value, tier, stale, age), or `None`.
    fn lookup<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.read(py, key, Read::LookupJson)
    }

    /// A `Lookup` of `key` whose value is the stored bytes, or `None`.
    fn lookup_bytes<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.read(py, key, Read::LookupRaw)
    }

    /// The answer of a read (`Read.GET`: `get`, `GET_BYTES`: `get_bytes`,
    /// `LOOKUP`: `lookup`, `LOOKUP_BYTES`: `lookup_bytes`) if kept values
    /// give it without blocking, else `missing` (and nothing is counted).
    fn _memory_get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        read: Read,
        missing: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = value::key(key)?;
        Ok(self.memory_answer(py, &key, read)?.unwrap_or(missing))
    }

    /// The values of the found keys among `keys`, decoded, in their order.
    fn mget<'py>(&self, py: Python<'py>, keys: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        self.mget_all(py, keys, Read::Json)
    }

    /// The stored bytes of the found keys among `keys`, in their order.
    fn mget_bytes<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.mget_all(py, keys, Read::Raw)
    }

    /// The first half of an `mget`: `(keys as a list, answers from kept
    /// values, whether that is all of them)`.
    fn _mget_memory<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        raw: bool,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let read = if raw { Read::Raw } else { Read::Json };
        let (keys, found, complete) = self.mget_memory(py, keys, read)?;
        PyTuple::new(
            py,
            [
                keys.into_any(),
                found.into_any(),
                complete.into_pyobject(py)?.to_owned().into_any(),
            ],
        )
    }

    /// The second half of an `mget`, from the first half's list and answers.
    fn _mget_tiers<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyList>,
        found: &Bound<'py, PyDict>,
        raw: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let read = if raw { Read::Raw } else { Read::Json };
        self.mget_tiers(py, keys, found, read)
    }

    /// Whether `key` holds a fresh value; not counted as a read.
    fn has(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let key = value::key(key)?;
        py.detach(|| self.inner.has(&key)).map_err(|e| to_py(py, e))
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.has(py, key)
    }

    /// Stores `value` under `key`: bytes-like values as they are, anything
    /// else as JSON. `ttl` is in seconds: `None` or `0` takes the tier
    /// defaults; negative, NaN, infinite or over 100 years raises
    /// `InvalidArgumentError` and stores nothing.
    #[pyo3(signature = (key, value, ttl=None, tags=None))]
    fn set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
        tags: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let key = value::key(key)?;
        let options = value::set_options(ttl, tags)?;
        let value = encode(value)?;
        let result = py.detach(|| self.inner.set_with(&*key, value, options));
        self.forget(&key);
        result.map_err(|e| to_py(py, e))
    }

    /// Stores every item of `mapping` (one L2 transaction); `ttl` as in `set`.
    #[pyo3(signature = (mapping, ttl=None, tags=None))]
    fn mset(
        &self,
        py: Python<'_>,
        mapping: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
        tags: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let options = value::set_options(ttl, tags)?;
        let items = match mapping.cast::<PyDict>() {
            Ok(dict) => dict.items().into_any(),
            Err(_) => mapping.call_method0(intern!(py, "items")).map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(format!(
                    "mapping must be a mapping of str to values, not {}",
                    mapping
                        .get_type()
                        .name()
                        .map_or_else(|_| "?".to_owned(), |n| n.to_string())
                ))
            })?,
        };
        let mut entries: Vec<(String, bytes::Bytes)> = Vec::new();
        for item in items.try_iter()? {
            let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
            entries.push((value::key(&key)?.to_string(), encode(&value)?));
        }
        let keys: Vec<String> = entries.iter().map(|(k, _)| k.clone()).collect();
        let result = py.detach(|| self.inner.mset_with(entries, options));
        for key in &keys {
            self.forget(key);
        }
        result.map_err(|e| to_py(py, e))
    }

    /// Removes `key` from every tier; whether it held a fresh value.
    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let key = value::key(key)?;
        let result = py.detach(|| self.inner.delete(&key));
        self.forget(&key);
        result.map_err(|e| to_py(py, e))
    }

    /// The fresh keys matching a glob (`*` is the only wildcard), sorted.
    #[pyo3(signature = (pattern=None))]
    fn keys(&self, py: Python<'_>, pattern: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
        let pattern = match pattern.filter(|p| !p.is_none()) {
            Some(p) => value::text(p, "pattern")?.to_string(),
            None => "*".to_owned(),
        };
        py.detach(|| self.inner.keys(&pattern))
            .map_err(|e| to_py(py, e))
    }

    /// How many fresh keys the cache holds.
    fn len(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| self.inner.len()).map_err(|e| to_py(py, e))
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.len(py)? as usize)
    }

    /// A cache is always true, empty or not: testing it reads nothing.
    fn __bool__(&self) -> bool {
        true
    }

    /// Removes every entry from every tier.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let result = py.detach(|| self.inner.clear());
        self.forget_all();
        result.map_err(|e| to_py(py, e))
    }

    /// Removes every entry written with `tag`; how many fresh ones went.
    fn invalidate_tag(&self, py: Python<'_>, tag: &Bound<'_, PyAny>) -> PyResult<u64> {
        let tag = value::text(tag, "tag")?;
        let result = py.detach(|| self.inner.invalidate_tag(&tag));
        self.forget_all();
        result.map_err(|e| to_py(py, e))
    }

    /// Returns once every acknowledged write is durable in the file and,
    /// with write-behind, the outbox is empty (`TimeoutError` past
    /// `outbox.flush_timeout`).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.flush()).map_err(|e| to_py(py, e))
    }

    /// The engine's counters, as a dict (the stats JSON), with `breaker`
    /// (and the Redis tier's, `redis.breaker`) and `outbox` as
    /// `breaker_status()` and `outbox_stats()` give them. Without the GIL:
    /// with write-behind, the outbox's figures are read from the file.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stats = py.detach(|| self.inner.stats());
        let json = serde_json::to_vec(&stats)
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
        let dict = decode(&PyBytes::new(py, &json))?;
        dict.set_item(intern!(py, "breaker"), breaker_dict(py, &stats.breaker)?)?;
        if let Some(redis) = &stats.redis {
            dict.get_item(intern!(py, "redis"))?
                .set_item(intern!(py, "breaker"), breaker_dict(py, &redis.breaker)?)?;
        }
        let outbox = stats
            .outbox
            .as_ref()
            .map(|o| outbox::stats_dict(py, o))
            .transpose()?;
        dict.set_item(intern!(py, "outbox"), outbox)?;
        Ok(dict)
    }

    /// The write-behind outbox's figures (`{durable, pending, oldest_age,
    /// retrying, retries, delivered, dead}`, `oldest_age` in seconds or
    /// `None`), or `None` for the other strategies.
    fn outbox_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let stats = py.detach(|| self.inner.outbox_stats());
        stats.map(|s| outbox::stats_dict(py, &s)).transpose()
    }

    /// The writes that gave up after `outbox.max_attempts`, oldest first:
    /// `[{key, op, attempts, last_error, failed_at}]`.
    fn dead_letters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let dead = py
            .detach(|| self.inner.dead_letters())
            .map_err(|e| to_py(py, e))?;
        outbox::dead_letters_list(py, &dead)
    }

    /// Queues every dead letter again, its attempts reset; how many.
    fn retry_dead_letters(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| self.inner.retry_dead_letters())
            .map_err(|e| to_py(py, e))
    }

    /// Deletes every dead letter; how many there were.
    fn purge_dead_letters(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| self.inner.purge_dead_letters())
            .map_err(|e| to_py(py, e))
    }

    /// Closes the cache; later calls raise `ClosedError`. Closing twice is
    /// harmless.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let result = py.detach(|| self.inner.close());
        self.forget_all();
        result.map_err(|e| to_py(py, e))
    }

    /// Whether the strategy is write-behind, whose `stats()` reads the
    /// outbox's figures from the file (`AsyncCache` runs it off the loop).
    #[getter]
    fn _write_behind(&self) -> bool {
        self.inner.config().strategy == Strategy::WriteBehind
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn __enter__<'py>(slf: &Bound<'py, Self>) -> Bound<'py, Self> {
        slf.clone()
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let this = slf.get();
        let config = this.inner.config();
        let sqlite = match config.sqlite.enabled {
            true => config.resolved_sqlite_path().map_or_else(
                |_| "?".to_owned(),
                |p| format!("{:?}", p.display().to_string()),
            ),
            false => "None".to_owned(),
        };
        // The URL as the config shows it: a password in it is `***`.
        let redis = match &config.redis {
            Some(redis) if redis.enabled => format!(" redis={:?}", redis.url.redacted()),
            _ => String::new(),
        };
        let name = slf.get_type().qualname()?;
        Ok(format!(
            "<{name} memory={} sqlite={sqlite}{redis} closed={}>",
            if config.memory.enabled {
                "True"
            } else {
                "False"
            },
            if this.inner.is_closed() {
                "True"
            } else {
                "False"
            },
        ))
    }
}
