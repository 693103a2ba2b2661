//! Writes: the batches callers hand in (see [`super::row`]), group commit
//! on the one writer connection (one `IMMEDIATE` transaction for every
//! queued batch), the totals kept in `meta`, and the deletes of a tag and
//! of everything.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::access::Access;
use super::outbox;
use super::row::{Replayed, Row, Write};
use super::{BUSY_TIMEOUT, SqliteTier};
use crate::coherence::{self, ChangeLog};
use crate::error::{Error, ErrorKind, Result};

// No statement of a single-key write has a `RETURNING` clause or an
// `ON CONFLICT` action: either makes SQLite keep a statement journal (a
// 64 KB buffer allocated and freed per statement) in case it must undo the
// statement alone. The row is looked up first instead, and the totals read
// after they are added.
/// The row a write replaces or deletes.
const SQL_HELD: &str =
    "SELECT id, size, expires_ms, created_ms, write_order FROM entries WHERE key = ?1";
/// `?9` is NULL: SQLite numbers the row.
const SQL_INSERT: &str = "INSERT INTO entries \
     (id, key, created_ms, expires_ms, stale_until_ms, size, access_count, last_access_ms, tags, value, etag, first_ms, write_order) \
     VALUES (?9, ?1, ?2, ?3, ?4, ?5, 0, ?2, ?6, ?7, ?8, ?2, ?10)";
/// A write keeps the row (its id), when the key was first written and how
/// often it was read; everything else is the new value's.
const SQL_REPLACE: &str = "UPDATE entries SET created_ms = ?2, expires_ms = ?3, \
     stale_until_ms = ?4, size = ?5, last_access_ms = ?2, tags = ?6, value = ?7, etag = ?8, \
     first_ms = coalesce(first_ms, created_ms), write_order = ?10 WHERE id = ?9 AND key = ?1";
const SQL_DELETE: &str = "DELETE FROM entries WHERE id = ?1";
const SQL_DELETE_TAGGED: &str = "DELETE FROM entries WHERE tags IS NOT NULL \
     AND EXISTS (SELECT 1 FROM json_each(entries.tags) WHERE json_each.value = ?1) \
     RETURNING key, size, expires_ms, id";
const SQL_ADD_META: &str = "UPDATE meta SET value = value + ?2 WHERE name = ?1";
const SQL_LAST_ORDER: &str = "UPDATE meta SET value = max(value, ?1) WHERE name = 'write_order'";
const SQL_TOTALS: &str = "SELECT (SELECT value FROM meta WHERE name = 'total_bytes'), \
     (SELECT value FROM meta WHERE name = 'entry_count')";

/// The row a write finds under its key.
#[derive(Debug, Clone, Copy)]
struct Held {
    id: i64,
    size: i64,
    expires_ms: i64,
    created_ms: i64,
    /// The file-wide number of the write that stored it (0: unknown).
    order: u64,
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

/// What [`SqliteTier::try_write`] did.
pub(crate) enum Tried {
    /// Committed: one outcome per write.
    Done(Vec<Outcome>),
    /// Nothing written: doing it would have waited (or failed).
    WouldWait,
}

pub(super) struct Submission {
    writes: Vec<Write>,
    slot: Arc<Slot>,
}

impl SqliteTier {
    /// `Err` of kind [`ErrorKind::ReadOnly`] when the file is open read-only.
    #[inline]
    pub(super) fn check_writable(&self) -> Result<()> {
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

    /// Applies `writes` in one transaction, possibly grouped with other
    /// threads' batches; returns one outcome per write, in order. The
    /// journal's writes are committed first (see [`SqliteTier::settle`]).
    pub(crate) fn write(&self, writes: Vec<Write>) -> Result<Vec<Outcome>> {
        self.note_direct(&writes);
        self.settle()?;
        self.write_settled(writes)
    }

    /// [`SqliteTier::write`] without settling the journal first.
    pub(super) fn write_settled(&self, writes: Vec<Write>) -> Result<Vec<Outcome>> {
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
            self.wakeup.ask_maintenance();
        }
        slot.0.lock().take().unwrap_or_else(|| {
            Err(Error::new(
                ErrorKind::Internal,
                "group commit left a write without its outcome",
            ))
        })
    }

