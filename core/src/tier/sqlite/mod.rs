//! L2: one SQLite file shared by every process on the host.
//!
//! - WAL journal, `synchronous = NORMAL`: readers never wait for the writer,
//!   and a commit survives a process crash (an OS crash may lose the last
//!   commits, never corrupt the file).
//! - Point reads run on pooled reader connections with prepared statements,
//!   on the calling thread.
//! - Writes are grouped: callers queue their batch, and whoever holds the
//!   writer connection commits every queued batch in one `IMMEDIATE`
//!   transaction (group commit). Other processes are serialised by SQLite's
//!   write lock with a busy timeout of [`BUSY_TIMEOUT`].
//! - The bytes and rows held are kept in a `meta` row updated in the same
//!   transaction as every write, so every process sees one exact total.
//! - Reads record their access in memory; [`SqliteTier::maintain`] writes the
//!   batch in one transaction, evicts the least recently used rows when the
//!   total is over budget, and purges rows past their stale-until time.
//!   Uses above this tier (L1 hits, sampled) are recorded without a lock
//!   or an allocation, by row id (see [`SqliteTier::touch`]).
//! - The file is created with mode 0600 (SQLite gives its `-wal` and `-shm`
//!   files the same mode), carries `application_id` [`APPLICATION_ID`](schema::APPLICATION_ID) and a
//!   schema version in `user_version`, migrated forward on open. A file that
//!   is not a tierstack cache, or is from a newer version, is refused and
//!   left untouched.
//! - A file this process may read but not write is opened read-only (see
//!   [`file`]): reads are served, writes fail with
//!   [`ErrorKind::ReadOnly`](crate::ErrorKind::ReadOnly), and reads are not
//!   recorded for eviction, which needs writing.
//! - A file deleted or replaced on disk is noticed by the next write (and by
//!   reads within [`FILE_CHECK_INTERVAL`]) and the file at the path is opened
//!   instead, created if missing (see [`recovery`]).
//! - The cache never wedges the disk it fills: writes leave
//!   [`DISK_RESERVE`] free for deletes, `clear` and eviction, the WAL is
//!   bounded, and `clear` gives the space back (see [`space`]).
//!
//! This file holds the tier's state, and opens and closes it. Each job has
//! its own file: the schema and its migrations ([`schema`]), the reader
//! pool ([`reader`]), group commit ([`writer`]), the reads held to write
//! ([`access`]), access tracking and eviction ([`maintenance`]), checkpoints off the write path ([`wal`]),
//! the journal of `set`s ([`journal`]),
//! fork safety ([`fork`]), the change-log watch
//! ([`watch`]) and what the Redis backplane keeps in the file
//! ([`backplane`]), besides those named above.

mod access;
mod backplane;
mod damage;
mod file;
mod fork;
mod journal;
mod lease;
mod limits;
mod maintenance;
mod mutex;
mod outbox;
mod reader;
mod recovery;
mod row;
mod schema;
mod space;
mod wal;
mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::Notify;

use crate::coherence::{self, Watch};
use crate::config::OnCorrupt;
use crate::error::{Error, Result};
use crate::stats::Counters;
use access::Access;
pub use damage::{Integrity, check};
use file::{FileId, Mode, connect, prepare_file};
pub use journal::JOURNAL_BYTES;
pub(crate) use journal::{JOURNAL_LINGER, Journaled};
pub(crate) use lease::Lease;
pub(crate) use limits::LimitUpdate;
use maintenance::HOT_SLOTS;
pub(crate) use outbox::{Attempt, Depth};
pub(crate) use outbox::{Behind, WriteId};
pub use outbox::{OutboxOp, Pending};
pub(crate) use reader::Found;
pub use reader::Inspection;
pub use recovery::FILE_CHECK_INTERVAL;
pub use row::ROW_OVERHEAD;
pub(crate) use row::{Row, Write, row_size};
pub use schema::SCHEMA_VERSION;
pub use space::{CHECKPOINT_BELOW, DISK_RESERVE, WAL_SIZE_LIMIT};
pub(crate) use wal::Wakeup;
pub use wal::{CHECKPOINT_PAGES, CHECKPOINT_PAGES_INLINE};
use writer::Submission;
pub(crate) use writer::{Outcome, Tried};

/// How long a write waits for another process's write transaction.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The file the connections are on, and how it is open. Locked only
/// inside [`SqliteTier::enter`], so a forked child never finds it held.
struct Current {
    id: FileId,
    mode: Mode,
    read_only_because: Option<String>,
}

