//! Damage: telling a damaged tierstack file from everything else, setting
//! it aside, and checking a file page by page.
//!
//! Damage (`SQLITE_CORRUPT`, `SQLITE_NOTADB`) found while opening (by the
//! schema, and the cheap probes of [`check_structure`]) or by any later call
//! (see `recovery`) is handled as `sqlite.on_corrupt` says: with `rebuild`,
//! a file whose header shows it is a tierstack cache is set aside as
//! `<name>.corrupt-<unix time>` (its `-wal` beside it as
//! `<name>.corrupt-<unix time>-wal`) and a fresh one is created; with
//! `fail`, the error says so and nothing is touched. [`check`] (`tierstack
//! check`) reads every page.

use std::fs::File;
use std::io::ErrorKind as IoErrorKind;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::file::{Mode, connect, io_error, regular, suffixed, wal_files};
use super::schema::{APPLICATION_ID, check_identity};
use crate::error::{Error, ErrorKind, Result};

/// `err` (damage in `path`, `sqlite.on_corrupt` = `fail`) saying so.
pub(super) fn left_as_is(path: &Path, err: Error) -> Error {
    err.context(format!(
        "{} is damaged and was left as it is (sqlite.on_corrupt is \"fail\")",
        path.display()
    ))
}

/// Cheap probes for damage at open: the meta rows, and the first and last
/// pages of the entries and their recency index (a few pages each, however
/// large the file).
pub(super) fn check_structure(conn: &Connection) -> Result<()> {
    conn.query_row(
        "SELECT (SELECT count(*) FROM meta), (SELECT max(id) FROM entries), \
         (SELECT min(last_access_ms) FROM entries)",
        [],
        |_| Ok(()),
    )?;
    Ok(())
}

/// What [`check`] found in a cache file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Integrity {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, one finding a line (SQLite's integrity check reports
    /// at most 100); empty when nothing is.
    pub problems: Vec<String>,
}

impl Integrity {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the cache file at `path` without changing it: SQLite's
/// `integrity_check` over every page (index entries included), then whether
/// the totals tierstack keeps match the rows. Reads the whole file, so it
/// takes time in proportion to its size; other processes may use the file
/// meanwhile.
///
/// A file whose header does not show a tierstack cache (another program's,
/// or one whose first page is damaged) is an [`ErrorKind::Corrupt`] error; a
/// missing or unreadable one, [`ErrorKind::Io`]; one from a newer tierstack,
/// [`ErrorKind::Incompatible`].
pub fn check(path: &Path) -> Result<Integrity> {
    let file = File::open(path).map_err(|e| io_error(path, "opening it", e))?;
    regular(path, &file)?;
    let len = file
        .metadata()
        .map_err(|e| io_error(path, "reading its metadata", e))?
        .len();
    if len == 0 {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!("{} is empty: not a tierstack cache yet", path.display()),
        ));
    }
    if !has_tierstack_header(path) {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "{}: its header does not show a tierstack cache (another program's file, \
                 or a cache whose first page is damaged)",
                path.display()
            ),
        ));
    }
    // Without a -wal there is nothing but the file to read: immutable, so
    // that checking creates no -wal or -shm beside it.
    let immutable = !wal_files(path)[0].exists();
    let conn =
        connect(path, Mode::ReadOnly { immutable }).map_err(|e| e.context(path.display()))?;
    let mut problems = Vec::new();
    match check_identity(&conn) {
        Err(err) if is_damage(&err) => problems.push(err.message().to_owned()),
        Err(err) => return Err(err.context(path.display())),
        Ok(()) => {}
    }
    let pages = (|| {
        let mut stmt = conn.prepare("PRAGMA integrity_check")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<rusqlite::Result<Vec<String>>>()
    })();
    match pages {
        Ok(rows) if rows == ["ok"] => {}
        Ok(rows) => problems.extend(rows),
        Err(e) => problems.push(format!("sqlite: {e}")),
    }
    if problems.is_empty() {
        let totals = conn.query_row(
            "SELECT (SELECT value FROM meta WHERE name = 'total_bytes'), \
             (SELECT value FROM meta WHERE name = 'entry_count'), \
             (SELECT coalesce(sum(size), 0) FROM entries), (SELECT count(*) FROM entries)",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            },
        );
        match totals {
            Ok((bytes, count, sum, rows)) => {
                if (bytes, count) != (sum, rows) {
                    problems.push(format!(
                        "the totals kept in meta ({count} entries, {bytes} bytes) do not match \
                         the rows ({rows} entries, {sum} bytes)"
                    ));
                }
            }
            Err(e) => problems.push(format!("sqlite: {e}")),
        }
    }
    Ok(Integrity {
        path: path.to_owned(),
        problems,
    })
}

/// Whether `err` is SQLite reporting a damaged file.
pub(super) fn is_damage(err: &Error) -> bool {
    let source = std::error::Error::source(err).and_then(|s| s.downcast_ref::<rusqlite::Error>());
    matches!(
        source.and_then(rusqlite::Error::sqlite_error_code),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// Whether the file at `path` starts with a SQLite header whose
/// `application_id` (bytes 68-71, big-endian) is tierstack's.
pub(super) fn has_tierstack_header(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 100];
    let read = File::open(path).and_then(|mut f| f.read_exact(&mut header));
    read.is_ok()
        && header.starts_with(b"SQLite format 3\0")
        && i64::from(u32::from_be_bytes([
            header[68], header[69], header[70], header[71],
        ])) == APPLICATION_ID
}

/// Moves the damaged file at `path` to `<name>.corrupt-<unix time>` (with
/// `-2`, `-3`, … if taken) and its `-wal` beside it; removes its `-shm`
/// (an index of the `-wal`, rebuilt from it when the copy is opened).
/// Returns the new name.
pub(super) fn set_aside(path: &Path) -> Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = suffixed(path, &format!(".corrupt-{secs}"));
    let mut n = 1;
    while aside.exists() || wal_files(&aside)[0].exists() {
        n += 1;
        aside = suffixed(path, &format!(".corrupt-{secs}-{n}"));
    }
    std::fs::rename(path, &aside).map_err(|e| io_error(path, "setting it aside", e))?;
    let [wal, shm] = wal_files(path);
    match std::fs::rename(&wal, &wal_files(&aside)[0]) {
        Err(e) if e.kind() != IoErrorKind::NotFound => {
            return Err(io_error(&wal, "setting it aside", e));
        }
        _ => {}
    }
    match std::fs::remove_file(&shm) {
        Err(e) if e.kind() != IoErrorKind::NotFound => Err(io_error(&shm, "removing it", e)),
        _ => Ok(aside),
    }
}
