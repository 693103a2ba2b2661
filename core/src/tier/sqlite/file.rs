//! Opening the cache file: creating it with its directory, deciding
//! whether it can be written, connecting, switching it to WAL, and having it
//! checked and migrated forward (see [`super::schema`]).
//!
//! How a path is opened:
//! - missing: its directory (0700) and the file (0600) are created, and it
//!   is opened read-write;
//! - a file this process can write, in a directory where SQLite can create
//!   the `-wal` and `-shm` files (or where they exist): read-write;
//! - a file this process can read but not write (a read-only file system or
//!   bind mount, an immutable file, a file mode or directory that forbids
//!   writing): read-only. Reads are served and every write fails with
//!   [`ErrorKind::ReadOnly`]. When the `-wal` and `-shm` files exist, or the
//!   directory lets SQLite create them, the file is read through them and
//!   changes that a writer elsewhere makes are seen. Otherwise it is opened
//!   `immutable`: SQLite then takes no locks and assumes that nobody changes
//!   the file, which holds when no process can create the `-shm` file a
//!   writer needs. A read-only file must be a tierstack cache of this
//!   version's schema: it cannot be created or migrated;
//! - anything else (a directory, a file that cannot be read, a directory
//!   that cannot be created): [`ErrorKind::Io`] with the operating system's
//!   reason.
//!
//! Damage found while opening is handled as `sqlite.on_corrupt` says (see
//! [`super::damage`]).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::ErrorKind as IoErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::BUSY_TIMEOUT;
use super::damage::{check_structure, has_tierstack_header, is_damage, left_as_is, set_aside};
use super::schema::{SCHEMA_VERSION, check_identity, migrate};
use super::space::WAL_SIZE_LIMIT;
use crate::config::OnCorrupt;
use crate::error::{Error, ErrorKind, Result};

/// How the file is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    ReadWrite,
    /// Reads only; `immutable`: without the `-wal` and `-shm` files, which
    /// cannot be created (see the module docs).
    ReadOnly {
        immutable: bool,
    },
}

/// Which file a path names: its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The identity of the file at `path`; `None` when there is none.
pub(super) fn identity(path: &Path) -> std::io::Result<Option<FileId>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(FileId::of(&meta))),
        Err(e) if e.kind() == IoErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// An opened cache file.
pub(super) struct Opened {
    /// The file opened, as found before connecting: if the path is replaced
    /// while connecting, the next check sees a difference and reopens.
    pub(super) id: FileId,
    pub(super) mode: Mode,
    /// Why the file is read-only, for the message of a refused write.
    pub(super) read_only_because: Option<String>,
    /// The writer connection; `None` when read-only.
    pub(super) writer: Option<Connection>,
    /// Where a damaged file found at the path was moved, if one was.
    pub(super) set_aside: Option<PathBuf>,
}

/// Opens (creating if needed) the cache file at `path`; see the module docs.
pub(super) fn open(path: &Path, on_corrupt: OnCorrupt) -> Result<Opened> {
    let err = match open_once(path) {
        Err(err) if is_damage(&err) => err,
        opened => return opened,
    };
    if !has_tierstack_header(path) {
        // Not recognisably a cache: not ours to move.
        return Err(err);
    }
    if on_corrupt == OnCorrupt::Fail {
        return Err(left_as_is(path, err));
    }
    // Other processes may be writing the damaged file: holding its write
    // lock while it is moved means none commits there after the move (their
    // next write sees the path changed and follows it).
    let held = connect(path, Mode::ReadWrite)
        .ok()
        .filter(|conn| conn.execute_batch("BEGIN IMMEDIATE").is_ok());
    let aside = set_aside(path).map_err(|e| {
        err.context(format!(
            "{} is damaged and could not be set aside ({})",
            path.display(),
            e.message()
        ))
    })?;
    let mut opened = open_once(path)?;
    drop(held);
    opened.set_aside = Some(aside);
    Ok(opened)
}

fn open_once(path: &Path) -> Result<Opened> {
    let (id, read_only) = probe(path)?;
    let (mode, read_only_because) = match read_only {
        None => (Mode::ReadWrite, None),
        Some(because) => {
            let immutable = !wal_files_exist(path) && dir_writable(path).is_err();
            (Mode::ReadOnly { immutable }, Some(because))
        }
    };
    let writer = match mode {
        Mode::ReadWrite => {
            let conn = prepare_file(path)?;
            check_structure(&conn).map_err(|e| e.context(path.display()))?;
            Some(conn)
        }
        Mode::ReadOnly { .. } => {
            let conn = connect(path, mode).map_err(|e| e.context(path.display()))?;
            check_readable(
                &conn,
                path,
                read_only_because.as_deref().unwrap_or_default(),
            )?;
            check_structure(&conn).map_err(|e| e.context(path.display()))?;
            None
        }
    };
    Ok(Opened {
        id,
        mode,
        read_only_because,
        writer,
        set_aside: None,
    })
}

