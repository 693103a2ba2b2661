//! The journal: the fast path of a `set` that writes only the tiers.
//!
//! A `set` of the default strategy (read-through or cache-aside, with no
//! Redis tier, which is written after L2) or of write-behind is
//! acknowledged once its record is in this process's journal, a file of
//! [`JOURNAL_BYTES`] mapped into memory (`MAP_SHARED`): the copy into the
//! mapping is the whole cost (with a `stat` of the file for the default
//! strategy, below), and the kernel keeps the pages when the process dies,
//! so an acknowledged write survives a crash of the process. It does not
//! survive a power loss until it is drained: woken by the write, the
//! drainer (the outbox's worker with write-behind, the maintenance task
//! otherwise) lets writes gather for [`JOURNAL_LINGER`] and commits the
//! journal's records to the L2 file in one transaction (write-behind's
//! each with its outbox row, with `synchronous = FULL`; the default
//! strategy's with `NORMAL`, as its direct commits), and so does any call
//! of this process that reads or writes the file first (see
//! [`SqliteTier::settle`]), so that this process reads its own writes.
//! Every other cache on the file (in this process or another) waits,
//! before it reads or writes the file, until the records journaled before
//! are drained (see [`peers`]), so a write is seen by every process once
//! `set` returns.
//!
//! - **Failures.** A default-strategy write checks, before it is
//!   journaled, that the path still names the file (one `stat`; see
//!   `super::recovery`): a replaced or deleted file is reopened then, and a
//!   read-only one refuses the write, as a direct commit would. A drain
//!   that fails (the file damaged with `sqlite.on_corrupt = "fail"`, the
//!   disk failing) keeps its records first in line: a read is served with
//!   what the file holds, and the next write drains first and fails with
//!   the drain's error. A drain that finds the file replaced or damaged
//!   (with `rebuild`) commits to the file then at the path, and the engine
//!   empties L1, as after a direct write.
//! - **Order.** Each record is numbered when it is appended, by a counter
//!   every cache on the file shares (see [`peers`]); the row it stores
//!   keeps the number, and a record drained later than a record of the same
//!   key numbered after it is not stored (see `Write::Replay`): the write
//!   journaled last stands, whatever the order of the drains and the
//!   clocks. A direct write stores the last number taken, so a record
//!   appended before it and drained after it (its journal stuck past the
//!   busy timeout) does not undo it. Where a number is unknown (a row from
//!   before, a record read back from a journal's bytes) the times decide:
//!   a record made before the row (its `created_ms` earlier) is not
//!   stored. Within this tier the journal's order stands: a record's `created_ms` is raised
//!   to that of the records before it and of the writes committed directly
//!   that began before it (a write's time is taken when it begins, before
//!   its drain), so that none of them makes it look older. L1 is kept in
//!   the same order (see `tier::memory::ordering`).
//! - **Layout.** A 64-byte header (magic, `head`, `tail`) and a ring of
//!   8-byte-aligned records, each a length, a CRC-32 of its payload and the
//!   payload (times, key, idempotency key, tags, value). Positions are
//!   counted from the journal's start and never wrap; a record that would
//!   cross the ring's end is preceded by a wrap marker. `tail` moves past
//!   a record (or an `mset`'s records) once it is written, `head` once the
//!   records before it are committed to the file.
//! - **Ownership.** Each process's journal is `<file>-wb/<pid>-<nonce>`,
//!   made with the L2 file's permissions (see [`shared_mode`]), held with
//!   an exclusive `flock` while the process lives (a forked child closes
//!   its copy of the descriptor at its first use of the cache and starts a
//!   journal of its own). A lock taken on another's journal for a moment,
//!   to replay it or to see whether its owner lives, is released by
//!   unlocking, never by closing: a child forked meanwhile shares the
//!   descriptor, and would hold the lock as long as it lives. Whoever opens the
//!   file, and every write-behind worker about once a second, replays the
//!   journals no live process holds, from `head` to `tail`, skipping
//!   records whose CRC fails (a power loss may tear what was not drained),
//!   then deletes them. The file is created under a temporary name and
//!   renamed once locked, so a half-made journal is never replayed (one
//!   left unlocked for a minute is deleted).
//! - **Space.** The journal's blocks are allocated when it is created, so
//!   a full disk cannot fault a write into the mapping; without the space
//!   (or for a write over an eighth of the ring, 4 MiB) a `set` commits
//!   directly (write-behind's with `synchronous = FULL`). A full ring is
//!   drained by the `set` that finds it full.
//! - **Pages.** After each drain, the drainer maps the ring's next half for
//!   writing (see [`SqliteTier::warm_journal`]), so that a `set` copies its
//!   record into pages already mapped instead of taking the page faults.

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use self::peers::{GENERATION, Peers};
use self::record::{Payload, between, record_len};
use self::ring::{Queued, Ring};
use super::SqliteTier;
use super::file::suffixed;
use super::outbox::Behind;
use super::row::{Replayed, Row, Write};
use super::writer::{Outcome, Tried};
use crate::error::{Error, Result};

