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
//!   files the same mode), carries `application_id` [`APPLICATION_ID`] and a
//!   schema version in `user_version`, migrated forward on open. A file that
//!   is not a tierstack cache, or is from a newer version, is refused and
//!   left untouched.
//! - A file this process may read but not write is opened read-only (see
//!   [`file`]): reads are served, writes fail with [`ErrorKind::ReadOnly`],
//!   and reads are not recorded for eviction, which needs writing.
//! - A file deleted or replaced on disk is noticed by the next write (and by
//!   reads within [`FILE_CHECK_INTERVAL`]) and the file at the path is opened
//!   instead, created if missing (see [`recovery`]).
//! - The cache never wedges the disk it fills: writes leave
//!   [`DISK_RESERVE`] free for deletes, `clear` and eviction, the WAL is
//!   bounded, and `clear` gives the space back (see [`space`]).

mod damage;
mod file;
mod lease;
mod limits;
mod outbox;
mod recovery;
mod space;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::Notify;

use crate::coherence::{self, ChangeLog, Changes, Watch};
use crate::config::OnCorrupt;
use crate::entry::{Entry, Metadata};
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::{self, unlock_abandoned};
use crate::stats::Counters;
pub use damage::{Integrity, check};
use file::{FileId, Mode, connect, prepare_file};
pub(crate) use lease::Lease;
pub(crate) use limits::LimitUpdate;
pub(crate) use outbox::{Attempt, Depth};
pub use outbox::{OutboxOp, Pending};
pub use recovery::FILE_CHECK_INTERVAL;
pub use space::{CHECKPOINT_BELOW, DISK_RESERVE, WAL_SIZE_LIMIT};
use space::{EVICT_CHUNK, LARGE_REMOVAL, checkpoint_truncate};

/// Bytes charged per row on top of its key and value: the row's integer
/// columns, its slots in the key and recency indexes, and page slack.
pub const ROW_OVERHEAD: u64 = 64;

/// The schema this version writes; files with a lower version are migrated.
pub const SCHEMA_VERSION: i64 = 6;

/// `PRAGMA application_id` of a tierstack file ("TSTK").
pub const APPLICATION_ID: i64 = 0x5453_544B;

/// How long a write waits for another process's write transaction.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// After eviction the total is at most this share of the budget, so that
/// eviction runs in batches rather than on every write.
const EVICT_LOW_WATER: f64 = 0.9;

/// Rows past their stale-until time are purged at most this often.
const PURGE_EVERY_MS: u64 = 10 * 60 * 1000;

/// Rows with reads held in memory (a count and the latest time per row)
/// before a maintenance pass is asked for; past [`ACCESS_CAP`] rows, reads
/// of further rows are not recorded until the next pass.
const ACCESS_FLUSH_AT: usize = 16_384;
const ACCESS_CAP: usize = 262_144;

const READERS_KEPT: usize = 8;

/// Schema migrations; `MIGRATIONS[i]` takes a file from version `i` to `i + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    "
    CREATE TABLE entries (
        id             INTEGER PRIMARY KEY,
        key            TEXT    NOT NULL UNIQUE,
        created_ms     INTEGER NOT NULL,
        expires_ms     INTEGER NOT NULL,
        stale_until_ms INTEGER NOT NULL,
        size           INTEGER NOT NULL,
        access_count   INTEGER NOT NULL DEFAULT 0,
        last_access_ms INTEGER NOT NULL,
        etag           TEXT,
        tags           TEXT,
        value          BLOB    NOT NULL
    );
    CREATE INDEX entries_by_last_access ON entries (last_access_ms);
    CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO meta (name, value) VALUES ('total_bytes', 0), ('entry_count', 0);
",
    coherence::MIGRATION,
    lease::MIGRATION,
    limits::MIGRATION,
    // When the key was first written: kept when a write replaces the row
    // (`created_ms` is the latest write). NULL in rows from before: their
    // `created_ms` stands in.
    "ALTER TABLE entries ADD COLUMN first_ms INTEGER;",
    outbox::MIGRATION,
];

const SQL_GET: &str = "SELECT id, created_ms, expires_ms, value, stale_until_ms, etag, \
     coalesce(first_ms, created_ms) FROM entries WHERE key = ?1";
const SQL_GET_MANY: &str = "SELECT id, created_ms, expires_ms, value, stale_until_ms, etag, \
     coalesce(first_ms, created_ms), key \
     FROM entries \
     WHERE key IN (SELECT value FROM json_each(?1))";
const SQL_SIZE_OF: &str = "SELECT size FROM entries WHERE key = ?1";
const SQL_CREATED_OF: &str = "SELECT created_ms FROM entries WHERE key = ?1";
/// A write keeps the row (its id), when the key was first written and how
/// often it was read; everything else is the new value's.
const SQL_UPSERT: &str = "INSERT INTO entries \
     (key, created_ms, expires_ms, stale_until_ms, size, access_count, last_access_ms, tags, value, etag, first_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, 0, ?2, ?6, ?7, ?8, ?2) \
     ON CONFLICT (key) DO UPDATE SET created_ms = excluded.created_ms, \
     expires_ms = excluded.expires_ms, stale_until_ms = excluded.stale_until_ms, \
     size = excluded.size, last_access_ms = excluded.last_access_ms, \
     etag = excluded.etag, tags = excluded.tags, value = excluded.value, \
     first_ms = coalesce(entries.first_ms, entries.created_ms) RETURNING id";
const SQL_DELETE: &str = "DELETE FROM entries WHERE key = ?1 RETURNING size, expires_ms, id";
const SQL_DELETE_TAGGED: &str = "DELETE FROM entries WHERE tags IS NOT NULL \
     AND EXISTS (SELECT 1 FROM json_each(entries.tags) WHERE json_each.value = ?1) \
     RETURNING key, size, expires_ms, id";
