//! GitHub as the source of truth.
//!
//! Keys map to files through a route table (see [`routes`]): a file is read
//! from the raw host (`github.raw_url`), a directory listing from the
//! contents API (`github.api_url`). One pooled HTTP client (rustls, HTTP/2
//! where the server offers it) serves every request, each bounded by
//! `github.timeout`.
//!
//! How answers map onto the cache:
//!
//! | GitHub answers | the cache gets |
//! |---|---|
//! | 200 | the file's text as a JSON string (`"format": "raw"`: its bytes; a listing: a JSON array of names), with its `ETag` as the validator |
//! | 304 (to `If-None-Match` with the stored ETag) | not-modified: the stored copy's freshness is renewed, no body moves |
//! | 404 | not-found (remembered for `negative_ttl`) |
//! | 403 or 429 with `X-RateLimit-Remaining: 0`, `X-RateLimit-Reset` or `Retry-After` | a rate limit: the breaker opens until the reset |
//! | 5xx, another status, a timeout, a refused connection, a truncated body | a failure ([`ErrorKind::Source`]) |
//! | a body over `github.max_body_bytes` | a failure, and the body is not read further |
//!
//! Redirects are followed (up to 5); the token goes only to `api_url`'s
//! origin, never to the raw host nor to a redirect elsewhere. It never
//! appears in a log line, an error, the stats, `Debug` output or the cache
//! file.
//!
//! A rate limit belongs to the token (or, without one, to the address), not
//! to a process: the source's [`Source::shared_scope`] names it, and the
//! cache shares its open breaker and the latest `X-RateLimit-*` figures
//! through the L2 file with every process on it.

mod config;
pub mod routes;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Client, StatusCode, Url};

pub use config::{GitHubConfig, MAX_BODY_LIMIT, Routes, Secret, TOKEN_ENV};
pub use routes::{Format, Route, RouteTable, Target};

use super::{FetchFuture, Fetched, Loaded, RateLimit, Source};
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::key;

/// Redirects followed at most per request.
pub const MAX_REDIRECTS: usize = 5;

/// The `User-Agent` sent (GitHub refuses requests without one).
pub const USER_AGENT: &str = concat!("tierstack/", env!("CARGO_PKG_VERSION"));

/// The GitHub source; built from a [`GitHubConfig`].
pub struct GitHub {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    api: Url,
    raw: Url,
    /// `Bearer <token>`, marked sensitive; sent to `api`'s origin only.
    authorization: Option<HeaderValue>,
    max_body: u64,
    routes: RouteTable,
    scope: String,
    rate_limit: Mutex<Option<RateLimit>>,
    /// "Now", for a `Retry-After`.
    clock: Clock,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("api", &self.inner.api.as_str())
            .field("raw", &self.inner.raw.as_str())
            .field("token", &self.inner.authorization.as_ref().map(|_| "***"))
            .field("max_body", &self.inner.max_body)
            .finish_non_exhaustive()
    }
}

impl GitHub {
    /// A source for `config` (checked; the token resolved from the
    /// environment if the config has none).
    pub fn new(config: &GitHubConfig) -> Result<Self> {
        Self::with_clock(config, Clock::system())
    }

    /// [`GitHub::new`] reading "now" from `clock` (the cache's, so that a
    /// `Retry-After` and the breaker it opens count time alike).
    pub(crate) fn with_clock(config: &GitHubConfig, clock: Clock) -> Result<Self> {
        config.validate()?;
        install_crypto();
        let base = |url: &str| {
            let mut url = Url::parse(url).expect("checked by validate");
            if !url.path().ends_with('/') {
                url.set_path(&format!("{}/", url.path()));
            }
            url
        };
        let api = base(&config.api_url);
        let raw = base(&config.raw_url);
        let mut client = Client::builder();
        // Proxies from the environment (HTTPS_PROXY, NO_PROXY) are honoured,
        // except for an origin on this machine.
        if is_loopback(&api) && is_loopback(&raw) {
            client = client.no_proxy();
        }
        let client = client
            .user_agent(USER_AGENT)
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| {
                Error::new(ErrorKind::Internal, "the HTTP client could not be built").with_source(e)
            })?;
        let token = config.resolved_token();
        let scope = format!(
            "github {} {}",
            api.origin().ascii_serialization(),
            token
                .as_ref()
                .map_or_else(|| "anonymous".to_owned(), fingerprint)
        );
        let authorization = token
            .map(|token| {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| {
                        Error::new(
                            ErrorKind::InvalidConfig,
                            "the GitHub token is not a valid header value",
                        )
                    })?;
                value.set_sensitive(true);
                Ok::<_, Error>(value)
            })
            .transpose()?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                api,
                raw,
                authorization,
                max_body: config.max_body_bytes,
                routes: config.routes.table()?,
                scope,
                rate_limit: Mutex::new(None),
                clock,
            }),
        })
    }
}

