//! Reads: pooled reader connections on the calling thread, prepared point
//! and batch lookups, and the counts `inspect` reports.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteTier;
use crate::entry::{Entry, Metadata};
use crate::error::{Error, ErrorKind, Result};

const READERS_KEPT: usize = 8;

const SQL_GET: &str = "SELECT id, created_ms, expires_ms, value, stale_until_ms, etag, \
     coalesce(first_ms, created_ms) FROM entries WHERE key = ?1";
const SQL_GET_MANY: &str = "SELECT id, created_ms, expires_ms, value, stale_until_ms, etag, \
     coalesce(first_ms, created_ms), key \
     FROM entries \
     WHERE key IN (SELECT value FROM json_each(?1))";

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

/// Reader connections: the idle ones, each with the epoch of the file it
/// is on and the thread that last read with it, and how many are lent to
/// reads in flight (`close` waits for those: see [`Pool::close`]).
#[derive(Default)]
pub(super) struct Pool {
    pub(super) idle: Vec<Idle>,
    lent: usize,
}

/// An idle reader connection.
pub(super) struct Idle {
    /// The epoch of its file.
    epoch: u64,
    conn: Connection,
    /// The [`reader_thread`] that last read with it.
    thread: usize,
}

impl Pool {
    /// Closes the idle connections if none is lent; whether none was.
    pub(super) fn close(&mut self) -> bool {
        self.idle.clear();
        self.lent == 0
    }

    /// The idle connection `thread` read with last, or else the one put
    /// back last. A connection's caches (its pages, statements and
    /// allocations) stay in the memory caches of the core its thread runs
    /// on: with connections handed from thread to thread, two threads
    /// reading each took about 1.7 times the CPU time per read that one
    /// did.
    fn take(&mut self, thread: usize) -> Option<(u64, Connection)> {
        let at = self
            .idle
            .iter()
            .rposition(|idle| idle.thread == thread)
            .or(self.idle.len().checked_sub(1))?;
        let Idle { epoch, conn, .. } = self.idle.remove(at);
        Some((epoch, conn))
    }
}

/// This thread's mark in [`Pool`]: the address of a thread-local, distinct
/// among the threads alive at once.
fn reader_thread() -> usize {
    thread_local! {
        static MARK: u8 = const { 0 };
    }
    MARK.with(|mark| std::ptr::from_ref(mark).addr())
}

/// A reader connection lent out of the pool, counted in [`Pool`] until it
/// is back or closed, even if the read panics.
struct Lent<'a> {
    tier: &'a SqliteTier,
    conn: Option<(u64, Connection)>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let tier = self.tier;
        let mut pool = tier.readers.lock();
        let to_close = match self.conn.take() {
            Some((epoch, conn))
                if pool.idle.len() < READERS_KEPT
                    && !tier.closed.load(Ordering::Acquire)
                    && epoch == tier.file_epoch() =>
            {
                pool.idle.push(Idle {
                    epoch,
                    conn,
                    thread: reader_thread(),
                });
                None
            }
            other => other,
        };
        if let Some(conn) = to_close {
            // Closed outside the lock (a close may checkpoint), and counted
            // as lent until it is.
            drop(pool);
            drop(conn);
            pool = tier.readers.lock();
        }
        pool.lent -= 1;
    }
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

