//! tierstack: a hybrid, multi-tier cache.
//!
//! L1 is this process's memory (byte-bounded, per-entry TTL, scan-resistant
//! eviction); L2 is a SQLite file shared by every process on the host, which
//! survives restarts. A read walks L1 then L2 and promotes an L2 hit into L1.
//! With the `redis` Cargo feature and a `redis` config section
//! ([`RedisConfig`]), a Redis shared by many machines sits between L2 and
//! the source (see [`tier`]).
//!
//! [`Cache`] is async; [`blocking::Cache`] is the same cache, synchronous.
//! Both are opened from one [`Config`] (serde, JSON) or a [`CacheBuilder`].
//! Errors carry a stable [`ErrorKind`].
//!
//! ```
//! # fn main() -> tierstack::Result<()> {
//! use tierstack::{Tier, blocking::Cache};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("cache.db");
//! let cache = Cache::builder().sqlite_path(&path).build_blocking()?;
//! cache.set("component:button", r#"{"source": "..."}"#)?;
//! assert_eq!(cache.lookup("component:button")?.unwrap().tier, Tier::Memory);
//! cache.close()?;
//!
//! // A new process (here: a new cache) finds it in the shared file.
//! let cache = Cache::builder().sqlite_path(&path).build_blocking()?;
//! assert_eq!(cache.lookup("component:button")?.unwrap().tier, Tier::Sqlite);
//! assert_eq!(cache.lookup("component:button")?.unwrap().tier, Tier::Memory);
//! # Ok(()) }
//! ```

#[cfg(feature = "redis")]
mod backplane;
pub mod blocking;
pub mod breaker;
mod cache;
mod clock;
pub mod coherence;
pub mod config;
mod entry;
mod error;
mod fork;
pub mod key;
mod load;
pub mod outbox;
pub mod runtime;
pub mod source;
mod stats;
pub mod tier;
pub mod value;

pub use breaker::{Breaker, BreakerState, BreakerStatus, CallOutcome};
pub use bytes::Bytes;
pub use cache::{Cache, MAINTENANCE_INTERVAL};
pub use clock::{Clock, ManualClock, advance_test_clock};
pub use config::{
    CacheBuilder, CircuitBreakerConfig, Config, FailSafeConfig, MemoryConfig, OnCorrupt,
    RedisConfig, RedisUrl, SqliteConfig, Strategy,
};
pub use entry::{Entry, GetOptions, Lookup, Metadata, SetOptions, Tier};
pub use error::{Error, ErrorKind, Result};
pub use outbox::{DeadLetter, OutboxConfig, OutboxStats, PendingWrite};
pub use source::{Fetched, GitHub, GitHubConfig, Loaded, RateLimit, Source};
pub use stats::{BackplaneStats, RedisStats, SourceStats, Stats, TIME_SAMPLE_EVERY, TierStats};

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
