//! GitHub failing: server errors, a slow origin, a refused connection, broken
//! bodies and unsafe keys, each against a GitHub-shaped origin on loopback
//! (`tierstack-origin`: a real HTTP server that counts its requests and injects
//! faults). Every scenario asserts the origin's request count exactly.

#[path = "support/github.rs"]
mod github_support;

use std::time::{Duration, Instant};

use serde_json::json;
use tierstack::{BreakerState, ErrorKind};
use tierstack_origin::{Fault, Origin};

use github_support::{BUTTON, open, with_expired_button};

#[test]
fn server_errors_serve_the_stale_copy_then_open_the_breaker() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cache, original, _clock) = with_expired_button(
        &origin,
        dir.path(),
        json!({"circuit_breaker": {"threshold": 3, "timeout": 60}}),
    );
    for status in [500, 502, 503] {
        origin.fault(Fault {
            status: Some(status),
            times: Some(1),
            ..Fault::default()
        });
        let served = cache.lookup(BUTTON).unwrap().unwrap();
        assert_eq!((served.stale, &served.value), (true, &original), "{status}");
    }
    assert_eq!(origin.count(), 4);
    assert_eq!(cache.breaker_status().state, BreakerState::Open);

    // Open: no request; the stale copy still; without one, the error.
    let served = cache.lookup(BUTTON).unwrap().unwrap();
    assert!(served.stale);
    let err = cache.get("component:react:card").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourceUnavailable);
    assert_eq!(origin.count(), 4);
    assert_eq!(cache.stats().source.rejected, 2);
}

#[test]
fn without_a_stale_copy_a_server_error_is_a_source_error() {
    let origin = Origin::start().unwrap();
    origin.fault(Fault {
        status: Some(503),
        times: Some(1),
        ..Fault::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&origin, &dir.path().join("c.db"), json!({}));
    let err = cache.get(BUTTON).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert!(err.message().contains("503"), "{err}");
    // Nothing was stored: the next read asks again.
    assert!(cache.get(BUTTON).unwrap().is_some());
    assert_eq!(origin.count(), 2);
}

#[test]
fn a_slow_origin_serves_stale_at_the_soft_timeout_and_fails_at_the_hard_one() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cache, original, _clock) = with_expired_button(
        &origin,
        dir.path(),
        json!({"fail_safe": {"soft_timeout": 0.2, "hard_timeout": 0.6}}),
    );
    origin.fault(Fault {
        delay_ms: 400,
        times: Some(1),
        ..Fault::default()
    });
    let started = Instant::now();
    let served = cache.lookup(BUTTON).unwrap().unwrap();
    let took = started.elapsed();
    assert_eq!((served.stale, &served.value), (true, &original));
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(250),
        "{took:?}"
    );
    // The background fetch lands and fills the tiers.
    std::thread::sleep(Duration::from_millis(400));
    let filled = cache.lookup(BUTTON).unwrap().unwrap();
    assert!(!filled.stale);
    assert_eq!(origin.count(), 2);

    // Past the hard timeout, with no stale copy: a timeout.
    origin.fault(Fault {
        delay_ms: 1500,
        times: Some(1),
        ..Fault::default()
    });
    let err = cache.get("component:react:card").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(cache.stats().source.timeouts, 1);
}

#[test]
fn a_refused_connection_is_a_failure() {
    let origin = Origin::start().unwrap();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = open(
        &origin,
        &dir.path().join("c.db"),
        json!({"github": {"raw_url": format!("http://127.0.0.1:{closed}")}}),
    );
    let err = cache.get(BUTTON).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert!(err.message().contains("could not connect"), "{err}");
    assert_eq!(cache.stats().source.failures, 1);
}

#[test]
fn truncated_and_oversized_bodies_are_failures_and_nothing_is_stored() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = open(
        &origin,
        &dir.path().join("c.db"),
        json!({"github": {"max_body_bytes": 100_000}}),
    );
    origin.fault(Fault {
        truncate: true,
        times: Some(1),
        ..Fault::default()
    });
    let err = cache.get(BUTTON).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert!(err.message().contains("broke off"), "{err}");

    origin.fault(Fault {
        oversize: Some(200_000),
        times: Some(1),
        ..Fault::default()
    });
    let err = cache.get(BUTTON).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert!(err.message().contains("max_body_bytes"), "{err}");
    assert_eq!(cache.stats().source.failures, 2);
    assert_eq!(cache.lookup_cached(BUTTON).unwrap(), None);
    assert_eq!(origin.count(), 2);
}

#[test]
fn traversal_keys_are_invalid_and_make_no_request() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&origin, &dir.path().join("c.db"), json!({}));
    for key in [
        "component:react:../../../etc/passwd",
        "component:react:..",
        "component:react:a/b",
        "component:react:a\\b",
        "component:react:%2e%2e",
        "component:react:%2fetc",
        "component-demo:react:%41",
        "block:react:.git",
    ] {
        let err = cache.get(key).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidKey, "{key}");
        let err = cache.mget(&[key]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidKey, "{key}");
    }
    assert_eq!(origin.count(), 0);
    assert_eq!(cache.stats().source.requests, 0);
}
