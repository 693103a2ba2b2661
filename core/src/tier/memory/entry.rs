//! An L1 entry: its value, times and row, its size against the budget,
//! and the weigher that charges it.

use bytes::Bytes;
use quick_cache::Weighter;

use super::Key;
use super::reads::Reads;

/// Bytes charged per L1 entry on top of its key and value: the map slot, the
/// key header (keys up to 24 bytes are held inside it), the value handle
/// and the timestamps.
pub const ENTRY_OVERHEAD: u64 = 96;

/// One L1 entry. Cloning it bumps the value's refcount and copies seven
/// integers (and counts a read, for the copy a hit takes: see [`Reads`]).
#[derive(Clone, Debug)]
pub(crate) struct MemEntry {
    pub(crate) value: Bytes,
    pub(crate) created_ms: u64,
    pub(crate) expires_ms: u64,
    /// Set by [`MemoryTier::insert`](super::MemoryTier::insert): unique to this stored value.
    pub(crate) version: u64,
    /// The id of the L2 row the value was written to or read from (0: no
    /// L2), so that a hit can mark the row used without a lookup by key.
    pub(crate) row: i64,
    /// When a hit should refresh the value from the source in the
    /// background (`refresh_ahead`; `u64::MAX`: never).
    pub(crate) refresh_ms: u64,
    /// When the key was first written, as far as this L1 knows (a rewrite
    /// keeps it).
    pub(crate) first_ms: u64,
    /// Reads of this entry, and of the one it replaced in the same row,
    /// not yet handed to L2.
    pub(super) reads: Reads,
}

impl MemEntry {
    /// An entry to insert; its version is assigned on insertion.
    pub(crate) fn new(value: Bytes, created_ms: u64, expires_ms: u64) -> Self {
        Self {
            value,
            created_ms,
            expires_ms,
            version: 0,
            row: 0,
            refresh_ms: u64::MAX,
            first_ms: created_ms,
            reads: Reads::default(),
        }
    }

    /// The entry of a key first written at `first_ms`.
    pub(crate) fn first_written(mut self, first_ms: u64) -> Self {
        self.first_ms = first_ms;
        self
    }

    /// The entry, refreshed ahead from `refresh_ms` on.
    pub(crate) fn refresh_at(mut self, refresh_ms: u64) -> Self {
        self.refresh_ms = refresh_ms;
        self
    }

    /// The entry, as held in L2 row `row`.
    pub(crate) fn in_row(mut self, row: i64) -> Self {
        self.row = row;
        self
    }
}

/// Bytes an entry of `key` and a value of `value_len` bytes is charged in L1.
#[inline]
pub fn entry_size(key: &str, value_len: usize) -> u64 {
    key.len() as u64 + value_len as u64 + ENTRY_OVERHEAD
}

#[derive(Clone, Copy)]
pub(super) struct ByteWeighter;

impl Weighter<Key, MemEntry> for ByteWeighter {
    #[inline]
    fn weight(&self, key: &Key, val: &MemEntry) -> u64 {
        entry_size(key, val.value.len())
    }
}
