//! Every operation of both facades, on a real SQLite file.

use std::time::Duration;

use tierstack::blocking::Cache;
use tierstack::{ErrorKind, SetOptions, Tier};

fn open(dir: &tempfile::TempDir) -> Cache {
    Cache::builder()
        .sqlite_path(dir.path().join("ops.db"))
        .build_blocking()
        .unwrap()
}

#[test]
fn set_get_lookup_has_delete() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir);
    assert_eq!(cache.get("a").unwrap(), None);
    assert!(!cache.has("a").unwrap());
    cache.set("a", "one").unwrap();
    assert_eq!(cache.get("a").unwrap().as_deref(), Some(&b"one"[..]));
    let hit = cache.lookup("a").unwrap().unwrap();
    assert_eq!(
        (&hit.value[..], hit.tier, hit.stale),
        (&b"one"[..], Tier::Memory, false)
    );
    assert!(hit.age < Duration::from_secs(5));
    assert!(cache.has("a").unwrap());
    cache.set("a", "two").unwrap();
    assert_eq!(cache.get("a").unwrap().as_deref(), Some(&b"two"[..]));
    assert!(cache.delete("a").unwrap());
    assert!(!cache.delete("a").unwrap());
    assert_eq!(cache.get("a").unwrap(), None);
    assert!(!cache.has("a").unwrap());
}

#[test]
fn binary_values_round_trip_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir);
    let value: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    cache.set("bin", value.clone()).unwrap();
    cache.set("empty", Vec::new()).unwrap();
    let reopened = Cache::builder()
        .sqlite_path(dir.path().join("ops.db"))
        .memory(false)
        .build_blocking()
        .unwrap();
    assert_eq!(reopened.get("bin").unwrap().unwrap(), value);
    assert_eq!(reopened.get("empty").unwrap().unwrap().len(), 0);
}

#[test]
fn mget_and_mset_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir);
    cache
        .mset([("k1", "v1"), ("k2", "v2"), ("k3", "v3")])
        .unwrap();
    assert_eq!(
        cache.mget(&["k3", "nope", "k1"]).unwrap(),
        vec![Some("v3".into()), None, Some("v1".into())]
    );
    assert_eq!(
        cache.mget::<&str>(&[]).unwrap(),
        Vec::<Option<tierstack::Bytes>>::new()
    );
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (2, 1));
    assert_eq!(stats.sets, 3);
}

#[test]
fn mget_reads_l2_in_one_round_and_promotes() {
    let dir = tempfile::tempdir().unwrap();
    open(&dir)
        .mset((0..50).map(|i| (format!("k{i}"), format!("v{i}"))))
        .unwrap();
    let cache = open(&dir);
    cache.set("k0", "fresh").unwrap();
    let keys: Vec<String> = (0..52).map(|i| format!("k{i}")).collect();
    let values = cache.mget(&keys).unwrap();
    assert_eq!(values[0].as_deref(), Some(&b"fresh"[..]));
    for (i, value) in values.iter().enumerate().take(50).skip(1) {
        assert_eq!(value.as_deref(), Some(format!("v{i}").as_bytes()));
    }
    assert_eq!(values[50], None);
    let stats = cache.stats();
    let sqlite = stats.tier(Tier::Sqlite).unwrap();
    assert_eq!((sqlite.hits, sqlite.misses), (49, 2));
    assert_eq!(stats.tier(Tier::Memory).unwrap().hits, 1);
    assert_eq!(cache.lookup("k7").unwrap().unwrap().tier, Tier::Memory);
}

#[test]
fn keys_len_clear() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir);
    assert!(cache.is_empty().unwrap());
    cache
        .mset([
            ("user:1", "a"),
            ("user:2", "b"),
            ("team:1", "c"),
            ("q?[x]", "d"),
        ])
        .unwrap();
    assert_eq!(
        cache.keys("*").unwrap(),
        ["q?[x]", "team:1", "user:1", "user:2"]
    );
    assert_eq!(cache.keys("user:*").unwrap(), ["user:1", "user:2"]);
    assert_eq!(cache.keys("*:1").unwrap(), ["team:1", "user:1"]);
    assert_eq!(cache.keys("q?[x]").unwrap(), ["q?[x]"]);
    assert_eq!(cache.keys("USER:*").unwrap(), Vec::<String>::new());
    assert_eq!(cache.len().unwrap(), 4);
    cache.clear().unwrap();
    assert_eq!(cache.len().unwrap(), 0);
    assert_eq!(cache.get("user:1").unwrap(), None);
    let reopened = open(&dir);
    assert_eq!(reopened.keys("*").unwrap(), Vec::<String>::new());
}

