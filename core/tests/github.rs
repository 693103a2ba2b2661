//! GitHub as the source of truth, against a GitHub-shaped origin on
//! loopback (`tierstack-origin`: a real HTTP server that counts its
//! requests and injects faults). Every scenario asserts the origin's
//! request count exactly.

mod support;

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tierstack::blocking::Cache;
use tierstack::{BreakerState, Config, ErrorKind, Tier};
use tierstack_origin::{Fault, Host, Origin, RateLimit};

use support::{CHILD_ENV, child_field, child_stdout, run_child};

const BASE: &str = "apps/v4/registry/new-york-v4";
const BUTTON: &str = "component:react:button";

fn config(origin: &Origin, path: &Path, extra: serde_json::Value) -> Config {
    let mut config = json!({
        "sqlite": {"path": path},
        "ttl_jitter": 0.0,
        "github": {"api_url": origin.api_url(), "raw_url": origin.raw_url(), "timeout": 5},
    });
    merge(&mut config, extra);
    Config::from_json(&config.to_string()).unwrap()
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(into), serde_json::Value::Object(from)) => {
            for (k, v) in from {
                merge(into.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (into, from) => *into = from,
    }
}

fn open(origin: &Origin, path: &Path, extra: serde_json::Value) -> Cache {
    Cache::open(config(origin, path, extra)).unwrap()
}

/// A cache on a new file in `dir` with 1 s TTLs (and `extra`), holding a
/// copy of [`BUTTON`] fetched with one request and just expired; and the copy.
fn with_expired_button(
    origin: &Origin,
    dir: &Path,
    extra: serde_json::Value,
) -> (Cache, tierstack::Bytes) {
    let mut settings = json!({"sqlite": {"ttl": 1}, "memory": {"ttl": 1}});
    merge(&mut settings, extra);
    let cache = open(origin, &dir.join("c.db"), settings);
    let copy = cache.get(BUTTON).unwrap().unwrap();
    assert_eq!(origin.requests()[0].status, 200);
    std::thread::sleep(Duration::from_millis(1100));
    (cache, copy)
}

/// The first line of a file's text, stored as a JSON string.
fn first_line(value: &[u8]) -> String {
    text(value).lines().next().unwrap_or_default().to_owned()
}

/// A file's text, stored as a JSON string.
fn text(value: &[u8]) -> String {
    serde_json::from_slice(value).expect("a file is stored as a JSON string")
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_component_is_fetched_once_then_served_from_memory_and_the_file() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let cache = open(&origin, &path, json!({}));

    let first = cache.lookup(BUTTON).unwrap().unwrap();
    assert_eq!(first.tier, Tier::Source);
    assert_eq!(
        text(&first.value),
        tierstack_origin::seed_content(&format!("{BASE}/ui/button.tsx"))
    );
    assert_eq!(origin.count(), 1);
    let request = &origin.requests()[0];
    assert_eq!(request.host, Host::Raw);
    assert_eq!(
        request.path,
        format!("/shadcn-ui/ui/main/{BASE}/ui/button.tsx")
    );

    for _ in 0..3 {
        let again = cache.lookup(BUTTON).unwrap().unwrap();
        assert_eq!((again.tier, &again.value), (Tier::Memory, &first.value));
    }
    assert_eq!(origin.count(), 1);
    cache.close().unwrap();

    // A restart reads the file: no request.
    let cache = open(&origin, &path, json!({}));
    let restarted = cache.lookup(BUTTON).unwrap().unwrap();
    assert_eq!(
        (restarted.tier, &restarted.value),
        (Tier::Sqlite, &first.value)
    );
    assert_eq!(origin.count(), 1);
}

#[test]
fn demos_blocks_and_listings_follow_the_preset_routes() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&origin, &dir.path().join("c.db"), json!({}));

    let demo = cache.get("component-demo:react:dialog").unwrap().unwrap();
    assert_eq!(
        first_line(&demo),
        format!("// {BASE}/examples/dialog-demo.tsx")
    );
    let block = cache.get("block:react:login-01").unwrap().unwrap();
    assert_eq!(first_line(&block), format!("// {BASE}/blocks/login-01.tsx"));

    let listing = cache.get("components:react").unwrap().unwrap();
    let names: Vec<String> = serde_json::from_slice(&listing).unwrap();
    let mut expected: Vec<String> = tierstack_origin::COMPONENTS
        .iter()
        .map(|s| s.to_string())
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    let blocks: Vec<String> =
        serde_json::from_slice(&cache.get("blocks:react").unwrap().unwrap()).unwrap();
    let mut expected: Vec<String> = tierstack_origin::BLOCKS
        .iter()
        .map(|s| s.to_string())
        .collect();
    expected.sort();
    assert_eq!(blocks, expected);
    assert_eq!(origin.count(), 4);
    let listing_request = origin
        .requests()
        .into_iter()
        .find(|r| r.host == Host::Api)
        .unwrap();
    assert_eq!(
        listing_request.path,
        format!("/repos/shadcn-ui/ui/contents/{BASE}/ui")
    );
    assert_eq!(listing_request.query.as_deref(), Some("ref=main"));

    // A key no route serves is a plain miss: no request.
    assert_eq!(cache.get("session:42").unwrap(), None);
    assert_eq!(cache.get("component:vue:button").unwrap(), None);
    assert_eq!(origin.count(), 4);
}

