//! `tierstack_cache`: the cache handle and every operation on it.
//!
//! Every function here may be called from any thread, concurrently, on one
//! handle (the engine is `Send + Sync`), except `tierstack_cache_free`, which
//! must be the last call on a handle.

use std::ffi::{CStr, c_char};

use tierstack::config::ttl_from_seconds;
use tierstack::{Bytes, Config, Error, ErrorKind, SetOptions, blocking};

use crate::entry::tierstack_value;
use crate::error::tierstack_result;
use crate::handle::{self, BoxHandle, out_param};
use crate::panic::{guard, guard_or};
use crate::strings::json_string;

/// An open cache: L1 in this process's memory over the L2 SQLite file.
///
/// Created by `tierstack_cache_open`, freed by `tierstack_cache_free`. One
/// handle may be used from many threads at once.
#[allow(non_camel_case_types)]
pub struct tierstack_cache {
    pub(crate) inner: blocking::Cache,
}

impl BoxHandle for tierstack_cache {
    const NAME: &'static str = "cache";
}

/// The engine behind a handle.
///
/// # Safety
/// `cache` is NULL or a live handle.
pub(crate) unsafe fn engine<'a>(
    cache: *const tierstack_cache,
) -> Result<&'a blocking::Cache, Error> {
    // SAFETY: per the caller.
    unsafe { tierstack_cache::borrow(cache) }.map(|c| &c.inner)
}

/// The engine and the key of a single-key call.
///
/// # Safety
/// `cache` is NULL or a live handle; `key` as in [`handle::key`].
#[inline(always)]
pub(crate) unsafe fn engine_and_key<'a>(
    cache: *const tierstack_cache,
    key: *const c_char,
    key_len: usize,
) -> Result<(&'a blocking::Cache, &'a str), Error> {
    // SAFETY: per the caller.
    unsafe { Ok((engine(cache)?, handle::key(key, key_len, "key")?)) }
}

/// A single-key read: `read` runs on the engine and key, and its value
/// (NULL on a miss) is written to `*out` on success.
///
/// # Safety
/// As [`engine_and_key`]; `out` is NULL or writable.
unsafe fn read_one(
    cache: *const tierstack_cache,
    key: *const c_char,
    key_len: usize,
    out: *mut *mut tierstack_value,
    read: impl FnOnce(&blocking::Cache, &str) -> Result<Option<tierstack_value>, Error>,
) -> tierstack_result {
    guard(|| {
        // SAFETY: per the caller.
        let (engine, key) = unsafe { engine_and_key(cache, key, key_len)? };
        let out = out_param(out, "out")?;
        let value = read(engine, key)?;
        // SAFETY: `out` is a non-NULL pointer to a writable value slot.
        unsafe { out.write(value.map_or(std::ptr::null_mut(), BoxHandle::into_raw)) };
        Ok(())
    })
}

/// Write options from a host TTL in seconds (by the rule of
/// [`ttl_from_seconds`]: 0 is each tier's default) and tags.
fn set_options(ttl_seconds: f64, tags: &[&str]) -> Result<SetOptions, Error> {
    let options = SetOptions::new().tags(tags.iter().copied());
    Ok(match ttl_from_seconds(ttl_seconds)? {
        Some(ttl) => options.ttl(ttl),
        None => options,
    })
}

/// Opens a cache and stores a new handle in `*out`.
///
/// `config_json` is a NUL-terminated JSON config (the schema of the README,
/// snake_case keys; unknown keys are refused with
/// `TIERSTACK_RESULT_INVALID_CONFIG`), or NULL for every default. The L2 file
/// is created if needed. The caller owns the handle and frees it with
/// `tierstack_cache_free`. Any thread may call this.
///
/// Without a source, the `strategy` `"write-through"` and `"write-behind"`
/// are `TIERSTACK_RESULT_INVALID_CONFIG` (open the cache with a writable
/// `tierstack_source` through `tierstack_cache_open_with_source`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_open(
    config_json: *const c_char,
    out: *mut *mut tierstack_cache,
) -> tierstack_result {
    guard(|| {
        let out = out_param(out, "out")?;
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let config = unsafe { parse_config(config_json) }?;
        let inner = blocking::Cache::open(config)?;
        // SAFETY: `out` is a non-NULL pointer to a writable handle slot.
        unsafe { out.write(tierstack_cache { inner }.into_raw()) };
        Ok(())
    })
}

