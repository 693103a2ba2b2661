//! Keeping the L1s of the processes that share one L2 file coherent.
//!
//! Every write, delete, tag invalidation and clear appends a row to the
//! `changes` table of the file, in the same transaction as the change itself,
//! numbered by a counter kept in the `meta` table (`change_seq`): the log is
//! numbered in commit order across every process. A row names the key that
//! changed, or the tag that was invalidated, or neither (a clear), and the
//! origin: a random number drawn by each open cache (and drawn again in a
//! forked child), so that a process skips its own changes, which it already
//! applied to its L1. A write replayed from the journal of a process that
//! ended is logged with no cache's origin: the replaying cache's L1 follows
//! it too.
//!
//! Each cache polls the log through [`Watch`] at most every
//! `sqlite.coherence_interval` on its next access, before it serves from L1
//! (and on the first access after the wall clock was stepped back):
//! first `PRAGMA data_version` (which changes only when another connection
//! committed, and costs no read of the file), then, if it changed, the rows
//! after the last one it saw. When the rows it needs were trimmed (a process
//! that slept through more than [`LOG_KEEP`] changes), or the file was
//! replaced, it drops its whole L1 instead. Hence the bound: a process never
//! serves, from L1, a value that another process replaced more than one
//! interval before.
//!
//! Evictions and purges of expired rows are not logged: the value another
//! process holds in L1 is still the value that was stored.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::Result;

/// The schema step that adds the change log.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE changes (
        seq    INTEGER PRIMARY KEY,
        origin INTEGER NOT NULL,
        key    TEXT,
        tag    TEXT
    );
    INSERT INTO meta (name, value) VALUES ('change_seq', 0);
";

/// How many of the latest changes the log keeps. A process that has not
/// looked at the log for longer than that clears its L1.
pub(crate) const LOG_KEEP: u64 = 16_384;

/// The log is trimmed by a write that crosses a multiple of this many changes.
const TRIM_EVERY: u64 = 1024;

const SQL_HEAD: &str = "SELECT value FROM meta WHERE name = 'change_seq'";
const SQL_APPEND: &str = "INSERT INTO changes (seq, origin, key, tag) VALUES (?1, ?2, ?3, ?4)";

/// What changed in the file since the last poll, by other caches.
///
/// `head` is the number of the last change the poll covered. A cache drops
/// what others changed and, with it, every write of its own numbered up to
/// `head` that it has not yet applied to its L1: such a write may be older
/// than a change it was just told about (and will not be told again), so
/// applying it later could put back a value another cache replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Changes {
    /// Nothing another cache wrote.
    None,
    /// These keys changed, and entries with these tags were invalidated.
    Some {
        keys: Vec<String>,
        tags: Vec<String>,
        head: u64,
    },
    /// Anything may have changed: drop every L1 entry.
    All { head: u64 },
}

/// Appends to the change log inside one write transaction.
pub(crate) struct ChangeLog {
    origin: i64,
    start: u64,
    last: u64,
}

impl ChangeLog {
    /// Starts numbering after the file's last change.
    pub(crate) fn open(tx: &Transaction<'_>, origin: i64) -> Result<Self> {
        let last = tx
            .prepare_cached(SQL_HEAD)?
            .query_row([], |r| r.get::<_, i64>(0))? as u64;
        Ok(Self {
            origin,
            start: last,
            last,
        })
    }

    /// Logs a change to `key`, or the invalidation of `tag`, or (neither) a
    /// clear; returns its number.
    pub(crate) fn record(
        &mut self,
        tx: &Transaction<'_>,
        key: Option<&str>,
        tag: Option<&str>,
    ) -> Result<u64> {
        self.append(tx, self.origin, key, tag)
    }

    /// As [`ChangeLog::record`], for a change no open cache made (a write
    /// replayed from the journal of a process that ended): every cache
    /// follows it, the one logging it too.
    pub(crate) fn record_foreign(&mut self, tx: &Transaction<'_>, key: &str) -> Result<u64> {
        self.append(tx, NO_ORIGIN, Some(key), None)
    }

    fn append(
        &mut self,
        tx: &Transaction<'_>,
        origin: i64,
        key: Option<&str>,
        tag: Option<&str>,
    ) -> Result<u64> {
        self.last += 1;
        tx.prepare_cached(SQL_APPEND)?
            .execute(params![self.last as i64, origin, key, tag])?;
        Ok(self.last)
    }

    /// Stores the new head of the log and trims its old rows now and then.
    pub(crate) fn finish(self, tx: &Transaction<'_>) -> Result<()> {
        if self.last == self.start {
            return Ok(());
        }
        tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'change_seq'")?
            .execute([self.last as i64])?;
        if self.last / TRIM_EVERY != self.start / TRIM_EVERY && self.last > LOG_KEEP {
            tx.prepare_cached("DELETE FROM changes WHERE seq <= ?1")?
                .execute([(self.last - LOG_KEEP) as i64])?;
        }
        Ok(())
    }
}

