//! The `redis` config section: a Redis shared by many machines, as a tier
//! between the L2 file and the source (see `tier::redis`, built with the
//! `redis` Cargo feature).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `redis.url` | required | `redis://[user][:password@]host[:port][/db]` (or `redis+unix://`/`unix://`); a password in it is a secret: never in logs, errors, stats, `Debug` or [`super::Config::to_json`] |
//! | `redis.prefix` | `"tierstack:<namespace>:"` | put before every key in Redis; 1–255 bytes without control characters |
//! | `redis.timeout` | 0.25 | seconds: a Redis call slower than this counts as a failure and the read goes on below (more than 0, at most 60) |
//! | `redis.ttl` | absent: the entry's own | the longest time a key lives in Redis; a key never outlives its entry's stale-until time |
//! | `redis.backplane` | `true` | carry every change to the other machines' L1 and L2 through a Redis Stream (see `backplane`) |
//! | `redis.backplane_max_len` | 100000 | about how many changes the stream keeps (`XADD MAXLEN ~`); a node away for longer than that many changes clears its local tiers on return (100 to 100,000,000) |
//! | `redis.enabled` | `true` | use the section (false: as if absent) |

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{MAX_TTL, check_ttl, invalid};
use crate::error::Result;

/// The longest `redis.timeout` accepted: 60 seconds.
pub const MAX_REDIS_TIMEOUT: Duration = Duration::from_secs(60);

/// The `redis` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Where Redis is; the password in it is kept secret.
    pub url: RedisUrl,
    /// Put before every key; `None`: `tierstack:<namespace>:`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// A call slower than this counts as a failure (default 0.25 s).
    #[serde(default = "default_timeout", with = "super::seconds")]
    pub timeout: Duration,
    /// The longest time a key lives in Redis; `None`: the entry's own
    /// stale-until time.
    #[serde(default, with = "optional_seconds")]
    pub ttl: Option<Duration>,
    /// Carry changes to the other machines through a Redis Stream.
    #[serde(default = "yes")]
    pub backplane: bool,
    /// About how many changes the stream keeps.
    #[serde(default = "default_backplane_max_len")]
    pub backplane_max_len: u64,
    /// Use the section.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// The fewest changes `redis.backplane_max_len` may keep.
pub const MIN_BACKPLANE_MAX_LEN: u64 = 100;
/// The most changes `redis.backplane_max_len` may keep.
pub const MAX_BACKPLANE_MAX_LEN: u64 = 100_000_000;

fn default_backplane_max_len() -> u64 {
    100_000
}

fn default_timeout() -> Duration {
    Duration::from_millis(250)
}

fn yes() -> bool {
    true
}

impl RedisConfig {
    /// A section for `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: RedisUrl::new(url),
            prefix: None,
            timeout: default_timeout(),
            ttl: None,
            backplane: true,
            backplane_max_len: default_backplane_max_len(),
            enabled: true,
        }
    }

    /// The key prefix for a cache of `namespace`.
    pub fn prefix_for(&self, namespace: &str) -> String {
        self.prefix
            .clone()
            .unwrap_or_else(|| format!("tierstack:{namespace}:"))
    }

    /// Checks every value; errors are [`crate::ErrorKind::InvalidConfig`]
    /// and name the key as `redis.<name>`.
    pub fn validate(&self) -> Result<()> {
        self.url.validate()?;
        if let Some(prefix) = &self.prefix
            && (prefix.is_empty() || prefix.len() > 255 || prefix.chars().any(char::is_control))
        {
            return Err(invalid(
                "redis.prefix must be 1-255 bytes without control characters",
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid("redis.timeout must be greater than 0 seconds"));
        }
        if self.timeout > MAX_REDIS_TIMEOUT {
            return Err(invalid("redis.timeout is longer than 60 seconds"));
        }
        if let Some(ttl) = self.ttl {
            check_ttl("redis.ttl", ttl)?;
        }
        if !(MIN_BACKPLANE_MAX_LEN..=MAX_BACKPLANE_MAX_LEN).contains(&self.backplane_max_len) {
            return Err(invalid(format!(
                "redis.backplane_max_len must be between {MIN_BACKPLANE_MAX_LEN} and {MAX_BACKPLANE_MAX_LEN}, got {}",
                self.backplane_max_len
            )));
        }
        debug_assert!(MAX_TTL > MAX_REDIS_TIMEOUT);
        Ok(())
    }
}

