//! How C pointers become Rust references: the one place that decides that
//! handles are `Box`es (or, for handles that live only during a callback,
//! tokens of a registry), and the checks on every pointer and length
//! argument.

use std::collections::BTreeMap;
use std::ffi::c_char;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

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
#[inline]
pub(crate) unsafe fn utf8<'a>(
    ptr: *const c_char,
    len: usize,
    what: &str,
    not_utf8: ErrorKind,
) -> Result<&'a str, Error> {
    // SAFETY: per the caller.
    let bytes = unsafe { slice(ptr.cast::<u8>(), len, what) }?;
    // Keys are nearly always ASCII, which is checked 8 bytes at a time in
    // line; the full UTF-8 validation runs, in a call, only past ASCII.
    if is_ascii(bytes) {
        // SAFETY: ASCII is UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    utf8_beyond_ascii(bytes, what, not_utf8)
}

/// [`utf8`] of a string with a byte past ASCII: the full validation.
#[cold]
#[inline(never)]
fn utf8_beyond_ascii<'a>(
    bytes: &'a [u8],
    what: &str,
    not_utf8: ErrorKind,
) -> Result<&'a str, Error> {
    std::str::from_utf8(bytes).map_err(|e| {
        Error::new(
            not_utf8,
            format!("{what} is not UTF-8 (bad byte at {})", e.valid_up_to()),
        )
    })
}

/// Whether every byte of `bytes` is ASCII, by OR-ing them 8 at a time (the
/// last 8 overlapping the word before): for the short strings C passes as
/// keys, fewer instructions than `<[u8]>::is_ascii`, which aligns its reads
/// first.
#[inline]
fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let Some(last) = bytes.last_chunk::<8>() else {
        return bytes.iter().fold(0, |seen, b| seen | b) < 0x80;
    };
    let (words, _) = bytes.as_chunks::<8>();
    let seen = words.iter().fold(u64::from_ne_bytes(*last), |seen, w| {
        seen | u64::from_ne_bytes(*w)
    });
    seen & HIGH_BITS == 0
}

/// A key (or glob pattern): UTF-8, else [`ErrorKind::InvalidKey`]. The
/// engine validates the rest (an empty key is refused there).
///
/// # Safety
/// As [`slice`].
#[inline]
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

/// Handles valid only while one callback runs (`tierstack_load`,
/// `tierstack_load_batch`, `tierstack_write`): C is handed a token, never a pointer to Rust
/// memory, and every use looks the token up among the live ones. A handle
/// used after its callback returned is then a clear error, not a use after
/// free. Tokens count up from 1 and are never reused.
pub(crate) struct Scoped<T> {
    /// The kind of handle, for errors (`"load"`, `"batch"`, `"write"`).
    name: &'static str,
    /// The call it lives for, for errors (`"loader call"`).
    call: &'static str,
    live: Mutex<BTreeMap<usize, T>>,
    next: AtomicUsize,
}

impl<T> Scoped<T> {
    pub(crate) const fn new(name: &'static str, call: &'static str) -> Self {
        Self {
            name,
            call,
            live: Mutex::new(BTreeMap::new()),
            next: AtomicUsize::new(1),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, BTreeMap<usize, T>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `call` with a new handle to `state`; the handle is live only
    /// during the call. Gives back the call's result and the state.
    pub(crate) fn run<H, R>(&self, state: T, call: impl FnOnce(*mut H) -> R) -> (R, T) {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        self.live().insert(token, state);
        // The token is never dereferenced: it only names the state.
        let result = call(std::ptr::without_provenance_mut(token));
        let state = self.live().remove(&token);
        debug_assert!(state.is_some(), "only `run` removes a live handle");
        (
            result,
            state.expect("a live handle stays live until its call returns"),
        )
    }

    /// Runs `f` on the state of the live handle `ptr`.
    pub(crate) fn with<H, R>(
        &self,
        ptr: *const H,
        f: impl FnOnce(&mut T) -> Result<R, Error>,
    ) -> Result<R, Error> {
        if ptr.is_null() {
            return Err(null_argument(self.name));
        }
        let mut live = self.live();
        let state = live.get_mut(&ptr.addr()).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{} is not a live handle: it is valid only while its {} runs",
                    self.name, self.call
                ),
            )
        })?;
        f(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_ascii_finds_a_high_byte_anywhere_in_a_string_of_any_short_length() {
        for len in 0..=40 {
            let ascii = vec![b'k'; len];
            assert!(is_ascii(&ascii), "{len} ASCII bytes");
            for at in 0..len {
                for high in [0x80, 0xc3, 0xff] {
                    let mut bytes = ascii.clone();
                    bytes[at] = high;
                    assert!(!is_ascii(&bytes), "{high:#x} at {at} of {len}");
                }
            }
        }
    }
}
