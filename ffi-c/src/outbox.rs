//! The write-behind outbox of a cache (see
//! `tierstack_cache_open_with_source`): its figures, the writes waiting for
//! the source, and the dead letters, listed as JSON like the cache's other
//! reports, retried and purged. The outbox itself lives in the engine.

use std::ffi::c_char;

use tierstack::Error;

use crate::cache::{engine, tierstack_cache};
use crate::error::tierstack_result;
use crate::handle::out_param;
use crate::panic::guard;
use crate::strings::json_string;

/// Runs `report` on the engine of `cache` and stores its JSON in `*out`.
///
/// # Safety
/// `cache` is NULL or a live handle; `out` is NULL or writable.
unsafe fn report_json<T: serde::Serialize>(
    cache: *const tierstack_cache,
    out: *mut *mut c_char,
    what: &str,
    report: impl FnOnce(&tierstack::blocking::Cache) -> Result<T, Error>,
) -> tierstack_result {
    guard(|| {
        // SAFETY: per the caller.
        let engine = unsafe { engine(cache)? };
        let out = out_param(out, "out")?;
        let json = json_string(&report(engine)?, what)?;
        // SAFETY: `out` is a non-NULL pointer to a writable string slot.
        unsafe { out.write(json) };
        Ok(())
    })
}

/// Runs `count` on the engine of `cache` and stores its number in `*out`
/// when `out` is not NULL.
///
/// # Safety
/// `cache` is NULL or a live handle; `out` is NULL or writable.
unsafe fn counted(
    cache: *const tierstack_cache,
    out: *mut u64,
    count: impl FnOnce(&tierstack::blocking::Cache) -> Result<u64, Error>,
) -> tierstack_result {
    guard(|| {
        // SAFETY: per the caller.
        let n = count(unsafe { engine(cache)? })?;
        if !out.is_null() {
            // SAFETY: a non-NULL `out` is a writable uint64_t.
            unsafe { out.write(n) };
        }
        Ok(())
    })
}

/// Stores in `*out` the write-behind outbox's figures as a NUL-terminated
/// JSON object: `durable` (whether the outbox survives a crash: it is in
/// the L2 file; `false` with `sqlite.enabled` false), `pending` (writes
/// waiting for the source, of every process sharing the file),
/// `oldest_age_ms` (the age of the oldest pending write in milliseconds,
/// or null), `retrying` (pending writes that failed at least once),
/// `retries` (failed attempts made by this cache), `delivered` (writes
/// this cache delivered) and `dead` (writes in the dead letters). For a
/// cache whose `strategy` is not `"write-behind"` it is the JSON `null`.
/// The same object is the `outbox` member of `tierstack_cache_stats_json`.
/// The caller owns the string and frees it with `tierstack_string_free`.
/// Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_outbox_stats_json(
    cache: *const tierstack_cache,
    out: *mut *mut c_char,
) -> tierstack_result {
    // SAFETY: the caller passes a live handle and a writable `out`.
    unsafe { report_json(cache, out, "outbox stats", |e| Ok(e.outbox_stats())) }
}

/// Stores in `*out` the dead letters (writes the outbox gave up on after
/// `outbox.max_attempts`) as a NUL-terminated JSON array, oldest first, of
/// objects: `key`, `op` (`"store"` or `"remove"`), `attempts`,
/// `last_error` (the last attempt's error, e.g. `"source: the store
/// returned source: <message>"`), `failed_ms` (when it gave up) and
/// `created_ms` (when the write was made), both in milliseconds since the
/// Unix epoch. Without write-behind it lists those in the L2 file (left by
/// a write-behind cache; `[]` without a file). The caller owns the string
/// and frees it with `tierstack_string_free`. `TIERSTACK_RESULT_CLOSED` on
/// a closed cache. Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_dead_letters_json(
    cache: *const tierstack_cache,
    out: *mut *mut c_char,
) -> tierstack_result {
    // SAFETY: as in `tierstack_cache_outbox_stats_json`.
    unsafe { report_json(cache, out, "dead letters", |e| e.dead_letters()) }
}

/// Stores in `*out` the writes waiting for the source as a NUL-terminated
/// JSON array, oldest first, of objects: `key`, `op` (`"store"` or
/// `"remove"`), `attempts` (failed so far), `last_error` (or null) and
/// `created_ms` (milliseconds since the Unix epoch). A key has one pending
/// write at most: a later write replaces an undelivered one. The caller
/// owns the string and frees it with `tierstack_string_free`.
/// `TIERSTACK_RESULT_CLOSED` on a closed cache. Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_pending_writes_json(
    cache: *const tierstack_cache,
    out: *mut *mut c_char,
) -> tierstack_result {
    // SAFETY: as in `tierstack_cache_outbox_stats_json`.
    unsafe { report_json(cache, out, "pending writes", |e| e.pending_writes()) }
}

/// Queues every dead letter again, with its attempts starting from zero
/// (a key written since its write died has no dead letter any more:
/// retried, it would put an older value back). If `queued` is not NULL it receives how
/// many were queued. `TIERSTACK_RESULT_CLOSED` on a closed cache. Any
/// thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_retry_dead_letters(
    cache: *const tierstack_cache,
    queued: *mut u64,
) -> tierstack_result {
    // SAFETY: the caller passes a live handle and NULL or a writable `queued`.
    unsafe { counted(cache, queued, |e| e.retry_dead_letters()) }
}

/// Deletes every dead letter (those writes never reach the source). If
/// `purged` is not NULL it receives how many there were.
/// `TIERSTACK_RESULT_CLOSED` on a closed cache. Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_purge_dead_letters(
    cache: *const tierstack_cache,
    purged: *mut u64,
) -> tierstack_result {
    // SAFETY: as in `tierstack_cache_retry_dead_letters`.
    unsafe { counted(cache, purged, |e| e.purge_dead_letters()) }
}