/// The config of `tierstack_cache_open`: NULL for every default, else
/// NUL-terminated UTF-8 JSON.
///
/// # Safety
/// `config_json` is NULL or a NUL-terminated string.
pub(crate) unsafe fn parse_config(config_json: *const c_char) -> Result<Config, Error> {
    if config_json.is_null() {
        return Ok(Config::default());
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let json = unsafe { CStr::from_ptr(config_json) }
        .to_str()
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("config JSON is not UTF-8 (bad byte at {})", e.valid_up_to()),
            )
        })?;
    Config::from_json(json)
}

/// Closes the cache: writes buffered state, closes the L2 file, empties L1.
/// With write-behind it first keeps delivering the outbox for up to
/// `outbox.close_timeout` seconds (default 5); what is left stays in the
/// L2 file and is delivered by the next cache opened on it.
///
/// The handle stays valid: later calls on it fail with
/// `TIERSTACK_RESULT_CLOSED`, and closing again returns OK. Free it with
/// `tierstack_cache_free`. Calls running on other threads finish first or
/// fail with `TIERSTACK_RESULT_CLOSED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_close(cache: *const tierstack_cache) -> tierstack_result {
    // SAFETY: the caller passes NULL or a live handle.
    guard(|| unsafe { engine(cache) }?.close())
}

/// Closes the cache if it is open, then frees the handle; NULL does nothing.
///
/// An error while closing is not reported here (call `tierstack_cache_close`
/// first to see it). This must be the last call on the handle: no other
/// thread may be using it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_free(cache: *mut tierstack_cache) {
    guard_or((), || {
        // SAFETY: the caller passes NULL or a live handle.
        if let Ok(engine) = unsafe { engine(cache) } {
            let _ = engine.close();
        }
        // SAFETY: as above; this is the handle's last use.
        unsafe { tierstack_cache::free(cache) }
    })
}

/// Reads `key` (`key_len` bytes of UTF-8, not NUL-terminated) from the first
/// tier holding a fresh value, promoting an L2 hit into L1. A cache opened
/// with `tierstack_cache_open_with_source` loads a miss through its source
/// (see `tierstack_cache_get_or_load` for what that involves, and for the
/// stale copy it may serve: `tierstack_value_is_stale`).
///
/// On a hit `*out` receives a new value owned by the caller (free it with
/// `tierstack_value_free`); on a miss `*out` is set to NULL and the result is
/// OK. Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_get(
    cache: *const tierstack_cache,
    key: *const c_char,
    key_len: usize,
    out: *mut *mut tierstack_value,
) -> tierstack_result {
    // SAFETY: the caller passes a live handle, `key_len` readable bytes and a
    // writable `out`.
    unsafe {
        read_one(cache, key, key_len, out, |e, k| match e.has_source() {
            true => Ok(e.lookup(k)?.map(tierstack_value::read)),
            // Without a source no read is stale (a stale row is a miss):
            // the value alone, with no tier or age worked out.
            false => Ok(e.get(k)?.map(tierstack_value::fresh)),
        })
    }
}

/// As `tierstack_cache_get`, and the value also reports the tier that served
/// it (`tierstack_value_tier`), whether it is stale, and its age.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_lookup(
    cache: *const tierstack_cache,
    key: *const c_char,
    key_len: usize,
    out: *mut *mut tierstack_value,
) -> tierstack_result {
    // SAFETY: as in `tierstack_cache_get`.
    unsafe {
        read_one(cache, key, key_len, out, |e, k| {
            Ok(e.lookup(k)?.map(Into::into))
        })
    }
}

