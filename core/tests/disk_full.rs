//! A cache that fills its own disk never wedges it: a write that would
//! leave less than the reserve is refused with `storage` ("disk full") and
//! stores nothing, while delete, clear and eviction still work, and clear
//! gives the space back to the file system.
//!
//! The disk is a real 8 MiB tmpfs mounted by the test (root only; elsewhere
//! the test prints why it skips).

mod support;

use std::path::Path;

use support::Mount;
use tierstack::blocking::Cache;
use tierstack::{ErrorKind, Tier};

const DISK: u64 = 8 << 20;

fn open(path: &Path, max_bytes: u64) -> Cache {
    Cache::builder()
        .sqlite_path(path)
        .sqlite_max_bytes(max_bytes)
        .memory(false)
        .build_blocking()
        .unwrap()
}

fn key(i: usize) -> String {
    format!("k{i:06}")
}

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("{i:06}").into_bytes();
    v.resize(1500, b'x');
    v
}

/// Bytes of the file and its WAL.
fn on_disk(path: &Path) -> (u64, u64) {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    (size(path), size(Path::new(&wal)))
}

/// Sets new keys until a set is refused, which it must be as the disk
/// being full (`storage`, "disk full: ..."); how many were stored.
fn fill_until_refused(cache: &Cache) -> usize {
    let mut stored = 0;
    let refused = loop {
        assert!(stored < 100_000, "the disk never filled");
        match cache.set(key(stored), value(stored)) {
            Ok(()) => stored += 1,
            Err(err) => break err,
        }
    };
    assert_eq!(refused.kind(), ErrorKind::Storage, "{refused}");
    assert!(refused.message().starts_with("disk full: "), "{refused}");
    stored
}

/// Bytes free on the file system of `path`.
fn free(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut stat) }, 0);
    stat.f_bavail as u64 * stat.f_frsize as u64
}

#[test]
fn a_full_disk_refuses_sets_but_delete_eviction_and_clear_work_and_clear_gives_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let _mount = match Mount::tmpfs(&disk, DISK) {
        Ok(mount) => mount,
        Err(why) => return println!("skipped: {why}"),
    };
    let path = disk.join("cache.db");
    let cache = open(&path, 100 << 20);

    let stored = fill_until_refused(&cache);
    assert!(stored > 1000, "only {stored} values fit in {DISK} bytes");
    let left = free(&disk);
    assert!(left >= tierstack::tier::DISK_RESERVE, "{left} bytes left");
    // Refused again, and nothing stored was lost or changed.
    let again = cache.set(key(0), "replacement").unwrap_err();
    assert!(again.message().starts_with("disk full: "), "{again}");
    // A write that must not wait hands it to `set`, which reports it.
    let now = cache.try_set_with(key(0), "replacement", tierstack::SetOptions::default());
    assert!(!now.unwrap());
    assert_eq!(cache.len().unwrap(), stored as u64);
    for i in [0, 1, stored / 2, stored - 1] {
        assert_eq!(cache.get(&key(i)).unwrap(), Some(value(i).into()), "{i}");
    }
    assert_eq!(cache.get(&key(stored)).unwrap(), None);

    // Delete works on the full disk.
    assert!(cache.delete(&key(0)).unwrap());
    assert_eq!(cache.get(&key(0)).unwrap(), None);
    cache.close().unwrap();

    // So does eviction, down to a smaller budget (to 90 % of it).
    let budget = 1 << 20;
    let cache = open(&path, budget);
    cache.run_pending_tasks().unwrap();
    let stats = cache.stats();
    let sqlite = stats.tier(Tier::Sqlite).unwrap();
    assert!(sqlite.bytes <= budget * 9 / 10, "{sqlite:?}");
    assert_eq!(
        sqlite.evictions + sqlite.entries,
        stored as u64 - 1,
        "{sqlite:?}"
    );
    // The newest entries are the ones kept.
    assert_eq!(
        cache.get(&key(stored - 1)).unwrap(),
        Some(value(stored - 1).into())
    );
    cache.close().unwrap();

    // Refill, then clear: every entry goes and so does the space.
    let cache = open(&path, 100 << 20);
    let mut i = stored;
    while cache.set(key(i), value(i)).is_ok() {
        i += 1;
    }
    let (file, wal) = on_disk(&path);
    cache.clear().unwrap();
    assert_eq!(cache.len().unwrap(), 0);
    let (file_after, wal_after) = on_disk(&path);
    println!(
        "before clear: file {file} B, WAL {wal} B; after: file {file_after} B, WAL {wal_after} B"
    );
    assert_eq!(wal_after, 0);
    assert!(file_after <= 64 << 10, "file {file_after} B after clear");
    assert!(free(&disk) >= DISK - (256 << 10), "{} B free", free(&disk));

    // And the disk takes values again.
    cache.set("after", "1").unwrap();
    assert_eq!(cache.get("after").unwrap().as_deref(), Some(&b"1"[..]));
}

/// `count` values of `size` bytes in one transaction (one `mset`).
fn fill(cache: &Cache, count: usize, size: usize) {
    cache
        .mset((0..count).map(|i| (key(i), vec![b'v'; size])))
        .unwrap();
}

