//! What `entry` reports about a key: every read counted (L1 hits
//! included), the first write kept across rewrites, and files of the schema
//! before `first_ms` migrated.

use std::time::Duration;

use tierstack::{Cache, ManualClock, Tier};

const SECOND: Duration = Duration::from_secs(1);

fn builder(dir: &tempfile::TempDir, clock: &ManualClock) -> tierstack::CacheBuilder {
    Cache::builder()
        .sqlite_path(dir.path().join("meta.db"))
        .clock(clock.clone())
}

fn count(cache: &tierstack::blocking::Cache, key: &str) -> u64 {
    cache.entry(key).unwrap().unwrap().meta.access_count
}

#[test]
fn every_read_is_counted_memory_hits_included() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let cache = builder(&dir, &clock).build_blocking().unwrap();
    cache.set("k", "v").unwrap();
    assert_eq!(count(&cache, "k"), 0);
    for _ in 0..3 {
        clock.advance(SECOND);
        assert_eq!(cache.lookup("k").unwrap().unwrap().tier, Tier::Memory);
    }
    // Counted in L1, not yet handed to the file (the time of the latest
    // read moves when they are).
    let meta = cache.entry("k").unwrap().unwrap().meta;
    assert_eq!((meta.access_count, meta.last_access_ms), (3, 1_000_000));
    assert_eq!(cache.mget(&["k", "k"]).unwrap().len(), 2);
    assert_eq!(cache.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(count(&cache, "k"), 6);
    // Handed over and written: the file holds them, nothing is counted twice.
    cache.run_pending_tasks().unwrap();
    let meta = cache.entry("k").unwrap().unwrap().meta;
    assert_eq!((meta.access_count, meta.last_access_ms), (6, 1_003_000));
    let raw = rusqlite::Connection::open(dir.path().join("meta.db")).unwrap();
    let stored: i64 = raw
        .query_row(
            "SELECT access_count + reads.count FROM entries JOIN reads USING (id) \
             WHERE key = 'k'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 6);
    // Another cache on the file reads it from L2 (counted there), then from
    // its own L1; its hits reach the file when it closes.
    let other = builder(&dir, &clock).build_blocking().unwrap();
    assert_eq!(other.lookup("k").unwrap().unwrap().tier, Tier::Sqlite);
    assert_eq!(other.lookup("k").unwrap().unwrap().tier, Tier::Memory);
    assert_eq!(count(&other, "k"), 8);
    other.close().unwrap();
    assert_eq!(count(&cache, "k"), 8);
    // Reading the metadata is not a read.
    assert_eq!(count(&cache, "k"), 8);
}

#[test]
fn reads_of_an_entry_that_left_memory_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let cache = builder(&dir, &clock)
        .memory_ttl(10 * SECOND)
        .sqlite_ttl(100 * SECOND)
        .build_blocking()
        .unwrap();
    cache.set("k", "v").unwrap();
    cache.get("k").unwrap();
    cache.get("k").unwrap();
    clock.advance(11 * SECOND);
    // Expired in L1, fresh in L2.
    assert_eq!(cache.lookup("k").unwrap().unwrap().tier, Tier::Sqlite);
    assert_eq!(count(&cache, "k"), 3);
    cache.run_pending_tasks().unwrap();
    assert_eq!(count(&cache, "k"), 3);
}

#[test]
fn the_first_write_is_kept_across_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let cache = builder(&dir, &clock).build_blocking().unwrap();
    cache.set("k", "1").unwrap();
    cache.get("k").unwrap();
    clock.advance(5 * SECOND);
    cache.set("k", "2").unwrap();
    cache.get("k").unwrap();
    let meta = cache.entry("k").unwrap().unwrap().meta;
    assert_eq!(
        (meta.first_written_ms, meta.created_ms, meta.access_count),
        (1_000_000, 1_005_000, 2)
    );
    // After a delete, the next write is a first write again.
    clock.advance(SECOND);
    assert!(cache.delete("k").unwrap());
    cache.set("k", "3").unwrap();
    let meta = cache.entry("k").unwrap().unwrap().meta;
    assert_eq!(
        (meta.first_written_ms, meta.created_ms, meta.access_count),
        (1_006_000, 1_006_000, 0)
    );
}