#[test]
fn unchanged_content_is_revalidated_with_a_304_and_no_body() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cache, first) = with_expired_button(&origin, dir.path(), json!({}));

    let renewed = cache.lookup(BUTTON).unwrap().unwrap();
    assert_eq!(renewed.value, first);
    assert!(!renewed.stale);
    let requests = origin.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].status, 304);
    assert!(requests[1].if_none_match.is_some());
    // Renewed: fresh again, from memory, with no request.
    assert_eq!(cache.lookup(BUTTON).unwrap().unwrap().tier, Tier::Memory);
    assert_eq!(origin.count(), 2);

    // Changed content comes back whole.
    origin.set_file(
        "shadcn-ui",
        "ui",
        "main",
        &format!("{BASE}/ui/button.tsx"),
        b"// changed",
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(text(&cache.get(BUTTON).unwrap().unwrap()), "// changed");
    assert_eq!(origin.requests()[2].status, 200);
}

#[test]
fn a_missing_component_is_not_found_and_remembered() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&origin, &dir.path().join("c.db"), json!({}));
    assert_eq!(cache.get("component:react:no-such-thing").unwrap(), None);
    assert_eq!(cache.get("component:react:no-such-thing").unwrap(), None);
    assert_eq!(origin.count(), 1);
    let stats = cache.stats();
    assert_eq!((stats.source.not_found, stats.source.negative_hits), (1, 1));
}

#[test]
fn a_hundred_concurrent_gets_of_a_missing_component_make_one_request() {
    let origin = Origin::start().unwrap();
    origin.fault(Fault {
        delay_ms: 200,
        times: Some(1),
        ..Fault::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&origin, &dir.path().join("c.db"), json!({}));
    let start = Arc::new(Barrier::new(100));
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let (cache, start) = (cache.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                cache.get("component:react:card").unwrap().unwrap()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(
            first_line(&t.join().unwrap()),
            format!("// {BASE}/ui/card.tsx")
        );
    }
    assert_eq!(origin.count(), 1);
}

#[test]
fn server_errors_serve_the_stale_copy_then_open_the_breaker() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cache, original) = with_expired_button(
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
    let (cache, original) = with_expired_button(
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

#[test]
fn a_rate_limit_opens_the_breaker_until_the_reset_then_probes() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&origin, &dir.path().join("c.db"), json!({}));
    let reset = now_s() + 2;
    origin.fault(Fault {
        status: Some(403),
        headers: vec![
            ("X-RateLimit-Remaining".into(), "0".into()),
            ("X-RateLimit-Reset".into(), reset.to_string()),
        ],
        body: Some(r#"{"message":"API rate limit exceeded"}"#.into()),
        times: Some(1),
        ..Fault::default()
    });
    let err = cache.get(BUTTON).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert!(err.message().contains("rate limit"), "{err}");
    let status = cache.breaker_status();
    assert_eq!(status.state, BreakerState::Open);
    assert_eq!(status.next_attempt_at, Some(reset * 1000));

    // Until the reset: no request at all.
    for key in [BUTTON, "component:react:card", "components:react"] {
        assert_eq!(
            cache.get(key).unwrap_err().kind(),
            ErrorKind::SourceUnavailable
        );
    }
    assert_eq!(origin.count(), 1);

    // After it: one probe, which closes the breaker (success_threshold 2
    // takes a second).
    let wait = (reset * 1000).saturating_sub(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    );
    std::thread::sleep(Duration::from_millis(wait + 50));
    assert!(cache.get(BUTTON).unwrap().is_some());
    assert_eq!(origin.count(), 2);
    assert_eq!(cache.breaker_status().state, BreakerState::HalfOpen);
    assert!(cache.get("component:react:card").unwrap().is_some());
    assert_eq!(cache.breaker_status().state, BreakerState::Closed);
    assert_eq!(origin.count(), 3);
}

#[test]
fn a_429_with_retry_after_opens_the_breaker_for_that_long() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&origin, &dir.path().join("c.db"), json!({}));
    origin.fault(Fault {
        status: Some(429),
        headers: vec![("Retry-After".into(), "30".into())],
        times: Some(1),
        ..Fault::default()
    });
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(cache.get(BUTTON).unwrap_err().kind(), ErrorKind::Source);
    let until = cache.breaker_status().next_attempt_at.unwrap();
    assert!(
        until >= before + 30_000 && until <= before + 31_000,
        "{until} vs {before}"
    );
    assert_eq!(
        cache.get(BUTTON).unwrap_err().kind(),
        ErrorKind::SourceUnavailable
    );
    assert_eq!(origin.count(), 1);
}

