//! Behaviour across tiers: promotion, TTL per tier on a clock the test
//! drives, byte budgets, restart survival, batched access tracking.

use std::time::Duration;

use tierstack::blocking::Cache;
use tierstack::{ManualClock, SetOptions, Tier};

const SECOND: Duration = Duration::from_secs(1);

fn builder(dir: &tempfile::TempDir, clock: &ManualClock) -> tierstack::CacheBuilder {
    Cache::builder()
        .sqlite_path(dir.path().join("tiers.db"))
        .clock(clock.clone())
}

#[test]
fn restart_survival_then_promotion() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let first = builder(&dir, &clock).build_blocking().unwrap();
    first.set("component:button", "<Button/>").unwrap();
    first.close().unwrap();
    drop(first);

    clock.advance(5 * SECOND);
    let second = builder(&dir, &clock).build_blocking().unwrap();
    let from_disk = second.lookup("component:button").unwrap().unwrap();
    assert_eq!(
        (
            &from_disk.value[..],
            from_disk.tier,
            from_disk.stale,
            from_disk.age
        ),
        (&b"<Button/>"[..], Tier::Sqlite, false, 5 * SECOND)
    );
    let promoted = second.lookup("component:button").unwrap().unwrap();
    assert_eq!((promoted.tier, promoted.age), (Tier::Memory, 5 * SECOND));
}

#[test]
fn ttl_expires_each_tier_on_its_own_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10_000_000);
    let cache = builder(&dir, &clock)
        .memory_ttl(10 * SECOND)
        .sqlite_ttl(100 * SECOND)
        .build_blocking()
        .unwrap();
    cache.set("k", "v").unwrap();
    clock.advance(9 * SECOND);
    assert_eq!(cache.lookup("k").unwrap().unwrap().tier, Tier::Memory);
    clock.advance(SECOND);
    // L1 expired at 10 s; L2 still fresh and the value is promoted again.
    assert_eq!(cache.lookup("k").unwrap().unwrap().tier, Tier::Sqlite);
    assert_eq!(cache.lookup("k").unwrap().unwrap().tier, Tier::Memory);
    clock.advance(89 * SECOND);
    // 99 s: the copy promoted at 10 s expired at 20 s; the one promoted now
    // is capped at L2's expiry, 100 s.
    assert_eq!(cache.lookup("k").unwrap().unwrap().tier, Tier::Sqlite);
    assert_eq!(cache.lookup("k").unwrap().unwrap().tier, Tier::Memory);
    clock.advance(SECOND);
    assert_eq!(cache.lookup("k").unwrap(), None);
    assert!(!cache.has("k").unwrap());
    assert_eq!(cache.keys("*").unwrap(), Vec::<String>::new());
    // Expired but kept for stale serving until fail_safe.max_stale passes.
    let inspection = cache.inspect().unwrap().unwrap();
    assert_eq!((inspection.entries, inspection.expired), (1, 1));
}

#[test]
fn per_entry_ttl_applies_to_both_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10_000_000);
    let cache = builder(&dir, &clock).build_blocking().unwrap();
    cache
        .set_with(
            "short",
            "v",
            SetOptions::new().ttl(Duration::from_millis(1500)),
        )
        .unwrap();
    clock.advance(Duration::from_millis(1499));
    assert_eq!(cache.lookup("short").unwrap().unwrap().tier, Tier::Memory);
    clock.advance(Duration::from_millis(1));
    assert_eq!(cache.get("short").unwrap(), None);
    let fresh_process = builder(&dir, &clock).build_blocking().unwrap();
    assert_eq!(fresh_process.get("short").unwrap(), None);
}

#[test]
fn rows_past_stale_until_are_purged() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10_000_000);
    let cache = builder(&dir, &clock)
        .max_stale(20 * SECOND)
        .build_blocking()
        .unwrap();
    let short = SetOptions::new().ttl(10 * SECOND);
    cache.mset_with([("a", "1"), ("b", "2")], short).unwrap();
    cache
        .set_with("c", "3", SetOptions::new().ttl(Duration::from_secs(700)))
        .unwrap();
    clock.advance(29 * SECOND);
    cache.run_pending_tasks().unwrap();
    // Expired at 10 s, still kept for stale serving until 30 s.
    let inspection = cache.inspect().unwrap().unwrap();
    assert_eq!((inspection.entries, inspection.expired), (3, 2));
    clock.advance(SECOND);
    cache.run_pending_tasks().unwrap();
    // A purge ran at 29 s; the next is due ten minutes later.
    assert_eq!(cache.inspect().unwrap().unwrap().entries, 3);
    clock.advance(Duration::from_secs(600));
    cache.run_pending_tasks().unwrap();
    let inspection = cache.inspect().unwrap().unwrap();
    assert_eq!((inspection.entries, inspection.expired), (1, 0));
    assert_eq!(
        inspection.bytes,
        1 + 1 + tierstack::tier::SQLITE_ROW_OVERHEAD
    );
    assert_eq!(cache.entry("a").unwrap(), None);
    assert_eq!(&cache.entry("c").unwrap().unwrap().value[..], b"3");
}

