//! The Redis tier against a real `redis-server` (found on PATH), started
//! by each test on a free loopback port and killed when the test ends.
//! Two "machines" are two caches with separate L2 files (and L1s) sharing
//! one Redis, on one clock the test drives.

#![cfg(feature = "redis")]

#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/redis_tier.rs"]
mod redis_tier_support;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis_support::{Proxy, RedisServer};
use tierstack::blocking::Cache;
use tierstack::source::from_blocking_fn;
use tierstack::{
    BreakerState, ErrorKind, Fetched, GetOptions, Loaded, ManualClock, RedisConfig, SetOptions,
    Tier,
};

use redis_tier_support::{SECOND, hit, machine, received, redis_counts, tier, wait_until};

#[test]
fn a_set_on_one_machine_is_a_redis_hit_on_another_then_memory() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let a = machine(&dir, "a", &server.url(), &clock)
        .build_blocking()
        .unwrap();
    let b = machine(&dir, "b", &server.url(), &clock)
        .build_blocking()
        .unwrap();

    a.set("component:button", "<Button/>").unwrap();
    wait_until(|| received(&b) == 1);
    assert_eq!(tier(&b, "component:button"), hit("<Button/>", Tier::Redis));
    assert_eq!(tier(&b, "component:button"), hit("<Button/>", Tier::Memory));
    assert_eq!(redis_counts(&b), ((1, 0), (0, 0)));
    assert_eq!(b.stats().hits, 2);

    // Promoted into B's own file: a new process on it finds it in L2.
    b.close().unwrap();
    let b2 = Cache::builder()
        .namespace("redis-test")
        .sqlite_path(dir.path().join("b.db"))
        .clock(clock.clone())
        .build_blocking()
        .unwrap();
    assert_eq!(
        tier(&b2, "component:button"),
        hit("<Button/>", Tier::Sqlite)
    );
    assert!(b2.stats().redis.is_none());
    assert!(b2.stats().tier(Tier::Redis).is_none());

    // A miss everywhere is a Redis miss.
    let c = machine(&dir, "c", &server.url(), &clock)
        .build_blocking()
        .unwrap();
    assert_eq!(tier(&c, "nothing"), None);
    assert_eq!(redis_counts(&c), ((0, 1), (0, 0)));
}

#[test]
fn a_value_loaded_on_one_machine_is_a_redis_hit_on_another() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let calls = Arc::new(AtomicUsize::new(0));
    let source = |calls: &Arc<AtomicUsize>| {
        let calls = calls.clone();
        from_blocking_fn(move |key| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(Fetched::value(format!("source of {key}")))
        })
    };
    let a = machine(&dir, "a", &server.url(), &clock)
        .source(source(&calls))
        .build_blocking()
        .unwrap();
    let b = machine(&dir, "b", &server.url(), &clock)
        .source(source(&calls))
        .build_blocking()
        .unwrap();

    assert_eq!(tier(&a, "k"), hit("source of k", Tier::Source));
    wait_until(|| received(&b) == 1);
    assert_eq!(tier(&b, "k"), hit("source of k", Tier::Redis));
    assert_eq!(tier(&b, "k"), hit("source of k", Tier::Memory));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A loader handed in per call: the same.
    let loaded = a
        .lookup_or_load("per-call", |_| Ok(Fetched::value("v")), GetOptions::new())
        .unwrap()
        .unwrap();
    assert_eq!(loaded.tier, Tier::Source);
    let again = b
        .lookup_or_load("per-call", |_| panic!("loaded twice"), GetOptions::new())
        .unwrap()
        .unwrap();
    assert_eq!((&again.value[..], again.tier), (&b"v"[..], Tier::Redis));
}

#[test]
fn batches_deletes_clears_and_tag_invalidations_reach_redis() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let a = machine(&dir, "a", &server.url(), &clock)
        .build_blocking()
        .unwrap();
    let b = machine(&dir, "b", &server.url(), &clock)
        .build_blocking()
        .unwrap();

    a.mset([("m1", "1"), ("m2", "2"), ("m3", "3")]).unwrap();
    // (A read of Redis racing the arrival of a change of its key is
    // answered but not kept: see the backplane.)
    wait_until(|| received(&b) == 3);
    let got = b.mget(&["m1", "nope", "m3", "m2"]).unwrap();
    let got: Vec<Option<&[u8]>> = got.iter().map(|v| v.as_deref()).collect();
    assert_eq!(got, [Some(&b"1"[..]), None, Some(b"3"), Some(b"2")]);
    assert_eq!(redis_counts(&b), ((3, 1), (0, 0)));
    assert_eq!(tier(&b, "m2"), hit("2", Tier::Memory));

    a.set("gone", "x").unwrap();
    assert!(a.delete("gone").unwrap());
    assert_eq!(tier(&b, "gone"), None);

    a.set_with("tagged", "t", SetOptions::new().tags(["red"]))
        .unwrap();
    assert_eq!(a.invalidate_tag("red").unwrap(), 1);
    assert_eq!(tier(&b, "tagged"), None);

    a.set("cleared", "c").unwrap();
    a.clear().unwrap();
    assert_eq!(tier(&b, "cleared"), None);
    // The backplane carries the clear to B, which empties its L1 and file.
    wait_until(|| received(&b) == 9);
    assert_eq!(tier(&b, "m1"), None);
    assert_eq!(redis_counts(&a).1, (0, 0));
}

