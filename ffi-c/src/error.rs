//! Result codes, their names and messages, and the thread-local message of
//! the latest failure.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::sync::LazyLock;

use tierstack::{Error, ErrorKind};

use crate::panic::{guard, guard_or};

/// The outcome of a fallible call: `TIERSTACK_RESULT_OK` (0), or the stable
/// number of an error kind (the same number as the engine's
/// `ErrorKind::code()`). Numbers are never reused.
///
/// A call that fails also records a message for the calling thread, read with
/// `tierstack_last_error_message`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum tierstack_result {
    /// Success.
    Ok = 0,
    /// A key is empty, longer than 255 bytes, holds a control character, or
    /// is not UTF-8; also a glob pattern that is not UTF-8.
    InvalidKey = 1,
    /// The config JSON is malformed: a syntax error, an unknown key, a wrong
    /// type, an out-of-range value (a duration over 100 years, a
    /// `sqlite.path` of `:memory:` or a `file:` URI), or no tier enabled;
    /// also the `strategy` `"write-through"` or `"write-behind"` without a
    /// writable source (`tierstack_source.store` and `.remove`).
    InvalidConfig = 2,
    /// Another argument is unusable: a NULL pointer where one is required, a
    /// TTL that is negative, NaN, infinite or over 100 years, a value larger
    /// than the L2 budget, a bad tag or glob pattern, a `tierstack_source`
    /// with `store` but not `remove` (or the reverse).
    InvalidArgument = 3,
    /// The cache was closed; no operation is possible any more.
    Closed = 4,
    /// The SQLite tier failed (busy past the timeout, disk full, …).
    Storage = 5,
    /// The file system refused something (the cache file or its directory
    /// cannot be created or read, the path is a directory, …); the message
    /// carries the operating system's reason.
    Io = 6,
    /// The cache file is not a database, is damaged, or is another
    /// program's. It is left untouched.
    Corrupt = 7,
    /// The cache file's schema is newer than this version reads. It is left
    /// untouched.
    Incompatible = 8,
    /// A bug in tierstack (an invariant did not hold, or a panic was caught
    /// at the C boundary).
    Internal = 9,
    /// A value is not what a host call needs (JSON hosts: not UTF-8 JSON).
    InvalidValue = 10,
    /// The cache file may be read but not written (a read-only file system,
    /// directory or file mode): it was opened read-only, reads are served
    /// and every write is refused with this result.
    ReadOnly = 11,
    /// The source (a loader, the configured source) failed to answer: its
    /// loader returned a non-OK result, answered nothing, or answered
    /// something unusable, and no stale copy was there to serve instead;
    /// or, with write-through, the source's `store` / `remove` failed.
    Source = 12,
    /// The source was not asked because its circuit breaker is open (it
    /// failed recently, or was opened by hand), and no stale copy was there
    /// to serve instead.
    SourceUnavailable = 13,
    /// Loading took longer than `fail_safe.hard_timeout` and was abandoned,
    /// and no stale copy was there to serve instead; or, with write-behind,
    /// `tierstack_cache_flush` waited `outbox.flush_timeout` and writes were
    /// still pending.
    Timeout = 14,
}

/// Every result, indexed by its number.
const RESULTS: [tierstack_result; 15] = [
    tierstack_result::Ok,
    tierstack_result::InvalidKey,
    tierstack_result::InvalidConfig,
    tierstack_result::InvalidArgument,
    tierstack_result::Closed,
    tierstack_result::Storage,
    tierstack_result::Io,
    tierstack_result::Corrupt,
    tierstack_result::Incompatible,
    tierstack_result::Internal,
    tierstack_result::InvalidValue,
    tierstack_result::ReadOnly,
    tierstack_result::Source,
    tierstack_result::SourceUnavailable,
    tierstack_result::Timeout,
];

/// The names, indexed by number: `"ok"`, then the engine's kind names.
static NAMES: LazyLock<Vec<CString>> = LazyLock::new(|| {
    std::iter::once("ok")
        .chain(ErrorKind::ALL.iter().map(|k| k.as_str()))
        .map(|name| CString::new(name).expect("kind names hold no NUL"))
        .collect()
});

const UNKNOWN: &CStr = c"unknown";

impl tierstack_result {
    /// The result numbered `code`, if there is one.
    pub(crate) fn from_code(code: u32) -> Option<Self> {
        RESULTS.get(usize::try_from(code).ok()?).copied()
    }

    /// The stable name (`"ok"`, `"invalid_key"`, …), NUL-terminated.
    pub(crate) fn name(self) -> &'static CStr {
        NAMES.get(self as usize).map_or(UNKNOWN, CString::as_c_str)
    }

    /// What the result means, for people.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Ok => "success",
            Self::InvalidKey => {
                "invalid key: empty, longer than 255 bytes, a control character, or not UTF-8"
            }
            Self::InvalidConfig => {
                "invalid config: bad JSON, an unknown key, a wrong type or an out-of-range value"
            }
            Self::InvalidArgument => {
                "invalid argument: a NULL pointer, a bad TTL, tag or pattern, or a value too large"
            }
            Self::Closed => "the cache is closed",
            Self::Storage => "the SQLite tier failed",
            Self::Io => "a file system operation failed",
            Self::Corrupt => "the cache file is not a tierstack database or is damaged",
            Self::Incompatible => "the cache file was written by a newer tierstack",
            Self::Internal => "internal error in tierstack",
            Self::InvalidValue => "the value is not what the call needs",
            Self::ReadOnly => "the cache file is read-only: reads are served, writes are refused",
            Self::Source => {
                "the source failed (a load with no stale copy to serve, or a write-through write)"
            }
            Self::SourceUnavailable => {
                "the source's circuit breaker is open and no stale copy was there"
            }
            Self::Timeout => {
                "loading took longer than fail_safe.hard_timeout with no stale copy, or a flush \
                 longer than outbox.flush_timeout"
            }
        }
    }
}

