//! Configuration: one serde schema (JSON) for every host, with documented
//! defaults, validation, and a builder.
//!
//! Every key is optional; an unknown key is an error, so a typo is never
//! silently ignored. Durations are seconds (fractions allowed) in JSON and
//! [`Duration`] in Rust.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `namespace` | `"default"` | names the default cache file; `[A-Za-z0-9._-]`, 1–64 chars |
//! | `memory.enabled` | `true` | keep an L1 in this process |
//! | `memory.max_bytes` | 52428800 (50 MiB) | L1 budget: key + value + ~96 bytes per entry |
//! | `memory.ttl` | 3600 (1 h) | longest time an entry stays in L1 |
//! | `sqlite.enabled` | `true` | keep an L2 in a SQLite file shared by every process |
//! | `sqlite.path` | `$TIERSTACK_DB_PATH`, else `<cache dir>/tierstack/<namespace>.db` | the file (a path: `:memory:` and `file:` URIs are refused) |
//! | `sqlite.max_bytes` | 104857600 (100 MiB) | L2 budget: key + value + ~64 bytes per row |
//! | `sqlite.ttl` | 86400 (24 h) | default time to live in L2 |
//! | `sqlite.coherence_interval` | 0.05 (50 ms) | how often, at most, L1 checks the file for other processes' changes (0: on every access) |
//! | `sqlite.on_corrupt` | `"rebuild"` | a damaged tierstack file: `"rebuild"` sets it aside as `<name>.corrupt-<unix time>` and starts a fresh one; `"fail"` reports `corrupt` and touches nothing |
//! | `fail_safe.max_stale` | 86400 (24 h) | how long an expired L2 row is kept to be served stale |
//! | `fail_safe.soft_timeout` | 1.0 | a load slower than this serves the stale copy, if there is one, and finishes in the background (0: serve it as soon as the load is started) |
//! | `fail_safe.hard_timeout` | 30 | a fetch from the source slower than this is abandoned and counts as a failure of the source; waiting for another process's fetch does not count against it (more than 0, at least `soft_timeout`) |
//! | `circuit_breaker.*` | see [`CircuitBreakerConfig`] | when the source is cut off |
//! | `negative_ttl` | 60 | how long a source's "not found" is remembered (0: not at all) |
//! | `refresh_ahead` | 0.8 | a hit past this share of its TTL is refreshed from the source in the background (0 or 1: never) |
//! | `github.*` | absent | GitHub as the source of truth; see [`GitHubConfig`] |
//! | `redis.*` | absent | a Redis shared by many machines, between the L2 file and the source; see [`RedisConfig`] (needs the `redis` Cargo feature) |
//! | `test_clock` | false | test only: read time from the process's test clock, which moves only by [`crate::advance_test_clock`] |
//! | `ttl_jitter` | 0.1 | a loaded value's TTL is shortened by a random share up to this, so that values loaded together do not expire together (0: exact TTLs); in `[0, 1)` |
//!
//! Durations in a config are at most 100 years ([`MAX_TTL`]); the TTLs are
//! greater than 0. A negative, non-numeric or out-of-range duration is an
//! [`ErrorKind::InvalidConfig`] error.
//!
//! TTLs given per write by a host, in seconds, follow one rule in every host
//! (see [`ttl_from_seconds`]): absent or `0` takes the tier default; a
//! negative, NaN, infinite or over-100-years TTL is an
//! [`ErrorKind::InvalidArgument`] error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use std::sync::Arc;

pub use self::redis::{MAX_REDIS_TIMEOUT, RedisConfig, RedisUrl};
pub use crate::breaker::CircuitBreakerConfig;
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
pub use crate::outbox::OutboxConfig;
use crate::source::Source;
pub use crate::source::github::{GitHubConfig, Routes, Secret};

mod redis;

/// The environment variable that supplies `sqlite.path` when the config has none.
pub const DB_PATH_ENV: &str = "TIERSTACK_DB_PATH";

