//! Checkpoints off the write path, and what wakes the maintenance task.
//!
//! SQLite's default copies the WAL back into the file from inside the
//! commit that takes it past 1,000 pages: that commit waits for the copy
//! and two fsyncs, so one `set` in a few hundred costs milliseconds. Here
//! the writer connection's automatic checkpoint is off; a hook run after
//! each of its commits ([`watch_wal`]) asks the maintenance task for a
//! `PASSIVE` checkpoint once the WAL holds [`CHECKPOINT_PAGES`], and the
//! task runs it on its own thread, beside the writers (a passive checkpoint
//! takes no write lock). Only if the WAL still grows to
//! [`CHECKPOINT_PAGES_INLINE`] (the task is starved, or this process has
//! none, a forked child before its first use of the file) does the
//! committing thread checkpoint itself, as SQLite would; not a commit that
//! must not wait ([`at_once`]), which leaves it to the next.
//!
//! Every process on the file runs the same hook on its own commits, so the
//! WAL is checkpointed by whichever process wrote to it last.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::Notify;

use crate::error::Result;

/// WAL pages (of every process) after a commit past which this process's
/// maintenance task is asked for a checkpoint: SQLite's default threshold.
pub const CHECKPOINT_PAGES: i32 = 1000;

/// WAL pages after a commit past which the committing thread checkpoints
/// itself.
pub const CHECKPOINT_PAGES_INLINE: i32 = 8 * CHECKPOINT_PAGES;

/// What the maintenance task is asked to do before its next tick, and the
/// notification that wakes it.
pub(crate) struct Wakeup {
    /// Replaced in a forked child: the parent's wakes the parent's task,
    /// whose runtime has no thread there.
    notify: Mutex<Arc<Notify>>,
    maintain: AtomicBool,
    checkpoint: AtomicBool,
    drain: AtomicBool,
}

/// What a woken maintenance task was asked for (see [`Wakeup::take`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Asked {
    /// A full pass: the budget is exceeded, or many reads wait to be recorded.
    pub(crate) maintain: bool,
    /// A checkpoint of the WAL only.
    pub(crate) checkpoint: bool,
    /// A drain of the journal (see [`super::journal`]).
    pub(crate) drain: bool,
}

impl Wakeup {
    pub(crate) fn new() -> Self {
        Self {
            notify: Mutex::new(Arc::new(Notify::new())),
            maintain: AtomicBool::new(false),
            checkpoint: AtomicBool::new(false),
            drain: AtomicBool::new(false),
        }
    }

    /// The notification the maintenance task waits on.
    pub(crate) fn notify(&self) -> Arc<Notify> {
        self.notify.lock().clone()
    }

    /// In a forked child: a new notification (and nothing asked).
    pub(super) fn renew(&self) {
        *self.notify.lock() = Arc::new(Notify::new());
        self.maintain.store(false, Ordering::Relaxed);
        self.checkpoint.store(false, Ordering::Relaxed);
        self.drain.store(false, Ordering::Relaxed);
    }

    /// The lock a forked child may find abandoned (see [`crate::fork`]).
    pub(super) fn lock(&self) -> &Mutex<Arc<Notify>> {
        &self.notify
    }

    /// Asks for a full maintenance pass before the next tick.
    pub(crate) fn ask_maintenance(&self) {
        if !self.maintain.swap(true, Ordering::AcqRel) {
            self.notify.lock().notify_one();
        }
    }

    /// Asks for a drain of the journal: records wait in it (with
    /// write-behind, the task wakes the outbox's worker to drain it).
    pub(crate) fn ask_drain(&self) {
        if !self.drain.swap(true, Ordering::AcqRel) {
            self.notify.lock().notify_one();
        }
    }

    fn ask_checkpoint(&self) {
        if !self.checkpoint.swap(true, Ordering::AcqRel) {
            self.notify.lock().notify_one();
        }
    }

    /// What was asked since the last call, clearing it.
    pub(crate) fn take(&self) -> Asked {
        Asked {
            maintain: self.maintain.swap(false, Ordering::AcqRel),
            checkpoint: self.checkpoint.swap(false, Ordering::AcqRel),
            drain: self.drain.swap(false, Ordering::AcqRel),
        }
    }
}