#[test]
fn memory_tier_stays_within_its_byte_budget() {
    let budget = 64 * 1024;
    let cache = Cache::builder()
        .sqlite(false)
        .memory_max_bytes(budget)
        .build_blocking()
        .unwrap();
    let value = vec![7u8; 1000];
    for i in 0..500 {
        cache.set(format!("k{i:03}"), value.clone()).unwrap();
    }
    let memory = cache.stats().tier(Tier::Memory).unwrap().clone();
    assert!(memory.bytes <= budget, "{} > {budget}", memory.bytes);
    let per_entry = 4 + 1000 + tierstack::tier::MEMORY_ENTRY_OVERHEAD;
    assert!(memory.entries <= budget / per_entry);
    assert_eq!(memory.entries + memory.evictions, 500);
    assert_eq!(cache.len().unwrap(), memory.entries);
}

/// The keys L1 holds after 600 sets of 1 KB into a 64 KiB budget.
fn survivors(seed: u64) -> Vec<String> {
    let cache = Cache::builder()
        .sqlite(false)
        .memory_max_bytes(64 * 1024)
        .memory_hash_seed(seed)
        .build_blocking()
        .unwrap();
    let keys: Vec<String> = (0..600).map(|i| format!("k{i:03}")).collect();
    for key in &keys {
        cache.set(key.as_str(), vec![7u8; 1000]).unwrap();
    }
    let held: Vec<String> = keys.into_iter().filter(|k| cache.has(k).unwrap()).collect();
    assert!(!held.is_empty() && held.len() < 600, "{} held", held.len());
    held
}

#[test]
fn a_fixed_hash_seed_makes_evictions_repeat() {
    assert_eq!(survivors(7), survivors(7));
    // Not part of the JSON schema: hosts cannot set it.
    let err = tierstack::Config::from_json(r#"{"memory": {"hash_seed": 7}}"#).unwrap_err();
    assert_eq!(err.kind(), tierstack::ErrorKind::InvalidConfig);
    assert!(err.to_string().contains("hash_seed"), "{err}");
}

#[test]
fn memory_tier_resists_a_scan() {
    let per_entry = 5 + 100 + tierstack::tier::MEMORY_ENTRY_OVERHEAD;
    let cache = Cache::builder()
        .sqlite(false)
        .memory_max_bytes(200 * per_entry)
        .build_blocking()
        .unwrap();
    let hot: Vec<String> = (0..50).map(|i| format!("h{i:04}")).collect();
    for key in &hot {
        cache.set(key.as_str(), vec![1u8; 100]).unwrap();
    }
    for _ in 0..3 {
        for key in &hot {
            assert!(cache.get(key).unwrap().is_some());
        }
    }
    // A one-pass scan of 5,000 keys read once each.
    for i in 0..5_000 {
        let key = format!("s{i:04}");
        if cache.get(&key).unwrap().is_none() {
            cache.set(key, vec![2u8; 100]).unwrap();
        }
    }
    let survivors = hot.iter().filter(|k| cache.has(k).unwrap()).count();
    assert_eq!(survivors, hot.len());
}

#[test]
fn sqlite_tier_evicts_least_recently_used_to_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10_000_000);
    let budget = 100 * 1024;
    let cache = builder(&dir, &clock)
        .memory(false)
        .sqlite_max_bytes(budget)
        .build_blocking()
        .unwrap();
    let value = vec![3u8; 1000];
    for i in 0..90 {
        cache.set(format!("k{i:03}"), value.clone()).unwrap();
        clock.advance(Duration::from_millis(10));
    }
    assert!(cache.inspect().unwrap().unwrap().bytes <= budget);
    // Read the ten oldest so they become the most recently used.
    for i in 0..10 {
        assert!(cache.get(&format!("k{i:03}")).unwrap().is_some());
    }
    clock.advance(SECOND);
    for i in 90..150 {
        cache.set(format!("k{i:03}"), value.clone()).unwrap();
        clock.advance(Duration::from_millis(10));
    }
    let row = 4 + 1000 + tierstack::tier::SQLITE_ROW_OVERHEAD;
    // Background eviction may already have run; this pass finishes the job.
    cache.run_pending_tasks().unwrap();
    let after = cache.inspect().unwrap().unwrap();
    assert!(after.bytes <= budget, "{} bytes", after.bytes);
    assert!(after.entries < 150 && after.entries > 10);
    assert_eq!(after.bytes, after.entries * row);
    let sqlite = cache.stats().tier(Tier::Sqlite).unwrap().clone();
    assert_eq!(sqlite.evictions, 150 - after.entries);
    assert_eq!(sqlite.bytes, after.bytes);
    // The ten read recently survived; the oldest unread ones went first.
    for i in 0..10 {
        assert!(
            cache.has(&format!("k{i:03}")).unwrap(),
            "k{i:03} was evicted"
        );
    }
    let first_kept = 150 - (after.entries - 10);
    for i in 10..first_kept {
        assert!(!cache.has(&format!("k{i:03}")).unwrap(), "k{i:03} survived");
    }
    for i in first_kept..150 {
        assert!(
            cache.has(&format!("k{i:03}")).unwrap(),
            "k{i:03} was evicted"
        );
    }
}

