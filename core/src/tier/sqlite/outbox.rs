//! The file's side of the write-behind outbox (see [`crate::outbox`]).
//!
//! `outbox` holds one row per key with a write for the source not yet
//! delivered: written in the same transaction as the key's row in
//! `entries`, and committed with `synchronous = FULL` (see
//! [`SqliteTier::write`]), so that a write in the outbox survives a power
//! loss, not only a crash of the process. (A write-behind `set` reaches it
//! through the process's journal, see [`super::journal`].) A later write of the key
//! replaces the row (last write wins) under a new `version`, the change
//! number of the write, which also orders deliveries. A delivery removes
//! the row only if its version is still the one delivered.
//!
//! `dead_letters` holds, per key, the latest write whose last attempt
//! failed. `outbox_lease` names the one process that drains the outbox.

use rusqlite::{OptionalExtension, Transaction, params};

use super::SqliteTier;
use crate::error::Result;

/// What the outbox row of a write-behind write carries besides the write.
#[derive(Debug, Clone)]
pub(crate) struct Behind {
    /// Names the write for the source, the same on every attempt.
    pub(crate) idempotency: WriteId,
    /// When the write was made.
    pub(crate) now_ms: u64,
}

/// A write's idempotency key: the writing process's nonce and the write's
/// number in it, written `{nonce:016x}-{n}` (text only when the outbox row
/// is written, off a write-behind `set`'s path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriteId {
    pub(crate) nonce: u64,
    pub(crate) n: u64,
}

impl std::fmt::Display for WriteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}-{}", self.nonce, self.n)
    }
}

/// Migration to schema 6.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE outbox (
        key         TEXT    PRIMARY KEY,
        version     INTEGER NOT NULL,
        op          INTEGER NOT NULL,
        value       BLOB,
        idempotency TEXT    NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        next_ms     INTEGER NOT NULL,
        created_ms  INTEGER NOT NULL,
        last_error  TEXT
    ) WITHOUT ROWID;
    CREATE INDEX outbox_by_version ON outbox (version);
    CREATE TABLE dead_letters (
        key         TEXT    PRIMARY KEY,
        version     INTEGER NOT NULL,
        op          INTEGER NOT NULL,
        value       BLOB,
        idempotency TEXT    NOT NULL,
        attempts    INTEGER NOT NULL,
        created_ms  INTEGER NOT NULL,
        failed_ms   INTEGER NOT NULL,
        last_error  TEXT    NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE outbox_lease (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        holder   INTEGER NOT NULL,
        pid      INTEGER NOT NULL,
        until_ms INTEGER NOT NULL
    );
";

/// What a write asks of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxOp {
    /// Store the value.
    Store,
    /// Remove the key.
    Remove,
}

impl OutboxOp {
    fn code(self) -> i64 {
        match self {
            OutboxOp::Store => 1,
            OutboxOp::Remove => 0,
        }
    }

    fn from_code(code: i64) -> Self {
        if code == 1 {
            OutboxOp::Store
        } else {
            OutboxOp::Remove
        }
    }

    /// `"store"` or `"remove"`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxOp::Store => "store",
            OutboxOp::Remove => "remove",
        }
    }
}

/// A write waiting for the source (or, in `dead_letters`, given up on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The key.
    pub key: String,
    /// Orders writes; a newer write of the key has a higher one.
    pub version: u64,
    /// Store or remove.
    pub op: OutboxOp,
    /// The value to store (`None` for a remove).
    pub value: Option<bytes::Bytes>,
    /// Names this write for the source, the same on every attempt.
    pub idempotency_key: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the write was made (ms since the Unix epoch).
    pub created_ms: u64,
    /// The last attempt's error, if any.
    pub last_error: Option<String>,
    /// When it was moved to the dead letters (ms since the Unix epoch; 0
    /// while pending).
    pub failed_ms: u64,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The source took it: the row goes, unless a newer write replaced it.
    Delivered,
    /// It failed: try again at `next_ms`.
    Retry { next_ms: u64, error: String },
    /// It failed for the last time: to the dead letters.
    Dead { error: String },
}

/// Counts of the outbox in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Depth {
    pub(crate) pending: u64,
    pub(crate) oldest_ms: Option<u64>,
    pub(crate) retrying: u64,
    pub(crate) dead: u64,
    pub(crate) next_due_ms: Option<u64>,
}

