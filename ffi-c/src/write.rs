//! Writing to a source: the `store` and `remove` function pointers of a
//! `tierstack_source` adapted into the engine's source writes, and the
//! handle (`tierstack_write`) through which they report their own failure.
//!
//! When a write reaches the source, how often it is retried, in which
//! order and what is given up on are the engine's (the strategy and the
//! outbox); this file only turns one C call into `Ok` or an error.

use std::ffi::{c_char, c_void};

use tierstack::{Error, ErrorKind};

use crate::answer::failure_message;
use crate::error::{set_last_error, tierstack_result};
use crate::handle::Scoped;
use crate::load::{UserData, c_key, callback_failed};
use crate::panic::guard;

/// Stores a value at the source: `data` (`len` bytes; `len` may be 0)
/// under `key` (`key_len` bytes of UTF-8, followed by a NUL that is not
/// part of the key). `idempotency_key` (`idempotency_key_len` bytes of
/// ASCII, followed by a NUL) names this write: every attempt of it, also
/// one made by another process after this one crashed, carries the same
/// one, so a source that remembers them can apply each write once (e.g.
/// send it as an HTTP `Idempotency-Key` header).
///
/// Return `TIERSTACK_RESULT_OK` once the source holds the value. Any other
/// result fails the write, as does calling `tierstack_write_error` on
/// `write` (which also gives the failure's message); the error is of kind
/// `source` with the messages of `tierstack_loader_fn` ("the store
/// returned <result name>: <message>", or "the store failed: <message>"
/// when it called `tierstack_write_error` and returned OK). With
/// write-through the caller of `tierstack_cache_set` gets that error;
/// with write-behind the outbox retries the write and, after
/// `outbox.max_attempts`, keeps it as a dead letter whose `last_error` is
/// `source: <that message>`.
///
/// Runs on a thread of tierstack's runtime (its blocking pool), never on
/// the thread that called `tierstack_cache_set` / `_delete`, and, with
/// write-behind, for several keys at once (never two writes of one key at
/// once). `key`, `data`, `idempotency_key` and `write` are valid only
/// during the call.
#[allow(non_camel_case_types)]
pub type tierstack_store_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        key: *const c_char,
        key_len: usize,
        data: *const u8,
        len: usize,
        idempotency_key: *const c_char,
        idempotency_key_len: usize,
        write: *mut tierstack_write,
    ) -> tierstack_result,
>;

/// Removes `key` (`key_len` bytes of UTF-8, followed by a NUL) at the
/// source; removing a key the source does not hold succeeds.
/// `idempotency_key`, the result, `write` and the threads it runs on are as
/// in `tierstack_store_fn` (the messages say "remove").
#[allow(non_camel_case_types)]
pub type tierstack_remove_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        key: *const c_char,
        key_len: usize,
        idempotency_key: *const c_char,
        idempotency_key_len: usize,
        write: *mut tierstack_write,
    ) -> tierstack_result,
>;

/// The failure slot of one store or remove call, handed to it as its last
/// argument: `tierstack_write_error` records why the write failed. Valid
/// only while that call runs (afterwards: `TIERSTACK_RESULT_INVALID_ARGUMENT`);
/// never freed by C.
#[allow(non_camel_case_types)]
pub struct tierstack_write {
    _opaque: [u8; 0],
}

/// The live `tierstack_write` handles: the failure message given, if any.
static WRITES: Scoped<Option<String>> = Scoped::new("write", "store or remove call");

/// The callbacks with the result read as the raw number C returned (see
/// `RawLoaderFn` in [`crate::load`]: the same ABI as the public types).
type RawStoreFn = unsafe extern "C" fn(
    *mut c_void,
    *const c_char,
    usize,
    *const u8,
    usize,
    *const c_char,
    usize,
    *mut tierstack_write,
) -> u32;
type RawRemoveFn = unsafe extern "C" fn(
    *mut c_void,
    *const c_char,
    usize,
    *const c_char,
    usize,
    *mut tierstack_write,
) -> u32;

/// A source's C `store` and `remove` and their `user_data`, callable from
/// any thread.
#[derive(Clone, Copy)]
pub(crate) struct Writer {
    store: RawStoreFn,
    remove: RawRemoveFn,
    user_data: UserData,
}

