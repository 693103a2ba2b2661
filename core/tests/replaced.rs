//! A cache file deleted or replaced on disk while a process has it open:
//! that process's writes go to the file now at the path (a deleted file is
//! created anew), where other processes see them, and it no longer serves
//! values of the old file.
//!
//! Process A is this test; process B is a child process of this binary.

mod support;

use std::path::Path;
use std::time::Duration;

use support::CHILD_ENV;
use tierstack::Tier;
use tierstack::blocking::Cache;

fn open(path: &Path) -> Cache {
    Cache::builder().sqlite_path(path).build_blocking().unwrap()
}

/// Removes the file and its `-wal` and `-shm`, as `rm -f cache.db*` does.
fn remove_file_set(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing {name:?}: {e}"),
        }
    }
}

/// Commits `cache`'s acknowledged writes to the file it has open (a `set`
/// is journaled, and committed by the journal's next drain).
fn committed(cache: &Cache) {
    cache.run_pending_tasks().unwrap();
}

/// Runs `script` in process B on `path`; B's stdout.
fn process_b(script: &str, path: &Path) -> String {
    let output = support::run_child("child", &format!("{script}|{}", path.display()), None);
    support::child_stdout(&output)
}

#[test]
fn a_replaced_file_receives_the_next_write_and_old_values_are_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let a = open(&path);
    a.mset([("old", "from the first file"), ("shared", "old")])
        .unwrap();
    committed(&a);
    assert_eq!(a.lookup("shared").unwrap().unwrap().tier, Tier::Memory);

    remove_file_set(&path);
    let out = process_b("write", &path);
    assert_eq!(support::child_field(&out, "wrote"), "b,shared");

    // A's next write notices the new file and goes there.
    a.set("c", "from A").unwrap();
    let out = process_b("read", &path);
    assert_eq!(support::child_field(&out, "c"), "from A");
    assert_eq!(support::child_field(&out, "keys"), "b,c,shared");

    // A's L1 held values of the old file: gone with it.
    let shared = a.lookup("shared").unwrap().unwrap();
    assert_eq!(
        (&shared.value[..], shared.tier),
        (&b"new"[..], Tier::Sqlite)
    );
    assert_eq!(a.get("old").unwrap(), None);
    assert_eq!(a.get("b").unwrap().as_deref(), Some(&b"from B"[..]));
    assert_eq!(a.keys("*").unwrap(), ["b", "c", "shared"]);
    let stats = a.stats();
    assert_eq!((stats.sqlite_reopens, stats.sqlite_rebuilds), (1, 0));
}

#[test]
fn a_deleted_file_is_created_anew_by_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let a = open(&path);
    a.set("before", "1").unwrap();
    committed(&a);
    remove_file_set(&path);
    assert!(!path.exists());

    a.set("after", "2").unwrap();
    assert!(path.exists());
    let out = process_b("read", &path);
    assert_eq!(support::child_field(&out, "keys"), "after");
    assert_eq!(a.get("before").unwrap(), None);
    assert_eq!(a.get("after").unwrap().as_deref(), Some(&b"2"[..]));
    // The new file has the mode of a new cache file.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_reader_follows_a_replaced_file_within_the_check_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let a = Cache::builder()
        .sqlite_path(&path)
        .memory(false)
        .build_blocking()
        .unwrap();
    a.mset([("shared", "old"), ("old", "x")]).unwrap();
    assert_eq!(a.get("shared").unwrap().as_deref(), Some(&b"old"[..]));
    remove_file_set(&path);
    process_b("write", &path);

    std::thread::sleep(tierstack::tier::FILE_CHECK_INTERVAL + Duration::from_millis(50));
    assert_eq!(a.get("shared").unwrap().as_deref(), Some(&b"new"[..]));
    assert_eq!(a.get("old").unwrap(), None);
    assert_eq!(a.len().unwrap(), 2);
}

#[test]
fn a_file_restored_from_a_backup_is_followed() {
    // Restoring a backup: the file set removed, a copy put in its place.
    // (The -wal and -shm must go with the file they belong to: SQLite reads
    // a database paired with another file's WAL as if the WAL were its own.)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let backup = dir.path().join("backup.db");
    {
        let b = open(&backup);
        b.set("k", "from the backup").unwrap();
        b.close().unwrap();
    }
    let a = open(&path);
    a.set("k", "v1").unwrap();
    committed(&a);
    remove_file_set(&path);
    std::fs::copy(&backup, &path).unwrap();

    a.set("after", "1").unwrap();
    assert_eq!(
        a.get("k").unwrap().as_deref(),
        Some(&b"from the backup"[..])
    );
    let out = process_b("read", &path);
    assert_eq!(support::child_field(&out, "keys"), "after,k");
}

#[test]
fn a_write_that_fails_on_the_replacing_file_still_drops_l1() {
    // The file is replaced by one this process may only read: the write
    // that notices fails with read_only, and L1 (values of the old file)
    // is dropped all the same.
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let path = disk.join("cache.db");
    let a = open(&path);
    a.set("k", "old").unwrap();
    committed(&a);
    remove_file_set(&path);
    {
        let b = open(&path);
        b.set("k", "new").unwrap();
        b.close().unwrap();
    }
    let _mount = match support::Mount::read_only(&disk) {
        Ok(mount) => mount,
        Err(why) => return println!("skipped: {why}"),
    };
    let err = a.set("other", "x").unwrap_err();
    assert_eq!(err.kind().as_str(), "read_only", "{err}");
    let k = a.lookup("k").unwrap().unwrap();
    assert_eq!((&k.value[..], k.tier), (&b"new"[..], Tier::Sqlite));
}

/// Process B: `<script>|<path>` in `TIERSTACK_TEST_CHILD`.
#[test]
#[ignore = "run by the tests above as a child process"]
fn child() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (script, path) = arg.split_once('|').unwrap();
    let cache = open(Path::new(path));
    match script {
        "write" => {
            cache.mset([("b", "from B"), ("shared", "new")]).unwrap();
            println!("wrote={}", cache.keys("*").unwrap().join(","));
        }
        "read" => {
            let c = cache.get("c").unwrap().unwrap_or_default();
            println!("c={}", String::from_utf8_lossy(&c));
            println!("keys={}", cache.keys("*").unwrap().join(","));
        }
        other => panic!("unknown script {other}"),
    }
    cache.close().unwrap();
}
