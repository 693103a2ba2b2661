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
//! | `failSafe.maxStale`, `failSafe.softTimeout`, `failSafe.hardTimeout` | `fail_safe.max_stale`, `fail_safe.soft_timeout`, `fail_safe.hard_timeout` |
//! | `circuitBreaker.threshold`, `.failureRate`, `.minimumCalls`, `.window`, `.slowCall`, `.timeout`, `.maxTimeout`, `.halfOpenProbes`, `.successThreshold` | `circuit_breaker.threshold`, `failure_rate`, `minimum_calls`, `window`, `slow_call`, `timeout`, `max_timeout`, `half_open_probes`, `success_threshold` |
//! | `negativeTtl`, `refreshAhead`, `ttlJitter` | `negative_ttl`, `refresh_ahead`, `ttl_jitter` |
//! | `strategy` | `strategy` |
//! | `outbox.maxAttempts`, `.retryBase`, `.retryMax`, `.batch`, `.flushTimeout`, `.closeTimeout` | `outbox.max_attempts`, `retry_base`, `retry_max`, `batch`, `flush_timeout`, `close_timeout` |
//! | `github.enabled`, `github.token`, `github.apiUrl`, `github.rawUrl`, `github.timeout`, `github.maxBodyBytes`, `github.routes` | `github.enabled`, `github.token`, `github.api_url`, `github.raw_url`, `github.timeout`, `github.max_body_bytes`, `github.routes` |
//! | `github.apiKey`, `github.baseUrl` (the design it replaces) | `github.token`, `github.api_url` |
//! | `redis.url`, `redis.prefix`, `redis.timeout`, `redis.ttl`, `redis.backplane`, `redis.backplaneMaxLen`, `redis.enabled` | `redis.url`, `redis.prefix`, `redis.timeout`, `redis.ttl`, `redis.backplane`, `redis.backplane_max_len`, `redis.enabled` |
//! | `testClock` (test only) | `test_clock` |
//!
//! `github.routes` is a preset's name or an array of route objects, passed
//! on as they are (their keys, `key`, `owner`, `repo`, `ref`, `path`,
//! `listing`, `suffix`, `items`, `only`, are the core's). Giving both
//! `token` and `apiKey`, or both `apiUrl` and `baseUrl`, with different
//! values is an `invalid_config` error naming both.
//!
//! A password in `redis.url` is a secret: the core never shows it in an
//! error, a log or the stats, and the errors made here name keys, never
//! values.
//!
//! An unknown key is an `invalid_config` error, as in the core.

use napi::bindgen_prelude::Either;
use napi::{Env, ValueType};
use napi_derive::napi;
use serde_json::{Map, Value as Json};
use tierstack::{Config, Error, ErrorKind};

