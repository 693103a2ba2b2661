//! The Redis tier (Cargo feature `redis`): a store shared by many
//! machines, between the L2 file and the source.
//!
//! A read that misses L1 and L2 asks Redis before the source; a Redis hit
//! is written into L2 and L1 (promotion) and reported as [`crate::Tier::Redis`].
//! Every value stored (a set, an mset, a value loaded from the source) is
//! written to Redis after L2; a delete removes the key; a clear unlinks
//! this cache's keys. Configured by [`RedisConfig`].
//!
//! - **Keys** are the cache's key behind `redis.prefix` (default
//!   `tierstack:<namespace>:`).
//! - **Values** are the entry with its metadata (created, expires,
//!   stale-until, ETag, tags) as one blob: see `tier::envelope`.
//! - **TTL**: a key lives in Redis until its entry's stale-until time (so
//!   a stale copy can be served from Redis too), or for `redis.ttl` if
//!   that is shorter. A value past its stale-until time is not written.
//! - **Batches**: `mget` asks for the keys L2 missed with one `MGET`; an
//!   `mset` writes its keys in one pipeline of `SET … PX`.
//! - **Clear** walks this prefix's keys with `SCAN MATCH <prefix>*` and
//!   `UNLINK`s them, for at most [`CLEAR_LIMIT`]; what is left past that
//!   is logged and goes at its own expiry.
//! - **Not consulted** by `has`, `keys`, `len` and `entry`: they report
//!   this host's tiers.
//! - **Tag invalidation** removes from Redis the keys it removed from this
//!   host's tiers, and the backplane carries the tag to the other machines,
//!   which remove the keys they hold (from Redis too).
//! - **The backplane** (`redis.backplane`, on by default): every set,
//!   delete, tag invalidation and clear is also added, in the same
//!   pipeline, to a Redis Stream that every node reads (see
//!   [`crate::backplane`]).
//! - **This cache's own keys** in Redis (the stream, its epoch, load
//!   leases) are the prefix followed by `\x1f` (a byte no cache key holds)
//!   and a name; a clear leaves them.
//! - **Changes Redis missed.** A write, delete, tag invalidation or clear
//!   that could not reach Redis (failing, or its breaker open) is
//!   remembered; once Redis answers again, each such key is deleted from
//!   Redis and announced as deleted (a clear, if more than
//!   [`MISSED_MAX`](missed::MISSED_MAX) keys were missed), so that no
//!   machine goes on serving what this one replaced meanwhile. Remembered
//!   in this process only.
//!
//! **Failures never reach the caller.** Each call is bounded by
//! `redis.timeout`; an error, a refusal or a slower answer counts as a
//! failure of the tier's own [`Breaker`] ([`breaker_config`]), is counted
//! in [`crate::Stats::redis`] and logged (the URL's password never is), and
//! the read goes on to the source (a write still lands in L1 and L2).
//! While the breaker is open, calls are skipped (counted as `skipped`);
//! after its open period one probe goes through and, if Redis answers,
//! closes it again; so does the backplane's reader reaching Redis again. A
//! failed call drops the connection, and the next one allowed connects
//! afresh.
//! - **A copy read from Redis** is kept in L2 and L1 only if no change of
//!   its key began in this process since the read (a write, a delete, a
//!   clear, a tag invalidation, or another process's change the backplane
//!   applied: [`RedisTier::ticket`] and [`RedisTier::keep_if`]), and only
//!   over an older row of the file; otherwise it is answered and not kept
//!   (the read first asks again, twice at most).
//!
//! The engine is synchronous: a read (`GET`, `MGET`) runs on a plain
//! connection of the calling thread's, taken from a small pool; a write
//! made on a thread of no tokio runtime is polled on that thread (the
//! connection's own task runs on the shared runtime, see
//! [`crate::runtime`]); one made on a runtime's thread is run on the shared
//! runtime while the calling thread waits for it. Either way it waits at
//! most `redis.timeout`. The async [`crate::Cache`]'s plain reads therefore wait
//! for Redis on the calling task's thread, as they do for L2.
//!
//! This file holds the tier's state and opens it. Each job has its own
//! file: the connection and the calls through the breaker
//! ([`connection`]), [`reads`], [`writes`], the read tickets ([`tickets`]),
//! the backplane's stream as this tier writes it ([`stream`]), the changes
//! Redis missed ([`missed`]) and load leases across machines ([`lease`]).

mod connection;
mod lease;
mod missed;
mod reads;
mod stream;
mod tickets;
mod writes;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use ::redis::Client;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::breaker::{Breaker, BreakerStatus, CircuitBreakerConfig};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::stats::Counters;
use connection::Link;
pub(crate) use lease::LeaseState;
use missed::Missed;
pub(crate) use stream::{Change, Node};
pub(crate) use tickets::ReadTicket;
use tickets::{STRIPES, Stripe};
pub use writes::CLEAR_LIMIT;

/// The byte between the prefix and the name of this cache's own keys.
const OWN: char = '\x1f';

/// The Redis tier's breaker: 3 failures in a row (or half of at least 20
/// calls in 10 s) open it for 1 s, doubling per trip up to 30 s (plus up
/// to 10% jitter); one successful probe closes it. A call slower than
/// `redis.timeout` is a failure.
pub fn breaker_config(timeout: Duration) -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        threshold: 3,
        failure_rate: 0.5,
        minimum_calls: 20,
        window: Duration::from_secs(10),
        slow_call: timeout,
        timeout: Duration::from_secs(1),
        max_timeout: Duration::from_secs(30),
        half_open_probes: 1,
        success_threshold: 1,
    }
}

