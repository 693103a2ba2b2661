//! The `outbox` section: the write-behind outbox's retries, batches and
//! timeouts (see [`crate::outbox`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::seconds;
use crate::error::{Error, ErrorKind, Result};

/// The outbox's settings (`outbox` in the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// Attempts of a write before it moves to the dead letters.
    pub max_attempts: u32,
    /// The pause after a write's first failed attempt; doubled per attempt.
    #[serde(with = "seconds")]
    pub retry_base: Duration,
    /// The longest pause between attempts.
    #[serde(with = "seconds")]
    pub retry_max: Duration,
    /// Writes delivered at once, concurrently (never two of one key).
    pub batch: u32,
    /// How long `flush()` waits for the outbox to empty.
    #[serde(with = "seconds")]
    pub flush_timeout: Duration,
    /// How long `close()` keeps delivering.
    #[serde(with = "seconds")]
    pub close_timeout: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
            batch: 32,
            flush_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(5),
        }
    }
}

impl OutboxConfig {
    /// Checks every value; errors are of kind [`ErrorKind::InvalidConfig`].
    pub fn validate(&self) -> Result<()> {
        let invalid = |m: &str| Err(Error::new(ErrorKind::InvalidConfig, m.to_owned()));
        if !(1..=1000).contains(&self.max_attempts) {
            return invalid("outbox.max_attempts must be between 1 and 1000");
        }
        if self.retry_base.is_zero() || self.retry_base > self.retry_max {
            return invalid("outbox.retry_base must be above 0 and at most outbox.retry_max");
        }
        if self.retry_max > Duration::from_secs(24 * 3600) {
            return invalid("outbox.retry_max is longer than 1 day");
        }
        if !(1..=1000).contains(&self.batch) {
            return invalid("outbox.batch must be between 1 and 1000");
        }
        if self.flush_timeout > Duration::from_secs(24 * 3600)
            || self.close_timeout > Duration::from_secs(24 * 3600)
        {
            return invalid("outbox.flush_timeout and outbox.close_timeout are at most 1 day");
        }
        Ok(())
    }
}
