//! A read that promotes an L2 value into L1 while a write of the same key
//! runs must never leave the older value (or a deleted key) in L1 after the
//! write returned.
//!
//! Each round makes the key an L2-only entry (written through a second
//! cache on the same file, so this cache's L1 does not hold it), then one
//! thread reads it while another writes or deletes it, and once both have
//! returned the key is read again.

use std::sync::{Arc, Barrier};
use std::thread;

use tierstack::blocking::Cache;

const ROUNDS: usize = 20_000;
const BATCH: usize = 1_000;

fn open(path: &std::path::Path) -> Cache {
    Cache::builder().sqlite_path(path).build_blocking().unwrap()
}

/// Runs `ROUNDS` rounds of a read racing `write` on keys `prefix:N`; returns
/// how many rounds read a wrong value after both returned.
fn race(write: fn(&Cache, &str), expected: fn(usize) -> Option<String>, prefix: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    let cache = open(&path);
    let seeder = open(&path);
    let reader_cache = cache.clone();
    let start = Arc::new(Barrier::new(2));
    let done = Arc::new(Barrier::new(2));
    let (reader_start, reader_done) = (start.clone(), done.clone());
    let keys: Arc<Vec<String>> = Arc::new((0..ROUNDS).map(|i| format!("{prefix}:{i}")).collect());
    let reader_keys = keys.clone();
    let reader = thread::spawn(move || {
        for key in reader_keys.iter() {
            reader_start.wait();
            let _ = reader_cache.get(key).unwrap();
            reader_done.wait();
        }
    });
    let mut wrong = 0;
    for (round, key) in keys.iter().enumerate() {
        if round % BATCH == 0 {
            // The next batch of keys, in L2 only as far as `cache` knows.
            let batch = (round..(round + BATCH).min(ROUNDS)).map(|i| (keys[i].clone(), "old"));
            seeder.mset(batch).unwrap();
        }
        start.wait();
        write(&cache, key);
        done.wait();
        let got = cache.get(key).unwrap();
        let got = got
            .as_deref()
            .map(|v| String::from_utf8_lossy(v).into_owned());
        if got != expected(round) {
            wrong += 1;
        }
    }
    reader.join().unwrap();
    wrong
}

#[test]
fn a_promotion_never_overwrites_a_newer_set() {
    let wrong = race(
        |cache, key| cache.set(key, "new").unwrap(),
        |_| Some("new".to_owned()),
        "set",
    );
    assert_eq!(wrong, 0, "{wrong} of {ROUNDS} rounds read the older value");
}

#[test]
fn a_promotion_never_resurrects_a_deleted_key() {
    let wrong = race(
        |cache, key| assert!(cache.delete(key).unwrap()),
        |_| None,
        "delete",
    );
    assert_eq!(wrong, 0, "{wrong} of {ROUNDS} rounds read the deleted key");
}
