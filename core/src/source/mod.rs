//! Sources of truth: what a miss in every tier loads from.
//!
//! A [`Source`] answers [`Source::fetch`] for one key with a [`Fetched`]: a
//! value (with, optionally, a validator for conditional refreshes, a TTL and
//! tags of the source's choosing), not-modified (the stored copy is still
//! good), or not-found (remembered for `negative_ttl`, never stored as
//! content). Sources that can answer many keys in one request also
//! implement [`Source::fetch_many`].
//!
//! Everything around a source call lives in the cache, once, for every
//! host: single-flight within the process and across the processes sharing
//! the L2 file, the circuit breaker, the timeouts, fail-safe serving of
//! stale copies, negative caching and refresh-ahead (see `load.rs`). A
//! source only fetches. Hosts hand in closures: [`from_fn`] for async code,
//! [`from_blocking_fn`] for code that blocks (C function pointers, Python
//! callables), run on the runtime's blocking pool.

mod func;
pub mod github;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use crate::error::Result;

pub use func::{BlockingFn, SourceFn, from_blocking_fn, from_fn, run_blocking};
pub use github::{GitHub, GitHubConfig};

/// What a source answers for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The key's value.
    Value(Loaded),
    /// The stored copy (whose validator was handed to
    /// [`Source::fetch`]) is still good: its freshness is renewed, with
    /// this TTL if given.
    NotModified {
        /// The TTL of the renewed copy; `None`: as for a new value.
        ttl: Option<Duration>,
    },
    /// The key does not exist at the source.
    NotFound,
}

impl Fetched {
    /// A value with the cache's TTL and no tags.
    pub fn value(value: impl Into<Bytes>) -> Self {
        Fetched::Value(Loaded::new(value))
    }
}

/// A value loaded from a source, with what the source says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Loaded {
    /// The bytes.
    pub value: Bytes,
    /// Its TTL; `None`: the TTL the caller gave, else `sqlite.ttl`.
    pub ttl: Option<Duration>,
    /// Tags stored with it; added to the caller's.
    pub tags: Vec<String>,
    /// An entity tag or Last-Modified date, handed back to the next fetch
    /// of the key so that the source can answer [`Fetched::NotModified`].
    pub validator: Option<String>,
}

impl Loaded {
    /// A value with no TTL, tags or validator of its own.
    pub fn new(value: impl Into<Bytes>) -> Self {
        Self {
            value: value.into(),
            ttl: None,
            tags: Vec::new(),
            validator: None,
        }
    }

    /// Sets the TTL; [`Duration::ZERO`] means none of its own.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl).filter(|t| !t.is_zero());
        self
    }

    /// Adds tags.
    #[must_use]
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Sets the validator.
    #[must_use]
    pub fn validator(mut self, validator: impl Into<String>) -> Self {
        self.validator = Some(validator.into());
        self
    }
}

impl From<Loaded> for Fetched {
    fn from(loaded: Loaded) -> Self {
        Fetched::Value(loaded)
    }
}

/// The future of one fetch.
pub type FetchFuture = Pin<Box<dyn Future<Output = Result<Fetched>> + Send + 'static>>;

/// The future of a write to the source ([`Source::store`], [`Source::remove`]).
pub type WriteFuture = Pin<Box<dyn Future<Output = Result<()>> + Send + 'static>>;

/// The future of a batched fetch: an answer per key; a key left out is
/// [`Fetched::NotFound`].
pub type FetchManyFuture =
    Pin<Box<dyn Future<Output = Result<HashMap<String, Fetched>>> + Send + 'static>>;

/// A source of truth. Implementations only fetch; the cache does the rest
/// (see the module docs). `Send + Sync`: fetches may run on any thread.
pub trait Source: Send + Sync + 'static {
    /// A short name for logs and errors (never a secret).
    fn name(&self) -> &str {
        "source"
    }

    /// Fetches `key`. `validator` is the one stored with the copy held, if
    /// any, for a conditional request.
    ///
    /// An error of kind [`crate::ErrorKind::Source`] is the usual failure;
    /// [`crate::Error::rate_limited`] tells the breaker to stay open until
    /// the source's reset time.
    fn fetch(&self, key: &str, validator: Option<&str>) -> FetchFuture;

    /// Fetches many keys in one request, if the source can; `None` (the
    /// default): the cache calls [`Source::fetch`] per key, concurrently.
    fn fetch_many(&self, keys: &[String]) -> Option<FetchManyFuture> {
        let _ = keys;
        None
    }

    /// Whether this source has anything for `key`, told without a request.
    /// `Ok(false)`: a read of `key` that misses every tier is a plain miss
    /// and the source is not asked. An error (of kind
    /// [`crate::ErrorKind::InvalidKey`]) rejects the key before any request.
    /// The default serves every key.
    fn serves(&self, key: &str) -> Result<bool> {
        let _ = key;
        Ok(true)
    }

    /// The name under which this source's rate limit and open breaker are
    /// shared, through the L2 file, by every process on it (a rate limit
    /// belongs to a token or an address, not to one process); `None` (the
    /// default): not shared.
    fn shared_scope(&self) -> Option<&str> {
        None
    }

    /// The latest rate-limit figures the source was told, if any.
    fn rate_limit(&self) -> Option<RateLimit> {
        None
    }

    /// Whether this source implements [`Source::store`] and
    /// [`Source::remove`], as the write-through and write-behind
    /// strategies need; `false` (the default): read-only.
    fn writable(&self) -> bool {
        false
    }

    /// Stores `value` under `key` at the source (write-through, and the
    /// write-behind outbox). `idempotency_key` names this write: a retry
    /// of it, even by another process after a crash, carries the same one,
    /// so that a source that remembers them can apply a write once. An
    /// error is retried by the outbox (with backoff) and returned by
    /// write-through. The default refuses: the source is read-only.
    fn store(&self, key: &str, value: Bytes, idempotency_key: &str) -> WriteFuture {
        let _ = (value, idempotency_key);
        refuse_write(self.name(), key)
    }

    /// Removes `key` at the source; see [`Source::store`].
    fn remove(&self, key: &str, idempotency_key: &str) -> WriteFuture {
        let _ = idempotency_key;
        refuse_write(self.name(), key)
    }
}

/// The answer of a read-only source (named `name`) asked to write `key`:
/// an [`crate::ErrorKind::Source`] error. The core never asks one (it
/// refuses a read-only source with write-through or write-behind at open);
/// [`Source::store`] and [`Source::remove`] answer this by default, and a
/// source that is writable only when built with writes answers it without
/// them.
pub fn refuse_write(name: &str, key: &str) -> WriteFuture {
    let err = crate::Error::new(
        crate::ErrorKind::Source,
        format!(
            "{name} is read-only: it cannot write {}",
            crate::key::quote(key)
        ),
    );
    Box::pin(std::future::ready(Err(err)))
}

/// A source's rate-limit figures, as its last answer told them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RateLimit {
    /// Requests allowed per period, if told.
    pub limit: Option<u64>,
    /// Requests left in this period.
    pub remaining: u64,
    /// When the period ends, in ms since the Unix epoch, if told.
    pub reset_at_ms: Option<u64>,
}