impl Source for GitHub {
    fn name(&self) -> &str {
        "github"
    }

    fn serves(&self, key: &str) -> Result<bool> {
        Ok(self.inner.routes.resolve(key)?.is_some())
    }

    fn shared_scope(&self) -> Option<&str> {
        Some(&self.inner.scope)
    }

    fn rate_limit(&self) -> Option<RateLimit> {
        self.inner.with_rate_limit(|last| *last)
    }

    fn fetch(&self, key: &str, validator: Option<&str>) -> FetchFuture {
        let inner = self.inner.clone();
        let (key, validator) = (key.to_owned(), validator.map(str::to_owned));
        Box::pin(async move { inner.fetch(&key, validator.as_deref()).await })
    }
}

impl Inner {
    async fn fetch(&self, key: &str, validator: Option<&str>) -> Result<Fetched> {
        let Some(target) = self.routes.resolve(key)? else {
            return Ok(Fetched::NotFound);
        };
        let (url, suffix, format) = match &target {
            Target::File { raw_path, format } => (join(&self.raw, raw_path)?, None, *format),
            Target::Listing {
                api_path,
                git_ref,
                suffix,
            } => {
                let mut url = join(&self.api, api_path)?;
                url.query_pairs_mut().append_pair("ref", git_ref);
                (url, Some(suffix.clone()), Format::Raw)
            }
        };
        let response = self.get(url, suffix.is_some(), validator).await?;
        let status = response.status();
        let failed = || {
            source_error(format!(
                "GitHub's answer for {}: HTTP {} {}",
                key::quote(key),
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ))
        };
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_MODIFIED if validator.is_some() => {
                return Ok(Fetched::NotModified { ttl: None });
            }
            StatusCode::NOT_FOUND => return Ok(Fetched::NotFound),
            StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS => {
                let Some(until) = rate_limited_until(response.headers(), self.clock.now_ms())
                else {
                    return Err(failed());
                };
                let when = until.map_or_else(
                    || "no reset time was given".to_owned(),
                    |at| format!("it resets at {at} ms since the Unix epoch"),
                );
                return Err(Error::rate_limited(
                    format!(
                        "GitHub rate limit reached loading {} (HTTP {}); {when}",
                        key::quote(key),
                        status.as_u16(),
                    ),
                    until,
                ));
            }
            _ => return Err(failed()),
        }
        let etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = self.body(response, key).await?;
        let value = match (suffix, format) {
            (Some(suffix), _) => listing_names(&body, suffix.as_deref(), key)?,
            (None, Format::Raw) => body,
            (None, Format::Text) => json_text(&body, key)?,
        };
        let mut loaded = Loaded::new(value);
        loaded.validator = etag;
        Ok(Fetched::Value(loaded))
    }

    /// GETs `url`, following redirects; the token goes to the API's origin
    /// only.
    async fn get(
        &self,
        mut url: Url,
        api: bool,
        validator: Option<&str>,
    ) -> Result<reqwest::Response> {
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.client.get(url.clone());
            if api {
                request = request
                    .header(header::ACCEPT, "application/vnd.github+json")
                    .header("X-GitHub-Api-Version", "2022-11-28");
            }
            if let Some(validator) = validator {
                request = request.header(header::IF_NONE_MATCH, validator);
            }
            let to_api = url.origin() == self.api.origin();
            if let (true, Some(authorization)) = (to_api, &self.authorization) {
                request = request.header(header::AUTHORIZATION, authorization.clone());
            }
            let response = request.send().await.map_err(|e| request_error(&url, e))?;
            if to_api {
                self.note_rate_limit(response.headers());
            }
            if !response.status().is_redirection() || response.status() == StatusCode::NOT_MODIFIED
            {
                return Ok(response);
            }
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    source_error(format!(
                        "GitHub redirected {} (HTTP {}) without a Location",
                        redact(&url),
                        response.status().as_u16()
                    ))
                })?;
            url = url.join(location).map_err(|e| {
                source_error(format!(
                    "GitHub redirected {} to a bad Location: {e}",
                    redact(&url)
                ))
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(source_error(format!(
                    "GitHub redirected to a {} URL, which is not followed",
                    url.scheme()
                )));
            }
        }
        Err(source_error(format!(
            "GitHub redirected more than {MAX_REDIRECTS} times"
        )))
    }

    /// The body, at most `max_body` bytes.
    async fn body(&self, mut response: reqwest::Response, key: &str) -> Result<Bytes> {
        let too_big = |n: u64| {
            source_error(format!(
                "GitHub's answer for {} is {n} bytes or more, over github.max_body_bytes ({})",
                key::quote(key),
                self.max_body
            ))
        };
        if let Some(len) = response.content_length()
            && len > self.max_body
        {
            return Err(too_big(len));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            source_error(format!(
                "GitHub's answer for {} broke off after {} bytes",
                key::quote(key),
                body.len()
            ))
            .with_source(e.without_url())
        })? {
            if (body.len() + chunk.len()) as u64 > self.max_body {
                return Err(too_big((body.len() + chunk.len()) as u64));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    fn note_rate_limit(&self, headers: &HeaderMap) {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(remaining) = number("x-ratelimit-remaining") {
            let figures = RateLimit {
                limit: number("x-ratelimit-limit"),
                remaining,
                reset_at_ms: number("x-ratelimit-reset").map(|s| s.saturating_mul(1000)),
            };
            self.with_rate_limit(|last| *last = Some(figures));
        }
    }

    /// Runs `f` on the last rate-limit figures, locked inside the fork gate
    /// (see [`crate::fork`]): a forked child never finds them locked by a
    /// thread it does not have.
    fn with_rate_limit<R>(&self, f: impl FnOnce(&mut Option<RateLimit>) -> R) -> R {
        let _gate = crate::fork::fork_gate();
        f(&mut self.rate_limit.lock())
    }
}

/// When a 403 or 429 is a rate limit: `Some(until)` (`None` inside: no
/// time given), else `None`.
fn rate_limited_until(headers: &HeaderMap, now_ms: u64) -> Option<Option<u64>> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let retry_after = text("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|s| now_ms.saturating_add(s.saturating_mul(1000)));
    let reset = text("x-ratelimit-reset")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|s| s.saturating_mul(1000));
    let exhausted = text("x-ratelimit-remaining") == Some("0");
    if retry_after.is_some() {
        return Some(retry_after);
    }
    if exhausted || reset.is_some() && text("x-ratelimit-remaining").is_none() {
        return Some(reset);
    }
    None
}

