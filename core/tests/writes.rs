//! The write strategies with a writable source handed in as closures:
//! write-through's order and failures, write-behind's outbox (delivery,
//! coalescing, retries, dead letters, replay after a restart), cache-aside,
//! and the refusal of a read-only source. (The same over HTTP, with
//! processes killed mid-write, is in `write_behind_crash.rs`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tierstack::source::{self, Fetched};
use tierstack::{Cache, Error, ErrorKind, OutboxConfig, Strategy, Tier};

/// What the source was asked to do: `(key, Some(value) | None for a
/// remove, idempotency key)`, in order.
type Log = Arc<Mutex<Vec<(String, Option<String>, String)>>>;

/// A writable source over a map, which fails its next `fail` writes (all
/// of them while `fail` is `usize::MAX`).
#[derive(Clone, Default)]
struct Store {
    log: Log,
    data: Arc<Mutex<std::collections::HashMap<String, String>>>,
    fail: Arc<AtomicUsize>,
    refuse: Arc<Mutex<std::collections::HashSet<String>>>,
    loads: Arc<AtomicUsize>,
}

impl Store {
    fn source(&self) -> impl tierstack::Source + use<> {
        let (store, remove) = (self.clone(), self.clone());
        let load = self.clone();
        source::from_blocking_fn(move |key: &str| {
            load.loads.fetch_add(1, Ordering::SeqCst);
            Ok(match load.data.lock().get(key) {
                Some(v) => Fetched::value(v.clone()),
                None => Fetched::NotFound,
            })
        })
        .with_writes(
            move |key, value, id| store.write(key, Some(value), id),
            move |key, id| remove.write(key, None, id),
        )
    }

    fn write(&self, key: &str, value: Option<&[u8]>, id: &str) -> tierstack::Result<()> {
        if self.refuse.lock().contains(key) {
            return Err(Error::new(ErrorKind::Source, "the store refuses this key"));
        }
        let failing = self.fail.load(Ordering::SeqCst);
        if failing > 0 {
            if failing != usize::MAX {
                self.fail.fetch_sub(1, Ordering::SeqCst);
            }
            return Err(Error::new(ErrorKind::Source, "the store is down"));
        }
        let value = value.map(|v| String::from_utf8(v.to_vec()).unwrap());
        let mut data = self.data.lock();
        match &value {
            Some(v) => data.insert(key.to_owned(), v.clone()),
            None => data.remove(key),
        };
        self.log.lock().push((key.to_owned(), value, id.to_owned()));
        Ok(())
    }

    fn writes(&self) -> Vec<(String, Option<String>)> {
        self.log
            .lock()
            .iter()
            .map(|(k, v, _)| (k.clone(), v.clone()))
            .collect()
    }
}

fn quick_retries() -> OutboxConfig {
    OutboxConfig {
        max_attempts: 4,
        retry_base: Duration::from_millis(10),
        retry_max: Duration::from_millis(40),
        ..OutboxConfig::default()
    }
}

fn cache(dir: &tempfile::TempDir, store: &Store, strategy: Strategy) -> tierstack::blocking::Cache {
    with_outbox(dir, store, strategy, quick_retries())
}

fn with_outbox(
    dir: &tempfile::TempDir,
    store: &Store,
    strategy: Strategy,
    outbox: OutboxConfig,
) -> tierstack::blocking::Cache {
    Cache::builder()
        .sqlite_path(dir.path().join("w.db"))
        .source(store.source())
        .strategy(strategy)
        .outbox(outbox)
        .build_blocking()
        .unwrap()
}

/// Retries a minute apart: a failed write stays pending through a test.
fn slow_retries() -> OutboxConfig {
    OutboxConfig {
        retry_base: Duration::from_secs(60),
        retry_max: Duration::from_secs(60),
        ..OutboxConfig::default()
    }
}

fn got(cache: &tierstack::blocking::Cache, key: &str) -> Option<String> {
    cache
        .get(key)
        .unwrap()
        .map(|v| String::from_utf8(v.to_vec()).unwrap())
}

