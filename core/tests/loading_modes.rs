//! What a load does besides single flight: negative caching, batches,
//! refresh-ahead, read-through for plain reads, a loader's error reaching
//! every waiter, and the loader a host's hit path makes.

#[path = "support/loading.rs"]
mod loading_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tierstack::blocking::Cache;
use tierstack::{Error, ErrorKind, Fetched, GetOptions, Loaded, ManualClock, Tier};

use loading_support::{KEY, counted, open, text};

#[test]
fn not_found_is_remembered_for_negative_ttl_and_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("c.db"))
        .negative_ttl(Duration::from_secs(60))
        .clock(clock.clone())
        .build_blocking()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let not_found = |calls: &Arc<AtomicUsize>| {
        let calls = calls.clone();
        move |_: &str| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(Fetched::NotFound)
        }
    };
    assert_eq!(
        cache
            .get_or_load(KEY, not_found(&calls), GetOptions::new())
            .unwrap(),
        None
    );
    assert_eq!(
        cache
            .get_or_load(KEY, not_found(&calls), GetOptions::new())
            .unwrap(),
        None
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().source.negative_hits, 1);
    assert!(!cache.has(KEY).unwrap());
    assert_eq!(cache.len().unwrap(), 0);
    assert_eq!(cache.entry(KEY).unwrap(), None);
    // Another process (a new cache on the file) finds it remembered too.
    let other = Cache::builder()
        .sqlite_path(dir.path().join("c.db"))
        .clock(clock.clone())
        .build_blocking()
        .unwrap();
    assert_eq!(
        other
            .get_or_load(KEY, not_found(&calls), GetOptions::new())
            .unwrap(),
        None
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A write makes it found at once; after negative_ttl it is asked again.
    cache.set("written", "w").unwrap();
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        text(
            cache
                .get_or_load(
                    KEY,
                    counted(&calls, "back", Duration::ZERO),
                    GetOptions::new()
                )
                .unwrap()
        )
        .as_deref(),
        Some("back")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn get_or_load_many_hands_the_loader_only_the_keys_missing_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("c.db"));
    cache.set("a", "a0").unwrap();
    let handed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let loader = {
        let handed = handed.clone();
        move |keys: Vec<String>| {
            handed.lock().unwrap().push(keys.clone());
            let answers: HashMap<String, Fetched> = keys
                .into_iter()
                .filter(|k| k != "gone")
                .map(|k| {
                    let v = format!("{k}1");
                    (k, Fetched::value(v))
                })
                .collect();
            Ok(answers)
        }
    };
    let values = cache
        .get_or_load_many(&["a", "b", "gone", "c", "b"], loader, GetOptions::new())
        .unwrap();
    let values: Vec<_> = values.into_iter().map(text).collect();
    assert_eq!(
        values,
        [Some("a0"), Some("b1"), None, Some("c1"), Some("b1")].map(|v| v.map(str::to_owned))
    );
    let mut first = handed.lock().unwrap()[0].clone();
    first.sort();
    assert_eq!(first, ["b", "c", "gone"]);
    let again = cache
        .get_or_load_many(
            &["a", "b", "c", "gone"],
            |_| panic!("nothing is missing"),
            GetOptions::new(),
        )
        .unwrap();
    assert_eq!(again.into_iter().filter(Option::is_some).count(), 3);
}