/// The longest `sqlite.coherence_interval` accepted: 1 hour.
pub const MAX_COHERENCE_INTERVAL: Duration = Duration::from_secs(3600);

/// The longest TTL accepted: 100 years.
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The whole configuration of a cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Names the default cache file.
    pub namespace: String,
    /// The in-process L1.
    pub memory: MemoryConfig,
    /// The per-host L2 file.
    pub sqlite: SqliteConfig,
    /// Serving expired copies, and how long a load may take.
    pub fail_safe: FailSafeConfig,
    /// When the source is cut off.
    pub circuit_breaker: CircuitBreakerConfig,
    /// How long a source's "not found" is remembered; zero: not at all.
    #[serde(with = "seconds")]
    pub negative_ttl: Duration,
    /// A hit past this share of its TTL is refreshed from the source in the
    /// background; 0 or 1: never.
    pub refresh_ahead: f64,
    /// A loaded value's TTL is shortened by a random share up to this.
    pub ttl_jitter: f64,
    /// GitHub as the source of truth; `None` (the default): not used.
    pub github: Option<GitHubConfig>,
    /// How writes reach the source, and whether reads load from it.
    pub strategy: Strategy,
    /// The write-behind outbox.
    pub outbox: OutboxConfig,
    /// A Redis shared by many machines; `None` (the default): not used.
    /// Opening a cache with an enabled section fails with
    /// [`ErrorKind::InvalidConfig`] in a build without the `redis` feature.
    pub redis: Option<RedisConfig>,
    /// Test only. `true`: the cache reads time from this process's test
    /// clock, which stands still until [`crate::advance_test_clock`] moves
    /// it (the C `tierstack_advance_test_clock`, Python
    /// `tierstack.advance_test_clock`, Node `advanceTestClock`), so a test
    /// checks TTLs, stale windows, negative TTLs and breaker timeouts
    /// without sleeping. Every cache of the process opened with it shares
    /// that one clock, across close and reopen. Default `false`: the
    /// system clock. A Rust [`CacheBuilder::clock`] takes precedence.
    /// Never set it in production: time would stop for expiry.
    pub test_clock: bool,
}

/// How writes reach the source, and whether a miss loads from it.
///
/// | strategy | `set` writes | a miss loads from the configured source |
/// |---|---|---|
/// | read-through (default) | the tiers | yes |
/// | cache-aside | the tiers | no: the caller loads (`get_or_load`) |
/// | write-through | the source first, then the tiers | yes |
/// | write-behind | the tiers and the outbox, in one durable commit; the source later | yes |
///
/// write-through and write-behind need a source that can store
/// ([`crate::Source::writable`]); opening with a read-only one (GitHub, a
/// plain loader) is an [`ErrorKind::InvalidConfig`] error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Writes go to the tiers; a miss loads from the source.
    #[default]
    ReadThrough,
    /// Writes go to the tiers; a miss never calls the configured source.
    CacheAside,
    /// Writes go to the source first (a failure is the caller's, and the
    /// tiers are left unchanged), then to the tiers.
    WriteThrough,
    /// Writes go to the tiers and, through the durable outbox, to the
    /// source later (see [`crate::outbox`]).
    WriteBehind,
}

impl Strategy {
    /// The config's name of the strategy.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::ReadThrough => "read-through",
            Strategy::CacheAside => "cache-aside",
            Strategy::WriteThrough => "write-through",
            Strategy::WriteBehind => "write-behind",
        }
    }

    /// Whether `set` writes to the source.
    pub fn writes_source(self) -> bool {
        matches!(self, Strategy::WriteThrough | Strategy::WriteBehind)
    }
}

/// The L1 memory tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Keep an L1 in this process.
    pub enabled: bool,
    /// Budget in bytes (key + value + a fixed per-entry overhead).
    pub max_bytes: u64,
    /// Longest time an entry stays in L1, whatever its own TTL.
    #[serde(with = "seconds")]
    pub ttl: Duration,
}

