//! The circuit breaker of a cache's source: its status and the manual
//! controls. The breaker itself lives in the engine; these only read it and
//! push its buttons.

use std::ffi::c_char;

use crate::cache::{engine, tierstack_cache};
use crate::error::tierstack_result;
use crate::handle::out_param;
use crate::panic::guard;
use crate::strings::json_string;

/// Stores in `*out` the status of the breaker guarding the cache's source
/// (the configured one and every loader of `tierstack_cache_get_or_load`
/// alike) as a NUL-terminated JSON object: `state` (`"closed"`, `"open"` or
/// `"half-open"`), `failure_count` (consecutive failures), `allows_request`
/// (whether a load would call the source now), `last_failure_at` and
/// `next_attempt_at` (milliseconds since the Unix epoch, or null) and
/// `trips` (how many times it opened). Reading it changes nothing. The caller
/// owns the string and frees it with `tierstack_string_free`. Works on a
/// closed cache too. Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_breaker_status_json(
    cache: *const tierstack_cache,
    out: *mut *mut c_char,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes a live handle.
        let engine = unsafe { engine(cache)? };
        let out = out_param(out, "out")?;
        let json = json_string(&engine.breaker_status(), "breaker status")?;
        // SAFETY: `out` is a non-NULL pointer to a writable string slot.
        unsafe { out.write(json) };
        Ok(())
    })
}

/// Opens the breaker by hand: until `tierstack_cache_breaker_close`, loads
/// do not call the source; a caller holding a stale copy gets it (marked
/// stale), any other gets `TIERSTACK_RESULT_SOURCE_UNAVAILABLE`. Counts as a
/// trip. Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_breaker_open(
    cache: *const tierstack_cache,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes a live handle.
        unsafe { engine(cache) }?.breaker_open();
        Ok(())
    })
}

/// Closes the breaker by hand (also one opened by failures): loads call the
/// source again, and its failure count starts from zero. Any thread may call
/// this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_breaker_close(
    cache: *const tierstack_cache,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes a live handle.
        unsafe { engine(cache) }?.breaker_close();
        Ok(())
    })
}