    /// [`SqliteTier::write`] if it can be done at once: when no other
    /// thread of this process is writing or waiting to, no write-behind
    /// journal is to be drained first, and the file's write lock is free
    /// (taken with no busy wait); it leaves a checkpoint the WAL's length
    /// calls for to the maintenance task (see [`super::wal::at_once`]).
    /// Otherwise, or on any failure, writes
    /// nothing: [`SqliteTier::write`] then does them, waiting, recovering
    /// and reporting as it does.
    pub(crate) fn try_write(&self, writes: Vec<Write>) -> Result<Tried> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        // In a forked child, frees the locks the parent's threads held
        // before any is taken.
        let _gate = self.enter()?;
        if self.journal_pending() || self.peers_pending() || !self.queue.lock().is_empty() {
            return Ok(Tried::WouldWait);
        }
        self.note_direct(&writes);
        let Some(mut writer) = self.writer.try_lock() else {
            return Ok(Tried::WouldWait);
        };
        let Some(conn) = writer.as_mut() else {
            return Ok(Tried::WouldWait);
        };
        if self.check_writable().is_err() || !self.room_at_once(&writes) {
            return Ok(Tried::WouldWait);
        }
        let batch = [Submission {
            writes,
            slot: Arc::new(Slot::default()),
        }];
        let applied = conn
            .busy_timeout(Duration::ZERO)
            .map_err(Error::from)
            .and_then(|()| super::wal::at_once(|| self.apply(conn, &batch)));
        if let Err(err) = conn.busy_timeout(BUSY_TIMEOUT) {
            // SQLite sets a busy timeout without fail; were it to, the
            // next write would find the lock taken at once, not wait.
            tracing::warn!(error = %err, "could not restore the writer's busy timeout");
        }
        drop(writer);
        match applied {
            Ok(mut outcomes) => {
                if self.bytes() > self.max_bytes {
                    self.wakeup.ask_maintenance();
                }
                Ok(Tried::Done(outcomes.pop().unwrap_or_default()))
            }
            Err(_) => Ok(Tried::WouldWait),
        }
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
        let mut last_order = 0u64;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut log = ChangeLog::open(&tx, self.origin.load(Ordering::Relaxed))?;
        {
            let mut held = tx.prepare_cached(SQL_HELD)?;
            let mut insert = tx.prepare_cached(SQL_INSERT)?;
            let mut replace = tx.prepare_cached(SQL_REPLACE)?;
            let mut delete = tx.prepare_cached(SQL_DELETE)?;
            for submission in batch {
                let mut outcome = Vec::with_capacity(submission.writes.len());
                for write in &submission.writes {
                    let old: Option<Held> = held
                        .query_row([write.key()], |r| {
                            Ok(Held {
                                id: r.get(0)?,
                                size: r.get(1)?,
                                expires_ms: r.get(2)?,
                                created_ms: r.get(3)?,
                                order: r.get::<_, i64>(4)? as u64,
                            })
                        })
                        .optional()?;
                    let older = |row: &Row, or_same: bool| {
                        old.is_some_and(|old| {
                            let (held, made) = (old.created_ms, row.created_ms as i64);
                            held > made || (or_same && held == made)
                        })
                    };
                    let superseded = match (write, old) {
                        (Write::Copy(row), _) => older(row, true),
                        (Write::Replay(_, _, order, _), Some(old))
                            if *order > 0 && old.order > 0 =>
                        {
                            old.order > *order
                        }
                        (Write::Replay(row, ..), _) => older(row, false),
                        _ => false,
                    };
                    if superseded {
                        // A copy from another tier, or a journal's write,
                        // older than what is held.
                        outcome.push(Outcome {
                            seq: 0,
                            removed_expires_ms: None,
                            row: None,
                        });
                        continue;
                    }
                    match write {
                        Write::Put(row)
                        | Write::Copy(row)
                        | Write::PutBehind(row, _)
                        | Write::Replay(row, ..) => {
                            let order = match write {
                                Write::Replay(_, _, order, _) => *order,
                                // After every journaled write numbered so
                                // far, all of which it follows.
                                _ => self.journal_order(),
                            };
                            last_order = last_order.max(order);
                            let tags = (!row.tags.is_empty()).then(|| {
                                serde_json::to_string(&row.tags).expect("strings serialise")
                            });
                            let size = row.size() as i64;
                            let held_id = old.map(|old| old.id);
                            let bound = params![
                                row.key,
                                row.created_ms as i64,
                                row.expires_ms as i64,
                                row.stale_until_ms as i64,
                                size,
                                tags,
                                &row.value[..],
                                row.etag,
                                held_id,
                                order as i64,
                            ];
                            let id = match held_id {
                                Some(id) => {
                                    replace.execute(bound)?;
                                    id
                                }
                                None => {
                                    insert.execute(bound)?;
                                    let id = tx.last_insert_rowid();
                                    // A new row, perhaps on a deleted one's id.
                                    self.forget_reads(&tx, id)?;
                                    id
                                }
                            };
                            bytes += size - old.map_or(0, |old| old.size);
                            count += i64::from(old.is_none());
                            let seq = match write {
                                // Every cache's L1 follows it, this one's too.
                                Write::Replay(.., Replayed::Ended) => {
                                    log.record_foreign(&tx, &row.key)?
                                }
                                _ => log.record(&tx, Some(&row.key), None)?,
                            };
                            if let Some(behind) = write.behind() {
                                outbox::enqueue(
                                    &tx,
                                    &row.key,
                                    seq,
                                    Some(&row.value),
                                    &behind.idempotency.to_string(),
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
                            if let Some(old) = old {
                                delete.execute([old.id])?;
                                bytes -= old.size;
                                count -= 1;
                                self.forget_reads(&tx, old.id)?;
                            }
                            let seq = log.record(&tx, Some(key), None)?;
                            if let Some(behind) = write.behind() {
                                outbox::enqueue(
                                    &tx,
                                    key,
                                    seq,
                                    None,
                                    &behind.idempotency.to_string(),
                                    behind.now_ms,
                                )?;
                            }
                            outcome.push(Outcome {
                                seq,
                                removed_expires_ms: old.map(|old| old.expires_ms as u64),
                                row: None,
                            });
                        }
                    }
                }
                outcomes.push(outcome);
            }
        }
        log.finish(&tx)?;
        if last_order > 0 {
            tx.prepare_cached(SQL_LAST_ORDER)?
                .execute([last_order as i64])?;
        }
        self.add_totals(&tx, bytes, count)?;
        tx.commit()?;
        Ok(outcomes)
    }

    pub(super) fn add_totals(&self, tx: &Transaction<'_>, bytes: i64, count: i64) -> Result<()> {
        let mut add = tx.prepare_cached(SQL_ADD_META)?;
        add.execute(params!["total_bytes", bytes])?;
        add.execute(params!["entry_count", count])?;
        let (total, entries): (i64, i64) = tx
            .prepare_cached(SQL_TOTALS)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
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
    pub(super) fn read_totals(&self) -> Result<u64> {
        let writer = self.writer.lock();
        match writer.as_ref() {
            Some(conn) => self.refresh_totals(conn)?,
            None => return Err(Error::closed()),
        }
        Ok(self.bytes())
    }

    pub(super) fn refresh_totals(&self, conn: &Connection) -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")?;
        let total: i64 = stmt.query_row(["total_bytes"], |r| r.get(0))?;
        let entries: i64 = stmt.query_row(["entry_count"], |r| r.get(0))?;
        let order: i64 = stmt.query_row(["write_order"], |r| r.get(0))?;
        // Journaled writes are numbered after every number the file holds.
        self.resume_orders(order.max(0) as u64);
        self.total_bytes
            .store(total.max(0) as u64, Ordering::Relaxed);
        self.entry_count
            .store(entries.max(0) as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `f` in an `IMMEDIATE` transaction on the writer connection.
    ///
    /// A file replaced or deleted since it was opened is reopened and `f`
    /// runs there (see [`super::recovery`]).
    pub(super) fn with_writer<R>(&self, f: impl Fn(&Transaction<'_>) -> Result<R>) -> Result<R> {
        self.settle()?;
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
                    self.forget_reads(tx, id)?;
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
    /// (see [`super::space`]); returns the change number of the clear. The rows are
    /// gone once the deletion commits: a failure to reclaim the space
    /// afterwards is logged, not returned.
    pub(crate) fn clear(&self) -> Result<u64> {
        let seq = self.with_writer(|tx| {
            tx.execute_batch(
                "DELETE FROM entries; DELETE FROM reads; DELETE FROM loads WHERE not_found = 1; \
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
}
