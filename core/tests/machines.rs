//! Many machines on one Redis: each "machine" is a separate process with
//! its own L1 and its own L2 file (the test process, and children of this
//! test binary driven over their stdin), sharing a real `redis-server` on
//! a free loopback port. The backplane keeps their L1s and files coherent;
//! the Redis lease makes a missing key one origin request for all of them.

#![cfg(feature = "redis")]

#[path = "support/redis.rs"]
mod redis_support;
mod support;

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis_support::{Proxy, RedisServer};
use support::{CHILD_ENV, child_command};
use tierstack::blocking::Cache;
use tierstack::source::from_blocking_fn;
use tierstack::{BackplaneStats, BreakerState, Fetched, RedisConfig, Stats, Tier};

const NAMESPACE: &str = "machines";

/// How long the origin takes to answer: long enough that every caller of
/// both machines asks while the first load is under way.
const ORIGIN_DELAY: Duration = Duration::from_millis(300);

/// The bound on a change reaching another machine's reads, which the
/// backplane documents for a connected reader on a quiet network (see
/// `backplane.rs`); this test asserts the worst of 1,000 trials under it.
const BOUND: Duration = Duration::from_millis(250);

/// A "machine" in a child process.
struct Machine {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// What a child machine is started with.
struct Spec<'a> {
    url: &'a str,
    db: &'a Path,
    origin_log: &'a Path,
    max_len: u64,
}