/// The L2 SQLite tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteConfig {
    /// Keep an L2 file.
    pub enabled: bool,
    /// The file; see [`Config::resolved_sqlite_path`] for the fallbacks.
    pub path: Option<PathBuf>,
    /// Budget in bytes (key + value + a fixed per-row overhead), enforced by
    /// background eviction of the least recently used rows.
    pub max_bytes: u64,
    /// Default time to live of an entry.
    #[serde(with = "seconds")]
    pub ttl: Duration,
    /// How often, at most, L1 is checked against the file for changes made
    /// by other processes (see [`crate::coherence`]): the longest time this
    /// process may serve, from L1, a value another process replaced. Zero
    /// checks on every access.
    #[serde(with = "seconds")]
    pub coherence_interval: Duration,
    /// What to do when SQLite finds the file damaged.
    pub on_corrupt: OnCorrupt,
}

/// What to do when SQLite reports a tierstack cache file damaged
/// (`SQLITE_CORRUPT` or `SQLITE_NOTADB`), at open or on any later call.
///
/// Only a file whose header shows it is a tierstack cache (its
/// `application_id`) is ever moved; any other file is left untouched and
/// reported as [`ErrorKind::Corrupt`] whatever this says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnCorrupt {
    /// Rename the damaged file (and its `-wal`) to `<name>.corrupt-<unix
    /// time>`, create a fresh one, log a warning, count it in
    /// [`crate::Stats::sqlite_rebuilds`], and carry on: the call that found
    /// the damage runs again on the fresh file. What the damaged file held
    /// is lost to the cache (it stays in the renamed file).
    #[default]
    Rebuild,
    /// Report [`ErrorKind::Corrupt`] and touch nothing (`tierstack check`
    /// shows the damage; `tierstack clear` or deleting the file starts
    /// afresh).
    Fail,
}

/// Serving expired copies, and how long a load may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailSafeConfig {
    /// How long after expiry an L2 row is kept so it can still be served as
    /// stale when the source fails.
    #[serde(with = "seconds")]
    pub max_stale: Duration,
    /// A caller holding a stale copy waits this long for a load, then gets
    /// the stale copy while the load finishes in the background.
    #[serde(with = "seconds")]
    pub soft_timeout: Duration,
    /// A fetch from the source is abandoned after this long and counts as
    /// a failure; waiting for another process's fetch does not count.
    #[serde(with = "seconds")]
    pub hard_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespace: "default".to_owned(),
            memory: MemoryConfig::default(),
            sqlite: SqliteConfig::default(),
            fail_safe: FailSafeConfig::default(),
            circuit_breaker: CircuitBreakerConfig::default(),
            negative_ttl: Duration::from_secs(60),
            refresh_ahead: 0.8,
            ttl_jitter: 0.1,
            github: None,
            strategy: Strategy::ReadThrough,
            outbox: OutboxConfig::default(),
            redis: None,
            test_clock: false,
        }
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: 50 * 1024 * 1024,
            ttl: Duration::from_secs(3600),
        }
    }
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            max_bytes: 100 * 1024 * 1024,
            ttl: Duration::from_secs(24 * 3600),
            coherence_interval: Duration::from_millis(50),
            on_corrupt: OnCorrupt::Rebuild,
        }
    }
}

