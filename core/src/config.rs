//! Configuration: one serde schema (JSON) for every host, with documented
//! defaults, validation, and a builder.
//!
//! Every key is optional; an unknown key is an error, so a typo is never
//! silently ignored. Durations are seconds (fractions allowed) in JSON and
//! [`Duration`] in Rust.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `namespace` | `"default"` | names the default cache file; `[A-Za-z0-9._-]`, 1–64 chars |
//! | `memory.enabled` | `true` | keep an L1 in this process |
//! | `memory.max_bytes` | 52428800 (50 MiB) | L1 budget: key + value + ~96 bytes per entry |
//! | `memory.ttl` | 3600 (1 h) | longest time an entry stays in L1 |
//! | `sqlite.enabled` | `true` | keep an L2 in a SQLite file shared by every process |
//! | `sqlite.path` | `$TIERSTACK_DB_PATH`, else `<cache dir>/tierstack/<namespace>.db` | the file (a path: `:memory:` and `file:` URIs are refused) |
//! | `sqlite.max_bytes` | 104857600 (100 MiB) | L2 budget: key + value + ~64 bytes per row |
//! | `sqlite.ttl` | 86400 (24 h) | default time to live in L2 |
//! | `sqlite.coherence_interval` | 0.05 (50 ms) | how often, at most, L1 checks the file for other processes' changes (0: on every access) |
//! | `sqlite.on_corrupt` | `"rebuild"` | a damaged tierstack file: `"rebuild"` sets it aside as `<name>.corrupt-<unix time>` and starts a fresh one; `"fail"` reports `corrupt` and touches nothing |
//! | `fail_safe.max_stale` | 86400 (24 h) | how long an expired L2 row is kept to be served stale |
//! | `fail_safe.soft_timeout` | 1.0 | a load slower than this serves the stale copy, if there is one, and finishes in the background (0: serve it as soon as the load is started) |
//! | `fail_safe.hard_timeout` | 30 | a fetch from the source slower than this is abandoned and counts as a failure of the source; waiting for another process's fetch does not count against it (more than 0, at least `soft_timeout`) |
//! | `circuit_breaker.*` | see [`CircuitBreakerConfig`] | when the source is cut off |
//! | `negative_ttl` | 60 | how long a source's "not found" is remembered (0: not at all) |
//! | `refresh_ahead` | 0.8 | a hit past this share of its TTL is refreshed from the source in the background (0 or 1: never) |
//! | `github.*` | absent | GitHub as the source of truth; see [`GitHubConfig`] |
//! | `redis.*` | absent | a Redis shared by many machines, between the L2 file and the source; see [`RedisConfig`] (needs the `redis` Cargo feature) |
//! | `test_clock` | false | test only: read time from the process's test clock, which moves only by [`crate::advance_test_clock`] |
//! | `ttl_jitter` | 0.1 | a loaded value's TTL is shortened by a random share up to this, so that values loaded together do not expire together (0: exact TTLs); in `[0, 1)` |
//!
//! Durations in a config are at most 100 years ([`MAX_TTL`]); the TTLs are
//! greater than 0. A negative, non-numeric or out-of-range duration is an
//! [`ErrorKind::InvalidConfig`] error.
//!
//! TTLs given per write by a host, in seconds, follow one rule in every host
//! (see [`ttl_from_seconds`]): absent or `0` takes the tier default; a
//! negative, NaN, infinite or over-100-years TTL is an
//! [`ErrorKind::InvalidArgument`] error.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::builder::CacheBuilder;
pub use self::fail_safe::FailSafeConfig;
pub use self::memory::MemoryConfig;
pub use self::outbox::OutboxConfig;
pub use self::redis::{MAX_REDIS_TIMEOUT, RedisConfig, RedisUrl};
use self::sqlite::check_sqlite_path;
pub use self::sqlite::{OnCorrupt, SqliteConfig};
pub use self::strategy::Strategy;
pub use self::ttl::ttl_from_seconds;
pub use crate::breaker::CircuitBreakerConfig;
use crate::error::{Error, ErrorKind, Result};
pub use crate::source::github::{GitHubConfig, Routes, Secret};