#[test]
fn write_through_writes_the_source_first_and_a_failure_leaves_the_tiers_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    let cache = cache(&dir, &store, Strategy::WriteThrough);
    cache.set("k", "1").unwrap();
    assert_eq!(store.writes(), [("k".to_owned(), Some("1".to_owned()))]);
    assert_eq!(cache.lookup("k").unwrap().unwrap().tier, Tier::Memory);

    store.fail.store(1, Ordering::SeqCst);
    let err = cache.set("k", "2").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert_eq!(got(&cache, "k").as_deref(), Some("1"));
    // Another process on the file sees the old value too.
    let other = Cache::builder()
        .sqlite_path(dir.path().join("w.db"))
        .build_blocking()
        .unwrap();
    assert_eq!(got(&other, "k").as_deref(), Some("1"));

    assert!(cache.delete("k").unwrap());
    assert_eq!(store.writes().last().unwrap(), &("k".to_owned(), None));
    assert_eq!(store.data.lock().get("k"), None);
    assert_eq!(cache.stats().outbox, None);
}

#[test]
fn write_through_mset_stops_at_the_first_failure() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    let cache = cache(&dir, &store, Strategy::WriteThrough);
    cache
        .mset(vec![("a", "1"), ("b", "1"), ("c", "1")])
        .unwrap();
    // The source takes `a`, then refuses `b`: `a` is written everywhere,
    // `b` and the keys after it nowhere.
    store.refuse.lock().insert("b".to_owned());
    let err = cache
        .mset(vec![("a", "2"), ("b", "2"), ("c", "2")])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert_eq!(store.writes().len(), 4);
    assert_eq!(
        ["a", "b", "c"].map(|k| got(&cache, k)),
        [
            Some("2".to_owned()),
            Some("1".to_owned()),
            Some("1".to_owned())
        ]
    );
}

#[test]
fn write_behind_acknowledges_at_once_and_delivers_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    let cache = cache(&dir, &store, Strategy::WriteBehind);
    cache.set("k", "1").unwrap();
    assert_eq!(cache.lookup("k").unwrap().unwrap().tier, Tier::Memory);
    cache.delete("gone").unwrap();
    cache.flush().unwrap();
    // Writes of different keys are delivered concurrently, in no order.
    let mut writes = store.writes();
    writes.sort();
    assert_eq!(
        writes,
        [
            ("gone".to_owned(), None),
            ("k".to_owned(), Some("1".to_owned()))
        ]
    );
    let stats = cache.outbox_stats().unwrap();
    assert_eq!(
        (stats.durable, stats.pending, stats.delivered, stats.dead),
        (true, 0, 2, 0)
    );
    // Every write has its own idempotency key.
    let ids: std::collections::HashSet<_> = store
        .log
        .lock()
        .iter()
        .map(|(_, _, id)| id.clone())
        .collect();
    assert_eq!(ids.len(), 2);
}

#[test]
fn a_source_that_fails_then_recovers_gets_each_write_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    store.fail.store(3, Ordering::SeqCst);
    let cache = cache(&dir, &store, Strategy::WriteBehind);
    cache.set("k", "v").unwrap();
    cache.flush().unwrap();
    assert_eq!(store.writes(), [("k".to_owned(), Some("v".to_owned()))]);
    let stats = cache.outbox_stats().unwrap();
    assert_eq!((stats.retries, stats.delivered, stats.dead), (3, 1, 0));
}

#[test]
fn a_source_that_always_fails_ends_in_dead_letters_which_can_be_retried_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    store.fail.store(usize::MAX, Ordering::SeqCst);
    let cache = cache(&dir, &store, Strategy::WriteBehind);
    cache.set("a", "1").unwrap();
    cache.set("b", "1").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cache.outbox_stats().unwrap().dead < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            cache.outbox_stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let dead = cache.dead_letters().unwrap();
    assert_eq!(
        dead.iter()
            .map(|d| (d.key.as_str(), d.op, d.attempts, d.last_error.as_str()))
            .collect::<Vec<_>>(),
        [
            ("a", "store", 4, "source: the store is down"),
            ("b", "store", 4, "source: the store is down")
        ]
    );
    let stats = cache.outbox_stats().unwrap();
    assert_eq!((stats.pending, stats.dead, stats.retries), (0, 2, 8));
    // flush: nothing pending (dead letters are not waited for).
    cache.flush().unwrap();

    store.fail.store(0, Ordering::SeqCst);
    // `b` is written again: its dead letter is superseded (retried, it
    // would put "1" back over "2").
    cache.set("b", "2").unwrap();
    let dead: Vec<String> = cache
        .dead_letters()
        .unwrap()
        .into_iter()
        .map(|d| d.key)
        .collect();
    assert_eq!(dead, ["a"]);
    assert_eq!(cache.retry_dead_letters().unwrap(), 1);
    cache.flush().unwrap();
    let mut writes = store.writes();
    writes.sort();
    assert_eq!(
        writes,
        [
            ("a".to_owned(), Some("1".to_owned())),
            ("b".to_owned(), Some("2".to_owned()))
        ]
    );
    assert!(cache.dead_letters().unwrap().is_empty());

    store.fail.store(usize::MAX, Ordering::SeqCst);
    cache.set("c", "1").unwrap();
    while cache.outbox_stats().unwrap().dead < 1 {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(cache.purge_dead_letters().unwrap(), 1);
    assert!(cache.dead_letters().unwrap().is_empty());
}

