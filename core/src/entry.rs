//! What a cache holds and what a read reports.

use std::time::Duration;

use bytes::Bytes;

/// A tier of the cache, as reported in [`Lookup::tier`] and in stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Tier {
    /// L1: this process's memory.
    Memory,
    /// L2: the SQLite file shared by every process on the host.
    Sqlite,
    /// The Redis shared by many machines (the `redis` Cargo feature).
    Redis,
    /// The source of truth: the value was loaded for this read.
    Source,
}

impl Tier {
    /// The tier's stable name: `"memory"`, `"sqlite"`, `"redis"` or `"source"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::Sqlite => "sqlite",
            Tier::Redis => "redis",
            Tier::Source => "source",
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value found by [`crate::Cache::lookup`], with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The stored bytes.
    pub value: Bytes,
    /// The tier that served it.
    pub tier: Tier,
    /// Whether the value had expired and was served as a stale copy
    /// (the source failed, its breaker was open, or it was slower than
    /// `fail_safe.soft_timeout`).
    pub stale: bool,
    /// Time since the value was written.
    pub age: Duration,
}

/// Options for [`crate::Cache::set_with`] (and, as [`GetOptions`], for
/// what `get_or_load` stores).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetOptions {
    /// Time to live; `None` or zero takes each tier's default
    /// (`memory.ttl`, `sqlite.ttl`), the rule every host follows for a TTL
    /// of 0 seconds. L1 never keeps an entry longer than `memory.ttl`.
    pub ttl: Option<Duration>,
    /// Tags stored with the entry in L2.
    pub tags: Vec<String>,
}

impl SetOptions {
    /// No TTL override, no tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the time to live; [`Duration::ZERO`] takes the tier defaults.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The TTL that overrides the tier defaults: `None` for `None` or zero.
    pub(crate) fn ttl_override(&self) -> Option<Duration> {
        self.ttl.filter(|ttl| !ttl.is_zero())
    }

    /// Adds tags.
    #[must_use]
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }
}

/// Options for `get_or_load` and `get_or_load_many`: the TTL and tags a
/// loaded value is stored with, unless the loader chooses (see
/// [`crate::Loaded`]). The same options as a write's.
pub type GetOptions = SetOptions;

/// Everything L2 keeps about an entry besides its value. Times are
/// milliseconds since the Unix epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// When the key was first written: a write that replaces its value
    /// keeps it; a delete, a `clear`, a tag invalidation or the row's purge
    /// past its stale window forgets the key. (Without L2, as far as L1
    /// holds the key.)
    pub first_written_ms: u64,
    /// When the value was written (the latest write).
    pub created_ms: u64,
    /// When it stops being fresh.
    pub expires_ms: u64,
    /// When it stops being usable even as a stale copy (expiry + `fail_safe.max_stale`).
    pub stale_until_ms: u64,
    /// Bytes charged against the tier budget (key + value + per-row overhead).
    pub size: u64,
    /// How many reads of the key any tier answered since its first write,
    /// L1 hits included: exact for this process's reads (and those of
    /// processes that closed), other processes' reads arrive with their
    /// next maintenance pass (about a second). Reads an L1 counted and then
    /// dropped, because of a `clear` or a resync with other processes, are
    /// lost.
    pub access_count: u64,
    /// The latest read or write.
    pub last_access_ms: u64,
    /// The source's entity tag, for conditional refreshes.
    pub etag: Option<String>,
    /// Tags given at write time.
    pub tags: Vec<String>,
}

/// A stored entry: key, value and metadata, as read by [`crate::Cache::entry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Bytes,
    /// Its metadata.
    pub meta: Metadata,
}

impl Entry {
    /// Whether the entry is fresh at `now_ms`.
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.meta.expires_ms
    }
}