impl Default for FailSafeConfig {
    fn default() -> Self {
        Self {
            max_stale: Duration::from_secs(24 * 3600),
            soft_timeout: Duration::from_secs(1),
            hard_timeout: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// Parses a JSON config; errors are of kind [`ErrorKind::InvalidConfig`]
    /// and name the offending key.
    pub fn from_json(json: &str) -> Result<Self> {
        // The text of a misplaced value is not repeated: it may be a secret
        // (a token, a Redis URL with its password).
        let invalid = |e: serde_json::Error| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("config: {}", without_strings(&e.to_string())),
            )
        };
        let value: serde_json::Value = serde_json::from_str(json).map_err(invalid)?;
        // serde would also build a struct from a JSON array of its fields.
        let sections = value.as_object().ok_or_else(|| {
            Error::new(ErrorKind::InvalidConfig, "config: expected a JSON object")
        })?;
        for (name, section) in sections {
            if name == "redis" && section.as_object().is_some_and(|s| !s.contains_key("url")) {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    "config: redis.url is required (missing field `url`)",
                ));
            }
            if section.is_array() {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!("config: {name} must be a JSON object"),
                ));
            }
        }
        // Parsed from the text again, so that errors give a line and column.
        let config: Config = serde_json::from_str(json).map_err(invalid)?;
        config.validate()?;
        Ok(config)
    }

    /// The config as JSON (every key, defaults included).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a config always serialises")
    }

    /// Checks every value; errors are of kind [`ErrorKind::InvalidConfig`].
    pub fn validate(&self) -> Result<()> {
        let ns = &self.namespace;
        if ns.is_empty()
            || ns.len() > 64
            || !ns
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            || ns.starts_with('.')
        {
            return Err(invalid(format!(
                "namespace {ns:?} must be 1-64 characters of A-Z a-z 0-9 . _ - and not start with '.'"
            )));
        }
        if !self.memory.enabled && !self.sqlite.enabled {
            return Err(invalid("no tier is enabled: enable memory, sqlite or both"));
        }
        check_ttl("memory.ttl", self.memory.ttl)?;
        check_ttl("sqlite.ttl", self.sqlite.ttl)?;
        if self.sqlite.coherence_interval > MAX_COHERENCE_INTERVAL {
            return Err(invalid("sqlite.coherence_interval is longer than 1 hour"));
        }
        if self.fail_safe.max_stale > MAX_TTL {
            return Err(invalid("fail_safe.max_stale is longer than 100 years"));
        }
        check_ttl("fail_safe.hard_timeout", self.fail_safe.hard_timeout)?;
        if self.fail_safe.soft_timeout > self.fail_safe.hard_timeout {
            return Err(invalid(
                "fail_safe.soft_timeout is longer than fail_safe.hard_timeout",
            ));
        }
        if self.negative_ttl > MAX_TTL {
            return Err(invalid("negative_ttl is longer than 100 years"));
        }
        if !(0.0..=1.0).contains(&self.refresh_ahead) {
            return Err(invalid(format!(
                "refresh_ahead {} must be between 0 and 1 (0 or 1: no refresh ahead)",
                self.refresh_ahead
            )));
        }
        if !(0.0..1.0).contains(&self.ttl_jitter) {
            return Err(invalid(format!(
                "ttl_jitter {} must be at least 0 and less than 1",
                self.ttl_jitter
            )));
        }
        self.circuit_breaker.validate()?;
        if self.memory.enabled && self.memory.max_bytes == 0 {
            return Err(invalid("memory.max_bytes must be greater than 0"));
        }
        if self.sqlite.enabled && self.sqlite.max_bytes == 0 {
            return Err(invalid("sqlite.max_bytes must be greater than 0"));
        }
        if let Some(path) = &self.sqlite.path {
            check_sqlite_path("sqlite.path", path)?;
        }
        if let Some(github) = &self.github {
            github.validate()?;
        }
        self.outbox.validate()?;
        if let Some(redis) = &self.redis {
            redis.validate()?;
        }
        Ok(())
    }

    /// The L2 file: `sqlite.path` if set, else `$TIERSTACK_DB_PATH` if set and
    /// non-empty, else `<user cache dir>/tierstack/<namespace>.db`.
    pub fn resolved_sqlite_path(&self) -> Result<PathBuf> {
        if let Some(path) = &self.sqlite.path {
            return Ok(path.clone());
        }
        if let Some(path) = std::env::var_os(DB_PATH_ENV).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            check_sqlite_path(DB_PATH_ENV, &path)?;
            return Ok(path);
        }
        let dir = dirs::cache_dir().ok_or_else(|| {
            invalid(format!(
                "no user cache directory is known: set sqlite.path or {DB_PATH_ENV}"
            ))
        })?;
        Ok(dir.join("tierstack").join(format!("{}.db", self.namespace)))
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidConfig, message)
}

