//! Honest limits: a value no enabled tier can hold is refused as
//! `invalid_argument` (and changes nothing); a value L1 cannot hold but L2
//! can is kept in L2 only; a loaded value no tier can hold is handed to the
//! caller, not stored, and counted; an L2 budget that holds one row keeps
//! the row written last.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tierstack::blocking::Cache;
use tierstack::{ErrorKind, Fetched, GetOptions, SetOptions, Tier};

const ROW_OVERHEAD: u64 = tierstack::tier::SQLITE_ROW_OVERHEAD;
const ENTRY_OVERHEAD: u64 = tierstack::tier::MEMORY_ENTRY_OVERHEAD;

fn memory_only(max_bytes: u64) -> Cache {
    Cache::builder()
        .sqlite(false)
        .memory_max_bytes(max_bytes)
        .build_blocking()
        .unwrap()
}

fn both_tiers(dir: &tempfile::TempDir, memory: u64, sqlite: u64) -> Cache {
    Cache::builder()
        .sqlite_path(dir.path().join("limits.db"))
        .memory_max_bytes(memory)
        .sqlite_max_bytes(sqlite)
        .build_blocking()
        .unwrap()
}

fn value(len: usize) -> Bytes {
    Bytes::from(vec![b'x'; len])
}

fn text(found: Option<Bytes>) -> Option<String> {
    found.map(|b| String::from_utf8(b.to_vec()).unwrap())
}

/// A loader answering `len` bytes, counting its calls.
fn loader(
    len: usize,
    calls: &Arc<AtomicUsize>,
) -> impl FnOnce(&str) -> tierstack::Result<Fetched> + Send + use<> {
    let calls = calls.clone();
    move |_| {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(Fetched::value(value(len)))
    }
}

#[test]
fn memory_only_a_value_over_the_whole_budget_is_refused_and_the_old_value_kept() {
    let cache = memory_only(64 * 1024);
    cache.set("k", "old").unwrap();
    let err = cache.set("k", value(100 * 1024)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let needs = 1 + 100 * 1024 + ENTRY_OVERHEAD;
    let message = err.message();
    assert!(
        message.starts_with(&format!(
            "value for \"k\" needs {needs} bytes in L1, over the "
        )),
        "{message}"
    );
    assert!(
        message.contains("memory.max_bytes is 65536")
            && message.ends_with("sqlite is disabled, so no tier can hold it"),
        "{message}"
    );
    assert_eq!(text(cache.get("k").unwrap()).as_deref(), Some("old"));
    assert_eq!(cache.lookup("k").unwrap().unwrap().tier, Tier::Memory);
    assert_eq!(cache.stats().sets, 1);
}

#[test]
fn memory_only_a_value_over_one_shards_share_is_refused() {
    // 1 MiB over at least 4 shards (quick_cache keeps at least 4 per core
    // while each holds 32 estimated entries): an entry may take at most
    // 256 KiB, so 600 KiB is under the budget but over any shard.
    let cache = memory_only(1 << 20);
    cache.set("k", "old").unwrap();
    let err = cache.set("k", value(600 * 1024)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let message = err.message();
    assert!(
        message.contains("bytes one L1 entry may take (memory.max_bytes is 1048576, split over ")
            && message.ends_with("sqlite is disabled, so no tier can hold it"),
        "{message}"
    );
    assert_eq!(text(cache.get("k").unwrap()).as_deref(), Some("old"));
    // A value within a shard's share is kept.
    cache.set("k", value(16 * 1024)).unwrap();
    let found = cache.lookup("k").unwrap().unwrap();
    assert_eq!((found.value.len(), found.tier), (16 * 1024, Tier::Memory));
}

#[test]
fn memory_only_mset_and_set_with_refuse_the_whole_write() {
    let cache = memory_only(64 * 1024);
    cache.set("big", "old").unwrap();
    let err = cache
        .mset([("small", value(10)), ("big", value(100 * 1024))])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(
        err.message().starts_with("value for \"big\" needs"),
        "{err}"
    );
    let err = cache
        .set_with(
            "big",
            value(100 * 1024),
            SetOptions::new().ttl(Duration::from_secs(60)).tags(["t"]),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(cache.get("small").unwrap(), None);
    assert_eq!(text(cache.get("big").unwrap()).as_deref(), Some("old"));
    assert_eq!(cache.keys("*").unwrap(), ["big"]);
}

#[test]
fn both_tiers_a_value_over_both_budgets_is_refused_and_the_old_value_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cache = both_tiers(&dir, 64 * 1024, 32 * 1024);
    cache.set("k", "old").unwrap();
    let err = cache.set("k", value(100 * 1024)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let needs = 1 + 100 * 1024 + ROW_OVERHEAD;
    assert_eq!(
        err.message(),
        format!(
            "value for \"k\" needs {needs} bytes in L2; sqlite.max_bytes is 32768 \
             (with sqlite enabled every value is stored in L2, and L1 holds copies of its rows)"
        )
    );
    let found = cache.lookup("k").unwrap().unwrap();
    assert_eq!((&found.value[..], found.tier), (&b"old"[..], Tier::Memory));
    cache.close().unwrap();
    let reopened = both_tiers(&dir, 64 * 1024, 32 * 1024);
    let found = reopened.lookup("k").unwrap().unwrap();
    assert_eq!((&found.value[..], found.tier), (&b"old"[..], Tier::Sqlite));
}

#[test]
fn both_tiers_a_value_over_l2_is_refused_even_when_l1_could_hold_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = both_tiers(&dir, 1 << 20, 1024);
    let err = cache.set("k", value(2048)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("sqlite.max_bytes is 1024"), "{err}");
    assert_eq!(cache.get("k").unwrap(), None);
}

#[test]
fn both_tiers_a_value_over_l1_but_within_l2_is_kept_in_l2_only() {
    let dir = tempfile::tempdir().unwrap();
    let cache = both_tiers(&dir, 64 * 1024, 1 << 20);
    cache.set("k", value(100 * 1024)).unwrap();
    for _ in 0..2 {
        let found = cache.lookup("k").unwrap().unwrap();
        assert_eq!((found.value.len(), found.tier), (100 * 1024, Tier::Sqlite));
    }
}

#[test]
fn an_l2_budget_smaller_than_one_row_refuses_the_row_and_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("limits.db"))
        .memory(false)
        .sqlite_max_bytes(100)
        .build_blocking()
        .unwrap();
    cache.set("k", "old").unwrap();
    let err = cache.set("k", value(100)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(
        err.message()
            .contains("needs 165 bytes in L2; sqlite.max_bytes is 100"),
        "{err}"
    );
    cache.run_pending_tasks().unwrap();
    let found = cache.lookup("k").unwrap().unwrap();
    assert_eq!((&found.value[..], found.tier), (&b"old"[..], Tier::Sqlite));
}

#[test]
fn an_l2_budget_that_holds_one_row_keeps_the_row_written_last() {
    let dir = tempfile::tempdir().unwrap();
    // Each row takes 950 bytes: within the budget alone, but over the share
    // eviction brings the file down to (90 %).
    let budget = 1000;
    let len = (950 - 1 - ROW_OVERHEAD) as usize;
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("limits.db"))
        .memory(false)
        .sqlite_max_bytes(budget)
        .build_blocking()
        .unwrap();
    cache.set("a", value(len)).unwrap();
    cache.set("b", value(len)).unwrap();
    cache.run_pending_tasks().unwrap();
    let found = cache.lookup("b").unwrap().unwrap();
    assert_eq!((found.value.len(), found.tier), (len, Tier::Sqlite));
    assert_eq!(cache.get("a").unwrap(), None);
    let inspection = cache.inspect().unwrap().unwrap();
    assert_eq!((inspection.entries, inspection.bytes), (1, 950));
    assert_eq!(cache.stats().tier(Tier::Sqlite).unwrap().evictions, 1);
    // Rewriting the older key makes it the one kept.
    cache.set("a", value(len)).unwrap();
    cache.run_pending_tasks().unwrap();
    assert_eq!(cache.get("b").unwrap(), None);
    assert_eq!(cache.get("a").unwrap().map(|v| v.len()), Some(len));
}

