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
//! - the callback (one per method) reads its arguments, unwraps the
//!   receiver with napi-rs's `ClassInstance` (`napi_unwrap`, then the
//!   class's type tag, so a foreign object is refused by a synchronous
//!   throw) and calls the same implementation as the `#[napi]` method, which
//!   stays the declaration the TypeScript types are generated from. It
//!   returns the answer itself (a value, or the promise of a load), or a
//!   promise rejected with the error; a panic is caught there and rejects
//!   the promise with an `internal` error, as for every other method;
//! - the JS function makes the promise: `Promise.resolve(answer)`, which
//!   hands a promise back as it is. For `mget`, the callback answers with
//!   the values in an array beside the keys (a copy of the array asked,
//!   made first, so both sides read the same keys; `undefined` for a key
//!   not found), and the JS function puts the keys found into the `Map`
//!   (cheaper in JS than a call into JS per key).
//!
//! `Promise`, `Promise.resolve`, `Array.isArray`, `Array.prototype.slice`,
//! `Map` and `Map.prototype.set` are captured when the module loads, so
//! later changes to the globals do not change what the methods return.
//!
//! Why a shared reference without tracking is sound: the tracking exists to
//! refuse a `&mut self` call while a `&self` borrow is live. Every
//! `HybridStorage` method takes `&self` and keeps its mutable state in
//! `RefCell`s whose borrows are never held while JS code runs, so napi-rs
//! never hands out `&mut HybridStorage` while the object is reachable (only
//! its finalizer owns it, once it is garbage).

use std::ffi::CStr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;

use napi::bindgen_prelude::{ClassInstance, FromNapiValue, Object, Unknown};
use napi::{Env, JsValue, sys};
use napi_derive::napi;
use tierstack::Error;

use crate::cache::{Found, HybridStorage, Shape};
use crate::drive::Reply;
use crate::error;
use crate::js_values::{self, Value};

/// A method dispatched directly: the storage, the env and its arguments;
/// its reply is the returned promise, or settles it.
enum Method {
    /// A read of one key: `get(key)`.
    Read(for<'e> fn(&HybridStorage, &'e Env, Value) -> Result<Reply<'e>, Error>),
    /// A read that may load, `getOrLoad(key, loader, ttlSeconds)`,
    /// answering with the value in this shape.
    Load(Shape),
    /// A read of many keys, `mget(keys)`: decoded values, or `Buffer`s.
    Many { decode: bool },
}

/// The most arguments a [`Method`] takes.
const MAX_ARGS: usize = 3;

static METHODS: &[(&CStr, Method)] = &[
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
    // A read that panics, for the tests (see `panic_probe`).
    #[cfg(debug_assertions)]
    (c"__panicRead", Method::Read(HybridStorage::panic_read)),
];

/// The napi callback of each of [`METHODS`], by index.
const NATIVES: &[napi::Callback] = &[
    dispatch::<0>,
    dispatch::<1>,
    dispatch::<2>,
    dispatch::<3>,
    dispatch::<4>,
    dispatch::<5>,
    dispatch::<6>,
    dispatch::<7>,
    dispatch::<8>,
    #[cfg(debug_assertions)]
    dispatch::<9>,
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
    let failed = |e: Error| error::to_napi(&env, &e);
    let class =
        js_values::get_named(&env, exports.to_unknown(), c"HybridStorage").map_err(failed)?;
    let prototype = js_values::get_named(&env, class, c"prototype").map_err(failed)?;
    let undefined = js_values::undefined(&env).map_err(failed)?;
    let wrap: Unknown = env.run_script(WRAPPER)?;
    for ((name, method), &native) in METHODS.iter().zip(NATIVES) {
        let text = name
            .to_str()
            .map_err(|e| napi::Error::from_reason(e.to_string()))?;
        let native = env.create_function::<(), Unknown>(text, native)?;
        let args = [
            js_values::string(&env, text).map_err(failed)?,
            native.to_unknown(),
            js_values::boolean(&env, matches!(method, Method::Many { .. })).map_err(failed)?,
        ];
        let function = js_values::call(&env, wrap, undefined, &args)
            .map_err(failed)?
            .map_err(|e| failed(js_values::thrown(e, "making a method")))?;
        js_values::set_named(&env, prototype, name, function).map_err(failed)?;
    }
    Ok(())
}