pub(super) fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

pub(super) fn io_error(path: &Path, doing: &str, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{}: {doing}: {e}", path.display())).with_source(e)
}

/// Creates the file if missing; its identity, and `None` if it can be
/// written, else why it cannot (it is then readable). Errors are
/// [`ErrorKind::Io`] with the operating system's reason.
fn probe(path: &Path) -> Result<(FileId, Option<String>)> {
    // O_NONBLOCK: opening a FIFO someone put there must not hang.
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == IoErrorKind::NotFound => {
            create_file(path)?;
            let id = identity(path)
                .map_err(|e| io_error(path, "reading its metadata", e))?
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Io,
                        format!("{} was removed as it was created", path.display()),
                    )
                })?;
            return Ok((id, None));
        }
        Err(e) if is_write_refused(&e) => {
            let file = File::open(path).map_err(|r| io_error(path, "opening it", r))?;
            return Ok((regular(path, &file)?, Some(e.to_string())));
        }
        Err(e) => return Err(io_error(path, "opening it", e)),
    };
    let id = regular(path, &file)?;
    // SQLite also writes the `-wal` and `-shm` files beside it.
    if !wal_files_exist(path)
        && let Err(e) = dir_writable(path)
    {
        return Ok((id, Some(format!("its directory is not writable: {e}"))));
    }
    Ok((id, None))
}

/// Whether `e` says that the file exists but may not be written.
fn is_write_refused(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EACCES | libc::EPERM | libc::EROFS | libc::ETXTBSY)
    )
}

/// The identity of `file`, opened at `path`, if it is a regular file.
pub(super) fn regular(path: &Path, file: &File) -> Result<FileId> {
    let meta = file
        .metadata()
        .map_err(|e| io_error(path, "reading its metadata", e))?;
    if meta.is_file() {
        return Ok(FileId::of(&meta));
    }
    Err(Error::new(
        ErrorKind::Io,
        format!("{}: not a regular file", path.display()),
    ))
}

/// `<path>-wal` and `<path>-shm`.
pub(super) fn wal_files(path: &Path) -> [PathBuf; 2] {
    ["-wal", "-shm"].map(|suffix| suffixed(path, suffix))
}

fn wal_files_exist(path: &Path) -> bool {
    wal_files(path).iter().all(|p| p.exists())
}

/// Whether this process may create files in `path`'s directory.
fn dir_writable(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(IoErrorKind::InvalidInput, e))?;
    // SAFETY: a NUL-terminated path; faccessat only reads it.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_dir.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

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

/// A connection to the file at `path` in `mode`.
pub(super) fn connect(path: &Path, mode: Mode) -> Result<Connection> {
    super::mutex::install();
    let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match mode {
        Mode::ReadWrite => {
            Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_READ_WRITE)?
        }
        Mode::ReadOnly { immutable: false } => {
            Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_READ_ONLY)?
        }
        Mode::ReadOnly { immutable: true } => Connection::open_with_flags(
            format!("file:{}?immutable=1", uri_path(path)),
            flags | OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )?,
    };
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(32);
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA mmap_size = 268435456; PRAGMA cache_size = -8192;",
    )?;
    if mode == Mode::ReadWrite {
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT as i64)?;
    }
    Ok(conn)
}

/// `path` for a `file:` URI: every byte but the unreserved ones and `/`
/// percent-encoded.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char);
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Checks that a file opened read-only can be served: a tierstack cache
/// of exactly this version's schema (it cannot be created or migrated).
fn check_readable(conn: &Connection, path: &Path, because: &str) -> Result<()> {
    let version = check_identity(conn)
        .and_then(|()| Ok(conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?))
        .map_err(|e| e.context(path.display()))?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let what = match version {
        0 => "it is empty and cannot be made a cache".to_owned(),
        _ => format!("it has schema version {version} and cannot be migrated to {SCHEMA_VERSION}"),
    };
    Err(Error::new(
        ErrorKind::ReadOnly,
        format!("{} is read-only ({because}): {what}", path.display()),
    ))
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
        let attempt = connect(path, Mode::ReadWrite).and_then(|mut conn| {
            check_identity(&conn)?;
            // Set before the first page is written: a new file can give
            // space back to the file system (see `space`). An existing
            // file keeps its mode.
            let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            if pages == 0 {
                conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")?;
            }
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