/// How long a drainer lets writes gather in the journal after the first
/// wakes it, before it drains them in one commit.
pub(crate) const JOURNAL_LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// The size of a process's journal file: 32 MiB.
pub const JOURNAL_BYTES: u64 = 32 << 20;
/// The header's size: the magic, then [`HEAD_AT`] and [`TAIL_AT`].
const HEADER: u64 = 64;
/// Where the header keeps `head`: the position of the first record not yet
/// committed to the file.
const HEAD_AT: usize = 8;
/// Where the header keeps `tail`: the position past the last record written.
const TAIL_AT: usize = 16;
const MAGIC: &[u8; 8] = b"tsjrnl01";
/// A record length that means: the next record is at the ring's start.
const WRAP: u32 = u32::MAX;
/// A journal left half made (under its temporary name, unlocked) for this
/// long is deleted.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(60);
/// Bytes of rows journaled between two measures of the disk's free space.
const ROOM_GRANT: u64 = 1 << 20;
/// Records replayed per transaction when a dead process's journal is
/// replayed.
const REPLAY_CHUNK: usize = 1024;

/// A write that goes through the journal: its row, and its outbox row
/// for write-behind.
pub(crate) type Record = (Row, Option<Behind>);

/// What [`SqliteTier::journal_write`] did.
pub(crate) enum Journaled {
    /// The rows are in the journal; whether it held none before (the
    /// drainer is then to be woken: one that finds records left after a
    /// drain goes on at once).
    Appended { first: bool },
    /// The rows were committed directly, with these outcomes.
    Committed(Vec<Outcome>),
    /// With `at_once`: the write would wait, and nothing was written.
    WouldWait,
}

/// What appending found.
pub(super) enum Appended {
    /// Every row is in the journal; whether it held none before.
    Done(bool),
    /// The ring has no room for them: drain it, then try again.
    Full(Vec<Record>),
    /// They do not go through the journal: commit them directly.
    Direct(Vec<Record>),
}

/// This process's journal; see the module docs.
pub(super) struct Journal {
    /// The L2 file, whose mode the journals take.
    file: PathBuf,
    dir: PathBuf,
    /// The size of a journal file: [`JOURNAL_BYTES`] but in tests.
    size: u64,
    ring: Mutex<Option<Ring>>,
    /// How many records are queued: a lock-free check for [`SqliteTier::settle`].
    queued: AtomicUsize,
    /// Held while records are drained, so that drains commit in order;
    /// holds the spare queue a drain swaps for the ring's.
    draining: Mutex<VecDeque<Queued>>,
    /// Set when the journal could not be created: sets commit directly.
    unavailable: AtomicBool,
    /// Set while the last drain failed: a write drains first.
    failed: AtomicBool,
    /// Set when the kernel cannot populate the ring's pages ahead (see
    /// [`SqliteTier::warm_journal`]).
    cold: AtomicBool,
    /// Bytes of rows that may still be journaled before the disk's free
    /// space is measured again (see [`SqliteTier::journal_room`]).
    room: AtomicI64,
    /// The other journals on the file, which every access waits for.
    peers: Peers,
    /// The latest `created_ms` of a row this tier journaled or began to
    /// commit directly: the least a record appended from then on carries.
    latest_created: AtomicU64,
}

impl Journal {
    /// The journal of the L2 file at `path` (nothing is created yet).
    pub(super) fn new(path: &Path) -> Self {
        Self::sized(path, JOURNAL_BYTES)
    }

    fn sized(path: &Path, size: u64) -> Self {
        let dir = suffixed(path, "-wb");
        Self {
            peers: Peers::new(&dir, path),
            file: path.to_path_buf(),
            dir,
            size,
            ring: Mutex::new(None),
            queued: AtomicUsize::new(0),
            draining: Mutex::new(VecDeque::new()),
            unavailable: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            cold: AtomicBool::new(false),
            room: AtomicI64::new(0),
            latest_created: AtomicU64::new(0),
        }
    }