/// The names in a contents-API listing: files ending with `suffix`
/// (without it) and directories, sorted; as a JSON array.
fn listing_names(body: &[u8], suffix: Option<&str>, key: &str) -> Result<Bytes> {
    #[derive(serde::Deserialize)]
    struct Item {
        name: String,
        #[serde(rename = "type")]
        kind: String,
    }
    let items: Vec<Item> = serde_json::from_slice(body).map_err(|e| {
        source_error(format!(
            "GitHub's listing for {} is not a JSON array of entries: {e}",
            key::quote(key)
        ))
    })?;
    let mut names: Vec<String> = items
        .into_iter()
        .filter_map(|item| match (item.kind.as_str(), suffix) {
            ("dir", _) => Some(item.name),
            (_, None) => Some(item.name),
            (_, Some(suffix)) => item.name.strip_suffix(suffix).map(str::to_owned),
        })
        .filter(|name| !name.is_empty())
        .collect();
    names.sort();
    names.dedup();
    Ok(Bytes::from(
        serde_json::to_vec(&names).expect("strings always serialise"),
    ))
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// A file's UTF-8 text as a JSON string.
fn json_text(body: &[u8], key: &str) -> Result<Bytes> {
    let text = std::str::from_utf8(body).map_err(|e| {
        source_error(format!(
            "GitHub's answer for {} is not UTF-8 text ({e}); give its route \"format\": \"raw\"",
            key::quote(key)
        ))
    })?;
    Ok(Bytes::from(
        serde_json::to_vec(text).expect("a string always serialises"),
    ))
}

fn join(base: &Url, path: &str) -> Result<Url> {
    base.join(path)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("a route made a bad URL: {e}")))
}