#[test]
fn sqlite_tier_evicts_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 50 * 1024;
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("bg.db"))
        .memory(false)
        .sqlite_max_bytes(budget)
        .build_blocking()
        .unwrap();
    for i in 0..100 {
        cache.set(format!("k{i:03}"), vec![1u8; 1000]).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cache.inspect().unwrap().unwrap().bytes > budget {
        assert!(
            std::time::Instant::now() < deadline,
            "no background eviction within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(cache.stats().tier(Tier::Sqlite).unwrap().evictions > 0);
}

#[test]
fn reads_are_recorded_in_batches_not_one_write_each() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10_000_000);
    let setter = builder(&dir, &clock).build_blocking().unwrap();
    setter.set("k", "v").unwrap();
    // Its write is in the file, not in its journal.
    setter.close().unwrap();
    let cache = builder(&dir, &clock)
        .memory(false)
        .build_blocking()
        .unwrap();
    let raw = rusqlite::Connection::open(dir.path().join("tiers.db")).unwrap();
    let data_version = || {
        raw.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    let access = || {
        raw.query_row(
            "SELECT access_count + coalesce(reads.count, 0), \
             max(last_access_ms, coalesce(reads.last_ms, 0)) \
             FROM entries LEFT JOIN reads USING (id) WHERE key = 'k'",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )
        .unwrap()
    };
    let before = data_version();
    for _ in 0..5 {
        clock.advance(SECOND);
        assert_eq!(cache.lookup("k").unwrap().unwrap().tier, Tier::Sqlite);
    }
    assert_eq!(data_version(), before, "a read wrote to the file");
    assert_eq!(access(), (0, 10_000_000));
    cache.run_pending_tasks().unwrap();
    assert_ne!(data_version(), before);
    assert_eq!(access(), (5, 10_005_000));
}

#[test]
fn cache_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/private.db");
    let cache = Cache::builder()
        .sqlite_path(&path)
        .build_blocking()
        .unwrap();
    cache.set("k", "v").unwrap();
    for file in [
        path.clone(),
        path.with_extension("db-wal"),
        path.with_extension("db-shm"),
    ] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
}

#[test]
fn path_comes_from_the_environment_when_config_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from-env.db");
    // SAFETY: this is the only test in this binary that touches the environment.
    unsafe { std::env::set_var(tierstack::config::DB_PATH_ENV, &path) };
    let cache = Cache::open(tierstack::Config::default()).unwrap();
    unsafe { std::env::remove_var(tierstack::config::DB_PATH_ENV) };
    cache.set("k", "v").unwrap();
    assert_eq!(cache.inspect().unwrap().unwrap().path, path);
}

#[test]
fn a_key_hot_in_memory_keeps_its_sqlite_row() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10_000_000);
    let budget = 40 * 1024;
    let cache = builder(&dir, &clock)
        .sqlite_max_bytes(budget)
        .build_blocking()
        .unwrap();
    cache.set("hot", vec![1u8; 1000]).unwrap();
    for i in 0..60 {
        clock.advance(Duration::from_millis(10));
        cache.set(format!("k{i:03}"), vec![2u8; 1000]).unwrap();
        // Served from memory every time; one hit in 64 refreshes L2 recency.
        for _ in 0..64 {
            assert_eq!(cache.lookup("hot").unwrap().unwrap().tier, Tier::Memory);
        }
    }
    cache.run_pending_tasks().unwrap();
    assert!(cache.inspect().unwrap().unwrap().bytes <= budget);
    assert!(
        cache.entry("hot").unwrap().is_some(),
        "the hot key lost its sqlite row"
    );
    assert!(cache.entry("k000").unwrap().is_none());
}

#[test]
fn opening_and_reading_without_l2_reads_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quiet.db");
    let cache = Cache::builder()
        .sqlite_path(&path)
        .build_blocking()
        .unwrap();
    cache.mset([("a", "1"), ("b", "2")]).unwrap();
    cache.close().unwrap();
    drop(cache);
    let before = std::fs::read(&path).unwrap();
    let cache = Cache::builder()
        .sqlite_path(&path)
        .build_blocking()
        .unwrap();
    assert_eq!(cache.keys("*").unwrap(), ["a", "b"]);
    assert!(cache.has("a").unwrap());
    assert_eq!(cache.inspect().unwrap().unwrap().entries, 2);
    cache.run_pending_tasks().unwrap();
    cache.close().unwrap();
    drop(cache);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}
