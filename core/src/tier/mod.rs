//! The tiers: [`memory`] (L1, per process), [`sqlite`] (L2, per host) and,
//! with the `redis` Cargo feature, `redis` (shared by many machines).
//!
//! Each tier is a concrete type that [`crate::Cache`] composes directly, so
//! the L1 hit path is monomorphic and inlined. The read path walks them top
//! to bottom and promotes a lower hit upwards.

pub(crate) mod envelope;
pub(crate) mod memory;
mod progress;
#[cfg(feature = "redis")]
pub(crate) mod redis;
pub(crate) mod sqlite;
#[cfg(not(feature = "redis"))]
pub(crate) mod without_redis;

#[cfg(feature = "redis")]
pub use self::redis::{CLEAR_LIMIT as REDIS_CLEAR_LIMIT, breaker_config as redis_breaker_config};
#[cfg(not(feature = "redis"))]
pub(crate) use without_redis as redis;

pub use memory::{ENTRY_OVERHEAD as MEMORY_ENTRY_OVERHEAD, entry_size as memory_entry_size};
pub(crate) use progress::Progress;
pub use sqlite::{
    BUSY_TIMEOUT, CHECKPOINT_BELOW, CHECKPOINT_PAGES, CHECKPOINT_PAGES_INLINE, DISK_RESERVE,
    FILE_CHECK_INTERVAL, Inspection, Integrity, JOURNAL_BYTES, ROW_OVERHEAD as SQLITE_ROW_OVERHEAD,
    SCHEMA_VERSION, WAL_SIZE_LIMIT, check,
};