    /// Whether records wait to be drained.
    #[inline]
    pub(super) fn pending(&self) -> bool {
        self.queued.load(Ordering::SeqCst) != 0
    }

    /// Appends `rows` (one `mset`: made durable together), creating the
    /// journal on first use; runs `appended` once they are in, still under
    /// the journal's lock, so that what it does is done in the journal's
    /// order.
    pub(super) fn append(&self, rows: Vec<Record>, appended: &mut dyn FnMut()) -> Appended {
        if self.unavailable.load(Ordering::Relaxed) {
            return Appended::Direct(rows);
        }
        let needed: u64 = rows
            .iter()
            .map(|(r, b)| 2 * record_len(Payload::new(r, b.as_ref()).len()))
            .sum();
        if needed > (self.size - HEADER) / 4 {
            return Appended::Direct(rows);
        }
        let mut ring = self.ring.lock();
        if ring.is_none() {
            match Ring::create(&self.dir, self.size, shared_mode(&self.file)) {
                Ok(created) => {
                    // Before its first record: an access of any cache that
                    // begins after that record looks for it.
                    self.peers.bump();
                    *ring = Some(created);
                }
                Err(err) => {
                    tracing::warn!(dir = %self.dir.display(), error = %err,
                        "no journal: each set commits to the file");
                    self.unavailable.store(true, Ordering::Relaxed);
                    return Appended::Direct(rows);
                }
            }
        }
        let ring = ring.as_mut().expect("created above");
        if ring.tail + needed - ring.head > ring.ring {
            return Appended::Full(rows);
        }
        // Counted first (a drain waits for this lock to take them), then
        // the floor read: a direct write notes its rows, then looks for
        // records to drain (see `SqliteTier::write`), so either it drains
        // these before it commits, or they are not older than its rows.
        let count = rows.len();
        let first = self.queued.fetch_add(count, Ordering::SeqCst) == 0;
        let mut floor = self.latest_created.load(Ordering::SeqCst);
        // Numbered under the lock: in the journal's order.
        let mut order = self.peers.take_orders(count);
        for (mut row, behind) in rows {
            row.created_ms = row.created_ms.max(floor);
            floor = row.created_ms;
            let end = ring.put(&Payload::new(&row, behind.as_ref()));
            ring.queued.push_back(Queued {
                row,
                behind,
                end,
                order,
            });
            order += u64::from(order > 0);
        }
        // A later record is not older than these: the journal's order
        // stands in the file too.
        self.latest_created.fetch_max(floor, Ordering::SeqCst);
        // The records count once `tail` covers them: all of them or none.
        ring.store_position(TAIL_AT, ring.tail);
        appended();
        Appended::Done(first)
    }

    /// After a fork, in the child: forgets the parent's journal (the
    /// parent drains it; its lock stays with the parent).
    ///
    /// # Safety
    /// As [`crate::fork::unlock_abandoned`]: only in a forked child, before
    /// any of its threads uses the journal.
    pub(super) unsafe fn forget_after_fork(&self) {
        // SAFETY: as the caller promises.
        unsafe {
            crate::fork::unlock_abandoned(&self.ring);
            crate::fork::unlock_abandoned(&self.draining);
        }
        self.draining.lock().clear();
        if let Some(mut ring) = self.ring.lock().take() {
            // Dropping the mapping and the descriptor leaves the file, and
            // the parent's lock on it, alone.
            ring.path = PathBuf::new();
            drop(ring);
        }
        self.queued.store(0, Ordering::Release);
        // SAFETY: as the caller promises.
        unsafe { self.peers.forget_after_fork() };
    }

    /// The name of this cache's journal, if it has one.
    fn own_name(&self) -> Option<std::ffi::OsString> {
        let ring = self.ring.lock();
        ring.as_ref()
            .and_then(|r| r.path.file_name())
            .map(Into::into)
    }
}

/// The permissions of the journals of the L2 file at `file`: its own (read
/// and write bits), so that whoever may read the file may read what waits
/// to reach it (see [`peers`]); `0o600` if it cannot be read.
pub(super) fn shared_mode(file: &Path) -> u32 {
    std::fs::metadata(file).map_or(0o600, |m| m.permissions().mode() & 0o666)
}

