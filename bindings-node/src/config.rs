//! The config as Node spells it: the core's schema in camelCase, keeping the
//! names of the storage design it replaces (`memory.maxSize`,
//! `sqlite.maxSize`). Sizes are bytes and durations seconds (fractions
//! allowed), as in every host.
//!
//! | Node | core (JSON) |
//! |---|---|
//! | `namespace` | `namespace` |
//! | `memory.enabled`, `memory.maxSize`, `memory.ttl` | `memory.enabled`, `memory.max_bytes`, `memory.ttl` |
//! | `sqlite.enabled`, `sqlite.path`, `sqlite.maxSize`, `sqlite.ttl`, `sqlite.coherenceInterval`, `sqlite.onCorrupt` | `sqlite.enabled`, `sqlite.path`, `sqlite.max_bytes`, `sqlite.ttl`, `sqlite.coherence_interval`, `sqlite.on_corrupt` |
//! | `failSafe.maxStale` | `fail_safe.max_stale` |
//!
//! An unknown key is an `invalid_config` error, as in the core; so is
//! `circuitBreaker` (and every other key of sections the engine does not
//! have yet), until the engine has a source for a breaker to guard.

use napi::{Env, ValueType};
use napi_derive::napi;
use serde_json::{Map, Value as Json};
use tierstack::{Config, Error, ErrorKind};

use crate::js::{self, Value};
use crate::value::Builtins;

/// The options of `new HybridStorage(config)`; every key is optional.
#[napi(object)]
pub struct HybridStorageConfig {
    /// Names the default cache file: 1–64 of `A-Z a-z 0-9 . _ -` (default `"default"`).
    pub namespace: Option<String>,
    /// The in-process memory tier (L1).
    pub memory: Option<MemoryOptions>,
    /// The SQLite file shared by every process on the host (L2).
    pub sqlite: Option<SqliteOptions>,
    /// Serving expired copies.
    pub fail_safe: Option<FailSafeOptions>,
}

/// The memory tier (L1).
#[napi(object)]
pub struct MemoryOptions {
    /// Keep an L1 in this process (default `true`).
    pub enabled: Option<bool>,
    /// Budget in bytes: key + value + 96 bytes per entry (default 50 MiB).
    pub max_size: Option<f64>,
    /// Longest time in seconds an entry stays in L1 (default 3600).
    pub ttl: Option<f64>,
}

/// The SQLite tier (L2).
#[napi(object)]
pub struct SqliteOptions {
    /// Keep the L2 file (default `true`).
    pub enabled: Option<bool>,
    /// The file (default `$TIERSTACK_DB_PATH`, else `<user cache dir>/tierstack/<namespace>.db`).
    pub path: Option<String>,
    /// Budget in bytes: key + value + 64 bytes per row (default 100 MiB).
    pub max_size: Option<f64>,
    /// Default time to live in seconds (default 86400).
    pub ttl: Option<f64>,
    /// How often, at most, in seconds, L1 checks the file for changes made
    /// by other processes, on its next access (default 0.05; 0: on every
    /// access; at most 3600). No value another process replaced longer ago
    /// than this is served from L1.
    pub coherence_interval: Option<f64>,
    /// A damaged cache file: `'rebuild'` (default) sets it aside as
    /// `<name>.corrupt-<unix time>` and starts a fresh one; `'fail'` rejects
    /// with `code === 'corrupt'` and touches nothing.
    #[napi(ts_type = "'rebuild' | 'fail'")]
    pub on_corrupt: Option<String>,
}

/// Serving expired copies.
#[napi(object)]
pub struct FailSafeOptions {
    /// How long in seconds an expired L2 row is kept to be served stale (default 86400).
    pub max_stale: Option<f64>,
}

/// A section of the config: its Node name, its core name, and its keys
/// (`None` for a plain value).
type Section = (
    &'static str,
    &'static str,
    Option<&'static [(&'static str, &'static str)]>,
);

const SECTIONS: &[Section] = &[
    ("namespace", "namespace", None),
    (
        "memory",
        "memory",
        Some(&[
            ("enabled", "enabled"),
            ("maxSize", "max_bytes"),
            ("ttl", "ttl"),
        ]),
    ),
    (
        "sqlite",
        "sqlite",
        Some(&[
            ("enabled", "enabled"),
            ("path", "path"),
            ("maxSize", "max_bytes"),
            ("ttl", "ttl"),
            ("coherenceInterval", "coherence_interval"),
            ("onCorrupt", "on_corrupt"),
        ]),
    ),
    ("failSafe", "fail_safe", Some(&[("maxStale", "max_stale")])),
];

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidConfig, message)
}