#[test]
fn an_l2_budget_that_holds_one_row_keeps_the_row_written_last_over_a_hotter_one() {
    let dir = tempfile::tempdir().unwrap();
    let len = (950 - 1 - ROW_OVERHEAD) as usize;
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("limits.db"))
        .sqlite_max_bytes(1000)
        .build_blocking()
        .unwrap();
    cache.set("a", value(len)).unwrap();
    // L1 hits of "a" mark its row used after the next write.
    for _ in 0..1000 {
        assert!(cache.get("a").unwrap().is_some());
    }
    cache.set("b", value(len)).unwrap();
    cache.run_pending_tasks().unwrap();
    cache.close().unwrap();
    let reopened = Cache::builder()
        .sqlite_path(dir.path().join("limits.db"))
        .sqlite_max_bytes(1000)
        .build_blocking()
        .unwrap();
    let found = reopened.lookup("b").unwrap().unwrap();
    assert_eq!((found.value.len(), found.tier), (len, Tier::Sqlite));
    assert_eq!(reopened.get("a").unwrap(), None);
}

#[test]
fn a_loaded_value_no_tier_can_hold_is_answered_not_stored_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let caches = [
        memory_only(64 * 1024),
        both_tiers(&dir, 64 * 1024, 32 * 1024),
    ];
    for cache in caches {
        let calls = Arc::new(AtomicUsize::new(0));
        for expected_calls in 1..=2 {
            let found = cache
                .lookup_or_load("big", loader(100 * 1024, &calls), GetOptions::new())
                .unwrap()
                .unwrap();
            assert_eq!((found.value.len(), found.tier), (100 * 1024, Tier::Source));
            assert_eq!(calls.load(Ordering::SeqCst), expected_calls);
        }
        assert_eq!(cache.get("big").unwrap(), None);
        let stats = cache.stats();
        assert_eq!((stats.not_stored, stats.sets), (2, 0));
        // A batch load answers the same way.
        let many = cache
            .get_or_load_many(
                &["big", "small"],
                |keys| {
                    Ok(keys
                        .into_iter()
                        .map(|k| {
                            let len = if k == "big" { 100 * 1024 } else { 5 };
                            (k, Fetched::value(value(len)))
                        })
                        .collect())
                },
                GetOptions::new(),
            )
            .unwrap();
        let lens: Vec<_> = many.iter().map(|v| v.as_ref().map(Bytes::len)).collect();
        assert_eq!(lens, [Some(100 * 1024), Some(5)]);
        assert_eq!(cache.get("big").unwrap(), None);
        assert_eq!(cache.get("small").unwrap().map(|v| v.len()), Some(5));
        let stats = cache.stats();
        assert_eq!((stats.not_stored, stats.sets), (3, 1));
    }
}
