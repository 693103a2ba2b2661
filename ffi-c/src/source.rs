//! `tierstack_source`: a source of truth made of C function pointers, given
//! to a cache when it opens, so that plain reads load through it.

use std::ffi::{c_char, c_void};

use tierstack::{Error, ErrorKind, blocking, source};

use crate::cache::{parse_config, tierstack_cache};
use crate::error::{null_argument, tierstack_result};
use crate::handle::{BoxHandle, out_param};
use crate::load::{Loader, tierstack_loader_fn};
use crate::panic::guard;

/// Writes a value to the source (write-through and write-behind). Reserved:
/// no version calls it yet, and `tierstack_source.store` must be NULL.
#[allow(non_camel_case_types)]
pub type tierstack_store_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        key: *const c_char,
        key_len: usize,
        data: *const u8,
        len: usize,
    ) -> tierstack_result,
>;

/// Removes a key from the source (write-through and write-behind).
/// Reserved: no version calls it yet, and `tierstack_source.remove` must be
/// NULL.
#[allow(non_camel_case_types)]
pub type tierstack_remove_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        key: *const c_char,
        key_len: usize,
    ) -> tierstack_result,
>;

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
    /// Reserved for write-through / write-behind (a later version); must be
    /// NULL for now.
    pub store: tierstack_store_fn,
    /// Reserved for write-through / write-behind (a later version); must be
    /// NULL for now.
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
/// `source->load` is required; `source->store` and `source->remove` are
/// reserved and must be NULL (else `TIERSTACK_RESULT_INVALID_ARGUMENT`).
/// `user_data` must be usable from any thread, by several threads at once,
/// and stay valid until the cache is freed and the last loader call has
/// returned. The caller owns the handle and frees it with
/// `tierstack_cache_free`. Any thread may call this.
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
        if source.store.is_some() || source.remove.is_some() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "source->store and source->remove are reserved for write strategies and must be NULL",
            ));
        }
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let config = unsafe { parse_config(config_json) }?;
        let inner = blocking::Cache::builder()
            .config(config)
            .source(source::from_blocking_fn(move |key: &str| loader.call(key)))
            .build_blocking()?;
        // SAFETY: `out` is a non-NULL pointer to a writable handle slot.
        unsafe { out.write(tierstack_cache { inner }.into_raw()) };
        Ok(())
    })
}
