//! Disk space: the cache never wedges the disk it fills.
//!
//! SQLite needs space to delete: a delete writes pages to the WAL, and a
//! checkpoint copies WAL pages into the file, which grows for pages that
//! are new. On a disk the cache filled to the last block, deleting,
//! clearing and evicting would all fail. So:
//!
//! - A write that stores values is refused with [`ErrorKind::Storage`]
//!   ("disk full") when it would leave less than [`DISK_RESERVE`] free on
//!   the file system. Below [`CHECKPOINT_BELOW`] free, the WAL is first
//!   checkpointed, so that what is measured is what the file needs, and so
//!   that the next transaction reuses the WAL's blocks instead of adding
//!   more. Deletes, `clear` and eviction are never refused: they run in the
//!   reserve. Nothing already stored is touched by a refused write.
//! - The WAL is bounded: `journal_size_limit` = [`WAL_SIZE_LIMIT`] truncates
//!   it to that size whenever it restarts, whatever one large transaction
//!   made of it.
//! - Eviction deletes at most [`EVICT_CHUNK`] rows per transaction, with a
//!   checkpoint between, so that its WAL stays small; after a large
//!   eviction or purge the WAL is checkpointed with `TRUNCATE`.
//! - `clear` gives the space back to the file system: new files use
//!   `auto_vacuum = INCREMENTAL`, and `clear` runs `incremental_vacuum` and a
//!   `TRUNCATE` checkpoint, leaving a file of a few pages and an empty WAL.
//!   A file created before (without auto-vacuum) is rebuilt by `VACUUM` on
//!   `clear` instead, which also switches it to incremental auto-vacuum;
//!   until then it keeps its size (SQLite reuses its free pages).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::wal::CHECKPOINT_PAGES_INLINE;
use super::{BUSY_TIMEOUT, SqliteTier, Write};
use crate::error::{Error, ErrorKind, Result};

/// Free space a write must leave on the file system: what deletes, `clear`
/// and eviction need to run on a disk the cache filled.
pub const DISK_RESERVE: u64 = 1 << 20;

/// Below this much free space a write first checkpoints the WAL.
pub const CHECKPOINT_BELOW: u64 = 16 << 20;

/// `journal_size_limit`: the WAL is truncated to at most this many bytes
/// when it restarts. It is the size the WAL reaches under steady writes
/// before a commit checkpoints it ([`CHECKPOINT_PAGES_INLINE`] frames of
/// 4 KiB pages, about 33 MB): steady writes then reuse the WAL's blocks
/// instead of allocating them again after every restart, which took a
/// third of a single-key `set`'s time on ext4.
pub const WAL_SIZE_LIMIT: u64 = 32 + CHECKPOINT_PAGES_INLINE as u64 * (4096 + 24);

/// Rows evicted per transaction.
pub(super) const EVICT_CHUNK: u64 = 256;

/// Rows removed by one maintenance pass past which the WAL is checkpointed
/// with `TRUNCATE`.
pub(super) const LARGE_REMOVAL: u64 = 1024;

/// How long a `TRUNCATE` checkpoint waits for readers of older snapshots
/// before leaving the WAL for `journal_size_limit` to trim.
const TRUNCATE_WAIT: Duration = Duration::from_millis(200);

/// Bytes a write may take on disk beyond its rows: index and meta pages.
const WRITE_OVERHEAD: u64 = 64 << 10;

impl SqliteTier {
    /// Refuses `writes` if storing them would leave less than
    /// [`DISK_RESERVE`] free (see the module docs). A write-behind put
    /// counts twice (its row and its outbox row hold the value). A
    /// journal's writes are not counted here: their room was checked when
    /// they were journaled.
    pub(super) fn ensure_room(&self, writes: &[Write]) -> Result<()> {
        self.ensure_room_for(stored(writes))
    }