use crate::error::argument;
use crate::js_values::{self, Value};
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
    /// Serving expired copies, and load timeouts.
    pub fail_safe: Option<FailSafeOptions>,
    /// The circuit breaker guarding the source.
    pub circuit_breaker: Option<CircuitBreakerOptions>,
    /// Seconds a "not found" answer of a loader is remembered (default 60).
    pub negative_ttl: Option<f64>,
    /// A hit past this fraction of its TTL is refreshed in the background
    /// through the loader (default 0.8; 0: never).
    pub refresh_ahead: Option<f64>,
    /// Loaded values' TTLs are shortened by up to this fraction at random,
    /// so keys loaded together do not expire together (default 0.1).
    pub ttl_jitter: Option<f64>,
    /// GitHub as the source of truth: present (and `enabled`), plain reads
    /// load what no tier holds from GitHub (read-through). Not together
    /// with `options.source`.
    pub github: Option<GitHubOptions>,
    /// How writes reach the source, and whether a miss loads from it
    /// (default `'read-through'`):
    /// - `'read-through'`: writes go to the tiers; a miss loads from the
    ///   source (`options.source` or `github`), if any.
    /// - `'cache-aside'`: writes go to the tiers; a miss never calls the
    ///   configured source (the caller loads, with `getOrLoad`).
    /// - `'write-through'`: `set`, `mset` and `delete` call the source's
    ///   `store` / `remove` first; a failure rejects (`code === 'source'`)
    ///   and leaves the tiers as they were.
    /// - `'write-behind'`: writes go to the tiers and to the outbox in one
    ///   durable commit of the SQLite file before they resolve; the outbox
    ///   delivers them to the source in the background, retrying (see
    ///   `outbox`).
    ///
    /// `'write-through'` and `'write-behind'` need a writable
    /// `options.source` (`{ load, store, remove }`); without one, or with a
    /// read-only one (a plain function, `github`), the constructor throws
    /// with `code === 'invalid_config'`.
    #[napi(ts_type = "'read-through' | 'cache-aside' | 'write-through' | 'write-behind'")]
    pub strategy: Option<String>,
    /// The write-behind outbox.
    pub outbox: Option<OutboxOptions>,
    /// A Redis shared by many machines: a tier between the SQLite file and
    /// the source, and the backplane that carries every machine's changes
    /// to the others' memory and files.
    pub redis: Option<RedisOptions>,
    /// Test only. `true`: the storage reads time from this process's test
    /// clock, which stands still until `advanceTestClock(seconds)` moves it,
    /// so a test passes TTLs, stale windows, negative TTLs and breaker
    /// timeouts without sleeping. Every storage of the process opened with
    /// it shares that one clock, across `dispose()` and reopening. Load
    /// timeouts (`failSafe.softTimeout`, `hardTimeout`) stay real time.
    /// Default `false`: the system clock. Never set it in production: time
    /// would stop for expiry.
    pub test_clock: Option<bool>,
}

/// Redis, shared by many machines: a tier read after the SQLite file and
/// before the source (a hit is copied into the file and memory, and
/// reported as tier `'redis'`), with a breaker of its own: when Redis fails
/// or is slow, reads and writes go on without it and no call fails because
/// of it. With `backplane` on, every `set`, `delete`, `invalidateTag` and
/// `clear` is added to a Redis Stream that every other storage on this
/// Redis reads, dropping the key from its memory (and from its file when
/// the change came from another machine); one that was cut off replays what
/// it missed, or empties its memory and file when the stream no longer
/// holds it all. A key no tier holds is loaded once across the machines.
#[napi(object)]
pub struct RedisOptions {
    /// `redis://[user][:password@]host[:port][/db]` (or `rediss://`,
    /// `redis+unix://`, `unix://`). The password is never shown in an
    /// error, a log or the stats.
    pub url: String,
    /// Put before every key in Redis: 1–255 bytes without control
    /// characters (default `'tierstack:<namespace>:'`).
    pub prefix: Option<String>,
    /// Seconds a Redis call may take; a slower one counts as a failure and
    /// the read goes on below (default 0.25; above 0, at most 60).
    pub timeout: Option<f64>,
    /// The longest time in seconds a key lives in Redis (default: the
    /// entry's own, up to its stale-until time).
    pub ttl: Option<f64>,
    /// Carry every change to the other machines' memory and files through a
    /// Redis Stream (default `true`).
    pub backplane: Option<bool>,
    /// About how many changes the stream keeps (default 100000; 100 to
    /// 100000000). A storage cut off for longer than that many changes
    /// empties its memory and file when it reconnects.
    pub backplane_max_len: Option<f64>,
    /// Use the section (default `true`; `false`: as if it were absent).
    pub enabled: Option<bool>,
}

/// The write-behind outbox: how its writes are delivered to the source.
#[napi(object)]
pub struct OutboxOptions {
    /// Attempts of a write before it moves to the dead letters (default 8;
    /// 1–1000).
    pub max_attempts: Option<f64>,
    /// Seconds to wait after a write's first failed attempt, doubled per
    /// attempt, less a random share up to a half (default 0.5; above 0 and
    /// at most `retryMax`).
    pub retry_base: Option<f64>,
    /// The longest wait between attempts, in seconds (default 60; at most
    /// one day).
    pub retry_max: Option<f64>,
    /// Writes delivered at once, concurrently, never two of one key
    /// (default 32).
    pub batch: Option<f64>,
    /// Seconds `flush()` waits for the outbox to empty before it rejects
    /// with `code === 'timeout'` (default 30).
    pub flush_timeout: Option<f64>,
    /// Seconds `dispose()` keeps delivering; what is left stays in the
    /// SQLite file for the next process that opens it (default 5).
    pub close_timeout: Option<f64>,
}