#[test]
fn the_rate_limit_remaining_is_in_the_stats() {
    let origin = Origin::start().unwrap();
    origin.rate_limit(RateLimit {
        limit: 60,
        remaining: 42,
        reset: now_s() + 3600,
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&origin, &dir.path().join("c.db"), json!({}));
    assert_eq!(cache.stats().source.rate_limit, None);
    cache.get("components:react").unwrap().unwrap();
    let limit = cache.stats().source.rate_limit.unwrap();
    assert_eq!((limit.limit, limit.remaining), (Some(60), 41));
}

#[test]
fn a_redirect_to_another_host_is_followed_without_the_token() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = "ghp_redirect_test_token_0123456789";
    let cache = open(
        &origin,
        &dir.path().join("c.db"),
        json!({"github": {"token": token}}),
    );
    origin.fault(Fault {
        host: Some(Host::Api),
        redirect: Some(origin.other_url()),
        times: Some(1),
        ..Fault::default()
    });
    // The listing's request goes to the API with the token, is sent on to
    // the other host, which must not see it.
    let _ = cache.get("components:react");
    cache.get(BUTTON).unwrap().unwrap();
    let requests = origin.requests();
    let api: Vec<_> = requests.iter().filter(|r| r.host == Host::Api).collect();
    assert_eq!(api.len(), 1);
    assert_eq!(
        api[0].authorization.as_deref(),
        Some(format!("Bearer {token}").as_str())
    );
    let elsewhere: Vec<_> = requests.iter().filter(|r| r.host != Host::Api).collect();
    assert_eq!(elsewhere.len(), 2);
    assert!(elsewhere.iter().any(|r| r.host == Host::Other));
    assert!(elsewhere.iter().all(|r| r.authorization.is_none()));
}

/// A second process on the same file, while the first is rate limited,
/// makes no request.
#[test]
fn a_second_process_honours_the_first_ones_rate_limit() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let cache = open(&origin, &path, json!({}));
    let reset = now_s() + 60;
    origin.fault(Fault {
        status: Some(403),
        headers: vec![
            ("X-RateLimit-Remaining".into(), "0".into()),
            ("X-RateLimit-Reset".into(), reset.to_string()),
        ],
        times: Some(1),
        ..Fault::default()
    });
    assert_eq!(cache.get(BUTTON).unwrap_err().kind(), ErrorKind::Source);
    assert_eq!(origin.count(), 1);

    let spec = json!({"api": origin.api_url(), "raw": origin.raw_url(), "path": path});
    let out = child_stdout(&run_child("second_process_child", &spec.to_string(), None));
    assert_eq!(child_field(&out, "kind"), "source_unavailable");
    assert_eq!(child_field(&out, "state"), "open");
    assert_eq!(
        child_field(&out, "next_attempt_at"),
        (reset * 1000).to_string()
    );
    assert_eq!(origin.count(), 1);

    // A hand close lifts the bar for every process.
    cache.breaker_close();
    let out = child_stdout(&run_child("second_process_child", &spec.to_string(), None));
    assert_eq!(child_field(&out, "kind"), "ok");
    assert_eq!(origin.count(), 2);
}

