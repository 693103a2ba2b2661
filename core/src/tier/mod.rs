//! The tiers: [`memory`] (L1, per process) and [`sqlite`] (L2, per host).
//!
//! Each tier is a concrete type that [`crate::Cache`] composes directly, so
//! the L1 hit path is monomorphic and inlined. The read path walks them top
//! to bottom and promotes a lower hit upwards.

pub(crate) mod memory;
pub(crate) mod sqlite;

pub use memory::{ENTRY_OVERHEAD as MEMORY_ENTRY_OVERHEAD, entry_size as memory_entry_size};
pub use sqlite::{
    CHECKPOINT_BELOW, DISK_RESERVE, FILE_CHECK_INTERVAL, Inspection, Integrity,
    ROW_OVERHEAD as SQLITE_ROW_OVERHEAD, SCHEMA_VERSION, WAL_SIZE_LIMIT, check,
};