    /// Whether [`SqliteTier::ensure_room`] would let `writes` through at
    /// once, without a checkpoint first.
    pub(super) fn room_at_once(&self, writes: &[Write]) -> bool {
        self.room_at_once_for(stored(writes))
    }

    /// Whether `stored` bytes of rows fit without a checkpoint first.
    pub(super) fn room_at_once_for(&self, stored: u64) -> bool {
        self.short_of_room(stored).is_none()
    }

    /// The bytes free when storing `stored` bytes of rows would first need
    /// a checkpoint; `None` when they fit as things are (or free space
    /// cannot be measured: SQLite then finds out).
    fn short_of_room(&self, stored: u64) -> Option<u64> {
        if stored == 0 {
            return None;
        }
        let free = free_space(&self.path).ok()?;
        (free < needed(stored) + CHECKPOINT_BELOW).then_some(free)
    }

    /// Refuses to store `stored` bytes of rows if that would leave less
    /// than [`DISK_RESERVE`] free.
    pub(super) fn ensure_room_for(&self, stored: u64) -> Result<()> {
        let Some(free) = self.short_of_room(stored) else {
            return Ok(());
        };
        self.checkpoint()?;
        let free = free_space(&self.path).unwrap_or(free);
        if free >= needed(stored) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Storage,
            format!(
                "disk full: {free} bytes free on the file system of {}, and a write must \
                 leave {DISK_RESERVE} for deletes, clear and eviction; nothing was stored \
                 (delete entries, lower sqlite.max_bytes or free space on the disk)",
                self.path.display()
            ),
        ))
    }

    /// After every row was deleted: gives the file's free pages back to the
    /// file system and empties the WAL.
    pub(super) fn reclaim(&self, conn: &Connection) -> Result<()> {
        let auto_vacuum: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
        match auto_vacuum {
            // INCREMENTAL: the free pages are cut off the end of the file,
            // one per result row, so every row is stepped through.
            2 => {
                let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
            }
            // NONE (a file from before): rebuilt, and switched to INCREMENTAL
            // (the pragma on an existing file takes effect at the next
            // VACUUM). Little is left to copy once every row is gone.
            _ => conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM")?,
        }
        self.checkpoint_truncate(conn)
    }

    /// Copies the whole WAL into the file and truncates the WAL to zero
    /// bytes, waiting at most [`TRUNCATE_WAIT`] for readers of older
    /// snapshots; if they outlast it, the WAL is left for
    /// `journal_size_limit` to trim. `conn` is the writer.
    ///
    /// Waits for a background checkpoint of this process first: SQLite
    /// refuses a second checkpointer at once, without a busy wait.
    pub(super) fn checkpoint_truncate(&self, conn: &Connection) -> Result<()> {
        let _one = self.checkpointing.lock();
        conn.busy_timeout(TRUNCATE_WAIT)?;
        let done = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        conn.busy_timeout(BUSY_TIMEOUT)?;
        match done {
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => Ok(()),
            done => Ok(done?),
        }
    }
}

/// Bytes of rows `writes` store (see [`SqliteTier::ensure_room`]).
fn stored(writes: &[Write]) -> u64 {
    writes
        .iter()
        .map(|w| match w {
            Write::Put(row) | Write::Copy(row) => row.size(),
            Write::PutBehind(row, _) => 2 * row.size(),
            Write::Delete(_) | Write::DeleteBehind(..) | Write::Replay(..) => 0,
        })
        .sum()
}

/// Free bytes a write storing `stored` bytes of rows must find: its rows
/// once in the WAL and once in the file after the checkpoint, their other
/// pages, and [`DISK_RESERVE`].
fn needed(stored: u64) -> u64 {
    DISK_RESERVE + 2 * stored + WRITE_OVERHEAD
}

/// Bytes available to this process on the file system holding `path`.
fn free_space(path: &Path) -> std::io::Result<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs is plain data; zeroes are a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid, writable struct.
    match unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } {
        0 => Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64)),
        _ => Err(std::io::Error::last_os_error()),
    }
}
