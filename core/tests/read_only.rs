//! A cache file this process may read but not write opens read-only: reads
//! are served, writes fail with `read_only` and change nothing. A path that
//! cannot be a cache at all is an `io` error carrying the operating system's
//! reason.
//!
//! The read-only file system is a read-only bind mount; the read-only file
//! mode and directory are seen by a child process of this binary running as
//! `nobody`. Both need root; without it the tests print why they skip.

mod support;

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use support::{CHILD_ENV, Mount, NOBODY};
use tierstack::blocking::Cache;
use tierstack::{ErrorKind, SetOptions, Tier};

fn open(path: &Path) -> Cache {
    Cache::builder().sqlite_path(path).build_blocking().unwrap()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A file with `a`, `b` and the tagged `t`, closed.
fn filled(path: &Path) {
    let cache = open(path);
    cache.mset([("a", "1"), ("b", "2")]).unwrap();
    cache
        .set_with("t", "3", SetOptions::new().tags(["tag"]))
        .unwrap();
    cache.close().unwrap();
}

fn kind_name(err: &tierstack::Error) -> &'static str {
    err.kind().as_str()
}

#[test]
fn a_file_on_a_read_only_file_system_serves_reads_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    filled(&path);
    let before = std::fs::read(&path).unwrap();
    let mount = match Mount::read_only(dir.path()) {
        Ok(mount) => mount,
        Err(why) => return println!("skipped: {why}"),
    };

    let cache = open(&path);
    let hit = cache.lookup("a").unwrap().unwrap();
    assert_eq!((&hit.value[..], hit.tier), (&b"1"[..], Tier::Sqlite));
    assert_eq!(cache.lookup("a").unwrap().unwrap().tier, Tier::Memory);
    assert_eq!(cache.keys("*").unwrap(), ["a", "b", "t"]);
    assert_eq!(cache.len().unwrap(), 3);
    assert!(cache.has("b").unwrap());
    assert_eq!(
        cache.mget(&["b", "t", "x"]).unwrap(),
        vec![Some("2".into()), Some("3".into()), None]
    );
    assert_eq!(&cache.entry("t").unwrap().unwrap().meta.tags, &["tag"]);

    let refused = [
        cache.set("a", "changed").unwrap_err(),
        cache.set("new", "x").unwrap_err(),
        cache.mset([("b", "changed")]).unwrap_err(),
        cache.delete("a").unwrap_err(),
        cache.clear().unwrap_err(),
        cache.invalidate_tag("tag").unwrap_err(),
    ];
    for err in &refused {
        assert_eq!(kind_name(err), "read_only", "{err}");
        assert!(
            err.message()
                .contains("cache.db is read-only (Read-only file system"),
            "{err}"
        );
    }
    // Nothing changed, in either tier.
    assert_eq!(cache.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(cache.get("new").unwrap(), None);
    assert_eq!(cache.keys("*").unwrap(), ["a", "b", "t"]);
    // Maintenance has nothing to write and does not fail.
    cache.run_pending_tasks().unwrap();
    cache.flush().unwrap();
    let inspection = cache.inspect().unwrap().unwrap();
    assert!(inspection.read_only);
    assert_eq!(inspection.entries, 3);
    cache.close().unwrap();
    drop(mount);

    assert_eq!(std::fs::read(&path).unwrap(), before);
    for suffix in ["-wal", "-shm"] {
        assert!(!dir.path().join(format!("cache.db{suffix}")).exists());
    }
    // Writable again, it opens read-write.
    let cache = open(&path);
    cache.set("a", "4").unwrap();
    assert!(!cache.inspect().unwrap().unwrap().read_only);
}

#[test]
fn a_path_that_is_a_directory_is_an_io_error_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let err = Cache::builder()
        .sqlite_path(dir.path())
        .build_blocking()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.message().contains("Is a directory"), "{err}");
}

#[test]
fn a_missing_file_on_a_read_only_file_system_is_an_io_error_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let _mount = match Mount::read_only(dir.path()) {
        Ok(mount) => mount,
        Err(why) => return println!("skipped: {why}"),
    };
    let err = Cache::builder()
        .sqlite_path(dir.path().join("cache.db"))
        .build_blocking()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.message().contains("Read-only file system"), "{err}");
}

/// Runs the scenario `scenario` on `path` as `nobody`; its stdout.
fn as_nobody(scenario: &str, path: &Path) -> String {
    let output = support::run_child(
        "child",
        &format!("{scenario}|{}", path.display()),
        Some(NOBODY),
    );
    support::child_stdout(&output)
}

