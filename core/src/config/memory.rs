//! The `memory` section: the L1 memory tier.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::seconds;

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
    /// Fixes the seed of L1's key hash (Rust only: not part of the JSON
    /// schema). By default each cache draws a random seed. The seed decides
    /// which keys share a shard of L1, and so which are evicted: a fixed one
    /// makes evictions the same in every run and lets a benchmark compare
    /// L1's policy with quick_cache's under the same hash, but keys an
    /// adversary chooses could then be made to crowd one shard.
    #[serde(skip)]
    pub hash_seed: Option<u64>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: 50 * 1024 * 1024,
            ttl: Duration::from_secs(3600),
            hash_seed: None,
        }
    }
}
