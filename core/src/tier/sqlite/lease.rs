//! Load leases: single-flight across the processes sharing the file.
//!
//! A process about to ask the source for a key first takes the key's row in
//! `loads`: it records a holder (drawn per load), its process id and an
//! expiry. Other processes that miss the key meanwhile find the row held,
//! and wait on the file for the holder's value instead of asking the
//! source themselves. The holder stores the value, then ends its lease. A
//! lease ends without its holder when its expiry passes, or at once when
//! its process no longer exists (checked with `kill(pid, 0)`; a process in
//! another PID namespace looks dead, which costs a second load, never a
//! wrong value).
//!
//! The same table remembers a source's "not found" for `negative_ttl`
//! (`not_found = 1`), so that no process asks again before it expires.

use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteTier;
use crate::error::Result;

/// Migration to schema 3.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE loads (
        key       TEXT    PRIMARY KEY,
        holder    INTEGER NOT NULL,
        pid       INTEGER NOT NULL,
        not_found INTEGER NOT NULL,
        until_ms  INTEGER NOT NULL
    ) WITHOUT ROWID;
";

/// The state of a key's load, as the file tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lease {
    /// Nobody loads it: take the lease (or, from [`SqliteTier::lease`],
    /// the caller now holds it).
    Free,
    /// A fresh value is stored: read it.
    Filled,
    /// Another live holder is loading it.
    Held,
    /// The source said it does not exist; remembered until `until_ms`.
    NotFound {
        /// When the memory of it ends.
        until_ms: u64,
    },
}

impl SqliteTier {
    /// The state of `key`'s load, read without taking the write lock.
    pub(crate) fn lease_state(&self, key: &str, now_ms: u64) -> Result<Lease> {
        self.read(|conn| state(conn, key, now_ms))
    }

    /// Takes `key`'s lease for `holder` until `now_ms + lease_ms` if
    /// nobody holds it and no fresh value is stored; answers
    /// [`Lease::Free`] when taken, else what stands in the way.
    pub(crate) fn lease(
        &self,
        key: &str,
        holder: i64,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<Lease> {
        // Most misses find the key free: look first without the write lock
        // only when another process may be loading it.
        match self.lease_state(key, now_ms)? {
            Lease::Free => {}
            other => return Ok(other),
        }
        self.with_writer(|tx| {
            let found = state(tx, key, now_ms)?;
            if found == Lease::Free {
                tx.prepare_cached(
                    "INSERT INTO loads (key, holder, pid, not_found, until_ms) \
                     VALUES (?1, ?2, ?3, 0, ?4) ON CONFLICT (key) DO UPDATE SET \
                     holder = excluded.holder, pid = excluded.pid, not_found = 0, \
                     until_ms = excluded.until_ms",
                )?
                .execute(params![
                    key,
                    holder,
                    i64::from(std::process::id()),
                    now_ms.saturating_add(lease_ms) as i64
                ])?;
            }
            Ok(found)
        })
    }

    /// Ends `holder`'s lease of `key`; with `not_found_until`, the row
    /// stays as the memory of a "not found" until then.
    pub(crate) fn end_lease(
        &self,
        key: &str,
        holder: i64,
        not_found_until: Option<u64>,
    ) -> Result<()> {
        self.with_writer(|tx| {
            match not_found_until {
                Some(until) => tx
                    .prepare_cached(
                        "INSERT INTO loads (key, holder, pid, not_found, until_ms) \
                         VALUES (?1, ?2, ?3, 1, ?4) ON CONFLICT (key) DO UPDATE SET \
                         holder = excluded.holder, pid = excluded.pid, not_found = 1, \
                         until_ms = excluded.until_ms",
                    )?
                    .execute(params![
                        key,
                        holder,
                        i64::from(std::process::id()),
                        until as i64
                    ])?,
                None => tx
                    .prepare_cached("DELETE FROM loads WHERE key = ?1 AND holder = ?2")?
                    .execute(params![key, holder])?,
            };
            Ok(())
        })
    }
}

fn state(conn: &Connection, key: &str, now_ms: u64) -> rusqlite::Result<Lease> {
    let fresh: Option<i64> = conn
        .prepare_cached("SELECT expires_ms FROM entries WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?;
    if fresh.is_some_and(|expires| now_ms < expires as u64) {
        return Ok(Lease::Filled);
    }
    let row: Option<(i64, i64, i64)> = conn
        .prepare_cached("SELECT pid, not_found, until_ms FROM loads WHERE key = ?1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    Ok(match row {
        Some((_, 1, until)) if now_ms < until as u64 => Lease::NotFound {
            until_ms: until as u64,
        },
        Some((pid, 0, until)) if now_ms < until as u64 && alive(pid) => Lease::Held,
        _ => Lease::Free,
    })
}

/// Whether process `pid` exists (a zombie does, until reaped).
fn alive(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
