//! `tierstack_value`: a value read from the cache, owned by the caller.

use std::cell::Cell;
use std::ffi::{CStr, c_char};
use std::mem::MaybeUninit;
use std::time::Duration;

use tierstack::{Bytes, Lookup, Tier};

use crate::handle::BoxHandle;
use crate::panic::guard_or;

/// A value read from the cache: its bytes, whether it is a stale copy, and,
/// when it came from `tierstack_cache_lookup`, `tierstack_cache_get_or_load`
/// or `tierstack_cache_get_or_load_many`, the tier that served it and its
/// age.
///
/// Owned by the caller, who frees it with `tierstack_value_free`. It does not
/// depend on the cache: it stays valid after the cache is closed or freed.
/// Its accessors may be called from any thread; it must not be freed while
/// another thread reads it.
#[allow(non_camel_case_types)]
pub struct tierstack_value {
    value: Bytes,
    stale: bool,
    found: Option<Found>,
}

/// What `lookup` reports besides the bytes and staleness.
struct Found {
    tier: Tier,
    age: Duration,
}

thread_local! {
    /// The allocation of the last value this thread freed, kept for the
    /// next value it hands out: a read then costs no `malloc` and no
    /// `free` (some 140 instructions together, a fifth of a read and check
    /// of a 1.5 KB value in `tests/c/bench_get`).
    static SPARE: Cell<Option<Box<MaybeUninit<tierstack_value>>>> = const { Cell::new(None) };
}

impl BoxHandle for tierstack_value {
    const NAME: &'static str = "value";

    fn into_raw(self) -> *mut Self {
        let spare = SPARE.try_with(Cell::take).ok().flatten();
        let mut boxed = spare.unwrap_or_else(Box::new_uninit);
        boxed.write(self);
        // SAFETY: written just above.
        Box::into_raw(unsafe { boxed.assume_init() })
    }

    unsafe fn free(ptr: *mut Self) {
        if ptr.is_null() {
            return;
        }
        // SAFETY: per the caller, `ptr` is an unfreed pointer from
        // `into_raw`, a `Box` allocation holding a live value.
        let mut boxed = unsafe { Box::from_raw(ptr.cast::<MaybeUninit<Self>>()) };
        // SAFETY: the value is live, and dropped once: the box is kept (or
        // freed) as uninitialized memory from here on.
        unsafe { boxed.assume_init_drop() };
        // The allocation becomes the thread's spare, and a spare it held
        // is freed; once its thread-locals are torn down, it is freed.
        if let Ok(Some(extra)) = SPARE.try_with(|spare| spare.replace(Some(boxed))) {
            drop(extra);
        }
    }
}

impl From<Bytes> for tierstack_value {
    fn from(value: Bytes) -> Self {
        Self {
            value,
            stale: false,
            found: None,
        }
    }
}

impl From<Lookup> for tierstack_value {
    fn from(l: Lookup) -> Self {
        Self {
            value: l.value,
            stale: l.stale,
            found: Some(Found {
                tier: l.tier,
                age: l.age,
            }),
        }
    }
}

impl tierstack_value {
    /// A value for a plain read (`get`): the bytes and staleness, no tier
    /// or age.
    pub(crate) fn read(l: Lookup) -> Self {
        Self {
            value: l.value,
            stale: l.stale,
            found: None,
        }
    }

    /// A value for a plain read that cannot be stale (no source: a stale
    /// row is a miss).
    pub(crate) fn fresh(value: Bytes) -> Self {
        Self {
            value,
            stale: false,
            found: None,
        }
    }
}

/// The stable name of `tier`, NUL-terminated.
fn tier_name(tier: Tier) -> &'static CStr {
    match tier {
        Tier::Memory => c"memory",
        Tier::Sqlite => c"sqlite",
        Tier::Redis => c"redis",
        Tier::Source => c"source",
        _ => c"unknown",
    }
}

/// The value's bytes: `tierstack_value_len(value)` of them, not
/// NUL-terminated, owned by `value` and valid until it is freed. Never NULL
/// for a value (an empty value gives a non-NULL pointer to zero bytes); NULL
/// when `value` is NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_value_data(value: *const tierstack_value) -> *const u8 {
    guard_or(std::ptr::null(), || {
        // SAFETY: the caller passes NULL or a live value.
        unsafe { tierstack_value::borrow(value) }.map_or(std::ptr::null(), |v| v.value.as_ptr())
    })
}