#[test]
fn pending_writes_of_one_key_coalesce_and_reach_the_source_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    store.fail.store(usize::MAX, Ordering::SeqCst);
    let cache = cache(&dir, &store, Strategy::WriteBehind);
    for i in 0..50 {
        cache.set("k", i.to_string()).unwrap();
    }
    assert_eq!(cache.pending_writes().unwrap().len(), 1);
    store.fail.store(0, Ordering::SeqCst);
    cache.flush().unwrap();
    assert_eq!(store.writes(), [("k".to_owned(), Some("49".to_owned()))]);
}

#[test]
fn the_outbox_left_by_a_closed_cache_is_delivered_by_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    store.fail.store(usize::MAX, Ordering::SeqCst);
    {
        let cache = with_outbox(
            &dir,
            &store,
            Strategy::WriteBehind,
            OutboxConfig {
                close_timeout: Duration::from_millis(50),
                ..slow_retries()
            },
        );
        cache.set("k", "v").unwrap();
        cache.delete("d").unwrap();
        cache.close().unwrap();
    }
    assert!(store.writes().is_empty());
    store.fail.store(0, Ordering::SeqCst);
    let cache = cache(&dir, &store, Strategy::WriteBehind);
    cache.flush().unwrap();
    let mut writes = store.writes();
    writes.sort();
    assert_eq!(
        writes,
        [
            ("d".to_owned(), None),
            ("k".to_owned(), Some("v".to_owned()))
        ]
    );
}

#[test]
fn without_a_file_the_outbox_is_in_memory_and_says_so() {
    let store = Store::default();
    let cache = Cache::builder()
        .sqlite(false)
        .source(store.source())
        .strategy(Strategy::WriteBehind)
        .outbox(quick_retries())
        .build_blocking()
        .unwrap();
    cache.set("k", "v").unwrap();
    cache.flush().unwrap();
    assert_eq!(store.writes(), [("k".to_owned(), Some("v".to_owned()))]);
    let stats = cache.outbox_stats().unwrap();
    assert_eq!(
        (stats.durable, stats.pending, stats.delivered),
        (false, 0, 1)
    );
}

#[test]
fn flush_fails_with_timeout_while_writes_are_pending() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    store.fail.store(usize::MAX, Ordering::SeqCst);
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("w.db"))
        .source(store.source())
        .strategy(Strategy::WriteBehind)
        .outbox(OutboxConfig {
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(60),
            flush_timeout: Duration::from_millis(100),
            close_timeout: Duration::ZERO,
            ..OutboxConfig::default()
        })
        .build_blocking()
        .unwrap();
    cache.set("k", "v").unwrap();
    let err = cache.flush().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.message().contains("still holds 1 write"), "{err}");
    assert_eq!(cache.outbox_stats().unwrap().pending, 1);
}

#[test]
fn cache_aside_never_loads_from_the_configured_source() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    store.data.lock().insert("k".into(), "v".into());
    let cache = cache(&dir, &store, Strategy::CacheAside);
    assert_eq!(cache.get("k").unwrap(), None);
    assert_eq!(store.loads.load(Ordering::SeqCst), 0);
    cache.set("k", "mine").unwrap();
    assert!(store.writes().is_empty());
    // A loader handed to the call is the caller's loading, and runs.
    let loaded = cache
        .get_or_load("other", |_| Ok(Fetched::value("x")), Default::default())
        .unwrap();
    assert_eq!(loaded.as_deref(), Some(&b"x"[..]));
    // read-through loads from it.
    let dir2 = tempfile::tempdir().unwrap();
    let through = self::cache(&dir2, &store, Strategy::ReadThrough);
    assert_eq!(got(&through, "k").as_deref(), Some("v"));
    assert_eq!(store.loads.load(Ordering::SeqCst), 1);
}