const SQL_ADD_META: &str = "UPDATE meta SET value = value + ?2 WHERE name = ?1 RETURNING value";
/// The row written last: the latest change in the log whose key still has a
/// row (a put; a later delete or put of the key would be a later change).
/// `CROSS JOIN` keeps the log outside: it is walked from its head, each key
/// looked up by the unique index, and the walk stops at the first row.
const SQL_WRITTEN_LAST: &str = "SELECT entries.id, entries.size FROM changes \
     CROSS JOIN entries ON entries.key = changes.key ORDER BY changes.seq DESC LIMIT 1";
const SQL_TOUCH: &str = "UPDATE entries SET last_access_ms = max(last_access_ms, ?2), \
     access_count = access_count + ?3 WHERE id = ?1";
const SQL_TOUCH_ROW: &str =
    "UPDATE entries SET last_access_ms = max(last_access_ms, ?2) WHERE id = ?1";

/// Slots of [`SqliteTier::touch`]'s record of rows used above this tier; a
/// power of two.
const HOT_SLOTS: usize = 4096;

/// Reads waiting to be written: per row, the latest time and how many.
#[derive(Default)]
struct Access {
    /// Reads served by this tier, by row id.
    by_id: HashMap<i64, (u64, i64)>,
}

impl Access {
    fn rows(&self) -> usize {
        self.by_id.len()
    }
}

/// What an L2 file holds, from [`crate::Cache::inspect`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inspection {
    /// The file.
    pub path: PathBuf,
    /// Rows, fresh or expired.
    pub entries: u64,
    /// Bytes charged against the budget.
    pub bytes: u64,
    /// The budget.
    pub max_bytes: u64,
    /// Rows past their expiry (kept until their stale-until time).
    pub expired: u64,
    /// Creation time of the oldest row, in milliseconds since the Unix epoch.
    pub oldest_ms: Option<u64>,
    /// Creation time of the newest row, in milliseconds since the Unix epoch.
    pub newest_ms: Option<u64>,
    /// Size of the database file itself (the WAL not included).
    pub file_bytes: u64,
    /// Whether the file is open read-only (this process may not write it).
    pub read_only: bool,
}

/// A row to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) key: String,
    pub(crate) value: Bytes,
    pub(crate) created_ms: u64,
    pub(crate) expires_ms: u64,
    pub(crate) stale_until_ms: u64,
    pub(crate) tags: Vec<String>,
    /// The source's validator (ETag), for conditional refreshes.
    pub(crate) etag: Option<String>,
}

impl Row {
    pub(crate) fn size(&self) -> u64 {
        row_size(&self.key, self.value.len())
    }
}

pub(crate) fn row_size(key: &str, value_len: usize) -> u64 {
    key.len() as u64 + value_len as u64 + ROW_OVERHEAD
}

/// A row read back.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) value: Bytes,
    pub(crate) created_ms: u64,
    /// When the key was first written (see [`Metadata::first_written_ms`]).
    pub(crate) first_ms: u64,
    pub(crate) expires_ms: u64,
    /// Until when the row may be served as a stale copy.
    pub(crate) stale_until_ms: u64,
    /// The source's validator stored with it.
    pub(crate) etag: Option<String>,
    /// The row's id, for [`SqliteTier::touch`].
    pub(crate) row: i64,
}

/// One write in a batch.
#[derive(Debug)]
pub(crate) enum Write {
    Put(Row),
    /// A copy of a value read from a tier shared with other hosts (Redis):
    /// stored unless the file holds a write of the key made since (created
    /// at or after it), which a process on the file made while the copy was
    /// read. Its outcome's `row` is `None` when it was not stored.
    Copy(Row),
    Delete(String),
    /// A put whose write the source gets through the outbox (write-behind).
    PutBehind(Row, Behind),
    /// A delete whose removal the source gets through the outbox.
    DeleteBehind(String, Behind),
}

/// What the outbox row of a write-behind write carries besides the write.
#[derive(Debug, Clone)]
pub(crate) struct Behind {
    /// Names the write for the source, the same on every attempt.
    pub(crate) idempotency_key: String,
    /// When the write was made.
    pub(crate) now_ms: u64,
}

impl Write {
    fn behind(&self) -> Option<&Behind> {
        match self {
            Write::PutBehind(_, behind) | Write::DeleteBehind(_, behind) => Some(behind),
            Write::Put(_) | Write::Copy(_) | Write::Delete(_) => None,
        }
    }
}

/// What one write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Its number in the file's change log: writes to the file, by every
    /// process, are numbered in commit order.
    pub(crate) seq: u64,
    /// For a delete, the expiry of the removed row.
    pub(crate) removed_expires_ms: Option<u64>,
    /// For a put, the id of the row written, for [`SqliteTier::touch`].
    pub(crate) row: Option<i64>,
}

#[derive(Default)]
struct Slot(Mutex<Option<Result<Vec<Outcome>>>>);

struct Submission {
    writes: Vec<Write>,
    slot: Arc<Slot>,
}

/// What a maintenance pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Maintenance {
    pub(crate) touched: usize,
    pub(crate) evicted: u64,
    pub(crate) purged: u64,
}

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
    queue: Mutex<Vec<Submission>>,
    /// Idle reader connections, with the epoch of the file they are on.
    readers: Mutex<Vec<(u64, Connection)>>,
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
    /// Replaced in a forked child: the parent's holds the waker of the
    /// parent's maintenance task, whose runtime has no thread there.
    wake: Mutex<Arc<Notify>>,
    counters: Arc<Counters>,
    /// The fork generation (see [`crate::runtime`]) the connections belong to.
    generation: AtomicU64,
    resetting: AtomicBool,
    after_fork: OnceLock<Box<dyn Fn(Arc<Notify>) + Send + Sync>>,
    /// Tells this cache's rows in the change log from other caches'; drawn
    /// again in a forked child.
    origin: AtomicI64,
    /// This cache's view of the change log; opened on the first poll.
    /// With the epoch of the file it watches (see [`recovery`]).
    watch: Mutex<Option<(u64, Watch)>>,
}

