//! Loading from a source: single-flight in a process and across processes
//! (with a holder killed mid-load), fail-safe stale serving, timeouts,
//! negative caching, batches, refresh-ahead and the breaker around a load.
//!
//! Children are this test binary run again with an ignored test selected,
//! each a real process on the same SQLite file.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tierstack::blocking::Cache;
use tierstack::{
    BreakerState, CircuitBreakerConfig, Error, ErrorKind, Fetched, GetOptions, Loaded, ManualClock,
    Tier,
};

const CHILD_ENV: &str = "TIERSTACK_LOADING_CHILD";
const KEY: &str = "component:button";

fn open(path: &Path) -> Cache {
    Cache::builder()
        .sqlite_path(path)
        .ttl_jitter(0.0)
        .build_blocking()
        .unwrap()
}

fn text(v: Option<tierstack::Bytes>) -> Option<String> {
    v.map(|v| String::from_utf8(v.to_vec()).unwrap())
}

/// A loader counting its calls, answering `value` after `delay`.
fn counted(
    calls: &Arc<AtomicUsize>,
    value: &'static str,
    delay: Duration,
) -> impl FnOnce(&str) -> tierstack::Result<Fetched> + Send + 'static {
    let calls = calls.clone();
    move |_key| {
        calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(delay);
        Ok(Fetched::value(value))
    }
}

#[test]
fn a_hundred_threads_missing_one_key_make_one_loader_call() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("c.db"));
    let calls = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(100));
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let (cache, calls, start) = (cache.clone(), calls.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let loader = counted(&calls, "loaded", Duration::from_millis(100));
                text(cache.get_or_load(KEY, loader, GetOptions::new()).unwrap())
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().as_deref(), Some("loaded"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let stats = cache.stats().source;
    assert_eq!((stats.requests, stats.successes), (1, 1));
    assert_eq!(stats.coalesced + 1, 100, "every other caller waited");
}

#[test]
fn a_hundred_tasks_missing_one_key_make_one_loader_call() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let cache = tierstack::Cache::builder()
        .sqlite_path(dir.path().join("c.db"))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let values = runtime.block_on(async {
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move {
                    let loader = move |key: String| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(Fetched::value(format!("async {key}")))
                    };
                    cache.get_or_load(KEY, loader, GetOptions::new()).await
                })
            })
            .collect();
        let mut values = Vec::new();
        for t in tasks {
            values.push(text(t.await.unwrap().unwrap()));
        }
        values
    });
    assert!(
        values
            .iter()
            .all(|v| v.as_deref() == Some("async component:button"))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// The file every child appends a line to when its loader runs.
fn calls_file(dir: &Path) -> std::path::PathBuf {
    dir.join("calls")
}

fn child(test: &str, spec: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[test]
fn four_processes_of_ten_threads_make_one_loader_call() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let children: Vec<_> = (0..4)
        .map(|_| {
            child("loading_child", &dir.path().display().to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    // Every child opens its cache and waits for the file `go`, so that
    // their misses overlap.
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&go, b"").unwrap();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a child failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("values 10 x shared"), "{stdout}");
    }
    let calls = std::fs::read_to_string(calls_file(dir.path())).unwrap();
    assert_eq!(calls.lines().count(), 1, "loader calls: {calls:?}");
}

#[test]
#[ignore = "run as a child process by four_processes_of_ten_threads_make_one_loader_call"]
fn loading_child() {
    let dir = std::path::PathBuf::from(std::env::var(CHILD_ENV).unwrap());
    let cache = open(&dir.join("c.db"));
    while !dir.join("go").exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let threads: Vec<_> = (0..10)
        .map(|_| {
            let (cache, dir) = (cache.clone(), dir.clone());
            std::thread::spawn(move || {
                let loader = move |_key: &str| {
                    let mut calls = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(calls_file(&dir))
                        .unwrap();
                    writeln!(calls, "{}", std::process::id()).unwrap();
                    std::thread::sleep(Duration::from_millis(300));
                    Ok(Fetched::value("shared"))
                };
                text(cache.get_or_load(KEY, loader, GetOptions::new()).unwrap())
            })
        })
        .collect();
    let values: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(values.iter().all(|v| v.as_deref() == Some("shared")));
    println!("values {} x shared", values.len());
}

#[test]
fn a_killed_lease_holder_is_taken_over_and_every_caller_gets_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    // The holder announces that its loader is running, then hangs.
    let mut holder = child("hanging_holder", &path.display().to_string())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("loading") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
            "the holder exited before loading"
        );
    }
    let cache = Cache::builder()
        .sqlite_path(&path)
        .hard_timeout(Duration::from_secs(1))
        .build_blocking()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            std::thread::spawn(move || {
                let loader = counted(&calls, "taken over", Duration::from_millis(50));
                text(cache.get_or_load(KEY, loader, GetOptions::new()).unwrap())
            })
        })
        .collect();
    // The waiters find the lease held and wait on the file, longer than
    // their own hard timeout: it bounds their fetch, not their wait.
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the lease held them off");
    let killed_at = Instant::now();
    holder.kill().unwrap();
    holder.wait().unwrap();
    for w in waiters {
        assert_eq!(w.join().unwrap().as_deref(), Some("taken over"));
    }
    assert!(
        killed_at.elapsed() < Duration::from_secs(3),
        "taken over within the lease ({:?})",
        killed_at.elapsed()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().source.coalesced_processes, 0);
}

