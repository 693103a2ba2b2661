//! Strings handed to C (JSON documents), their release, and the version.

use std::ffi::{CString, c_char};

use tierstack::{Error, ErrorKind};

use crate::panic::guard_or;

/// `text` as a NUL-terminated C string owned by the caller, who frees it
/// with `tierstack_string_free`.
pub(crate) fn c_string(text: String) -> Result<*mut c_char, Error> {
    CString::new(text).map(CString::into_raw).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("a string for C holds a NUL byte at {}", e.nul_position()),
        )
    })
}

/// `value` as a JSON C string owned by the caller (see [`c_string`]);
/// `what` names it in an error.
pub(crate) fn json_string<T: serde::Serialize>(
    value: &T,
    what: &str,
) -> Result<*mut c_char, Error> {
    let json = serde_json::to_string(value)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("{what} as JSON: {e}")))?;
    c_string(json)
}

/// Frees a string returned by tierstack (`tierstack_cache_keys_json`,
/// `tierstack_cache_stats_json`); NULL does nothing. Each string is freed
/// once. Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_string_free(s: *mut c_char) {
    guard_or((), || {
        if !s.is_null() {
            // SAFETY: per the caller, `s` came from `c_string` and was not freed.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

/// The library's version (`"0.1.0"`), a static NUL-terminated string.
#[unsafe(no_mangle)]
pub extern "C" fn tierstack_version() -> *const c_char {
    guard_or(std::ptr::null(), || {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    })
}