/// GitHub as the source of truth.
#[napi(object)]
pub struct GitHubOptions {
    /// Load through GitHub (default `true`; `false` keeps the section but
    /// loads nothing through it).
    pub enabled: Option<bool>,
    /// The token (default `$GITHUB_PERSONAL_ACCESS_TOKEN`, else
    /// `$GITHUB_TOKEN`, else none), sent as `Authorization: Bearer` to
    /// `apiUrl` only; never logged, shown or stored.
    pub token: Option<String>,
    /// `token` under the name of the storage design this replaces.
    pub api_key: Option<String>,
    /// The REST API's base URL, for directory listings (default
    /// `"https://api.github.com"`).
    pub api_url: Option<String>,
    /// `apiUrl` under the name of the storage design this replaces.
    pub base_url: Option<String>,
    /// The base URL files are read from (default
    /// `"https://raw.githubusercontent.com"`).
    pub raw_url: Option<String>,
    /// Seconds one HTTP request may take (default 30).
    pub timeout: Option<f64>,
    /// A larger body is refused, a failure of the source (default 5 MiB).
    pub max_body_bytes: Option<f64>,
    /// Which keys load which files: a preset's name (default
    /// `"shadcn-v4"`) or a list of routes.
    pub routes: Option<Either<String, Vec<GitHubRoute>>>,
}