#[test]
fn a_hit_past_refresh_ahead_answers_at_once_and_refreshes_once_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("c.db"))
        .sqlite_ttl(Duration::from_secs(100))
        .ttl_jitter(0.0)
        .refresh_ahead(0.8)
        .clock(clock.clone())
        .build_blocking()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    cache
        .get_or_load(
            KEY,
            counted(&calls, "v1", Duration::ZERO),
            GetOptions::new(),
        )
        .unwrap();
    clock.advance(Duration::from_secs(79));
    let hit = cache
        .get_or_load(
            KEY,
            counted(&calls, "v2", Duration::ZERO),
            GetOptions::new(),
        )
        .unwrap();
    assert_eq!(text(hit).as_deref(), Some("v1"));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "not yet due");
    clock.advance(Duration::from_secs(2));
    for _ in 0..20 {
        let hit = cache
            .get_or_load(
                KEY,
                counted(&calls, "v2", Duration::from_millis(200)),
                GetOptions::new(),
            )
            .unwrap();
        assert_eq!(
            text(hit).as_deref(),
            Some("v1"),
            "answered from the tiers at once"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one refresh");
    assert_eq!(cache.stats().source.refreshes, 1);
    let found = cache.lookup_cached(KEY).unwrap().unwrap();
    assert_eq!((&found.value[..], found.age), (&b"v2"[..], Duration::ZERO));
}

#[test]
fn a_configured_source_makes_plain_reads_read_through() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let source = {
        let calls = calls.clone();
        tierstack::source::from_blocking_fn(move |key| {
            calls.fetch_add(1, Ordering::SeqCst);
            match key {
                "missing" => Ok(Fetched::NotFound),
                _ => Ok(Loaded::new(format!("{key} from source"))
                    .ttl(Duration::from_secs(5))
                    .into()),
            }
        })
    };
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("c.db"))
        .ttl_jitter(0.0)
        .source(source)
        .build_blocking()
        .unwrap();
    let found = cache.lookup("x").unwrap().unwrap();
    assert_eq!(
        (&found.value[..], found.tier),
        (&b"x from source"[..], Tier::Source)
    );
    assert_eq!(cache.lookup("x").unwrap().unwrap().tier, Tier::Memory);
    let values = cache.mget(&["x", "y", "missing"]).unwrap();
    assert_eq!(
        values.into_iter().map(text).collect::<Vec<_>>(),
        [
            Some("x from source".to_owned()),
            Some("y from source".to_owned()),
            None
        ]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let entry = cache.entry("x").unwrap().unwrap();
    assert_eq!(
        entry.meta.expires_ms - entry.meta.created_ms,
        5_000,
        "the source's TTL"
    );
}

#[test]
fn a_loader_error_reaches_every_waiter_with_its_cause() {
    #[derive(Debug)]
    struct HostError(&'static str);
    impl std::fmt::Display for HostError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for HostError {}
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("c.db"));
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (cache, start) = (cache.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let loader = |_: &str| {
                    std::thread::sleep(Duration::from_millis(100));
                    Err(Error::new(ErrorKind::Source, "host loader raised")
                        .with_source(HostError("the host's own")))
                };
                cache
                    .get_or_load(KEY, loader, GetOptions::new())
                    .unwrap_err()
            })
        })
        .collect();
    for t in threads {
        let err = t.join().unwrap();
        assert_eq!(err.kind(), ErrorKind::Source);
        assert_eq!(
            err.find_cause::<HostError>().map(|e| e.0),
            Some("the host's own")
        );
    }
}

#[test]
fn a_host_hit_path_makes_a_loader_only_for_a_refresh_that_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("c.db"))
        .sqlite_ttl(Duration::from_secs(100))
        .refresh_ahead(0.5)
        .ttl_jitter(0.0)
        .clock(clock.clone())
        .build_blocking()
        .unwrap();
    let made = Arc::new(AtomicUsize::new(0));
    let maker = |made: &Arc<AtomicUsize>| {
        let made = made.clone();
        move || {
            made.fetch_add(1, Ordering::SeqCst);
            |key: String| async move { Ok(Fetched::value(format!("{key} refreshed"))) }
        }
    };
    let options = GetOptions::new();
    assert!(
        cache
            .memory_hit_or_refresh(KEY, maker(&made), &options)
            .is_none()
    );
    assert_eq!(cache.stats().hits, 0, "a miss counts nothing");
    cache.set(KEY, "v1").unwrap();
    let (hit, version) = cache
        .memory_hit_or_refresh(KEY, maker(&made), &options)
        .unwrap();
    assert_eq!(
        (&hit.value[..], version),
        (&b"v1"[..], cache.memory_version(KEY).unwrap())
    );
    assert_eq!(
        made.load(Ordering::SeqCst),
        0,
        "no loader for a hit not due"
    );
    clock.advance(Duration::from_secs(51));
    let (hit, _) = cache
        .memory_hit_or_refresh(KEY, maker(&made), &options)
        .unwrap();
    assert_eq!(&hit.value[..], b"v1", "answered before the refresh lands");
    assert_eq!(made.load(Ordering::SeqCst), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.lookup_cached(KEY).unwrap().unwrap().value != "component:button refreshed" {
        assert!(Instant::now() < deadline, "the refresh never landed");
        std::thread::sleep(Duration::from_millis(5));
    }
}