#[test]
#[ignore = "run by a_second_process_honours_the_first_ones_rate_limit"]
fn second_process_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    let config = json!({
        "sqlite": {"path": spec["path"]},
        "github": {"api_url": spec["api"], "raw_url": spec["raw"], "timeout": 5},
    });
    let cache = Cache::open(Config::from_json(&config.to_string()).unwrap()).unwrap();
    let kind = match cache.get("component:react:card") {
        Ok(_) => "ok".to_owned(),
        Err(err) => err.kind().as_str().to_owned(),
    };
    let status = cache.breaker_status();
    println!("kind={kind}");
    println!("state={}", status.state.as_str());
    println!(
        "next_attempt_at={}",
        status.next_attempt_at.map_or(0, |t| t)
    );
}

#[test]
fn github_with_a_source_handed_in_is_a_config_error() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = Cache::builder()
        .config(config(&origin, &dir.path().join("c.db"), json!({})))
        .source(tierstack::source::from_fn(|_k: String| async {
            Ok(tierstack::Fetched::NotFound)
        }))
        .build_blocking()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
}

#[test]
fn bad_github_configs_are_refused_naming_the_key() {
    for (github, needle) in [
        (json!({"api_url": "ftp://x"}), "github.api_url"),
        (json!({"raw_url": "not a url"}), "github.raw_url"),
        (json!({"timeout": 0}), "github.timeout"),
        (json!({"max_body_bytes": 0}), "github.max_body_bytes"),
        (json!({"routes": "nope"}), "preset"),
        (json!({"routes": []}), "github.routes is empty"),
        (json!({"token": ""}), "github.token"),
        (json!({"tokn": "x"}), "tokn"),
    ] {
        let err = Config::from_json(&json!({ "github": github }).to_string()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{github}");
        assert!(err.message().contains(needle), "{needle}: {err}");
    }
}

#[test]
fn a_route_that_does_not_parse_is_named() {
    for (routes, needle) in [
        (
            json!([{"key": "a:{n}", "owner": "o", "repo": "r", "path": "{n}"},
                   {"key": "b", "owner": "o", "repo": "r", "path": "b", "branch": "x"}]),
            "github.routes[1]: unknown field `branch`",
        ),
        (
            json!([{"key": "a", "repo": "r", "path": "a"}]),
            "github.routes[0]: missing field `owner`",
        ),
        (
            json!([{"key": "a", "owner": "o", "repo": "r", "path": "a", "format": "xml"}]),
            "github.routes[0]: unknown variant `xml`",
        ),
        (json!(5), "a preset's name or a list of routes"),
    ] {
        let err =
            Config::from_json(&json!({"github": {"routes": routes}}).to_string()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().contains(needle), "{needle}: {err}");
    }
}

#[test]
fn a_raw_route_stores_the_bytes_as_they_are() {
    let origin = Origin::start().unwrap();
    origin.set_file("me", "docs", "main", "img/logo.bin", &[0xff, 0x00, 0x7f]);
    let dir = tempfile::tempdir().unwrap();
    let raw = json!([{"key": "img:{name}", "owner": "me", "repo": "docs",
                      "path": "img/{name}.bin", "format": "raw"},
                     {"key": "text:{name}", "owner": "me", "repo": "docs",
                      "path": "img/{name}.bin"}]);
    let cache = open(
        &origin,
        &dir.path().join("c.db"),
        json!({"github": {"routes": raw}}),
    );
    assert_eq!(
        &cache.get("img:logo").unwrap().unwrap()[..],
        &[0xff, 0x00, 0x7f]
    );
    // The same bytes as text: not UTF-8, a failure that says what to do.
    let err = cache.get("text:logo").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert!(err.message().contains("\"format\": \"raw\""), "{err}");
    assert_eq!(origin.count(), 2);
}
