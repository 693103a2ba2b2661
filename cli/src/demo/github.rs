//! Step 7 of the demo: GitHub as the source of truth, read through the
//! cache from a GitHub-shaped origin on loopback (`tierstack-origin`,
//! started in this process): no network beyond 127.0.0.1, no token. The
//! origin counts every request it receives, so each claim about requests
//! is checked against the origin's own log.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tierstack::blocking::Cache;
use tierstack::{BreakerState, Config, Error, ErrorKind, Lookup, Result, Tier};
use tierstack_origin::{COMPONENTS, Fault, Origin, RateLimit, Request};

use super::{check, describe, now_ms};
use crate::format;
use crate::out::Out;

/// The TTL of both tiers: short, so the copy expires within the step.
const TTL: Duration = Duration::from_millis(400);
/// Consecutive failures that open the breaker.
const THRESHOLD: u32 = 3;
/// The breaker's first open period (plus up to 10 % jitter).
const BREAKER_TIMEOUT: Duration = Duration::from_millis(500);
/// Waited past a moment the breaker or the origin's clock must reach.
const MARGIN: Duration = Duration::from_millis(30);

const BUTTON: &str = "component:react:button";
const BUTTON_PATH: &str = "/shadcn-ui/ui/main/apps/v4/registry/new-york-v4/ui/button.tsx";

/// The cache's config: the file at `path`, short TTLs and a quick breaker,
/// GitHub at the origin's two hosts. The placeholder token keeps a
/// `GITHUB_TOKEN` of the environment from being read (and sent, even to
/// loopback).
fn config(origin: &Origin, path: &Path) -> Result<Config> {
    let json = serde_json::json!({
        "sqlite": {"path": path, "ttl": TTL.as_secs_f64()},
        "memory": {"ttl": TTL.as_secs_f64()},
        "ttl_jitter": 0.0,
        "refresh_ahead": 0.0,
        "circuit_breaker": {"threshold": THRESHOLD, "timeout": BREAKER_TIMEOUT.as_secs_f64()},
        "github": {
            "api_url": origin.api_url(),
            "raw_url": origin.raw_url(),
            "timeout": 5,
            "token": "demo-placeholder-not-a-token",
        },
    });
    Config::from_json(&json.to_string())
}

/// The origin's requests since `from` (an index into its log).
fn since(origin: &Origin, from: usize) -> Vec<Request> {
    origin.requests().into_iter().skip(from).collect()
}

fn show(requests: &[Request]) -> String {
    let shown: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
        .collect();
    format!("{} requests: {shown:?}", requests.len())
}

/// Reads `key` through the cache (memory, file, GitHub) and prints the
/// outcome.
fn read(out: &mut Out, cache: &Cache, key: &str) -> Result<Result<Option<Lookup>>> {
    let result = cache.lookup(key);
    match &result {
        Ok(Some(hit)) => say!(
            out,
            "   read {key} -> from {} ({} bytes{})",
            hit.tier,
            hit.value.len(),
            if hit.stale { ", stale" } else { "" }
        ),
        Ok(None) => say!(out, "   read {key} -> not found"),
        Err(e) => say!(out, "   read {key} -> {}: {}", e.kind(), e.message()),
    }
    Ok(result)
}

fn describe_result(result: &Result<Option<Lookup>>) -> String {
    match result {
        Ok(hit) => describe(hit),
        Err(e) => format!("error {}: {}", e.kind(), e.message()),
    }
}

/// Sleeps until `at_ms` (ms since the Unix epoch) has passed, plus a margin.
fn sleep_until(at_ms: u64) -> Duration {
    let wait = Duration::from_millis(at_ms.saturating_sub(now_ms())) + MARGIN;
    std::thread::sleep(wait);
    wait
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::Io, format!("{what}: {e}")).with_source(e)
}

/// Step 7 on its own file.
pub(super) fn run(out: &mut Out, path: &Path) -> Result<()> {
    say!(out, "");
    say!(
        out,
        "7. GitHub as the source of truth (a GitHub-shaped origin on loopback: no network, no token)"
    );
    let origin = Origin::start().map_err(io("starting the loopback origin"))?;
    say!(
        out,
        "   origin: api {}, raw {}; {} components seeded",
        origin.api_url(),
        origin.raw_url(),
        COMPONENTS.len()
    );
    say!(
        out,
        "   config: github at the origin, ttl {} s, circuit_breaker.threshold {THRESHOLD}, \
         circuit_breaker.timeout {} s",
        TTL.as_secs_f64(),
        BREAKER_TIMEOUT.as_secs_f64()
    );
    first_reads(out, &origin, path)?;
    failures_and_breaker(out, &origin, path)?;
    rate_limit(out, &origin, path)
}

