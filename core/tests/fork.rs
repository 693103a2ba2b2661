//! `fork()` while other threads use the cache: the child must never block on
//! a lock one of the parent's threads held at the fork, and must read what
//! the file holds.
//!
//! Each child has a deadline: one that has not exited by then counts as hung
//! (it is killed).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tierstack::blocking::Cache;

const FORKS: usize = 200;
const THREADS: usize = 3;
const DEADLINE: Duration = Duration::from_secs(10);
const BUSY_KEYS: usize = 64;

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

fn fork_while_busy(cache: &Cache) {
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
    for n in 0..FORKS {
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
    assert_eq!(hung, 0, "{hung} of {FORKS} children hung");
    assert!(failed.is_empty(), "children exited with errors: {failed:?}");
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
