//! The L1 hit path, when no coherence check is due, allocates nothing (the
//! value handle is a refcount bump) and waits for nothing: not for another
//! thread's lock, not for a `fork()` under way in another thread.
//!
//! This binary counts the allocations of each thread with its own global
//! allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use tierstack::Tier;
use tierstack::blocking::Cache;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; counting touches only a
// const-initialised thread-local without a destructor.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// A cache whose coherence check is not due for an hour after opening.
fn open(path: &Path) -> Cache {
    Cache::builder()
        .sqlite_path(path)
        .coherence_interval(Duration::from_secs(3600))
        .build_blocking()
        .unwrap()
}

const KEYS: usize = 4096;

fn key(i: usize) -> String {
    format!("component:react:hit-path-{i}")
}

#[test]
fn an_l1_hit_allocates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("alloc.db"));
    let keys: Vec<String> = (0..KEYS).map(key).collect();
    cache
        .mset(keys.iter().map(|k| (k.clone(), "value")))
        .unwrap();
    assert_eq!(cache.lookup(&keys[0]).unwrap().unwrap().tier, Tier::Memory);
    // Every key once, and then again: the counters time (and sample) one
    // hit in 64 of each thread.
    for round in 0..2 {
        let before = allocations();
        let mut found = 0;
        for key in &keys {
            found += usize::from(cache.get(key).unwrap().is_some());
        }
        let allocated = allocations() - before;
        assert_eq!(found, KEYS);
        assert_eq!(
            allocated, 0,
            "{KEYS} L1 hits allocated {allocated} times (round {round})"
        );
    }
}

/// One thread writes while another process holds the file's write lock, so
/// it waits inside SQLite; a second thread calls `fork()`, which waits for
/// the first to leave SQLite. L1 hits on a third thread must not wait too.
#[test]
fn l1_hits_do_not_wait_for_a_fork_held_up_by_a_slow_write() {
    const HOLD: Duration = Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fork.db");
    let cache = open(&path);
    let keys: Vec<String> = (0..1024).map(key).collect();
    cache
        .mset(keys.iter().map(|k| (k.clone(), "value")))
        .unwrap();
    // Another connection takes the write lock for HOLD.
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let holder = thread::spawn(move || {
        thread::sleep(HOLD);
        holder.execute_batch("COMMIT").unwrap();
    });
    let writer = {
        let cache = cache.clone();
        thread::spawn(move || cache.set("slow", "write").unwrap())
    };
    thread::sleep(Duration::from_millis(300));
    let forker = thread::spawn(|| {
        // SAFETY: the child leaves at once through `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: ends the child without running the parent's exit hooks.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: reaps our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        status
    });
    thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    for key in &keys {
        assert!(cache.get(key).unwrap().is_some());
    }
    let took = start.elapsed();
    holder.join().unwrap();
    writer.join().unwrap();
    assert_eq!(forker.join().unwrap(), 0);
    assert!(
        took < Duration::from_secs(1),
        "{} L1 hits took {took:?} while a fork waited for a write",
        keys.len()
    );
}