#[test]
fn ttl_stale_until_tags_and_etag_travel_with_the_value() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let a = machine(&dir, "a", &server.url(), &clock)
        .max_stale(600 * SECOND)
        .build_blocking()
        .unwrap();
    let b = machine(&dir, "b", &server.url(), &clock)
        .max_stale(600 * SECOND)
        .build_blocking()
        .unwrap();

    a.set_with(
        "k",
        "v",
        SetOptions::new().ttl(100 * SECOND).tags(["t1", "t2"]),
    )
    .unwrap();
    a.lookup_or_load(
        "e",
        |_| Ok(Fetched::Value(Loaded::new("body").validator("W/\"42\""))),
        GetOptions::new().ttl(50 * SECOND),
    )
    .unwrap();
    clock.advance(3 * SECOND);
    wait_until(|| received(&b) == 2);
    assert_eq!(tier(&b, "k"), hit("v", Tier::Redis));
    assert_eq!(tier(&b, "e"), hit("body", Tier::Redis));
    for key in ["k", "e"] {
        let (ours, theirs) = (
            a.entry(key).unwrap().unwrap(),
            b.entry(key).unwrap().unwrap(),
        );
        assert_eq!(
            (
                ours.meta.created_ms,
                ours.meta.expires_ms,
                ours.meta.stale_until_ms
            ),
            (
                theirs.meta.created_ms,
                theirs.meta.expires_ms,
                theirs.meta.stale_until_ms
            ),
            "{key}"
        );
        assert_eq!(ours.meta.etag, theirs.meta.etag, "{key}");
        assert_eq!(ours.meta.tags, theirs.meta.tags, "{key}");
    }
    let k = b.entry("k").unwrap().unwrap().meta;
    assert_eq!(k.expires_ms - k.created_ms, 100_000);
    assert_eq!(k.stale_until_ms - k.expires_ms, 600_000);
    assert_eq!(k.tags, ["t1", "t2"]);
    assert_eq!(
        b.entry("e").unwrap().unwrap().meta.etag.as_deref(),
        Some("W/\"42\"")
    );

    // Past its expiry, within its stale window: a third machine whose
    // source fails serves the stale copy it finds in Redis.
    clock.advance(100 * SECOND);
    let c = machine(&dir, "c", &server.url(), &clock)
        .max_stale(600 * SECOND)
        .source(from_blocking_fn(|_| {
            Err(tierstack::Error::new(
                ErrorKind::Source,
                "the source is down",
            ))
        }))
        .build_blocking()
        .unwrap();
    let stale = c.lookup("k").unwrap().unwrap();
    assert_eq!(
        (&stale.value[..], stale.tier, stale.stale, stale.age),
        (&b"v"[..], Tier::Redis, true, 103 * SECOND)
    );
    assert_eq!(redis_counts(&c).0, (0, 1));
}

#[test]
fn redis_down_is_skipped_without_errors_and_recovers_when_it_returns() {
    let mut server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let a = machine(&dir, "a", &server.url(), &clock)
        .build_blocking()
        .unwrap();
    let b = machine(&dir, "b", &server.url(), &clock)
        .source(from_blocking_fn(move |key| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(Fetched::value(format!("source of {key}")))
        }))
        .build_blocking()
        .unwrap();
    a.set("before", "1").unwrap();
    wait_until(|| received(&b) == 1);
    assert_eq!(tier(&b, "before"), hit("1", Tier::Redis));

    server.kill();
    // Writes land in L1 and L2; the failed Redis write is counted.
    a.set("during", "2").unwrap();
    assert_eq!(tier(&a, "during"), hit("2", Tier::Memory));
    assert_eq!(redis_counts(&a).1, (1, 0));
    // Reads go on to the source: a failed get, a failed load lease and a
    // failed put; the third failure in a row opens the tier's breaker…
    assert_eq!(tier(&b, "x"), hit("source of x", Tier::Source));
    assert_eq!(redis_counts(&b).1, (3, 0));
    assert_eq!(b.stats().redis.unwrap().breaker.state, BreakerState::Open);
    // …and Redis is skipped while it is open.
    assert_eq!(tier(&b, "y"), hit("source of y", Tier::Source));
    assert_eq!(redis_counts(&b).1, (3, 3));
    assert_eq!(tier(&b, "z"), hit("source of z", Tier::Source));
    assert_eq!(redis_counts(&b).1, (3, 6));
    assert_eq!(tier(&b, "before"), hit("1", Tier::Memory));
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    server.restart();
    // Still open until its period ends (1 s, plus jitter)…
    assert_eq!(tier(&b, "w"), hit("source of w", Tier::Source));
    assert_eq!(redis_counts(&b).1, (3, 9));
    // …then one probe finds Redis back and closes it.
    clock.advance(2 * SECOND);
    a.set("after", "3").unwrap();
    assert_eq!(tier(&b, "after"), hit("3", Tier::Redis));
    assert_eq!(b.stats().redis.unwrap().breaker.state, BreakerState::Closed);
    assert_eq!(tier(&b, "v"), hit("source of v", Tier::Source));
    let c = machine(&dir, "c", &server.url(), &clock)
        .build_blocking()
        .unwrap();
    assert_eq!(tier(&c, "v"), hit("source of v", Tier::Redis));
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(redis_counts(&b).1, (3, 9));
}