pub(crate) struct SqliteTier {
    path: PathBuf,
    max_bytes: u64,
    current: Mutex<Current>,
    /// Whether the file is open read-only: writes are refused without a lock.
    read_only: AtomicBool,
    /// Incremented on every swap of the file (see [`recovery`]).
    epoch: AtomicU64,
    started: Instant,
    /// When reads last checked the file's identity, in ms since `started`.
    checked_ms: AtomicU64,
    writer: Mutex<Option<Connection>>,
    /// Held while a checkpoint runs: a second one waits for it rather
    /// than finding the WAL busy (so that `close` returns after the copy).
    checkpointing: Mutex<()>,
    queue: Mutex<Vec<Submission>>,
    /// The reader connections (see [`reader::Pool`]).
    readers: Mutex<reader::Pool>,
    access: Mutex<Access>,
    /// See [`SqliteTier::counting`].
    counting: Mutex<()>,
    /// Rows used above this tier, one slot per row id modulo the slot
    /// count (0: empty); see [`SqliteTier::touch`].
    hot: Box<[AtomicI64]>,
    closed: AtomicBool,
    total_bytes: AtomicU64,
    entry_count: AtomicU64,
    last_purge_ms: AtomicU64,
    on_corrupt: OnCorrupt,
    /// What wakes the maintenance task, also from the writer's commit hook
    /// (see [`wal`]).
    wakeup: Arc<Wakeup>,
    counters: Arc<Counters>,
    /// The fork generation (see [`crate::fork`]) the connections belong to.
    generation: AtomicU64,
    resetting: AtomicBool,
    after_fork: OnceLock<Box<dyn Fn(Arc<Notify>) + Send + Sync>>,
    /// Tells this cache's rows in the change log from other caches'; drawn
    /// again in a forked child.
    origin: AtomicI64,
    /// This cache's view of the change log; opened on the first poll.
    /// With the epoch of the file it watches (see [`recovery`]).
    watch: Mutex<Option<(u64, Watch)>>,
    /// This process's journal of `set`s (see [`journal`]).
    journal: journal::Journal,
    /// How a value read from the file is copied out of SQLite's buffer:
    /// with [`crate::value::copy`] when an L1 above keeps it (another
    /// thread may free it), else into a block of the caller's allocator,
    /// whose thread alone holds it (see [`SqliteTier::below_memory`]).
    copy_value: fn(&[u8]) -> bytes::Bytes,
}

impl SqliteTier {
    /// The tier, below an L1 (`memory`) or not: values read for an L1 are
    /// copied into [`crate::value::copy`]'s blocks, which any thread frees
    /// without waiting on the reading thread's allocator; without one, a
    /// value read goes to the caller alone, and a block of the process's
    /// allocator costs one allocation fewer.
    pub(crate) fn below_memory(mut self, memory: bool) -> Self {
        self.copy_value = match memory {
            true => crate::value::copy,
            false => bytes::Bytes::copy_from_slice,
        };
        self
    }

