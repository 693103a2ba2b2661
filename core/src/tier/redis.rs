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
//!   host's tiers; tagged keys that only other machines hold stay in Redis
//!   until the backplane (a later step) carries invalidations.
//!
//! **Failures never reach the caller.** Each call is bounded by
//! `redis.timeout`; an error, a refusal or a slower answer counts as a
//! failure of the tier's own [`Breaker`] ([`breaker_config`]), is counted
//! in [`crate::Stats::redis`] and logged (the URL's password never is), and
//! the read goes on to the source (a write still lands in L1 and L2).
//! While the breaker is open, calls are skipped (counted as `skipped`);
//! after its open period one probe goes through and, if Redis answers,
//! closes it again. A failed call drops the connection, and the next one
//! allowed connects afresh.
//!
//! The engine is synchronous, so each call is run on the shared runtime
//! (see [`crate::runtime`]) while the calling thread waits for it, at most
//! `redis.timeout`. The async [`crate::Cache`]'s plain reads therefore wait
//! for Redis on the calling task's thread, as they do for L2.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError, RedisResult};
use parking_lot::Mutex;

use crate::breaker::{Breaker, BreakerStatus, CallOutcome, CircuitBreakerConfig};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::runtime;
use crate::stats::Counters;
use crate::tier::envelope::{self, Stored};
use crate::tier::sqlite::Row;

/// How long a clear may walk and unlink this prefix's keys.
pub const CLEAR_LIMIT: Duration = Duration::from_secs(10);

/// Keys asked for per `SCAN` round of a clear.
const SCAN_COUNT: u32 = 1000;

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
    secrets: Vec<String>,
}

/// The client and its connection, shared with the calls in flight.
struct Link {
    client: Client,
    /// The connection of the current fork generation (see
    /// [`crate::runtime`]); `None` until the first call, and after a
    /// failed one.
    connection: Mutex<Option<(u64, ConnectionManager)>>,
    /// Held while a connection is made, so that one is made at a time.
    connecting: tokio::sync::Mutex<()>,
    timeout: Duration,
}