/// Stores in `*out` whether `key` holds a fresh value (not counted as a read).
/// Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_has(
    cache: *const tierstack_cache,
    key: *const c_char,
    key_len: usize,
    out: *mut bool,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes a live handle and `key_len` readable bytes.
        let (engine, key) = unsafe { engine_and_key(cache, key, key_len)? };
        let out = out_param(out, "out")?;
        let found = engine.has(key)?;
        // SAFETY: `out` is a non-NULL pointer to a writable bool.
        unsafe { out.write(found) };
        Ok(())
    })
}

/// Reads `n` keys (parallel arrays of pointers and byte lengths) in one
/// round per tier. On success `out_values[i]` receives a new value owned by
/// the caller, or NULL for a miss; `out_values` has room for `n` pointers.
/// Any invalid key fails the whole call and writes nothing. With `n == 0`
/// the arrays may be NULL. Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_mget(
    cache: *const tierstack_cache,
    keys: *const *const c_char,
    key_lens: *const usize,
    n: usize,
    out_values: *mut *mut tierstack_value,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes a live handle and `n` readable keys.
        let (engine, keys) = unsafe {
            (
                engine(cache)?,
                handle::strings(keys, key_lens, n, "keys", ErrorKind::InvalidKey)?,
            )
        };
        if out_values.is_null() && n > 0 {
            return Err(crate::error::null_argument("out_values"));
        }
        let values = engine.mget(&keys)?;
        debug_assert_eq!(values.len(), n);
        for (i, value) in values.into_iter().enumerate() {
            let ptr = value.map_or(std::ptr::null_mut(), |v| {
                tierstack_value::from(v).into_raw()
            });
            // SAFETY: the caller gives room for `n` pointers at `out_values`.
            unsafe { out_values.add(i).write(ptr) };
        }
        Ok(())
    })
}

/// Stores `data_len` bytes at `data` under `key` in every tier: in L1 and
/// in the process's journal before this returns, which survives a crash of
/// the process and which every process's reads of the L2 file wait for; in
/// the file when the journal drains, a moment later (see the README's
/// Writes). `data` may be NULL when `data_len` is 0 (an empty
/// value). `ttl_seconds` is the time to live in seconds (fractions allowed):
/// 0 takes each tier's default TTL; a negative, NaN or infinite TTL, or one
/// over 100 years (3153600000 seconds), is refused with
/// `TIERSTACK_RESULT_INVALID_ARGUMENT` and stores nothing. L1 never keeps an
/// entry longer than `memory.ttl`. The bytes are copied. Any thread may call
/// this.
///
/// With the `strategy` `"write-through"` the source's `store` is called
/// first; its failure is `TIERSTACK_RESULT_SOURCE` and stores nothing. With
/// `"write-behind"` the write is also queued in the outbox, in the drain's
/// commit, for the source (see `tierstack_cache_open_with_source`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_set(
    cache: *const tierstack_cache,
    key: *const c_char,
    key_len: usize,
    data: *const u8,
    data_len: usize,
    ttl_seconds: f64,
) -> tierstack_result {
    // SAFETY: forwarded unchanged; no tags.
    unsafe {
        tierstack_cache_set_with_tags(
            cache,
            key,
            key_len,
            data,
            data_len,
            ttl_seconds,
            std::ptr::null(),
            std::ptr::null(),
            0,
        )
    }
}