/// The number of bytes of the value; 0 when `value` is NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_value_len(value: *const tierstack_value) -> usize {
    guard_or(0, || {
        // SAFETY: the caller passes NULL or a live value.
        unsafe { tierstack_value::borrow(value) }.map_or(0, |v| v.value.len())
    })
}

/// Whether the value had expired and was served as a stale copy (its
/// source failed, its breaker is open, or it was slower than
/// `fail_safe.soft_timeout`). Reported by `tierstack_cache_get`,
/// `tierstack_cache_lookup`, `tierstack_cache_get_or_load` and
/// `tierstack_cache_get_or_load_many`; values from `mget`, and NULL, give
/// false.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_value_is_stale(value: *const tierstack_value) -> bool {
    guard_or(false, || {
        // SAFETY: the caller passes NULL or a live value.
        unsafe { tierstack_value::borrow(value) }.is_ok_and(|v| v.stale)
    })
}

/// The tier that served a value from `tierstack_cache_lookup`,
/// `tierstack_cache_get_or_load` or `tierstack_cache_get_or_load_many`: the
/// static, NUL-terminated `"memory"`, `"sqlite"`, `"redis"` or `"source"`
/// (loaded for this call), never to be freed. NULL for a value from another read (`get`,
/// `mget` do not report it) and for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_value_tier(value: *const tierstack_value) -> *const c_char {
    guard_or(std::ptr::null(), || {
        // SAFETY: the caller passes NULL or a live value.
        unsafe { tierstack_value::borrow(value) }
            .ok()
            .and_then(|v| v.found.as_ref())
            .map_or(std::ptr::null(), |f| tier_name(f.tier).as_ptr())
    })
}

/// Seconds since a value from `tierstack_cache_lookup`,
/// `tierstack_cache_get_or_load` or `tierstack_cache_get_or_load_many` was
/// written (millisecond resolution; 0 for a value just loaded). -1 for a value from another read and for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_value_age(value: *const tierstack_value) -> f64 {
    guard_or(-1.0, || {
        // SAFETY: the caller passes NULL or a live value.
        unsafe { tierstack_value::borrow(value) }
            .ok()
            .and_then(|v| v.found.as_ref())
            .map_or(-1.0, |f| f.age.as_secs_f64())
    })
}

/// Frees a value; NULL does nothing. Each value is freed once, by one thread.
/// Its bytes are released at once; the thread keeps the value's own small
/// allocation for the next value it reads, so a use after free may go
/// unreported by tools such as AddressSanitizer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_value_free(value: *mut tierstack_value) {
    guard_or((), || {
        // SAFETY: the caller passes NULL or a live value it owns.
        unsafe { tierstack_value::free(value) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_names_match_the_engine() {
        for tier in [Tier::Memory, Tier::Sqlite, Tier::Redis, Tier::Source] {
            assert_eq!(tier_name(tier).to_str().unwrap(), tier.as_str());
        }
    }

    #[test]
    fn a_freed_value_lets_go_of_its_bytes_and_its_box_serves_the_next() {
        let bytes = Bytes::from(vec![7u8; 100]);
        let first = tierstack_value::from(bytes.clone()).into_raw();
        assert!(!bytes.is_unique());
        // SAFETY: values from `into_raw`, each freed once.
        unsafe {
            tierstack_value_free(first);
            assert!(bytes.is_unique(), "the freed value still holds its bytes");
            let second = tierstack_value::from(Bytes::from_static(b"xy")).into_raw();
            assert_eq!(second, first, "the freed allocation was not reused");
            assert_eq!(tierstack_value_len(second), 2);
            assert_eq!(*tierstack_value_data(second), b'x');
            let third = tierstack_value::from(bytes.clone()).into_raw();
            assert_ne!(third, second, "a live value's allocation was handed out");
            assert_eq!(tierstack_value_len(third), 100);
            tierstack_value_free(second);
            tierstack_value_free(third);
            tierstack_value_free(std::ptr::null_mut());
        }
        assert!(bytes.is_unique());
    }
}
