//! The machine tests' harness: a "machine" is a child process of the test
//! binary, with its own L1 and L2 file, driven over its stdin; this process
//! is a machine too ([`here`]). Each test binary that starts machines
//! declares an ignored `machine_child` test that runs [`machine_child`].
//! Every machine loads from an origin that logs its requests to a file.

#![allow(dead_code)] // each test binary uses a part of this module

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::redis_support::{Proxy, RedisServer};
use crate::support::{CHILD_ENV, child_command};
use tierstack::blocking::Cache;
use tierstack::source::from_blocking_fn;
use tierstack::{BackplaneStats, Fetched, RedisConfig, Stats, Tier};

pub const NAMESPACE: &str = "machines";

/// How long the origin takes to answer: long enough that every caller of
/// both machines asks while the first load is under way.
pub const ORIGIN_DELAY: Duration = Duration::from_millis(300);

/// The bound on a change reaching another machine's reads, which the
/// backplane documents for a connected reader on a quiet network (see
/// `backplane.rs`); `machines.rs` asserts the worst of 1,000 trials under it.
pub const BOUND: Duration = Duration::from_millis(250);

/// A "machine" in a child process.
pub struct Machine {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// What a child machine is started with.
pub struct Spec<'a> {
    pub url: &'a str,
    pub db: &'a Path,
    pub origin_log: &'a Path,
    pub max_len: u64,
}

impl Machine {
    pub fn start(spec: &Spec<'_>) -> Self {
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
    pub fn answer(&mut self) -> String {
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

    pub fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    pub fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.answer()
    }

    /// `(value, tier)` of a read, or `None` on a miss.
    pub fn get(&mut self, key: &str) -> Option<(String, String)> {
        let answer = self.ask(&format!("get {key}"));
        let (tier, value) = answer.strip_prefix("value ")?.split_once(' ')?;
        Some((value.to_owned(), tier.to_owned()))
    }

    pub fn set(&mut self, key: &str, value: &str) {
        assert_eq!(self.ask(&format!("set {key} {value}")), "ok");
    }

    /// Reads `key` until it is `value`: how long that took, and the tier.
    pub fn poll(&mut self, key: &str, value: &str) -> (Duration, String) {
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
    pub fn read(&mut self, prefix: &str, n: usize) -> Vec<String> {
        let answer = self.ask(&format!("read {prefix} {n}"));
        let values = answer.strip_prefix("read ").unwrap();
        values.split(',').map(str::to_owned).collect()
    }

    pub fn stats(&mut self) -> serde_json::Value {
        let answer = self.ask("stats");
        serde_json::from_str(answer.strip_prefix("stats ").unwrap()).unwrap()
    }

    pub fn backplane(&mut self) -> serde_json::Value {
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
pub fn machine_child() {
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
pub fn origin_request(log: &Path, key: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    writeln!(file, "{} {key}", std::process::id()).unwrap();
    std::thread::sleep(ORIGIN_DELAY);
}

pub fn origin_requests(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// This process as a machine: its own file, the same Redis.
pub fn here(dir: &Path, url: &str, loads: &Arc<AtomicUsize>) -> Cache {
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

pub fn backplane(cache: &Cache) -> BackplaneStats {
    let stats: Stats = cache.stats();
    stats.redis.unwrap().backplane.unwrap()
}

/// Waits (up to 20 s) for `done`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
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
pub fn settle(machine: &mut Machine, key: &str, v: &str, received: u64) {
    wait_until("the machine hears of every change", || {
        machine.backplane()["received"] == received
    });
    assert_eq!(machine.get(key).map(|(v, _)| v).as_deref(), Some(v));
    assert_eq!(machine.get(key), value(v, Tier::Memory));
}

/// This process (A) and a child machine (B), each with its own file in a
/// new directory, on the Redis at `url`; both load from the origin log.
pub struct Pair {
    pub _dir: tempfile::TempDir,
    pub log: PathBuf,
    pub loads: Arc<AtomicUsize>,
    pub a: Cache,
    pub b: Machine,
}

pub fn pair(url: &str) -> Pair {
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

pub fn value(v: &str, tier: Tier) -> Option<(String, String)> {
    Some((v.to_owned(), tier.as_str().to_owned()))
}

/// B behind a proxy the test cuts: B's network goes away while A writes.
pub fn cut_off_machine(
    server: &RedisServer,
    dir: &Path,
    max_len: u64,
) -> (Proxy, Machine, PathBuf) {
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