#[test]
fn memory_only_counts_and_keeps_the_first_write_too() {
    let clock = ManualClock::new(1_000_000);
    let cache = Cache::builder()
        .sqlite(false)
        .clock(clock.clone())
        .build_blocking()
        .unwrap();
    cache.set("k", "1").unwrap();
    cache.get("k").unwrap();
    clock.advance(SECOND);
    cache.set("k", "2").unwrap();
    cache.get("k").unwrap();
    cache.get("k").unwrap();
    let meta = cache.entry("k").unwrap().unwrap().meta;
    assert_eq!(
        (
            meta.first_written_ms,
            meta.created_ms,
            meta.access_count,
            meta.last_access_ms
        ),
        (1_000_000, 1_001_000, 3, 1_001_000)
    );
}

/// Writes key `k` to a new file in `dir`, closes it, then runs `sql` on the
/// file: what an older version would have left.
fn key_k_in_a_file_turned_back_by(dir: &tempfile::TempDir, clock: &ManualClock, sql: &str) {
    let cache = builder(dir, clock).build_blocking().unwrap();
    cache.set("k", "v").unwrap();
    cache.close().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("meta.db")).unwrap();
    conn.execute_batch(sql).unwrap();
}

#[test]
fn a_file_from_before_first_ms_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let clock = ManualClock::new(1_000_000);
    // The file as schema 4 left it.
    key_k_in_a_file_turned_back_by(
        &dir,
        &clock,
        "ALTER TABLE entries DROP COLUMN first_ms; DROP TABLE outbox; \
         DROP TABLE dead_letters; DROP TABLE outbox_lease; DROP TABLE reads; \
         ALTER TABLE entries DROP COLUMN write_order; \
         DELETE FROM meta WHERE name = 'write_order'; PRAGMA user_version = 4;",
    );
    clock.advance(SECOND);
    let cache = builder(&dir, &clock).build_blocking().unwrap();
    let meta = cache.entry("k").unwrap().unwrap().meta;
    assert_eq!(
        (meta.first_written_ms, meta.created_ms),
        (1_000_000, 1_000_000)
    );
    cache.set("k", "w").unwrap();
    let meta = cache.entry("k").unwrap().unwrap().meta;
    assert_eq!(
        (meta.first_written_ms, meta.created_ms),
        (1_000_000, 1_001_000)
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, tierstack::tier::SCHEMA_VERSION);
    assert_eq!(version, 8);
}

#[test]
fn reads_counted_in_a_file_from_before_the_reads_table_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    // The file as schema 6 left it: reads counted in the entry's row.
    key_k_in_a_file_turned_back_by(
        &dir,
        &clock,
        "UPDATE entries SET access_count = 5, last_access_ms = 1000500; \
         DROP TABLE reads; ALTER TABLE entries DROP COLUMN write_order; \
         DELETE FROM meta WHERE name = 'write_order'; PRAGMA user_version = 6;",
    );
    clock.advance(SECOND);
    let cache = builder(&dir, &clock).build_blocking().unwrap();
    let meta = cache.entry("k").unwrap().unwrap().meta;
    assert_eq!((meta.access_count, meta.last_access_ms), (5, 1_000_500));
    assert_eq!(cache.lookup("k").unwrap().unwrap().tier, Tier::Sqlite);
    cache.run_pending_tasks().unwrap();
    let meta = cache.entry("k").unwrap().unwrap().meta;
    assert_eq!((meta.access_count, meta.last_access_ms), (6, 1_001_000));
}

