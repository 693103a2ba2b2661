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
use tierstack::{Cache, ManualClock, Strategy};

mod support;

use support::CHILD_ENV;

fn strategy(name: &str) -> Strategy {
    match name {
        "write-behind" => Strategy::WriteBehind,
        "read-through" => Strategy::ReadThrough,
        other => panic!("no strategy {other}"),
    }
}

/// `behind_ms`: how far behind the wall clock the cache's clock runs (a
/// process whose clock is late, or whose write took its time early).
fn open(db: &str, strategy: Strategy, behind_ms: u64) -> tierstack::blocking::Cache {
    let source = source::from_blocking_fn(|_key: &str| Ok(Fetched::NotFound))
        .with_writes(|_key, _value, _id| Ok(()), |_key, _id| Ok(()));
    let builder = Cache::builder()
        .sqlite_path(db)
        .source(source)
        .strategy(strategy);
    let builder = match behind_ms {
        0 => builder,
        late => {
            let now = ManualClock::starting_now().now_ms();
            builder.clock(ManualClock::new(now - late))
        }
    };
    builder.build_blocking().unwrap()
}

/// Child: opens `db` with the strategy named in the spec (and its clock
/// that many ms late), says `open`, then for each line `set K V` sets and
/// says `set` (or churns, see below), until stdin ends.
#[test]
#[ignore = "run by the tests of this file"]
fn journal_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split('|');
    let (db, name) = (parts.next().unwrap(), parts.next().unwrap());
    let late = parts.next().unwrap().parse().unwrap();
    let cache = open(db, strategy(name), late);
    println!("open");
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let mut words = line.split(' ');
        match words.next() {
            Some("set") => {
                let (key, value) = (words.next().unwrap(), words.next().unwrap());
                cache.set(key, value.to_owned()).unwrap();
                println!("set");
            }
            // `churn PREFIX N`: N writes, each followed by a read of a key
            // no one wrote (which reads the file), timed.
            Some("churn") => {
                let prefix = words.next().unwrap();
                let n: usize = words.next().unwrap().parse().unwrap();
                let started = Instant::now();
                for i in 0..n {
                    cache.set(format!("{prefix}{i}"), "v").unwrap();
                    assert_eq!(cache.get(&format!("{prefix}-absent-{i}")).unwrap(), None);
                }
                println!("churned {}", started.elapsed().as_millis());
            }
            other => panic!("unknown command {other:?}"),
        }
    }
}

struct Writer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Writer {
    fn start(db: &Path, strategy: &str) -> Self {
        Self::late(db, strategy, 0)
    }