#[test]
#[ignore = "run as a child process by a_killed_lease_holder_is_taken_over_and_every_caller_gets_the_value"]
fn hanging_holder() {
    let path = std::env::var(CHILD_ENV).unwrap();
    // Its lease would last a minute: only its death frees it sooner.
    let cache = Cache::builder()
        .sqlite_path(&path)
        .hard_timeout(Duration::from_secs(60))
        .build_blocking()
        .unwrap();
    let loader = |_key: &str| {
        println!("loading");
        std::io::stdout().flush().unwrap();
        std::thread::sleep(Duration::from_secs(600));
        Ok(Fetched::value("never"))
    };
    let _ = cache.get_or_load(KEY, loader, GetOptions::new());
}

/// A cache on `path` whose entries expire after 1 s of the manual clock.
fn stale_setup(path: &Path, clock: &ManualClock) -> Cache {
    Cache::builder()
        .sqlite_path(path)
        .sqlite_ttl(Duration::from_secs(1))
        .ttl_jitter(0.0)
        .refresh_ahead(0.0)
        .soft_timeout(Duration::from_millis(200))
        .clock(clock.clone())
        .build_blocking()
        .unwrap()
}

fn failing(
    calls: &Arc<AtomicUsize>,
) -> impl FnOnce(&str) -> tierstack::Result<Fetched> + Send + use<> {
    let calls = calls.clone();
    move |_| {
        calls.fetch_add(1, Ordering::SeqCst);
        Err(Error::new(ErrorKind::Source, "upstream is down"))
    }
}

#[test]
fn a_failing_source_serves_the_stale_copy_and_without_one_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let cache = stale_setup(&dir.path().join("c.db"), &clock);
    let calls = Arc::new(AtomicUsize::new(0));
    cache
        .get_or_load(
            KEY,
            counted(&calls, "v1", Duration::ZERO),
            GetOptions::new(),
        )
        .unwrap();
    clock.advance(Duration::from_secs(5));
    let found = cache
        .lookup_or_load(KEY, failing(&calls), GetOptions::new())
        .unwrap()
        .unwrap();
    assert_eq!(
        (&found.value[..], found.tier, found.stale),
        (&b"v1"[..], Tier::Sqlite, true)
    );
    assert_eq!(found.age, Duration::from_secs(5));
    let err = cache
        .get_or_load("no-copy", failing(&calls), GetOptions::new())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert!(err.message().contains("upstream is down"), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let stats = cache.stats().source;
    assert_eq!((stats.failures, stats.stale_served), (2, 1));
    // Past max_stale, the copy is gone and the error is the caller's.
    clock.advance(Duration::from_secs(2 * 86_400));
    let err = cache
        .get_or_load(KEY, failing(&calls), GetOptions::new())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
}

