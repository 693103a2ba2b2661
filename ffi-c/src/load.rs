//! Loading: C function pointers adapted into the engine's loaders, and
//! `tierstack_cache_get_or_load(_many)`. The handles loaders answer through
//! are in [`crate::answer`].
//!
//! Everything around a loader call (single-flight in the process and across
//! processes, the breaker, the timeouts, stale copies, negative caching)
//! happens in the engine; this file only turns a C call into a
//! [`Fetched`] answer and back.

use std::collections::HashMap;
use std::ffi::{CString, c_char, c_void};

use tierstack::config::ttl_from_seconds;
use tierstack::{Error, ErrorKind, Fetched, GetOptions};

use crate::answer::{self, Answer, tierstack_load, tierstack_load_batch};
use crate::cache::{engine, engine_and_key, tierstack_cache};
use crate::entry::tierstack_value;
use crate::error::{last_error, null_argument, set_last_error, tierstack_result};
use crate::handle::{self, BoxHandle, out_param};
use crate::panic::guard;

/// A loader: fetches the value of `key` (`key_len` bytes of UTF-8, followed
/// by a NUL that is not part of the key) and answers through `load` with
/// `tierstack_load_value` (and `tierstack_load_tag` for each tag of the
/// value) or `tierstack_load_not_found`, then returns `TIERSTACK_RESULT_OK`.
///
/// Returning any other result fails the load (whatever was answered): the
/// caller gets `TIERSTACK_RESULT_SOURCE` (or a stale copy) and the message
/// `the loader returned <result name>`, followed by `: ` and the loader's
/// own message if it gave one with `tierstack_load_error`, else by the
/// loader thread's last error message if a tierstack call on it failed
/// during the loader. A loader that called `tierstack_load_error` and
/// returns OK has failed too, with the message `the loader failed:
/// <message>`. Returning OK without answering is a failure as well ("the
/// loader answered nothing").
///
/// The loader runs on a thread of tierstack's runtime (its blocking pool),
/// never on the thread that called `tierstack_cache_get_or_load`, so
/// `user_data` must be usable from another thread. It may still be running
/// after the caller got its answer (a stale copy at the soft timeout, a
/// timeout at the hard one): `user_data` must stay valid until the loader
/// returns. The key and `load` are valid only during the call.
#[allow(non_camel_case_types)]
pub type tierstack_loader_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        key: *const c_char,
        key_len: usize,
        load: *mut tierstack_load,
    ) -> tierstack_result,
>;

/// A batch loader: fetches the `n` keys `keys[i]` (`key_lens[i]` bytes of
/// UTF-8, each followed by a NUL that is not part of the key), which are
/// exactly the keys of the call that no tier holds and no other caller is
/// loading, and answers per key through `batch` with
/// `tierstack_load_batch_value` (and `tierstack_load_batch_tag`) or
/// `tierstack_load_batch_not_found`; a key left unanswered is not found.
/// Then it returns `TIERSTACK_RESULT_OK`; any other result, or a call of
/// `tierstack_load_batch_error`, fails every key of the batch with the
/// messages of `tierstack_loader_fn`.
///
/// Runs on a thread of tierstack's runtime, as `tierstack_loader_fn` does;
/// the key arrays and `batch` are valid only during the call.
#[allow(non_camel_case_types)]
pub type tierstack_batch_loader_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        keys: *const *const c_char,
        key_lens: *const usize,
        n: usize,
        batch: *mut tierstack_load_batch,
    ) -> tierstack_result,
>;

/// `user_data`, which the caller promises is usable from any thread.
#[derive(Clone, Copy)]
pub(crate) struct UserData(pub(crate) *mut c_void);

// SAFETY: the documented contract of every loader: `user_data` may be used
// from another thread (loaders run on tierstack's runtime).
unsafe impl Send for UserData {}
// SAFETY: as above; a configured source's loader may run on several
// runtime threads at once, which its documentation says.
unsafe impl Sync for UserData {}

/// A C loader and its `user_data`, callable from any thread.
#[derive(Clone, Copy)]
pub(crate) struct Loader {
    f: RawLoaderFn,
    user_data: UserData,
}

/// A loader whose result is read as the raw number C returned: C may
/// return any `uint32_t`, which is no value of the Rust enum unless it is a
/// known code. `tierstack_result` is `repr(u32)`, so the two function types
/// have the same ABI, and `Option` of a function pointer is the pointer
/// (NULL for `None`).
type RawLoaderFn =
    unsafe extern "C" fn(*mut c_void, *const c_char, usize, *mut tierstack_load) -> u32;
type RawBatchLoaderFn = unsafe extern "C" fn(
    *mut c_void,
    *const *const c_char,
    *const usize,
    usize,
    *mut tierstack_load_batch,
) -> u32;

