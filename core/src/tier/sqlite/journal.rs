//! Write-behind's journal: the fast path of a write-behind `set`.
//!
//! A write-behind `set` is acknowledged once its record is in this
//! process's journal, a file of [`JOURNAL_BYTES`] mapped into memory
//! (`MAP_SHARED`): the copy into the mapping is the whole cost, and the
//! kernel keeps the pages when the process dies, so an acknowledged write
//! survives a crash of the process. It does not survive a power loss until
//! it is drained: the outbox's worker, woken by the write, commits the
//! journal's records to the L2 file (each with its outbox row, with
//! `synchronous = FULL`), and so does any call of this process that reads
//! or writes the file first (see [`SqliteTier::settle`]), so that this
//! process reads its own writes. Every other cache on the file (in this
//! process or another) waits, before it reads or writes the file, until
//! the records journaled before are drained (see [`peers`]), so a write is
//! seen by every process once `set` returns. (A read is served even when
//! the drain fails, e.g. on a file swapped for a read-only one: it then
//! reads what the file holds, and a write fails with the drain's error.)
//!
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
//!   an exclusive `flock` while the process lives (a forked child
//!   does not inherit it: it starts a journal of its own). Whoever opens the
//!   file, and every write-behind worker about once a second, replays the
//!   journals no live process holds, from `head` to `tail`, skipping
//!   records whose CRC fails (a power loss may tear what was not drained),
//!   then deletes them. The file is created under a temporary name and
//!   renamed once locked, so a half-made journal is never replayed (one
//!   left unlocked for a minute is deleted).
//! - **Space.** The journal's blocks are allocated when it is created, so
//!   a full disk cannot fault a write into the mapping; without the space
//!   (or for a write over an eighth of the ring, 4 MiB) a `set` commits
//!   directly, with `synchronous = FULL`. A full ring is drained by the `set`
//!   that finds it full.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

use memmap2::MmapMut;
use parking_lot::Mutex;

use self::peers::{GENERATION, Peers};
use self::record::{Payload, between, record_len};
use super::SqliteTier;
use super::file::suffixed;
use super::outbox::Behind;
use super::row::{Replayed, Row, Write};
use crate::error::{Error, Result};

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

/// A record acknowledged and not yet committed to the file.
struct Queued {
    row: Row,
    behind: Behind,
    /// The journal position just past it.
    end: u64,
    /// Its number among the writes journaled on the file (see [`peers`]);
    /// 0 when unknown (read back from a journal's bytes).
    order: u64,
}

/// This process's journal file, mapped.
struct Ring {
    path: PathBuf,
    /// Holds the `flock` for as long as the ring lives.
    _file: File,
    map: MmapMut,
    /// The ring's size: the file's, less the header.
    ring: u64,
    head: u64,
    tail: u64,
    queued: VecDeque<Queued>,
}

/// What appending found.
pub(super) enum Appended {
    /// Every row is in the journal; whether it held none before.
    Done(bool),
    /// The ring has no room for them: drain it, then try again.
    Full(Vec<(Row, Behind)>),
    /// They do not go through the journal: commit them directly.
    Direct(Vec<(Row, Behind)>),
}

