//! Access tracking and eviction: reads recorded in memory (held in
//! [`Access`](super::access::Access); rows used above this tier, by slot),
//! written by a maintenance pass that evicts the least recently used rows
//! while over budget and purges rows past their stale-until time.

use std::sync::atomic::Ordering;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::SqliteTier;
use super::space::{EVICT_CHUNK, LARGE_REMOVAL};
use crate::error::{Error, Result};

/// After eviction the total is at most this share of the budget, so that
/// eviction runs in batches rather than on every write.
const EVICT_LOW_WATER: f64 = 0.9;

/// Rows past their stale-until time are purged at most this often.
const PURGE_EVERY_MS: u64 = 10 * 60 * 1000;

/// The row written last: the latest change in the log whose key still has a
/// row (a put; a later delete or put of the key would be a later change).
/// `CROSS JOIN` keeps the log outside: it is walked from its head, each key
/// looked up by the unique index, and the walk stops at the first row.
const SQL_WRITTEN_LAST: &str = "SELECT entries.id, entries.size FROM changes \
     CROSS JOIN entries ON entries.key = changes.key ORDER BY changes.seq DESC LIMIT 1";

/// Migration to schema 7: the reads of each row, apart from the row.
///
/// A pass adds the reads it writes to a row of `reads` (a few bytes, some
/// two hundred to a page), not to the entry's own row (its value and a slot
/// in the recency index): writing the reads of many rows dirties few pages.
/// An entry's count is `entries.access_count` (reads before this schema)
/// plus `reads.count`; its latest access is the later of
/// `entries.last_access_ms` (its latest write, or the read that eviction
/// last moved it to) and `reads.last_ms`. Eviction walks the recency index
/// and moves a row that was read since to its read's place instead of
/// evicting it (see [`SqliteTier::maintain`]). SQLite may give a deleted
/// entry's id to the next one: a `reads` row is deleted with its entry, and
/// again when a new entry takes its id (another process may have deleted
/// the entry while this one's reads of it were buffered); a purge drops
/// the rows whose entry another process deleted.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE reads (
        id      INTEGER PRIMARY KEY,
        count   INTEGER NOT NULL,
        last_ms INTEGER NOT NULL
    );
";

/// Adds `?3` reads, the latest at `?2`, to row `?1`. Not checked against
/// `entries`: that would read a page of values a row (see [`MIGRATION`]).
const SQL_TOUCH: &str = "INSERT INTO reads (id, count, last_ms) VALUES (?1, ?3, ?2) \
     ON CONFLICT (id) DO UPDATE SET count = count + excluded.count, \
     last_ms = max(last_ms, excluded.last_ms)";
/// Drops the reads of rows another process deleted.
const SQL_PURGE_READS: &str =
    "DELETE FROM reads WHERE NOT EXISTS (SELECT 1 FROM entries WHERE entries.id = reads.id)";
/// The oldest rows by the recency index, with the time of a later read.
const SQL_OLDEST: &str = "SELECT entries.id, entries.size, entries.last_access_ms, \
     reads.last_ms FROM entries \
     LEFT JOIN reads ON reads.id = entries.id AND reads.last_ms > entries.last_access_ms \
     WHERE entries.id IS NOT ?1 ORDER BY entries.last_access_ms, entries.id LIMIT 256";
const SQL_MOVE: &str = "UPDATE entries SET last_access_ms = ?2 WHERE id = ?1";
const SQL_FORGET: &str = "DELETE FROM reads WHERE id = ?1";

/// Slots of [`SqliteTier::touch`]'s record of rows used above this tier; a
/// power of two.
pub(super) const HOT_SLOTS: usize = 4096;

/// What a maintenance pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Maintenance {
    pub(crate) touched: usize,
    pub(crate) evicted: u64,
    pub(crate) purged: u64,
}

impl SqliteTier {
    /// Drops the reads of deleted row `id`, buffered and written, in the
    /// deleting transaction: SQLite gives a deleted row's id to the next
    /// row inserted, which must not inherit them.
    pub(super) fn forget_reads(&self, tx: &Connection, id: i64) -> rusqlite::Result<()> {
        self.access.lock().by_id().remove(&id);
        tx.prepare_cached(SQL_FORGET)?.execute([id])?;
        Ok(())
    }

    /// Held while reads move between the places they are counted in (L1,
    /// this tier's buffer, the file), so that [`SqliteTier::entry`] plus
    /// L1's count adds every read once.
    pub(crate) fn counting(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.counting.lock()
    }

    /// Records reads served above this tier by `(key, reads)`, of entries
    /// written before their row existed (journaled): the rows are found by
    /// key once this process's journal is drained. Those of a key the file
    /// no longer holds are dropped.
    pub(crate) fn record_key_reads(&self, reads: &[(impl AsRef<str>, u64)], now_ms: u64) {
        if reads.is_empty() || self.read_only.load(Ordering::Relaxed) {
            return;
        }
        let rows = self.read(|conn| {
            let mut find = conn.prepare_cached("SELECT id FROM entries WHERE key = ?1")?;
            let mut rows = Vec::with_capacity(reads.len());
            for (key, n) in reads {
                if let Some(id) = find.query_row([key.as_ref()], |r| r.get(0)).optional()? {
                    rows.push((id, *n));
                }
            }
            Ok(rows)
        });
        match rows {
            Ok(rows) => self.record_reads(&rows, now_ms),
            Err(err) => tracing::debug!(error = %err, "reads of entries by key not recorded"),
        }
    }

