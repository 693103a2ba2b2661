//! `fork()` while other threads use the cache: the child must never block on
//! a lock one of the parent's threads held at the fork (the cache's, or the
//! shared runtime's), and must read what the file holds, not the parent's
//! L1. A child's writes, and those of a child it forks in turn, reach the
//! parent's L1 within `sqlite.coherence_interval` (each child writes as a
//! new origin in the change log).
//!
//! Each child has a deadline: one that has not exited by then counts as hung
//! (it is killed). No access of the parent may take a child's journal for
//! that of a live process that does not drain (the warning is captured).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tierstack::blocking::Cache;

const FORKS: usize = 200;
const THREADS: usize = 3;
const DEADLINE: Duration = Duration::from_secs(10);
const BUSY_KEYS: usize = 64;

/// The warnings the test process logged (a child's are dropped: a thread
/// of the parent may have held the lock when the child was created).
static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// The test process, which alone records warnings; set once the capture
/// is installed.
static TEST_PROCESS: OnceLock<u32> = OnceLock::new();

/// Captures the warnings of every test of this file into [`WARNINGS`].
fn capture_warnings() {
    struct Capture;
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if TEST_PROCESS.get() != Some(&std::process::id()) {
                return Ok(buf.len());
            }
            let line = String::from_utf8_lossy(buf).into_owned();
            WARNINGS.lock().unwrap().push(line);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    TEST_PROCESS.get_or_init(|| {
        tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .init();
        std::process::id()
    });
}

/// The warnings logged about a journal of the file at `path` found stuck.
fn stuck_journals(path: &std::path::Path) -> Vec<String> {
    let dir = format!("{}-wb", path.display());
    let warnings = WARNINGS.lock().unwrap();
    warnings
        .iter()
        .filter(|w| w.contains("does not drain") && w.contains(&dir))
        .cloned()
        .collect()
}

/// What a child does; its exit code says how it went (0: as expected).
fn child(cache: &Cache, n: usize) -> i32 {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // A memory-only cache starts empty in a child: the parent's L1 may
        // not be read there. With a file, the value is read from it.
        let fixed = cache.get("fixed").unwrap();
        if fixed.as_deref() != cache.config().sqlite.enabled.then_some(&b"value"[..]) {
            return 3;
        }
        let key = format!("child:{n}");
        cache.set(key.as_str(), "mine").unwrap();
        if cache.get(&key).unwrap().as_deref() != Some(&b"mine"[..]) {
            return 4;
        }
        if !cache.delete(&key).unwrap() || cache.get(&key).unwrap().is_some() {
            return 5;
        }
        // The keys the parent's threads keep using (and rewriting: any
        // value may be read back), so that the child needs the very L1
        // shards they lock.
        for i in 0..BUSY_KEYS {
            let key = format!("busy:{i}");
            cache.set(key.as_str(), "child").unwrap();
            let _ = cache.get(&key).unwrap();
        }
        0
    }));
    outcome.unwrap_or(2)
}

#[test]
fn forking_while_three_threads_read_and_write_never_hangs_a_child() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("fork.db"))
        .build_blocking()
        .unwrap();
    fork_while_busy(&cache);
}

#[test]
fn forking_a_memory_only_cache_while_three_threads_use_it_never_hangs_a_child() {
    let cache = Cache::builder().sqlite(false).build_blocking().unwrap();
    fork_while_busy(&cache);
}

/// With Redis: its tier's connection, stripes and backplane reader must
/// not hang a child either (each child is a machine of its own, reading
/// the parent's value through the file).
#[cfg(feature = "redis")]
#[test]
fn forking_a_cache_on_redis_while_three_threads_use_it_never_hangs_a_child() {
    #[path = "support/redis.rs"]
    mod redis_support;

    let server = redis_support::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // A timeout that a loaded machine does not reach: what would count
    // here is a connection the fork broke, not a slow answer.
    let mut redis = tierstack::RedisConfig::new(server.url());
    redis.timeout = std::time::Duration::from_secs(10);
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("fork.db"))
        .redis(redis)
        .build_blocking()
        .unwrap();
    // Each child connects to Redis: fewer of them.
    fork_n_while_busy(&cache, 40);
    let redis = cache.stats().redis.unwrap();
    assert_eq!((redis.errors, redis.skipped), (0, 0));
}