impl Machine {
    fn start(spec: &Spec<'_>) -> Self {
        let arg = format!(
            "{}|{}|{}|{}",
            spec.url,
            spec.db.display(),
            spec.origin_log.display(),
            spec.max_len
        );
        let mut child = child_command("machine_child", &arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut machine = Self {
            child,
            stdin,
            stdout,
        };
        assert_eq!(machine.answer(), "ready");
        machine
    }

    /// The next answer line (what follows its `@`).
    fn answer(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "the machine exited");
            if let Some(at) = line.find('@') {
                return line[at + 1..].trim_end().to_owned();
            }
        }
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.answer()
    }

    /// `(value, tier)` of a read, or `None` on a miss.
    fn get(&mut self, key: &str) -> Option<(String, String)> {
        let answer = self.ask(&format!("get {key}"));
        let (tier, value) = answer.strip_prefix("value ")?.split_once(' ')?;
        Some((value.to_owned(), tier.to_owned()))
    }

    fn set(&mut self, key: &str, value: &str) {
        assert_eq!(self.ask(&format!("set {key} {value}")), "ok");
    }

    /// Reads `key` until it is `value`: how long that took, and the tier.
    fn poll(&mut self, key: &str, value: &str) -> (Duration, String) {
        let answer = self.ask(&format!("poll {key} {value}"));
        let mut parts = answer.split(' ');
        assert_eq!(parts.next(), Some("seen"), "{answer}");
        let micros: u64 = parts.next().unwrap().parse().unwrap();
        (
            Duration::from_micros(micros),
            parts.next().unwrap().to_owned(),
        )
    }

    /// The values of `<prefix>0` to `<prefix>{n-1}` (`-` for a miss).
    fn read(&mut self, prefix: &str, n: usize) -> Vec<String> {
        let answer = self.ask(&format!("read {prefix} {n}"));
        let values = answer.strip_prefix("read ").unwrap();
        values.split(',').map(str::to_owned).collect()
    }

    fn stats(&mut self) -> serde_json::Value {
        let answer = self.ask("stats");
        serde_json::from_str(answer.strip_prefix("stats ").unwrap()).unwrap()
    }

    fn backplane(&mut self) -> serde_json::Value {
        self.stats()["redis"]["backplane"].clone()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child side: a machine reading commands from stdin. Its loader
/// appends a line to the origin log per request and answers after
/// [`ORIGIN_DELAY`].
#[test]
#[ignore = "a child process of the machine tests"]
fn machine_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [url, db, origin_log, max_len] = parts[..] else {
        panic!("bad spec {spec:?}");
    };
    let mut redis = RedisConfig::new(url);
    redis.backplane_max_len = max_len.parse().unwrap();
    let origin_log = PathBuf::from(origin_log);
    let cache = Cache::builder()
        .namespace(NAMESPACE)
        .sqlite_path(db)
        .ttl_jitter(0.0)
        .redis(redis)
        .source(from_blocking_fn(move |key| {
            origin_request(&origin_log, key);
            Ok(Fetched::value(format!("origin of {key}")))
        }))
        .build_blocking()
        .unwrap();
    let cache = Arc::new(cache);
    println!("@ready");
    for line in std::io::stdin().lines() {
        let line = line.unwrap();
        let parts: Vec<&str> = line.splitn(3, ' ').collect();
        match parts[..] {
            ["get", key] => match cache.lookup(key).unwrap() {
                Some(found) => println!(
                    "@value {} {}",
                    found.tier.as_str(),
                    String::from_utf8_lossy(&found.value)
                ),
                None => println!("@miss"),
            },
            ["set", key, value] => {
                cache.set(key, value.to_owned()).unwrap();
                println!("@ok");
            }
            ["poll", key, want] => {
                let start = Instant::now();
                loop {
                    let found = cache.lookup(key).unwrap();
                    if let Some(found) = found.filter(|f| f.value == want.as_bytes()) {
                        println!(
                            "@seen {} {}",
                            start.elapsed().as_micros(),
                            found.tier.as_str()
                        );
                        break;
                    }
                    assert!(
                        start.elapsed() < Duration::from_secs(10),
                        "{key} never became {want}"
                    );
                }
            }
            ["read", prefix, n] => {
                let n: usize = n.parse().unwrap();
                let values: Vec<String> = (0..n)
                    .map(|i| {
                        let found = cache.lookup(&format!("{prefix}{i}")).unwrap();
                        found.map_or("-".into(), |f| String::from_utf8_lossy(&f.value).into())
                    })
                    .collect();
                println!("@read {}", values.join(","));
            }
            ["burst", key, n] => {
                let n: usize = n.parse().unwrap();
                let threads: Vec<_> = (0..n)
                    .map(|_| {
                        let (cache, key) = (cache.clone(), key.to_owned());
                        std::thread::spawn(move || cache.get(&key).unwrap().unwrap())
                    })
                    .collect();
                let mut values: Vec<String> = threads
                    .into_iter()
                    .map(|t| String::from_utf8_lossy(&t.join().unwrap()).into_owned())
                    .collect();
                values.dedup();
                println!("@burst {}", values.join(","));
            }
            ["stats"] => println!("@stats {}", serde_json::to_string(&cache.stats()).unwrap()),
            ["quit"] => break,
            _ => panic!("unknown command {line:?}"),
        }
    }
}

/// One request to the origin: logged (a line in a file every machine
/// appends to), then answered after [`ORIGIN_DELAY`].
fn origin_request(log: &Path, key: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    writeln!(file, "{} {key}", std::process::id()).unwrap();
    std::thread::sleep(ORIGIN_DELAY);
}