/// The URL without query or credentials, for messages.
fn redact(url: &Url) -> String {
    format!("{}{}", url.origin().ascii_serialization(), url.path())
}

fn request_error(url: &Url, err: reqwest::Error) -> Error {
    let why = if err.is_timeout() {
        "timed out (github.timeout)"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    source_error(format!("the request to {} {why}", redact(url))).with_source(err.without_url())
}

fn source_error(message: String) -> Error {
    Error::new(ErrorKind::Source, message)
}

/// A 64-bit hash of the token, naming its rate limit without holding it.
fn fingerprint(token: &Secret) -> String {
    let mut h = DefaultHasher::new();
    "tierstack github token".hash(&mut h);
    token.expose().hash(&mut h);
    format!("token-{:016x}", h.finish())
}

/// rustls needs one crypto provider per process; ring is ours.
fn install_crypto() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // Another part of the process may have installed one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn a_child_forked_while_another_thread_held_the_rate_limit_reads_it_at_once() {
        let source = GitHub::new(&GitHubConfig::default()).unwrap();
        let held = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                source.inner.with_rate_limit(|_| {
                    held.wait();
                    // Long enough for the fork below to be under way meanwhile.
                    std::thread::sleep(std::time::Duration::from_millis(200));
                });
            });
            held.wait();
            let child = crate::fork::testing::in_child(|| source.rate_limit().is_none());
            assert_eq!(child, Some(0), "the child's rate limit hung");
        });
    }

    #[test]
    fn rate_limits_are_told_by_their_headers() {
        let now = 1_000_000;
        let h = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "2000"),
        ]);
        assert_eq!(rate_limited_until(&h, now), Some(Some(2_000_000)));
        let h = headers(&[("retry-after", "30")]);
        assert_eq!(rate_limited_until(&h, now), Some(Some(1_030_000)));
        let h = headers(&[("x-ratelimit-remaining", "0")]);
        assert_eq!(rate_limited_until(&h, now), Some(None));
        let h = headers(&[("x-ratelimit-reset", "2000")]);
        assert_eq!(rate_limited_until(&h, now), Some(Some(2_000_000)));
        // A 403 with requests left is a refusal, not a rate limit.
        let h = headers(&[
            ("x-ratelimit-remaining", "12"),
            ("x-ratelimit-reset", "2000"),
        ]);
        assert_eq!(rate_limited_until(&h, now), None);
        assert_eq!(rate_limited_until(&HeaderMap::new(), now), None);
    }

    #[test]
    fn listings_keep_files_with_the_suffix_and_directories() {
        let body = br#"[{"name":"button.tsx","type":"file"},{"name":"README.md","type":"file"},
                        {"name":"card.tsx","type":"file"},{"name":"dashboard-01","type":"dir"}]"#;
        let names = listing_names(body, Some(".tsx"), "k").unwrap();
        assert_eq!(&names[..], br#"["button","card","dashboard-01"]"#);
        let err = listing_names(b"{}", Some(".tsx"), "k").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Source);
    }

    #[test]
    fn text_files_become_json_strings() {
        assert_eq!(
            &json_text(b"a \"b\"\n", "k").unwrap()[..],
            br#""a \"b\"\n""#
        );
        let err = json_text(&[0xff, 0xfe], "k").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Source);
        assert!(err.message().contains("format"), "{err}");
    }

    #[test]
    fn the_token_is_never_shown() {
        let config = GitHubConfig {
            token: Some(Secret::new("ghp_secret_value_123")),
            ..GitHubConfig::default()
        };
        let shown = format!("{config:?} {:?}", GitHub::new(&config).unwrap());
        assert!(!shown.contains("ghp_secret_value_123"), "{shown}");
        let json = serde_json::to_string(&config).unwrap();
        assert!(!json.contains("ghp_secret"), "{json}");
        let scope = GitHub::new(&config).unwrap().inner.scope.clone();
        assert!(
            scope.starts_with("github https://api.github.com token-"),
            "{scope}"
        );
        assert!(!scope.contains("secret"), "{scope}");
    }
}
