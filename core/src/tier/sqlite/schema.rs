//! The file's schema: its identity (`application_id`), the version this
//! build writes, the migrations that take an older file forward, and the
//! check that refuses a file of another program or a newer version.

use rusqlite::{Connection, TransactionBehavior};

use super::{lease, limits, maintenance, outbox};
use crate::coherence;
use crate::error::{Error, ErrorKind, Result};

/// The schema this version writes; files with a lower version are migrated.
pub const SCHEMA_VERSION: i64 = 8;

/// `PRAGMA application_id` of a tierstack file ("TSTK").
pub(super) const APPLICATION_ID: i64 = 0x5453_544B;

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
    maintenance::MIGRATION,
    // The file-wide number of the journaled write that stored the row (see
    // `journal::peers`), or of the last journaled write when a direct write
    // stored it; 0 in rows from before, and where no journal is kept. The
    // largest stored, in `meta`, is where numbering resumes when the
    // journals' counter is made again (a file copied without it).
    "ALTER TABLE entries ADD COLUMN write_order INTEGER NOT NULL DEFAULT 0;
     INSERT INTO meta (name, value) VALUES ('write_order', 0);",
];

/// Refuses a file that is not an empty database or a tierstack cache, or
/// that a newer version wrote. Reads only: a refused file is not modified.
pub(super) fn check_identity(conn: &Connection) -> Result<()> {
    // One statement, so one consistent snapshot even while another process
    // is creating the schema.
    let (app_id, version, objects): (i64, i64, i64) = conn.query_row(
        "SELECT (SELECT application_id FROM pragma_application_id()), \
         (SELECT user_version FROM pragma_user_version()), \
         (SELECT count(*) FROM sqlite_schema)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let fresh = app_id == 0 && version == 0 && objects == 0;
    if !fresh && app_id != APPLICATION_ID {
        return Err(Error::new(
            ErrorKind::Corrupt,
            "a SQLite database of another program, not a tierstack cache; it was left untouched",
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(Error::new(
            ErrorKind::Incompatible,
            format!(
                "schema version {version}; this tierstack reads up to {SCHEMA_VERSION}; \
                 it was left untouched"
            ),
        ));
    }
    Ok(())
}

pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let current =
        |conn: &Connection| conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
    if current(conn)? == SCHEMA_VERSION {
        // Up to date: opening writes nothing.
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another process may have migrated while we waited for the write lock.
    check_identity(&tx)?;
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(current(&tx)? as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", step as i64 + 1)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.commit()?;
    // Copied into the file at once, so that its header on disk shows a
    // tierstack cache from now on (what decides whether a damaged file may
    // be set aside); a busy checkpoint is not an error.
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    Ok(())
}