#[test]
fn a_redis_that_never_answers_is_a_failure_after_the_timeout() {
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let mut redis = RedisConfig::new(format!("redis://127.0.0.1:{port}/0"));
    redis.timeout = Duration::from_millis(100);
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("silent.db"))
        .clock(clock.clone())
        .redis(redis)
        .build_blocking()
        .unwrap();
    let started = std::time::Instant::now();
    cache.set("k", "v").unwrap();
    assert_eq!(cache.get("missing").unwrap(), None);
    assert_eq!(tier(&cache, "k"), hit("v", Tier::Memory));
    let took = started.elapsed();
    assert_eq!(redis_counts(&cache), ((0, 0), (2, 0)));
    // Two calls, each given up at the timeout (with room for a slow machine).
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    drop(silent);
}

#[test]
fn the_async_cache_reads_and_writes_through_redis() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let a = machine(&dir, "a", &server.url(), &clock).build().unwrap();
    let b = machine(&dir, "b", &server.url(), &clock).build().unwrap();
    // On a runtime of the caller's own, single-threaded: the Redis calls run
    // on the shared runtime while the caller's thread waits.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        a.set("k", "v").await.unwrap();
        let found = b.lookup("k").await.unwrap().unwrap();
        assert_eq!((&found.value[..], found.tier), (&b"v"[..], Tier::Redis));
        let found = b
            .lookup_or_load(
                "loaded",
                |_| async { Ok(Fetched::value("l")) },
                GetOptions::new(),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.tier, Tier::Source);
        let found = a.lookup("loaded").await.unwrap().unwrap();
        assert_eq!((&found.value[..], found.tier), (&b"l"[..], Tier::Redis));
    });
    for cache in [&a, &b] {
        let redis = cache.stats().redis.unwrap();
        assert_eq!((redis.errors, redis.skipped), (0, 0));
    }
}

/// B reads `k` from Redis through a slow link while it is written in B's
/// file, by B itself or (`by_another`) by another process on the file;
/// the read answers `answered`, and B then serves the new value (from
/// `then`), and so does its file, whatever the read answered.
fn a_slow_redis_read_racing(by_another: bool, answered: &str, then: Tier) {
    let server = RedisServer::start();
    let proxy = Proxy::to(server.port);
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let a = machine(&dir, "a", &server.url(), &clock)
        .build_blocking()
        .unwrap();
    let mut slow = RedisConfig::new(proxy.url());
    slow.timeout = 5 * SECOND;
    let b = machine(&dir, "b", &proxy.url(), &clock)
        .redis(slow)
        .build_blocking()
        .unwrap();
    let other = by_another.then(|| {
        machine(&dir, "b", &server.url(), &clock)
            .build_blocking()
            .unwrap()
    });
    a.set("k", "old").unwrap();
    wait_until(|| received(&b) == 1);
    // B's connection is made before its link slows down.
    assert_eq!(tier(&b, "warm"), None);
    proxy.delay(Duration::from_millis(400));
    std::thread::scope(|s| {
        let reader = s.spawn(|| tier(&b, "k"));
        std::thread::sleep(Duration::from_millis(100));
        other.as_ref().unwrap_or(&b).set("k", "new").unwrap();
        assert_eq!(reader.join().unwrap(), hit(answered, Tier::Redis));
    });
    proxy.delay(Duration::ZERO);
    // B's L1 is checked against the file on B's clock.
    clock.advance(SECOND);
    assert_eq!(tier(&b, "k"), hit("new", then));
    b.close().unwrap();
    let reopened = Cache::builder()
        .namespace("redis-test")
        .sqlite_path(dir.path().join("b.db"))
        .clock(clock.clone())
        .build_blocking()
        .unwrap();
    assert_eq!(tier(&reopened, "k"), hit("new", Tier::Sqlite));
}

#[test]
fn a_redis_read_racing_a_write_of_this_process_is_not_kept() {
    // The write began while the read was under way: the read asks again.
    a_slow_redis_read_racing(false, "new", Tier::Memory);
}

#[test]
fn a_redis_read_racing_a_write_of_another_process_on_the_file_is_not_kept() {
    // B hears of the other process's write only later (its link is slow):
    // the read answers what Redis held when it asked, and the file, which
    // holds the newer write, does not take it.
    a_slow_redis_read_racing(true, "old", Tier::Sqlite);
}