/// One route of `github.routes`: a file route (`path`) or a listing route
/// (`listing`). `{name}`-style placeholders in `key` fill those of `path`
/// or `listing`.
#[napi(object)]
pub struct GitHubRoute {
    /// The key pattern, e.g. `'doc:{name}'`.
    pub key: String,
    /// The repository's owner.
    pub owner: String,
    /// The repository.
    pub repo: String,
    /// The branch, tag or commit (default `'main'`).
    #[napi(js_name = "ref")]
    pub git_ref: Option<String>,
    /// A file route: the file's path in the repository, with placeholders.
    pub path: Option<String>,
    /// A listing route: the directory whose entries are listed; the value
    /// is a JSON array of names, sorted.
    pub listing: Option<String>,
    /// For a listing: only files ending with this are listed, without it
    /// (directories are listed by name).
    pub suffix: Option<String>,
    /// For a listing: the key pattern of the items it lists, e.g.
    /// `'doc:{name}'`.
    pub items: Option<String>,
    /// Allowed values of placeholders, e.g. `{ framework: ['react'] }`; a
    /// key with another value is not this route's.
    pub only: Option<std::collections::HashMap<String, Vec<String>>>,
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

/// Serving expired copies, and how long a read waits for a load.
#[napi(object)]
pub struct FailSafeOptions {
    /// How long in seconds an expired L2 row is kept to be served stale (default 86400).
    pub max_stale: Option<f64>,
    /// Seconds a read holding a stale copy waits for a load before it gets
    /// the stale copy; the load goes on and fills the tiers (default 1).
    pub soft_timeout: Option<f64>,
    /// Seconds after which a load is abandoned and counts as a failure
    /// (default 30); with no stale copy the read rejects with
    /// `code === 'timeout'`. A load's lease in the file lasts twice this.
    pub hard_timeout: Option<f64>,
}

/// The circuit breaker guarding the source (every loader of a storage).
#[napi(object)]
pub struct CircuitBreakerOptions {
    /// Consecutive failures that open it (default 5).
    pub threshold: Option<f64>,
    /// Failure rate within `window` that opens it (default 0.5)...
    pub failure_rate: Option<f64>,
    /// ...once the window holds at least this many calls (default 10).
    pub minimum_calls: Option<f64>,
    /// The sliding window of the failure rate, in seconds (default 60).
    pub window: Option<f64>,
    /// Calls slower than this many seconds count as failures (default 10).
    pub slow_call: Option<f64>,
    /// Seconds it stays open before a probe (default 60), doubling per
    /// consecutive trip...
    pub timeout: Option<f64>,
    /// ...up to this many seconds (default 600).
    pub max_timeout: Option<f64>,
    /// Calls admitted while half-open (default 1).
    pub half_open_probes: Option<f64>,
    /// Successes while half-open that close it (default 2).
    pub success_threshold: Option<f64>,
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
    (
        "failSafe",
        "fail_safe",
        Some(&[
            ("maxStale", "max_stale"),
            ("softTimeout", "soft_timeout"),
            ("hardTimeout", "hard_timeout"),
        ]),
    ),
    (
        "circuitBreaker",
        "circuit_breaker",
        Some(&[
            ("threshold", "threshold"),
            ("failureRate", "failure_rate"),
            ("minimumCalls", "minimum_calls"),
            ("window", "window"),
            ("slowCall", "slow_call"),
            ("timeout", "timeout"),
            ("maxTimeout", "max_timeout"),
            ("halfOpenProbes", "half_open_probes"),
            ("successThreshold", "success_threshold"),
        ]),
    ),
    ("negativeTtl", "negative_ttl", None),
    ("refreshAhead", "refresh_ahead", None),
    ("ttlJitter", "ttl_jitter", None),
    (
        "github",
        "github",
        Some(&[
            ("enabled", "enabled"),
            ("token", "token"),
            ("apiKey", "token"),
            ("apiUrl", "api_url"),
            ("baseUrl", "api_url"),
            ("rawUrl", "raw_url"),
            ("timeout", "timeout"),
            ("maxBodyBytes", "max_body_bytes"),
            ("routes", "routes"),
        ]),
    ),
    ("strategy", "strategy", None),
    (
        "outbox",
        "outbox",
        Some(&[
            ("maxAttempts", "max_attempts"),
            ("retryBase", "retry_base"),
            ("retryMax", "retry_max"),
            ("batch", "batch"),
            ("flushTimeout", "flush_timeout"),
            ("closeTimeout", "close_timeout"),
        ]),
    ),
    (
        "redis",
        "redis",
        Some(&[
            ("url", "url"),
            ("prefix", "prefix"),
            ("timeout", "timeout"),
            ("ttl", "ttl"),
            ("backplane", "backplane"),
            ("backplaneMaxLen", "backplane_max_len"),
            ("enabled", "enabled"),
        ]),
    ),
    ("testClock", "test_clock", None),
];

/// The second argument of `new HybridStorage(config, options)`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct HybridStorageOptions {
    /// The source of truth: a function called with a key that returns (or
    /// resolves to) its value, or `undefined` when the key does not exist
    /// (read-only); or a `StorageSource` object, `{ load }`, or
    /// `{ load, store, remove }` for a writable source (`strategy`
    /// `'write-through'` or `'write-behind'`). Plain reads load what no
    /// tier holds through it (unless `strategy` is `'cache-aside'`).
    #[napi(ts_type = "((key: string) => unknown) | StorageSource")]
    pub source: Option<String>,
    /// Stale object values (served when the source fails, its breaker is
    /// open, or it is slower than `failSafe.softTimeout`) come back from
    /// `get`, `getOrLoad` and `lookup` with `_stale: true` added, as the
    /// storage design this replaces did (default `false`; `lookup` tells
    /// staleness in its `stale` field either way). What is stored is unchanged.
    pub mark_stale: Option<bool>,
}

