//! `try_set_with`: a write done at once when nothing would make it wait
//! (it goes to the process's journal, even while another process holds the
//! file's write lock), and nothing written when something would (a source
//! to write, a Redis tier).

use std::time::{Duration, Instant};

use tierstack::source::{self, Fetched};
use tierstack::{Cache, SetOptions, Strategy, Tier};

fn open(path: &std::path::Path) -> tierstack::blocking::Cache {
    Cache::builder().sqlite_path(path).build_blocking().unwrap()
}

#[test]
fn a_write_is_done_at_once_when_the_file_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("now.db");
    let cache = open(&path);
    assert!(
        cache
            .try_set_with("button", "v1", SetOptions::default())
            .unwrap()
    );
    // In L1, and committed: another cache on the file reads it from there.
    let held = cache.lookup("button").unwrap().unwrap();
    assert_eq!((&held.value[..], held.tier), (&b"v1"[..], Tier::Memory));
    let other = open(&path);
    let found = other.lookup("button").unwrap().unwrap();
    assert_eq!((&found.value[..], found.tier), (&b"v1"[..], Tier::Sqlite));
    assert_eq!(cache.stats().sets, 1);
}

/// A write goes to the process's journal, which takes no lock of the
/// file: it is done at once even while another process holds the file's
/// write lock, and reaches the file once that lock is released (a read of
/// another cache waits for it).
#[test]
fn a_write_is_done_at_once_while_another_process_holds_the_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let cache = open(&path);
    cache.set("button", "v1").unwrap();
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let done = cache
        .try_set_with("button", "v2", SetOptions::default())
        .unwrap();
    let took = started.elapsed();
    assert!(done);
    assert!(took < Duration::from_secs(1), "waited {took:?}");
    assert_eq!(cache.get("button").unwrap().as_deref(), Some(&b"v2"[..]));
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        holder.execute_batch("ROLLBACK").unwrap();
    });
    let started = Instant::now();
    assert_eq!(
        open(&path).get("button").unwrap().as_deref(),
        Some(&b"v2"[..])
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    release.join().unwrap();
    assert_eq!(cache.stats().sets, 2);
}

#[test]
fn writes_to_a_source_are_never_done_at_once() {
    let dir = tempfile::tempdir().unwrap();
    for strategy in [Strategy::WriteThrough, Strategy::WriteBehind] {
        let source = source::from_blocking_fn(|_: &str| Ok(Fetched::NotFound))
            .with_writes(|_, _, _| Ok(()), |_, _| Ok(()));
        let cache = Cache::builder()
            .sqlite_path(dir.path().join(format!("{}.db", strategy.as_str())))
            .source(source)
            .strategy(strategy)
            .build_blocking()
            .unwrap();
        assert!(
            !cache
                .try_set_with("button", "v1", SetOptions::default())
                .unwrap(),
            "{strategy:?}"
        );
        assert_eq!(cache.get("button").unwrap(), None, "{strategy:?}");
    }
}

#[cfg(feature = "redis")]
#[test]
fn writes_with_a_redis_tier_are_never_done_at_once() {
    // A Redis tier's write is a network round trip. Nothing listens on
    // port 9 here, and nothing connects: the write is refused before one
    // is tried.
    let dir = tempfile::tempdir().unwrap();
    let config =
        tierstack::Config::from_json(r#"{"redis": {"url": "redis://127.0.0.1:9"}}"#).unwrap();
    let cache = Cache::builder()
        .config(config)
        .sqlite_path(dir.path().join("redis.db"))
        .build_blocking()
        .unwrap();
    assert!(
        !cache
            .try_set_with("button", "v1", SetOptions::default())
            .unwrap()
    );
}

#[test]
fn a_bad_key_is_refused_as_by_set() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("bad.db"));
    let err = cache
        .try_set_with("", "v1", SetOptions::default())
        .unwrap_err();
    assert_eq!(err.kind(), cache.set("", "v1").unwrap_err().kind());
}
