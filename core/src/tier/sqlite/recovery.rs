//! When the file under the tier changes: a file deleted or replaced on disk
//! is reopened (a deleted one created anew), so that no acknowledged write
//! goes into a file nobody else can see; a damaged one is set aside and
//! rebuilt, as `sqlite.on_corrupt` says.
//!
//! - Every write transaction, once it holds SQLite's write lock, checks that
//!   the path still names the file its connection has open (device and
//!   inode: one `stat`, about a microsecond against the write's hundred).
//!   If not, the transaction is rolled back, the file at the path is opened
//!   (created if missing) and the write is applied there.
//! - Reads check at most every [`FILE_CHECK_INTERVAL`], so a reader that
//!   never writes follows a replacement within that time.
//! - A call that SQLite answers `SQLITE_CORRUPT` or `SQLITE_NOTADB`, on a
//!   file whose header shows a tierstack cache, with `on_corrupt` =
//!   `rebuild`: the damaged file is moved to `<name>.corrupt-<unix time>`
//!   while this process holds its write lock (so no other process commits
//!   there after the move: their next write sees the path changed), a fresh
//!   file is created, and the call runs again there. With `fail`, or on a
//!   read-only file, the error is returned and nothing is touched.
//! - Every swap of the file increments [`SqliteTier::file_epoch`]: the
//!   engine then drops this process's L1, which held values of the old file.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rusqlite::Connection;

use super::damage;
use super::file::{self, Mode, Opened};
use super::{Current, SqliteTier};
use crate::config::OnCorrupt;
use crate::error::{Error, ErrorKind, Result};

/// Reads check the file's identity at most this often.
pub const FILE_CHECK_INTERVAL: Duration = Duration::from_millis(100);

impl SqliteTier {
    /// Incremented whenever the tier swaps the file under it (a replaced or
    /// deleted file reopened): values held from before belong to the old
    /// file.
    pub(crate) fn file_epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// On the read path: checks the file's identity if the last check is
    /// older than [`FILE_CHECK_INTERVAL`], and reopens it if it changed.
    #[inline]
    pub(super) fn check_file_every(&self) -> Result<()> {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.checked_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < FILE_CHECK_INTERVAL.as_millis() as u64 {
            return Ok(());
        }
        self.checked_ms.store(now, Ordering::Relaxed);
        self.check_file()
    }

    /// Checks the file's identity (one `stat`) and reopens it if it
    /// changed: before a write goes to the journal, which commits it only
    /// later, so that the write sees a replaced file as a direct commit
    /// does (a file now read-only refuses it).
    pub(super) fn check_file(&self) -> Result<()> {
        if self.is_current() {
            return Ok(());
        }
        let mut writer = self.writer.lock();
        if self.is_current() {
            // Another thread reopened it.
            return Ok(());
        }
        self.swap(&mut writer, None)
    }

    /// Whether the path still names the file the connections have open. A
    /// path that cannot be examined (permissions changed) counts as
    /// unchanged: there is nothing better to open.
    fn is_current(&self) -> bool {
        let id = self.current.lock().id;
        match file::identity(&self.path) {
            Ok(found) => found == Some(id),
            Err(_) => true,
        }
    }

    /// Inside a write transaction: fails if the path no longer names the
    /// file, so that the caller rolls back and [`SqliteTier::recover`]s.
    pub(super) fn check_still_current(&self) -> Result<()> {
        match self.is_current() {
            true => Ok(()),
            false => Err(Error::new(
                ErrorKind::Storage,
                format!("{} was replaced or deleted while open", self.path.display()),
            )),
        }
    }

    /// After `err` from an operation holding the writer lock: `Ok` if the
    /// file was swapped (replaced on disk, or damaged and rebuilt) and the
    /// operation should run again, else `err`.
    pub(super) fn recover(&self, writer: &mut Option<Connection>, err: Error) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(err);
        }
        if !self.is_current() {
            return self.swap(writer, None);
        }
        if !damage::is_damage(&err) {
            return Err(err);
        }
        if self.on_corrupt == OnCorrupt::Fail {
            return Err(damage::left_as_is(&self.path, err));
        }
        if self.read_only.load(Ordering::Acquire) || !damage::has_tierstack_header(&self.path) {
            // Cannot be moved, or not recognisably a cache: not ours to move.
            return Err(err);
        }
        // Holding the damaged file's write lock while it is moved (a failure
        // to take it, e.g. with page 1 damaged, leaves the move unguarded).
        if let Some(conn) = writer.as_ref() {
            let _ = conn.execute_batch("BEGIN IMMEDIATE");
        }
        let aside = damage::set_aside(&self.path).map_err(|e| {
            err.context(format!(
                "{} is damaged and could not be set aside ({})",
                self.path.display(),
                e.message()
            ))
        })?;
        self.swap(writer, Some(aside))
    }

    /// A read that failed with `err`: `Ok` if the file was swapped and the
    /// read should run again.
    pub(super) fn recover_read(&self, err: Error) -> Result<()> {
        if !damage::is_damage(&err) {
            return Err(err);
        }
        let mut writer = self.writer.lock();
        self.recover(&mut writer, err)
    }

    /// Counts and reports a damaged file that opening set aside.
    pub(super) fn note_set_aside(&self, opened: &Opened) {
        if let Some(aside) = &opened.set_aside {
            self.counters.sqlite_rebuilds.incr();
            tracing::warn!(
                path = %self.path.display(),
                set_aside = %aside.display(),
                "the cache file was damaged: it was set aside and a fresh one created"
            );
        }
    }

    /// The writer connection, or why there is none.
    pub(super) fn writable<'a>(
        &self,
        writer: &'a mut Option<Connection>,
    ) -> Result<&'a mut Connection> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        self.check_writable()?;
        writer.as_mut().ok_or_else(Error::closed)
    }

    /// Opens the file now at the path (creating it if missing) and moves
    /// every connection there; `aside`: where the damaged file that was
    /// there went. Called with the writer lock held.
    #[cold]
    fn swap(&self, writer: &mut Option<Connection>, aside: Option<PathBuf>) -> Result<()> {
        let mut opened = file::open(&self.path, self.on_corrupt)?;
        let replaced = aside.is_none();
        opened.set_aside = opened.set_aside.or(aside);
        self.note_set_aside(&opened);
        *writer = opened.writer.take();
        if let Some(conn) = writer.as_mut() {
            super::wal::watch_wal(conn, &self.wakeup)?;
        }
        let read_only = opened.mode != Mode::ReadWrite;
        *self.current.lock() = Current {
            id: opened.id,
            mode: opened.mode,
            read_only_because: opened.read_only_because,
        };
        self.read_only.store(read_only, Ordering::Release);
        // Pooled readers are on the old file; those in use are dropped when
        // they come back (their epoch is old).
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.readers.lock().idle.clear();
        // Row ids of the old file mean nothing in the new one.
        *self.access.lock() = Default::default();
        match writer.as_ref() {
            Some(conn) => self.refresh_totals(conn)?,
            None => self.refresh_totals(&file::connect(&self.path, opened.mode)?)?,
        }
        if replaced {
            self.counters.sqlite_reopens.incr();
            tracing::warn!(
                path = %self.path.display(),
                "the cache file was replaced or deleted; opened the file now at its path \
                 (this process's memory tier is dropped)"
            );
        }
        Ok(())
    }
}