/// Queues `key`'s write for the source, replacing any pending one and
/// dropping the key's dead letter (this write supersedes it: retried later,
/// it would put an older value back); part of the transaction that writes
/// the key's row.
pub(crate) fn enqueue(
    tx: &Transaction<'_>,
    key: &str,
    version: u64,
    value: Option<&[u8]>,
    idempotency_key: &str,
    now_ms: u64,
) -> rusqlite::Result<()> {
    let op = if value.is_some() {
        OutboxOp::Store
    } else {
        OutboxOp::Remove
    };
    tx.prepare_cached(
        "INSERT INTO outbox (key, version, op, value, idempotency, attempts, next_ms, created_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6) ON CONFLICT (key) DO UPDATE SET \
         version = excluded.version, op = excluded.op, value = excluded.value, \
         idempotency = excluded.idempotency, attempts = 0, next_ms = excluded.next_ms, \
         created_ms = excluded.created_ms, last_error = NULL",
    )?
    .execute(params![
        key,
        version as i64,
        op.code(),
        value,
        idempotency_key,
        now_ms as i64
    ])?;
    tx.prepare_cached("DELETE FROM dead_letters WHERE key = ?1")?
        .execute([key])?;
    Ok(())
}

fn pending_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<Pending> {
    let value: Option<Vec<u8>> = r.get(3)?;
    Ok(Pending {
        key: r.get(0)?,
        version: r.get::<_, i64>(1)? as u64,
        op: OutboxOp::from_code(r.get(2)?),
        value: value.map(bytes::Bytes::from),
        idempotency_key: r.get(4)?,
        attempts: r.get::<_, i64>(5)?.max(0) as u32,
        created_ms: r.get::<_, i64>(6)?.max(0) as u64,
        last_error: r.get(7)?,
        failed_ms: r.get::<_, i64>(8)?.max(0) as u64,
    })
}

