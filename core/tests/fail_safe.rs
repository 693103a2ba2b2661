//! Fail-safe loading: a stale copy served while the source fails, is slow
//! or is held off by an open breaker (a rate limit keeps it open until the
//! source's reset); a load past the hard timeout abandoned.

#[path = "support/loading.rs"]
mod loading_support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tierstack::blocking::Cache;
use tierstack::{
    BreakerState, CircuitBreakerConfig, Error, ErrorKind, Fetched, GetOptions, ManualClock, Tier,
};

use loading_support::{KEY, counted, text};

/// A cache on `path` whose entries expire after 1 s of the manual clock.
fn stale_setup(path: &Path, clock: &ManualClock) -> Cache {
    Cache::builder()
        .sqlite_path(path)
        .sqlite_ttl(Duration::from_secs(1))
        .ttl_jitter(0.0)
        .refresh_ahead(0.0)
        .soft_timeout(Duration::from_millis(200))
        .clock(clock.clone())
        .build_blocking()
        .unwrap()
}

fn failing(
    calls: &Arc<AtomicUsize>,
) -> impl FnOnce(&str) -> tierstack::Result<Fetched> + Send + use<> {
    let calls = calls.clone();
    move |_| {
        calls.fetch_add(1, Ordering::SeqCst);
        Err(Error::new(ErrorKind::Source, "upstream is down"))
    }
}

#[test]
fn a_failing_source_serves_the_stale_copy_and_without_one_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let cache = stale_setup(&dir.path().join("c.db"), &clock);
    let calls = Arc::new(AtomicUsize::new(0));
    cache
        .get_or_load(
            KEY,
            counted(&calls, "v1", Duration::ZERO),
            GetOptions::new(),
        )
        .unwrap();
    clock.advance(Duration::from_secs(5));
    let found = cache
        .lookup_or_load(KEY, failing(&calls), GetOptions::new())
        .unwrap()
        .unwrap();
    assert_eq!(
        (&found.value[..], found.tier, found.stale),
        (&b"v1"[..], Tier::Sqlite, true)
    );
    assert_eq!(found.age, Duration::from_secs(5));
    let err = cache
        .get_or_load("no-copy", failing(&calls), GetOptions::new())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert!(err.message().contains("upstream is down"), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let stats = cache.stats().source;
    assert_eq!((stats.failures, stats.stale_served), (2, 1));
    // Past max_stale, the copy is gone and the error is the caller's.
    clock.advance(Duration::from_secs(2 * 86_400));
    let err = cache
        .get_or_load(KEY, failing(&calls), GetOptions::new())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
}

#[test]
fn an_open_breaker_serves_the_stale_copy_without_calling_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let cache = stale_setup(&dir.path().join("c.db"), &clock);
    let calls = Arc::new(AtomicUsize::new(0));
    cache
        .get_or_load(
            KEY,
            counted(&calls, "v1", Duration::ZERO),
            GetOptions::new(),
        )
        .unwrap();
    clock.advance(Duration::from_secs(5));
    cache.breaker_open();
    let found = cache
        .lookup_or_load(
            KEY,
            counted(&calls, "v2", Duration::ZERO),
            GetOptions::new(),
        )
        .unwrap()
        .unwrap();
    assert_eq!((&found.value[..], found.stale), (&b"v1"[..], true));
    let err = cache
        .get_or_load(
            "other",
            counted(&calls, "v2", Duration::ZERO),
            GetOptions::new(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourceUnavailable);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the source was not called");
    assert_eq!(cache.stats().source.rejected, 2);
    cache.breaker_close();
    let found = cache
        .lookup_or_load(
            KEY,
            counted(&calls, "v2", Duration::ZERO),
            GetOptions::new(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        (&found.value[..], found.tier, found.stale),
        (&b"v2"[..], Tier::Source, false)
    );
}

#[test]
fn a_slow_source_past_the_soft_timeout_serves_stale_then_fills_the_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let cache = stale_setup(&dir.path().join("c.db"), &clock);
    let calls = Arc::new(AtomicUsize::new(0));
    cache
        .get_or_load(
            KEY,
            counted(&calls, "v1", Duration::ZERO),
            GetOptions::new(),
        )
        .unwrap();
    clock.advance(Duration::from_secs(5));
    let started = Instant::now();
    let found = cache
        .lookup_or_load(
            KEY,
            counted(&calls, "v2", Duration::from_millis(600)),
            GetOptions::new(),
        )
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert_eq!((&found.value[..], found.stale), (&b"v1"[..], true));
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(250),
        "served stale after {took:?}, soft_timeout 200 ms"
    );
    // The fetch goes on in the background and fills the tiers.
    std::thread::sleep(Duration::from_millis(700));
    let found = cache.lookup_cached(KEY).unwrap().unwrap();
    assert_eq!((&found.value[..], found.tier), (&b"v2"[..], Tier::Memory));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn a_load_past_the_hard_timeout_is_abandoned_and_counts_as_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("c.db"))
        .soft_timeout(Duration::from_millis(50))
        .hard_timeout(Duration::from_millis(200))
        .build_blocking()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let err = cache
        .get_or_load(
            KEY,
            counted(&calls, "late", Duration::from_millis(800)),
            GetOptions::new(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_millis(400));
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        !cache.has(KEY).unwrap(),
        "an abandoned fetch stores nothing"
    );
    let stats = cache.stats();
    assert_eq!((stats.source.timeouts, stats.source.failures), (1, 1));
    assert_eq!(stats.breaker.failure_count, 1);
}

#[test]
fn a_rate_limited_source_keeps_the_breaker_open_until_its_reset() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("c.db"))
        .circuit_breaker(CircuitBreakerConfig {
            threshold: 5,
            ..CircuitBreakerConfig::default()
        })
        .clock(clock.clone())
        .build_blocking()
        .unwrap();
    let reset = clock.now_ms() + 300_000;
    let err = cache
        .get_or_load(
            KEY,
            move |_| Err(Error::rate_limited("rate limited", Some(reset))),
            GetOptions::new(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    let status = cache.breaker_status();
    assert_eq!(status.state, BreakerState::Open);
    assert_eq!(status.next_attempt_at, Some(reset));
    assert_eq!(
        cache.breaker_status(),
        status,
        "reading the status changes nothing"
    );
    clock.advance(Duration::from_secs(299));
    let err = cache
        .get_or_load(KEY, |_| Ok(Fetched::value("v")), GetOptions::new())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourceUnavailable);
    clock.advance(Duration::from_secs(2));
    let value = cache
        .get_or_load(KEY, |_| Ok(Fetched::value("v")), GetOptions::new())
        .unwrap();
    assert_eq!(text(value).as_deref(), Some("v"));
    assert_eq!(cache.breaker_status().state, BreakerState::HalfOpen);
}