#[test]
fn an_open_breaker_serves_the_stale_copy_without_calling_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let cache = stale_setup(&dir.path().join("c.db"), &clock);
    let calls = Arc::new(AtomicUsize::new(0));
    cache
        .get_or_load(
            KEY,
            counted(&calls, "v1", Duration::ZERO),
            GetOptions::new(),
        )
        .unwrap();
    clock.advance(Duration::from_secs(5));
    cache.breaker_open();
    let found = cache
        .lookup_or_load(
            KEY,
            counted(&calls, "v2", Duration::ZERO),
            GetOptions::new(),
        )
        .unwrap()
        .unwrap();
    assert_eq!((&found.value[..], found.stale), (&b"v1"[..], true));
    let err = cache
        .get_or_load(
            "other",
            counted(&calls, "v2", Duration::ZERO),
            GetOptions::new(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourceUnavailable);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the source was not called");
    assert_eq!(cache.stats().source.rejected, 2);
    cache.breaker_close();
    let found = cache
        .lookup_or_load(
            KEY,
            counted(&calls, "v2", Duration::ZERO),
            GetOptions::new(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        (&found.value[..], found.tier, found.stale),
        (&b"v2"[..], Tier::Source, false)
    );
}

#[test]
fn a_slow_source_past_the_soft_timeout_serves_stale_then_fills_the_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let cache = stale_setup(&dir.path().join("c.db"), &clock);
    let calls = Arc::new(AtomicUsize::new(0));
    cache
        .get_or_load(
            KEY,
            counted(&calls, "v1", Duration::ZERO),
            GetOptions::new(),
        )
        .unwrap();
    clock.advance(Duration::from_secs(5));
    let started = Instant::now();
    let found = cache
        .lookup_or_load(
            KEY,
            counted(&calls, "v2", Duration::from_millis(600)),
            GetOptions::new(),
        )
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert_eq!((&found.value[..], found.stale), (&b"v1"[..], true));
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(250),
        "served stale after {took:?}, soft_timeout 200 ms"
    );
    // The fetch goes on in the background and fills the tiers.
    std::thread::sleep(Duration::from_millis(700));
    let found = cache.lookup_cached(KEY).unwrap().unwrap();
    assert_eq!((&found.value[..], found.tier), (&b"v2"[..], Tier::Memory));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn a_load_past_the_hard_timeout_is_abandoned_and_counts_as_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("c.db"))
        .soft_timeout(Duration::from_millis(50))
        .hard_timeout(Duration::from_millis(200))
        .build_blocking()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let err = cache
        .get_or_load(
            KEY,
            counted(&calls, "late", Duration::from_millis(800)),
            GetOptions::new(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_millis(400));
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        !cache.has(KEY).unwrap(),
        "an abandoned fetch stores nothing"
    );
    let stats = cache.stats();
    assert_eq!((stats.source.timeouts, stats.source.failures), (1, 1));
    assert_eq!(stats.breaker.failure_count, 1);
}

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
fn a_rate_limited_source_keeps_the_breaker_open_until_its_reset() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("c.db"))
        .circuit_breaker(CircuitBreakerConfig {
            threshold: 5,
            ..CircuitBreakerConfig::default()
        })
        .clock(clock.clone())
        .build_blocking()
        .unwrap();
    let reset = clock.now_ms() + 300_000;
    let err = cache
        .get_or_load(
            KEY,
            move |_| Err(Error::rate_limited("rate limited", Some(reset))),
            GetOptions::new(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    let status = cache.breaker_status();
    assert_eq!(status.state, BreakerState::Open);
    assert_eq!(status.next_attempt_at, Some(reset));
    assert_eq!(
        cache.breaker_status(),
        status,
        "reading the status changes nothing"
    );
    clock.advance(Duration::from_secs(299));
    let err = cache
        .get_or_load(KEY, |_| Ok(Fetched::value("v")), GetOptions::new())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourceUnavailable);
    clock.advance(Duration::from_secs(2));
    let value = cache
        .get_or_load(KEY, |_| Ok(Fetched::value("v")), GetOptions::new())
        .unwrap();
    assert_eq!(text(value).as_deref(), Some("v"));
    assert_eq!(cache.breaker_status().state, BreakerState::HalfOpen);
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
