//! Errors: every [`tierstack::Error`] becomes a JS `Error` whose `code` is
//! the kind's stable snake_case name (`'invalid_key'`, `'closed'`, …) and
//! whose message is the engine's; its underlying causes become a `cause`
//! chain of plain `Error`s.
//!
//! A loader's failure (kind `source`) carries what the loader threw or
//! rejected with ([`LoaderFailure`]): that very value is the `cause`.
//!
//! Mistakes the binding catches itself (a number given as a key, a loader
//! that is not a function) are errors of the same kinds, built here with
//! [`argument`].

use std::error::Error as _;

use napi::Env;
use napi::bindgen_prelude::Unknown;
use tierstack::{Error, ErrorKind};

use crate::js::{self, Value};
use crate::load::LoaderFailure;

/// The longest `cause` chain carried over (causes are engine-made, so this
/// only guards against a cycle).
const MAX_CAUSES: usize = 8;

/// An [`ErrorKind::InvalidArgument`] error.
pub(crate) fn argument(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

/// The error of every call on a disposed storage.
pub(crate) fn disposed() -> Error {
    Error::new(ErrorKind::Closed, "the storage is disposed")
}

/// The JS `Error` for `err`; for an error caused by JS code that threw
/// (a [`js::Thrown`]), the very value it threw.
pub(crate) fn to_js(env: &Env, err: &Error) -> Value {
    if let Some(failure) = err.find_cause::<LoaderFailure>()
        && let Some(cause) = failure.0.value(env)
        && let Ok(value) = js::error(env, Some(err.kind().as_str()), err.message(), Some(cause))
    {
        return value;
    }
    if let Some(thrown) = err.source().and_then(|s| s.downcast_ref::<js::Thrown>())
        && let Some(value) = thrown.value(env)
    {
        return value;
    }
    let mut causes = Vec::new();
    let mut source = err.source();
    while let Some(cause) = source.filter(|_| causes.len() < MAX_CAUSES) {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let mut cause = None;
    for message in causes.iter().rev() {
        cause = js::error(env, None, message, cause).ok();
    }
    match js::error(env, Some(err.kind().as_str()), err.message(), cause) {
        Ok(value) => value,
        // Creating an Error only fails in a dying environment; there is
        // nothing better to hand back than the message.
        Err(_) => js::string(env, err.message()).unwrap_or(std::ptr::null_mut()),
    }
}

/// `err` as a napi-rs error that throws (or rejects with) exactly the JS
/// `Error` of [`to_js`].
pub(crate) fn to_napi(env: &Env, err: &Error) -> napi::Error {
    let value = to_js(env, err);
    // SAFETY: a value handle created in this call on this env.
    napi::Error::from(unsafe { Unknown::from_raw_unchecked(env.raw(), value) })
}