fn origin_requests(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// This process as a machine: its own file, the same Redis.
fn here(dir: &Path, url: &str, loads: &Arc<AtomicUsize>) -> Cache {
    let loads = loads.clone();
    Cache::builder()
        .namespace(NAMESPACE)
        .sqlite_path(dir.join("here.db"))
        .ttl_jitter(0.0)
        .redis(RedisConfig::new(url))
        .source(from_blocking_fn(move |key| {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok(Fetched::value(format!("origin of {key}")))
        }))
        .build_blocking()
        .unwrap()
}

fn backplane(cache: &Cache) -> BackplaneStats {
    let stats: Stats = cache.stats();
    stats.redis.unwrap().backplane.unwrap()
}

/// Waits (up to 20 s) for `done`.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(20), "never: {what}");

        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until `machine` has heard of `received` changes, then checks that
/// it serves `key` as `v`, from memory after one read. (A read of Redis
/// that races the change's arrival answers without keeping the value; see
/// `backplane.rs`.)
fn settle(machine: &mut Machine, key: &str, v: &str, received: u64) {
    wait_until("the machine hears of every change", || {
        machine.backplane()["received"] == received
    });
    assert_eq!(machine.get(key).map(|(v, _)| v).as_deref(), Some(v));
    assert_eq!(machine.get(key), value(v, Tier::Memory));
}

/// This process (A) and a child machine (B), each with its own file in a
/// new directory, on the Redis at `url`; both load from the origin log.
struct Pair {
    _dir: tempfile::TempDir,
    log: PathBuf,
    loads: Arc<AtomicUsize>,
    a: Cache,
    b: Machine,
}

fn pair(url: &str) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("origin.log");
    let loads = Arc::new(AtomicUsize::new(0));
    let a = here(dir.path(), url, &loads);
    let b = Machine::start(&Spec {
        url,
        db: &dir.path().join("b.db"),
        origin_log: &log,
        max_len: 100_000,
    });
    Pair {
        _dir: dir,
        log,
        loads,
        a,
        b,
    }
}

fn value(v: &str, tier: Tier) -> Option<(String, String)> {
    Some((v.to_owned(), tier.as_str().to_owned()))
}

#[test]
fn a_set_on_one_machine_reaches_the_others_reads_within_the_bound() {
    let server = RedisServer::start();
    let Pair {
        _dir,
        log,
        loads,
        a,
        mut b,
    } = pair(&server.url());
    a.set("component:card", "v0").unwrap();
    b.poll("component:card", "v0");
    settle(&mut b, "component:card", "v0", 1);

    let mut lags: Vec<Duration> = Vec::with_capacity(1000);
    for i in 1..=1000 {
        let v = format!("v{i}");
        a.set("component:card", v.clone()).unwrap();
        let (took, tier) = b.poll("component:card", &v);
        // Dropped from B's L1 and file by the backplane: read from Redis.
        assert_eq!(tier, "redis", "trial {i}");
        lags.push(took);
    }
    lags.sort();
    let worst = *lags.last().unwrap();
    eprintln!(
        "a set on one machine, seen by the other's reads: median {:?}, p99 {:?}, worst {:?} over 1,000 trials",
        lags[500], lags[990], worst
    );
    assert!(worst < BOUND, "worst {worst:?} over the bound {BOUND:?}");
    // Once every change is in, B serves it from memory; no origin request.
    settle(&mut b, "component:card", "v1000", 1001);
    let stats = b.backplane();
    assert_eq!(stats["received"], 1001);
    assert_eq!(stats["resyncs"], 0);
    assert!(origin_requests(&log).is_empty());
    assert_eq!(loads.load(Ordering::SeqCst), 0);
    assert_eq!(backplane(&a).sent, 1001);
}

#[test]
fn deletes_tags_and_clears_reach_the_other_machines_file() {
    let server = RedisServer::start();
    let Pair {
        _dir,
        log,
        loads: _,
        a,
        mut b,
    } = pair(&server.url());
    // B's own writes: in its L1 and its file (and Redis).
    b.set("gone", "1");
    b.set("red", "b");
    b.set("kept", "3");
    wait_until("A hears of B's writes", || backplane(&a).received == 3);
    // A's tagged write replaces B's copy; B reads it, with its tag, from Redis.
    a.set_with("red", "2", tierstack::SetOptions::new().tags(["colour"]))
        .unwrap();
    b.poll("red", "2");
    let received = |b: &mut Machine| b.backplane()["received"].as_u64().unwrap();
    let before = received(&mut b);

    a.delete("gone").unwrap();
    wait_until("B hears of the delete", || received(&mut b) > before);
    // Gone from B's L1 and its file: the read goes to the origin.
    assert_eq!(b.get("gone"), value("origin of gone", Tier::Source));

    assert_eq!(a.invalidate_tag("colour").unwrap(), 1);
    wait_until("B hears of the tag", || received(&mut b) > before + 1);
    assert_eq!(b.get("red"), value("origin of red", Tier::Source));

    a.clear().unwrap();
    wait_until("B hears of the clear", || received(&mut b) > before + 2);
    assert_eq!(b.get("kept"), value("origin of kept", Tier::Source));
    assert_eq!(origin_requests(&log).len(), 3);
}

