//! The async facade: [`Cache`], a cheap clonable handle on the engine whose
//! reads complete on the calling task and whose writes run on the shared
//! runtime's blocking pool.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::Engine;
use crate::breaker::BreakerStatus;
use crate::clock::Clock;
use crate::config::{CacheBuilder, Config};
use crate::entry::{Entry, GetOptions, Lookup, SetOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::key;
use crate::load::{Fetcher, ManyFetcher};
use crate::outbox::{DeadLetter, OutboxStats, PendingWrite};
use crate::runtime;
use crate::source::{Fetched, Source};
use crate::stats::Stats;
use crate::tier::Inspection;

/// The async cache: L1 memory over an L2 SQLite file.
///
/// Cheap to clone (an `Arc` inside); every clone is the same cache, and it is
/// `Send + Sync`. Reads complete on the calling task (an L1 hit touches
/// neither the runtime nor any I/O); writes run on the shared runtime's
/// blocking pool, since they may wait for another process's write lock.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> tierstack::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let cache = tierstack::Cache::builder().sqlite_path(dir.path().join("c.db")).build()?;
/// cache.set("k", "v").await?;
/// let hit = cache.lookup("k").await?.unwrap();
/// assert_eq!((&hit.value[..], hit.tier), (&b"v"[..], tierstack::Tier::Memory));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) engine: Arc<Engine>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("namespace", &self.engine.config.namespace)
            .field("sqlite", &self.engine.sqlite.as_ref().map(|s| s.path()))
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// Opens a cache with `config`, creating the L2 file if needed.
    pub fn open(config: Config) -> Result<Self> {
        Self::open_with(config, Clock::system(), None)
    }

    /// A builder for the config.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::new()
    }

    pub(crate) fn open_with(
        config: Config,
        clock: Clock,
        source: Option<Arc<dyn Source>>,
    ) -> Result<Self> {
        let clock = if config.test_clock && clock.is_system() {
            Clock::test()
        } else {
            clock
        };
        Ok(Self {
            engine: Engine::open(config, clock, source)?,
        })
    }

    async fn off_thread<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Engine) -> Result<R> + Send + 'static,
    {
        self.engine.check_open()?;
        let engine = self.engine.clone();
        runtime::handle()
            .spawn_blocking(move || f(&engine))
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("a cache task failed: {e}")))?
    }

    /// The config the cache was opened with.
    pub fn config(&self) -> &Config {
        &self.engine.config
    }

    /// The value of `key`, or `None` on a miss. With a source configured,
    /// a miss loads from it (see [`Cache::lookup`]).
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        match self.engine.loads.has_source() {
            true => Ok(self
                .engine
                .load(key, Fetcher::Configured, &GetOptions::default())
                .await?
                .map(|l| l.value)),
            false => self.engine.get(key),
        }
    }

    /// The value of `key` with the tier that served it, its staleness and
    /// age. With a source configured ([`CacheBuilder::source`]), a miss in
    /// every tier loads from it, as [`Cache::get_or_load`] does with a
    /// loader: `None` then means the source does not have the key.
    pub async fn lookup(&self, key: &str) -> Result<Option<Lookup>> {
        if self.engine.loads.has_source() {
            return self
                .engine
                .load(key, Fetcher::Configured, &GetOptions::default())
                .await;
        }
        self.engine.lookup(key)
    }

    /// The values of `keys`, in order (`None` for a miss), in one round per
    /// tier. With a source configured, the keys missing everywhere are
    /// loaded from it, in one batch if it fetches batches.
    pub async fn mget<K: AsRef<str>>(&self, keys: &[K]) -> Result<Vec<Option<Bytes>>> {
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        if self.engine.loads.has_source() {
            let found = self
                .engine
                .load_many(&keys, ManyFetcher::Configured, &GetOptions::default())
                .await?;
            return Ok(found.into_iter().map(|l| l.map(|l| l.value)).collect());
        }
        self.engine.mget(&keys)
    }

    /// The value of `key`; on a miss in every tier, `loader(key)`'s answer,
    /// stored with `options` (unless the loader chooses, see
    /// [`crate::Loaded`]). `None`: the loader answered
    /// [`Fetched::NotFound`], remembered for `negative_ttl`.
    ///
    /// However many callers (in this process and in others sharing the L2
    /// file) miss the key at once, one loader runs; the others get its
    /// answer. A caller holding a stale copy gets it if the load fails, the
    /// breaker is open, or the load passes `fail_safe.soft_timeout`. A hit
    /// past `refresh_ahead` of its TTL is answered and refreshed through
    /// `loader` in the background. See [`crate::source`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> tierstack::Result<()> {
    /// use tierstack::{Fetched, GetOptions};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = tierstack::Cache::builder().sqlite_path(dir.path().join("c.db")).build()?;
    /// let load = |key: String| async move { Ok(Fetched::value(format!("source of {key}"))) };
    /// let value = cache.get_or_load("component:button", load, GetOptions::new()).await?;
    /// assert_eq!(value.as_deref(), Some(&b"source of component:button"[..]));
    /// # Ok(()) }
    /// ```
    pub async fn get_or_load<F, Fut>(
        &self,
        key: &str,
        loader: F,
        options: GetOptions,
    ) -> Result<Option<Bytes>>
    where
        F: FnOnce(String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Fetched>> + Send + 'static,
    {
        Ok(self
            .lookup_or_load(key, loader, options)
            .await?
            .map(|l| l.value))
    }

    /// [`Cache::get_or_load`], reporting the tier that answered
    /// ([`Tier::Source`](crate::Tier::Source) for a value just loaded),
    /// staleness and age.
    pub async fn lookup_or_load<F, Fut>(
        &self,
        key: &str,
        loader: F,
        options: GetOptions,
    ) -> Result<Option<Lookup>>
    where
        F: FnOnce(String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Fetched>> + Send + 'static,
    {
        let fetcher = || Fetcher::Once(Box::new(move |key, _| Box::pin(loader(key))));
        match self.engine.hit_or_refresh(key, fetcher, &options) {
            Ok((hit, _)) => Ok(Some(hit)),
            Err(fetcher) => self.engine.load(key, fetcher(), &options).await,
        }
    }

    /// The values of `keys`, in order; the keys missing in every tier (and
    /// not being loaded by another caller) go to one call of `loader`,
    /// whose map answers them (a key it leaves out: not found, `None`).
    pub async fn get_or_load_many<K, F, Fut>(
        &self,
        keys: &[K],
        loader: F,
        options: GetOptions,
    ) -> Result<Vec<Option<Bytes>>>
    where
        K: AsRef<str>,
        F: FnOnce(Vec<String>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<std::collections::HashMap<String, Fetched>>>
            + Send
            + 'static,
    {
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        let fetcher = ManyFetcher::Once(Box::new(move |keys| Box::pin(loader(keys))));
        let found = self.engine.load_many(&keys, fetcher, &options).await?;
        Ok(found.into_iter().map(|l| l.map(|l| l.value)).collect())
    }

    /// The status of the circuit breaker guarding the source (every
    /// loader of this cache); reading it changes nothing.
    pub fn breaker_status(&self) -> BreakerStatus {
        self.engine.loads.breaker.status()
    }

    /// Opens the breaker by hand: no source is called (stale copies are
    /// served) until [`Cache::breaker_close`].
    pub fn breaker_open(&self) {
        self.engine.loads.breaker.open();
    }

    /// Closes the breaker by hand, forgetting the failures counted.
    pub fn breaker_close(&self) {
        self.engine.loads.breaker.close();
        self.engine.lift_shared_limit();
    }

    /// Whether `key` holds a fresh value; not counted as a read.
    pub async fn has(&self, key: &str) -> Result<bool> {
        self.engine.has(key)
    }

    /// Stores `value` under `key` in every tier with the default TTLs.
    ///
    /// A value no enabled tier can hold (over `sqlite.max_bytes`; without
    /// an L2, over one L1 entry's share of `memory.max_bytes`) fails with
    /// [`ErrorKind::InvalidArgument`] and changes nothing; one that fits L2
    /// but not L1 is kept in L2 only.
    pub async fn set(&self, key: impl Into<String>, value: impl Into<Bytes>) -> Result<()> {
        self.set_with(key, value, SetOptions::default()).await
    }

    /// Stores `value` under `key` with a TTL and tags.
    pub async fn set_with(
        &self,
        key: impl Into<String>,
        value: impl Into<Bytes>,
        options: SetOptions,
    ) -> Result<()> {
        let items = vec![(key.into(), value.into())];
        self.off_thread(move |e| e.set_many(items, &options)).await
    }

    /// Stores many values in one round per tier (one L2 transaction).
    pub async fn mset<I, K, V>(&self, items: I) -> Result<()>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<Bytes>,
    {
        self.mset_with(items, SetOptions::default()).await
    }

    /// [`Cache::mset`] with a TTL and tags for every item.
    pub async fn mset_with<I, K, V>(&self, items: I, options: SetOptions) -> Result<()>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<Bytes>,
    {
        let items: Vec<(String, Bytes)> = items
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.off_thread(move |e| e.set_many(items, &options)).await
    }

    /// Removes `key` from every tier; whether it held a fresh value.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        key::validate(key)?;
        let key = key.to_owned();
        self.off_thread(move |e| e.delete(&key)).await
    }

    /// Fresh keys matching a glob where `*` is the only wildcard, sorted.
    pub async fn keys(&self, pattern: &str) -> Result<Vec<String>> {
        self.engine.keys(pattern)
    }

    /// How many fresh keys the cache holds (in any tier).
    pub async fn len(&self) -> Result<u64> {
        self.engine.len()
    }

    /// Whether the cache holds no fresh key.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.engine.len()? == 0)
    }

    /// The stored entry with its metadata, fresh or expired.
    pub async fn entry(&self, key: &str) -> Result<Option<Entry>> {
        self.engine.entry(key)
    }

    /// [`Cache::entry`] if the value is fresh by the cache's clock; `None`
    /// for a missing key or an expired one (even while it may be served
    /// stale). Not a read: counts nothing, never loads.
    pub async fn fresh_entry(&self, key: &str) -> Result<Option<Entry>> {
        self.engine.fresh_entry(key)
    }

    /// Removes every entry from every tier.
    pub async fn clear(&self) -> Result<()> {
        self.off_thread(Engine::clear).await
    }

    /// Runs L2 maintenance now rather than at its next tick: writes buffered
    /// access times, evicts least recently used rows while over budget, and
    /// purges rows past their stale-until time when due.
    pub async fn run_pending_tasks(&self) -> Result<()> {
        self.off_thread(Engine::run_pending_tasks).await
    }

    /// Removes every entry written with `tag` (see [`SetOptions::tags`]) from
    /// L2 and from this process's L1; returns how many fresh entries went.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64> {
        let tag = tag.to_owned();
        self.off_thread(move |e| e.invalidate_tag(&tag)).await
    }

    /// The write-behind outbox's figures (see [`crate::outbox`]); `None`
    /// for the other strategies.
    pub fn outbox_stats(&self) -> Option<OutboxStats> {
        self.engine.outbox_stats()
    }

    /// Writes for the source that gave up after `outbox.max_attempts`.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.off_thread(Engine::dead_letters).await
    }

    /// Writes waiting for the source, oldest first.
    pub async fn pending_writes(&self) -> Result<Vec<PendingWrite>> {
        self.off_thread(Engine::pending_writes).await
    }

    /// Queues every dead letter again, with its attempts reset; returns
    /// how many were queued. (A later write of a key drops its dead
    /// letter: retried, it would put an older value back.)
    pub async fn retry_dead_letters(&self) -> Result<u64> {
        self.off_thread(Engine::retry_dead_letters).await
    }

    /// Deletes every dead letter; returns how many there were.
    pub async fn purge_dead_letters(&self) -> Result<u64> {
        self.off_thread(Engine::purge_dead_letters).await
    }

    /// Returns once everything acknowledged is in the file and the file is
    /// up to date: buffered access times are written and the WAL is
    /// checkpointed as far as readers allow. Every write is already durable
    /// when it returns; `flush` is for handing the file to another program.
    /// With write-behind, it first waits for the outbox to empty (every
    /// write delivered to the source), and fails with
    /// [`ErrorKind::Timeout`] past `outbox.flush_timeout`.
    pub async fn flush(&self) -> Result<()> {
        self.off_thread(Engine::flush).await
    }

    /// Counts and bounds of the L2 file; `None` without an L2.
    pub async fn inspect(&self) -> Result<Option<Inspection>> {
        self.off_thread(Engine::inspect).await
    }

    /// Writes buffered state, closes the L2 file, and empties L1. Every clone
    /// is closed; later calls fail with [`ErrorKind::Closed`]. Closing twice is
    /// harmless. Dropping the last clone closes the cache too.
    pub async fn close(&self) -> Result<()> {
        let engine = self.engine.clone();
        runtime::handle()
            .spawn_blocking(move || engine.close())
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("closing failed: {e}")))?
    }

    /// Whether [`Cache::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.engine.closed.load(Ordering::Acquire)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }

    /// Sets every counter back to zero.
    pub fn reset_stats(&self) {
        self.engine.reset_stats();
    }
}