/// The napi callback of read method `I` of [`METHODS`]: checks the receiver
/// (throwing if it is not a storage), runs the read, and returns its answer:
/// a value, the promise of a load, for `mget` the array of the values of
/// the keys asked (`undefined` where not found), or a promise rejected with
/// the error (an `internal` one if the read panicked).
///
/// Raw, with the exact napi version pinned (see bindings-node/Cargo.toml):
/// it reads the arguments and unwraps the receiver without napi-rs's
/// per-call borrow tracking, which the module docs explain.
// SAFETY: napi calls it on the JS thread with a valid env and callback info
// (the contract of `napi::Callback`).
unsafe extern "C" fn dispatch<const I: usize>(
    raw_env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    let env = Env::from_raw(raw_env);
    let mut argc = MAX_ARGS;
    let mut argv = [ptr::null_mut(); MAX_ARGS];
    let mut this = ptr::null_mut();
    // SAFETY: `argv` holds `argc` slots, and napi fills missing arguments
    // with undefined; the handles are valid for this call, as napi-rs's
    // own callbacks take them.
    let (args, this) = unsafe {
        let status = sys::napi_get_cb_info(
            raw_env,
            info,
            &mut argc,
            argv.as_mut_ptr(),
            &mut this,
            ptr::null_mut(),
        );
        if status != sys::Status::napi_ok {
            return ptr::null_mut();
        }
        (
            argv.map(|arg| Unknown::from_raw_unchecked(raw_env, arg)),
            Unknown::from_raw_unchecked(raw_env, this),
        )
    };
    // A panic must not unwind out of an `extern "C"` callback (that aborts
    // the process): it rejects the promise as an internal error instead.
    let answer = catch_unwind(AssertUnwindSafe(|| answer(&env, &METHODS[I].1, this, args)))
        .unwrap_or_else(|panic| Err(Refusal::Failed(error::panicked("a read", &*panic))));
    match answer {
        Ok(answer) => answer.raw(),
        Err(Refusal::NotStorage(err)) => {
            let _ = env.throw(error::to_js(&env, &err));
            ptr::null_mut()
        }
        Err(Refusal::Failed(err)) => js_values::settled(&env, Err(error::to_js(&env, &err)))
            .map_or(ptr::null_mut(), |p| p.raw()),
    }
}

/// Why a dispatched call has no answer.
enum Refusal {
    /// `this` is not a storage: thrown, as napi-rs does.
    NotStorage(Error),
    /// The read failed: the promise rejects.
    Failed(Error),
}

impl From<Error> for Refusal {
    fn from(err: Error) -> Self {
        Refusal::Failed(err)
    }
}

/// Runs `method` on the storage `this` wraps with `args`.
// Inlined into each method's callback: it is on the L1 hit path.
#[inline(always)]
fn answer<'e>(
    env: &'e Env,
    method: &Method,
    this: Value<'e>,
    args: [Value<'e>; MAX_ARGS],
) -> Result<Value<'e>, Refusal> {
    // napi-rs unwraps the object and checks the class's type tag, so a
    // foreign object is refused; only shared references to a storage exist
    // (see the module docs).
    let storage = ClassInstance::<HybridStorage>::from_unknown(this).map_err(|_| {
        Refusal::NotStorage(error::argument(
            "a HybridStorage method was called on another object",
        ))
    })?;
    let [first, second, third] = args;
    Ok(match method {
        Method::Read(read) => read(&storage, env, first)?.into_answer(),
        Method::Load(shape) => storage
            .get_or_load_reply(env, first, second, third, *shape)?
            .into_answer(),
        Method::Many { decode } => match storage.mget_found(env, first, *decode)? {
            Found::Values(values) => {
                let undefined = js_values::undefined(env)?;
                let values: Vec<Value> = values.iter().map(|v| v.unwrap_or(undefined)).collect();
                js_values::array(env, &values)?
            }
            Found::Promise(promise) => promise,
        },
    })
}