    /// A writer whose clock runs `late_ms` behind.
    fn late(db: &Path, strategy: &str, late_ms: u64) -> Self {
        let spec = format!("{}|{strategy}|{late_ms}", db.display());
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

    /// The rest of the next line that starts with `word` (past libtest's
    /// own words).
    fn answer(&mut self, word: &str) -> String {
        loop {
            let mut line = String::new();
            assert_ne!(
                self.stdout.read_line(&mut line).unwrap(),
                0,
                "the child ended"
            );
            if let Some(at) = line.find(word) {
                return line[at + word.len()..].trim_end().to_owned();
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
fn a_default_strategy_write_of_another_process_is_read_once_acknowledged() {
    acknowledged_write_is_read_at_once("read-through");
}

/// A child with `strategy` sets `key` while the file's write lock is held,
/// and is killed before its journal could drain.
fn killed_before_draining(db: &Path, strategy: &str, key: &str, value: &str) {
    let mut writer = Writer::start(db, strategy);
    let lock = hold_write_lock(db);
    writer.set(key, value);
    writer.signal(libc::SIGKILL);
    writer.child.wait().unwrap();
    drop(lock);
}

#[test]
fn the_journal_of_a_process_killed_before_draining_is_replayed_by_a_read() {
    for strategy in ["write-behind", "read-through"] {
        journal_of_a_killed_process_is_replayed(strategy);
    }
}

fn journal_of_a_killed_process_is_replayed(strategy: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let reader = reader(&db);
    killed_before_draining(&db, strategy, "k", "left-behind");
    assert_eq!(
        text(reader.get("k").unwrap()).as_deref(),
        Some("left-behind"),
        "{strategy}"
    );
    let journals: Vec<_> = std::fs::read_dir(dir.path().join("c.db-wb"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(journals, ["generation"], "the replayed journal is deleted");
}

/// A cache that holds a key in L1 and replays the journal of a process
/// that died with a write of that key: the replayed write is another
/// process's change, which its L1 follows like any other.
#[test]
fn a_journal_replayed_by_a_reader_updates_the_readers_l1() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let interval = Duration::from_millis(50);
    let reader = Cache::builder()
        .sqlite_path(&db)
        .coherence_interval(interval)
        .build_blocking()
        .unwrap();
    reader.set("k", "before").unwrap();
    killed_before_draining(&db, "write-behind", "k", "left-behind");
    // The first check of the file replays the journal; the next one (or
    // that one) finds the change.
    std::thread::sleep(interval);
    drop(reader.get("k").unwrap());
    std::thread::sleep(interval);
    assert_eq!(
        text(reader.get("k").unwrap()).as_deref(),
        Some("left-behind")
    );
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

/// Two processes write one key behind, one after the other returned; the
/// second's clock is a minute late, so its write looks older. Both
/// journals drain once the test lets them, in either order: the file keeps
/// the write journaled last.
#[test]
fn the_write_journaled_last_stands_whatever_the_clocks_and_drain_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let reader = reader(&db);
    let mut first = Writer::start(&db, "write-behind");
    let mut second = Writer::late(&db, "write-behind", 60_000);
    let lock = hold_write_lock(&db);
    first.set("k", "first");
    second.set("k", "second");
    drop(lock);
    let started = Instant::now();
    assert_eq!(text(reader.get("k").unwrap()).as_deref(), Some("second"));
    // Each worker waits for the other's journal before it takes the
    // outbox's lease, draining its own meanwhile: no one waits the busy
    // timeout out.
    assert!(started.elapsed() < tierstack::tier::BUSY_TIMEOUT / 2);
    // Both drained; whichever drained last did not undo the other.
    drop((first, second));
    let again = self::reader(&db);
    assert_eq!(text(again.get("k").unwrap()).as_deref(), Some("second"));
}

/// Two processes writing behind and reading the file at once: each read
/// waits for the other's journal while the other's waits for its own, and
/// each drains its own while it waits, so neither waits the busy timeout
/// out (each write and read takes milliseconds at most).
#[test]
fn two_processes_writing_behind_and_reading_never_wait_each_other_out() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let mut writers = [
        Writer::start(&db, "write-behind"),
        Writer::start(&db, "write-behind"),
    ];
    for (i, writer) in writers.iter_mut().enumerate() {
        writeln!(writer.stdin, "churn w{i}- 300").unwrap();
    }
    for writer in &mut writers {
        let ms: u64 = writer.answer("churned ").parse().unwrap();
        assert!(
            Duration::from_millis(ms) < tierstack::tier::BUSY_TIMEOUT / 2,
            "300 writes and reads took {ms} ms"
        );
    }
    let reader = reader(&db);
    for i in 0..2 {
        assert_eq!(
            text(reader.get(&format!("w{i}-299")).unwrap()).as_deref(),
            Some("v")
        );
    }
}

/// Writes behind numbered past 50, then the file is copied without its
/// journals' directory (where the numbers are counted): a later write behind
/// of a key the file holds still replaces it, numbered after what the file
/// holds.
#[test]
fn a_file_copied_without_its_journals_keeps_taking_writes_behind() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let first = open(db.to_str().unwrap(), Strategy::WriteBehind, 0);
    for i in 0..60 {
        first.set("k", format!("v{i}")).unwrap();
    }
    first.close().unwrap();
    std::fs::remove_dir_all(dir.path().join("c.db-wb")).unwrap();
    let copy = open(db.to_str().unwrap(), Strategy::WriteBehind, 0);
    copy.set("k", "after the copy").unwrap();
    copy.close().unwrap();
    let reader = reader(&db);
    assert_eq!(
        text(reader.get("k").unwrap()).as_deref(),
        Some("after the copy")
    );
}

/// Two write-behind caches on one file in one process, each reading what
/// the other just wrote: the one holding the outbox's lease, with nothing
/// due, reads the outbox's depth, which waits for the other's journal;
/// that journal's drain runs on the engine's runtime, which the wait must
/// not hold.
#[test]
fn an_idle_outbox_worker_never_holds_up_another_caches_drain() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let db = db.to_str().unwrap();
    let caches = [
        open(db, Strategy::WriteBehind, 0),
        open(db, Strategy::WriteBehind, 0),
    ];
    let mut slowest = Duration::ZERO;
    for i in 0..300 {
        for (w, cache) in caches.iter().enumerate() {
            let key = format!("w{w}-{i}");
            let started = Instant::now();
            cache.set(key.as_str(), "v").unwrap();
            let read = caches[1 - w].get(&key).unwrap();
            slowest = slowest.max(started.elapsed());
            assert_eq!(text(read).as_deref(), Some("v"));
        }
    }
    assert!(
        slowest < tierstack::tier::BUSY_TIMEOUT / 2,
        "the slowest write and read took {slowest:?}"
    );
}