/// A source of truth given as an object (`options.source`). Each function
/// may return a value or a promise; one that throws or rejects fails the
/// call with `code === 'source'` and its message (a failed write of the
/// write-behind outbox is retried, then kept as a dead letter whose
/// `lastError` is that message).
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct StorageSource {
    /// Loads a key: its value, or `undefined` when the key does not exist.
    #[napi(ts_type = "(key: string) => unknown")]
    pub load: String,
    /// Stores a value at the source (write-through, write-behind). `value`
    /// is what `get(key)` would give: the parsed JSON, or a `Buffer` of
    /// bytes that are not UTF-8 JSON (a value written as a `Buffer` or
    /// `Uint8Array`). `idempotencyKey` names this write: every attempt of
    /// it, by any process, carries the same one, so a source that remembers
    /// them can apply it once. What it resolves to is ignored. Given with
    /// `remove`, or not at all.
    #[napi(ts_type = "(key: string, value: unknown, idempotencyKey: string) => unknown")]
    pub store: Option<String>,
    /// Removes a key at the source (a `delete` under write-through or
    /// write-behind), with the write's `idempotencyKey` as for `store`.
    /// Given with `store`, or not at all.
    #[napi(ts_type = "(key: string, idempotencyKey: string) => unknown")]
    pub remove: Option<String>,
}

/// The options of a storage, read.
pub(crate) struct Options {
    pub(crate) source: Option<std::sync::Arc<dyn tierstack::Source>>,
    pub(crate) mark_stale: bool,
}

const OPTIONS: [&str; 2] = ["source", "markStale"];

/// Reads the options bag (`undefined` or `null`: none). An unknown key or a
/// bad value is an `invalid_argument` error.
pub(crate) fn options_from_js(env: &Env, value: Value) -> Result<Options, Error> {
    let mut options = Options {
        source: None,
        mark_stale: false,
    };
    if js_values::is_nullish(Some(value)) {
        return Ok(options);
    }
    if js_values::type_of(value) != ValueType::Object || js_values::is_array(value) {
        return Err(argument(format!(
            "options must be an object, got {}",
            js_values::type_name(value)
        )));
    }
    for name in js_values::own_keys(env, value)? {
        let name = js_values::string_arg(env, name, "an option name")?;
        if !OPTIONS.contains(&name.as_str()) {
            return Err(argument(format!(
                "unknown option `{name}`, expected one of: {}",
                OPTIONS.join(", ")
            )));
        }
    }
    let source = js_values::get_named(env, value, c"source")?;
    if !js_values::is_nullish(Some(source)) {
        options.source = Some(crate::load::source(env, source)?);
    }
    let mark_stale = js_values::get_named(env, value, c"markStale")?;
    match js_values::type_of(mark_stale) {
        ValueType::Undefined | ValueType::Null => {}
        ValueType::Boolean => options.mark_stale = js_values::as_bool(mark_stale),
        _ => {
            return Err(argument(format!(
                "markStale must be a boolean, got {}",
                js_values::type_name(mark_stale)
            )));
        }
    }
    Ok(options)
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidConfig, message)
}

