//! The bare rusqlite peer: the simplest fast key-value table SQLite offers.

use std::path::Path;

use std::time::Instant;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};

use crate::BenchResult;
use crate::measure::Round;

/// The peer's table: a rowid table with a unique key.
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv \
     (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, value BLOB NOT NULL)";

/// The peer's point read.
pub const SQL_GET: &str = "SELECT value FROM kv WHERE key = ?1";

/// The peer's insert.
pub const SQL_INSERT: &str = "INSERT INTO kv (key, value) VALUES (?1, ?2)";

/// Opens (creating) `path` in WAL mode with `synchronous = NORMAL` and a
/// 256 MiB memory map, and creates the table if missing.
pub fn open(path: &Path) -> BenchResult<Connection> {
    let conn = Connection::open(path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("journal mode stayed {mode}").into());
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA mmap_size = 268435456;")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Inserts `items` in one transaction with one prepared statement.
pub fn insert_all<K: AsRef<str>, V: AsRef<[u8]>>(
    conn: &mut Connection,
    items: &[(K, V)],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare(SQL_INSERT)?;
        for (key, value) in items {
            insert.execute(params![key.as_ref(), value.as_ref()])?;
        }
    }
    tx.commit()
}

/// The value of `key`, copied out of SQLite.
#[inline]
pub fn get(conn: &Connection, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached(SQL_GET)?
        .query_row([key], |r| r.get(0))
        .optional()
}

/// How many of `items` the table holds with their value (none unless it
/// holds exactly as many rows).
pub fn verify<K: AsRef<str>, V: AsRef<[u8]>>(
    conn: &Connection,
    items: &[(K, V)],
) -> rusqlite::Result<usize> {
    if count(conn)? != items.len() as i64 {
        return Ok(0);
    }
    let mut verified = 0;
    for (key, value) in items {
        verified += usize::from(get(conn, key.as_ref())?.as_deref() == Some(value.as_ref()));
    }
    Ok(verified)
}

/// Rows in the table.
pub fn count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM kv", [], |r| r.get(0))
}

/// Inserts `items` one per transaction (each `INSERT` commits on its own),
/// as a cache that commits every single-key write does; only the inserts
/// are timed, then each item is read back.
pub fn commit_each(conn: &Connection, items: &[(String, Bytes)]) -> BenchResult<Round> {
    let start = Instant::now();
    {
        let mut insert = conn.prepare_cached(SQL_INSERT)?;
        for (key, value) in items {
            insert.execute(params![key, &value[..]])?;
        }
    }
    let elapsed = start.elapsed();
    let mut verified = 0;
    for (key, value) in items {
        verified += usize::from(get(conn, key)?.as_deref() == Some(&value[..]));
    }
    Ok(Round {
        elapsed,
        ops: items.len(),
        verified,
    })
}