impl Loader {
    /// The loader `f`; NULL is an error naming `what`.
    pub(crate) fn new(
        f: tierstack_loader_fn,
        user_data: *mut c_void,
        what: &str,
    ) -> Result<Self, Error> {
        // SAFETY: the same ABI (see `RawLoaderFn`).
        let f: Option<RawLoaderFn> = unsafe { std::mem::transmute(f) };
        Ok(Self {
            f: f.ok_or_else(|| null_argument(what))?,
            user_data: UserData(user_data),
        })
    }

    /// Calls the loader for `key` and reads its answer.
    pub(crate) fn call(&self, key: &str) -> Result<Fetched, Error> {
        let key_c = c_key(key)?;
        let f = self.f;
        set_last_error(String::new());
        let (code, answer) = answer::run_load(|load| {
            // SAFETY: the caller of the get_or_load (or open) gave a loader
            // and user_data that may be called from this thread; the key
            // and handle are valid for the call.
            unsafe { f(self.user_data.0, key_c.as_ptr(), key.len(), load) }
        });
        match (code, answer) {
            (code, Answer::Failed(message)) => Err(loader_failed(code, Some(message))),
            (0, Answer::Fetched(fetched)) => Ok(fetched),
            (0, Answer::Nothing) => {
                Err(Error::new(ErrorKind::Source, "the loader answered nothing"))
            }
            (code, _) => Err(loader_failed(code, None)),
        }
    }
}

/// A C batch loader and its `user_data`.
struct BatchLoader {
    f: RawBatchLoaderFn,
    user_data: UserData,
}

impl BatchLoader {
    /// Calls the loader for `keys` and reads its answers (a key left out is
    /// not found).
    fn call(&self, keys: Vec<String>) -> Result<HashMap<String, Fetched>, Error> {
        let keys_c = keys
            .iter()
            .map(|k| c_key(k))
            .collect::<Result<Vec<CString>, Error>>()?;
        let ptrs: Vec<*const c_char> = keys_c.iter().map(|k| k.as_ptr()).collect();
        let lens: Vec<usize> = keys.iter().map(String::len).collect();
        let f = self.f;
        set_last_error(String::new());
        let (code, batch) = answer::run_batch(keys.into_iter().collect(), |handle| {
            // SAFETY: as in `Loader::call`; the arrays hold `n` elements and
            // outlive the call.
            unsafe {
                f(
                    self.user_data.0,
                    ptrs.as_ptr(),
                    lens.as_ptr(),
                    ptrs.len(),
                    handle,
                )
            }
        });
        match (code, batch.failed) {
            (code, Some(message)) => Err(loader_failed(code, Some(message))),
            (0, None) => Ok(batch.answers),
            (code, None) => Err(loader_failed(code, None)),
        }
    }
}

/// `key` with a NUL after it, for C.
pub(crate) fn c_key(key: &str) -> Result<CString, Error> {
    // Keys never hold a control character; checked again here because C
    // would read a NUL as the end.
    CString::new(key)
        .map_err(|_| Error::new(ErrorKind::InvalidKey, "a key to load holds a NUL byte"))
}

/// The error of a loader that returned `code` (not OK), or that gave its
/// own failure `message` (whatever it returned); see [`callback_failed`].
fn loader_failed(code: u32, message: Option<String>) -> Error {
    callback_failed("loader", code, message)
}

/// The error of a C callback (`who`: `"loader"`, `"store"`, `"remove"`)
/// that returned `code` (not OK), or that gave its own failure `message`
/// (whatever it returned): kind `source`, with the message `the <who>
/// returned <result name>[: <detail>]`, or `the <who> failed: <message>`
/// for a callback that gave a message and returned OK. Without a message
/// of its own, this thread's last error (a tierstack call the callback made
/// that failed) is the detail.
pub(crate) fn callback_failed(who: &str, code: u32, message: Option<String>) -> Error {
    if code == 0
        && let Some(message) = &message
    {
        return Error::new(ErrorKind::Source, format!("the {who} failed: {message}"));
    }
    let name = tierstack_result::from_code(code).map_or_else(
        || format!("unknown result {code}"),
        |r| r.name().to_string_lossy().into_owned(),
    );
    let detail = message.unwrap_or_else(last_error);
    let message = match detail.is_empty() {
        true => format!("the {who} returned {name}"),
        false => format!("the {who} returned {name}: {detail}"),
    };
    Error::new(ErrorKind::Source, message)
}

/// Options of a loading call: its TTL in seconds (0: the tier default).
fn get_options(ttl_seconds: f64) -> Result<GetOptions, Error> {
    Ok(match ttl_from_seconds(ttl_seconds)? {
        Some(ttl) => GetOptions::new().ttl(ttl),
        None => GetOptions::new(),
    })
}

