//! A write journaled by one process is read by every other process on the
//! file from the moment it is acknowledged: a read of the file waits for
//! the other journals' records, replays the journal of a process that
//! died, and goes on without a stopped process's records once the busy
//! timeout has passed. Real child processes; the write lock of the file,
//! held by the test, keeps the child's journal from draining until the
//! test lets it.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use tierstack::source::{self, Fetched};
use tierstack::{Cache, Strategy};

mod support;

use support::CHILD_ENV;

fn strategy(name: &str) -> Strategy {
    match name {
        "write-behind" => Strategy::WriteBehind,
        "read-through" => Strategy::ReadThrough,
        other => panic!("no strategy {other}"),
    }
}

fn open(db: &str, strategy: Strategy) -> tierstack::blocking::Cache {
    let source = source::from_blocking_fn(|_key: &str| Ok(Fetched::NotFound))
        .with_writes(|_key, _value, _id| Ok(()), |_key, _id| Ok(()));
    Cache::builder()
        .sqlite_path(db)
        .source(source)
        .strategy(strategy)
        .build_blocking()
        .unwrap()
}

/// Child: opens `db` with the strategy named in the spec, says `open`,
/// then for each line `set K V` sets and says `set`, until stdin ends.
#[test]
#[ignore = "run by the tests of this file"]
fn journal_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (db, name) = spec.split_once('|').unwrap();
    let cache = open(db, strategy(name));
    println!("open");
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let mut words = line.split(' ');
        assert_eq!(words.next(), Some("set"));
        let (key, value) = (words.next().unwrap(), words.next().unwrap());
        cache.set(key, value.to_owned()).unwrap();
        println!("set");
    }
}

struct Writer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Writer {
    fn start(db: &Path, strategy: &str) -> Self {
        let spec = format!("{}|{strategy}", db.display());
        let mut child = support::child_command("journal_child", &spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut writer = Self {
            child,
            stdin,
            stdout,
        };
        writer.expect("open");
        writer
    }

    fn expect(&mut self, word: &str) {
        loop {
            let mut line = String::new();
            assert_ne!(
                self.stdout.read_line(&mut line).unwrap(),
                0,
                "the child ended"
            );
            // libtest's "running 1 test" and "test journal_child ... " lines.
            if line.trim_end().ends_with(word) {
                return;
            }
        }
    }

    fn set(&mut self, key: &str, value: &str) {
        writeln!(self.stdin, "set {key} {value}").unwrap();
        self.expect("set");
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: a plain kill(2) of our own child.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, signal) },
            0
        );
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection holding the file's write lock until dropped or released.
fn hold_write_lock(db: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn
}

/// The reading process: L1 off, so every `get` reads the file.
fn reader(db: &Path) -> tierstack::blocking::Cache {
    Cache::builder()
        .sqlite_path(db)
        .memory(false)
        .build_blocking()
        .unwrap()
}

fn text(value: Option<tierstack::Bytes>) -> Option<String> {
    value.map(|v| String::from_utf8(v.to_vec()).unwrap())
}

fn acknowledged_write_is_read_at_once(strategy: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let reader = reader(&db);
    let mut writer = Writer::start(&db, strategy);
    let lock = hold_write_lock(&db);
    writer.set("k", "from-the-child");
    // The child's journal cannot drain while the lock is held.
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        lock.execute_batch("ROLLBACK").unwrap();
    });
    let started = Instant::now();
    assert_eq!(
        text(reader.get("k").unwrap()).as_deref(),
        Some("from-the-child")
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    release.join().unwrap();
}

#[test]
fn a_write_behind_write_of_another_process_is_read_once_acknowledged() {
    acknowledged_write_is_read_at_once("write-behind");
}

#[test]
fn the_journal_of_a_process_killed_before_draining_is_replayed_by_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let reader = reader(&db);
    let mut writer = Writer::start(&db, "write-behind");
    let lock = hold_write_lock(&db);
    writer.set("k", "left-behind");
    writer.signal(libc::SIGKILL);
    writer.child.wait().unwrap();
    drop(lock);
    assert_eq!(
        text(reader.get("k").unwrap()).as_deref(),
        Some("left-behind")
    );
    let journals: Vec<_> = std::fs::read_dir(dir.path().join("c.db-wb"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(journals, ["generation"], "the replayed journal is deleted");
}

#[test]
fn a_stopped_process_delays_reads_once_by_the_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let reader = reader(&db);
    let mut writer = Writer::start(&db, "write-behind");
    let lock = hold_write_lock(&db);
    writer.set("k", "stopped");
    writer.signal(libc::SIGSTOP);
    drop(lock);
    let started = Instant::now();
    assert_eq!(reader.get("k").unwrap(), None, "served without its writes");
    let waited = started.elapsed();
    assert!(waited >= tierstack::tier::BUSY_TIMEOUT, "waited {waited:?}");
    let started = Instant::now();
    assert_eq!(reader.get("k").unwrap(), None);
    assert!(started.elapsed() < Duration::from_secs(1), "waited again");
    writer.signal(libc::SIGCONT);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if text(reader.get("k").unwrap()).as_deref() == Some("stopped") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the child's journal never drained"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