#[test]
fn set_with_tags_and_entry_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir);
    cache
        .set_with(
            "t",
            "v",
            SetOptions::new()
                .ttl(Duration::from_secs(30))
                .tags(["ui", "button"]),
        )
        .unwrap();
    let entry = cache.entry("t").unwrap().unwrap();
    assert_eq!(&entry.value[..], b"v");
    assert_eq!(entry.meta.tags, ["ui", "button"]);
    assert_eq!(entry.meta.expires_ms - entry.meta.created_ms, 30_000);
    assert_eq!(
        entry.meta.stale_until_ms - entry.meta.expires_ms,
        86_400_000
    );
    assert_eq!(
        entry.meta.size,
        1 + 1 + tierstack::tier::SQLITE_ROW_OVERHEAD
    );
    assert_eq!(entry.meta.etag, None);
    assert_eq!(cache.entry("missing").unwrap(), None);
}

#[test]
fn a_zero_ttl_takes_the_tier_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let clock = tierstack::ManualClock::new(1_000_000);
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("zero.db"))
        .memory_ttl(Duration::from_secs(10))
        .sqlite_ttl(Duration::from_secs(100))
        .clock(clock.clone())
        .build_blocking()
        .unwrap();
    let zero = SetOptions::new().ttl(Duration::ZERO);
    cache.set_with("a", "1", zero.clone()).unwrap();
    cache.mset_with([("b", "2")], zero.clone()).unwrap();
    for key in ["a", "b"] {
        let entry = cache.entry(key).unwrap().unwrap();
        assert_eq!(
            entry.meta.expires_ms - entry.meta.created_ms,
            100_000,
            "{key}"
        );
        assert_eq!(cache.lookup(key).unwrap().unwrap().tier, Tier::Memory);
    }
    // L1 keeps them for memory.ttl, L2 for sqlite.ttl.
    clock.advance(Duration::from_secs(11));
    for key in ["a", "b"] {
        assert_eq!(
            cache.lookup(key).unwrap().unwrap().tier,
            Tier::Sqlite,
            "{key}"
        );
    }
    clock.advance(Duration::from_secs(90));
    assert_eq!(cache.get("a").unwrap(), None);

    let memory_only = Cache::builder()
        .sqlite(false)
        .memory_ttl(Duration::from_secs(10))
        .build_blocking()
        .unwrap();
    memory_only.set_with("a", "1", zero).unwrap();
    let entry = memory_only.entry("a").unwrap().unwrap();
    assert_eq!(entry.meta.expires_ms - entry.meta.created_ms, 10_000);
}

#[test]
fn stats_count_each_tier() {
    let dir = tempfile::tempdir().unwrap();
    open(&dir).set("a", "1").unwrap();
    let cache = open(&dir);
    assert_eq!(cache.get("a").unwrap().as_deref(), Some(&b"1"[..])); // sqlite
    assert_eq!(cache.get("a").unwrap().as_deref(), Some(&b"1"[..])); // memory
    assert_eq!(cache.get("b").unwrap(), None);
    let stats = cache.stats();
    let memory = stats.tier(Tier::Memory).unwrap();
    let sqlite = stats.tier(Tier::Sqlite).unwrap();
    assert_eq!((memory.hits, memory.misses), (1, 2));
    assert_eq!((sqlite.hits, sqlite.misses), (1, 1));
    assert_eq!((stats.hits, stats.misses), (2, 1));
    assert!((stats.hit_rate - 2.0 / 3.0).abs() < 1e-9);
    assert!(sqlite.avg_time_us > 0.0);
    assert_eq!(memory.entries, 1);
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["tiers"][0]["tier"], "memory");
    assert_eq!(json["tiers"][1]["hits"], 1);
    let text = stats.to_prometheus("default");
    assert!(
        text.contains("tierstack_tier_hits_total{namespace=\"default\",tier=\"sqlite\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("\ntierstack_hits_total{namespace=\"default\"} 2\n"),
        "{text}"
    );
    cache.reset_stats();
    assert_eq!(cache.stats().hits, 0);
}

