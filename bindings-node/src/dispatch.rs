//! Direct dispatch of the read methods, for the L1 hit path.
//!
//! napi-rs 3 surrounds every `&self` method call with per-call borrow
//! tracking (a process-wide, mutex-guarded map of live borrows) that costs
//! about 300 ns, more than the rest of an L1 hit. When the module loads,
//! the prototype's `get`, `getBuffer`, `lookup`, `lookupBuffer`, `has`,
//! `getOrLoad` and `getOrLoadBuffer` are therefore replaced by plain napi
//! callbacks. Each does the receiver checks napi-rs does (`napi_unwrap`,
//! then the class's type tag, so a foreign object is refused) and calls the
//! same implementation as the `#[napi]` method, which stays the declaration
//! the TypeScript types are generated from.
//!
//! Why a shared reference without tracking is sound: the tracking exists to
//! refuse a `&mut self` call while a `&self` borrow is live. Every
//! `HybridStorage` method takes `&self` and keeps its mutable state in
//! `RefCell`s whose borrows are never held while JS code runs, so napi-rs
//! never hands out `&mut HybridStorage` while the object is reachable (only
//! its finalizer owns it, once it is garbage).

use std::ffi::{CStr, c_void};
use std::ptr;

use napi::bindgen_prelude::{JsObjectValue, Object, TypeTag, Unknown};
use napi::{Env, JsValue, sys};
use napi_derive::napi;
use tierstack::Error;

use crate::cache::{HybridStorage, Shape};
use crate::drive::Reply;
use crate::error;
use crate::js::{self, Value};

/// A method dispatched directly: the storage, the env and its arguments;
/// its reply is the returned promise, or settles it.
enum Method {
    /// A read of one key: `get(key)`.
    Read(fn(&HybridStorage, &Env, Value) -> Result<Reply, Error>),
    /// A read that may load, `getOrLoad(key, loader, ttlSeconds)`,
    /// answering with the value in this shape.
    Load(Shape),
}

/// The most arguments a [`Method`] takes.
const MAX_ARGS: usize = 3;

static METHODS: [(&CStr, Method); 7] = [
    (c"get", Method::Read(HybridStorage::get_value)),
    (c"getBuffer", Method::Read(HybridStorage::get_buffer_value)),
    (c"lookup", Method::Read(HybridStorage::lookup_value)),
    (
        c"lookupBuffer",
        Method::Read(HybridStorage::lookup_buffer_value),
    ),
    (c"has", Method::Read(HybridStorage::has_value)),
    (c"getOrLoad", Method::Load(Shape::Value)),
    (c"getOrLoadBuffer", Method::Load(Shape::Buffer)),
];

/// Replaces the read methods of `HybridStorage.prototype` (run by napi-rs
/// once the classes are registered).
#[napi(module_exports)]
pub fn install(exports: Object, env: Env) -> napi::Result<()> {
    let class: Unknown = exports.get_named_property("HybridStorage")?;
    let prototype =
        js::get_named(&env, class.raw(), c"prototype").map_err(|e| error::to_napi(&env, &e))?;
    for (name, method) in &METHODS {
        let mut function = ptr::null_mut();
        // SAFETY: `name` is NUL-terminated (auto length); the data pointer
        // is a `&'static Method`, turned back into one by `dispatch` only.
        let status = unsafe {
            sys::napi_create_function(
                env.raw(),
                name.as_ptr(),
                name.to_bytes().len() as isize,
                Some(dispatch),
                ptr::from_ref(method).cast_mut().cast(),
                &mut function,
            )
        };
        js::check(&env, status, "creating a method").map_err(|e| error::to_napi(&env, &e))?;
        js::set_named(&env, prototype, name, function).map_err(|e| error::to_napi(&env, &e))?;
    }
    Ok(())
}

/// The storage `this` wraps, if it is a `HybridStorage`.
///
/// # Safety
///
/// The reference must not outlive the current call.
unsafe fn receiver<'a>(env: &Env, this: Value) -> Option<&'a HybridStorage> {
    let mut wrapped: *mut c_void = ptr::null_mut();
    // SAFETY: valid handles; a non-wrapped object is reported by status.
    let status = unsafe { sys::napi_unwrap(env.raw(), this, &mut wrapped) };
    if status != sys::Status::napi_ok || wrapped.is_null() {
        return None;
    }
    let tag = <HybridStorage as TypeTag>::type_tag();
    let mut tagged = false;
    // SAFETY: valid handles; the tag is napi-rs's tag of the class.
    let status = unsafe { sys::napi_check_object_type_tag(env.raw(), this, &tag, &mut tagged) };
    // SAFETY: a wrapped object carrying the class's tag wraps a boxed
    // `HybridStorage`, alive while `this` is; only shared references exist
    // (see the module docs).
    (status == sys::Status::napi_ok && tagged).then(|| unsafe { &*wrapped.cast::<HybridStorage>() })
}

/// The napi callback of every read method: checks the receiver, runs the
/// read, and returns a promise settled with its outcome.
unsafe extern "C" fn dispatch(raw_env: sys::napi_env, info: sys::napi_callback_info) -> Value {
    let env = Env::from_raw(raw_env);
    let mut argc = MAX_ARGS;
    let mut argv = [ptr::null_mut(); MAX_ARGS];
    let mut this = ptr::null_mut();
    let mut data = ptr::null_mut();
    // SAFETY: `argv` holds `argc` slots; napi fills missing arguments with undefined.
    let status = unsafe {
        sys::napi_get_cb_info(
            raw_env,
            info,
            &mut argc,
            argv.as_mut_ptr(),
            &mut this,
            &mut data,
        )
    };
    if status != sys::Status::napi_ok {
        return ptr::null_mut();
    }
    // SAFETY: `data` is the `&'static Method` that `install` gave this function.
    let method = unsafe { &*data.cast::<Method>() };
    // SAFETY: the reference is used within this call only.
    let Some(storage) = (unsafe { receiver(&env, this) }) else {
        let err = error::argument("a HybridStorage method was called on another object");
        // SAFETY: a valid env; the exception is this call's result.
        unsafe { sys::napi_throw(raw_env, error::to_js(&env, &err)) };
        return ptr::null_mut();
    };
    // A panic must not unwind out of an `extern "C"` callback (that aborts
    // the process): it rejects the promise as an internal error instead.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let reply = match method {
            Method::Read(read) => read(storage, &env, argv[0]),
            Method::Load(shape) => {
                storage.get_or_load_reply(&env, argv[0], argv[1], argv[2], *shape)
            }
        };
        reply.and_then(|reply| reply.into_promise(&env))
    }))
    .unwrap_or_else(|_| {
        Err(Error::new(
            tierstack::ErrorKind::Internal,
            "a read panicked; the storage is unchanged",
        ))
    });
    match outcome {
        Ok(promise) => promise,
        Err(err) => js::settled(&env, Err(error::to_js(&env, &err))).unwrap_or(ptr::null_mut()),
    }
}
