//! [`CacheBuilder`]: a config built step by step, with a clock and a
//! source, ending in a cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{CircuitBreakerConfig, Config, OnCorrupt, OutboxConfig, RedisConfig, Strategy};
use crate::clock::Clock;
use crate::error::Result;
use crate::source::Source;

/// Builds a [`Config`] step by step, ending in a [`crate::Cache`].
///
/// ```
/// # fn main() -> tierstack::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let cache = tierstack::Cache::builder()
///     .memory_max_bytes(8 * 1024 * 1024)
///     .sqlite_path(dir.path().join("demo.db"))
///     .sqlite_ttl(std::time::Duration::from_secs(600))
///     .build_blocking()?;
/// cache.set("greeting", "hello")?;
/// assert_eq!(cache.get("greeting")?.as_deref(), Some(&b"hello"[..]));
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct CacheBuilder {
    pub(crate) config: Config,
    pub(crate) clock: Clock,
    pub(crate) source: Option<Arc<dyn Source>>,
}

impl std::fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .field("source", &self.source.as_ref().map(|s| s.name().to_owned()))
            .finish()
    }
}

impl CacheBuilder {
    /// A builder holding the default config.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from `config` instead of the defaults.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Sets `namespace`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.config.namespace = namespace.into();
        self
    }

    /// Enables or disables the L1.
    pub fn memory(mut self, enabled: bool) -> Self {
        self.config.memory.enabled = enabled;
        self
    }

    /// Sets `memory.max_bytes`.
    pub fn memory_max_bytes(mut self, bytes: u64) -> Self {
        self.config.memory.max_bytes = bytes;
        self
    }

    /// Sets `memory.hash_seed` (see [`super::MemoryConfig::hash_seed`]).
    pub fn memory_hash_seed(mut self, seed: u64) -> Self {
        self.config.memory.hash_seed = Some(seed);
        self
    }

    /// Sets `memory.ttl`.
    pub fn memory_ttl(mut self, ttl: Duration) -> Self {
        self.config.memory.ttl = ttl;
        self
    }

    /// Enables or disables the L2.
    pub fn sqlite(mut self, enabled: bool) -> Self {
        self.config.sqlite.enabled = enabled;
        self
    }

    /// Sets `sqlite.path`.
    pub fn sqlite_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.sqlite.path = Some(path.into());
        self
    }

    /// Sets `sqlite.max_bytes`.
    pub fn sqlite_max_bytes(mut self, bytes: u64) -> Self {
        self.config.sqlite.max_bytes = bytes;
        self
    }

    /// Sets `sqlite.ttl`.
    pub fn sqlite_ttl(mut self, ttl: Duration) -> Self {
        self.config.sqlite.ttl = ttl;
        self
    }

    /// Sets `sqlite.coherence_interval`.
    pub fn coherence_interval(mut self, interval: Duration) -> Self {
        self.config.sqlite.coherence_interval = interval;
        self
    }

    /// Sets `sqlite.on_corrupt`.
    pub fn sqlite_on_corrupt(mut self, on_corrupt: OnCorrupt) -> Self {
        self.config.sqlite.on_corrupt = on_corrupt;
        self
    }

    /// Sets `fail_safe.max_stale`.
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.config.fail_safe.max_stale = max_stale;
        self
    }

    /// Sets `fail_safe.soft_timeout`.
    pub fn soft_timeout(mut self, timeout: Duration) -> Self {
        self.config.fail_safe.soft_timeout = timeout;
        self
    }

    /// Sets `fail_safe.hard_timeout`.
    pub fn hard_timeout(mut self, timeout: Duration) -> Self {
        self.config.fail_safe.hard_timeout = timeout;
        self
    }

    /// Sets the `circuit_breaker` section.
    pub fn circuit_breaker(mut self, breaker: CircuitBreakerConfig) -> Self {
        self.config.circuit_breaker = breaker;
        self
    }

    /// Sets `negative_ttl`.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.config.negative_ttl = ttl;
        self
    }

    /// Sets `refresh_ahead`.
    pub fn refresh_ahead(mut self, share: f64) -> Self {
        self.config.refresh_ahead = share;
        self
    }

    /// Sets `ttl_jitter`.
    pub fn ttl_jitter(mut self, share: f64) -> Self {
        self.config.ttl_jitter = share;
        self
    }

    /// How writes reach the source; see [`Strategy`].
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.config.strategy = strategy;
        self
    }

    /// The write-behind outbox's settings.
    pub fn outbox(mut self, outbox: OutboxConfig) -> Self {
        self.config.outbox = outbox;
        self
    }

    /// A Redis shared by many machines (see [`RedisConfig`]).
    pub fn redis(mut self, redis: RedisConfig) -> Self {
        self.config.redis = Some(redis);
        self
    }

    /// The source of truth: plain reads (`get`, `mget`, `lookup`) that miss
    /// every tier load from it (read-through). See [`crate::source`].
    pub fn source(mut self, source: impl Source) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// [`CacheBuilder::source`] for a source already shared.
    pub fn source_arc(mut self, source: Arc<dyn Source>) -> Self {
        self.source = Some(source);
        self
    }

    /// Uses `clock` for every expiry decision (a [`crate::ManualClock`] in tests).
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// Opens the async [`crate::Cache`].
    pub fn build(self) -> Result<crate::Cache> {
        crate::Cache::open_with(self.config, self.clock, self.source)
    }

    /// Opens the synchronous [`crate::blocking::Cache`].
    pub fn build_blocking(self) -> Result<crate::blocking::Cache> {
        self.build().map(crate::blocking::Cache::from)
    }
}