impl Writer {
    /// The writes of a source: `None` when both pointers are NULL (a
    /// read-only source); one without the other is an error.
    pub(crate) fn new(
        store: tierstack_store_fn,
        remove: tierstack_remove_fn,
        user_data: *mut c_void,
    ) -> Result<Option<Self>, Error> {
        // SAFETY: the same ABI (see `RawStoreFn`).
        let store: Option<RawStoreFn> = unsafe { std::mem::transmute(store) };
        // SAFETY: as above.
        let remove: Option<RawRemoveFn> = unsafe { std::mem::transmute(remove) };
        match (store, remove) {
            (None, None) => Ok(None),
            (Some(store), Some(remove)) => Ok(Some(Self {
                store,
                remove,
                user_data: UserData(user_data),
            })),
            (store, _) => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "source->{} is NULL but source->{} is not: a writable source gives both, \
                     a read-only one neither",
                    if store.is_none() { "store" } else { "remove" },
                    if store.is_none() { "remove" } else { "store" },
                ),
            )),
        }
    }

    /// Calls `store` for `key`.
    pub(crate) fn store(
        &self,
        key: &str,
        value: &[u8],
        idempotency_key: &str,
    ) -> Result<(), Error> {
        let (key_c, id_c) = (c_key(key)?, c_key(idempotency_key)?);
        let f = self.store;
        // A failure's detail is then one this call caused (see `callback_failed`).
        set_last_error(String::new());
        outcome(
            "store",
            WRITES.run(None, |write| {
                // SAFETY: the source's contract (see `tierstack_store_fn`):
                // callable from this thread with its user_data; the key,
                // value, idempotency key and handle are valid for the call.
                unsafe {
                    f(
                        self.user_data.0,
                        key_c.as_ptr(),
                        key.len(),
                        value.as_ptr(),
                        value.len(),
                        id_c.as_ptr(),
                        idempotency_key.len(),
                        write,
                    )
                }
            }),
        )
    }

    /// Calls `remove` for `key`.
    pub(crate) fn remove(&self, key: &str, idempotency_key: &str) -> Result<(), Error> {
        let (key_c, id_c) = (c_key(key)?, c_key(idempotency_key)?);
        let f = self.remove;
        // A failure's detail is then one this call caused (see `callback_failed`).
        set_last_error(String::new());
        outcome(
            "remove",
            WRITES.run(None, |write| {
                // SAFETY: as in `store`.
                unsafe {
                    f(
                        self.user_data.0,
                        key_c.as_ptr(),
                        key.len(),
                        id_c.as_ptr(),
                        idempotency_key.len(),
                        write,
                    )
                }
            }),
        )
    }
}

/// What a store or remove call (`who`) came to: its result code and the
/// failure message it gave.
fn outcome(who: &str, (code, message): (u32, Option<String>)) -> Result<(), Error> {
    match (code, message) {
        (0, None) => Ok(()),
        (code, message) => Err(callback_failed(who, code, message)),
    }
}

/// Fails the store or remove call that was handed `write`, with its own
/// message (`message_len` bytes of UTF-8, not empty, without a NUL;
/// copied): the write's error then reads `source: the store returned
/// <result name>: <message>` (`the remove …` for a remove), or `source: the
/// store failed: <message>` when the callback returns OK anyway. With
/// write-behind this is the dead letter's `last_error` once the outbox
/// gives up.
///
/// A second call, a bad message and a `write` whose call returned are
/// `TIERSTACK_RESULT_INVALID_ARGUMENT`. Any thread may call this during the
/// store or remove call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_write_error(
    write: *mut tierstack_write,
    message: *const c_char,
    message_len: usize,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes `message_len` readable bytes.
        let message = unsafe { failure_message(message, message_len) }?;
        WRITES.with(write, |slot| match slot {
            None => {
                *slot = Some(message);
                Ok(())
            }
            Some(_) => Err(Error::new(
                ErrorKind::InvalidArgument,
                "the write already failed: tierstack_write_error is called once",
            )),
        })
    })
}