/// The L2 is a file every process opens by its path: SQLite's names for
/// other things (`:memory:`, a `file:` URI) are refused before anything is
/// created.
fn check_sqlite_path(name: &str, path: &Path) -> Result<()> {
    let text = path.to_string_lossy();
    if text.is_empty() {
        return Err(invalid(format!("{name} is empty")));
    }
    if text == ":memory:" {
        return Err(invalid(format!(
            "{name} is \":memory:\", which is not a file: the sqlite tier is a file shared \
             by every process; for a memory-only cache set sqlite.enabled to false"
        )));
    }
    if text.starts_with("file:") {
        return Err(invalid(format!(
            "{name} {text:?} is a SQLite URI, which is not supported: give a file path"
        )));
    }
    Ok(())
}

fn check_ttl(name: &str, ttl: Duration) -> Result<()> {
    if ttl.is_zero() {
        return Err(invalid(format!("{name} must be greater than 0 seconds")));
    }
    if ttl > MAX_TTL {
        return Err(invalid(format!("{name} is longer than 100 years")));
    }
    Ok(())
}

/// Durations as seconds (fractions allowed) in JSON.
pub(crate) mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_nanos() == 0 {
            s.serialize_u64(d.as_secs())
        } else {
            s.serialize_f64(d.as_secs_f64())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        if !secs.is_finite() || secs < 0.0 {
            return Err(D::Error::custom(format!(
                "{secs} is not a number of seconds >= 0"
            )));
        }
        // Past what a Duration holds is past 100 years too: `validate`
        // refuses it with the name of the key.
        Ok(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
    }
}

/// Turns a TTL given in seconds by a host (C, Python, Node, the CLI) into a
/// [`Duration`]. Every host passes its TTL argument through this function,
/// so one rule holds everywhere (in Rust too: [`crate::SetOptions::ttl`]
/// with [`Duration::ZERO`] takes the tier defaults):
///
/// | seconds | meaning |
/// |---|---|
/// | absent (the host does not call this) or `0` | the tier defaults (`Ok(None)`): `sqlite.ttl`, and `memory.ttl` in L1 |
/// | more than 0, at most [`MAX_TTL`] (100 years); fractions allowed | that TTL (`Ok(Some(..))`); L1 still keeps an entry at most `memory.ttl` |
/// | negative, NaN, infinite, or more than 100 years | an [`ErrorKind::InvalidArgument`] error |
///
/// A positive TTL shorter than a nanosecond counts as one nanosecond (the
/// entry is stored already expired). This function never panics.
pub fn ttl_from_seconds(secs: f64) -> Result<Option<Duration>> {
    let refuse = |why: &str| {
        Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("ttl {secs:?} {why}"),
        ))
    };
    if secs == 0.0 {
        return Ok(None);
    }
    if secs.is_nan() {
        return refuse("is not a number of seconds");
    }
    if secs.is_infinite() {
        return refuse("is not a finite number of seconds");
    }
    if secs < 0.0 {
        return refuse("is negative: give 0 (or no ttl) for the tier default");
    }
    if secs > MAX_TTL.as_secs_f64() {
        return refuse("seconds is longer than 100 years (3153600000 seconds)");
    }
    // In range, so the conversion cannot overflow.
    Ok(Some(
        Duration::from_secs_f64(secs).max(Duration::from_nanos(1)),
    ))
}

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

