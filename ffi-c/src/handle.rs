//! How C pointers become Rust references: the one place that decides that
//! handles are `Box`es, and the checks on every pointer and length argument.

use std::ffi::c_char;
use std::ptr::NonNull;

use tierstack::{Error, ErrorKind};

use crate::error::null_argument;

/// An opaque handle type handed to C as a `Box` turned into a pointer.
pub(crate) trait BoxHandle: Sized {
    /// The parameter name used in errors about a NULL handle.
    const NAME: &'static str;

    /// Moves `self` to the heap and gives up ownership to the caller.
    fn into_raw(self) -> *mut Self {
        Box::into_raw(Box::new(self))
    }

    /// Borrows the handle behind `ptr`.
    ///
    /// # Safety
    /// `ptr` is NULL or came from [`BoxHandle::into_raw`] and was not freed.
    unsafe fn borrow<'a>(ptr: *const Self) -> Result<&'a Self, Error> {
        // SAFETY: per the caller, a non-NULL `ptr` points to a live `Self`.
        unsafe { ptr.as_ref() }.ok_or_else(|| null_argument(Self::NAME))
    }

    /// Takes back ownership and drops the handle; NULL does nothing.
    ///
    /// # Safety
    /// `ptr` is NULL or came from [`BoxHandle::into_raw`] and was not freed.
    unsafe fn free(ptr: *mut Self) {
        if !ptr.is_null() {
            // SAFETY: per the caller, `ptr` is an unfreed `Box` pointer.
            drop(unsafe { Box::from_raw(ptr) });
        }
    }
}

/// A required out-parameter, checked before the operation runs so that a
/// NULL one fails the call without side effects.
pub(crate) fn out_param<T>(ptr: *mut T, what: &str) -> Result<NonNull<T>, Error> {
    NonNull::new(ptr).ok_or_else(|| null_argument(what))
}

/// `len` elements at `ptr`; NULL with `len == 0` is the empty slice.
///
/// # Safety
/// A non-NULL `ptr` is valid for reads of `len` elements for `'a`.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T], Error> {
    match (ptr.is_null(), len) {
        (true, 0) => Ok(&[]),
        (true, _) => Err(null_argument(what)),
        // SAFETY: per the caller.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(ptr, len) }),
    }
}

/// A string of `len` bytes that must be UTF-8; otherwise an error of kind
/// `not_utf8` naming `what`. NULL with `len == 0` is the empty string.
///
/// # Safety
/// As [`slice`].
pub(crate) unsafe fn utf8<'a>(
    ptr: *const c_char,
    len: usize,
    what: &str,
    not_utf8: ErrorKind,
) -> Result<&'a str, Error> {
    // SAFETY: per the caller.
    let bytes = unsafe { slice(ptr.cast::<u8>(), len, what) }?;
    std::str::from_utf8(bytes).map_err(|e| {
        Error::new(
            not_utf8,
            format!("{what} is not UTF-8 (bad byte at {})", e.valid_up_to()),
        )
    })
}

/// A key (or glob pattern): UTF-8, else [`ErrorKind::InvalidKey`]. The
/// engine validates the rest (an empty key is refused there).
///
/// # Safety
/// As [`slice`].
pub(crate) unsafe fn key<'a>(ptr: *const c_char, len: usize, what: &str) -> Result<&'a str, Error> {
    // SAFETY: per the caller.
    unsafe { utf8(ptr, len, what, ErrorKind::InvalidKey) }
}

/// `n` strings given as parallel arrays of pointers and lengths, each as
/// in [`utf8`]; `what` names the array (`"keys"`, `"tags"`).
///
/// # Safety
/// `ptrs` and `lens` are NULL (with `n == 0`) or valid for `n` elements,
/// each pair as in [`slice`].
pub(crate) unsafe fn strings<'a>(
    ptrs: *const *const c_char,
    lens: *const usize,
    n: usize,
    what: &str,
    not_utf8: ErrorKind,
) -> Result<Vec<&'a str>, Error> {
    // SAFETY: per the caller.
    let (ptrs, lens) = unsafe { (slice(ptrs, n, what)?, slice(lens, n, what)?) };
    ptrs.iter()
        .zip(lens)
        // SAFETY: per the caller, each pair describes readable bytes.
        .map(|(&ptr, &len)| unsafe { utf8(ptr, len, what, not_utf8) })
        .collect()
}
