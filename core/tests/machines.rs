//! Many machines on one Redis: each "machine" is a separate process with
//! its own L1 and its own L2 file (the test process, and children of this
//! test binary driven over their stdin), sharing a real `redis-server` on
//! a free loopback port. The backplane keeps their L1s and files coherent;
//! the Redis lease makes a missing key one origin request for all of them.

#![cfg(feature = "redis")]

#[path = "support/machines.rs"]
mod machines_support;
#[path = "support/redis.rs"]
mod redis_support;
mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis_support::RedisServer;
use tierstack::{BreakerState, Tier};

use machines_support::{
    BOUND, Machine, Pair, Spec, backplane, origin_requests, pair, settle, value, wait_until,
};

/// The child side of a machine (see [`machines_support::machine_child`]).
#[test]
#[ignore = "a child process of the machine tests"]
fn machine_child() {
    machines_support::machine_child();
}

#[test]
fn a_set_on_one_machine_reaches_the_others_reads_within_the_bound() {
    let server = RedisServer::start();
    let Pair {
        _dir,
        log,
        loads,
        a,
        mut b,
    } = pair(&server.url());
    a.set("component:card", "v0").unwrap();
    b.poll("component:card", "v0");
    settle(&mut b, "component:card", "v0", 1);

    let mut lags: Vec<Duration> = Vec::with_capacity(1000);
    for i in 1..=1000 {
        let v = format!("v{i}");
        a.set("component:card", v.clone()).unwrap();
        let (took, tier) = b.poll("component:card", &v);
        // Dropped from B's L1 and file by the backplane: read from Redis.
        assert_eq!(tier, "redis", "trial {i}");
        lags.push(took);
    }
    lags.sort();
    let worst = *lags.last().unwrap();
    eprintln!(
        "a set on one machine, seen by the other's reads: median {:?}, p99 {:?}, worst {:?} over 1,000 trials",
        lags[500], lags[990], worst
    );
    assert!(worst < BOUND, "worst {worst:?} over the bound {BOUND:?}");
    // Once every change is in, B serves it from memory; no origin request.
    settle(&mut b, "component:card", "v1000", 1001);
    let stats = b.backplane();
    assert_eq!(stats["received"], 1001);
    assert_eq!(stats["resyncs"], 0);
    assert!(origin_requests(&log).is_empty());
    assert_eq!(loads.load(Ordering::SeqCst), 0);
    assert_eq!(backplane(&a).sent, 1001);
}

#[test]
fn deletes_tags_and_clears_reach_the_other_machines_file() {
    let server = RedisServer::start();
    let Pair {
        _dir,
        log,
        loads: _,
        a,
        mut b,
    } = pair(&server.url());
    // B's own writes: in its L1 and its file (and Redis).
    b.set("gone", "1");
    b.set("red", "b");
    b.set("kept", "3");
    wait_until("A hears of B's writes", || backplane(&a).received == 3);
    // A's tagged write replaces B's copy; B reads it, with its tag, from Redis.
    a.set_with("red", "2", tierstack::SetOptions::new().tags(["colour"]))
        .unwrap();
    b.poll("red", "2");
    let received = |b: &mut Machine| b.backplane()["received"].as_u64().unwrap();
    let before = received(&mut b);

    a.delete("gone").unwrap();
    wait_until("B hears of the delete", || received(&mut b) > before);
    // Gone from B's L1 and its file: the read goes to the origin.
    assert_eq!(b.get("gone"), value("origin of gone", Tier::Source));

    assert_eq!(a.invalidate_tag("colour").unwrap(), 1);
    wait_until("B hears of the tag", || received(&mut b) > before + 1);
    assert_eq!(b.get("red"), value("origin of red", Tier::Source));

    a.clear().unwrap();
    wait_until("B hears of the clear", || received(&mut b) > before + 2);
    assert_eq!(b.get("kept"), value("origin of kept", Tier::Source));
    assert_eq!(origin_requests(&log).len(), 3);
}

#[test]
fn redis_killed_mid_run_both_keep_serving_and_recover_when_it_returns() {
    let mut server = RedisServer::start();
    let Pair {
        _dir,
        log: _,
        loads: _,
        a,
        mut b,
    } = pair(&server.url());
    a.set("before", "1").unwrap();
    b.poll("before", "1");
    settle(&mut b, "before", "1", 1);

    server.kill();
    // Every call still answers, from L1, L2 or the origin; none fails.
    for i in 0..50 {
        a.set(format!("during{i}"), "2").unwrap();
        assert_eq!(
            a.lookup(&format!("during{i}")).unwrap().unwrap().tier,
            Tier::Memory
        );
        assert_eq!(b.get("before"), value("1", Tier::Memory));
        if i % 10 == 0 {
            assert_eq!(
                b.get(&format!("new{i}")),
                value(&format!("origin of new{i}"), Tier::Source)
            );
        }
    }
    assert_eq!(
        a.get("from-a").unwrap().as_deref(),
        Some(&b"origin of from-a"[..])
    );
    assert!(!backplane(&a).connected);
    assert_eq!(b.backplane()["connected"], false);

    server.restart();
    // Both readers reconnect; Redis lost the stream, so each empties its
    // tiers once; A delivers what Redis missed of its writes.
    wait_until("both reconnect", || {
        backplane(&a).connected && b.backplane()["connected"] == true
    });
    wait_until("A delivers what Redis missed", || {
        backplane(&a).deferred > 0
    });
    assert_eq!(backplane(&a).resyncs, 1);
    assert_eq!(b.backplane()["resyncs"], 1);
    assert_eq!(a.stats().redis.unwrap().breaker.state, BreakerState::Closed);
    assert_eq!(b.stats()["redis"]["breaker"]["state"], "closed");
    // And Redis carries changes again.
    a.set("after", "3").unwrap();
    let (took, tier) = b.poll("after", "3");
    assert_eq!(tier, "redis");
    assert!(took < BOUND, "{took:?}");
    b.set("from-b", "4");
    assert_eq!(a.lookup("from-b").unwrap().unwrap().tier, Tier::Redis);
}

#[test]
fn fifty_callers_on_each_of_two_machines_make_one_origin_request() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("origin.log");
    let url = server.url();
    let (a_db, b_db) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let spec = |db| Spec {
        url: &url,
        db,
        origin_log: &log,
        max_len: 100_000,
    };
    let mut a = Machine::start(&spec(&a_db));
    let mut b = Machine::start(&spec(&b_db));
    for key in ["component:dialog", "component:table", "component:tabs"] {
        a.send(&format!("burst {key} 50"));
        b.send(&format!("burst {key} 50"));
        let expected = format!("burst origin of {key}");
        assert_eq!(a.answer(), expected);
        assert_eq!(b.answer(), expected);
    }
    let requests = origin_requests(&log);
    assert_eq!(requests.len(), 3, "{requests:?}");
    let coalesced = |m: &mut Machine| m.stats()["source"]["coalesced_machines"].as_u64().unwrap();
    assert_eq!(coalesced(&mut a) + coalesced(&mut b), 3);
}