impl SqliteTier {
    /// A write's fast path: `rows` (with their outbox rows, for
    /// write-behind) go to this process's journal (see the module docs);
    /// they are committed directly when the journal cannot take them. With
    /// `at_once`, nothing is written and [`Journaled::WouldWait`] returned
    /// when the write would wait: the ring is full, the disk's free space
    /// is due to be measured, or a direct commit would wait (see
    /// [`SqliteTier::try_write`]). After a drain failed, a write drains
    /// first, and fails with the drain's error if it fails again.
    /// `appended` runs once the rows are in the journal, under its lock
    /// (see [`Journal::append`]): not when they were committed directly.
    pub(crate) fn journal_write(
        &self,
        mut rows: Vec<Record>,
        at_once: bool,
        appended: &mut dyn FnMut(),
    ) -> Result<Journaled> {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(Error::closed());
            }
            if self.journal.failed.load(Ordering::Relaxed) {
                if at_once {
                    return Ok(Journaled::WouldWait);
                }
                self.drain(false)?;
            }
            let appended = {
                let _gate = self.enter()?;
                // A write acknowledged as committed (no outbox row) sees a
                // replaced file as a direct commit would: one `stat`.
                // Write-behind's costs a copy and no system call; its drain
                // finds the file.
                if rows.iter().any(|(_, behind)| behind.is_none()) {
                    self.check_file()?;
                }
                self.check_writable()?;
                if !self.journal_room(&rows, at_once)? {
                    return Ok(Journaled::WouldWait);
                }
                self.journal.append(rows, appended)
            };
            rows = match appended {
                Appended::Done(first) => return Ok(Journaled::Appended { first }),
                Appended::Full(_) if at_once => return Ok(Journaled::WouldWait),
                Appended::Full(rows) => {
                    self.drain(false)?;
                    rows
                }
                Appended::Direct(rows) => {
                    let writes = rows
                        .into_iter()
                        .map(|(row, behind)| match behind {
                            Some(behind) => Write::PutBehind(row, behind),
                            None => Write::Put(row),
                        })
                        .collect();
                    return match at_once {
                        false => self.write(writes).map(Journaled::Committed),
                        true => Ok(match self.try_write(writes)? {
                            Tried::Done(outcomes) => Journaled::Committed(outcomes),
                            Tried::WouldWait => Journaled::WouldWait,
                        }),
                    };
                }
            };
        }
    }

    /// Refuses `rows` with [`ErrorKind::Storage`](crate::ErrorKind::Storage)
    /// when the file could not take them and what the journal holds while
    /// leaving its reserve (see [`super::space`]): a drain is never refused
    /// for space, so a write is refused when it is journaled. Free space is
    /// measured once per [`ROOM_GRANT`] bytes journaled, for that many;
    /// with `at_once`, `false` when they would need a checkpoint first.
    fn journal_room(&self, rows: &[Record], at_once: bool) -> Result<bool> {
        let size: u64 = rows.iter().map(|(row, _)| row.size()).sum();
        if self.journal.room.fetch_sub(size as i64, Ordering::Relaxed) >= size as i64 {
            return Ok(true);
        }
        let held = {
            let ring = self.journal.ring.lock();
            ring.as_ref().map_or(0, |r| r.tail - r.head)
        };
        // A row and its outbox row each hold the value.
        let needed = 2 * (held + size + ROOM_GRANT);
        match at_once {
            true if !self.room_at_once_for(needed) => {
                self.journal.room.fetch_add(size as i64, Ordering::Relaxed);
                return Ok(false);
            }
            true => {}
            false => self.ensure_room_for(needed)?,
        }
        self.journal
            .room
            .store(ROOM_GRANT as i64, Ordering::Relaxed);
        Ok(true)
    }

    /// Commits this process's journal's records (the drainer's pass; see
    /// [`super::wal::Wakeup::ask_drain`]).
    pub(crate) fn drain_journal(&self) -> Result<()> {
        self.drain(false)
    }

    /// Maps the journal's next half (16 MiB) for writing, so that the
    /// `set`s that write them find their pages mapped: the drainer's work,
    /// after its drain. A page of a file mapping is mapped on first write (a
    /// fault that allocates it: about a microsecond, more than the copy of
    /// a record) and again each time the kernel has written it back (a fault
    /// that marks it dirty); done ahead, off the write path, the faults
    /// cost no `set`. Best effort: a kernel without
    /// `MADV_POPULATE_WRITE` (before Linux 5.14) leaves it to the `set`s.
    pub(crate) fn warm_journal(&self) {
        if self.journal.cold.load(Ordering::Relaxed) {
            return;
        }
        // Held while the pages are touched: the mapping is dropped only
        // under it (see `drain`, with `close`).
        let _draining = self.journal.draining.lock();
        let spans = match self.journal.ring.lock().as_mut() {
            Some(ring) => ring.take_warm_spans(self.journal.size / 2),
            None => return,
        };
        for (start, len) in spans {
            // SAFETY: the span is whole pages of the ring's mapping, which
            // stays mapped while `draining` is held; populating changes no
            // byte of it.
            let rc = unsafe {
                libc::madvise(start as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE)
            };
            if rc != 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                    self.journal.cold.store(true, Ordering::Relaxed);
                }
                return;
            }
        }
    }

    /// Notes the rows of `writes`, about to be committed directly: a record
    /// appended from now on is not older than they are (see the module
    /// docs).
    pub(super) fn note_direct(&self, writes: &[Write]) {
        let latest = writes
            .iter()
            .filter_map(|w| match w {
                Write::Put(row) | Write::Copy(row) | Write::PutBehind(row, _) => {
                    Some(row.created_ms)
                }
                _ => None,
            })
            .max();
        if let Some(latest) = latest {
            // Before the caller looks for records to drain (see
            // `Journal::append`).
            self.journal
                .latest_created
                .fetch_max(latest, Ordering::SeqCst);
        }
    }

    /// The number of the last write journaled on the file (0: none, or
    /// unknown): a direct write comes after every one (see `Write::Replay`).
    pub(super) fn journal_order(&self) -> u64 {
        self.journal.peers.order_now()
    }

    /// Numbers journaled writes from now on after `last`, the largest
    /// number the file holds (the counter may be younger than the file).
    pub(super) fn resume_orders(&self, last: u64) {
        self.journal.peers.resume_orders(last);
    }

    /// Whether this process's journal holds records not yet committed.
    pub(crate) fn journal_pending(&self) -> bool {
        self.journal.pending()
    }

    /// Commits the journal's records to the file, if it has any. Every
    /// read and write of the file settles first, so this process reads its
    /// own writes; the outbox's worker settles on every pass.
    #[inline]
    pub(crate) fn settle(&self) -> Result<()> {
        self.wait_for_peers()?;
        match self.journal.pending() {
            true => self.drain(false),
            false => Ok(()),
        }
    }

    /// Commits the records queued when it starts, in order; with `close`,
    /// also ends the journal (deleting it when everything was committed).
    #[cold]
    pub(super) fn drain(&self, close: bool) -> Result<()> {
        // In a forked child, forgets the parent's journal (and the locks
        // its threads held) before taking any of them.
        drop(self.enter()?);
        let mut spare = self.journal.draining.lock();
        // Taken out of the queue (still counted as queued until committed):
        // swapped for the spare queue, so that the lock `set`s take is held
        // for no copy and no allocation.
        let mut taken = std::mem::take(&mut *spare);
        if let Some(ring) = self.journal.ring.lock().as_mut() {
            std::mem::swap(&mut ring.queued, &mut taken);
        }
        if let Some(end) = taken.back().map(|q| q.end) {
            let count = taken.len();
            let orders: Vec<u64> = taken.iter().map(|q| q.order).collect();
            let writes = taken
                .drain(..)
                .map(|q| Write::Replay(q.row, q.behind, q.order, Replayed::Own))
                .collect();
            let committed = self.write_settled(writes);
            self.journal
                .failed
                .store(committed.is_err(), Ordering::Relaxed);
            let mut ring = self.journal.ring.lock();
            let ring = ring.as_mut().expect("a drain's ring stays");
            if let Err(err) = committed {
                // They stay first in line, read back from the ring, with
                // their numbers.
                let back = between(&ring.map, ring.head, end);
                for (mut queued, order) in back.into_iter().zip(orders).rev() {
                    queued.order = order;
                    ring.queued.push_front(queued);
                }
                return Err(err);
            }
            ring.head = end;
            ring.store_position(HEAD_AT, end);
            self.journal.queued.fetch_sub(count, Ordering::SeqCst);
        }
        // Empty, with its capacity: the next drain's swap.
        *spare = taken;
        // Records journaled while this drain ran found it pending and woke
        // no one: whichever path drained (the drainer, or an access that
        // settled first), the drainer is asked again.
        if self.journal.pending() {
            self.wakeup().ask_drain();
        }
        if close {
            // Dropping the ring deletes the file once it holds nothing.
            drop(self.journal.ring.lock().take());
        }
        Ok(())
    }
}

mod peers;
mod record;
mod replay;
mod ring;
#[cfg(test)]
mod tests;