#[test]
fn an_unreadable_file_is_an_io_error_with_the_reason() {
    let Some((_dir, path)) = for_nobody() else {
        return;
    };
    filled(&path);
    chmod(&path, 0o600);
    let out = as_nobody("open", &path);
    assert_eq!(support::child_field(&out, "open"), "io");
    assert!(
        support::child_field(&out, "message").contains("Permission denied"),
        "{out}"
    );
}

#[test]
fn a_file_in_a_directory_the_user_may_not_write_opens_read_only() {
    let Some((_dir, path)) = for_nobody() else {
        return;
    };
    filled(&path);
    // Readable by everyone, writable by root only; no -wal or -shm, and
    // nobody may create them.
    chmod(&path, 0o644);
    let before = std::fs::read(&path).unwrap();
    let out = as_nobody("read", &path);
    assert_eq!(support::child_field(&out, "open"), "ok");
    assert_eq!(support::child_field(&out, "a"), "1");
    assert_eq!(support::child_field(&out, "keys"), "a,b,t");
    assert_eq!(support::child_field(&out, "set"), "read_only");
    assert!(
        support::child_field(&out, "message").contains("is read-only"),
        "{out}"
    );
    assert_eq!(support::child_field(&out, "close"), "ok");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_reader_without_write_permission_sees_the_writers_later_writes() {
    let Some((dir, path)) = for_nobody() else {
        return;
    };
    let writer = Cache::builder()
        .sqlite_path(&path)
        .memory(false)
        .build_blocking()
        .unwrap();
    writer.set("a", "1").unwrap();
    // The writer keeps the file open, so its -wal and -shm exist; nobody may
    // read them but not write them.
    share(dir.path());
    let follower = Follower::start(&path);
    assert!(
        follower.seen.contains(&"set=read_only".to_owned()),
        "{:?}",
        follower.seen
    );
    writer.set("a", "2").unwrap();
    let seen = follower.read_again();
    assert!(seen.contains(&"second=2".to_owned()), "{seen:?}");
    assert_eq!(writer.get("a").unwrap().as_deref(), Some(&b"2"[..]));
}

/// A write-behind write waiting in the writer's journal (which cannot drain
/// while the test holds the file's write lock) is read by a process that
/// may only read the file: it maps the journals, which take the file's
/// permissions when they are made (as SQLite's `-wal` and `-shm` do), and
/// waits for the drain.
#[test]
fn a_reader_without_write_permission_waits_for_the_writers_journal() {
    let Some((dir, path)) = for_nobody() else {
        return;
    };
    let writer = writing_behind(&path);
    // The file is shared before the writer's first write behind, as the
    // journals and their counter are made then.
    share(dir.path());
    writer.set("a", "1").unwrap();
    writer.flush().unwrap();
    let follower = Follower::start(&path);
    let release = set_undrained(&writer, &path, "a", "2");
    let seen = follower.read_again();
    release.join().unwrap();
    assert!(seen.contains(&"second=2".to_owned()), "{seen:?}");
}

/// The same with the reader first: it opens a file next to which there is
/// no journal yet, nor their counter, which it may not make, and finds them
/// once a writer made them.
#[test]
fn a_reader_that_came_before_the_journals_waits_for_them() {
    let Some((dir, path)) = for_nobody() else {
        return;
    };
    {
        let first = open(&path);
        first.set("a", "1").unwrap();
        first.close().unwrap();
    }
    // A file without the journals' directory: copied alone, or made by an
    // older version.
    std::fs::remove_dir_all(dir.path().join("cache.db-wb")).unwrap();
    // A connection kept open keeps the -wal and -shm the reader needs.
    let keeper = rusqlite::Connection::open(&path).unwrap();
    keeper
        .query_row("SELECT count(*) FROM entries", [], |r| r.get::<_, i64>(0))
        .unwrap();
    share(dir.path());
    let follower = Follower::start(&path);
    assert!(!dir.path().join("cache.db-wb").exists());
    let writer = writing_behind(&path);
    let release = set_undrained(&writer, &path, "a", "2");
    // The reader looks for the counter again a second after it found none.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let seen = follower.read_again();
    release.join().unwrap();
    assert!(seen.contains(&"second=2".to_owned()), "{seen:?}");
    drop(keeper);
}

/// A directory `nobody` may read and the cache file's path in it; `None`,
/// and the test skips, without root (switching a child to `nobody` needs
/// it).
fn for_nobody() -> Option<(tempfile::TempDir, std::path::PathBuf)> {
    if !support::is_root() {
        println!("skipped: switching a child to user nobody needs root");
        return None;
    }
    let dir = support::open_tempdir();
    let path = dir.path().join("cache.db");
    Some((dir, path))
}

/// Lets `nobody` read the cache file in `dir` and its `-wal` and `-shm`.
fn share(dir: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        chmod(&dir.join(format!("cache.db{suffix}")), 0o644);
    }
    // The journals' directory, its counter and journals, made like -wal
    // and -shm with the file's permissions at the time.
    let journals = dir.join("cache.db-wb");
    if let Ok(entries) = std::fs::read_dir(&journals) {
        chmod(&journals, 0o755);
        for entry in entries {
            chmod(&entry.unwrap().path(), 0o644);
        }
    }
}