/// Drops the log's rows before change `seq`, a clear: whoever has not seen
/// them empties its L1 at the clear anyway (a missing row reads as a gap),
/// so the space they take goes back with the entries.
pub(crate) fn forget_before(tx: &Transaction<'_>, seq: u64) -> Result<()> {
    tx.prepare_cached("DELETE FROM changes WHERE seq < ?1")?
        .execute([seq as i64])?;
    Ok(())
}

/// One cache's view of the log: its own connection (so that
/// `data_version` tells other connections' commits from its own reads) and
/// the number of the last change it has seen.
pub(crate) struct Watch {
    conn: Connection,
    data_version: i64,
    seen: u64,
}

impl Watch {
    /// Starts watching on `conn` from the file's current head: whatever the
    /// caller's L1 held before is not vouched for ([`Changes::All`]).
    pub(crate) fn open(conn: Connection) -> Result<Self> {
        let data_version = data_version(&conn)?;
        let seen = conn.query_row(SQL_HEAD, [], |r| r.get::<_, i64>(0))? as u64;
        Ok(Self {
            conn,
            data_version,
            seen,
        })
    }

    /// The number of the last change seen.
    pub(crate) fn seen(&self) -> u64 {
        self.seen
    }

    /// The changes other caches committed since the last poll.
    pub(crate) fn poll(&mut self, origin: i64) -> Result<Changes> {
        let version = data_version(&self.conn)?;
        if version == self.data_version {
            return Ok(Changes::None);
        }
        // One read transaction: the head and the rows from one snapshot.
        let tx = self.conn.transaction()?;
        let head = tx
            .prepare_cached(SQL_HEAD)?
            .query_row([], |r| r.get::<_, i64>(0))
            .optional()?
            .unwrap_or(0) as u64;
        let changes = if head == self.seen {
            Changes::None
        } else if head < self.seen {
            // The log went backwards: this is another file now.
            Changes::All { head }
        } else {
            let mut stmt = tx.prepare_cached(
                "SELECT seq, origin, key, tag FROM changes WHERE seq > ?1 ORDER BY seq",
            )?;
            let rows = stmt
                .query_map([self.seen as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            collect(self.seen, head, origin, rows)
        };
        tx.commit()?;
        self.data_version = version;
        self.seen = head;
        Ok(changes)
    }
}

type LogRow = (u64, i64, Option<String>, Option<String>);

/// Folds the rows after `seen` (up to `head`) into what another cache
/// changed; [`Changes::All`] when rows are missing or one is a clear.
fn collect(seen: u64, head: u64, origin: i64, rows: Vec<LogRow>) -> Changes {
    if rows.first().map(|r| r.0) != Some(seen + 1) || rows.last().map(|r| r.0) != Some(head) {
        return Changes::All { head };
    }
    let (mut keys, mut tags) = (Vec::new(), Vec::new());
    for (_, from, key, tag) in rows {
        if from == origin {
            continue;
        }
        match (key, tag) {
            (Some(key), _) => keys.push(key),
            (None, Some(tag)) => tags.push(tag),
            (None, None) => return Changes::All { head },
        }
    }
    if keys.is_empty() && tags.is_empty() {
        return Changes::None;
    }
    keys.sort_unstable();
    keys.dedup();
    tags.sort_unstable();
    tags.dedup();
    Changes::Some { keys, tags, head }
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
}

/// A number that tells this cache's changes from every other's.
pub(crate) fn new_origin() -> i64 {
    use std::hash::{BuildHasher, RandomState};
    static OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let opened = OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    match RandomState::new().hash_one((std::process::id(), opened, now)) as i64 {
        NO_ORIGIN => 1,
        origin => origin,
    }
}

/// The origin of a change no open cache made (see
/// [`ChangeLog::record_foreign`]): never drawn by [`new_origin`].
const NO_ORIGIN: i64 = 0;

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64, origin: i64, key: Option<&str>, tag: Option<&str>) -> LogRow {
        (seq, origin, key.map(str::to_owned), tag.map(str::to_owned))
    }

    #[test]
    fn own_changes_are_skipped_and_others_collected() {
        let rows = vec![
            row(4, 1, Some("a"), None),
            row(5, 2, Some("b"), None),
            row(6, 2, None, Some("t")),
            row(7, 2, Some("b"), None),
        ];
        assert_eq!(
            collect(3, 7, 1, rows),
            Changes::Some {
                keys: vec!["b".into()],
                tags: vec!["t".into()],
                head: 7
            }
        );
        assert_eq!(
            collect(3, 4, 1, vec![row(4, 1, Some("a"), None)]),
            Changes::None
        );
    }

    #[test]
    fn a_gap_or_a_clear_means_everything() {
        assert_eq!(
            collect(3, 5, 1, vec![row(5, 2, Some("a"), None)]),
            Changes::All { head: 5 }
        );
        assert_eq!(collect(3, 5, 1, vec![]), Changes::All { head: 5 });
        assert_eq!(
            collect(3, 4, 1, vec![row(4, 2, None, None)]),
            Changes::All { head: 4 }
        );
        // A clear of this cache's own is already applied.
        assert_eq!(collect(3, 4, 1, vec![row(4, 1, None, None)]), Changes::None);
    }
}