/// The first read goes to the origin; then memory; then the file after a
/// restart.
fn first_reads(out: &mut Out, origin: &Origin, path: &Path) -> Result<()> {
    let cache = Cache::open(config(origin, path)?)?;
    let first = read(out, &cache, BUTTON)?;
    let requests = since(origin, 0);
    let from_source = first
        .as_ref()
        .is_ok_and(|h| h.as_ref().is_some_and(|h| h.tier == Tier::Source));
    check(
        out,
        from_source
            && requests.len() == 1
            && requests[0].path == BUTTON_PATH
            && requests[0].status == 200,
        &format!("tier \"source\": 1 request to the origin, GET {BUTTON_PATH} -> 200"),
        || format!("{}; {}", describe_result(&first), show(&requests)),
    )?;
    let value = first?.map(|h| h.value).unwrap_or_default();
    let again = read(out, &cache, BUTTON)?;
    check(
        out,
        again
            .as_ref()
            .is_ok_and(|h| h.as_ref().is_some_and(|h| h.tier == Tier::Memory))
            && origin.count() == 1,
        "tier \"memory\": no further request",
        || format!("{}; {}", describe_result(&again), show(&since(origin, 0))),
    )?;
    cache.close()?;
    say!(
        out,
        "   closed the cache and opened the file again, as a restarted process would"
    );
    let cache = Cache::open(config(origin, path)?)?;
    let restarted = read(out, &cache, BUTTON)?;
    check(
        out,
        restarted.as_ref().is_ok_and(|h| {
            h.as_ref()
                .is_some_and(|h| h.tier == Tier::Sqlite && h.value == value)
        }) && origin.count() == 1,
        "tier \"sqlite\": the same bytes from the file, 0 requests",
        || {
            format!(
                "{}; {}",
                describe_result(&restarted),
                show(&since(origin, 0))
            )
        },
    )?;
    cache.close()
}

/// The origin fails: the stale copy is served; the breaker opens after
/// its threshold, half-opens after its timeout (the probe revalidates
/// with a 304), and closes.
fn failures_and_breaker(out: &mut Out, origin: &Origin, path: &Path) -> Result<()> {
    let cache = Cache::open(config(origin, path)?)?;
    std::thread::sleep(TTL + MARGIN);
    origin.fault(Fault {
        status: Some(503),
        ..Fault::default()
    });
    say!(
        out,
        "   slept {} ms: the copy expired; the origin now answers 503 to everything",
        (TTL + MARGIN).as_millis()
    );
    let from = origin.count();
    let stale = read(out, &cache, BUTTON)?;
    let requests = since(origin, from);
    check(
        out,
        stale.as_ref().is_ok_and(|h| {
            h.as_ref()
                .is_some_and(|h| h.stale && h.tier == Tier::Sqlite)
        }) && requests.len() == 1
            && requests[0].status == 503,
        "the origin failed (503): the expired copy was served, marked stale, instead of the error",
        || format!("{}; {}", describe_result(&stale), show(&requests)),
    )?;
    let mut errors = Vec::new();
    for key in ["component:react:card", "component:react:dialog"] {
        errors.push(read(out, &cache, key)?);
    }
    let status = cache.breaker_status();
    let requests = since(origin, from);
    check(
        out,
        errors
            .iter()
            .all(|e| e.as_ref().is_err_and(|e| e.kind() == ErrorKind::Source))
            && requests.len() == 3
            && status.state == BreakerState::Open,
        &format!("{THRESHOLD} failures in a row (circuit_breaker.threshold): the breaker is open"),
        || format!("{status:?}; {}", show(&requests)),
    )?;
    let from = origin.count();
    let refused = read(out, &cache, "component:react:input")?;
    check(
        out,
        refused
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::SourceUnavailable)
            && origin.count() == from,
        "open: the origin is not asked (0 requests); with no copy the caller gets source_unavailable",
        || {
            format!(
                "{}; {}",
                describe_result(&refused),
                show(&since(origin, from))
            )
        },
    )?;

    let next = status.next_attempt_at.ok_or_else(|| {
        Error::new(
            ErrorKind::Internal,
            "the open breaker names no next_attempt_at",
        )
    })?;
    origin.clear_faults();
    let slept = sleep_until(next);
    say!(
        out,
        "   slept {} ms to next_attempt_at ({}); the origin is healthy again",
        slept.as_millis(),
        format::utc(next)
    );
    let from = origin.count();
    let probe = read(out, &cache, BUTTON)?;
    let requests = since(origin, from);
    let state = cache.breaker_status().state;
    check(
        out,
        state == BreakerState::HalfOpen && requests.len() == 1,
        "half-open: one probe was admitted (1 request)",
        || format!("{state}; {}", show(&requests)),
    )?;
    check(
        out,
        probe
            .as_ref()
            .is_ok_and(|h| h.as_ref().is_some_and(|h| !h.stale))
            && requests.len() == 1
            && requests[0].if_none_match.is_some()
            && requests[0].status == 304,
        "the probe revalidated the expired copy: If-None-Match -> 304, no body; \
         the copy is fresh again (stale false)",
        || format!("{}; {requests:?}", describe_result(&probe)),
    )?;
    let from = origin.count();
    let second = read(out, &cache, "component:react:card")?;
    let status = cache.breaker_status();
    let requests = since(origin, from);
    check(
        out,
        second.as_ref().is_ok_and(Option::is_some)
            && status.state == BreakerState::Closed
            && requests.len() == 1
            && requests[0].status == 200,
        "a second successful probe (circuit_breaker.success_threshold 2) closed the breaker",
        || {
            format!(
                "{}; {status:?}; {}",
                describe_result(&second),
                show(&requests)
            )
        },
    )?;
    cache.close()
}