/// The core config for a Node config object (`undefined` or `null`: the defaults).
pub(crate) fn from_js(
    env: &Env,
    builtins: &Builtins,
    value: Option<Value>,
) -> Result<Config, Error> {
    let Some(value) = value.filter(|&v| !js_values::is_nullish(Some(v))) else {
        return Config::from_json("{}");
    };
    if js_values::type_of(value) != ValueType::Object || js_values::is_array(value) {
        return Err(invalid(format!(
            "config must be an object, got {}",
            js_values::type_name(value)
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
                // The Node name each core key was given under, to tell two
                // spellings of one key (`token`, `apiKey`) that disagree.
                let mut renamed: Map<String, Json> = Map::new();
                let mut given_as: Vec<(&str, String)> = Vec::new();
                for (name, v) in section {
                    let Some(&(_, core_name)) = keys.iter().find(|k| k.0 == name) else {
                        return Err(unknown(&format!("{key}.{name}"), keys.iter().map(|k| k.0)));
                    };
                    match given_as.iter().find(|(c, _)| *c == core_name) {
                        Some((_, other)) if renamed.get(core_name) != Some(&v) => {
                            return Err(invalid(format!(
                                "config: `{key}.{other}` and `{key}.{name}` are one setting given two different values"
                            )));
                        }
                        Some(_) => {}
                        None => given_as.push((core_name, name)),
                    }
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
            "failSafe": {"maxStale": 10, "softTimeout": 0.2, "hardTimeout": 3},
            "circuitBreaker": {"threshold": 3, "failureRate": 0.25, "minimumCalls": 4, "window": 30,
                "slowCall": 2, "timeout": 5, "maxTimeout": 50, "halfOpenProbes": 2, "successThreshold": 1},
            "negativeTtl": 7, "refreshAhead": 0.5, "ttlJitter": 0, "testClock": true
        });
        let config = Config::from_json(&to_core(json).unwrap().to_string()).unwrap();
        assert_eq!(config.namespace, "ns");
        assert_eq!(config.memory.max_bytes, 1024);
        assert_eq!(config.memory.ttl, std::time::Duration::from_millis(1500));
        assert_eq!(config.sqlite.max_bytes, 4096);
        assert_eq!(config.sqlite.on_corrupt, tierstack::OnCorrupt::Fail);
        assert!(config.test_clock);
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
        let expected = serde_json::json!({
            "fail_safe": {"max_stale": 10, "soft_timeout": 0.2, "hard_timeout": 3},
            "circuit_breaker": {"threshold": 3, "failure_rate": 0.25, "minimum_calls": 4, "window": 30,
                "slow_call": 2, "timeout": 5, "max_timeout": 50, "half_open_probes": 2, "success_threshold": 1},
            "negative_ttl": 7, "refresh_ahead": 0.5, "ttl_jitter": 0
        });
        let core = to_core(json_of_loading()).unwrap();
        assert_eq!(core, expected);
    }

    fn json_of_loading() -> Json {
        serde_json::json!({
            "failSafe": {"maxStale": 10, "softTimeout": 0.2, "hardTimeout": 3},
            "circuitBreaker": {"threshold": 3, "failureRate": 0.25, "minimumCalls": 4, "window": 30,
                "slowCall": 2, "timeout": 5, "maxTimeout": 50, "halfOpenProbes": 2, "successThreshold": 1},
            "negativeTtl": 7, "refreshAhead": 0.5, "ttlJitter": 0
        })
    }

    #[test]
    fn the_strategy_and_the_outbox_map_onto_the_core_schema() {
        let json = serde_json::json!({
            "strategy": "write-behind",
            "outbox": {"maxAttempts": 3, "retryBase": 0.01, "retryMax": 0.05, "batch": 4,
                "flushTimeout": 2, "closeTimeout": 0.5}
        });
        let core = to_core(json).unwrap();
        assert_eq!(
            core,
            serde_json::json!({
                "strategy": "write-behind",
                "outbox": {"max_attempts": 3, "retry_base": 0.01, "retry_max": 0.05, "batch": 4,
                    "flush_timeout": 2, "close_timeout": 0.5}
            })
        );
        let config = Config::from_json(&core.to_string()).unwrap();
        assert_eq!(config.strategy, tierstack::config::Strategy::WriteBehind);
        assert_eq!(config.outbox.max_attempts, 3);
        assert_eq!(
            config.outbox.retry_base,
            std::time::Duration::from_millis(10)
        );
        assert_eq!(
            config.outbox.retry_max,
            std::time::Duration::from_millis(50)
        );
        assert_eq!(config.outbox.batch, 4);
        assert_eq!(
            config.outbox.flush_timeout,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(
            config.outbox.close_timeout,
            std::time::Duration::from_millis(500)
        );
        let err = to_core(serde_json::json!({"outbox": {"max_attempts": 3}})).unwrap_err();
        assert!(
            err.message().contains("unknown key `outbox.max_attempts`"),
            "{}",
            err.message()
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
                serde_json::json!({"circuitBreaker": {"failure_rate": 5}}),
                "unknown key `circuitBreaker.failure_rate`",
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
    #[test]
    fn the_github_section_maps_onto_the_core_schema() {
        let routes = serde_json::json!([
            {"key": "doc:{name}", "owner": "me", "repo": "docs", "ref": "v1", "path": "pages/{name}.md",
             "only": {"name": ["intro", "setup"]}},
            {"key": "docs", "owner": "me", "repo": "docs", "listing": "pages", "suffix": ".md", "items": "doc:{name}"}
        ]);
        let json = serde_json::json!({"github": {
            "enabled": true, "token": "ghp_node", "apiUrl": "http://127.0.0.1:1",
            "rawUrl": "http://127.0.0.1:2", "timeout": 2.5, "maxBodyBytes": 1000, "routes": routes
        }});
        let core = to_core(json).unwrap();
        assert_eq!(
            core,
            serde_json::json!({"github": {
                "enabled": true, "token": "ghp_node", "api_url": "http://127.0.0.1:1",
                "raw_url": "http://127.0.0.1:2", "timeout": 2.5, "max_body_bytes": 1000, "routes": routes
            }})
        );
        let github = Config::from_json(&core.to_string())
            .unwrap()
            .github
            .unwrap();
        assert!(github.enabled);
        assert_eq!(
            github.token,
            Some(tierstack::config::Secret::new("ghp_node"))
        );
        assert_eq!(github.api_url, "http://127.0.0.1:1");
        assert_eq!(github.raw_url, "http://127.0.0.1:2");
        assert_eq!(github.timeout, std::time::Duration::from_millis(2500));
        assert_eq!(github.max_body_bytes, 1000);
        assert_eq!(serde_json::to_value(&github.routes).unwrap(), {
            let mut expected = routes.clone();
            expected[1]["ref"] = "main".into();
            expected
        });

        let preset =
            to_core(serde_json::json!({"github": {"routes": "shadcn-v4", "enabled": false}}))
                .unwrap();
        assert_eq!(
            preset,
            serde_json::json!({"github": {"routes": "shadcn-v4", "enabled": false}})
        );
        assert!(
            !Config::from_json(&preset.to_string())
                .unwrap()
                .github
                .unwrap()
                .enabled
        );
    }

    #[test]
    fn the_github_names_of_the_replaced_design_are_the_token_and_the_api_url() {
        let core = to_core(
            serde_json::json!({"github": {"apiKey": "ghp_old", "baseUrl": "http://127.0.0.1:3"}}),
        )
        .unwrap();
        assert_eq!(
            core,
            serde_json::json!({"github": {"token": "ghp_old", "api_url": "http://127.0.0.1:3"}})
        );
        // Both spellings with one value are that value.
        let core = to_core(serde_json::json!({"github": {
            "apiKey": "ghp_same", "token": "ghp_same", "apiUrl": "http://a.test", "baseUrl": "http://a.test"
        }}))
        .unwrap();
        assert_eq!(
            core,
            serde_json::json!({"github": {"token": "ghp_same", "api_url": "http://a.test"}})
        );
    }

    #[test]
    fn two_spellings_of_one_github_setting_that_disagree_are_refused_naming_both() {
        for (github, names) in [
            (
                serde_json::json!({"token": "ghp_a", "apiKey": "ghp_b"}),
                ["`github.apiKey`", "`github.token`"],
            ),
            (
                serde_json::json!({"apiUrl": "http://a.test", "baseUrl": "http://b.test"}),
                ["`github.apiUrl`", "`github.baseUrl`"],
            ),
        ] {
            let err = to_core(serde_json::json!({ "github": github })).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig);
            for name in names {
                assert!(err.message().contains(name), "{name}: {}", err.message());
            }
            // The values, a token among them, are not in the message.
            for value in ["ghp_a", "ghp_b"] {
                assert!(!err.message().contains(value), "{}", err.message());
            }
        }
    }

    #[test]
    fn the_redis_section_maps_onto_the_core_schema() {
        let json = serde_json::json!({"redis": {
            "url": "redis://:hunter2@127.0.0.1:6380/2", "prefix": "app:", "timeout": 0.5,
            "ttl": 600, "backplane": false, "backplaneMaxLen": 1000, "enabled": true
        }});
        let core = to_core(json).unwrap();
        assert_eq!(
            core,
            serde_json::json!({"redis": {
                "url": "redis://:hunter2@127.0.0.1:6380/2", "prefix": "app:", "timeout": 0.5,
                "ttl": 600, "backplane": false, "backplane_max_len": 1000, "enabled": true
            }})
        );
        let redis = Config::from_json(&core.to_string()).unwrap().redis.unwrap();
        assert_eq!(redis.url.redacted(), "redis://:***@127.0.0.1:6380/2");
        assert_eq!(redis.prefix.as_deref(), Some("app:"));
        assert_eq!(redis.timeout, std::time::Duration::from_millis(500));
        assert_eq!(redis.ttl, Some(std::time::Duration::from_secs(600)));
        assert!(!redis.backplane);
        assert_eq!(redis.backplane_max_len, 1000);
        assert!(redis.enabled);

        // The defaults: only the URL is required.
        let core = to_core(serde_json::json!({"redis": {"url": "redis://127.0.0.1"}})).unwrap();
        let redis = Config::from_json(&core.to_string()).unwrap().redis.unwrap();
        assert_eq!(redis, tierstack::RedisConfig::new("redis://127.0.0.1"));
    }

    #[test]
    fn bad_redis_sections_are_refused_without_the_password() {
        let url = "redis://user:hunter2@127.0.0.1:6379/0";
        for (redis, needle) in [
            (
                serde_json::json!({"url": url, "backplane_max_len": 100}),
                "unknown key `redis.backplane_max_len`",
            ),
            (
                serde_json::json!({"url": url, "tiemout": 1}),
                "unknown key `redis.tiemout`",
            ),
            (
                serde_json::json!({"url": "http://user:hunter2@127.0.0.1"}),
                "redis.url \"http://user:***@127.0.0.1\" must start with redis://",
            ),
            (
                serde_json::json!({"url": url, "timeout": 0}),
                "redis.timeout must be greater than 0",
            ),
            (
                serde_json::json!({"url": url, "backplaneMaxLen": 99}),
                "redis.backplane_max_len must be between 100 and 100000000",
            ),
            (serde_json::json!({"prefix": "p:"}), "missing field `url`"),
        ] {
            let err = to_core(serde_json::json!({ "redis": redis }))
                .and_then(|core| Config::from_json(&core.to_string()))
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{redis}");
            assert!(err.message().contains(needle), "{}", err.message());
            assert!(!err.message().contains("hunter2"), "{}", err.message());
        }
    }

    #[test]
    fn unknown_and_snake_case_github_keys_are_refused() {
        for (github, needle) in [
            (
                serde_json::json!({"tokn": "x"}),
                "unknown key `github.tokn`",
            ),
            (
                serde_json::json!({"api_url": "http://a.test"}),
                "unknown key `github.api_url`",
            ),
            (
                serde_json::json!({"max_body_bytes": 1}),
                "unknown key `github.max_body_bytes`",
            ),
        ] {
            let err = to_core(serde_json::json!({ "github": github })).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig);
            assert!(err.message().contains(needle), "{}", err.message());
        }
        // Routes go to the core as they are: it refuses a bad one naming
        // it, and a route with a key it does not know.
        for route in [
            serde_json::json!({"key": "doc:{name}", "owner": "me", "repo": "docs"}),
            serde_json::json!({"key": "doc:{name}", "owner": "me", "repo": "docs", "path": "{name}.md", "branch": "main"}),
        ] {
            let core = to_core(serde_json::json!({"github": {"routes": [route]}})).unwrap();
            assert_eq!(core["github"]["routes"][0], route);
            let err = Config::from_json(&core.to_string()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{route}");
        }
        let core = to_core(serde_json::json!({"github": {"routes": [
            {"key": "doc:{name}", "owner": "me", "repo": "docs"}
        ]}}))
        .unwrap();
        let err = Config::from_json(&core.to_string()).unwrap_err();
        assert!(
            err.message().contains("github.routes[0]"),
            "{}",
            err.message()
        );
    }
}