fn fork_while_busy(cache: &Cache) {
    fork_n_while_busy(cache, FORKS);
}

fn fork_n_while_busy(cache: &Cache, forks: usize) {
    capture_warnings();
    cache.set("fixed", "value").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (cache, stop) = (cache.clone(), stop.clone());
            thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("busy:{}", i % BUSY_KEYS);
                    match (i + t) % 16 {
                        0 => cache.set(key.as_str(), format!("{t}-{i}")).unwrap(),
                        1 => drop(cache.delete(&key).unwrap()),
                        _ => drop(cache.get(&key).unwrap()),
                    }
                    i += 1;
                }
            })
        })
        .collect();

    let (mut hung, mut failed) = (0, Vec::new());
    for n in 0..forks {
        // SAFETY: the child only uses the cache (whose fork handling is
        // under test) and leaves through `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = child(cache, n);
            // SAFETY: ends the child without running the parent's exit hooks.
            unsafe { libc::_exit(code) };
        }
        match wait_with_deadline(pid, DEADLINE) {
            Some(0) => {}
            Some(code) => failed.push((n, code)),
            None => hung += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    workers.into_iter().for_each(|w| w.join().unwrap());
    assert_eq!(hung, 0, "{hung} of {forks} children hung");
    assert!(failed.is_empty(), "children exited with errors: {failed:?}");
    // No access waited for a child's journal until the busy timeout (a
    // thread replaying a dead child's journal, its lock held, once waited
    // for the fork gate, held by a thread waiting for that very journal
    // while a fork was queued).
    if let Some(path) = cache
        .config()
        .sqlite
        .path
        .as_ref()
        .filter(|_| cache.config().sqlite.enabled)
    {
        let stuck = stuck_journals(path);
        assert!(stuck.is_empty(), "journals taken for stuck: {stuck:?}");
    }
}

/// The child's exit code, or `None` if it did not exit in time (then it is
/// killed).
fn wait_with_deadline(pid: libc::pid_t, deadline: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child without blocking.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            return Some(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            });
        }
        if start.elapsed() > deadline {
            eprintln!("child {pid} hung; its threads:\n{}", backtraces(pid));
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Every thread's stack of the stopped process `pid`, by gdb where it is
/// installed (the tests do not need it), so that a hang says where it is.
fn backtraces(pid: libc::pid_t) -> String {
    let gdb = std::process::Command::new("timeout")
        .args(["30", "gdb", "-p", &pid.to_string(), "-batch", "-nx"])
        .args(["-ex", "thread apply all bt"])
        .output();
    match gdb {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => format!(
            "(gdb failed: {}{})",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(err) => format!("(no backtrace: gdb could not be run: {err})"),
    }
}

/// Forks; the child runs `f` and leaves with its exit code (2 if it
/// panicked). Returns the child's exit code, or `None` if it hung.
fn in_child(deadline: Duration, f: impl FnOnce() -> i32) -> Option<i32> {
    // SAFETY: the child only runs `f` (cache calls and forks of its own)
    // and leaves through `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(2);
        // SAFETY: ends the child without running the parent's exit hooks.
        unsafe { libc::_exit(code) };
    }
    wait_with_deadline(pid, deadline)
}

fn read(cache: &Cache, key: &str) -> Option<Vec<u8>> {
    cache.get(key).ok().flatten().map(|v| v.to_vec())
}

#[test]
fn a_forked_child_reads_through_a_fresh_l1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    // The longest interval: the parent keeps serving its L1 copy for an hour.
    let cache = Cache::builder()
        .sqlite_path(&path)
        .coherence_interval(Duration::from_secs(3600))
        .build_blocking()
        .unwrap();
    cache.set("k", "parent").unwrap();
    let file = Cache::builder()
        .sqlite_path(&path)
        .memory(false)
        .build_blocking()
        .unwrap();
    file.set("k", "file").unwrap();
    assert_eq!(read(&cache, "k").as_deref(), Some(&b"parent"[..]));
    let code = in_child(DEADLINE, || {
        let lookup = cache.lookup("k").ok().flatten();
        match lookup.map(|l| (l.value.to_vec(), l.tier)) {
            Some((value, tierstack::Tier::Sqlite)) if value == b"file" => 0,
            _ => 3,
        }
    });
    assert_eq!(
        code,
        Some(0),
        "the child read the parent's L1 (3) or hung (None)"
    );
}

