//! The values a test hands the origin and reads back: faults, the rate
//! limit, the entries of the request log, and the deliveries to the store.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One of the three listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Host {
    /// The GitHub REST contents API (`api.github.com`'s layout).
    Api,
    /// Raw file contents (`raw.githubusercontent.com`'s layout).
    Raw,
    /// Another host serving the raw layout, used as a redirect target.
    Other,
}

/// A misbehaviour to inject into the answers of one or all hosts.
///
/// The parts compose: `delay_ms` waits first; then `close` hangs up without
/// answering, or else the answer is a redirect (`redirect`), a filler body
/// (`oversize`), a canned answer (`status`), or the real one, in that order
/// of precedence; `headers` are added to (or replace) the answer's headers,
/// and `truncate` cuts its body in half.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fault {
    /// The host this fault applies to; `None`: any host.
    pub host: Option<Host>,
    /// Matched against the request path (without the query); `None`: any.
    pub path_contains: Option<String>,
    /// Applies to the next N matching requests; `None`: until cleared.
    pub times: Option<u32>,
    /// Answer this status instead of the real answer.
    pub status: Option<u16>,
    /// Extra response headers (e.g. `Retry-After`); a header of the same
    /// name (in any case) already in the answer is replaced.
    pub headers: Vec<(String, String)>,
    /// The body sent with `status` (empty if `None`).
    pub body: Option<String>,
    /// Milliseconds to wait before answering; the request is logged at once.
    pub delay_ms: u64,
    /// Send the answer's headers with the full `Content-Length`, then half
    /// of the body, then close the connection.
    pub truncate: bool,
    /// Answer 200 with a body of this many bytes and no `ETag`.
    pub oversize: Option<u64>,
    /// Answer `302 Found` to this absolute URL followed by the request's
    /// path and query (e.g. `Origin::other_url()`).
    pub redirect: Option<String>,
    /// Close the connection without answering.
    pub close: bool,
}

impl Fault {
    /// Whether this fault applies to a request to `host` for `path`.
    pub(crate) fn matches(&self, host: Host, path: &str) -> bool {
        self.host.is_none_or(|h| h == host)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|needle| path.contains(needle))
    }
}

/// The api host's rate limit, as GitHub reports it in `X-RateLimit-*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub limit: u32,
    /// Requests left in this window.
    pub remaining: u32,
    /// When the window ends, in seconds since the Unix epoch.
    pub reset: u64,
}

/// The length of a rate-limit window, as GitHub's.
pub(crate) const RATE_WINDOW_SECS: u64 = 3600;

impl RateLimit {
    /// A fresh window of 5000 requests that ends an hour after `now`.
    #[must_use]
    pub fn fresh(now: u64) -> RateLimit {
        RateLimit {
            limit: 5000,
            remaining: 5000,
            reset: now + RATE_WINDOW_SECS,
        }
    }

    /// Requests used in this window (`X-RateLimit-Used`).
    #[must_use]
    pub fn used(&self) -> u32 {
        self.limit.saturating_sub(self.remaining)
    }

    /// Starts a new window when `now` has reached `reset`.
    pub(crate) fn roll(&mut self, now: u64) {
        if now >= self.reset {
            self.remaining = self.limit;
            self.reset = now + RATE_WINDOW_SECS;
        }
    }
}

impl Default for RateLimit {
    /// A fresh window ending an hour from now.
    fn default() -> RateLimit {
        RateLimit::fresh(epoch_now())
    }
}

/// One request as the origin received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The listener it arrived on.
    pub host: Host,
    /// The method, as sent.
    pub method: String,
    /// The path, as sent (not percent-decoded), without the query.
    pub path: String,
    /// The query string after `?`, if any.
    pub query: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `If-None-Match` header, if any.
    pub if_none_match: Option<String>,
    /// The status answered; 0 while unanswered or if the connection was
    /// closed without an answer.
    pub status: u16,
}

/// One write applied to the store (`PUT` or `DELETE /store/{key}`), the
/// first time its idempotency key arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The key, percent-decoded.
    pub key: String,
    /// The request's `Idempotency-Key` header.
    pub idempotency_key: String,
    /// The value written; `None` for a delete.
    pub value: Option<Vec<u8>>,
    /// Its place among all deliveries since the start or the last reset,
    /// from 0: `origin.deliveries()[i].seq == i`.
    pub seq: u64,
}

/// Seconds since the Unix epoch.
pub(crate) fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