/// The origin's rate limit is used up: the breaker holds off until its
/// reset, with no request, then the listing loads.
fn rate_limit(out: &mut Out, origin: &Origin, path: &Path) -> Result<()> {
    let cache = Cache::open(config(origin, path)?)?;
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Whole seconds, as GitHub gives it: 1 to 2 s from now.
    let reset = now_s + 2;
    origin.rate_limit(RateLimit {
        limit: 60,
        remaining: 0,
        reset,
    });
    say!(
        out,
        "   the origin's API rate limit is used up until {} (X-RateLimit-Reset {reset})",
        format::utc(reset * 1000)
    );
    let from = origin.count();
    let limited = read(out, &cache, "components:react")?;
    let status = cache.breaker_status();
    let requests = since(origin, from);
    check(
        out,
        limited
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::Source && e.message().contains("rate limit"))
            && requests.len() == 1
            && requests[0].status == 403,
        "403 with X-RateLimit-Remaining 0: an error of kind source naming the rate limit",
        || format!("{}; {}", describe_result(&limited), show(&requests)),
    )?;
    check(
        out,
        status.state == BreakerState::Open && status.next_attempt_at == Some(reset * 1000),
        "the breaker is open until the reset exactly (next_attempt_at = X-RateLimit-Reset × 1000)",
        || format!("{status:?}"),
    )?;
    let from = origin.count();
    let mut refused = Vec::new();
    for key in ["component:react:dialog", "components:react"] {
        refused.push(read(out, &cache, key)?);
    }
    check(
        out,
        refused.iter().all(|r| {
            r.as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::SourceUnavailable)
        }) && origin.count() == from,
        "until the reset: source_unavailable, 0 requests (the raw host is not asked either)",
        || {
            let seen: Vec<String> = refused.iter().map(describe_result).collect();
            format!("{seen:?}; {}", show(&since(origin, from)))
        },
    )?;
    let slept = sleep_until(reset * 1000);
    say!(out, "   slept {} ms to the reset", slept.as_millis());
    let from = origin.count();
    let listing = read(out, &cache, "components:react")?;
    let requests = since(origin, from);
    let names: Vec<String> = match &listing {
        Ok(Some(hit)) => serde_json::from_slice(&hit.value).unwrap_or_default(),
        _ => Vec::new(),
    };
    check(
        out,
        names.len() == COMPONENTS.len() && requests.len() == 1 && requests[0].status == 200,
        &format!(
            "after the reset: 1 request, and the listing names all {} components",
            COMPONENTS.len()
        ),
        || format!("{} names; {}", names.len(), show(&requests)),
    )?;
    let figures = cache.stats().source.rate_limit;
    check(
        out,
        figures.is_some_and(|r| r.limit == Some(60) && r.remaining == 59),
        "the stats carry GitHub's figures: source.rate_limit limit 60, remaining 59",
        || format!("{figures:?}"),
    )?;
    cache.close()
}
