//! Direct dispatch of the read methods, for the L1 hit path.
//!
//! napi-rs 3 surrounds every `&self` method call with per-call borrow
//! tracking (a process-wide, mutex-guarded map of live borrows) that costs
//! about 300 ns, more than the rest of an L1 hit; and a promise made through
//! napi (`napi_create_promise`, then resolving it) holds its resolver in a
//! global handle, created and destroyed per call, which costs about as much
//! again. When the module loads, the prototype's `get`, `getBuffer`,
//! `lookup`, `lookupBuffer`, `has`, `getOrLoad`, `getOrLoadBuffer`, `mget`
//! and `mgetBuffer` are therefore replaced by small JS functions over plain
//! napi callbacks:
//!
//! - the callback does the receiver checks napi-rs does (`napi_unwrap`, then
//!   the class's type tag, so a foreign object is refused by a synchronous
//!   throw) and calls the same implementation as the `#[napi]` method, which
//!   stays the declaration the TypeScript types are generated from. It
//!   returns the answer itself (a value, or the promise of a load), or a
//!   promise rejected with the error;
//! - the JS function makes the promise: `Promise.resolve(answer)`, which
//!   hands a promise back as it is. For `mget`, the callback answers with
//!   the values in an array beside the keys (a copy of the array asked,
//!   made first, so both sides read the same keys; `undefined` for a key
//!   not found), and the JS function puts the keys found into the `Map`
//!   (cheaper in JS than a call into JS per key).
//!
//! `Promise`, `Promise.resolve`, `Array.isArray`, `Array.prototype.slice`,
//! `Map` and `Map.prototype.set` are captured when the module loads, so later changes to the globals do
//! not change what the methods return.
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

use crate::cache::{Found, HybridStorage, Shape};
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
    /// A read of many keys, `mget(keys)`: decoded values, or `Buffer`s.
    Many { decode: bool },
}

/// The most arguments a [`Method`] takes.
const MAX_ARGS: usize = 3;

static METHODS: [(&CStr, Method); 9] = [
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
    (c"mget", Method::Many { decode: true }),
    (c"mgetBuffer", Method::Many { decode: false }),
];

/// Makes the JS method over a napi callback: `(name, native, many) =>
/// function`. Evaluated once per method, so that each method's call sites
/// see one callee.
const WRAPPER: &str = r#"(function (P, resolve, isArray, slice, NewMap, mapSet) {
  'use strict';
  return function wrap(name, native, many) {
    const method = many
      ? function (keys) {
          if (!isArray(keys)) return resolve.call(P, native.call(this, keys));
          const asked = slice.call(keys);
          const found = native.call(this, asked);
          if (!isArray(found)) return resolve.call(P, found);
          const map = new NewMap();
          for (let i = 0; i < found.length; i++) {
            if (found[i] !== undefined) mapSet.call(map, asked[i], found[i]);
          }
          return resolve.call(P, map);
        }
      : function (a, b, c) {
          return resolve.call(P, native.call(this, a, b, c));
        };
    Object.defineProperty(method, 'name', { value: name });
    return method;
  };
})(Promise, Promise.resolve, Array.isArray, Array.prototype.slice, Map, Map.prototype.set)"#;

/// Replaces the read methods of `HybridStorage.prototype` (run by napi-rs
/// once the classes are registered).
#[napi(module_exports)]
pub fn install(exports: Object, env: Env) -> napi::Result<()> {
    let class: Unknown = exports.get_named_property("HybridStorage")?;
    let failed = |e: Error| error::to_napi(&env, &e);
    let prototype = js::get_named(&env, class.raw(), c"prototype").map_err(failed)?;
    let undefined = js::undefined(&env).map_err(failed)?;
    for (name, method) in &METHODS {
        let mut native = ptr::null_mut();
        // SAFETY: `name` is NUL-terminated (auto length); the data pointer
        // is a `&'static Method`, turned back into one by `dispatch` only.
        let status = unsafe {
            sys::napi_create_function(
                env.raw(),
                name.as_ptr(),
                name.to_bytes().len() as isize,
                Some(dispatch),
                ptr::from_ref(method).cast_mut().cast(),
                &mut native,
            )
        };
        js::check(&env, status, "creating a method").map_err(failed)?;
        let wrap = wrapper(&env).map_err(failed)?;
        let args = [
            js::string(&env, &name.to_string_lossy()).map_err(failed)?,
            native,
            js::boolean(&env, matches!(method, Method::Many { .. })).map_err(failed)?,
        ];
        let function = js::call(&env, wrap, undefined, &args)
            .map_err(failed)?
            .map_err(|e| failed(js::thrown(&env, e, "making a method")))?;
        js::set_named(&env, prototype, name, function).map_err(failed)?;
    }
    Ok(())
}

/// A new `wrap(name, native, many)` (see [`WRAPPER`]).
fn wrapper(env: &Env) -> Result<Value, Error> {
    let source = js::string(env, WRAPPER)?;
    let mut out = ptr::null_mut();
    // SAFETY: a valid env and a string handle; the script is the constant above.
    let status = unsafe { sys::napi_run_script(env.raw(), source, &mut out) };
    js::check(env, status, "compiling the read methods")?;
    Ok(out)
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

/// The napi callback of every read method: checks the receiver (throwing if
/// it is not a storage), runs the read, and returns its answer: a value, the
/// promise of a load, for `mget` the array of the values of the keys asked
/// (`undefined` where not found), or a promise rejected with the error.
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
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match method {
        Method::Read(read) => read(storage, &env, argv[0]).map(Reply::into_answer),
        Method::Load(shape) => storage
            .get_or_load_reply(&env, argv[0], argv[1], argv[2], *shape)
            .map(Reply::into_answer),
        Method::Many { decode } => match storage.mget_found(&env, argv[0], *decode)? {
            Found::Values(values) => aligned(&env, &values),
            Found::Promise(promise) => Ok(promise),
        },
    }))
    .unwrap_or_else(|_| {
        Err(Error::new(
            tierstack::ErrorKind::Internal,
            "a read panicked; the storage is unchanged",
        ))
    });
    match outcome {
        Ok(answer) => answer,
        Err(err) => js::settled(&env, Err(error::to_js(&env, &err))).unwrap_or(ptr::null_mut()),
    }
}

/// The array of `values`, `undefined` where `None`.
fn aligned(env: &Env, values: &[Option<Value>]) -> Result<Value, Error> {
    let mut array = ptr::null_mut();
    // SAFETY: a valid env.
    let status = unsafe { sys::napi_create_array_with_length(env.raw(), values.len(), &mut array) };
    js::check(env, status, "creating an array")?;
    let undefined = js::undefined(env)?;
    for (i, value) in values.iter().enumerate() {
        // SAFETY: a fresh array and valid handles.
        let status = unsafe {
            sys::napi_set_element(env.raw(), array, i as u32, value.unwrap_or(undefined))
        };
        js::check(env, status, "setting an array element")?;
    }
    Ok(array)
}