/// The core config for a Node config object (`undefined` or `null`: the defaults).
pub(crate) fn from_js(
    env: &Env,
    builtins: &Builtins,
    value: Option<Value>,
) -> Result<Config, Error> {
    let Some(value) = value.filter(|&v| !js::is_nullish(env, Some(v))) else {
        return Config::from_json("{}");
    };
    if js::type_of(env, value) != ValueType::Object || js::is_array(env, value) {
        return Err(invalid(format!(
            "config must be an object, got {}",
            js::type_name(env, value)
        )));
    }
    let json = builtins
        .stringify(env, value)
        .map_err(|e| invalid(format!("config: {}", e.message())))?;
    let json: Json = serde_json::from_str(&json).map_err(|e| invalid(format!("config: {e}")))?;
    Config::from_json(&to_core(json)?.to_string())
}

/// Renames the Node keys of a config to the core's, refusing unknown ones.
fn to_core(json: Json) -> Result<Json, Error> {
    let Json::Object(top) = json else {
        return Err(invalid("config must be an object"));
    };
    let mut out = Map::new();
    for (key, value) in top {
        let Some(&(_, core, keys)) = SECTIONS.iter().find(|s| s.0 == key) else {
            return Err(unknown(&key, SECTIONS.iter().map(|s| s.0)));
        };
        let value = match (keys, value) {
            (Some(keys), Json::Object(section)) => {
                let mut renamed = Map::new();
                for (name, v) in section {
                    let Some(&(_, core_name)) = keys.iter().find(|k| k.0 == name) else {
                        return Err(unknown(&format!("{key}.{name}"), keys.iter().map(|k| k.0)));
                    };
                    renamed.insert(core_name.to_owned(), v);
                }
                Json::Object(renamed)
            }
            // A section that is not an object is left for the core to refuse
            // with its own message.
            (_, value) => value,
        };
        out.insert(core.to_owned(), value);
    }
    Ok(Json::Object(out))
}

fn unknown<'a>(key: &str, expected: impl Iterator<Item = &'a str>) -> Error {
    let expected: Vec<&str> = expected.collect();
    invalid(format!(
        "config: unknown key `{key}`, expected one of: {}",
        expected.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_keys_map_onto_the_core_schema() {
        let json = serde_json::json!({
            "namespace": "ns",
            "memory": {"enabled": true, "maxSize": 1024, "ttl": 1.5},
            "sqlite": {"path": "/tmp/x.db", "maxSize": 4096, "ttl": 60, "coherenceInterval": 0.02, "onCorrupt": "fail"},
            "failSafe": {"maxStale": 10}
        });
        let config = Config::from_json(&to_core(json).unwrap().to_string()).unwrap();
        assert_eq!(config.namespace, "ns");
        assert_eq!(config.memory.max_bytes, 1024);
        assert_eq!(config.memory.ttl, std::time::Duration::from_millis(1500));
        assert_eq!(config.sqlite.max_bytes, 4096);
        assert_eq!(config.sqlite.on_corrupt, tierstack::OnCorrupt::Fail);
        assert_eq!(
            config.sqlite.coherence_interval,
            std::time::Duration::from_millis(20)
        );
        assert_eq!(
            config.sqlite.path.as_deref(),
            Some(std::path::Path::new("/tmp/x.db"))
        );
        assert_eq!(
            config.fail_safe.max_stale,
            std::time::Duration::from_secs(10)
        );
    }

    #[test]
    fn unknown_and_snake_case_keys_are_refused() {
        for (json, needle) in [
            (serde_json::json!({"memroy": {}}), "unknown key `memroy`"),
            (
                serde_json::json!({"memory": {"max_bytes": 1}}),
                "unknown key `memory.max_bytes`",
            ),
            (
                serde_json::json!({"circuitBreaker": {"threshold": 5}}),
                "unknown key `circuitBreaker`",
            ),
            (
                serde_json::json!({"sqlite": {"coherence_interval": 1}}),
                "unknown key `sqlite.coherence_interval`",
            ),
            (
                serde_json::json!({"fail_safe": {}}),
                "unknown key `fail_safe`",
            ),
        ] {
            let err = to_core(json).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig);
            assert!(err.message().contains(needle), "{}", err.message());
        }
    }
}
