//! What the GitHub tests share: a cache on a GitHub-shaped origin on
//! loopback, settings merged into its config, a copy of a component that
//! just expired, and a file's text.

#![allow(dead_code)] // each test binary uses a part of this module

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tierstack::blocking::Cache;
use tierstack::{Config, ManualClock};
use tierstack_origin::Origin;

pub const BASE: &str = "apps/v4/registry/new-york-v4";
pub const BUTTON: &str = "component:react:button";

pub fn config(origin: &Origin, path: &Path, extra: serde_json::Value) -> Config {
    let mut config = json!({
        "sqlite": {"path": path},
        "ttl_jitter": 0.0,
        "github": {"api_url": origin.api_url(), "raw_url": origin.raw_url(), "timeout": 5},
    });
    merge(&mut config, extra);
    Config::from_json(&config.to_string()).unwrap()
}

pub fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(into), serde_json::Value::Object(from)) => {
            for (k, v) in from {
                merge(into.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (into, from) => *into = from,
    }
}

pub fn open(origin: &Origin, path: &Path, extra: serde_json::Value) -> Cache {
    Cache::open(config(origin, path, extra)).unwrap()
}

/// [`open`], with the cache's time read from `clock`.
pub fn open_with_clock(
    origin: &Origin,
    path: &Path,
    extra: serde_json::Value,
    clock: &ManualClock,
) -> Cache {
    Cache::builder()
        .config(config(origin, path, extra))
        .clock(clock.clone())
        .build_blocking()
        .unwrap()
}

/// A cache on a new file in `dir` with 1 s TTLs (and `extra`) and a manual
/// clock, holding a copy of [`BUTTON`] fetched with one request and just
/// expired (the clock moved 1.1 s); the copy; and the clock.
pub fn with_expired_button(
    origin: &Origin,
    dir: &Path,
    extra: serde_json::Value,
) -> (Cache, tierstack::Bytes, ManualClock) {
    let mut settings = json!({"sqlite": {"ttl": 1}, "memory": {"ttl": 1}});
    merge(&mut settings, extra);
    let clock = ManualClock::starting_now();
    let cache = open_with_clock(origin, &dir.join("c.db"), settings, &clock);
    let copy = cache.get(BUTTON).unwrap().unwrap();
    assert_eq!(origin.requests()[0].status, 200);
    assert!(!cache.lookup(BUTTON).unwrap().unwrap().stale);
    clock.advance(Duration::from_millis(1100));
    (cache, copy, clock)
}

/// The first line of a file's text, stored as a JSON string.
pub fn first_line(value: &[u8]) -> String {
    text(value).lines().next().unwrap_or_default().to_owned()
}

/// A file's text, stored as a JSON string.
pub fn text(value: &[u8]) -> String {
    serde_json::from_slice(value).expect("a file is stored as a JSON string")
}

pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
