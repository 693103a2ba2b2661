//! The `circuit_breaker` section of the config and its validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::window::WINDOW_CAPACITY;
use crate::config::MAX_TTL;
use crate::error::{Error, ErrorKind, Result};

/// The `circuit_breaker` section of the config.
///
/// | key | default | meaning |
/// |---|---|---|
/// | `threshold` | 5 | consecutive failures that open it |
/// | `failure_rate` | 0.5 | share of failures in the window that opens it, in (0, 1] |
/// | `minimum_calls` | 10 | calls in the window before the rate counts, 1–4096 |
/// | `window` | 60 | seconds of calls the failure rate is taken over |
/// | `slow_call` | 10 | seconds from which a call counts as a failure |
/// | `timeout` | 60 | seconds of the first open period |
/// | `max_timeout` | 600 | seconds the open period grows to at most (before jitter) |
/// | `half_open_probes` | 1 | calls admitted at once while half-open |
/// | `success_threshold` | 2 | successful probes that close it |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open the breaker (at least 1).
    pub threshold: u32,
    /// The share of failed calls in the window that opens the breaker,
    /// greater than 0 and at most 1.
    pub failure_rate: f64,
    /// Calls recorded in the window before the failure rate counts
    /// (1 to 4096).
    pub minimum_calls: u32,
    /// The sliding window the failure rate is taken over.
    #[serde(with = "crate::config::seconds")]
    pub window: Duration,
    /// A call that takes at least this long counts as a failure.
    #[serde(with = "crate::config::seconds")]
    pub slow_call: Duration,
    /// The first open period.
    #[serde(with = "crate::config::seconds")]
    pub timeout: Duration,
    /// The longest open period (jitter comes on top); at least `timeout`.
    #[serde(with = "crate::config::seconds")]
    pub max_timeout: Duration,
    /// Calls admitted at once while half-open (at least 1).
    pub half_open_probes: u32,
    /// Successful probes that close the breaker (at least 1).
    pub success_threshold: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            threshold: 5,
            failure_rate: 0.5,
            minimum_calls: 10,
            window: Duration::from_secs(60),
            slow_call: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            max_timeout: Duration::from_secs(600),
            half_open_probes: 1,
            success_threshold: 2,
        }
    }
}

impl CircuitBreakerConfig {
    /// Checks every value; errors are of kind [`ErrorKind::InvalidConfig`]
    /// and name the key as `circuit_breaker.<name>`.
    pub fn validate(&self) -> Result<()> {
        at_least_one("threshold", self.threshold)?;
        let rate = self.failure_rate;
        // Written so that NaN fails too.
        if !(rate > 0.0 && rate <= 1.0) {
            return Err(invalid(format!(
                "circuit_breaker.failure_rate must be greater than 0 and at most 1, not {rate}"
            )));
        }
        at_least_one("minimum_calls", self.minimum_calls)?;
        if self.minimum_calls as usize > WINDOW_CAPACITY {
            return Err(invalid(format!(
                "circuit_breaker.minimum_calls must be at most {WINDOW_CAPACITY} \
                 (the window keeps the latest {WINDOW_CAPACITY} calls)"
            )));
        }
        check_duration("window", self.window)?;
        check_duration("slow_call", self.slow_call)?;
        check_duration("timeout", self.timeout)?;
        check_duration("max_timeout", self.max_timeout)?;
        if self.max_timeout < self.timeout {
            return Err(invalid(
                "circuit_breaker.max_timeout must be at least circuit_breaker.timeout",
            ));
        }
        at_least_one("half_open_probes", self.half_open_probes)?;
        at_least_one("success_threshold", self.success_threshold)?;
        Ok(())
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidConfig, message)
}

fn at_least_one(name: &str, value: u32) -> Result<()> {
    if value == 0 {
        return Err(invalid(format!(
            "circuit_breaker.{name} must be at least 1"
        )));
    }
    Ok(())
}

fn check_duration(name: &str, d: Duration) -> Result<()> {
    if d.is_zero() {
        return Err(invalid(format!(
            "circuit_breaker.{name} must be greater than 0 seconds"
        )));
    }
    if d > MAX_TTL {
        return Err(invalid(format!(
            "circuit_breaker.{name} is longer than 100 years"
        )));
    }
    Ok(())
}