/// As `tierstack_cache_set`, also storing `n_tags` tags (parallel arrays of
/// pointers and byte lengths; UTF-8, 1 to 255 bytes, no control character)
/// with the entry, for `tierstack_cache_invalidate_tag`. With `n_tags == 0`
/// the tag arrays may be NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_set_with_tags(
    cache: *const tierstack_cache,
    key: *const c_char,
    key_len: usize,
    data: *const u8,
    data_len: usize,
    ttl_seconds: f64,
    tags: *const *const c_char,
    tag_lens: *const usize,
    n_tags: usize,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes a live handle and readable keys, data and tags.
        let (engine, key, data, tags) = unsafe {
            (
                engine(cache)?,
                handle::key(key, key_len, "key")?,
                handle::slice(data, data_len, "data")?,
                handle::strings(tags, tag_lens, n_tags, "tags", ErrorKind::InvalidArgument)?,
            )
        };
        let options = set_options(ttl_seconds, &tags)?;
        engine.set_with(key, tierstack::value::copy(data), options)
    })
}

/// Stores `n` values in one round per tier (one L2 transaction): key `i` is
/// `keys[i]` (`key_lens[i]` bytes), its value `data_lens[i]` bytes at
/// `datas[i]` (NULL when the length is 0). One bad key or value writes
/// nothing. `ttl_seconds` as in `tierstack_cache_set`. Any thread may call
/// this.
///
/// With the `strategy` `"write-through"` each value goes to the source's
/// `store` first, in order; the first that fails ends the call with
/// `TIERSTACK_RESULT_SOURCE`: the values before it are written everywhere,
/// it and those after it nowhere. With `"write-behind"` every value is
/// queued in the outbox in the drain's commit.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_mset(
    cache: *const tierstack_cache,
    keys: *const *const c_char,
    key_lens: *const usize,
    datas: *const *const u8,
    data_lens: *const usize,
    n: usize,
    ttl_seconds: f64,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes a live handle and `n` readable keys and values.
        let (engine, keys, datas, lens) = unsafe {
            (
                engine(cache)?,
                handle::strings(keys, key_lens, n, "keys", ErrorKind::InvalidKey)?,
                handle::slice(datas, n, "datas")?,
                handle::slice(data_lens, n, "data_lens")?,
            )
        };
        let values = datas
            .iter()
            .zip(lens)
            // SAFETY: per the caller, each pair describes readable bytes.
            .map(|(&ptr, &len)| {
                unsafe { handle::slice(ptr, len, "data") }.map(tierstack::value::copy)
            })
            .collect::<Result<Vec<Bytes>, Error>>()?;
        let options = set_options(ttl_seconds, &[])?;
        engine.mset_with(keys.into_iter().zip(values), options)
    })
}

/// Removes `key` from every tier. If `existed` is not NULL it receives
/// whether the key held a fresh value. Any thread may call this.
///
/// With a writing `strategy` the source's `remove` is called as
/// `tierstack_cache_set` calls `store`: first with `"write-through"` (a
/// failure is `TIERSTACK_RESULT_SOURCE` and removes nothing), through the
/// outbox with `"write-behind"`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_delete(
    cache: *const tierstack_cache,
    key: *const c_char,
    key_len: usize,
    existed: *mut bool,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes a live handle and `key_len` readable bytes.
        let (engine, key) = unsafe { engine_and_key(cache, key, key_len)? };
        let found = engine.delete(key)?;
        if !existed.is_null() {
            // SAFETY: a non-NULL `existed` is a writable bool.
            unsafe { existed.write(found) };
        }
        Ok(())
    })
}

/// Lists the fresh keys matching a glob (`*` is the only wildcard;
/// `pattern_len` bytes of UTF-8; NULL means every key) as a NUL-terminated
/// JSON array of strings sorted by byte order, stored in `*out`. The caller
/// owns the string and frees it with `tierstack_string_free`. Any thread may
/// call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_keys_json(
    cache: *const tierstack_cache,
    pattern: *const c_char,
    pattern_len: usize,
    out: *mut *mut c_char,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes a live handle and `pattern_len` readable bytes.
        let engine = unsafe { engine(cache)? };
        let pattern = match pattern.is_null() {
            true => "*",
            // SAFETY: as above.
            false => unsafe { handle::key(pattern, pattern_len, "pattern")? },
        };
        let out = out_param(out, "out")?;
        let json = json_string(&engine.keys(pattern)?, "keys")?;
        // SAFETY: `out` is a non-NULL pointer to a writable string slot.
        unsafe { out.write(json) };
        Ok(())
    })
}