/// A Redis URL whose password is secret: `Debug`, `Display` and
/// serialisation show it as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL itself, for the one place that connects.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The password in the URL, if any (to scrub it from messages).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn password(&self) -> Option<&str> {
        let (start, end) = self.password_span()?;
        Some(&self.0[start..end])
    }

    /// The URL with its password as `***`.
    pub fn redacted(&self) -> String {
        match self.password_span() {
            Some((start, end)) => format!("{}***{}", &self.0[..start], &self.0[end..]),
            None => self.0.clone(),
        }
    }

    /// Byte range of the password: between the first `:` of the user
    /// info (what precedes the authority's last `@`) and that `@`.
    fn password_span(&self) -> Option<(usize, usize)> {
        let after_scheme = self.0.find("://")? + 3;
        let rest = &self.0[after_scheme..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let at = rest[..authority_end].rfind('@')?;
        let colon = rest[..at].find(':')?;
        let (start, end) = (after_scheme + colon + 1, after_scheme + at);
        (start < end).then_some((start, end))
    }

    fn validate(&self) -> Result<()> {
        let scheme = self.0.split_once("://").map(|(s, _)| s);
        match scheme {
            Some("redis" | "rediss" | "redis+unix" | "unix") => {}
            _ => {
                return Err(invalid(format!(
                    "redis.url {:?} must start with redis://, rediss://, redis+unix:// or unix://",
                    self.redacted()
                )));
            }
        }
        if self.0.chars().any(char::is_control) {
            return Err(invalid("redis.url contains control characters"));
        }
        Ok(())
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({:?})", self.redacted())
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for RedisUrl {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for RedisUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(RedisUrl)
    }
}

/// An optional duration as seconds; absent or `null`: `None`.
mod optional_seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::super::seconds::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Seconds(#[serde(with = "super::super::seconds")] Duration);
        Ok(Option::<Seconds>::deserialize(d)?.map(|s| s.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::error::ErrorKind;

    #[test]
    fn defaults_are_documented_ones() {
        let config = Config::from_json(r#"{"redis": {"url": "redis://127.0.0.1:6379/0"}}"#)
            .unwrap()
            .redis
            .unwrap();
        assert_eq!(config, RedisConfig::new("redis://127.0.0.1:6379/0"));
        assert_eq!(config.timeout, Duration::from_millis(250));
        assert_eq!(config.ttl, None);
        assert!(config.enabled);
        assert_eq!(config.prefix_for("shadcn"), "tierstack:shadcn:");
    }

    #[test]
    fn the_password_never_shows() {
        let url = RedisUrl::new("redis://user:hunter2@example.com:6380/1");
        assert_eq!(url.password(), Some("hunter2"));
        assert_eq!(url.redacted(), "redis://user:***@example.com:6380/1");
        assert_eq!(
            format!("{url:?}"),
            r#"RedisUrl("redis://user:***@example.com:6380/1")"#
        );
        assert_eq!(
            RedisUrl::new("redis://:p@ss@h/0").redacted(),
            "redis://:***@h/0"
        );
        assert_eq!(RedisUrl::new("redis://h:6379").password(), None);
        let config =
            Config::from_json(r#"{"redis": {"url": "redis://:hunter2@h", "ttl": 5}}"#).unwrap();
        let json = config.to_json();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(
            Config::from_json(&json).unwrap().redis.unwrap().ttl,
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn bad_sections_name_the_key() {
        let cases = [
            (r#"{"redis": {}}"#, "missing field `url`"),
            (
                r#"{"redis": {"url": "redis://h", "tiemout": 1}}"#,
                "unknown field `tiemout`",
            ),
            (
                r#"{"redis": {"url": "http://:hunter2@h"}}"#,
                "redis.url \"http://:***@h\" must start with redis://",
            ),
            (
                r#"{"redis": {"url": "redis://h", "timeout": 0}}"#,
                "redis.timeout must be greater than 0",
            ),
            (
                r#"{"redis": {"url": "redis://h", "timeout": 61}}"#,
                "redis.timeout is longer than 60 seconds",
            ),
            (
                r#"{"redis": {"url": "redis://h", "ttl": 0}}"#,
                "redis.ttl must be greater than 0",
            ),
            (
                r#"{"redis": {"url": "redis://h", "prefix": ""}}"#,
                "redis.prefix must be 1-255 bytes",
            ),
            (
                r#"{"redis": {"url": "redis://h", "timeout": -1}}"#,
                "not a number of seconds",
            ),
        ];
        for (json, needle) in cases {
            let err = Config::from_json(json).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{json}");
            assert!(err.message().contains(needle), "{json}: {}", err.message());
            assert!(
                !err.message().contains("hunter2"),
                "{json}: {}",
                err.message()
            );
        }
    }
}
