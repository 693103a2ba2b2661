//! The `fail_safe` section: serving expired copies, and how long a load
//! may take.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::seconds;

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

impl Default for FailSafeConfig {
    fn default() -> Self {
        Self {
            max_stale: Duration::from_secs(24 * 3600),
            soft_timeout: Duration::from_secs(1),
            hard_timeout: Duration::from_secs(30),
        }
    }
}