/// Stores in `*out` how many fresh keys the cache holds, in any tier. Any
/// thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_len(
    cache: *const tierstack_cache,
    out: *mut u64,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes a live handle.
        let engine = unsafe { engine(cache)? };
        let out = out_param(out, "out")?;
        let len = engine.len()?;
        // SAFETY: `out` is a non-NULL pointer to a writable uint64_t.
        unsafe { out.write(len) };
        Ok(())
    })
}

/// Removes every entry from every tier. Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_clear(cache: *const tierstack_cache) -> tierstack_result {
    // SAFETY: the caller passes a live handle.
    guard(|| unsafe { engine(cache) }?.clear())
}

/// Returns when every write acknowledged so far is durable in the L2 file
/// (buffered recency committed, the WAL checkpointed). With write-behind it
/// first waits until the outbox is empty (every write delivered to the
/// source; dead letters do not count) and fails with
/// `TIERSTACK_RESULT_TIMEOUT` past `outbox.flush_timeout` seconds (default
/// 30). Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_flush(cache: *const tierstack_cache) -> tierstack_result {
    // SAFETY: the caller passes a live handle.
    guard(|| unsafe { engine(cache) }?.flush())
}

/// Removes every entry written with tag `tag` (`tag_len` bytes of UTF-8)
/// from every tier. If `removed` is not NULL it receives how many entries
/// were removed. Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_invalidate_tag(
    cache: *const tierstack_cache,
    tag: *const c_char,
    tag_len: usize,
    removed: *mut u64,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes a live handle and `tag_len` readable bytes.
        let (engine, tag) = unsafe {
            (
                engine(cache)?,
                handle::utf8(tag, tag_len, "tag", ErrorKind::InvalidArgument)?,
            )
        };
        let count = engine.invalidate_tag(tag)?;
        if !removed.is_null() {
            // SAFETY: a non-NULL `removed` is a writable uint64_t.
            unsafe { removed.write(count) };
        }
        Ok(())
    })
}

/// Stores in `*out` a snapshot of the counters as a NUL-terminated JSON
/// object (`hits`, `misses`, `hit_rate`, `sets`, `deletes`; `invalidations`:
/// L1 entries dropped because another process sharing the file changed their
/// key; `resyncs`: times L1 was emptied because another process's changes
/// could not be told one by one; and `tiers`: one object per enabled tier
/// with `tier`, `hits`, `misses`, `avg_time_us`, `evictions`, `entries`,
/// `bytes`, `max_bytes`); `source`: loading counters (`requests`,
/// `successes`, `failures`, `timeouts`, `not_found`, `rejected`,
/// `coalesced`, `coalesced_processes`, `stale_served`, `negative_hits`,
/// `refreshes`); `breaker`: the object of
/// `tierstack_cache_breaker_status_json`; `outbox`: the object of
/// `tierstack_cache_outbox_stats_json` (null unless the `strategy` is
/// `"write-behind"`). The caller owns the string
/// and frees it with `tierstack_string_free`. Works on a closed cache too.
/// Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_stats_json(
    cache: *const tierstack_cache,
    out: *mut *mut c_char,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes a live handle.
        let engine = unsafe { engine(cache)? };
        let out = out_param(out, "out")?;
        let json = json_string(&engine.stats(), "stats")?;
        // SAFETY: `out` is a non-NULL pointer to a writable string slot.
        unsafe { out.write(json) };
        Ok(())
    })
}

/// Sets every counter of the cache back to zero. Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_reset_stats(
    cache: *const tierstack_cache,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes a live handle.
        unsafe { engine(cache) }?.reset_stats();
        Ok(())
    })
}