    /// Opens (creating if needed) the cache file at `path`.
    pub(crate) fn open(
        path: &Path,
        max_bytes: u64,
        on_corrupt: OnCorrupt,
        counters: Arc<Counters>,
    ) -> Result<Self> {
        crate::fork::watch_forks();
        let gate = crate::fork::fork_gate();
        let mut opened = file::open(path, on_corrupt)?;
        let writer = opened.writer.take();
        let (id, mode) = (opened.id, opened.mode);
        let read_only_because = opened.read_only_because.clone();
        let read_only = mode != Mode::ReadWrite;
        if let Some(because) = &read_only_because {
            tracing::warn!(
                path = %path.display(),
                because,
                "the cache file is read-only: reads are served, writes are refused"
            );
        }
        let tier = Self {
            path: path.to_owned(),
            max_bytes,
            current: Mutex::new(Current {
                id,
                mode,
                read_only_because,
            }),
            read_only: AtomicBool::new(read_only),
            epoch: AtomicU64::new(0),
            started: Instant::now(),
            checked_ms: AtomicU64::new(0),
            writer: Mutex::new(None),
            checkpointing: Mutex::new(()),
            queue: Mutex::new(Vec::new()),
            readers: Mutex::new(reader::Pool::default()),
            access: Mutex::new(Access::default()),
            counting: Mutex::new(()),
            hot: (0..HOT_SLOTS).map(|_| AtomicI64::new(0)).collect(),
            closed: AtomicBool::new(false),
            total_bytes: AtomicU64::new(0),
            entry_count: AtomicU64::new(0),
            last_purge_ms: AtomicU64::new(0),
            on_corrupt,
            wakeup: Arc::new(Wakeup::new()),
            counters,
            generation: AtomicU64::new(crate::fork::fork_generation()),
            resetting: AtomicBool::new(false),
            after_fork: OnceLock::new(),
            origin: AtomicI64::new(coherence::new_origin()),
            watch: Mutex::new(None),
            journal: journal::Journal::new(path),
            copy_value: bytes::Bytes::copy_from_slice,
        };
        tier.note_set_aside(&opened);
        match writer {
            Some(mut writer) => {
                tier.refresh_totals(&writer)?;
                wal::watch_wal(&mut writer, &tier.wakeup)?;
                *tier.writer.lock() = Some(writer);
            }
            None => tier.read(|conn| tier.refresh_totals(conn))?,
        }
        if !read_only {
            // What a process that ended left in its journal; a failure
            // leaves it for the next opener.
            drop(gate);
            if let Err(err) = tier.replay_orphans() {
                tracing::warn!(path = %path.display(), error = %err,
                    "could not replay a journal left by a process that ended");
            }
        }
        Ok(tier)
    }

    /// A new reader connection on the current file.
    fn connect(&self) -> Result<Connection> {
        let mode = self.current.lock().mode;
        connect(&self.path, mode)
    }

    /// A new writer connection on the current file; `None` when it is read-only.
    fn open_writer(&self) -> Result<Option<Connection>> {
        match self.current.lock().mode {
            Mode::ReadWrite => {
                let mut conn = prepare_file(&self.path)?;
                wal::watch_wal(&mut conn, &self.wakeup)?;
                Ok(Some(conn))
            }
            Mode::ReadOnly { .. } => Ok(None),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Wakes the maintenance task before its next tick: the budget is
    /// exceeded, many reads are waiting to be recorded, or the WAL is due
    /// for a checkpoint (see [`Wakeup::take`]).
    pub(crate) fn wakeup(&self) -> &Arc<Wakeup> {
        &self.wakeup
    }

    /// Bytes held, as of this process's last write or maintenance pass.
    pub(crate) fn bytes(&self) -> u64 {
        self.total_bytes.load(Ordering::Relaxed)
    }

    /// Rows held, as of this process's last write or maintenance pass.
    pub(crate) fn entries(&self) -> u64 {
        self.entry_count.load(Ordering::Relaxed)
    }

    /// Flushes buffered accesses, waits for the reads in flight, copies
    /// the WAL back into the file and closes every connection. Later calls
    /// fail with [`ErrorKind::Closed`](crate::ErrorKind::Closed).
    ///
    /// When it returns, this process holds no connection to the file: a
    /// read that was in flight on another thread (a host's `get`, the
    /// maintenance task's checkpoint) has finished and closed its
    /// connection. The closed file holds what was written, for a copy of
    /// the file alone; with no other process on it, the last close also
    /// removes the WAL. The copy is passive and the WAL is short (the
    /// background keeps it near [`CHECKPOINT_PAGES`]), so the next open
    /// has little WAL to read.
    pub(crate) fn close(&self, now_ms: u64) -> Result<()> {
        // The journal's writes go to the file; if they cannot, the journal
        // stays for the next process to open it.
        let drained = match self.closed.load(Ordering::Acquire) {
            true => Ok(()),
            false => self.drain(true),
        };
        let _gate = self.enter()?;
        let flushed = if self.writer.lock().is_some() {
            self.maintain(now_ms, false).map(|_| ())
        } else {
            Ok(())
        };
        self.closed.store(true, Ordering::Release);
        // A read that takes a connection from now on finds `closed` (both
        // under the pool's lock); one that took it before closes it when done.
        while !self.readers.lock().close() {
            std::thread::sleep(Duration::from_millis(1));
        }
        *self.watch.lock() = None;
        // After the readers: a reader's snapshot holds a passive copy back.
        let flushed = flushed.and_then(|_| self.checkpoint_on_writer());
        let writer = self.writer.lock().take();
        if let Some(conn) = writer {
            conn.close().map_err(|(_, e)| Error::from(e))?;
        }
        drained.and(flushed)
    }
}