impl SqliteTier {
    /// Up to `limit` writes due at `now_ms`, oldest first.
    pub(crate) fn outbox_due(&self, now_ms: u64, limit: usize) -> Result<Vec<Pending>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, version, op, value, idempotency, attempts, created_ms, last_error, 0 \
                 FROM outbox WHERE next_ms <= ?1 ORDER BY version LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now_ms as i64, limit as i64], pending_from)?;
            rows.collect()
        })
    }

    /// Records what became of delivered or failed writes, in one
    /// transaction.
    pub(crate) fn outbox_settle(&self, settled: &[(Pending, Attempt)], now_ms: u64) -> Result<()> {
        self.with_writer(|tx| {
            for (write, attempt) in settled {
                let (key, version) = (&write.key, write.version as i64);
                match attempt {
                    Attempt::Delivered => {
                        tx.prepare_cached("DELETE FROM outbox WHERE key = ?1 AND version = ?2")?
                            .execute(params![key, version])?;
                    }
                    Attempt::Retry { next_ms, error } => {
                        tx.prepare_cached(
                            "UPDATE outbox SET attempts = attempts + 1, next_ms = ?3, \
                             last_error = ?4 WHERE key = ?1 AND version = ?2",
                        )?
                        .execute(params![
                            key,
                            version,
                            *next_ms as i64,
                            error
                        ])?;
                    }
                    Attempt::Dead { error } => {
                        let moved = tx
                            .prepare_cached(
                                "INSERT OR REPLACE INTO dead_letters (key, version, op, value, \
                                 idempotency, attempts, created_ms, failed_ms, last_error) \
                                 SELECT key, version, op, value, idempotency, attempts + 1, \
                                 created_ms, ?3, ?4 FROM outbox WHERE key = ?1 AND version = ?2",
                            )?
                            .execute(params![key, version, now_ms as i64, error])?;
                        if moved > 0 {
                            tx.prepare_cached(
                                "DELETE FROM outbox WHERE key = ?1 AND version = ?2",
                            )?
                            .execute(params![key, version])?;
                        }
                    }
                }
            }
            Ok(())
        })
    }

    /// How many writes are pending, the oldest's age, and the dead letters.
    pub(crate) fn outbox_depth(&self) -> Result<Depth> {
        self.read(|conn| {
            let (pending, oldest, retrying, next_due) = conn.query_row(
                "SELECT count(*), min(created_ms), coalesce(sum(attempts > 0), 0), min(next_ms) \
                 FROM outbox",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                },
            )?;
            let dead: i64 =
                conn.query_row("SELECT count(*) FROM dead_letters", [], |r| r.get(0))?;
            Ok(Depth {
                pending: pending as u64,
                oldest_ms: oldest.map(|v| v.max(0) as u64),
                retrying: retrying as u64,
                dead: dead as u64,
                next_due_ms: next_due.map(|v| v.max(0) as u64),
            })
        })
    }

    /// The writes waiting for the source, oldest first.
    pub(crate) fn outbox_pending(&self) -> Result<Vec<Pending>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, version, op, value, idempotency, attempts, created_ms, last_error, 0 \
                 FROM outbox ORDER BY version",
            )?;
            let rows = stmt.query_map([], pending_from)?;
            rows.collect()
        })
    }

    /// The dead letters, oldest first.
    pub(crate) fn dead_letters(&self) -> Result<Vec<Pending>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, version, op, value, idempotency, attempts, created_ms, last_error, \
                 failed_ms FROM dead_letters ORDER BY version",
            )?;
            let rows = stmt.query_map([], pending_from)?;
            rows.collect()
        })
    }

    /// Puts the dead letters back in the outbox with their attempts reset,
    /// due at `now_ms`. (A key written since its write died has no dead
    /// letter any more: see [`enqueue`].) Returns how many were queued.
    pub(crate) fn retry_dead_letters(&self, now_ms: u64) -> Result<u64> {
        self.with_writer(|tx| {
            let queued = tx.execute(
                "INSERT INTO outbox (key, version, op, value, idempotency, attempts, next_ms, \
                 created_ms, last_error) \
                 SELECT key, version, op, value, idempotency, 0, ?1, created_ms, last_error \
                 FROM dead_letters WHERE true ON CONFLICT (key) DO NOTHING",
                [now_ms as i64],
            )?;
            tx.execute("DELETE FROM dead_letters", [])?;
            Ok(queued as u64)
        })
    }

    /// Every tag rows carry, with how many rows carry it (expired rows
    /// included), most used first.
    pub(crate) fn tag_counts(&self) -> Result<Vec<(String, u64)>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT t.value, count(*) AS n FROM entries, json_each(entries.tags) AS t \
                 WHERE entries.tags IS NOT NULL GROUP BY t.value ORDER BY n DESC, t.value",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            rows.collect()
        })
    }

    /// Deletes every dead letter; returns how many there were.
    pub(crate) fn purge_dead_letters(&self) -> Result<u64> {
        self.with_writer(|tx| Ok(tx.execute("DELETE FROM dead_letters", [])? as u64))
    }

    /// Takes or renews the drainer's lease for `holder` until
    /// `now_ms + lease_ms`, unless another holder's lease runs and its
    /// process is alive (the file is per host, so its pid tells); whether
    /// it is held. A holder new to the lease makes every pending write due.
    /// A lease with more than half of it to run is not renewed (no write).
    pub(crate) fn outbox_lease(&self, holder: i64, now_ms: u64, lease_ms: u64) -> Result<bool> {
        let other = self.read(|conn| {
            conn.prepare_cached("SELECT holder, pid, until_ms FROM outbox_lease WHERE id = 1")?
                .query_row([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .optional()
        })?;
        let (other, dead) = match other {
            Some((h, pid, until)) if h != holder && until > now_ms as i64 => (h, !pid_alive(pid)),
            // Held, with more than half of it to run: no write to renew it.
            Some((h, _, until))
                if h == holder && until > now_ms.saturating_add(lease_ms / 2) as i64 =>
            {
                return Ok(true);
            }
            _ => (holder, false),
        };
        if other != holder && !dead {
            return Ok(false);
        }
        self.with_writer(|tx| {
            let before: Option<i64> = tx
                .prepare_cached("SELECT holder FROM outbox_lease WHERE id = 1")?
                .query_row([], |r| r.get(0))
                .optional()?;
            let taken = tx
                .prepare_cached(
                    "INSERT INTO outbox_lease (id, holder, pid, until_ms) VALUES (1, ?1, ?2, ?3) \
                     ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, pid = excluded.pid, \
                     until_ms = excluded.until_ms \
                     WHERE outbox_lease.holder = excluded.holder OR outbox_lease.until_ms <= ?4 \
                     OR outbox_lease.holder = ?5",
                )?
                .execute(params![
                    holder,
                    i64::from(std::process::id()),
                    now_ms.saturating_add(lease_ms) as i64,
                    now_ms as i64,
                    // The dead holder seen above, whose lease is taken over.
                    if dead { other } else { holder }
                ])?;
            // A new drainer (this process started, or took over from one
            // that stopped or died) tries every pending write at once,
            // rather than at the times its predecessor's backoff set.
            if taken > 0 && before != Some(holder) {
                tx.prepare_cached("UPDATE outbox SET next_ms = ?1 WHERE next_ms > ?1")?
                    .execute([now_ms as i64])?;
            }
            Ok(taken > 0)
        })
    }

    /// Gives up `holder`'s lease, so that another process may drain at once.
    pub(crate) fn end_outbox_lease(&self, holder: i64) -> Result<()> {
        self.with_writer(|tx| {
            tx.prepare_cached("UPDATE outbox_lease SET until_ms = 0 WHERE id = 1 AND holder = ?1")?
                .execute([holder])?;
            Ok(())
        })
    }
}

/// Whether process `pid` exists on this host.
fn pid_alive(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
