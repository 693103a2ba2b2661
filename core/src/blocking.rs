//! The synchronous facade, used by the C and Python hosts and by Rust code
//! without an async runtime.
//!
//! It calls the engine on the calling thread: an L1 hit never enters the
//! runtime, and neither does an L2 read or write. The shared, fork-aware
//! runtime ([`crate::runtime`]) runs only background maintenance.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::breaker::BreakerStatus;
use crate::cache::Engine;
use crate::config::{CacheBuilder, Config};
use crate::entry::{Entry, GetOptions, Lookup, SetOptions};
use crate::error::Result;
use crate::load::{Fetcher, ManyFetcher};
use crate::outbox::{DeadLetter, OutboxStats, PendingWrite};
use crate::source::{Fetched, run_blocking};
use crate::stats::Stats;
use crate::tier::Inspection;

/// The synchronous cache: the same operations as [`crate::Cache`], blocking.
///
/// Cheap to clone, `Send + Sync`; clones share one cache.
///
/// ```
/// # fn main() -> tierstack::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let cache = tierstack::blocking::Cache::builder()
///     .sqlite_path(dir.path().join("c.db"))
///     .build_blocking()?;
/// cache.mset([("a", "1"), ("b", "2")])?;
/// assert_eq!(cache.keys("*")?, ["a", "b"]);
/// assert!(cache.delete("a")?);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Cache {
    inner: crate::Cache,
}

impl From<crate::Cache> for Cache {
    fn from(inner: crate::Cache) -> Self {
        Self { inner }
    }
}

impl Cache {
    /// Opens a cache with `config`, creating the L2 file if needed.
    pub fn open(config: Config) -> Result<Self> {
        crate::Cache::open(config).map(Self::from)
    }

    /// A builder for the config; end it with [`CacheBuilder::build_blocking`].
    pub fn builder() -> CacheBuilder {
        CacheBuilder::new()
    }

    /// The async handle to the same cache.
    pub fn as_async(&self) -> &crate::Cache {
        &self.inner
    }

    fn engine(&self) -> &Arc<Engine> {
        &self.inner.engine
    }

    /// The config the cache was opened with.
    pub fn config(&self) -> &Config {
        self.inner.config()
    }