#[test]
fn reads_of_an_entry_evicted_from_memory_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let cache = builder(&dir, &clock)
        .memory_max_bytes(64 * 1024)
        .build_blocking()
        .unwrap();
    cache.set("k", "v").unwrap();
    for _ in 0..3 {
        assert_eq!(cache.lookup("k").unwrap().unwrap().tier, Tier::Memory);
    }
    // Other keys, read too, so that they compete for the hot set.
    for i in 0..5_000 {
        let other = format!("other:{i}");
        cache.set(&other, "x").unwrap();
        cache.get(&other).unwrap();
        cache.get(&other).unwrap();
    }
    assert!(cache.stats().tier(Tier::Memory).unwrap().evictions > 0);
    assert_eq!(count(&cache, "k"), 3);
    // Gone from L1: this read is L2's.
    assert_eq!(cache.lookup("k").unwrap().unwrap().tier, Tier::Sqlite);
    assert_eq!(count(&cache, "k"), 4);
    cache.run_pending_tasks().unwrap();
    assert_eq!(count(&cache, "k"), 4);
}

/// Reads on several threads, while the key is rewritten (an upsert keeps
/// its row) and the hand-over to L2 runs over and over: every read is
/// counted once, wherever it was served.
#[test]
fn reads_racing_rewrites_and_hand_overs_are_counted_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let cache = builder(&dir, &clock).build_blocking().unwrap();
    cache.set("k", "v").unwrap();
    let done = AtomicBool::new(false);
    let reads: u64 = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                cache.run_pending_tasks().unwrap();
            }
        });
        s.spawn(|| {
            for i in 0..200 {
                cache.set("k", format!("v{i}")).unwrap();
            }
        });
        let readers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..20_000)
                        .filter(|_| cache.get("k").unwrap().is_some())
                        .count() as u64
                })
            })
            .collect();
        let reads = readers.into_iter().map(|r| r.join().unwrap()).sum();
        done.store(true, Ordering::Relaxed);
        reads
    });
    assert_eq!(reads, 80_000);
    assert_eq!(count(&cache, "k"), reads);
    cache.run_pending_tasks().unwrap();
    assert_eq!(count(&cache, "k"), reads);
    cache.close().unwrap();
    let cache = builder(&dir, &clock).build_blocking().unwrap();
    assert_eq!(count(&cache, "k"), reads);
}

/// With write-behind, a value is in L1 before its row exists (the journal
/// is drained after `set` returns): its L1 hits are counted all the same,
/// and handed to its row, found by key.
#[test]
fn reads_of_a_value_written_behind_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let source = tierstack::source::from_blocking_fn(|_key: &str| Ok(tierstack::Fetched::NotFound))
        .with_writes(|_key, _value, _id| Ok(()), |_key, _id| Ok(()));
    let cache = builder(&dir, &clock)
        .source(source)
        .strategy(tierstack::Strategy::WriteBehind)
        .build_blocking()
        .unwrap();
    cache.set("k", "v").unwrap();
    for _ in 0..3 {
        assert_eq!(cache.lookup("k").unwrap().unwrap().tier, Tier::Memory);
    }
    assert_eq!(count(&cache, "k"), 3);
    cache.run_pending_tasks().unwrap();
    assert_eq!(count(&cache, "k"), 3);
    // One more, handed over: the file holds them all.
    assert_eq!(cache.lookup("k").unwrap().unwrap().tier, Tier::Memory);
    cache.run_pending_tasks().unwrap();
    let raw = rusqlite::Connection::open(dir.path().join("meta.db")).unwrap();
    let stored: i64 = raw
        .query_row(
            "SELECT access_count + coalesce(reads.count, 0) FROM entries \
             LEFT JOIN reads USING (id) WHERE key = 'k'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 4);
    // A delete forgets them: the next value of the key starts at 0.
    assert!(cache.delete("k").unwrap());
    cache.set("k", "v2").unwrap();
    assert_eq!(count(&cache, "k"), 0);
    // A rewrite keeps the reads of the value it replaces, once.
    cache.get("k").unwrap();
    cache.set("k", "v3").unwrap();
    cache.get("k").unwrap();
    assert_eq!(count(&cache, "k"), 2);
    cache.run_pending_tasks().unwrap();
    assert_eq!(count(&cache, "k"), 2);
}
