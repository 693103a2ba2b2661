//! What the host bindings build on: tags, flush, L1 versions, and a cache
//! that keeps working in a child after `fork()`.

use std::time::Duration;

use tierstack::blocking::Cache;
use tierstack::{ErrorKind, SetOptions, Tier};

fn open(path: &std::path::Path) -> Cache {
    Cache::builder().sqlite_path(path).build_blocking().unwrap()
}

#[test]
fn invalidate_tag_removes_tagged_entries_from_every_tier() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tags.db");
    let cache = open(&path);
    let tagged = SetOptions::new().tags(["react", "button"]);
    cache.set_with("button", "b", tagged.clone()).unwrap();
    cache
        .set_with("card", "c", SetOptions::new().tags(["react"]))
        .unwrap();
    cache
        .set_with("vue-button", "v", SetOptions::new().tags(["vue", "button"]))
        .unwrap();
    cache.set("plain", "p").unwrap();

    // Another process (a second cache on the file) removes by tag in L2.
    let other = open(&path);
    assert_eq!(other.invalidate_tag("vue").unwrap(), 1);
    assert_eq!(other.get("vue-button").unwrap(), None);

    assert_eq!(cache.invalidate_tag("react").unwrap(), 2);
    assert_eq!(cache.get("button").unwrap(), None);
    assert_eq!(cache.get("card").unwrap(), None);
    assert_eq!(cache.get("plain").unwrap().as_deref(), Some(&b"p"[..]));
    assert_eq!(cache.invalidate_tag("react").unwrap(), 0);
    assert_eq!(cache.keys("*").unwrap(), ["plain", "vue-button"]);
    cache.close().unwrap();
    let reopened = open(&path);
    assert_eq!(reopened.keys("*").unwrap(), ["plain"]);
    assert_eq!(
        reopened.invalidate_tag("").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn invalidate_tag_in_a_memory_only_cache() {
    let cache = Cache::builder().sqlite(false).build_blocking().unwrap();
    cache
        .set_with("a", "1", SetOptions::new().tags(["t"]))
        .unwrap();
    cache.set("b", "2").unwrap();
    assert_eq!(cache.invalidate_tag("t").unwrap(), 1);
    assert_eq!(cache.keys("*").unwrap(), ["b"]);
    // A rewrite without the tag is not removed by it.
    cache
        .set_with("c", "3", SetOptions::new().tags(["t"]))
        .unwrap();
    cache.set("c", "4").unwrap();
    assert_eq!(cache.invalidate_tag("t").unwrap(), 0);
    assert_eq!(cache.get("c").unwrap().as_deref(), Some(&b"4"[..]));
}

#[test]
fn flush_leaves_the_file_complete_for_another_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flush.db");
    let cache = open(&path);
    cache.set("k", "v").unwrap();
    cache.get("k").unwrap();
    cache.flush().unwrap();
    let inspection = cache.inspect().unwrap().unwrap();
    assert_eq!(inspection.entries, 1);
    let entry = open(&path).entry("k").unwrap().unwrap();
    assert_eq!(&entry.value[..], b"v");
    cache.close().unwrap();
    assert_eq!(cache.flush().unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn memory_versions_change_with_every_write_and_count_as_hits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("versions.db");
    let cache = open(&path);
    assert_eq!(cache.memory_version("k"), None);
    cache.set("k", "one").unwrap();
    let first = cache.memory_version("k").unwrap();
    assert_eq!(cache.memory_version("k"), Some(first));
    let (hit, version) = cache.lookup_versioned("k").unwrap().unwrap();
    assert_eq!(
        (&hit.value[..], hit.tier, version),
        (&b"one"[..], Tier::Memory, Some(first))
    );
    cache.set("k", "two").unwrap();
    let second = cache.memory_version("k").unwrap();
    assert_ne!(first, second);
    cache.delete("k").unwrap();
    assert_eq!(cache.memory_version("k"), None);
    let stats = cache.stats();
    assert_eq!(stats.tier(Tier::Memory).unwrap().hits, 4);

    // A value promoted from L2 gets a version of its own.
    cache.set("p", "promoted").unwrap();
    let other = open(&path);
    assert_eq!(other.memory_version("p"), None);
    let (hit, version) = other.lookup_versioned("p").unwrap().unwrap();
    assert_eq!(hit.tier, Tier::Sqlite);
    assert_eq!(other.memory_version("p"), version);
    assert!(version.is_some());
    assert_eq!(other.lookup_versioned("missing").unwrap(), None);

    let sqlite_only = Cache::builder()
        .sqlite_path(&path)
        .memory(false)
        .build_blocking()
        .unwrap();
    let (hit, version) = sqlite_only.lookup_versioned("p").unwrap().unwrap();
    assert_eq!((hit.tier, version), (Tier::Sqlite, None));
    assert_eq!(sqlite_only.memory_version("p"), None);
    cache.close().unwrap();
    assert_eq!(cache.memory_version("p"), None);
}

/// Forks; the child runs `child` and exits with its result as the status.
fn in_forked_child(child: impl FnOnce() -> bool) -> i32 {
    // SAFETY: the child only runs `child` and then `_exit`s without
    // returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(false);
        // SAFETY: ends the child at once, as a forked child of a threaded
        // process must.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just created.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status),
        "child did not exit normally: {status}"
    );
    libc::WEXITSTATUS(status)
}

#[test]
fn a_cache_keeps_working_in_a_forked_child() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fork.db");
    let cache = open(&path);
    cache.set("before", "parent").unwrap();
    // Leave reader connections in the pool, as a busy parent would.
    cache.set("l2-only", "x").unwrap();
    open(&path).get("l2-only").unwrap();

    let status = in_forked_child(|| {
        let read = cache.get("before").ok().flatten();
        let wrote = cache.set("from-child", "child").is_ok();
        let deleted = cache.delete("before").is_ok_and(|existed| existed);
        let fresh = open(&path).get("l2-only").ok().flatten();
        read.as_deref() == Some(&b"parent"[..])
            && fresh.as_deref() == Some(&b"x"[..])
            && wrote
            && deleted
    });
    assert_eq!(status, 0);

    // The parent sees the child's writes in the file and keeps writing.
    let other = open(&path);
    assert_eq!(
        other.get("from-child").unwrap().as_deref(),
        Some(&b"child"[..])
    );
    assert_eq!(other.get("before").unwrap(), None);
    cache.set("after", "parent").unwrap();
    assert_eq!(other.get("after").unwrap().as_deref(), Some(&b"parent"[..]));
    cache.run_pending_tasks().unwrap();
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(cache.inspect().unwrap().unwrap().entries, 3);
}

#[test]
fn a_forked_child_runs_its_own_maintenance() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 64 * 1024;
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("budget.db"))
        .sqlite_max_bytes(budget)
        .build_blocking()
        .unwrap();
    cache.set("warm", "up").unwrap();
    let status = in_forked_child(|| {
        // The parent's maintenance task does not run here; the child's
        // first use of the file starts one, which enforces the budget.
        for i in 0..100 {
            if cache.set(format!("k{i}"), vec![7u8; 1024]).is_err() {
                return false;
            }
        }
        // The parent's maintenance may evict too; the child's own counters
        // show that the child's maintenance ran.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if cache.stats().tier(Tier::Sqlite).unwrap().evictions > 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    assert_eq!(status, 0);
}