impl SqliteTier {
    /// Runs `f` on a pooled reader connection; again on a fresh file if the
    /// file was found damaged and rebuilt (see [`super::recovery`]).
    pub(super) fn read<R>(&self, f: impl Fn(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        // This process's journaled writes are read back from the file. A
        // read is served even when they cannot be committed (the file was
        // swapped for a read-only one, the disk fails): the journal keeps
        // them, and the next write reports the failure.
        if let Err(err) = self.settle() {
            tracing::debug!(error = %err, "a read could not drain the journal");
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
        let mut lent = {
            let mut pool = self.readers.lock();
            if self.closed.load(Ordering::Acquire) {
                return Err(Error::closed());
            }
            pool.lent += 1;
            Lent {
                tier: self,
                conn: pool.take(reader_thread()),
            }
        };
        if lent.conn.is_none() {
            lent.conn = Some((self.file_epoch(), self.connect()?));
        }
        let (_, conn) = lent
            .conn
            .as_ref()
            .expect("a connection was taken or opened");
        f(conn).map_err(Error::from)
    }

    /// The row for `key`, fresh or not; records the access.
    pub(crate) fn get(&self, key: &str, now_ms: u64) -> Result<Option<Found>> {
        let found = self.read(|conn| {
            conn.prepare_cached(SQL_GET)?
                .query_row([key], |r| found_from(r, self.copy_value))
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
            let rows = stmt.query_map([&json], |r| {
                Ok((r.get::<_, String>(7)?, found_from(r, self.copy_value)?))
            })?;
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
                "SELECT created_ms, expires_ms, stale_until_ms, size, \
                 access_count + coalesce(reads.count, 0), \
                 max(last_access_ms, coalesce(reads.last_ms, 0)), etag, tags, value, \
                 entries.id, coalesce(first_ms, created_ms) \
                 FROM entries LEFT JOIN reads ON reads.id = entries.id WHERE key = ?1",
            )?
            .query_row([key], |r| {
                let tags: Option<String> = r.get(7)?;
                let entry = Entry {
                    key: key.to_owned(),
                    value: (self.copy_value)(r.get_ref(8)?.as_blob()?),
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
            if let Some(&(last, n)) = self.access.lock().by_id().get(&row) {
                entry.meta.access_count += n as u64;
                entry.meta.last_access_ms = entry.meta.last_access_ms.max(last);
            }
            (entry, row)
        }))
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
}

/// A [`Found`] from a row of `id, created_ms, expires_ms, value, ...`, its
/// value copied with `copy_value`.
fn found_from(r: &rusqlite::Row<'_>, copy_value: fn(&[u8]) -> Bytes) -> rusqlite::Result<Found> {
    Ok(Found {
        row: r.get(0)?,
        created_ms: r.get::<_, i64>(1)? as u64,
        expires_ms: r.get::<_, i64>(2)? as u64,
        value: copy_value(r.get_ref(3)?.as_blob()?),
        stale_until_ms: r.get::<_, i64>(4)? as u64,
        etag: r.get(5)?,
        first_ms: r.get::<_, i64>(6)? as u64,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    use rusqlite::Connection;

    use super::{Idle, Pool};
    use crate::config::OnCorrupt;
    use crate::tier::sqlite::{Row, SqliteTier, Write};

    #[test]
    fn a_value_read_for_an_l1_is_copied_into_mimalloc_else_malloc() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copies.db");
        let open = || SqliteTier::open(&path, u64::MAX, OnCorrupt::Fail, Arc::default()).unwrap();
        let value = "v".repeat(1500);
        let tier = open();
        tier.write(vec![Write::Put(Row::fresh("k", value.clone()))])
            .unwrap();
        tier.close(0).unwrap();
        for (memory, mimallocs) in [(true, true), (false, false)] {
            let tier = open().below_memory(memory);
            let found = tier.get("k", 0).unwrap().unwrap();
            assert_eq!(found.value, value.as_bytes());
            assert_eq!(crate::value::is_mimallocs(&found.value), mimallocs);
            let (entry, _) = tier.entry("k").unwrap().unwrap();
            assert_eq!(crate::value::is_mimallocs(&entry.value), mimallocs);
            tier.close(0).unwrap();
        }
    }

    #[test]
    fn close_waits_for_a_read_in_flight_and_leaves_no_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lent.db");
        let tier = SqliteTier::open(&path, u64::MAX, OnCorrupt::Fail, Arc::default()).unwrap();
        tier.write(vec![Write::Put(Row::fresh("k", "v"))]).unwrap();
        let wal = path.with_extension("db-wal");
        assert!(wal.exists());

        let (entered, in_read) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let closed = AtomicBool::new(false);
        let tier = &tier;
        std::thread::scope(|s| {
            let reading = s.spawn(move || {
                tier.read(|conn| {
                    entered.send(()).unwrap();
                    // Bounded: a failing assertion below must not leave this waiting.
                    let _ = released.recv_timeout(Duration::from_secs(5));
                    conn.query_row("SELECT count(*) FROM entries", [], |r| r.get::<_, i64>(0))
                })
            });
            in_read.recv().unwrap();
            let (closed, wal) = (&closed, &wal);
            let closing = s.spawn(move || {
                tier.close(0).unwrap();
                closed.store(true, Ordering::SeqCst);
                // Nothing of this process holds the file: the last close
                // copied the WAL back and removed it.
                assert!(!wal.exists(), "the WAL outlived close");
            });
            std::thread::sleep(Duration::from_millis(200));
            assert!(
                !closed.load(Ordering::SeqCst),
                "close returned during a read"
            );
            release.send(()).unwrap();
            closing.join().unwrap();
            assert_eq!(reading.join().unwrap().unwrap(), 1);
        });
        assert_eq!(
            tier.read(|_| Ok(())).unwrap_err().kind(),
            crate::ErrorKind::Closed
        );
    }

    /// A thread gets back the connection it read with last, wherever it is
    /// in the pool; another thread, or one whose connection is lent or
    /// gone, gets the one put back last.
    #[test]
    fn a_thread_gets_back_the_connection_it_read_with() {
        let conn = |name: &str| {
            let conn = Connection::open_in_memory().unwrap();
            conn.execute_batch(&format!("CREATE TABLE {name} (x)"))
                .unwrap();
            conn
        };
        let name = |conn: &Connection| -> String {
            conn.query_row("SELECT name FROM sqlite_schema", [], |r| r.get(0))
                .unwrap()
        };
        let mut pool = Pool::default();
        assert!(pool.take(1).is_none());
        for (epoch, name, thread) in [(7, "first", 1), (7, "second", 2), (8, "third", 3)] {
            pool.idle.push(Idle {
                epoch,
                conn: conn(name),
                thread,
            });
        }
        let (epoch, mine) = pool.take(1).unwrap();
        assert_eq!((epoch, name(&mine).as_str()), (7, "first"));
        let (epoch, other) = pool.take(4).unwrap();
        assert_eq!((epoch, name(&other).as_str()), (8, "third"));
        let (_, again) = pool.take(1).unwrap();
        assert_eq!(name(&again), "second");
        assert!(pool.take(2).is_none());
    }
}