impl SqliteTier {
    /// Opens (creating if needed) the cache file at `path`.
    pub(crate) fn open(
        path: &Path,
        max_bytes: u64,
        on_corrupt: OnCorrupt,
        counters: Arc<Counters>,
    ) -> Result<Self> {
        runtime::watch_forks();
        let _gate = runtime::fork_gate();
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
            queue: Mutex::new(Vec::new()),
            readers: Mutex::new(Vec::new()),
            access: Mutex::new(Access::default()),
            counting: Mutex::new(()),
            hot: (0..HOT_SLOTS).map(|_| AtomicI64::new(0)).collect(),
            closed: AtomicBool::new(false),
            total_bytes: AtomicU64::new(0),
            entry_count: AtomicU64::new(0),
            last_purge_ms: AtomicU64::new(0),
            on_corrupt,
            wake: Mutex::new(Arc::new(Notify::new())),
            counters,
            generation: AtomicU64::new(runtime::fork_generation()),
            resetting: AtomicBool::new(false),
            after_fork: OnceLock::new(),
            origin: AtomicI64::new(coherence::new_origin()),
            watch: Mutex::new(None),
        };
        tier.note_set_aside(&opened);
        match writer {
            Some(writer) => {
                tier.refresh_totals(&writer)?;
                *tier.writer.lock() = Some(writer);
            }
            None => tier.read(|conn| tier.refresh_totals(conn))?,
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
            Mode::ReadWrite => prepare_file(&self.path).map(Some),
            Mode::ReadOnly { .. } => Ok(None),
        }
    }

    /// `Err` of kind [`ErrorKind::ReadOnly`] when the file is open read-only.
    #[inline]
    fn check_writable(&self) -> Result<()> {
        if !self.read_only.load(Ordering::Acquire) {
            return Ok(());
        }
        let because = self.current.lock().read_only_because.clone();
        Err(Error::new(
            ErrorKind::ReadOnly,
            format!(
                "{} is read-only ({}): reads are served, writes are refused",
                self.path.display(),
                because.as_deref().unwrap_or("SQLite opened it read-only")
            ),
        ))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Notified when a maintenance pass is due before its next tick: the
    /// budget is exceeded or many reads are waiting to be recorded.
    pub(crate) fn wake(&self) -> Arc<Notify> {
        self.wake.lock().clone()
    }

    /// Sets what to run once in a forked child after its connections were
    /// replaced, with the child's new [`SqliteTier::wake`] (the engine
    /// restarts its maintenance there).
    pub(crate) fn on_fork(&self, f: impl Fn(Arc<Notify>) + Send + Sync + 'static) {
        // Set once, at open; a second call has nothing to replace.
        let _ = self.after_fork.set(Box::new(f));
    }

    /// Enters SQLite: holds `fork()` off until the guard drops and, in a
    /// process forked since the connections were opened, first replaces
    /// them (SQLite connections must not cross a `fork()`).
    #[inline]
    fn enter(&self) -> Result<runtime::ForkGate> {
        let gate = runtime::fork_gate();
        let generation = runtime::fork_generation();
        if self.generation.load(Ordering::Acquire) != generation {
            self.reset_after_fork(generation)?;
        }
        Ok(gate)
    }

    #[cold]
    fn reset_after_fork(&self, generation: u64) -> Result<()> {
        if self.resetting.swap(true, Ordering::AcqRel) {
            // Another thread of this child is resetting; wait for it.
            while self.generation.load(Ordering::Acquire) != generation {
                std::thread::yield_now();
            }
            return Ok(());
        }
        // SAFETY: only threads of this (child) process can hold these locks
        // from now on, and none has taken them yet: the connection locks are
        // reached through `enter`, which waits above while `resetting` is
        // set, and the read buffer only after it. A lock found held was
        // taken by a parent's thread that does not exist in this process
        // and will never release it.
        unsafe {
            unlock_abandoned(&self.current);
            unlock_abandoned(&self.writer);
            unlock_abandoned(&self.readers);
            unlock_abandoned(&self.queue);
            unlock_abandoned(&self.access);
            unlock_abandoned(&self.counting);
            unlock_abandoned(&self.watch);
            unlock_abandoned(&self.wake);
        }
        // Closing the inherited connections first lets the new ones take
        // their own locks: SQLite shares lock state between connections of
        // one process, and the parent's locks were not inherited. A close
        // checkpoints only if no other process holds the file open.
        drop(self.writer.lock().take());
        self.readers.lock().clear();
        self.queue.lock().clear();
        *self.access.lock() = Access::default();
        *self.watch.lock() = None;
        *self.wake.lock() = Arc::new(Notify::new());
        self.origin
            .store(coherence::new_origin(), Ordering::Relaxed);
        let reopened = match self.closed.load(Ordering::Acquire) {
            true => Ok(()),
            false => self.open_writer().map(|conn| *self.writer.lock() = conn),
        };
        self.generation.store(generation, Ordering::Release);
        self.resetting.store(false, Ordering::Release);
        if reopened.is_ok()
            && let Some(restart) = self.after_fork.get()
        {
            restart(self.wake());
        }
        reopened
    }

    /// Bytes held, as of this process's last write or maintenance pass.
    pub(crate) fn bytes(&self) -> u64 {
        self.total_bytes.load(Ordering::Relaxed)
    }

    /// Rows held, as of this process's last write or maintenance pass.
    pub(crate) fn entries(&self) -> u64 {
        self.entry_count.load(Ordering::Relaxed)
    }

    /// Runs `f` on a pooled reader connection; again on a fresh file if the
    /// file was found damaged and rebuilt (see [`recovery`]).
    fn read<R>(&self, f: impl Fn(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        let _gate = self.enter()?;
        self.check_file_every()?;
        match self.read_once(&f) {
            Err(err) => {
                self.recover_read(err)?;
                self.read_once(&f)
            }
            read => read,
        }
    }

    fn read_once<R>(&self, f: impl Fn(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        let pooled = self.readers.lock().pop();
        let (epoch, conn) = match pooled {
            Some(pooled) => pooled,
            None => (self.file_epoch(), self.connect()?),
        };
        let result = f(&conn).map_err(Error::from);
        let mut readers = self.readers.lock();
        if readers.len() < READERS_KEPT
            && !self.closed.load(Ordering::Acquire)
            && epoch == self.file_epoch()
        {
            readers.push((epoch, conn));
        }
        result
    }

    /// The row for `key`, fresh or not; records the access.
    pub(crate) fn get(&self, key: &str, now_ms: u64) -> Result<Option<Found>> {
        let found = self.read(|conn| {
            conn.prepare_cached(SQL_GET)?
                .query_row([key], found_from)
                .optional()
        })?;
        Ok(found.inspect(|found| self.record_access(&[found.row], now_ms)))
    }

    /// The rows for `keys` in one statement; records the accesses.
    pub(crate) fn get_many(&self, keys: &[&str], now_ms: u64) -> Result<HashMap<String, Found>> {
        let json = serde_json::to_string(keys).map_err(|e| {
            Error::new(ErrorKind::Internal, format!("encoding keys: {e}")).with_source(e)
        })?;
        let rows = self.read(|conn| {
            let mut stmt = conn.prepare_cached(SQL_GET_MANY)?;
            let rows = stmt.query_map([&json], |r| Ok((r.get::<_, String>(7)?, found_from(r)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let ids: Vec<i64> = rows.iter().map(|(_, found)| found.row).collect();
        self.record_access(&ids, now_ms);
        Ok(rows.into_iter().collect())
    }

    /// The whole stored entry for `key`, fresh or not, and its row id,
    /// without recording an access. Its read count includes the reads this
    /// process holds to write with the next pass; hold
    /// [`SqliteTier::counting`] for the count to be exact.
    pub(crate) fn entry(&self, key: &str) -> Result<Option<(Entry, i64)>> {
        let found = self.read(|conn| {
            conn.prepare_cached(
                "SELECT created_ms, expires_ms, stale_until_ms, size, access_count, \
                 last_access_ms, etag, tags, value, id, coalesce(first_ms, created_ms) \
                 FROM entries WHERE key = ?1",
            )?
            .query_row([key], |r| {
                let tags: Option<String> = r.get(7)?;
                let entry = Entry {
                    key: key.to_owned(),
                    value: Bytes::copy_from_slice(r.get_ref(8)?.as_blob()?),
                    meta: Metadata {
                        first_written_ms: r.get::<_, i64>(10)? as u64,
                        created_ms: r.get::<_, i64>(0)? as u64,
                        expires_ms: r.get::<_, i64>(1)? as u64,
                        stale_until_ms: r.get::<_, i64>(2)? as u64,
                        size: r.get::<_, i64>(3)? as u64,
                        access_count: r.get::<_, i64>(4)? as u64,
                        last_access_ms: r.get::<_, i64>(5)? as u64,
                        etag: r.get(6)?,
                        tags: tags
                            .and_then(|t| serde_json::from_str(&t).ok())
                            .unwrap_or_default(),
                    },
                };
                Ok((entry, r.get::<_, i64>(9)?))
            })
            .optional()
        })?;
        Ok(found.map(|(mut entry, row)| {
            if let Some(&(last, n)) = self.access.lock().by_id.get(&row) {
                entry.meta.access_count += n as u64;
                entry.meta.last_access_ms = entry.meta.last_access_ms.max(last);
            }
            (entry, row)
        }))
    }

    /// Drops the reads buffered for deleted row `id`: SQLite gives a
    /// deleted row's id to the next row inserted, which must not inherit them.
    fn forget_reads(&self, id: i64) {
        self.access.lock().by_id.remove(&id);
    }

    /// Held while reads move between the places they are counted in (L1,
    /// this tier's buffer, the file), so that [`SqliteTier::entry`] plus
    /// L1's count adds every read once.
    pub(crate) fn counting(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.counting.lock()
    }

    /// Records reads served above this tier by `(row, reads)`, counted
    /// up to `now_ms`, to be written with the next pass as this tier's own are.
    pub(crate) fn record_reads(&self, reads: &[(i64, u64)], now_ms: u64) {
        if reads.is_empty() || self.read_only.load(Ordering::Relaxed) {
            return;
        }
        let mut access = self.access.lock();
        for &(id, n) in reads {
            let (last, count) = access.by_id.entry(id).or_insert((now_ms, 0));
            *last = (*last).max(now_ms);
            *count += n as i64;
        }
    }

    /// Counts and bounds of what the file holds, read in one statement.
    pub(crate) fn inspect(&self, now_ms: u64) -> Result<Inspection> {
        let (entries, bytes, expired, oldest, newest) = self.read(|conn| {
            conn.query_row(
                "SELECT count(*), coalesce(sum(size), 0), coalesce(sum(expires_ms <= ?1), 0), \
                 min(created_ms), max(created_ms) FROM entries",
                [now_ms as i64],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                    ))
                },
            )
        })?;
        let file_bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        Ok(Inspection {
            path: self.path.clone(),
            entries: entries as u64,
            bytes: bytes as u64,
            max_bytes: self.max_bytes,
            expired: expired as u64,
            oldest_ms: oldest.map(|v| v as u64),
            newest_ms: newest.map(|v| v as u64),
            file_bytes,
            read_only: self.read_only.load(Ordering::Acquire),
        })
    }

    /// Whether `key` holds a fresh row; not recorded as an access.
    pub(crate) fn contains_fresh(&self, key: &str, now_ms: u64) -> Result<bool> {
        self.read(|conn| {
            conn.prepare_cached("SELECT 1 FROM entries WHERE key = ?1 AND expires_ms > ?2")?
                .exists(params![key, now_ms as i64])
        })
    }

    /// Fresh keys matching a SQLite `GLOB` pattern.
    pub(crate) fn fresh_keys(&self, sqlite_glob: &str, now_ms: u64) -> Result<Vec<String>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT key FROM entries WHERE key GLOB ?1 AND expires_ms > ?2")?;
            let keys = stmt.query_map(params![sqlite_glob, now_ms as i64], |r| r.get(0))?;
            keys.collect()
        })
    }

    fn record_access(&self, ids: &[i64], now_ms: u64) {
        // A read-only file cannot record reads; it is not evicted from here either.
        if ids.is_empty() || self.read_only.load(Ordering::Relaxed) {
            return;
        }
        let mut access = self.access.lock();
        let before = access.rows();
        for &id in ids {
            if before < ACCESS_CAP || access.by_id.contains_key(&id) {
                let (last, count) = access.by_id.entry(id).or_insert((now_ms, 0));
                *last = (*last).max(now_ms);
                *count += 1;
            }
        }
        if before < ACCESS_FLUSH_AT && access.rows() >= ACCESS_FLUSH_AT {
            self.wake.lock().notify_one();
        }
    }

    /// Records that row `row` (an id from [`Found::row`] or
    /// [`Outcome::row`]; 0: none) was used above this tier, by an L1 hit, so
    /// that it is not evicted as if unused. The next maintenance pass sets
    /// its last access to the pass's time (at most a pass late) and leaves
    /// `access_count` alone: that counts the reads this tier served.
    ///
    /// On the L1 hit path (for one hit in [`crate::TIME_SAMPLE_EVERY`]):
    /// one relaxed store into a fixed slot array, so no lock, no allocation
    /// and no SQLite, and nothing to wait for (not even a `fork()` under way
    /// in another thread). A row whose slot another row took since is not
    /// recorded this pass; a hot row comes back. An id reused by a newer
    /// row after a delete refreshes that row: harmless. Nothing is recorded
    /// on a read-only file, where eviction cannot run.
    #[inline]
    pub(crate) fn touch(&self, row: i64) {
        if row != 0 && !self.read_only.load(Ordering::Relaxed) {
            self.hot[row as usize & (HOT_SLOTS - 1)].store(row, Ordering::Relaxed);
        }
    }

    /// Whether [`SqliteTier::touch`] recorded a row since the last pass.
    fn hot_pending(&self) -> bool {
        self.hot
            .iter()
            .any(|slot| slot.load(Ordering::Relaxed) != 0)
    }

    /// Applies `writes` in one transaction, possibly grouped with other
    /// threads' batches; returns one outcome per write, in order.
    pub(crate) fn write(&self, writes: Vec<Write>) -> Result<Vec<Outcome>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        let _gate = self.enter()?;
        self.check_writable()?;
        self.ensure_room(&writes)?;
        let slot = Arc::new(Slot::default());
        self.queue.lock().push(Submission {
            writes,
            slot: slot.clone(),
        });
        let mut writer = self.writer.lock();
        if let Some(done) = slot.0.lock().take() {
            return done;
        }
        let conn = writer.as_mut().ok_or_else(Error::closed)?;
        let batch = std::mem::take(&mut *self.queue.lock());
        debug_assert!(batch.iter().any(|s| Arc::ptr_eq(&s.slot, &slot)));
        let applied = match self.apply(conn, &batch) {
            Err(err) => self
                .recover(&mut writer, err)
                .and_then(|()| self.apply(self.writable(&mut writer)?, &batch)),
            applied => applied,
        };
        match applied {
            Ok(outcomes) => {
                for (submission, outcome) in batch.iter().zip(outcomes) {
                    *submission.slot.0.lock() = Some(Ok(outcome));
                }
            }
            Err(err) => {
                for submission in &batch {
                    *submission.slot.0.lock() = Some(Err(Error::new(err.kind(), err.message())));
                }
            }
        }
        drop(writer);
        if self.bytes() > self.max_bytes {
            self.wake.lock().notify_one();
        }
        slot.0.lock().take().unwrap_or_else(|| {
            Err(Error::new(
                ErrorKind::Internal,
                "group commit left a write without its outcome",
            ))
        })
    }

    fn apply(&self, conn: &mut Connection, batch: &[Submission]) -> Result<Vec<Vec<Outcome>>> {
        // A write queued for the source must survive a power loss, not only
        // a crash of this process: its commit waits for the WAL to reach
        // the disk (`synchronous = FULL`); every other commit keeps NORMAL.
        let durable = batch
            .iter()
            .any(|s| s.writes.iter().any(|w| w.behind().is_some()));
        if !durable {
            return self.apply_in(conn, batch);
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        let applied = self.apply_in(conn, batch);
        let normal = conn.pragma_update(None, "synchronous", "NORMAL");
        let applied = applied?;
        normal?;
        Ok(applied)
    }

    fn apply_in(&self, conn: &mut Connection, batch: &[Submission]) -> Result<Vec<Vec<Outcome>>> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        self.check_still_current()?;
        let (mut bytes, mut count) = (0i64, 0i64);
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut log = ChangeLog::open(&tx, self.origin.load(Ordering::Relaxed))?;
        {
            let mut size_of = tx.prepare_cached(SQL_SIZE_OF)?;
            let mut upsert = tx.prepare_cached(SQL_UPSERT)?;
            let mut delete = tx.prepare_cached(SQL_DELETE)?;
            for submission in batch {
                let mut outcome = Vec::with_capacity(submission.writes.len());
                for write in &submission.writes {
                    if let Write::Copy(row) = write {
                        let held: Option<i64> = tx
                            .prepare_cached(SQL_CREATED_OF)?
                            .query_row([&row.key], |r| r.get(0))
                            .optional()?;
                        if held.is_some_and(|created| created >= row.created_ms as i64) {
                            outcome.push(Outcome {
                                seq: 0,
                                removed_expires_ms: None,
                                row: None,
                            });
                            continue;
                        }
                    }
                    match write {
                        Write::Put(row) | Write::Copy(row) | Write::PutBehind(row, _) => {
                            let old: Option<i64> =
                                size_of.query_row([&row.key], |r| r.get(0)).optional()?;
                            let tags = (!row.tags.is_empty()).then(|| {
                                serde_json::to_string(&row.tags).expect("strings serialise")
                            });
                            let size = row.size() as i64;
                            let id: i64 = upsert.query_row(
                                params![
                                    row.key,
                                    row.created_ms as i64,
                                    row.expires_ms as i64,
                                    row.stale_until_ms as i64,
                                    size,
                                    tags,
                                    &row.value[..],
                                    row.etag,
                                ],
                                |r| r.get(0),
                            )?;
                            bytes += size - old.unwrap_or(0);
                            count += i64::from(old.is_none());
                            let seq = log.record(&tx, Some(&row.key), None)?;
                            if let Some(behind) = write.behind() {
                                outbox::enqueue(
                                    &tx,
                                    &row.key,
                                    seq,
                                    Some(&row.value),
                                    &behind.idempotency_key,
                                    behind.now_ms,
                                )?;
                            }
                            outcome.push(Outcome {
                                seq,
                                removed_expires_ms: None,
                                row: Some(id),
                            });
                        }
                        Write::Delete(key) | Write::DeleteBehind(key, _) => {
                            let removed: Option<(i64, i64, i64)> = delete
                                .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                                .optional()?;
                            if let Some((size, _, id)) = removed {
                                bytes -= size;
                                count -= 1;
                                self.forget_reads(id);
                            }
                            let seq = log.record(&tx, Some(key), None)?;
                            if let Some(behind) = write.behind() {
                                outbox::enqueue(
                                    &tx,
                                    key,
                                    seq,
                                    None,
                                    &behind.idempotency_key,
                                    behind.now_ms,
                                )?;
                            }
                            outcome.push(Outcome {
                                seq,
                                removed_expires_ms: removed.map(|(_, expires, _)| expires as u64),
                                row: None,
                            });
                        }
                    }
                }
                outcomes.push(outcome);
            }
        }
        log.finish(&tx)?;
        self.add_totals(&tx, bytes, count)?;
        tx.commit()?;
        Ok(outcomes)
    }

    fn add_totals(&self, tx: &Transaction<'_>, bytes: i64, count: i64) -> Result<()> {
        let mut add = tx.prepare_cached(SQL_ADD_META)?;
        let total: i64 = add.query_row(params!["total_bytes", bytes], |r| r.get(0))?;
        let entries: i64 = add.query_row(params!["entry_count", count], |r| r.get(0))?;
        self.total_bytes
            .store(total.max(0) as u64, Ordering::Relaxed);
        self.entry_count
            .store(entries.max(0) as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Reads the file's totals (another process may have changed them) and
    /// returns the bytes held. Read on the writer connection, under its
    /// lock: the totals this process stores are then in commit order. (Read
    /// on a pooled reader, an older snapshot could be stored after a newer
    /// total another thread's eviction had stored.)
    fn read_totals(&self) -> Result<u64> {
        let writer = self.writer.lock();
        match writer.as_ref() {
            Some(conn) => self.refresh_totals(conn)?,
            None => return Err(Error::closed()),
        }
        Ok(self.bytes())
    }

    fn refresh_totals(&self, conn: &Connection) -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")?;
        let total: i64 = stmt.query_row(["total_bytes"], |r| r.get(0))?;
        let entries: i64 = stmt.query_row(["entry_count"], |r| r.get(0))?;
        self.total_bytes
            .store(total.max(0) as u64, Ordering::Relaxed);
        self.entry_count
            .store(entries.max(0) as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `f` in an `IMMEDIATE` transaction on the writer connection.
    ///
    /// A file replaced or deleted since it was opened is reopened and `f`
    /// runs there (see [`recovery`]).
    fn with_writer<R>(&self, f: impl Fn(&Transaction<'_>) -> Result<R>) -> Result<R> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        let _gate = self.enter()?;
        self.check_writable()?;
        let mut writer = self.writer.lock();
        let run = |writer: &mut Option<Connection>| {
            let tx = self
                .writable(writer)?
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            self.check_still_current()?;
            let result = f(&tx)?;
            tx.commit()?;
            Ok(result)
        };
        match run(&mut writer) {
            Err(err) => {
                self.recover(&mut writer, err)?;
                run(&mut writer)
            }
            done => done,
        }
    }

    /// Deletes every row tagged `tag`; returns the keys of those that were
    /// fresh at `now_ms`, and the change number of the invalidation.
    pub(crate) fn delete_tagged(&self, tag: &str, now_ms: u64) -> Result<(Vec<String>, u64)> {
        self.with_writer(|tx| {
            let mut removed = Vec::new();
            let (mut bytes, mut count) = (0i64, 0i64);
            let mut log = ChangeLog::open(tx, self.origin.load(Ordering::Relaxed))?;
            {
                let mut delete = tx.prepare_cached(SQL_DELETE_TAGGED)?;
                let mut rows = delete.query([tag])?;
                while let Some(row) = rows.next()? {
                    let (key, size, expires, id): (String, i64, i64, i64) =
                        (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
                    self.forget_reads(id);
                    bytes -= size;
                    count -= 1;
                    log.record(tx, Some(&key), None)?;
                    if now_ms < expires as u64 {
                        removed.push(key);
                    }
                }
            }
            // Other caches also drop tagged entries their L2 no longer has.
            let seq = log.record(tx, None, Some(tag))?;
            log.finish(tx)?;
            self.add_totals(tx, bytes, count)?;
            Ok((removed, seq))
        })
    }

    /// Deletes every row, then gives the space back to the file system
    /// (see [`space`]); returns the change number of the clear. The rows are
    /// gone once the deletion commits: a failure to reclaim the space
    /// afterwards is logged, not returned.
    pub(crate) fn clear(&self) -> Result<u64> {
        let seq = self.with_writer(|tx| {
            tx.execute_batch(
                "DELETE FROM entries; DELETE FROM loads WHERE not_found = 1; \
                 UPDATE meta SET value = 0 WHERE name IN ('total_bytes', 'entry_count');",
            )?;
            let mut log = ChangeLog::open(tx, self.origin.load(Ordering::Relaxed))?;
            let seq = log.record(tx, None, None)?;
            log.finish(tx)?;
            coherence::forget_before(tx, seq)?;
            Ok(seq)
        })?;
        *self.access.lock() = Access::default();
        self.total_bytes.store(0, Ordering::Relaxed);
        self.entry_count.store(0, Ordering::Relaxed);
        let _gate = self.enter()?;
        if let Some(conn) = self.writer.lock().as_ref()
            && let Err(err) = self.reclaim(conn)
        {
            tracing::warn!(
                path = %self.path.display(),
                error = %err,
                "cleared, but the space was not given back to the file system"
            );
        }
        Ok(seq)
    }

    /// If `due()` (asked under this cache's watch lock, so that callers
    /// racing here check once), hands `apply` what other caches changed in
    /// the file since the last check (see [`crate::coherence`]), still under
    /// the lock. The first check, here, in a forked child or after the file
    /// was swapped (see [`recovery`]), answers [`Changes::All`]: nothing was
    /// vouched for before it.
    pub(crate) fn sync(&self, due: impl FnOnce() -> bool, apply: impl FnOnce(Result<Changes>)) {
        let _gate = match self.enter() {
            Ok(gate) => gate,
            Err(err) => return apply(Err(err)),
        };
        let mut watch = self.watch.lock();
        if !due() {
            return;
        }
        if self.closed.load(Ordering::Acquire) {
            return apply(Err(Error::closed()));
        }
        let origin = self.origin.load(Ordering::Relaxed);
        let epoch = self.file_epoch();
        let changes = match watch.as_mut() {
            Some((on, watch)) if *on == epoch => watch.poll(origin),
            _ => self.connect().and_then(Watch::open).map(|opened| {
                let head = opened.seen();
                *watch = Some((epoch, opened));
                Changes::All { head }
            }),
        };
        apply(changes);
    }

    /// Writes buffered accesses, evicts least recently used rows while over
    /// budget, and purges rows past their stale-until time (at most every
    /// ten minutes).
    ///
    /// A pass with nothing to do writes nothing; `budget: false` (closing)
    /// only writes the buffered reads.
    ///
    /// On a read-only file there is nothing to write and nothing may be
    /// evicted: a pass does nothing.
    pub(crate) fn maintain(&self, now_ms: u64, budget: bool) -> Result<Maintenance> {
        if self.read_only.load(Ordering::Acquire) {
            return Ok(Maintenance::default());
        }
        let _gate = self.enter()?;
        let last_purge = self.last_purge_ms.load(Ordering::Relaxed);
        let purge = budget && now_ms.saturating_sub(last_purge) >= PURGE_EVERY_MS;
        let evict = budget && self.read_totals()? > self.max_bytes;
        if !purge && !evict && self.access.lock().rows() == 0 && !self.hot_pending() {
            return Ok(Maintenance::default());
        }
        // Eviction goes in transactions of at most EVICT_CHUNK rows with a
        // checkpoint between, so that the WAL stays small (see `space`).
        let mut done = Maintenance::default();
        let mut round = 0;
        loop {
            let step = {
                // The reads taken from the buffer are in neither it nor the
                // file until the commit.
                let _counting = self.counting.lock();
                let mut writer = self.writer.lock();
                let pass = |writer: &mut Option<Connection>| {
                    let tx = self
                        .writable(writer)?
                        .transaction_with_behavior(TransactionBehavior::Immediate)?;
                    self.check_still_current()?;
                    let done = self.maintain_in(&tx, now_ms, purge && round == 0, budget, round)?;
                    tx.commit()?;
                    Ok::<_, Error>(done)
                };
                let step = match pass(&mut writer) {
                    Err(err) => {
                        self.recover(&mut writer, err)?;
                        pass(&mut writer)?
                    }
                    step => step?,
                };
                // Counted before the writer lock is released, so the next
                // pass, here or in another thread, sees it.
                self.counters.sqlite.evictions.add(step.evicted);
                step
            };
            done.touched += step.touched;
            done.evicted += step.evicted;
            done.purged += step.purged;
            if step.evicted < EVICT_CHUNK {
                break;
            }
            self.checkpoint()?;
            round += 1;
        }
        if purge {
            self.last_purge_ms.store(now_ms, Ordering::Relaxed);
        }
        if done.evicted + done.purged >= LARGE_REMOVAL {
            if let Some(conn) = self.writer.lock().as_ref() {
                checkpoint_truncate(conn)?;
            }
        } else if done != Maintenance::default() {
            self.checkpoint()?;
        }
        Ok(done)
    }

    /// One transaction of a maintenance pass; `round` > 0 continues an
    /// eviction that stopped at [`EVICT_CHUNK`] rows.
    fn maintain_in(
        &self,
        tx: &Transaction<'_>,
        now_ms: u64,
        purge: bool,
        budget: bool,
        round: u32,
    ) -> Result<Maintenance> {
        let max_bytes = self.max_bytes;
        // Taken under the writer lock, so a concurrent pass cannot evict
        // by recency before the reads recorded up to now are written.
        let access = std::mem::take(&mut *self.access.lock());
        let mut done = Maintenance {
            touched: access.rows(),
            ..Maintenance::default()
        };
        let mut touch = tx.prepare_cached(SQL_TOUCH)?;
        for (id, (at, n)) in &access.by_id {
            touch.execute(params![id, *at as i64, n])?;
        }
        let mut touch_row = tx.prepare_cached(SQL_TOUCH_ROW)?;
        for slot in &self.hot[..] {
            let row = slot.swap(0, Ordering::Relaxed);
            if row != 0 {
                touch_row.execute(params![row, now_ms as i64])?;
                done.touched += 1;
            }
        }
        let (mut bytes, mut count) = (0i64, 0i64);
        if purge {
            let mut stmt =
                tx.prepare_cached("DELETE FROM entries WHERE stale_until_ms <= ?1 RETURNING size")?;
            let sizes = stmt.query_map([now_ms as i64], |r| r.get::<_, i64>(0))?;
            for size in sizes {
                bytes -= size?;
                count -= 1;
                done.purged += 1;
            }
        }
        let total: i64 = tx.query_row(
            "SELECT value FROM meta WHERE name = 'total_bytes'",
            [],
            |r| r.get(0),
        )?;
        let mut over = total + bytes - (max_bytes as f64 * EVICT_LOW_WATER) as i64;
        if budget && (total + bytes > max_bytes as i64 || round > 0) {
            // The row written last is kept if it fits the budget alone, so a
            // budget that holds one row, or rows larger than the share
            // eviction aims for, never loses the write that just returned.
            let kept: Option<i64> = tx
                .prepare_cached(SQL_WRITTEN_LAST)?
                .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                .optional()?
                .filter(|&(_, size)| size <= max_bytes as i64)
                .map(|(id, _)| id);
            let mut oldest = tx.prepare_cached(
                "SELECT id, size FROM entries WHERE id IS NOT ?1 \
                 ORDER BY last_access_ms, id LIMIT 256",
            )?;
            let mut delete = tx.prepare_cached("DELETE FROM entries WHERE id = ?1")?;
            while over > 0 && done.evicted < EVICT_CHUNK {
                let batch = oldest
                    .query_map([kept], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                if batch.is_empty() {
                    break;
                }
                for (id, size) in batch {
                    if over <= 0 || done.evicted == EVICT_CHUNK {
                        break;
                    }
                    delete.execute([id])?;
                    bytes -= size;
                    over -= size;
                    count -= 1;
                    done.evicted += 1;
                }
            }
        }
        self.add_totals(tx, bytes, count)?;
        Ok(done)
    }

    /// This file's identity: a random number kept in its `meta` table,
    /// drawn by the first process that asks. Processes that share the file
    /// see the same number; another machine's file has its own.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn identity(&self) -> Result<i64> {
        let drawn = crate::coherence::new_origin();
        self.with_writer(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('file_id', ?1)",
                [drawn],
            )?;
            Ok(
                tx.query_row("SELECT value FROM meta WHERE name = 'file_id'", [], |r| {
                    r.get(0)
                })?,
            )
        })
    }

    /// Where the processes on this file have read the backplane's stream
    /// to: the stream's epoch and the last id read (packed, see
    /// `backplane`); `None` if no process recorded one.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn backplane_cursor(&self) -> Result<Option<(i64, i64)>> {
        self.with_writer(|tx| {
            let mut stmt = tx.prepare_cached("SELECT value FROM meta WHERE name = ?1")?;
            let epoch: Option<i64> = stmt
                .query_row(["backplane_epoch"], |r| r.get(0))
                .optional()?;
            let last: Option<i64> = stmt
                .query_row(["backplane_last"], |r| r.get(0))
                .optional()?;
            Ok(epoch.zip(last))
        })
    }

    /// Records that a process on this file read the stream of `epoch` up to
    /// `last` (packed): kept if later than what is recorded for the same
    /// epoch; a new epoch replaces the old one's.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn record_backplane_cursor(&self, epoch: i64, last: i64) -> Result<()> {
        self.with_writer(|tx| {
            let held: Option<i64> = tx
                .query_row(
                    "SELECT value FROM meta WHERE name = 'backplane_epoch'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            let mut upsert = tx.prepare_cached(
                "INSERT INTO meta (name, value) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )?;
            if held != Some(epoch) {
                upsert.execute(params!["backplane_epoch", epoch])?;
                upsert.execute(params!["backplane_last", last])?;
            } else {
                tx.execute(
                    "UPDATE meta SET value = max(value, ?1) WHERE name = 'backplane_last'",
                    [last],
                )?;
            }
            Ok(())
        })
    }

    /// Copies the WAL back into the database file without waiting for
    /// anyone. Once every frame is copied, new readers read the file alone
    /// (through its memory map) instead of looking pages up in the WAL.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        let _gate = self.enter()?;
        if let Some(conn) = self.writer.lock().as_ref() {
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        }
        Ok(())
    }

    /// Flushes buffered accesses and closes every connection. Later calls fail
    /// with [`ErrorKind::Closed`].
    pub(crate) fn close(&self, now_ms: u64) -> Result<()> {
        let _gate = self.enter()?;
        let flushed = if self.writer.lock().is_some() {
            self.maintain(now_ms, false).map(drop)
        } else {
            Ok(())
        };
        self.closed.store(true, Ordering::Release);
        let writer = self.writer.lock().take();
        self.readers.lock().clear();
        *self.watch.lock() = None;
        if let Some(conn) = writer {
            conn.close().map_err(|(_, e)| Error::from(e))?;
        }
        flushed
    }
}

/// A [`Found`] from a row of `id, created_ms, expires_ms, value, ...`.
fn found_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<Found> {
    Ok(Found {
        row: r.get(0)?,
        created_ms: r.get::<_, i64>(1)? as u64,
        expires_ms: r.get::<_, i64>(2)? as u64,
        value: Bytes::copy_from_slice(r.get_ref(3)?.as_blob()?),
        stale_until_ms: r.get::<_, i64>(4)? as u64,
        etag: r.get(5)?,
        first_ms: r.get::<_, i64>(6)? as u64,
    })
}