/// The journal of a write-behind tier; see the module docs.
pub(super) struct Journal {
    /// The L2 file, whose mode the journals take.
    file: PathBuf,
    dir: PathBuf,
    /// The size of a journal file: [`JOURNAL_BYTES`] but in tests.
    size: u64,
    ring: Mutex<Option<Ring>>,
    /// How many records are queued: a lock-free check for [`SqliteTier::settle`].
    queued: AtomicUsize,
    /// Held while records are drained, so that drains commit in order.
    draining: Mutex<()>,
    /// Set when the journal could not be created: sets commit directly.
    unavailable: AtomicBool,
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
            draining: Mutex::new(()),
            unavailable: AtomicBool::new(false),
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
    pub(super) fn append(&self, rows: Vec<(Row, Behind)>, appended: &mut dyn FnMut()) -> Appended {
        if self.unavailable.load(Ordering::Relaxed) {
            return Appended::Direct(rows);
        }
        let needed: u64 = rows
            .iter()
            .map(|(r, b)| 2 * record_len(Payload::new(r, b).len()))
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
                        "no write-behind journal: each write-behind set commits to the file");
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
            let end = ring.put(&Payload::new(&row, &behind));
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

impl Ring {
    /// Creates a journal in `dir`, locked, with its blocks allocated and
    /// the permissions `mode`.
    fn create(dir: &Path, size: u64, mode: u32) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let name = format!(
            "{}-{:016x}",
            std::process::id(),
            crate::outbox::random_u64()
        );
        let path = dir.join(&name);
        let temporary = dir.join(format!(".{name}.new"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        let made = (|| {
            file.try_lock().map_err(std::io::Error::other)?;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            // The counter follows a file shared since it was made (by its
            // owner: another's is left as it is).
            let _ = std::fs::set_permissions(
                dir.join(peers::GENERATION),
                std::fs::Permissions::from_mode(mode),
            );
            allocate(&file, size)?;
            // SAFETY: the file is this process's own (created above, locked,
            // not yet visible under a journal's name); nothing else maps it.
            let mut map = unsafe { MmapMut::map_mut(&file)? };
            map[..8].copy_from_slice(MAGIC);
            std::fs::rename(&temporary, &path)?;
            Ok(map)
        })();
        let map = match made {
            Ok(map) => map,
            Err(err) => {
                let _ = std::fs::remove_file(&temporary);
                return Err(err);
            }
        };
        Ok(Self {
            path,
            _file: file,
            map,
            ring: size - HEADER,
            head: 0,
            tail: 0,
            queued: VecDeque::new(),
        })
    }

    /// Writes one record at `tail` (wrapping first if it would cross the
    /// ring's end) and returns the position past it; `tail` is not yet
    /// stored in the header.
    fn put(&mut self, payload: &Payload<'_>) -> u64 {
        let (size, len) = (payload.len(), record_len(payload.len()));
        let offset = self.tail % self.ring;
        if offset + len > self.ring {
            let at = (HEADER + offset) as usize;
            self.map[at..at + 4].copy_from_slice(&WRAP.to_le_bytes());
            self.tail += self.ring - offset;
        }
        let at = (HEADER + self.tail % self.ring) as usize;
        let body = &mut self.map[at + 8..at + 8 + size];
        payload.write(body);
        let crc = crc32fast::hash(body);
        self.map[at..at + 4].copy_from_slice(&(size as u32).to_le_bytes());
        self.map[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        self.tail += len;
        self.tail
    }

    /// Stores `head` or `tail` in the header, where other caches read it
    /// (see [`peers`]).
    fn store_position(&mut self, at: usize, position: u64) {
        // SAFETY: `at` is 8 or 16 of a page-aligned mapping of the header;
        // every reader loads the word atomically.
        let word = unsafe { &*(self.map.as_ptr().add(at) as *const AtomicU64) };
        word.store(position.to_le(), Ordering::Release);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.queued.is_empty() && self.head == self.tail && !self.path.as_os_str().is_empty() {
            // Everything was committed: nothing to replay.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The permissions of the journals of the L2 file at `file`: its own (read
/// and write bits), so that whoever may read the file may read what waits
/// to reach it (see [`peers`]); `0o600` if it cannot be read.
pub(super) fn shared_mode(file: &Path) -> u32 {
    std::fs::metadata(file).map_or(0o600, |m| m.permissions().mode() & 0o666)
}

/// Allocates `len` bytes of `file` on disk.
fn allocate(file: &File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor, and plain integers.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    match rc {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

impl SqliteTier {
    /// A write-behind write's fast path: `rows`, with their outbox rows,
    /// go to this process's journal (see the module docs); commits them
    /// directly when the journal cannot take them. Returns whether the
    /// outbox's worker should be woken: the journal was empty (a worker
    /// that finds it still holding records after a pass goes on at once),
    /// or the rows were committed. `appended` runs once they are in the
    /// journal, under its lock (see [`Journal::append`]): not when they
    /// were committed directly.
    pub(crate) fn write_behind(
        &self,
        mut rows: Vec<(Row, Behind)>,
        appended: &mut dyn FnMut(),
    ) -> Result<bool> {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(Error::closed());
            }
            let appended = {
                let _gate = self.enter()?;
                self.check_writable()?;
                self.journal_room(&rows)?;
                self.journal.append(rows, appended)
            };
            rows = match appended {
                Appended::Done(first) => return Ok(first),
                Appended::Full(rows) => {
                    self.drain(false)?;
                    rows
                }
                Appended::Direct(rows) => {
                    let writes = rows
                        .into_iter()
                        .map(|(row, behind)| Write::PutBehind(row, behind))
                        .collect();
                    return self.write(writes).map(|_| true);
                }
            };
        }
    }

    /// Refuses `rows` with [`ErrorKind::Storage`](crate::ErrorKind::Storage)
    /// when the file could not take them and what the journal holds while
    /// leaving its reserve (see [`super::space`]): a drain is never refused
    /// for space, so a write is refused when it is journaled. Free space is
    /// measured once per [`ROOM_GRANT`] bytes journaled, for that many.
    fn journal_room(&self, rows: &[(Row, Behind)]) -> Result<()> {
        let size: u64 = rows.iter().map(|(row, _)| row.size()).sum();
        if self.journal.room.fetch_sub(size as i64, Ordering::Relaxed) >= size as i64 {
            return Ok(());
        }
        let held = {
            let ring = self.journal.ring.lock();
            ring.as_ref().map_or(0, |r| r.tail - r.head)
        };
        // A row and its outbox row each hold the value.
        self.ensure_room_for(2 * (held + size + ROOM_GRANT))?;
        self.journal
            .room
            .store(ROOM_GRANT as i64, Ordering::Relaxed);
        Ok(())
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
        let _draining = self.journal.draining.lock();
        // Taken out of the queue (still counted as queued until committed).
        let taken: Vec<Queued> = match self.journal.ring.lock().as_mut() {
            Some(ring) => ring.queued.drain(..).collect(),
            None => Vec::new(),
        };
        if let Some(end) = taken.last().map(|q| q.end) {
            let count = taken.len();
            let orders: Vec<u64> = taken.iter().map(|q| q.order).collect();
            let writes = taken
                .into_iter()
                .map(|q| Write::Replay(q.row, q.behind, q.order, Replayed::Own))
                .collect();
            let committed = self.write_settled(writes);
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
            self.journal.queued.fetch_sub(count, Ordering::Release);
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
#[cfg(test)]
mod tests;
