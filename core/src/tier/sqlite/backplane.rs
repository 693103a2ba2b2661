//! What the Redis backplane keeps in the file: the file's identity, and
//! where the processes on it have read the backplane's stream to.

use rusqlite::{OptionalExtension, params};

use super::SqliteTier;
use crate::error::Result;

impl SqliteTier {
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
}