impl From<ErrorKind> for tierstack_result {
    fn from(kind: ErrorKind) -> Self {
        Self::from_code(kind.code()).unwrap_or(Self::Internal)
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `message` as this thread's latest failure.
pub(crate) fn set_last_error(message: String) {
    // At thread exit the slot may be gone; the message is then dropped.
    let _ = LAST_ERROR.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = message;
        }
    });
}

/// This thread's latest failure message (empty before the first).
pub(crate) fn last_error() -> String {
    LAST_ERROR
        .try_with(|last| last.try_borrow().map(|m| m.clone()).unwrap_or_default())
        .unwrap_or_default()
}

/// An error for a NULL pointer passed where `what` is required.
pub(crate) fn null_argument(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!("{what} is a NULL pointer"),
    )
}

/// The buffer protocol of the message functions: copies at most `len - 1`
/// bytes of `text` into `buf` and a NUL after them, and stores the full
/// length of `text` (without the NUL) in `*out_n`. With `len == 0` nothing
/// is copied and `buf` may be NULL, so a first call can ask for the length.
///
/// # Safety
/// `buf` is NULL or valid for `len` bytes; `out_n` is NULL or valid.
pub(crate) unsafe fn write_message(
    text: &str,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> Result<(), Error> {
    if buf.is_null() && len > 0 {
        return Err(null_argument("buf (with len > 0)"));
    }
    if len > 0 {
        let n = text.len().min(len - 1);
        // SAFETY: the caller gives `len` writable bytes at `buf`, and n < len.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
            buf.add(n).write(0);
        }
    }
    if !out_n.is_null() {
        // SAFETY: the caller gives a writable `size_t` or NULL.
        unsafe { out_n.write(text.len()) };
    }
    Ok(())
}

/// The stable name of a result code (`"ok"`, `"invalid_key"`, …,
/// `"timeout"`; the kind names of every host), a static NUL-terminated
/// string; `"unknown"` for a number that is no result. Any thread may call
/// this.
#[unsafe(no_mangle)]
pub extern "C" fn tierstack_result_name(code: u32) -> *const c_char {
    guard_or(UNKNOWN.as_ptr(), || {
        tierstack_result::from_code(code)
            .map_or(UNKNOWN, tierstack_result::name)
            .as_ptr()
    })
}

/// Writes what result code `code` means into `buf` with the buffer
/// protocol: at most `len - 1` bytes and a NUL; `*out_n` (if not NULL)
/// receives the full length without the NUL, so `*out_n >= len` means the
/// text was truncated. With `len == 0`, `buf` may be NULL and only `*out_n`
/// is written. A NULL `buf` with `len > 0` is
/// `TIERSTACK_RESULT_INVALID_ARGUMENT`. Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_result_message(
    code: u32,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> tierstack_result {
    guard(|| {
        let text = match tierstack_result::from_code(code) {
            Some(result) => result.message().to_owned(),
            None => format!("unknown result code {code}"),
        };
        // SAFETY: the caller passes `len` writable bytes at `buf` (or NULL
        // with 0) and a writable or NULL `out_n`.
        unsafe { write_message(&text, buf, len, out_n) }
    })
}

/// Writes the message of the calling thread's latest failed call (its kind
/// and the details, e.g. `"invalid_key: key is empty"`) into `buf` with the
/// buffer protocol of `tierstack_result_message`. The message is
/// thread-local: each thread sees its own. Successful calls leave it as it
/// was; it is empty before the first failure.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_last_error_message(
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> tierstack_result {
    // SAFETY: as in `tierstack_result_message`.
    guard(|| unsafe { write_message(&last_error(), buf, len, out_n) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_keeps_its_number_and_name() {
        for kind in ErrorKind::ALL {
            let result = tierstack_result::from(kind);
            assert_eq!(result as u32, kind.code(), "{kind}");
            assert_eq!(result.name().to_str().unwrap(), kind.as_str());
        }
        assert_eq!(tierstack_result::Ok.name(), c"ok");
        assert_eq!(tierstack_result::from_code(15), None);
        assert_eq!(RESULTS.len(), ErrorKind::ALL.len() + 1);
        for (i, r) in RESULTS.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn messages_truncate_and_report_the_full_length() {
        let mut buf = [0x7f as c_char; 4];
        let mut n = 0usize;
        unsafe { write_message("hello", buf.as_mut_ptr(), buf.len(), &mut n) }.unwrap();
        assert_eq!(n, 5);
        assert_eq!(unsafe { CStr::from_ptr(buf.as_ptr()) }, c"hel");
        unsafe { write_message("hello", std::ptr::null_mut(), 0, &mut n) }.unwrap();
        assert_eq!(n, 5);
        let err = unsafe { write_message("x", std::ptr::null_mut(), 3, &mut n) }.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }
}
