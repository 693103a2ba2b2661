//! A machine away and back, on one Redis with another: cut off from Redis,
//! restarted on its file, or away past the trimmed stream, it replays (or,
//! past the stream, drops) what changed meanwhile. Machines are as in
//! `machines.rs`: the test process and children of this test binary.

#![cfg(feature = "redis")]

#[path = "support/machines.rs"]
mod machines_support;
#[path = "support/redis.rs"]
mod redis_support;
mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use redis_support::RedisServer;
use tierstack::blocking::Cache;
use tierstack::{RedisConfig, Tier};

use machines_support::{
    Machine, NAMESPACE, Spec, cut_off_machine, here, origin_requests, value, wait_until,
};

/// The child side of a machine (see [`machines_support::machine_child`]).
#[test]
#[ignore = "a child process of the machine tests"]
fn machine_child() {
    machines_support::machine_child();
}

#[test]
fn a_machine_cut_off_replays_the_changes_it_missed() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let a = here(dir.path(), &server.url(), &loads);
    let (proxy, mut b, log) = cut_off_machine(&server, dir.path(), 100_000);
    for i in 0..1000 {
        a.set(format!("k{i}"), "old").unwrap();
    }
    // B holds every old value in its L1 and its file.
    wait_until("B's reader has read the writes", || {
        b.backplane()["received"] == 1000
    });
    assert!(b.read("k", 1000).iter().all(|v| v == "old"));
    assert_eq!(b.get("k7"), value("old", Tier::Memory));

    proxy.cut();
    for i in 0..1000 {
        a.set(format!("k{i}"), format!("new{i}")).unwrap();
    }
    // Cut off, B serves what it holds.
    assert_eq!(b.get("k7"), value("old", Tier::Memory));
    proxy.restore();
    let restored = Instant::now();
    wait_until("B replays", || {
        let stats = b.backplane();
        if restored.elapsed() > Duration::from_secs(19) {
            eprintln!("B's backplane: {stats}");
        }
        stats["replayed"] == 1000
    });
    let stats = b.backplane();
    assert_eq!(stats["resyncs"], 0);
    assert_eq!(stats["received"], 2000);
    let values = b.read("k", 1000);
    let expected: Vec<String> = (0..1000).map(|i| format!("new{i}")).collect();
    assert_eq!(values, expected, "B served an old value");
    assert!(origin_requests(&log).is_empty());
}

#[test]
fn a_machine_restarted_on_its_file_replays_what_changed_while_it_was_down() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let a = here(dir.path(), &server.url(), &loads);
    let log = dir.path().join("origin.log");
    let spec = Spec {
        url: &server.url(),
        db: &dir.path().join("b.db"),
        origin_log: &log,
        max_len: 100_000,
    };
    for i in 0..100 {
        a.set(format!("k{i}"), "old").unwrap();
    }
    // (Older than B looks back: B's reads race no change arriving.)
    std::thread::sleep(Duration::from_millis(1100));
    let mut b = Machine::start(&spec);
    wait_until("B reads the stream", || b.backplane()["connected"] == true);
    assert!(b.read("k", 100).iter().all(|v| v == "old"));
    // B's file holds every key; B stops.
    assert_eq!(b.stats()["tiers"][1]["entries"], 100);
    drop(b);

    for i in 0..100 {
        a.set(format!("k{i}"), format!("new{i}")).unwrap();
    }
    // Longer ago than a starting reader looks back by itself.
    std::thread::sleep(Duration::from_millis(1500));
    let mut b = Machine::start(&spec);
    wait_until("B replays", || b.backplane()["replayed"] == 100);
    assert_eq!(b.backplane()["resyncs"], 0);
    let expected: Vec<String> = (0..100).map(|i| format!("new{i}")).collect();
    assert_eq!(b.read("k", 100), expected);
    assert!(origin_requests(&log).is_empty());
}

#[test]
fn a_machine_away_past_the_trimmed_stream_empties_its_tiers() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let mut config = RedisConfig::new(server.url());
    config.backplane_max_len = 100;
    let a = Cache::builder()
        .namespace(NAMESPACE)
        .sqlite_path(dir.path().join("here.db"))
        .redis(config)
        .build_blocking()
        .unwrap();
    let (proxy, mut b, _log) = cut_off_machine(&server, dir.path(), 100);
    for i in 0..50 {
        a.set(format!("k{i}"), "old").unwrap();
    }
    wait_until("B's reader has read the writes", || {
        b.backplane()["received"] == 50
    });
    assert!(b.read("k", 50).iter().all(|v| v == "old"));
    assert_eq!(b.stats()["tiers"][0]["entries"], 50);

    proxy.cut();
    // Far more changes than the stream keeps: it is trimmed past B's place.
    for round in 0..20 {
        for i in 0..50 {
            a.set(format!("k{i}"), format!("new{round}")).unwrap();
        }
    }
    proxy.restore();
    wait_until("B resyncs", || {
        let stats = b.backplane();
        eprintln!("{stats}");
        stats["resyncs"] == 1
    });
    let stats = b.stats();
    assert_eq!(stats["tiers"][0]["tier"], "memory");
    assert_eq!(
        stats["tiers"][0]["entries"], 0,
        "B's L1 was not cleared: {stats}"
    );
    assert_eq!(stats["tiers"][1]["tier"], "sqlite");
    assert_eq!(stats["tiers"][1]["entries"], 0, "B's file was not cleared");
    assert!(b.read("k", 50).iter().all(|v| v == "new19"));
    drop(loads);
}