/// A cache without L1 that writes behind (to a source that stores nothing).
fn writing_behind(path: &Path) -> Cache {
    let source = tierstack::source::from_blocking_fn(|_key: &str| Ok(tierstack::Fetched::NotFound))
        .with_writes(|_key, _value, _id| Ok(()), |_key, _id| Ok(()));
    Cache::builder()
        .sqlite_path(path)
        .memory(false)
        .source(source)
        .strategy(tierstack::Strategy::WriteBehind)
        .build_blocking()
        .unwrap()
}

/// Sets `key` behind while the file's write lock is held, so that the write
/// waits in the journal; the lock goes 300 ms later, on the thread returned.
fn set_undrained(
    writer: &Cache,
    path: &Path,
    key: &str,
    value: &str,
) -> std::thread::JoinHandle<()> {
    let lock = rusqlite::Connection::open(path).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    writer.set(key, value.to_owned()).unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        lock.execute_batch("ROLLBACK").unwrap();
    })
}

/// The child `follow` running as `nobody` on `path`: it read `a` once
/// (`1`, checked) and tried a write; [`Follower::read_again`] has it read `a` again.
struct Follower {
    child: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    /// What it said so far.
    seen: Vec<String>,
}

impl Follower {
    fn start(path: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child", "--ignored", "--nocapture"])
            .env(CHILD_ENV, format!("follow|{}", path.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .uid(NOBODY)
            .gid(NOBODY)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let done = line.starts_with("set=");
            seen.push(line);
            if done {
                break;
            }
        }
        assert!(seen.contains(&"first=1".to_owned()), "{seen:?}");
        Self { child, lines, seen }
    }

    /// Lets it read `a` again and end; everything it said.
    fn read_again(mut self) -> Vec<String> {
        self.child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        self.seen.extend(self.lines.by_ref().map(Result::unwrap));
        let status = self.child.wait().unwrap();
        if !status.success() {
            let mut stderr = String::new();
            if let Some(mut pipe) = self.child.stderr.take() {
                pipe.read_to_string(&mut stderr).unwrap();
            }
            panic!("the follower failed: {:?}\n{stderr}", self.seen);
        }
        self.seen
    }
}

use std::os::unix::process::CommandExt as _;

/// The child side: `<scenario>|<path>` in `TIERSTACK_TEST_CHILD`.
#[test]
#[ignore = "run by the tests above as a child process"]
fn child() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (scenario, path) = arg.split_once('|').unwrap();
    let opened = Cache::builder()
        .sqlite_path(path)
        .memory(scenario != "follow")
        .build_blocking();
    let cache = match opened {
        Ok(cache) => cache,
        Err(err) => {
            println!("open={}", kind_name(&err));
            println!("message={}", err.message());
            return;
        }
    };
    println!("open=ok");
    match scenario {
        "read" => {
            let a = cache.get("a").unwrap().unwrap();
            println!("a={}", String::from_utf8_lossy(&a));
            println!("keys={}", cache.keys("*").unwrap().join(","));
            let err = cache.set("a", "x").unwrap_err();
            println!("set={}", kind_name(&err));
            println!("message={}", err.message());
            cache.run_pending_tasks().unwrap();
        }
        "follow" => {
            let first = cache.get("a").unwrap().unwrap();
            println!("first={}", String::from_utf8_lossy(&first));
            println!("set={}", kind_name(&cache.set("b", "x").unwrap_err()));
            let mut go = String::new();
            std::io::stdin().read_line(&mut go).unwrap();
            let second = cache.get("a").unwrap().unwrap();
            println!("second={}", String::from_utf8_lossy(&second));
        }
        other => panic!("unknown scenario {other}"),
    }
    cache.close().unwrap();
    println!("close=ok");
}
