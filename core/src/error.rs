//! Errors: one flat, stable [`ErrorKind`] plus an [`Error`] carrying context.
//!
//! The kinds are part of the public contract. Each maps one to one onto a C
//! result code, a Python exception class and a Node `err.code` string; the
//! numbers returned by [`ErrorKind::code`] are never reused.

use std::fmt;
use std::sync::Arc;

/// What went wrong, as a stable category.
///
/// New kinds may be added (the enum is `non_exhaustive`); existing kinds keep
/// their name and number forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A key is empty, longer than 255 bytes, or holds a control character.
    InvalidKey,
    /// A configuration is malformed: unknown key, wrong type, out-of-range value.
    InvalidConfig,
    /// An argument other than a key or config is unusable (a negative TTL, a
    /// value larger than every tier can hold, a bad glob pattern).
    InvalidArgument,
    /// The cache was closed; no operation is possible any more.
    Closed,
    /// The SQLite tier failed (locked past the busy timeout, disk full, …).
    Storage,
    /// The file system refused something: the cache file or its directory
    /// cannot be created or read, or the path is a directory. The message
    /// carries the operating system's reason.
    Io,
    /// The cache file is not a database, is damaged, or belongs to another
    /// program. It is left untouched.
    Corrupt,
    /// The cache file was written by a newer tierstack whose schema this
    /// version cannot read. It is left untouched.
    Incompatible,
    /// A bug in tierstack: an invariant did not hold.
    Internal,
    /// A value is not what a host call needs: a JSON host read bytes that are
    /// not UTF-8 JSON, or was handed a value that cannot be encoded as JSON.
    /// What is stored is unchanged.
    InvalidValue,
    /// The cache file may be read but not written (a read-only file system,
    /// directory or file mode): it was opened read-only, reads are served,
    /// and every write is refused with this kind.
    ReadOnly,
    /// The source of truth (a host loader, GitHub) failed to answer: it
    /// raised, returned an error, or answered something unusable. No stale
    /// copy was there to serve instead.
    Source,
    /// The source was not asked because its circuit breaker is open (it
    /// failed or was rate limited recently), and no stale copy was there to
    /// serve instead. The message says until when.
    SourceUnavailable,
    /// Loading took longer than `fail_safe.hard_timeout` and was abandoned,
    /// and no stale copy was there to serve instead.
    Timeout,
}

impl ErrorKind {
    /// Every kind, in code order.
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::InvalidKey,
        ErrorKind::InvalidConfig,
        ErrorKind::InvalidArgument,
        ErrorKind::Closed,
        ErrorKind::Storage,
        ErrorKind::Io,
        ErrorKind::Corrupt,
        ErrorKind::Incompatible,
        ErrorKind::Internal,
        ErrorKind::InvalidValue,
        ErrorKind::ReadOnly,
        ErrorKind::Source,
        ErrorKind::SourceUnavailable,
        ErrorKind::Timeout,
    ];

    /// The stable number of this kind (the C result code); never 0, never reused.
    pub const fn code(self) -> u32 {
        match self {
            ErrorKind::InvalidKey => 1,
            ErrorKind::InvalidConfig => 2,
            ErrorKind::InvalidArgument => 3,
            ErrorKind::Closed => 4,
            ErrorKind::Storage => 5,
            ErrorKind::Io => 6,
            ErrorKind::Corrupt => 7,
            ErrorKind::Incompatible => 8,
            ErrorKind::Internal => 9,
            ErrorKind::InvalidValue => 10,
            ErrorKind::ReadOnly => 11,
            ErrorKind::Source => 12,
            ErrorKind::SourceUnavailable => 13,
            ErrorKind::Timeout => 14,
        }
    }

    /// The stable snake_case name of this kind (`"invalid_key"`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidKey => "invalid_key",
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Closed => "closed",
            ErrorKind::Storage => "storage",
            ErrorKind::Io => "io",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Incompatible => "incompatible",
            ErrorKind::Internal => "internal",
            ErrorKind::InvalidValue => "invalid_value",
            ErrorKind::ReadOnly => "read_only",
            ErrorKind::Source => "source",
            ErrorKind::SourceUnavailable => "source_unavailable",
            ErrorKind::Timeout => "timeout",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error: its [`ErrorKind`], a message for people, and the underlying cause.
///
/// Cheap to clone (the cause is shared): one failed load is reported to
/// every caller that waited for it.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
    /// For a rate-limited source: when it may be asked again (ms since the
    /// Unix epoch), if it said.
    retry_at_ms: Option<u64>,
}

impl Error {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
            retry_at_ms: None,
        }
    }

    /// Attaches the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// A source's answer that it is rate limited: [`ErrorKind::Source`],
    /// counted by the breaker as a rate limit, which keeps it open until
    /// `retry_at_ms` (ms since the Unix epoch) when given.
    pub fn rate_limited(message: impl Into<String>, retry_at_ms: Option<u64>) -> Self {
        let mut err = Self::new(ErrorKind::Source, message);
        err.retry_at_ms = Some(retry_at_ms.unwrap_or(0));
        err
    }

    /// Whether this is a rate limit (see [`Error::rate_limited`]), and if so
    /// until when the source asked not to be called (`Some(None)`: it did
    /// not say).
    pub fn rate_limit(&self) -> Option<Option<u64>> {
        self.retry_at_ms.map(|at| (at != 0).then_some(at))
    }

    /// The first cause in this error's chain of type `T`: a host finds its
    /// own exception, carried through a load, this way.
    pub fn find_cause<T: std::error::Error + 'static>(&self) -> Option<&T> {
        let mut next: Option<&(dyn std::error::Error + 'static)> =
            self.source.as_deref().map(|s| s as _);
        while let Some(err) = next {
            if let Some(found) = err.downcast_ref::<T>() {
                return Some(found);
            }
            next = err.source();
        }
        None
    }

    /// The stable category.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with what it concerns (a file, a key).
    pub(crate) fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub(crate) fn closed() -> Self {
        Self::new(ErrorKind::Closed, "the cache is closed")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The shared cause itself, not the `Arc` around it, so that callers
        // can downcast it.
        self.source.as_deref().map(|s| s as _)
    }
}

/// `Result` with tierstack's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let (kind, what) = match err.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                (ErrorKind::Corrupt, "sqlite")
            }
            Some(ErrorCode::ReadOnly) => (ErrorKind::ReadOnly, "sqlite"),
            Some(ErrorCode::DiskFull) => (ErrorKind::Storage, "disk full: sqlite"),
            _ => (ErrorKind::Storage, "sqlite"),
        };
        Error::new(kind, format!("{what}: {err}")).with_source(err)
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, err.to_string()).with_source(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_nonzero_and_in_order() {
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(kind.code(), i as u32 + 1, "{kind}");
        }
    }

    #[test]
    fn display_carries_kind_and_message() {
        let err = Error::new(ErrorKind::InvalidKey, "key is empty");
        assert_eq!(err.to_string(), "invalid_key: key is empty");
        assert_eq!(err.kind(), ErrorKind::InvalidKey);
    }
}