#[test]
fn writes_of_a_forked_child_and_of_its_own_child_reach_the_parent_within_the_interval() {
    let interval = Duration::from_millis(20);
    let bound = interval + Duration::from_millis(15);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("lineage.db"))
        .coherence_interval(interval)
        .build_blocking()
        .unwrap();
    cache.set("child", "parent").unwrap();
    cache.set("grandchild", "parent").unwrap();
    let code = in_child(DEADLINE, || {
        // The child's L1 holds the key its own child will change.
        if read(&cache, "grandchild").as_deref() != Some(&b"parent"[..]) {
            return 3;
        }
        if cache.set("child", "child").is_err() {
            return 4;
        }
        let grandchild = in_child(DEADLINE, || {
            if read(&cache, "child").as_deref() != Some(&b"child"[..]) {
                return 5;
            }
            match cache.set("grandchild", "grandchild") {
                Ok(()) => 0,
                Err(_) => 6,
            }
        });
        match grandchild {
            Some(0) => {}
            Some(code) => return code,
            None => return 7,
        }
        thread::sleep(bound);
        match read(&cache, "grandchild").as_deref() {
            Some(b"grandchild") => 0,
            _ => 8,
        }
    });
    assert_eq!(code, Some(0), "see the exit codes in the test");
    thread::sleep(bound);
    assert_eq!(read(&cache, "child").as_deref(), Some(&b"child"[..]));
    assert_eq!(
        read(&cache, "grandchild").as_deref(),
        Some(&b"grandchild"[..])
    );
}