#[test]
fn writing_strategies_refuse_a_read_only_source_at_open() {
    let dir = tempfile::tempdir().unwrap();
    for strategy in [Strategy::WriteThrough, Strategy::WriteBehind] {
        let read_only = source::from_blocking_fn(|_: &str| Ok(Fetched::NotFound));
        let err = Cache::builder()
            .sqlite_path(dir.path().join("r.db"))
            .source(read_only)
            .strategy(strategy)
            .build_blocking()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(
            err.message().contains(&format!(
                "strategy {} writes to the source, but the source (source) is read-only",
                strategy.as_str()
            )),
            "{err}"
        );
        let err = Cache::builder()
            .sqlite_path(dir.path().join("r.db"))
            .strategy(strategy)
            .build_blocking()
            .unwrap_err();
        assert!(err.message().contains("no source is configured"), "{err}");
    }
    // GitHub is read-only.
    let config = tierstack::Config::from_json(
        r#"{"strategy": "write-behind", "github": {"api_url": "http://127.0.0.1:9"}}"#,
    )
    .unwrap();
    let err = Cache::builder()
        .config(config)
        .sqlite_path(dir.path().join("g.db"))
        .build_blocking()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.message().contains("(github) is read-only"), "{err}");
    let err = tierstack::Config::from_json(r#"{"strategy": "write-around"}"#).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
}

#[test]
fn dropping_the_last_handle_does_not_wait_for_the_outbox_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    store.fail.store(usize::MAX, Ordering::SeqCst);
    let first = with_outbox(
        &dir,
        &store,
        Strategy::WriteBehind,
        OutboxConfig {
            close_timeout: Duration::from_secs(30),
            ..slow_retries()
        },
    );
    first.set("k", "v").unwrap();
    // Its first attempt failed: the worker waits out the backoff.
    while first.outbox_stats().unwrap().retrying == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // No close: the drop cannot deliver (nothing can run the worker then),
    // so it does not wait out close_timeout.
    let dropped = std::time::Instant::now();
    drop(first);
    assert!(
        dropped.elapsed() < Duration::from_secs(10),
        "{:?}",
        dropped.elapsed()
    );
    store.fail.store(0, Ordering::SeqCst);
    let cache = cache(&dir, &store, Strategy::WriteBehind);
    cache.flush().unwrap();
    assert_eq!(store.writes(), [("k".to_owned(), Some("v".to_owned()))]);
}

/// A cache closed while its worker is in a pass: the pass must not take
/// the lease again after `close` gave it up, or the next cache on the file
/// (in this live process) could not drain until the lease ran out.
#[test]
fn a_closed_cache_leaves_the_lease_to_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    let outbox = OutboxConfig {
        flush_timeout: Duration::from_secs(3),
        ..quick_retries()
    };
    for i in 0..30 {
        let first = with_outbox(&dir, &store, Strategy::WriteBehind, outbox.clone());
        first.set(format!("a{i}"), "v").unwrap();
        first.close().unwrap();
        let next = with_outbox(&dir, &store, Strategy::WriteBehind, outbox.clone());
        next.set(format!("b{i}"), "v").unwrap();
        next.flush().unwrap();
        next.close().unwrap();
    }
    assert_eq!(store.writes().len(), 60);
}

/// write-behind's journal: a cache without L1 reads its writes back from
/// the file at once (a read drains the journal first); another cache on
/// the file reads them once drained; the journal is gone after `close`.
#[test]
fn write_behind_reads_its_own_writes_from_the_file_and_others_read_them_once_drained() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    let open = |strategy| {
        Cache::builder()
            .memory(false)
            .sqlite_path(dir.path().join("w.db"))
            .source(store.source())
            .strategy(strategy)
            .outbox(quick_retries())
            .build_blocking()
            .unwrap()
    };
    let cache = open(Strategy::WriteBehind);
    let other = open(Strategy::CacheAside);
    for i in 0..50 {
        cache.set("k", i.to_string()).unwrap();
        let read = cache.lookup("k").unwrap().unwrap();
        assert_eq!(
            (read.tier, &read.value[..]),
            (Tier::Sqlite, i.to_string().as_bytes())
        );
    }
    cache.mset([("a", "1"), ("b", "2")]).unwrap();
    cache.flush().unwrap();
    assert_eq!(
        [got(&other, "k"), got(&other, "a"), got(&other, "b")],
        [
            Some("49".to_owned()),
            Some("1".to_owned()),
            Some("2".to_owned())
        ]
    );
    let journals = dir.path().join("w.db-wb");
    let count = || {
        std::fs::read_dir(&journals)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != "generation")
            .count()
    };
    assert_eq!(count(), 1);
    cache.close().unwrap();
    assert_eq!(count(), 0);
    assert_eq!(store.data.lock().get("k").map(String::as_str), Some("49"));
    other.close().unwrap();
}