/// `message` (serde's) with every string value it quotes (`string "…"`)
/// left out.
fn without_strings(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("string \"") {
        out.push_str(&rest[..at]);
        out.push_str("a string");
        let quoted = &rest[at + "string \"".len()..];
        // The closing quote: the first one not escaped.
        let mut escaped = false;
        let end = quoted.char_indices().find_map(|(i, c)| match (c, escaped) {
            ('\\', false) => {
                escaped = true;
                None
            }
            ('"', false) => Some(i + 1),
            _ => {
                escaped = false;
                None
            }
        });
        rest = end.map_or("", |end| &quoted[end..]);
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misplaced_value_is_not_repeated_in_the_error() {
        for (json, secret) in [
            (r#"{"redis": "redis://:hunter2@127.0.0.1:1"}"#, "hunter2"),
            (
                r#"{"redis": {"url": "redis://127.0.0.1:1", "ttl": "redis://:hunter2@h"}}"#,
                "hunter2",
            ),
            (r#"{"github": {"timeout": "ghp_s3cr3t\"x"}}"#, "s3cr3t"),
        ] {
            let err = Config::from_json(json).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig);
            assert!(!err.message().contains(secret), "{}", err.message());
        }
        let err = Config::from_json(r#"{"redis": "redis://:hunter2@h"}"#).unwrap_err();
        assert_eq!(
            err.message(),
            "config: invalid type: a string, expected struct RedisConfig at line 1 column 30"
        );
    }

    #[test]
    fn empty_json_gives_documented_defaults() {
        let config = Config::from_json("{}").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.memory.max_bytes, 52_428_800);
        assert_eq!(config.memory.ttl, Duration::from_secs(3600));
        assert_eq!(config.sqlite.max_bytes, 104_857_600);
        assert_eq!(config.sqlite.ttl, Duration::from_secs(86_400));
        assert_eq!(config.fail_safe.max_stale, Duration::from_secs(86_400));
        assert_eq!(config.sqlite.on_corrupt, OnCorrupt::Rebuild);
    }

    #[test]
    fn on_corrupt_is_rebuild_or_fail() {
        let config = Config::from_json(r#"{"sqlite": {"on_corrupt": "fail"}}"#).unwrap();
        assert_eq!(config.sqlite.on_corrupt, OnCorrupt::Fail);
        assert_eq!(Config::from_json(&config.to_json()).unwrap(), config);
        let err = Config::from_json(r#"{"sqlite": {"on_corrupt": "repair"}}"#).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(
            err.message()
                .contains("unknown variant `repair`, expected `rebuild` or `fail`"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn fractional_seconds_round_trip() {
        let config =
            Config::from_json(r#"{"memory": {"ttl": 0.25}, "sqlite": {"ttl": 90}}"#).unwrap();
        assert_eq!(config.memory.ttl, Duration::from_millis(250));
        assert_eq!(Config::from_json(&config.to_json()).unwrap(), config);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let cases = [
            (r#"{"memroy": {}}"#, "unknown field `memroy`"),
            (r#"{"memory": {"max_size": 1}}"#, "unknown field `max_size`"),
            (r#"{"memory": {"ttl": -1}}"#, "not a number of seconds"),
            (
                r#"{"memory": {"ttl": 0}}"#,
                "memory.ttl must be greater than 0",
            ),
            (
                r#"{"sqlite": {"max_bytes": 0}}"#,
                "sqlite.max_bytes must be greater than 0",
            ),
            (r#"{"namespace": "../etc"}"#, "namespace"),
            (
                r#"{"memory": {"enabled": false}, "sqlite": {"enabled": false}}"#,
                "no tier",
            ),
            (r#"{"memory": {"max_bytes": "big"}}"#, "invalid type"),
            ("{", "EOF"),
            ("[]", "expected a JSON object"),
            ("null", "expected a JSON object"),
            (r#"{"memory": []}"#, "memory must be a JSON object"),
        ];
        for (json, needle) in cases {
            let err = Config::from_json(json).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{json}");
            assert!(err.message().contains(needle), "{json}: {}", err.message());
        }
    }

    #[test]
    fn host_ttl_seconds_follow_one_rule() {
        assert_eq!(ttl_from_seconds(0.0).unwrap(), None);
        assert_eq!(ttl_from_seconds(-0.0).unwrap(), None);
        assert_eq!(
            ttl_from_seconds(1.5).unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            ttl_from_seconds(MAX_TTL.as_secs_f64()).unwrap(),
            Some(MAX_TTL)
        );
        assert_eq!(
            ttl_from_seconds(1e-300).unwrap(),
            Some(Duration::from_nanos(1))
        );
        let refused = [
            (-3.0, "ttl -3.0 is negative"),
            (-1e-300, "is negative"),
            (f64::NAN, "ttl NaN is not a number"),
            (f64::INFINITY, "ttl inf is not a finite number"),
            (f64::NEG_INFINITY, "ttl -inf is not a finite number"),
            (1e12, "ttl 1000000000000.0 seconds is longer than 100 years"),
            (1e20, "ttl 1e20 seconds is longer than 100 years"),
            (MAX_TTL.as_secs_f64() + 1.0, "longer than 100 years"),
            (f64::MAX, "longer than 100 years"),
        ];
        for (secs, needle) in refused {
            let err = ttl_from_seconds(secs).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{secs}");
            assert!(err.message().contains(needle), "{secs}: {}", err.message());
        }
    }

    #[test]
    fn host_ttl_seconds_never_panic() {
        // Every sign and exponent, with a few mantissas each: no input panics.
        for sign in [0u64, 1] {
            for exponent in 0u64..=0x7ff {
                for mantissa in [0u64, 1, 0x8_0000_0000_0000, 0xf_ffff_ffff_ffff] {
                    let secs = f64::from_bits(sign << 63 | exponent << 52 | mantissa);
                    let outcome = std::panic::catch_unwind(|| ttl_from_seconds(secs));
                    let outcome = outcome.unwrap_or_else(|_| panic!("ttl {secs:?} panicked"));
                    if let Ok(Some(ttl)) = outcome {
                        assert!(!ttl.is_zero() && ttl <= MAX_TTL, "{secs:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn durations_past_100_years_are_invalid_configs_naming_the_key() {
        let cases = [
            (
                r#"{"memory": {"ttl": 1e20}}"#,
                "memory.ttl is longer than 100 years",
            ),
            (
                r#"{"sqlite": {"ttl": 1e300}}"#,
                "sqlite.ttl is longer than 100 years",
            ),
            (
                r#"{"sqlite": {"ttl": 3153600001}}"#,
                "sqlite.ttl is longer than 100 years",
            ),
            (
                r#"{"fail_safe": {"max_stale": 1e20}}"#,
                "fail_safe.max_stale is longer than 100 years",
            ),
        ];
        for (json, needle) in cases {
            let err = Config::from_json(json).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{json}");
            assert!(err.message().contains(needle), "{json}: {}", err.message());
        }
        let longest = Config::from_json(r#"{"sqlite": {"ttl": 3153600000}}"#).unwrap();
        assert_eq!(longest.sqlite.ttl, MAX_TTL);
    }

    #[test]
    fn sqlite_names_that_are_not_file_paths_are_invalid_configs() {
        let cases = [
            (
                r#"{"sqlite": {"path": ":memory:"}}"#,
                "sqlite.path is \":memory:\"",
            ),
            (r#"{"sqlite": {"path": "file:x.db"}}"#, "is a SQLite URI"),
            (
                r#"{"sqlite": {"path": "file:/tmp/x/y.db?mode=memory"}}"#,
                "is a SQLite URI",
            ),
            (r#"{"sqlite": {"path": ""}}"#, "sqlite.path is empty"),
        ];
        for (json, needle) in cases {
            let err = Config::from_json(json).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{json}");
            assert!(err.message().contains(needle), "{json}: {}", err.message());
        }
        // A path that merely contains those words is a path.
        Config::from_json(r#"{"sqlite": {"path": "dir/file:x.db"}}"#).unwrap();
        Config::from_json(r#"{"sqlite": {"path": "./:memory:"}}"#).unwrap();
    }
}