/// Reads `key` (`key_len` bytes of UTF-8) from the tiers; on a miss in
/// every tier, calls `loader(user_data, key, key_len, load)` and stores its
/// answer in every tier, with the loader's TTL, else `ttl_seconds` (0: the
/// tier default; negative, NaN or infinite: `TIERSTACK_RESULT_INVALID_ARGUMENT`
/// before anything is read).
///
/// On success `*out` receives a new value owned by the caller (free it with
/// `tierstack_value_free`; `tierstack_value_tier` says `"source"` when it was
/// loaded for this call, `tierstack_value_is_stale` whether it is a stale
/// copy), or NULL when the loader answered "not found" (now or within
/// `negative_ttl`: the loader is not called again meanwhile).
///
/// One load per key at a time: however many threads of this process, and
/// processes sharing the L2 file, miss the key at once, one loader call
/// runs and every caller gets its answer. A caller holding an expired copy
/// (within `fail_safe.max_stale`) gets that copy, marked stale, when the
/// loader fails, when the breaker is open, or once the load has run for
/// `fail_safe.soft_timeout` (the load then finishes in the background and
/// fills the tiers). Without a stale copy: `TIERSTACK_RESULT_SOURCE` (the
/// loader failed), `TIERSTACK_RESULT_SOURCE_UNAVAILABLE` (the breaker is
/// open) or `TIERSTACK_RESULT_TIMEOUT` (past `fail_safe.hard_timeout`; the
/// loader's late answer is dropped).
///
/// The loader runs on one of tierstack's threads, not the calling one; see
/// `tierstack_loader_fn` for what that asks of `user_data`. A NULL `loader`
/// is `TIERSTACK_RESULT_INVALID_ARGUMENT`. Any thread may call this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_get_or_load(
    cache: *const tierstack_cache,
    key: *const c_char,
    key_len: usize,
    loader: tierstack_loader_fn,
    user_data: *mut c_void,
    ttl_seconds: f64,
    out: *mut *mut tierstack_value,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes a live handle and `key_len` readable bytes.
        let (engine, key) = unsafe { engine_and_key(cache, key, key_len)? };
        let out = out_param(out, "out")?;
        let loader = Loader::new(loader, user_data, "loader")?;
        let options = get_options(ttl_seconds)?;
        let found = engine.lookup_or_load(key, move |key| loader.call(key), options)?;
        let value = found.map_or(std::ptr::null_mut(), |l| {
            tierstack_value::from(l).into_raw()
        });
        // SAFETY: `out` is a non-NULL pointer to a writable value slot.
        unsafe { out.write(value) };
        Ok(())
    })
}

/// Reads `n` keys (parallel arrays of pointers and byte lengths, as in
/// `tierstack_cache_mget`); the keys that no tier holds and no other caller
/// is loading go to one call of `loader`, which answers each through its
/// `tierstack_load_batch` (keys it leaves unanswered are not found). Keys
/// another caller is loading are waited for.
///
/// On success `out_values[i]` (room for `n` pointers) receives a new value
/// owned by the caller, or NULL for a key not found; values report tier and
/// staleness as with `tierstack_cache_get_or_load`. A bad key or TTL fails
/// the whole call before the loader is called; a failed load fails the call
/// unless every key it concerns has a stale copy to serve. Nothing is
/// written to `out_values` on failure. With `n == 0` the arrays may be NULL.
/// `loader` runs as `tierstack_batch_loader_fn` says. Any thread may call
/// this.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_cache_get_or_load_many(
    cache: *const tierstack_cache,
    keys: *const *const c_char,
    key_lens: *const usize,
    n: usize,
    loader: tierstack_batch_loader_fn,
    user_data: *mut c_void,
    ttl_seconds: f64,
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
            return Err(null_argument("out_values"));
        }
        // SAFETY: the same ABI (see `RawLoaderFn`).
        let f: Option<RawBatchLoaderFn> = unsafe { std::mem::transmute(loader) };
        let loader = BatchLoader {
            f: f.ok_or_else(|| null_argument("loader"))?,
            user_data: UserData(user_data),
        };
        let options = get_options(ttl_seconds)?;
        let found = engine.lookup_or_load_many(&keys, move |keys| loader.call(keys), options)?;
        debug_assert_eq!(found.len(), n);
        for (i, value) in found.into_iter().enumerate() {
            let ptr = value.map_or(std::ptr::null_mut(), |l| {
                tierstack_value::from(l).into_raw()
            });
            // SAFETY: the caller gives room for `n` pointers at `out_values`.
            unsafe { out_values.add(i).write(ptr) };
        }
        Ok(())
    })
}
