//! The `strategy` key: how writes reach the source, and whether a miss
//! loads from it.

use serde::{Deserialize, Serialize};

#[cfg(doc)]
use crate::error::ErrorKind;

/// How writes reach the source, and whether a miss loads from it.
///
/// | strategy | `set` writes | a miss loads from the configured source |
/// |---|---|---|
/// | read-through (default) | the tiers | yes |
/// | cache-aside | the tiers | no: the caller loads (`get_or_load`) |
/// | write-through | the source first, then the tiers | yes |
/// | write-behind | L1 and the process's journal at once; L2 and the outbox when the journal drains (within milliseconds); the source later | yes |
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
    /// Writes go to L1 and the process's journal, which survives a crash
    /// of the process, then to L2 and the durable outbox, and to the
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
