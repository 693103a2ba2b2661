//! Source limits shared by the processes on the file.
//!
//! A source's rate limit belongs to its token or address, not to one
//! process; so does the open breaker that a rate limit (or a run of
//! failures) causes. A row of `source_limits`, per scope (see
//! [`crate::Source::shared_scope`]), holds until when the source must not
//! be called and the latest rate-limit figures it sent, so that one
//! process's 403 stops the others until the reset too. The scope names a
//! token by a hash, never the token.

use rusqlite::{OptionalExtension, params};

use super::SqliteTier;
use crate::error::Result;
use crate::source::RateLimit;

/// Migration to schema 4.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE source_limits (
        scope         TEXT    PRIMARY KEY,
        open_until_ms INTEGER NOT NULL DEFAULT 0,
        rate_limit    INTEGER,
        remaining     INTEGER,
        reset_ms      INTEGER,
        updated_ms    INTEGER NOT NULL
    ) WITHOUT ROWID;
";

/// What the file holds for a scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SharedLimit {
    /// The source must not be called before this (ms since the Unix
    /// epoch); 0: no such bar.
    pub(crate) open_until_ms: u64,
    /// The latest rate-limit figures, if any were sent.
    pub(crate) rate_limit: Option<RateLimit>,
}

/// A change to a scope's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitUpdate {
    /// The breaker opened until then (kept if a later bar is stored).
    OpenUntil(u64),
    /// The breaker was closed by hand: the bar is lifted.
    Lift,
}

impl SqliteTier {
    /// The scope's row, read without the write lock.
    pub(crate) fn shared_limit(&self, scope: &str) -> Result<SharedLimit> {
        self.read(|conn| {
            let row = conn
                .prepare_cached(
                    "SELECT open_until_ms, rate_limit, remaining, reset_ms \
                     FROM source_limits WHERE scope = ?1",
                )?
                .query_row([scope], |r| {
                    let remaining: Option<i64> = r.get(2)?;
                    Ok(SharedLimit {
                        open_until_ms: r.get::<_, i64>(0)?.max(0) as u64,
                        rate_limit: remaining
                            .map(|remaining| -> rusqlite::Result<RateLimit> {
                                Ok(RateLimit {
                                    limit: r.get::<_, Option<i64>>(1)?.map(|v| v.max(0) as u64),
                                    remaining: remaining.max(0) as u64,
                                    reset_at_ms: r
                                        .get::<_, Option<i64>>(3)?
                                        .map(|v| v.max(0) as u64),
                                })
                            })
                            .transpose()?,
                    })
                })
                .optional()?;
            Ok(row.unwrap_or_default())
        })
    }

    /// Records a bar and/or rate-limit figures for `scope`.
    pub(crate) fn record_limit(
        &self,
        scope: &str,
        update: Option<LimitUpdate>,
        rate_limit: Option<RateLimit>,
        now_ms: u64,
    ) -> Result<()> {
        if update.is_none() && rate_limit.is_none() {
            return Ok(());
        }
        let as_i64 = |v: u64| v.min(i64::MAX as u64) as i64;
        self.with_writer(|tx| {
            tx.prepare_cached(
                "INSERT INTO source_limits (scope, updated_ms) VALUES (?1, ?2) \
                 ON CONFLICT (scope) DO UPDATE SET updated_ms = excluded.updated_ms",
            )?
            .execute(params![scope, as_i64(now_ms)])?;
            match update {
                Some(LimitUpdate::OpenUntil(until)) => {
                    tx.prepare_cached(
                        "UPDATE source_limits SET open_until_ms = max(open_until_ms, ?2) \
                         WHERE scope = ?1",
                    )?
                    .execute(params![scope, as_i64(until)])?;
                }
                Some(LimitUpdate::Lift) => {
                    tx.prepare_cached(
                        "UPDATE source_limits SET open_until_ms = 0 WHERE scope = ?1",
                    )?
                    .execute([scope])?;
                }
                None => {}
            }
            if let Some(limit) = rate_limit {
                tx.prepare_cached(
                    "UPDATE source_limits SET rate_limit = ?2, remaining = ?3, reset_ms = ?4 \
                     WHERE scope = ?1",
                )?
                .execute(params![
                    scope,
                    limit.limit.map(as_i64),
                    as_i64(limit.remaining),
                    limit.reset_at_ms.map(as_i64)
                ])?;
            }
            Ok(())
        })
    }
}