mod builder;
mod fail_safe;
mod memory;
mod outbox;
mod redis;
pub(crate) mod seconds;
mod sqlite;
mod strategy;
mod ttl;

/// The environment variable that supplies `sqlite.path` when the config has none.
pub const DB_PATH_ENV: &str = "TIERSTACK_DB_PATH";

/// The longest `sqlite.coherence_interval` accepted: 1 hour.
pub const MAX_COHERENCE_INTERVAL: Duration = Duration::from_secs(3600);

/// The longest TTL accepted: 100 years.
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The whole configuration of a cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Names the default cache file.
    pub namespace: String,
    /// The in-process L1.
    pub memory: MemoryConfig,
    /// The per-host L2 file.
    pub sqlite: SqliteConfig,
    /// Serving expired copies, and how long a load may take.
    pub fail_safe: FailSafeConfig,
    /// When the source is cut off.
    pub circuit_breaker: CircuitBreakerConfig,
    /// How long a source's "not found" is remembered; zero: not at all.
    #[serde(with = "seconds")]
    pub negative_ttl: Duration,
    /// A hit past this share of its TTL is refreshed from the source in the
    /// background; 0 or 1: never.
    pub refresh_ahead: f64,
    /// A loaded value's TTL is shortened by a random share up to this.
    pub ttl_jitter: f64,
    /// GitHub as the source of truth; `None` (the default): not used.
    pub github: Option<GitHubConfig>,
    /// How writes reach the source, and whether reads load from it.
    pub strategy: Strategy,
    /// The write-behind outbox.
    pub outbox: OutboxConfig,
    /// A Redis shared by many machines; `None` (the default): not used.
    /// Opening a cache with an enabled section fails with
    /// [`ErrorKind::InvalidConfig`] in a build without the `redis` feature.
    pub redis: Option<RedisConfig>,
    /// Test only. `true`: the cache reads time from this process's test
    /// clock, which stands still until [`crate::advance_test_clock`] moves
    /// it (the C `tierstack_advance_test_clock`, Python
    /// `tierstack.advance_test_clock`, Node `advanceTestClock`), so a test
    /// checks TTLs, stale windows, negative TTLs and breaker timeouts
    /// without sleeping. Every cache of the process opened with it shares
    /// that one clock, across close and reopen. Default `false`: the
    /// system clock. A Rust [`CacheBuilder::clock`] takes precedence.
    /// Never set it in production: time would stop for expiry.
    pub test_clock: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespace: "default".to_owned(),
            memory: MemoryConfig::default(),
            sqlite: SqliteConfig::default(),
            fail_safe: FailSafeConfig::default(),
            circuit_breaker: CircuitBreakerConfig::default(),
            negative_ttl: Duration::from_secs(60),
            refresh_ahead: 0.8,
            ttl_jitter: 0.1,
            github: None,
            strategy: Strategy::ReadThrough,
            outbox: OutboxConfig::default(),
            redis: None,
            test_clock: false,
        }
    }
}