#[test]
fn redis_killed_mid_run_both_keep_serving_and_recover_when_it_returns() {
    let mut server = RedisServer::start();
    let Pair {
        _dir,
        log: _,
        loads: _,
        a,
        mut b,
    } = pair(&server.url());
    a.set("before", "1").unwrap();
    b.poll("before", "1");
    settle(&mut b, "before", "1", 1);

    server.kill();
    // Every call still answers, from L1, L2 or the origin; none fails.
    for i in 0..50 {
        a.set(format!("during{i}"), "2").unwrap();
        assert_eq!(
            a.lookup(&format!("during{i}")).unwrap().unwrap().tier,
            Tier::Memory
        );
        assert_eq!(b.get("before"), value("1", Tier::Memory));
        if i % 10 == 0 {
            assert_eq!(
                b.get(&format!("new{i}")),
                value(&format!("origin of new{i}"), Tier::Source)
            );
        }
    }
    assert_eq!(
        a.get("from-a").unwrap().as_deref(),
        Some(&b"origin of from-a"[..])
    );
    assert!(!backplane(&a).connected);
    assert_eq!(b.backplane()["connected"], false);

    server.restart();
    // Both readers reconnect; Redis lost the stream, so each empties its
    // tiers once; A delivers what Redis missed of its writes.
    wait_until("both reconnect", || {
        backplane(&a).connected && b.backplane()["connected"] == true
    });
    wait_until("A delivers what Redis missed", || {
        backplane(&a).deferred > 0
    });
    assert_eq!(backplane(&a).resyncs, 1);
    assert_eq!(b.backplane()["resyncs"], 1);
    assert_eq!(a.stats().redis.unwrap().breaker.state, BreakerState::Closed);
    assert_eq!(b.stats()["redis"]["breaker"]["state"], "closed");
    // And Redis carries changes again.
    a.set("after", "3").unwrap();
    let (took, tier) = b.poll("after", "3");
    assert_eq!(tier, "redis");
    assert!(took < BOUND, "{took:?}");
    b.set("from-b", "4");
    assert_eq!(a.lookup("from-b").unwrap().unwrap().tier, Tier::Redis);
}

/// B behind a proxy the test cuts: B's network goes away while A writes.
fn cut_off_machine(server: &RedisServer, dir: &Path, max_len: u64) -> (Proxy, Machine, PathBuf) {
    let proxy = Proxy::to(server.port);
    let log = dir.join("origin.log");
    let b = Machine::start(&Spec {
        url: &proxy.url(),
        db: &dir.join("b.db"),
        origin_log: &log,
        max_len,
    });
    (proxy, b, log)
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

#[test]
fn fifty_callers_on_each_of_two_machines_make_one_origin_request() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("origin.log");
    let url = server.url();
    let (a_db, b_db) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let spec = |db| Spec {
        url: &url,
        db,
        origin_log: &log,
        max_len: 100_000,
    };
    let mut a = Machine::start(&spec(&a_db));
    let mut b = Machine::start(&spec(&b_db));
    for key in ["component:dialog", "component:table", "component:tabs"] {
        a.send(&format!("burst {key} 50"));
        b.send(&format!("burst {key} 50"));
        let expected = format!("burst origin of {key}");
        assert_eq!(a.answer(), expected);
        assert_eq!(b.answer(), expected);
    }
    let requests = origin_requests(&log);
    assert_eq!(requests.len(), 3, "{requests:?}");
    let coalesced = |m: &mut Machine| m.stats()["source"]["coalesced_machines"].as_u64().unwrap();
    assert_eq!(coalesced(&mut a) + coalesced(&mut b), 3);
}
