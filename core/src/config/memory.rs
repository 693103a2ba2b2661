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