impl Config {
    /// Parses a JSON config; errors are of kind [`ErrorKind::InvalidConfig`]
    /// and name the offending key.
    pub fn from_json(json: &str) -> Result<Self> {
        // The text of a misplaced value is not repeated: it may be a secret
        // (a token, a Redis URL with its password).
        let invalid = |e: serde_json::Error| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("config: {}", without_strings(&e.to_string())),
            )
        };
        let value: serde_json::Value = serde_json::from_str(json).map_err(invalid)?;
        // serde would also build a struct from a JSON array of its fields.
        let sections = value.as_object().ok_or_else(|| {
            Error::new(ErrorKind::InvalidConfig, "config: expected a JSON object")
        })?;
        for (name, section) in sections {
            if name == "redis" && section.as_object().is_some_and(|s| !s.contains_key("url")) {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    "config: redis.url is required (missing field `url`)",
                ));
            }
            if section.is_array() {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!("config: {name} must be a JSON object"),
                ));
            }
        }
        // Parsed from the text again, so that errors give a line and column.
        let config: Config = serde_json::from_str(json).map_err(invalid)?;
        config.validate()?;
        Ok(config)
    }

    /// The config as JSON (every key, defaults included).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a config always serialises")
    }

    /// Checks every value; errors are of kind [`ErrorKind::InvalidConfig`].
    pub fn validate(&self) -> Result<()> {
        let ns = &self.namespace;
        if ns.is_empty()
            || ns.len() > 64
            || !ns
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            || ns.starts_with('.')
        {
            return Err(invalid(format!(
                "namespace {ns:?} must be 1-64 characters of A-Z a-z 0-9 . _ - and not start with '.'"
            )));
        }
        if !self.memory.enabled && !self.sqlite.enabled {
            return Err(invalid("no tier is enabled: enable memory, sqlite or both"));
        }
        check_ttl("memory.ttl", self.memory.ttl)?;
        check_ttl("sqlite.ttl", self.sqlite.ttl)?;
        if self.sqlite.coherence_interval > MAX_COHERENCE_INTERVAL {
            return Err(invalid("sqlite.coherence_interval is longer than 1 hour"));
        }
        if self.fail_safe.max_stale > MAX_TTL {
            return Err(invalid("fail_safe.max_stale is longer than 100 years"));
        }
        check_ttl("fail_safe.hard_timeout", self.fail_safe.hard_timeout)?;
        if self.fail_safe.soft_timeout > self.fail_safe.hard_timeout {
            return Err(invalid(
                "fail_safe.soft_timeout is longer than fail_safe.hard_timeout",
            ));
        }
        if self.negative_ttl > MAX_TTL {
            return Err(invalid("negative_ttl is longer than 100 years"));
        }
        if !(0.0..=1.0).contains(&self.refresh_ahead) {
            return Err(invalid(format!(
                "refresh_ahead {} must be between 0 and 1 (0 or 1: no refresh ahead)",
                self.refresh_ahead
            )));
        }
        if !(0.0..1.0).contains(&self.ttl_jitter) {
            return Err(invalid(format!(
                "ttl_jitter {} must be at least 0 and less than 1",
                self.ttl_jitter
            )));
        }
        self.circuit_breaker.validate()?;
        if self.memory.enabled && self.memory.max_bytes == 0 {
            return Err(invalid("memory.max_bytes must be greater than 0"));
        }
        if self.sqlite.enabled && self.sqlite.max_bytes == 0 {
            return Err(invalid("sqlite.max_bytes must be greater than 0"));
        }
        if let Some(path) = &self.sqlite.path {
            check_sqlite_path("sqlite.path", path)?;
        }
        if let Some(github) = &self.github {
            github.validate()?;
        }
        self.outbox.validate()?;
        if let Some(redis) = &self.redis {
            redis.validate()?;
        }
        Ok(())
    }

    /// The L2 file: `sqlite.path` if set, else `$TIERSTACK_DB_PATH` if set and
    /// non-empty, else `<user cache dir>/tierstack/<namespace>.db`.
    pub fn resolved_sqlite_path(&self) -> Result<PathBuf> {
        if let Some(path) = &self.sqlite.path {
            return Ok(path.clone());
        }
        if let Some(path) = std::env::var_os(DB_PATH_ENV).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            check_sqlite_path(DB_PATH_ENV, &path)?;
            return Ok(path);
        }
        let dir = dirs::cache_dir().ok_or_else(|| {
            invalid(format!(
                "no user cache directory is known: set sqlite.path or {DB_PATH_ENV}"
            ))
        })?;
        Ok(dir.join("tierstack").join(format!("{}.db", self.namespace)))
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidConfig, message)
}

fn check_ttl(name: &str, ttl: Duration) -> Result<()> {
    if ttl.is_zero() {
        return Err(invalid(format!("{name} must be greater than 0 seconds")));
    }
    if ttl > MAX_TTL {
        return Err(invalid(format!("{name} is longer than 100 years")));
    }
    Ok(())
}

