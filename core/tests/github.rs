//! GitHub as the source of truth: fetching components, demos, blocks and
//! listings, revalidating, remembering what is missing, raw files, and
//! redirects, against a GitHub-shaped origin on loopback (`tierstack-origin`: a
//! real HTTP server that counts its requests and injects faults). Every
//! scenario asserts the origin's request count exactly.

#[path = "support/github.rs"]
mod github_support;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::json;
use tierstack::{ErrorKind, Tier};
use tierstack_origin::{Fault, Host, Origin};

use github_support::{BASE, BUTTON, first_line, open, text, with_expired_button};

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
    let (cache, first, clock) = with_expired_button(&origin, dir.path(), json!({}));

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
    clock.advance(Duration::from_millis(1100));
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
