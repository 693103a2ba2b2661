//! Errors: every [`tierstack::Error`] becomes a `napi::Error` whose status
//! is the kind's stable snake_case name from the core
//! ([`tierstack::ErrorKind::as_str`]: `'invalid_key'`, `'closed'`, …), so
//! the JS `Error` has it as its `code`, with the engine's message; its
//! underlying causes become a `cause` chain of plain `Error`s.
//!
//! A loader's failure (kind `source`) carries what the loader threw or
//! rejected with ([`LoaderFailure`]): that very value is the `cause`.
//!
//! Mistakes the binding catches itself (a number given as a key, a loader
//! that is not a function) are errors of the same kinds, built here with
//! [`argument`]. A panic becomes an error of kind `internal` ([`panicked`]).

use std::error::Error as _;

use napi::Env;
use tierstack::{Error, ErrorKind};

use crate::js_values::{self, Value};
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

/// The error of a call that panicked (`what` names it); the panic's
/// message, when it has one, is the cause's.
pub(crate) fn panicked(what: &str, payload: &(dyn std::any::Any + Send)) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    Error::new(ErrorKind::Internal, format!("{what} panicked: {message}"))
}

/// The JS `Error` for `err`; for an error caused by JS code that threw
/// (a [`js_values::Thrown`]), the very value it threw.
pub(crate) fn to_js<'e>(env: &'e Env, err: &Error) -> Value<'e> {
    let code = err.kind().as_str();
    if let Some(failure) = err.find_cause::<LoaderFailure>()
        && let Some(cause) = failure.0.as_cause()
    {
        return js_values::error(env, code, err.message(), Some(cause));
    }
    if let Some(thrown) = err
        .source()
        .and_then(|s| s.downcast_ref::<js_values::Thrown>())
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
        cause = js_values::plain_error(env, message, cause).ok();
    }
    let cause = cause.map(napi::Error::from_unknown_without_coercion);
    js_values::error(env, code, err.message(), cause)
}

/// `err` as a napi-rs error that throws (or rejects with) exactly the JS
/// value of [`to_js`].
pub(crate) fn to_napi(env: &Env, err: &Error) -> napi::Error {
    napi::Error::from_unknown_without_coercion(to_js(env, err))
}