    /// Records reads served above this tier by `(row, reads)`, counted
    /// up to `now_ms`, to be written with the next pass as this tier's own are.
    pub(crate) fn record_reads(&self, reads: &[(i64, u64)], now_ms: u64) {
        if reads.is_empty() || self.read_only.load(Ordering::Relaxed) {
            return;
        }
        let mut access = self.access.lock();
        for &(id, n) in reads {
            access.add(id, now_ms, n as i64);
        }
    }

    pub(super) fn record_access(&self, ids: &[i64], now_ms: u64) {
        // A read-only file cannot record reads; it is not evicted from here either.
        if ids.is_empty() || self.read_only.load(Ordering::Relaxed) {
            return;
        }
        if self.access.lock().record(ids, now_ms) {
            self.wakeup.ask_maintenance();
        }
    }

    /// Records that row `row` (an id from [`Found::row`](super::Found::row)
    /// or [`Outcome::row`](super::Outcome::row); 0: none) was used above
    /// this tier, by an L1 hit, so that it is not evicted as if unused. The
    /// next maintenance pass sets its last access to the pass's time (at
    /// most a pass late) and leaves `access_count` alone: that counts the
    /// reads this tier served.
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
        // What this process acknowledged counts against the budget.
        self.settle()?;
        let _gate = self.enter()?;
        let last_purge = self.last_purge_ms.load(Ordering::Relaxed);
        let purge = budget && now_ms.saturating_sub(last_purge) >= PURGE_EVERY_MS;
        let evict = budget && self.read_totals()? > self.max_bytes;
        if !purge && !evict && self.access.lock().is_empty() && !self.hot_pending() {
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
                self.checkpoint_truncate(conn)?;
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
        let by_id = std::mem::take(self.access.lock().by_id());
        let mut done = Maintenance {
            touched: by_id.len(),
            ..Maintenance::default()
        };
        let mut touch = tx.prepare_cached(SQL_TOUCH)?;
        for (id, (at, n)) in &by_id {
            touch.execute(params![id, *at as i64, n])?;
        }
        for slot in &self.hot[..] {
            let row = slot.swap(0, Ordering::Relaxed);
            if row != 0 {
                touch.execute(params![row, now_ms as i64, 0])?;
                done.touched += 1;
            }
        }
        let (mut bytes, mut count) = (0i64, 0i64);
        if purge {
            let mut stmt = tx.prepare_cached(
                "DELETE FROM entries WHERE stale_until_ms <= ?1 RETURNING size, id",
            )?;
            let purged = stmt
                .query_map([now_ms as i64], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for (size, id) in purged {
                self.forget_reads(tx, id)?;
                bytes -= size;
                count -= 1;
                done.purged += 1;
            }
            tx.prepare_cached(SQL_PURGE_READS)?.execute([])?;
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
            let mut oldest = tx.prepare_cached(SQL_OLDEST)?;
            let mut delete = tx.prepare_cached("DELETE FROM entries WHERE id = ?1")?;
            let mut move_to = tx.prepare_cached(SQL_MOVE)?;
            while over > 0 && done.evicted < EVICT_CHUNK {
                let batch = oldest
                    .query_map([kept], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get(2)?,
                            r.get(3)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<(i64, i64, i64, Option<i64>)>>>()?;
                if batch.is_empty() {
                    break;
                }
                // The earliest place a row of this batch moved to: the walk
                // starts over before it, so that no row moved there is
                // passed over.
                let mut moved_to = i64::MAX;
                for (id, size, last_ms, read_ms) in batch {
                    if over <= 0 || done.evicted == EVICT_CHUNK || last_ms >= moved_to {
                        break;
                    }
                    if let Some(read_ms) = read_ms {
                        // Read since it took this place: it moves to its
                        // read's instead of being evicted.
                        move_to.execute([id, read_ms])?;
                        moved_to = moved_to.min(read_ms);
                        continue;
                    }
                    delete.execute([id])?;
                    self.forget_reads(tx, id)?;
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

    /// Copies the WAL back into the database file without waiting for
    /// anyone. Once every frame is copied, new readers read the file alone
    /// (through its memory map) instead of looking pages up in the WAL.
    ///
    /// Runs on a pooled reader connection, not the writer: writes go on
    /// meanwhile (a passive checkpoint takes no write lock), and a `set`
    /// never waits for the copy or its fsyncs.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        if self.read_only.load(Ordering::Acquire) {
            return Ok(());
        }
        // Taken inside the read: after its fork gate (a forked child resets
        // the lock before taking it) and its file check (which may take the
        // writer), so the writer is never awaited while holding this lock.
        self.read(|conn| self.checkpoint_on(conn))
    }

    /// A passive checkpoint on `conn`, one at a time (under the
    /// `checkpointing` lock).
    fn checkpoint_on(&self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        let _one = self.checkpointing.lock();
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
    }

    /// [`SqliteTier::checkpoint`] on the writer, for `close`: no write
    /// follows, and no new connection is opened (the file may be gone
    /// from its directory by now).
    pub(super) fn checkpoint_on_writer(&self) -> Result<()> {
        let _gate = self.enter()?;
        let writer = self.writer.lock();
        let Some(conn) = writer.as_ref() else {
            return Ok(());
        };
        Ok(self.checkpoint_on(conn)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::config::OnCorrupt;
    use crate::tier::sqlite::wal::tests::wal_frames;
    use crate::tier::sqlite::{Row, SqliteTier, Write};

    fn row(i: usize) -> Row {
        Row::fresh(format!("k{i:05}"), vec![b'v'; 1500])
    }

    #[test]
    fn writing_the_reads_of_many_rows_dirties_few_pages() {
        const ROWS: usize = 3000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reads.db");
        let tier = SqliteTier::open(&path, u64::MAX, OnCorrupt::Fail, Arc::default()).unwrap();
        tier.write((0..ROWS).map(|i| Write::Put(row(i))).collect())
            .unwrap();
        tier.checkpoint().unwrap();
        // Restarts the WAL, which then grows by what follows.
        tier.write(vec![Write::Put(row(ROWS))]).unwrap();
        for i in 0..ROWS {
            assert!(tier.get(&format!("k{i:05}"), 2).unwrap().is_some());
        }
        let before = wal_frames(&path).0;
        let done = tier.maintain(3, true).unwrap();
        assert_eq!(done.touched, ROWS);
        // Two rows of 1.5 KB share a 4 KB page: one page per two rows read
        // (and their recency index) when the reads went into the rows.
        let written = wal_frames(&path).0 - before;
        assert!(
            written <= 40,
            "{written} pages written for {ROWS} rows read"
        );
        let (entry, _) = tier.entry("k00007").unwrap().unwrap();
        assert_eq!((entry.meta.access_count, entry.meta.last_access_ms), (1, 2));
        tier.close(4).unwrap();
    }

    /// A tier on `path` with rows `k00000` and `k00001`, the second read
    /// once at 2 and the read written at 3; returns it and that row's id.
    fn two_rows_the_second_read_once(path: &std::path::Path) -> (SqliteTier, i64) {
        let tier = SqliteTier::open(path, u64::MAX, OnCorrupt::Fail, Arc::default()).unwrap();
        tier.write(vec![Write::Put(row(0)), Write::Put(row(1))])
            .unwrap();
        let id = tier.get("k00001", 2).unwrap().unwrap().row;
        tier.maintain(3, true).unwrap();
        (tier, id)
    }

    #[test]
    fn a_deleted_rows_reads_do_not_pass_to_the_row_that_takes_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reads.db");
        let (tier, id) = two_rows_the_second_read_once(&path);
        assert_eq!(
            tier.entry("k00001").unwrap().unwrap().0.meta.access_count,
            1
        );
        tier.write(vec![Write::Delete("k00001".into())]).unwrap();
        // The highest id, freed: SQLite gives it to the next row.
        tier.write(vec![Write::Put(row(2))]).unwrap();
        let (entry, row) = tier.entry("k00002").unwrap().unwrap();
        assert_eq!(row, id);
        assert_eq!((entry.meta.access_count, entry.meta.last_access_ms), (0, 1));
        tier.close(4).unwrap();
    }

    #[test]
    fn reads_of_a_row_another_process_deleted_do_not_pass_to_the_row_that_takes_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reads.db");
        let (tier, id) = two_rows_the_second_read_once(&path);
        // Read again (buffered), then deleted behind this tier's back.
        assert!(tier.get("k00001", 4).unwrap().is_some());
        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .execute("DELETE FROM entries WHERE key = 'k00001'", [])
            .unwrap();
        tier.write(vec![Write::Put(row(2))]).unwrap();
        let (entry, row) = tier.entry("k00002").unwrap().unwrap();
        assert_eq!(row, id);
        assert_eq!((entry.meta.access_count, entry.meta.last_access_ms), (0, 1));
        tier.maintain(5, true).unwrap();
        assert_eq!(
            tier.entry("k00002").unwrap().unwrap().0.meta.access_count,
            0
        );
        // A row of reads whose entry is gone is purged.
        other
            .execute(
                "INSERT INTO reads (id, count, last_ms) VALUES (999, 3, 1)",
                [],
            )
            .unwrap();
        tier.maintain(10 * 60 * 1000 + 6, true).unwrap();
        let orphans: i64 = other
            .query_row("SELECT count(*) FROM reads WHERE id = 999", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(orphans, 0);
        tier.close(7).unwrap();
    }
}