#[test]
fn memory_only_and_sqlite_only_caches() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Cache::builder().sqlite(false).build_blocking().unwrap();
    memory.set("m", "1").unwrap();
    assert_eq!(memory.lookup("m").unwrap().unwrap().tier, Tier::Memory);
    assert_eq!(memory.keys("*").unwrap(), ["m"]);
    assert_eq!(memory.inspect().unwrap(), None);
    assert_eq!(memory.stats().tiers.len(), 1);

    let sqlite = Cache::builder()
        .memory(false)
        .sqlite_path(dir.path().join("s.db"))
        .build_blocking()
        .unwrap();
    sqlite.set("s", "2").unwrap();
    assert_eq!(sqlite.lookup("s").unwrap().unwrap().tier, Tier::Sqlite);
    assert_eq!(sqlite.lookup("s").unwrap().unwrap().tier, Tier::Sqlite);
    assert_eq!(sqlite.stats().tier(Tier::Memory), None);
}

/// A host may remove the file's directory before it closes the cache (a
/// test's temporary directory, cleaned up first): `close` uses the
/// connections it holds and opens none.
#[test]
fn close_succeeds_after_the_directory_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir);
    std::fs::remove_dir_all(dir.path()).unwrap();
    cache.close().unwrap();
}

#[test]
fn close_makes_every_clone_fail_with_closed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir);
    let clone = cache.clone();
    cache.set("a", "1").unwrap();
    cache.close().unwrap();
    cache.close().unwrap();
    assert!(clone.is_closed());
    for err in [
        clone.get("a").unwrap_err(),
        clone.set("a", "2").unwrap_err(),
        clone.delete("a").unwrap_err(),
        clone.keys("*").unwrap_err(),
        clone.mget(&["a"]).unwrap_err(),
        clone.clear().unwrap_err(),
        clone.has("a").unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Closed);
    }
    assert_eq!(open(&dir).get("a").unwrap().as_deref(), Some(&b"1"[..]));
}

#[test]
fn concurrent_threads_share_one_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir);
    std::thread::scope(|s| {
        for t in 0..4 {
            let cache = cache.clone();
            s.spawn(move || {
                for i in 0..200 {
                    let key = format!("t{t}:{i}");
                    cache.set(key.as_str(), key.clone()).unwrap();
                    assert_eq!(cache.get(&key).unwrap().as_deref(), Some(key.as_bytes()));
                }
            });
        }
    });
    assert_eq!(cache.len().unwrap(), 800);
    assert_eq!(cache.inspect().unwrap().unwrap().entries, 800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_cache_has_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tierstack::Cache::builder()
        .sqlite_path(dir.path().join("async.db"))
        .build()
        .unwrap();
    cache.set("a", "1").await.unwrap();
    cache
        .set_with("b", "2", SetOptions::new().ttl(Duration::from_secs(60)))
        .await
        .unwrap();
    cache.mset([("c", "3"), ("d", "4")]).await.unwrap();
    assert_eq!(cache.get("a").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(cache.lookup("b").await.unwrap().unwrap().tier, Tier::Memory);
    assert_eq!(
        cache.mget(&["c", "x", "d"]).await.unwrap(),
        vec![Some("3".into()), None, Some("4".into())]
    );
    assert!(cache.has("d").await.unwrap());
    assert_eq!(cache.keys("*").await.unwrap(), ["a", "b", "c", "d"]);
    assert_eq!(cache.len().await.unwrap(), 4);
    assert!(cache.delete("a").await.unwrap());
    assert!(!cache.is_empty().await.unwrap());
    let b = cache.entry("b").await.unwrap().unwrap().meta;
    assert_eq!(b.expires_ms - b.created_ms, 60_000);
    assert_eq!(cache.inspect().await.unwrap().unwrap().entries, 3);
    cache.run_pending_tasks().await.unwrap();
    cache.clear().await.unwrap();
    assert_eq!(cache.len().await.unwrap(), 0);
    cache.close().await.unwrap();
    assert_eq!(cache.get("b").await.unwrap_err().kind(), ErrorKind::Closed);
}