thread_local! {
    /// Set while this thread commits a write that must not wait (see
    /// [`at_once`]).
    static AT_ONCE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `commit` as a write that must not wait (`SqliteTier::try_write`,
/// on a host's event loop): a commit that takes the WAL past
/// [`CHECKPOINT_PAGES_INLINE`] asks the maintenance task for the
/// checkpoint instead of running it, and the next commit of another kind
/// runs it if the WAL is still that long.
pub(super) fn at_once<R>(commit: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            AT_ONCE.set(false);
        }
    }
    AT_ONCE.set(true);
    let _reset = Reset;
    commit()
}

/// Turns off `conn`'s automatic checkpoint and hooks its commits to ask
/// `wakeup` for one instead (see the module docs).
///
/// Asked once per [`CHECKPOINT_PAGES`] new pages, not after every commit
/// past the threshold: while writes go on, a passive checkpoint never
/// catches up with the WAL's end (and the WAL starts over only once one
/// has), so asking after every commit would run one, with its two fsyncs,
/// every few commits.
pub(super) fn watch_wal(conn: &mut Connection, wakeup: &Arc<Wakeup>) -> Result<()> {
    let wakeup = Arc::clone(wakeup);
    // The WAL's size when a checkpoint was last asked for (0: not since it
    // started over).
    let asked_at = AtomicI32::new(0);
    // Replaces the automatic checkpoint, which is itself a WAL hook.
    conn.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages| {
        let asked = asked_at.load(Ordering::Relaxed);
        if pages >= CHECKPOINT_PAGES_INLINE && !AT_ONCE.get() {
            // The commit has happened whatever this returns (an error here
            // would be reported as the commit's own): a busy checkpoint
            // is tried again after the next commit.
            let _ = wal.checkpoint();
            asked_at.store(0, Ordering::Relaxed);
        } else if pages >= CHECKPOINT_PAGES && (pages < asked || pages - asked >= CHECKPOINT_PAGES)
        {
            // `pages < asked`: the WAL started over since.
            asked_at.store(pages, Ordering::Relaxed);
            wakeup.ask_checkpoint();
        }
        Ok(())
    }))?;
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use super::{CHECKPOINT_PAGES, CHECKPOINT_PAGES_INLINE};
    use crate::config::OnCorrupt;
    use crate::tier::sqlite::{Row, SqliteTier, Write};

    /// `(frames in the WAL, frames copied back into the file)`, read from
    /// the `-shm` file's index header (`mxFrame` at byte 16, `nBackfill`
    /// at byte 96, native byte order).
    pub(in crate::tier::sqlite) fn wal_frames(path: &std::path::Path) -> (u32, u32) {
        let shm = std::fs::read(path.with_extension("db-shm")).unwrap();
        let word = |at: usize| u32::from_ne_bytes(shm[at..at + 4].try_into().unwrap());
        (word(16), word(96))
    }

    fn put(tier: &SqliteTier, i: usize) {
        let row = Row::fresh(format!("k{i:05}"), vec![b'v'; 8000]);
        tier.write(vec![Write::Put(row)]).unwrap();
    }

    #[test]
    fn a_commit_asks_for_a_checkpoint_instead_of_running_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let tier = SqliteTier::open(&path, u64::MAX, OnCorrupt::Fail, Arc::default()).unwrap();
        // Each row takes two pages and its index entries: 1,100 frames
        // come well before 1,000 rows.
        for i in 0..1000 {
            if wal_frames(&path).0 >= CHECKPOINT_PAGES as u32 + 100 {
                break;
            }
            put(&tier, i);
        }
        // Past SQLite's own threshold: nothing copied by the writes
        // themselves, a checkpoint asked for instead.
        let (frames, copied) = wal_frames(&path);
        assert_eq!(copied, 0, "a commit checkpointed ({frames} frames)");
        assert!(tier.wakeup().take().checkpoint);
        assert!(!tier.wakeup().take().checkpoint, "asked once, taken once");
        tier.checkpoint().unwrap();
        let (frames, copied) = wal_frames(&path);
        assert_eq!(copied, frames);
        tier.close(0).unwrap();
    }

    #[test]
    fn while_writes_go_on_a_checkpoint_is_asked_once_per_threshold_of_new_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let tier = SqliteTier::open(&path, u64::MAX, OnCorrupt::Fail, Arc::default()).unwrap();
        let mut i = 0;
        while !tier.wakeup().take().checkpoint {
            put(&tier, i);
            i += 1;
        }
        let first = wal_frames(&path).0;
        assert!(first >= CHECKPOINT_PAGES as u32, "{first} frames");
        // No checkpoint runs: the WAL keeps growing, and only a thousand
        // pages more ask again.
        loop {
            put(&tier, i);
            i += 1;
            let frames = wal_frames(&path).0;
            let asked = tier.wakeup().take().checkpoint;
            if frames < first + CHECKPOINT_PAGES as u32 {
                assert!(!asked, "asked again at {frames} frames, first at {first}");
            } else {
                assert!(
                    asked,
                    "not asked again at {frames} frames, first at {first}"
                );
                assert!(frames < first + CHECKPOINT_PAGES as u32 + 10, "{frames}");
                break;
            }
        }
        tier.close(0).unwrap();
    }

    #[test]
    fn a_starved_checkpoint_is_run_by_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let tier = SqliteTier::open(&path, u64::MAX, OnCorrupt::Fail, Arc::default()).unwrap();
        for i in 0.. {
            put(&tier, i);
            let (frames, copied) = wal_frames(&path);
            if copied > 0 {
                // The commit that took the WAL past the inline threshold
                // copied it all back.
                assert!(frames >= CHECKPOINT_PAGES_INLINE as u32, "{frames} frames");
                assert_eq!(copied, frames);
                break;
            }
            assert!(
                frames < CHECKPOINT_PAGES_INLINE as u32 + 10,
                "{frames} frames, none copied"
            );
        }
        tier.close(0).unwrap();
    }

    #[test]
    fn a_commit_that_must_not_wait_leaves_a_starved_checkpoint_to_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let tier = SqliteTier::open(&path, u64::MAX, OnCorrupt::Fail, Arc::default()).unwrap();
        let mut i = 0;
        while wal_frames(&path).0 < CHECKPOINT_PAGES_INLINE as u32 + 20 {
            let row = Row::fresh(format!("k{i:05}"), vec![b'v'; 8000]);
            let tried = tier.try_write(vec![Write::Put(row)]).unwrap();
            assert!(matches!(tried, crate::tier::sqlite::Tried::Done(_)));
            assert_eq!(wal_frames(&path).1, 0, "a commit at once checkpointed");
            i += 1;
        }
        assert!(tier.wakeup().take().checkpoint);
        // The next commit that may wait runs it.
        put(&tier, i);
        let (frames, copied) = wal_frames(&path);
        assert_eq!(copied, frames);
        tier.close(0).unwrap();
    }

    #[test]
    fn a_set_writes_the_pages_its_row_its_indexes_and_the_log_need() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let tier = SqliteTier::open(&path, u64::MAX, OnCorrupt::Fail, Arc::default()).unwrap();
        let set = |i: usize| {
            let row = Row::fresh(format!("component:{i:05}"), vec![b'v'; 1500]);
            tier.write(vec![Write::Put(row)]).unwrap();
        };
        (0..200).for_each(set);
        let frames = || wal_frames(&path).0;
        let before = frames();
        (200..400).for_each(set);
        let new_keys = frames() - before;
        let before = frames();
        (200..400).for_each(set);
        let overwrites = frames() - before;
        // A new key: the table's leaf, the key index's, the recency
        // index's, the change log's, `meta` (the totals), and the file's
        // first page whenever the file grows (every few rows of 1.5 KB),
        // plus a page split now and then: 1,321 frames for 200 sets with
        // SQLite 3.54. An overwrite keeping its recency: the table's leaf,
        // the log's and `meta`: 603.
        assert!(new_keys <= 7 * 200, "{new_keys} frames for 200 new keys");
        assert!(
            overwrites <= 3 * 200 + 10,
            "{overwrites} frames for 200 overwrites"
        );
        tier.close(0).unwrap();
    }
}
