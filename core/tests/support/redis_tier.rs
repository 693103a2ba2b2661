//! What the Redis tier tests share: a "machine" (a cache with its own
//! file on a shared clock and Redis), reads as `(value, tier)`, the
//! backplane's count of changes applied, and the Redis tier's counts.

#![allow(dead_code)] // each test binary uses a part of this module

use std::time::Duration;

use tierstack::blocking::Cache;
use tierstack::{CacheBuilder, ManualClock, RedisConfig, Tier};

pub const SECOND: Duration = Duration::from_secs(1);

/// A "machine": its own L2 file and L1, on the shared clock and Redis.
pub fn machine(
    dir: &tempfile::TempDir,
    name: &str,
    url: &str,
    clock: &ManualClock,
) -> CacheBuilder {
    Cache::builder()
        .namespace("redis-test")
        .sqlite_path(dir.path().join(format!("{name}.db")))
        .clock(clock.clone())
        .ttl_jitter(0.0)
        .redis(RedisConfig::new(url))
}

pub fn tier(cache: &Cache, key: &str) -> Option<(Vec<u8>, Tier)> {
    cache
        .lookup(key)
        .unwrap()
        .map(|l| (l.value.to_vec(), l.tier))
}

pub fn hit(value: &str, tier: Tier) -> Option<(Vec<u8>, Tier)> {
    Some((value.as_bytes().to_vec(), tier))
}

/// Changes `cache`'s backplane has applied.
pub fn received(cache: &Cache) -> u64 {
    cache.stats().redis.unwrap().backplane.unwrap().received
}

/// Waits (up to 10 s) for `done`.
pub fn wait_until(done: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < 10 * SECOND, "not done within 10 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// (hits, misses) of the Redis tier, and (errors, skipped).
pub fn redis_counts(cache: &Cache) -> ((u64, u64), (u64, u64)) {
    let stats = cache.stats();
    let tier = stats.tier(Tier::Redis).expect("a redis tier");
    let redis = stats.redis.as_ref().expect("redis stats");
    ((tier.hits, tier.misses), (redis.errors, redis.skipped))
}