/// `message` (serde's) with every string value it quotes (`string "…"`)
/// left out.
fn without_strings(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("string \"") {
        out.push_str(&rest[..at]);
        out.push_str("a string");
        let quoted = &rest[at + "string \"".len()..];
        // The closing quote: the first one not escaped.
        let mut escaped = false;
        let end = quoted.char_indices().find_map(|(i, c)| match (c, escaped) {
            ('\\', false) => {
                escaped = true;
                None
            }
            ('"', false) => Some(i + 1),
            _ => {
                escaped = false;
                None
            }
        });
        rest = end.map_or("", |end| &quoted[end..]);
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misplaced_value_is_not_repeated_in_the_error() {
        for (json, secret) in [
            (r#"{"redis": "redis://:hunter2@127.0.0.1:1"}"#, "hunter2"),
            (
                r#"{"redis": {"url": "redis://127.0.0.1:1", "ttl": "redis://:hunter2@h"}}"#,
                "hunter2",
            ),
            (r#"{"github": {"timeout": "ghp_s3cr3t\"x"}}"#, "s3cr3t"),
        ] {
            let err = Config::from_json(json).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig);
            assert!(!err.message().contains(secret), "{}", err.message());
        }
        let err = Config::from_json(r#"{"redis": "redis://:hunter2@h"}"#).unwrap_err();
        assert_eq!(
            err.message(),
            "config: invalid type: a string, expected struct RedisConfig at line 1 column 30"
        );
    }

    #[test]
    fn empty_json_gives_documented_defaults() {
        let config = Config::from_json("{}").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.memory.max_bytes, 52_428_800);
        assert_eq!(config.memory.ttl, Duration::from_secs(3600));
        assert_eq!(config.sqlite.max_bytes, 104_857_600);
        assert_eq!(config.sqlite.ttl, Duration::from_secs(86_400));
        assert_eq!(config.fail_safe.max_stale, Duration::from_secs(86_400));
        assert_eq!(config.sqlite.on_corrupt, OnCorrupt::Rebuild);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let cases = [
            (r#"{"memroy": {}}"#, "unknown field `memroy`"),
            (r#"{"memory": {"max_size": 1}}"#, "unknown field `max_size`"),
            (r#"{"memory": {"ttl": -1}}"#, "not a number of seconds"),
            (
                r#"{"memory": {"ttl": 0}}"#,
                "memory.ttl must be greater than 0",
            ),
            (
                r#"{"sqlite": {"max_bytes": 0}}"#,
                "sqlite.max_bytes must be greater than 0",
            ),
            (r#"{"namespace": "../etc"}"#, "namespace"),
            (
                r#"{"memory": {"enabled": false}, "sqlite": {"enabled": false}}"#,
                "no tier",
            ),
            (r#"{"memory": {"max_bytes": "big"}}"#, "invalid type"),
            ("{", "EOF"),
            ("[]", "expected a JSON object"),
            ("null", "expected a JSON object"),
            (r#"{"memory": []}"#, "memory must be a JSON object"),
        ];
        for (json, needle) in cases {
            let err = Config::from_json(json).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{json}");
            assert!(err.message().contains(needle), "{json}: {}", err.message());
        }
    }

    #[test]
    fn durations_past_100_years_are_invalid_configs_naming_the_key() {
        let cases = [
            (
                r#"{"memory": {"ttl": 1e20}}"#,
                "memory.ttl is longer than 100 years",
            ),
            (
                r#"{"sqlite": {"ttl": 1e300}}"#,
                "sqlite.ttl is longer than 100 years",
            ),
            (
                r#"{"sqlite": {"ttl": 3153600001}}"#,
                "sqlite.ttl is longer than 100 years",
            ),
            (
                r#"{"fail_safe": {"max_stale": 1e20}}"#,
                "fail_safe.max_stale is longer than 100 years",
            ),
        ];
        for (json, needle) in cases {
            let err = Config::from_json(json).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{json}");
            assert!(err.message().contains(needle), "{json}: {}", err.message());
        }
        let longest = Config::from_json(r#"{"sqlite": {"ttl": 3153600000}}"#).unwrap();
        assert_eq!(longest.sqlite.ttl, MAX_TTL);
    }
}