    /// The value of `key`, or `None` on a miss; with a source configured,
    /// a miss loads from it (see [`crate::Cache::lookup`]).
    ///
    /// Always inlined into the caller, with the engine's `get`: as two
    /// nested calls, the bench's loop over 10,000 keys took 120–121 ns an
    /// L1 hit; inlined, 99–101 (quick_cache's `get` 69–73 in the same runs).
    #[inline(always)]
    pub fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let engine = self.engine();
        match engine.loads.has_source() {
            true => Ok(engine
                .load_blocking(key, Fetcher::Configured, &GetOptions::default())?
                .map(|l| l.value)),
            false => engine.get(key),
        }
    }

    /// The value of `key` with the tier that served it, its staleness and
    /// age; with a source configured, a miss loads from it.
    #[inline]
    pub fn lookup(&self, key: &str) -> Result<Option<Lookup>> {
        if self.engine().loads.has_source() {
            return self
                .engine()
                .load_blocking(key, Fetcher::Configured, &GetOptions::default());
        }
        self.engine().lookup(key)
    }

    /// The values of `keys`, in order (`None` for a miss), in one round per
    /// tier; with a source configured, the keys missing everywhere are
    /// loaded from it.
    pub fn mget<K: AsRef<str>>(&self, keys: &[K]) -> Result<Vec<Option<Bytes>>> {
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        if self.engine().loads.has_source() {
            let found = self.engine().load_many_blocking(
                &keys,
                ManyFetcher::Configured,
                &GetOptions::default(),
            )?;
            return Ok(found.into_iter().map(|l| l.map(|l| l.value)).collect());
        }
        self.engine().mget(&keys)
    }

    /// [`crate::Cache::lookup`] for a plain read that must not load: the
    /// tiers only, even with a source configured.
    pub fn lookup_cached(&self, key: &str) -> Result<Option<Lookup>> {
        self.engine().lookup(key)
    }

    /// The value of `key`; on a miss in every tier, `loader(key)`'s answer,
    /// stored; see [`crate::Cache::get_or_load`]. The loader runs on the
    /// shared runtime's blocking pool, not on the calling thread, which
    /// waits for it (or, holding a stale copy, stops waiting at
    /// `fail_safe.soft_timeout`).
    ///
    /// ```
    /// # fn main() -> tierstack::Result<()> {
    /// use tierstack::{Fetched, GetOptions};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = tierstack::Cache::builder()
    ///     .sqlite_path(dir.path().join("c.db"))
    ///     .build_blocking()?;
    /// let value = cache.get_or_load("k", |key| Ok(Fetched::value(key.to_uppercase())), GetOptions::new())?;
    /// assert_eq!(value.as_deref(), Some(&b"K"[..]));
    /// # Ok(()) }
    /// ```
    pub fn get_or_load<F>(&self, key: &str, loader: F, options: GetOptions) -> Result<Option<Bytes>>
    where
        F: FnOnce(&str) -> Result<Fetched> + Send + 'static,
    {
        Ok(self.lookup_or_load(key, loader, options)?.map(|l| l.value))
    }

    /// [`Cache::get_or_load`], reporting tier, staleness and age.
    pub fn lookup_or_load<F>(
        &self,
        key: &str,
        loader: F,
        options: GetOptions,
    ) -> Result<Option<Lookup>>
    where
        F: FnOnce(&str) -> Result<Fetched> + Send + 'static,
    {
        let fetcher = || {
            Fetcher::Once(Box::new(move |key: String, _| {
                run_blocking(move || loader(&key))
            }))
        };
        let engine = self.engine();
        match engine.hit_or_refresh(key, fetcher, &options) {
            Ok((hit, _)) => Ok(Some(hit)),
            Err(fetcher) => engine.load_blocking(key, fetcher(), &options),
        }
    }

    /// The values of `keys`, in order; the keys missing in every tier go to
    /// one call of `loader` (on the blocking pool); see
    /// [`crate::Cache::get_or_load_many`].
    pub fn get_or_load_many<K, F>(
        &self,
        keys: &[K],
        loader: F,
        options: GetOptions,
    ) -> Result<Vec<Option<Bytes>>>
    where
        K: AsRef<str>,
        F: FnOnce(Vec<String>) -> Result<HashMap<String, Fetched>> + Send + 'static,
    {
        Ok(self
            .lookup_or_load_many(keys, loader, options)?
            .into_iter()
            .map(|l| l.map(|l| l.value))
            .collect())
    }

    /// [`Cache::get_or_load_many`], reporting tier, staleness and age per key.
    pub fn lookup_or_load_many<K, F>(
        &self,
        keys: &[K],
        loader: F,
        options: GetOptions,
    ) -> Result<Vec<Option<Lookup>>>
    where
        K: AsRef<str>,
        F: FnOnce(Vec<String>) -> Result<HashMap<String, Fetched>> + Send + 'static,
    {
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        let fetcher = ManyFetcher::Once(Box::new(move |keys| run_blocking(move || loader(keys))));
        self.engine().load_many_blocking(&keys, fetcher, &options)
    }

    /// For hosts that answer `get_or_load` hits without leaving their
    /// event loop: an L1 hit of `key`, counted, with its version (see
    /// [`Cache::memory_version`]); if it is due for a refresh ahead, one is
    /// started through the loader `loader()` makes (called only then).
    /// `None` on a miss, with nothing counted: the caller goes on with
    /// [`crate::Cache::lookup_or_load`], which loads.
    #[inline]
    pub fn memory_hit_or_refresh<M, L, Fut>(
        &self,
        key: &str,
        loader: M,
        options: &GetOptions,
    ) -> Option<(Lookup, u64)>
    where
        M: FnOnce() -> L,
        L: FnOnce(String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Fetched>> + Send + 'static,
    {
        let fetcher = || {
            let loader = loader();
            Fetcher::Once(Box::new(move |key: String, _| Box::pin(loader(key))))
        };
        self.engine().hit_or_refresh(key, fetcher, options).ok()
    }

    /// [`Cache::memory_hit_or_refresh`] for plain reads of a cache with a
    /// configured source (handed in, or `github`): an L1 hit of `key`,
    /// counted, with its version; a refresh ahead that is due runs through
    /// the configured source. `None`, with nothing counted, on a miss.
    pub fn memory_hit_configured(&self, key: &str) -> Option<(Lookup, u64)> {
        self.engine()
            .hit_or_refresh(key, || Fetcher::Configured, &GetOptions::default())
            .ok()
    }

    /// Whether a source is configured (plain reads load through it).
    pub fn has_source(&self) -> bool {
        self.engine().loads.has_source()
    }

    /// The breaker's status; see [`crate::Cache::breaker_status`].
    pub fn breaker_status(&self) -> BreakerStatus {
        self.inner.breaker_status()
    }

    /// Opens the breaker by hand; see [`crate::Cache::breaker_open`].
    pub fn breaker_open(&self) {
        self.inner.breaker_open();
    }

    /// Closes the breaker by hand; see [`crate::Cache::breaker_close`].
    pub fn breaker_close(&self) {
        self.inner.breaker_close();
    }

    /// Whether `key` holds a fresh value; not counted as a read.
    pub fn has(&self, key: &str) -> Result<bool> {
        self.engine().has(key)
    }

    /// Stores `value` under `key` in every tier with the default TTLs.
    pub fn set(&self, key: impl Into<String>, value: impl Into<Bytes>) -> Result<()> {
        self.set_with(key, value, SetOptions::default())
    }

    /// Stores `value` under `key` with a TTL and tags.
    pub fn set_with(
        &self,
        key: impl Into<String>,
        value: impl Into<Bytes>,
        options: SetOptions,
    ) -> Result<()> {
        self.engine()
            .set_many(vec![(key.into(), value.into())], &options)
    }

    /// [`Cache::set_with`] if it can be done at once, without waiting:
    /// for another thread's or process's write to the file, for Redis or
    /// for a source. That is when the strategy writes only the tiers
    /// (read-through, cache-aside), there is no Redis tier, and the
    /// process's journal takes the write (it has room, and the disk's free
    /// space need not be measured first), or, for a write it cannot take,
    /// the file's write lock is free. Returns `Ok(false)`, having written
    /// nothing, when the write would wait, or would fail in a way that
    /// [`Cache::set_with`] recovers from or reports (a file replaced or
    /// damaged, a full disk, a failed drain of the journal):
    /// [`Cache::set_with`] then does it. A bad key or
    /// value is refused as by [`Cache::set_with`]. A host with an event loop
    /// writes on it this way, and hands the rest to a thread.
    pub fn try_set_with(
        &self,
        key: impl Into<String>,
        value: impl Into<Bytes>,
        options: SetOptions,
    ) -> Result<bool> {
        self.engine()
            .set_many_at_once(vec![(key.into(), value.into())], &options)
    }

    /// Stores many values in one round per tier (one L2 transaction).
    pub fn mset<I, K, V>(&self, items: I) -> Result<()>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<Bytes>,
    {
        self.mset_with(items, SetOptions::default())
    }

    /// [`Cache::mset`] with a TTL and tags for every item.
    pub fn mset_with<I, K, V>(&self, items: I, options: SetOptions) -> Result<()>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<Bytes>,
    {
        let items = items
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.engine().set_many(items, &options)
    }

    /// Removes `key` from every tier; whether it held a fresh value.
    pub fn delete(&self, key: &str) -> Result<bool> {
        self.engine().delete(key)
    }

    /// Fresh keys matching a glob where `*` is the only wildcard, sorted.
    pub fn keys(&self, pattern: &str) -> Result<Vec<String>> {
        self.engine().keys(pattern)
    }

    /// How many fresh keys the cache holds (in any tier).
    pub fn len(&self) -> Result<u64> {
        self.engine().len()
    }

    /// Whether the cache holds no fresh key.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.engine().len()? == 0)
    }

    /// The stored entry with its metadata, fresh or expired.
    pub fn entry(&self, key: &str) -> Result<Option<Entry>> {
        self.engine().entry(key)
    }

    /// [`Cache::entry`] if the value is fresh by the cache's clock; `None`
    /// for a missing key or an expired one (even while it may be served
    /// stale). Not a read: counts nothing, never loads.
    pub fn fresh_entry(&self, key: &str) -> Result<Option<Entry>> {
        self.engine().fresh_entry(key)
    }

    /// Removes every entry from every tier.
    pub fn clear(&self) -> Result<()> {
        self.engine().clear()
    }

    /// Runs L2 maintenance now; see [`crate::Cache::run_pending_tasks`].
    pub fn run_pending_tasks(&self) -> Result<()> {
        self.engine().run_pending_tasks()
    }

    /// Removes every entry written with a tag; see [`crate::Cache::invalidate_tag`].
    pub fn invalidate_tag(&self, tag: &str) -> Result<u64> {
        self.engine().invalidate_tag(tag)
    }

    /// Brings the file up to date; see [`crate::Cache::flush`].
    pub fn flush(&self) -> Result<()> {
        self.engine().flush()
    }

    /// The write-behind outbox's figures; see [`crate::Cache::outbox_stats`].
    pub fn outbox_stats(&self) -> Option<OutboxStats> {
        self.engine().outbox_stats()
    }

    /// Writes that gave up; see [`crate::Cache::dead_letters`].
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.engine().dead_letters()
    }

    /// Writes waiting for the source; see [`crate::Cache::pending_writes`].
    pub fn pending_writes(&self) -> Result<Vec<PendingWrite>> {
        self.engine().pending_writes()
    }

    /// The tags the L2 file's rows carry (expired rows included), with how
    /// many rows carry each, most used first; empty without a file.
    pub fn tags(&self) -> Result<Vec<(String, u64)>> {
        self.engine().tags()
    }

    /// Queues the dead letters again; see [`crate::Cache::retry_dead_letters`].
    pub fn retry_dead_letters(&self) -> Result<u64> {
        self.engine().retry_dead_letters()
    }

    /// Deletes the dead letters; see [`crate::Cache::purge_dead_letters`].
    pub fn purge_dead_letters(&self) -> Result<u64> {
        self.engine().purge_dead_letters()
    }

    /// For hosts that keep decoded values (parsed JSON) next to the cache:
    /// if `key` is a fresh L1 entry, counts an L1 hit exactly as
    /// [`Cache::get`] would and returns the entry's version, a number unique
    /// to this stored value within this cache (every write or promotion of
    /// the key gets a new one). `None` otherwise (a miss, an expired entry,
    /// no L1, a closed cache), and then nothing is counted: the caller goes
    /// on with [`Cache::lookup_versioned`].
    #[inline]
    pub fn memory_version(&self, key: &str) -> Option<u64> {
        self.engine().memory_version(key)
    }

    /// [`Cache::lookup`], plus the version (see [`Cache::memory_version`]) of
    /// the L1 entry holding the value afterwards; `None` when L1 does not
    /// hold it (no L1, or the value is larger than an L1 shard).
    #[inline]
    pub fn lookup_versioned(&self, key: &str) -> Result<Option<(Lookup, Option<u64>)>> {
        self.engine().lookup_versioned(key)
    }

    /// Counts and bounds of the L2 file; `None` without an L2.
    pub fn inspect(&self) -> Result<Option<Inspection>> {
        self.engine().inspect()
    }

    /// Closes the cache (every clone); see [`crate::Cache::close`].
    pub fn close(&self) -> Result<()> {
        self.engine().close()
    }

    /// Whether [`Cache::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Sets every counter back to zero.
    pub fn reset_stats(&self) {
        self.inner.reset_stats();
    }
}