/// The Redis tier of one cache.
pub(crate) struct RedisTier {
    link: Arc<Link>,
    prefix: String,
    timeout: Duration,
    ttl: Option<Duration>,
    breaker: Breaker,
    counters: Arc<Counters>,
    /// The URL's password as written and as decoded, scrubbed from every
    /// message.
    secrets: Arc<Vec<String>>,
    /// Whether changes are announced on the stream.
    backplane: bool,
    /// `redis.backplane_max_len`.
    max_len: u64,
    /// This process and its file, by fork generation.
    node: Mutex<Option<(u64, Node)>>,
    /// The L2 file's identity (set once the engine has opened its file).
    file: Mutex<Arc<str>>,
    /// Changes Redis missed; `has_missed` is set while it holds any.
    missed: Mutex<Missed>,
    has_missed: AtomicBool,
    /// Changes under way and made, by stripe of keys: a copy read from
    /// Redis is kept only if no change of its key's stripe began since the
    /// read (see [`RedisTier::keep_if`]).
    stripes: Box<[Stripe]>,
    hasher: std::hash::RandomState,
    /// Callers waiting for news of a key on the stream, of one fork
    /// generation (see `RedisTier::watch`).
    watchers: crate::fork::PerFork<Mutex<HashMap<String, Arc<Notify>>>>,
    /// Wakes the stream's reader to stop (the cache closed).
    stop: crate::fork::PerFork<Notify>,
    /// The fork generation whose reader runs.
    pub(crate) reader_generation: AtomicU64,
}

impl RedisTier {
    /// The tier for `config.redis`; `None` without an enabled section.
    /// Nothing connects before the first call.
    pub(crate) fn open(
        config: &Config,
        clock: Clock,
        counters: Arc<Counters>,
    ) -> Result<Option<Self>> {
        let Some(redis) = config.redis.as_ref().filter(|r| r.enabled) else {
            return Ok(None);
        };
        let mut secrets: Vec<String> = redis
            .url
            .password()
            .map(str::to_owned)
            .into_iter()
            .collect();
        let client = Client::open(redis.url.expose()).map_err(|e| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "redis.url {:?} is not a Redis URL: {}",
                    redis.url.redacted(),
                    scrub(&secrets, &e.to_string())
                ),
            )
        })?;
        if let Some(password) = client.get_connection_info().redis_settings().password() {
            secrets.push(password.to_owned());
        }
        secrets.retain(|s| !s.is_empty());
        let secrets = Arc::new(secrets);
        Ok(Some(Self {
            link: Arc::new(Link::new(client, redis.timeout)),
            prefix: redis.prefix_for(&config.namespace),
            timeout: redis.timeout,
            ttl: redis.ttl,
            breaker: Breaker::new(breaker_config(redis.timeout), clock),
            counters,
            secrets,
            backplane: redis.backplane,
            max_len: redis.backplane_max_len,
            node: Mutex::new(None),
            file: Mutex::new(Arc::from("")),
            missed: Mutex::new(Missed::default()),
            has_missed: AtomicBool::new(false),
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            hasher: std::hash::RandomState::new(),
            watchers: crate::fork::PerFork::new(),
            stop: crate::fork::PerFork::new(),
            reader_generation: AtomicU64::new(u64::MAX),
        }))
    }

    /// Records the L2 file's identity ([`crate::tier::sqlite::SqliteTier::identity`]).
    pub(crate) fn set_file(&self, id: i64) {
        *self.file.lock() = Arc::from(format!("{:x}", id as u64));
        self.node.lock().take();
    }

    /// Whether changes are announced on the backplane.
    pub(crate) fn announces(&self) -> bool {
        self.backplane
    }

    /// Closes the tier's breaker if it is open: the backplane's reader
    /// reached Redis again, so calls need not wait out the open period.
    pub(crate) fn answered_again(&self) {
        if self.breaker.status().state == crate::breaker::BreakerState::Open {
            self.breaker.close();
        }
    }

    /// What the backplane's reader waits on to stop.
    pub(crate) fn stopping(&self) -> Arc<Notify> {
        self.stop.get()
    }

    /// Stops the backplane's reader (the cache closes).
    pub(crate) fn halt(&self) {
        self.stop.get().notify_one();
    }
    /// `message` with the URL's password as `***`.
    pub(crate) fn scrub(&self, message: &str) -> String {
        scrub(&self.secrets, message)
    }
    /// The status of the tier's breaker.
    pub(crate) fn breaker_status(&self) -> BreakerStatus {
        self.breaker.status()
    }

    /// The Redis key of `key`.
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

/// `message` with every secret in it as `***`.
fn scrub(secrets: &[String], message: &str) -> String {
    secrets
        .iter()
        .fold(message.to_owned(), |m, s| m.replace(s.as_str(), "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forked_child_waits_on_news_of_its_own() {
        let config = Config {
            redis: Some(crate::RedisConfig::new("redis://127.0.0.1:1")),
            ..Config::default()
        };
        let tier = RedisTier::open(&config, Clock::system(), Arc::default())
            .unwrap()
            .unwrap();
        let parents = tier.watch("k");
        let child = crate::fork::testing::in_child(|| {
            let mine = tier.watch("k");
            let own = !Arc::ptr_eq(&mine, &parents) && Arc::ptr_eq(&mine, &tier.watch("k"));
            tier.wake("k");
            own
        });
        assert_eq!(child, Some(0), "the child waited on the parent's news");
        assert!(Arc::ptr_eq(&parents, &tier.watch("k")));
    }

    #[test]
    fn the_breaker_config_is_valid() {
        breaker_config(Duration::from_millis(250))
            .validate()
            .unwrap();
    }
}