#[test]
fn clear_gives_the_space_back_and_leaves_an_empty_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let cache = open(&path, 100 << 20);
    // 24 MB in one transaction: the WAL grows to hold all of it.
    fill(&cache, 2400, 10_000);
    let (file, wal) = on_disk(&path);
    assert!(wal > 20 << 20, "WAL {wal} B");
    cache.clear().unwrap();
    let (file_after, wal_after) = on_disk(&path);
    println!(
        "before clear: file {file} B, WAL {wal} B; after: file {file_after} B, WAL {wal_after} B"
    );
    assert_eq!(wal_after, 0);
    assert!(file_after <= 64 << 10, "file {file_after} B after clear");
    assert_eq!(cache.len().unwrap(), 0);
    // Another process sees it empty too.
    assert_eq!(
        open(&path, 100 << 20).keys("*").unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn a_large_transaction_leaves_the_wal_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let cache = open(&path, 200 << 20);
    // Twice the bound, in one transaction.
    let rows = 2 * tierstack::tier::WAL_SIZE_LIMIT as usize / 10_000;
    fill(&cache, rows, 10_000);
    assert!(on_disk(&path).1 > 2 * tierstack::tier::WAL_SIZE_LIMIT);
    // Once checkpointed, the next commit restarts the WAL and trims it
    // (the set's: `run_pending_tasks` drains the journal).
    cache.flush().unwrap();
    cache.set("small", "1").unwrap();
    cache.run_pending_tasks().unwrap();
    let wal = on_disk(&path).1;
    assert!(wal <= tierstack::tier::WAL_SIZE_LIMIT, "WAL {wal} B");
}

#[test]
fn a_file_without_auto_vacuum_gives_the_space_back_on_clear_and_gains_it() {
    // Files created before auto-vacuum: switched by the VACUUM of `clear`.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    open(&path, 100 << 20).close().unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA auto_vacuum = NONE; VACUUM;")
            .unwrap();
        let mode: i64 = conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, 0);
    }
    let cache = open(&path, 100 << 20);
    fill(&cache, 1000, 10_000);
    cache.clear().unwrap();
    let (file, wal) = on_disk(&path);
    assert_eq!(wal, 0);
    assert!(file <= 64 << 10, "file {file} B after clear");
    cache.close().unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, 2, "incremental");
}

#[test]
fn opening_an_existing_file_writes_nothing() {
    // Auto-vacuum is set on new files only: opening an existing one (and
    // closing it with no read to record) leaves it byte-identical.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let cache = open(&path, 100 << 20);
    cache.set("k", "v").unwrap();
    cache.close().unwrap();
    let before = std::fs::read(&path).unwrap();
    let cache = open(&path, 100 << 20);
    assert_eq!(on_disk(&path).1, 0, "opening wrote to the WAL");
    cache.close().unwrap();
    assert!(
        std::fs::read(&path).unwrap() == before,
        "opening changed the file"
    );
}

/// write-behind on a disk with room for its journal: `set` measures the
/// room when it journals, so a full disk refuses the set (`storage`), and
/// what was journaled before still reaches the file: delete and clear,
/// which drain the journal first, work on the full disk.
#[test]
fn write_behind_refuses_a_set_the_disk_has_no_room_for_and_drains_what_it_took() {
    use tierstack::source::{self, Fetched};
    use tierstack::{OutboxConfig, Strategy};
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    // The journal's 32 MiB and 16 MiB for the file.
    let _mount = match Mount::tmpfs(&disk, tierstack::tier::JOURNAL_BYTES + (16 << 20)) {
        Ok(mount) => mount,
        Err(why) => return println!("skipped: {why}"),
    };
    let path = disk.join("cache.db");
    let source = source::from_blocking_fn(|_: &str| Ok(Fetched::NotFound))
        .with_writes(|_, _, _| Ok(()), |_, _| Ok(()));
    let cache = Cache::builder()
        .sqlite_path(&path)
        .memory(false)
        .source(source)
        .strategy(Strategy::WriteBehind)
        .outbox(OutboxConfig::default())
        .build_blocking()
        .unwrap();
    let stored = fill_until_refused(&cache);
    // Each value is held twice (its row and its outbox row), and the room
    // for the journal's writes is set aside when they are journaled.
    assert!(stored > 100, "only {stored} values fit");
    // Every acknowledged write is read back from the file.
    for i in [0, 1, stored / 2, stored - 1] {
        let read = cache.lookup(&key(i)).unwrap().unwrap();
        assert_eq!(
            (read.tier, read.value),
            (Tier::Sqlite, value(i).into()),
            "{i}"
        );
    }
    assert!(cache.delete(&key(0)).unwrap());
    assert_eq!(cache.len().unwrap(), stored as u64 - 1);
    // Delivered, the outbox gives its rows' room back; clear the entries'.
    cache.flush().unwrap();
    cache.clear().unwrap();
    assert_eq!(cache.len().unwrap(), 0);
    cache.set("after", "1").unwrap();
    assert_eq!(cache.get("after").unwrap().as_deref(), Some(&b"1"[..]));
    cache.close().unwrap();
}