#[test]
fn forking_while_threads_take_the_shared_runtime_never_hangs_a_child() {
    const FORKS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("runtime.db"))
        .build_blocking()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // The async API asks for the shared runtime on every write.
    let takers: Vec<_> = (0..THREADS)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    drop(tierstack::runtime::handle());
                }
            })
        })
        .collect();
    let (mut hung, mut failed) = (0, Vec::new());
    for n in 0..FORKS {
        // The child's first use of the file restarts maintenance on a new
        // runtime.
        let code = in_child(Duration::from_secs(5), || {
            let key = format!("child:{n}");
            match cache.set(key.as_str(), "x").and_then(|()| cache.get(&key)) {
                Ok(Some(_)) => 0,
                _ => 3,
            }
        });
        match code {
            Some(0) => {}
            Some(code) => failed.push((n, code)),
            None => {
                hung += 1;
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    takers.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(hung, 0, "a child hung");
    assert!(failed.is_empty(), "children exited with errors: {failed:?}");
}

#[test]
fn a_forked_child_wakes_its_own_maintenance_not_the_parents() {
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = 64 * 1024;
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("wake.db"))
        .sqlite_max_bytes(max_bytes)
        .build_blocking()
        .unwrap();
    // Just under the budget.
    for i in 0..56 {
        cache.set(format!("k{i}"), "v".repeat(1024)).unwrap();
    }
    assert!(cache.inspect().unwrap().unwrap().bytes <= max_bytes);
    // The parent's maintenance task is now asleep, waiting to be woken.
    thread::sleep(Duration::from_millis(50));
    let code = in_child(DEADLINE, || {
        // One write past the budget wakes maintenance (once), which must
        // evict now rather than at its next tick, a second later.
        cache.set("big", "b".repeat(8 * 1024)).unwrap();
        let crossed = Instant::now();
        while crossed.elapsed() < Duration::from_millis(500) {
            if cache.inspect().unwrap().unwrap().bytes <= max_bytes {
                return 0;
            }
            thread::sleep(Duration::from_millis(5));
        }
        1
    });
    assert_eq!(code, Some(0), "the child's maintenance was not woken");
}

/// A load the parent has in flight at the fork: the child's own load of the
/// key neither hangs on the parent's flight (its task does not exist in the
/// child) nor calls its loader while the parent, alive, holds the key's
/// lease in the file: it gets the parent's value. Without a file, the child
/// loads on its own.
#[test]
fn a_child_forked_mid_load_gets_the_value_without_hanging() {
    use tierstack::{Fetched, GetOptions};
    for with_file in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::builder()
            .sqlite(with_file)
            .sqlite_path(dir.path().join("c.db"))
            .build_blocking()
            .unwrap();
        let started = Arc::new(AtomicBool::new(false));
        let loading = {
            let (cache, started) = (cache.clone(), started.clone());
            thread::spawn(move || {
                let slow = move |_: &str| {
                    started.store(true, Ordering::Release);
                    thread::sleep(Duration::from_millis(400));
                    Ok(Fetched::value("parent"))
                };
                cache.get_or_load("k", slow, GetOptions::new()).unwrap()
            })
        };
        // Forked once the parent's load is under way (its lease taken), not
        // after a guess at how long that takes, which a busy machine beats.
        while !started.load(Ordering::Acquire) {
            thread::sleep(Duration::from_millis(1));
        }
        let code = in_child(DEADLINE, || {
            let own = |_: &str| Ok(Fetched::value("child"));
            let got = cache.get_or_load("k", own, GetOptions::new()).unwrap();
            let wanted: &[u8] = if with_file { b"parent" } else { b"child" };
            i32::from(got.as_deref() != Some(wanted))
        });
        assert_eq!(code, Some(0), "with a file: {with_file}");
        assert_eq!(loading.join().unwrap().as_deref(), Some(&b"parent"[..]));
    }
}

/// A write-behind cache forked: the child's writes carry idempotency keys
/// of their own (not the parent's next ones), and each write of either
/// process reaches the source once, also one still in the parent's journal
/// at the fork (the child neither drains nor replays it).
#[test]
fn a_forked_child_writing_behind_delivers_its_writes_under_keys_of_its_own() {
    use std::io::Write as _;
    use tierstack::source::{self, Fetched};
    use tierstack::{OutboxConfig, Strategy};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("deliveries");
    let append = {
        let log = log.clone();
        move |key: &str, id: &str| {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            file.write_all(format!("{key} {id}\n").as_bytes()).unwrap();
            Ok(())
        }
    };
    let remove = append.clone();
    let source = source::from_blocking_fn(|_: &str| Ok(Fetched::NotFound)).with_writes(
        move |k, _: &[u8], id| append(k, id),
        move |k, id| remove(k, id),
    );
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("behind.db"))
        .source(source)
        .strategy(Strategy::WriteBehind)
        .outbox(OutboxConfig {
            retry_base: Duration::from_millis(10),
            retry_max: Duration::from_millis(20),
            ..OutboxConfig::default()
        })
        .build_blocking()
        .unwrap();
    cache.set("p0", "v").unwrap();
    cache.flush().unwrap();
    cache.set("p-late", "v").unwrap();
    let code = in_child(DEADLINE, || {
        cache.set("c0", "v").unwrap();
        cache.set("c1", "v").unwrap();
        i32::from(cache.flush().is_err())
    });
    assert_eq!(code, Some(0));
    cache.set("p1", "v").unwrap();
    cache.flush().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let mut keys: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["c0", "c1", "p-late", "p0", "p1"], "{text}");
    let ids: std::collections::HashSet<&str> =
        text.lines().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(ids.len(), 5, "{text}");
}