impl Link {
    async fn connection(&self) -> RedisResult<ConnectionManager> {
        let generation = runtime::fork_generation();
        let current = || {
            self.connection
                .lock()
                .as_ref()
                .filter(|(g, _)| *g == generation)
                .map(|(_, c)| c.clone())
        };
        if let Some(connection) = current() {
            return Ok(connection);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(connection) = current() {
            return Ok(connection);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let connection = self
            .client
            .get_connection_manager_with_config(config)
            .await?;
        *self.connection.lock() = Some((generation, connection.clone()));
        Ok(connection)
    }

    fn drop_connection(&self) {
        self.connection.lock().take();
    }
}

/// Why a call gave no answer.
enum Failed {
    Redis(RedisError),
    TimedOut,
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
        Ok(Some(Self {
            link: Arc::new(Link {
                client,
                connection: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                timeout: redis.timeout,
            }),
            prefix: redis.prefix_for(&config.namespace),
            timeout: redis.timeout,
            ttl: redis.ttl,
            breaker: Breaker::new(breaker_config(redis.timeout), clock),
            counters,
            secrets,
        }))
    }

    /// The status of the tier's breaker.
    pub(crate) fn breaker_status(&self) -> BreakerStatus {
        self.breaker.status()
    }

    /// The Redis key of `key`.
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The entry of `key`: `None` if the call was skipped or failed,
    /// `Some(None)` if Redis holds no entry.
    pub(crate) fn get(&self, key: &str) -> Option<Option<Stored>> {
        let key = self.key(key);
        let blob: Option<Vec<u8>> = self.call(self.timeout, move |mut c| async move {
            ::redis::cmd("GET").arg(key).query_async(&mut c).await
        })?;
        Some(blob.as_deref().and_then(envelope::decode))
    }

    /// The entries of `keys`, in order, with one `MGET`; `None` if the call
    /// was skipped or failed.
    pub(crate) fn get_many(&self, keys: &[&str]) -> Option<Vec<Option<Stored>>> {
        if keys.is_empty() {
            return Some(Vec::new());
        }
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        let blobs: Vec<Option<Vec<u8>>> = self.call(self.timeout, move |mut c| async move {
            ::redis::cmd("MGET").arg(keys).query_async(&mut c).await
        })?;
        Some(
            blobs
                .iter()
                .map(|b| b.as_deref().and_then(envelope::decode))
                .collect(),
        )
    }

    /// Writes `rows` in one pipeline of `SET … PX`; a row past its
    /// stale-until time at `now` is left out. Whether the write went
    /// through (`false`: skipped or failed, counted and logged).
    pub(crate) fn put(&self, rows: &[Row], now: u64) -> bool {
        let mut pipe = ::redis::pipe();
        let mut any = false;
        for row in rows {
            let mut px = row.stale_until_ms.saturating_sub(now);
            if let Some(ttl) = self.ttl {
                px = px.min(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
            }
            if px == 0 {
                continue;
            }
            pipe.cmd("SET")
                .arg(self.key(&row.key))
                .arg(envelope::encode(row))
                .arg("PX")
                .arg(px)
                .ignore();
            any = true;
        }
        if !any {
            return true;
        }
        self.call(self.timeout, move |mut c| async move {
            pipe.query_async::<()>(&mut c).await
        })
        .is_some()
    }

    /// Removes `keys`; whether the call went through.
    pub(crate) fn delete(&self, keys: &[&str]) -> bool {
        if keys.is_empty() {
            return true;
        }
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        self.call(self.timeout, move |mut c| async move {
            ::redis::cmd("DEL")
                .arg(keys)
                .query_async::<u64>(&mut c)
                .await
        })
        .is_some()
    }

    /// Unlinks every key behind this prefix, for at most [`CLEAR_LIMIT`];
    /// how many, or `None` if the call was skipped or failed (keys already
    /// unlinked stay unlinked).
    pub(crate) fn clear(&self) -> Option<u64> {
        let pattern = format!("{}*", glob_escape(&self.prefix));
        self.call(CLEAR_LIMIT, move |mut c| async move {
            let mut cursor = 0u64;
            let mut removed = 0u64;
            loop {
                let (next, keys): (u64, Vec<Vec<u8>>) = ::redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(&mut c)
                    .await?;
                if !keys.is_empty() {
                    removed += ::redis::cmd("UNLINK")
                        .arg(keys)
                        .query_async::<u64>(&mut c)
                        .await?;
                }
                if next == 0 {
                    return Ok(removed);
                }
                cursor = next;
            }
        })
    }

    /// Runs `op` on the connection through the breaker, within `limit`,
    /// counting and logging a failure; `None` if it was skipped or failed.
    fn call<T, F, Fut>(&self, limit: Duration, op: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
    {
        let Some(permit) = self.breaker.try_acquire() else {
            self.counters.redis_skipped.incr();
            return None;
        };
        let link = self.link.clone();
        let started = Instant::now();
        let outcome = wait_for(limit, async move {
            match tokio::time::timeout(limit, async {
                let connection = link.connection().await?;
                op(connection).await
            })
            .await
            {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(err)) => Err(Failed::Redis(err)),
                Err(_) => Err(Failed::TimedOut),
            }
        });
        match outcome {
            Ok(answer) => {
                self.breaker.record(permit, CallOutcome::Success);
                Some(answer)
            }
            Err(failed) => {
                self.breaker.record(permit, CallOutcome::Failure);
                self.counters.redis_errors.incr();
                self.link.drop_connection();
                let why = match failed {
                    Failed::Redis(err) => scrub(&self.secrets, &err.to_string()),
                    Failed::TimedOut => format!("no answer within {limit:?}"),
                };
                tracing::warn!(
                    error = %why,
                    took = ?started.elapsed(),
                    "a Redis call failed; the tier is skipped for this call"
                );
                None
            }
        }
    }
}

/// Runs `future` on the shared runtime and waits for it on this thread:
/// its answer, or [`Failed::TimedOut`] if none came within about `limit`
/// (the future itself gives up at `limit`).
fn wait_for<T: Send + 'static>(
    limit: Duration,
    future: impl Future<Output = std::result::Result<T, Failed>> + Send + 'static,
) -> std::result::Result<T, Failed> {
    let grace = limit + Duration::from_millis(100);
    runtime::wait_for(future, Some(grace)).unwrap_or(Err(Failed::TimedOut))
}

/// `message` with every secret in it as `***`.
fn scrub(secrets: &[String], message: &str) -> String {
    secrets
        .iter()
        .fold(message.to_owned(), |m, s| m.replace(s.as_str(), "***"))
}

/// `text` with the characters `SCAN MATCH` treats specially escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_of_a_prefix_are_escaped() {
        assert_eq!(glob_escape("tierstack:ns-1.a_b:"), "tierstack:ns-1.a_b:");
        assert_eq!(glob_escape(r"a*b?c[d]e\f^"), r"a\*b\?c\[d\]e\\f\^");
    }

    #[test]
    fn the_breaker_config_is_valid() {
        breaker_config(Duration::from_millis(250))
            .validate()
            .unwrap();
    }
}
