//! Opening the cache file: creating it with its directory, connecting,
//! switching it to WAL, checking that it is a tierstack cache of a version
//! this one reads, and migrating it forward.

use std::fs::{DirBuilder, OpenOptions};
use std::io::ErrorKind as IoErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{APPLICATION_ID, BUSY_TIMEOUT, MIGRATIONS, SCHEMA_VERSION};
use crate::error::{Error, ErrorKind, Result};

/// Creates the parent directory (0700) and the file (0600) if missing.
pub(super) fn create_file(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                Error::new(ErrorKind::Io, format!("creating {}: {e}", dir.display())).with_source(e)
            })?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == IoErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(
            Error::new(ErrorKind::Io, format!("creating {}: {e}", path.display())).with_source(e),
        ),
    }
}

pub(super) fn connect(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(32);
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA mmap_size = 268435456; PRAGMA cache_size = -8192;",
    )?;
    Ok(conn)
}

/// Opens the writer connection, switches the file to WAL and migrates it.
///
/// Processes opening a new file at the same moment can get `SQLITE_BUSY`
/// without SQLite's busy handler being consulted (the switch to WAL and the
/// first schema read avoid waiting to rule out deadlock), so the whole step
/// is retried until [`BUSY_TIMEOUT`].
pub(super) fn prepare_file(path: &Path) -> Result<Connection> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        let attempt = connect(path).and_then(|mut conn| {
            check_identity(&conn)?;
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
                if !mode.eq_ignore_ascii_case("wal") {
                    return Err(Error::new(
                        ErrorKind::Storage,
                        format!("journal mode stayed {mode}; WAL is required"),
                    ));
                }
            }
            migrate(&mut conn)?;
            Ok(conn)
        });
        match attempt {
            Err(err) if is_busy(&err) && std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(err) => return Err(err.context(path.display())),
            ok => return ok,
        }
    }
}

fn is_busy(err: &Error) -> bool {
    let source = std::error::Error::source(err).and_then(|s| s.downcast_ref::<rusqlite::Error>());
    matches!(
        source.and_then(rusqlite::Error::sqlite_error_code),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Refuses a file that is not an empty database or a tierstack cache, or
/// that a newer version wrote. Reads only: a refused file is not modified.
fn check_identity(conn: &Connection) -> Result<()> {
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

fn migrate(conn: &mut Connection) -> Result<()> {
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
    Ok(())
}
