//! `tierstack_source`: a source of truth made of C function pointers, given
//! to a cache when it opens, so that plain reads load through it and, when
//! it can store and remove, writes reach it (write-through, write-behind).

use std::ffi::{c_char, c_void};

use tierstack::{blocking, source};

use crate::cache::{parse_config, tierstack_cache};
use crate::error::{null_argument, tierstack_result};
use crate::handle::{BoxHandle, out_param};
use crate::load::{Loader, tierstack_loader_fn};
use crate::panic::guard;
use crate::write::{Writer, tierstack_remove_fn, tierstack_store_fn};

/// A source of truth for `tierstack_cache_open_with_source`: the functions
/// the cache calls, each with the `user_data` given at open. Copied at
/// open; the struct itself need not outlive the call.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct tierstack_source {
    /// Loads one key (required): called, as `tierstack_loader_fn` says, for
    /// a key that a plain read (`tierstack_cache_get`, `_lookup`, `_mget`)
    /// finds in no tier. The cache may call it from several of its threads
    /// at once, for different keys.
    pub load: tierstack_loader_fn,
    /// Stores a value at the source (see `tierstack_store_fn`), for the
    /// `strategy` `"write-through"` and `"write-behind"`. NULL together with
    /// `remove`: the source is read-only.
    pub store: tierstack_store_fn,
    /// Removes a key at the source (see `tierstack_remove_fn`); NULL
    /// exactly when `store` is.
    pub remove: tierstack_remove_fn,
}

/// Opens a cache, as `tierstack_cache_open` does, whose source of truth is
/// `*source` called with `user_data`: a read that misses every tier
/// (`tierstack_cache_get`, `tierstack_cache_lookup`, `tierstack_cache_mget`)
/// loads the key through `source->load`, with everything
/// `tierstack_cache_get_or_load` describes (one load per key across threads
/// and processes, the breaker, stale copies, timeouts, negative caching);
/// `mget` loads its missing keys one call each, concurrently.
///
/// `source->load` is required. `source->store` and `source->remove` are
/// both set (a writable source) or both NULL (a read-only one); one without
/// the other is `TIERSTACK_RESULT_INVALID_ARGUMENT`. How writes reach a
/// writable source is the config's `strategy`:
/// - `"read-through"` (the default) and `"cache-aside"`: never (they are
///   the cache's alone); cache-aside does not load misses through the
///   source either (only `tierstack_cache_get_or_load` loads).
/// - `"write-through"`: `tierstack_cache_set` (and `_set_with_tags`) and
///   `tierstack_cache_delete` call `store` / `remove` first, on one of
///   tierstack's threads, and write the tiers only once it succeeded; a
///   failure is the caller's `TIERSTACK_RESULT_SOURCE` and leaves the tiers
///   as they were. `tierstack_cache_mset` stores key by key, in order, and
///   stops at the first failure (see there).
/// - `"write-behind"`: the write is in L1 and in the process's journal (it
///   survives a crash of the process) before the call returns, and is
///   committed to the L2 file with its outbox row a moment later;
///   a background worker delivers it with retries, backoff and dead
///   letters per the config's `outbox` section (`max_attempts` 8,
///   `retry_base` 0.5 s, `retry_max` 60 s, `batch` 32, `flush_timeout`
///   30 s, `close_timeout` 5 s). See `tierstack_cache_outbox_stats_json`,
///   `tierstack_cache_dead_letters_json`, `tierstack_cache_flush`.
///
/// Either writing strategy with a read-only source is
/// `TIERSTACK_RESULT_INVALID_CONFIG` (as with `tierstack_cache_open`, which
/// has no source).
///
/// `user_data` must be usable from any thread, by several threads at once,
/// and stay valid until the cache is freed and the last call of `load`,
/// `store` or `remove` has returned. The caller owns the handle and frees
/// it with `tierstack_cache_free`. Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_open_with_source(
    config_json: *const c_char,
    source: *const tierstack_source,
    user_data: *mut c_void,
    out: *mut *mut tierstack_cache,
) -> tierstack_result {
    guard(|| {
        let out = out_param(out, "out")?;
        // SAFETY: the caller passes NULL or a readable `tierstack_source`.
        let source = unsafe { source.as_ref() }.ok_or_else(|| null_argument("source"))?;
        let loader = Loader::new(source.load, user_data, "source->load")?;
        let writer = Writer::new(source.store, source.remove, user_data)?;
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let config = unsafe { parse_config(config_json) }?;
        let load = source::from_blocking_fn(move |key: &str| loader.call(key));
        let builder = blocking::Cache::builder().config(config);
        let builder = match writer {
            None => builder.source(load),
            Some(writer) => builder.source(load.with_writes(
                move |key: &str, value: &[u8], id: &str| writer.store(key, value, id),
                move |key: &str, id: &str| writer.remove(key, id),
            )),
        };
        let inner = builder.build_blocking()?;
        // SAFETY: `out` is a non-NULL pointer to a writable handle slot.
        unsafe { out.write(tierstack_cache { inner }.into_raw()) };
        Ok(())
    })
}
