//! JS values through napi-rs's typed API, with the binding's conventions on
//! top: a JS exception raised while napi runs the caller's code (a getter, a
//! proxy trap, a `toString`) is taken and kept as a [`Thrown`], keys are read
//! without losing lone surrogates, and values are held across calls by
//! [`Held`] references.
//!
//! Two raw napi calls remain, each beside its reason: taking a pending
//! exception (napi-rs has no wrapper for it) and reading a key into a stack
//! buffer (the L1 hit path reads one per call; napi-rs's string reads
//! allocate), plus the deferred of a promise settled later from another
//! thread's work ([`promise`], [`settle`]).
//!
//! Every function here runs on the JS thread with the `env` of the current
//! call; values are handles valid for that call.

use std::ffi::CStr;
use std::ptr;

use napi::bindgen_prelude::{
    Array, BufferSlice, FromNapiValue, Function, JsObjectValue, JsValuesTupleIntoVec,
    KeyCollectionMode, KeyConversion, KeyFilter, Object, PromiseRaw, ToNapiValue, Uint8ArraySlice,
    Unknown,
};
use napi::{Env, JsError, JsString, JsValue, UnknownRef, ValueType, sys};
use tierstack::{Error, ErrorKind};

use crate::error::argument;

/// A JS value handle, valid during the current call.
pub(crate) type Value<'e> = Unknown<'e>;

/// A napi call failed for a reason other than a JS exception: a bug or a
/// dying environment.
pub(crate) fn napi_failed(what: &str, error: &napi::Error) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("{what} failed ({}: {})", error.status, error.reason),
    )
}

/// Turns a napi-rs result into the binding's. An exception pending after a
/// failed call was thrown by the caller's own code (a getter, a proxy trap)
/// while napi ran it, whatever status napi reports: it is taken, so the
/// environment is usable afterwards, and kept as a [`Thrown`], so the call
/// fails with that very value.
#[inline]
pub(crate) fn check<T>(env: &Env, result: napi::Result<T>, what: &str) -> Result<T, Error> {
    match result {
        Ok(value) => Ok(value),
        Err(e) => Err(failed(env, &e, what)),
    }
}

/// The error of a napi-rs call that failed (see [`check`]); out of line,
/// so that the calls on the L1 hit path stay small.
#[cold]
#[inline(never)]
fn failed(env: &Env, error: &napi::Error, what: &str) -> Error {
    match take_exception(env) {
        Some(exception) => thrown(exception, what),
        None => napi_failed(what, error),
    }
}

/// A value that JS code run by the binding threw (a getter, a proxy trap,
/// an iterator), kept without running more JS. An [`Error`] whose source is
/// a `Thrown` becomes that value again when it reaches JS
/// ([`crate::error::to_js`]): the promise rejects with exactly what was thrown.
pub(crate) struct Thrown(napi::Error);

impl Thrown {
    /// Keeps `value`, a thrown or rejected JS value, on the JS thread.
    pub(crate) fn new(value: Value) -> Self {
        Self(napi::Error::from_unknown_without_coercion(value))
    }

    /// What napi-rs caught from a JS call (it holds the thrown value).
    pub(crate) fn from_error(error: napi::Error) -> Self {
        Self(error)
    }

    /// The thrown value; on the JS thread that caught it, the same value
    /// (napi-rs keeps a reference to it and releases it when this is dropped).
    pub(crate) fn value<'e>(&self, env: &'e Env) -> Option<Value<'e>> {
        self.0.try_clone().ok()?.into_unknown(env).ok()
    }

    /// The thrown value as the `cause` of a napi-rs error.
    pub(crate) fn as_cause(&self) -> Option<napi::Error> {
        self.0.try_clone().ok()
    }
}

impl std::fmt::Debug for Thrown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Thrown").field(&self.0.reason).finish()
    }
}

impl std::fmt::Display for Thrown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.reason.as_str() {
            "" => f.write_str("a JS exception"),
            reason => f.write_str(reason),
        }
    }
}

impl std::error::Error for Thrown {}

/// The error of a call during which JS code threw `exception` (`what` says
/// what the binding was doing); see [`Thrown`].
pub(crate) fn thrown(exception: Value, what: &str) -> Error {
    let thrown = Thrown::new(exception);
    Error::new(
        ErrorKind::InvalidArgument,
        format!("{what}: JS code threw: {thrown}"),
    )
    .with_source(thrown)
}

/// Takes the pending JS exception, if there is one.
pub(crate) fn take_exception(env: &Env) -> Option<Value<'_>> {
    let mut pending = false;
    let mut exception = ptr::null_mut();
    // SAFETY: a valid env of the current call; both out-params are written
    // on success, and the exception handle taken is valid for this call.
    // (napi-rs only takes an exception inside its own calls.)
    unsafe {
        if sys::napi_is_exception_pending(env.raw(), &mut pending) != sys::Status::napi_ok
            || !pending
            || sys::napi_get_and_clear_last_exception(env.raw(), &mut exception)
                != sys::Status::napi_ok
            || exception.is_null()
        {
            return None;
        }
        Some(Unknown::from_raw_unchecked(env.raw(), exception))
    }
}

/// `String(value.message ?? value)`, for error messages.
pub(crate) fn message_of(env: &Env, value: Value) -> String {
    let source = match type_of(value) {
        ValueType::Object => match get_named(env, value, c"message") {
            Ok(message) if type_of(message) == ValueType::String => message,
            _ => value,
        },
        _ => value,
    };
    // Coercion may run user code (toString), which is allowed on the JS thread.
    match source
        .coerce_to_string()
        .and_then(|s| s.into_utf8())
        .and_then(|s| s.into_owned())
    {
        Ok(message) => message,
        Err(_) => {
            take_exception(env);
            "an exception that cannot be shown".to_owned()
        }
    }
}

/// The `typeof` of a value, with `null` apart.
pub(crate) fn type_of(value: Value) -> ValueType {
    value.get_type().unwrap_or(ValueType::Unknown)
}

/// How a value's type is named in error messages.
pub(crate) fn type_name(value: Value) -> &'static str {
    match type_of(value) {
        ValueType::Undefined => "undefined",
        ValueType::Null => "null",
        ValueType::Boolean => "boolean",
        ValueType::Number => "number",
        ValueType::String => "string",
        ValueType::Symbol => "symbol",
        ValueType::Function => "function",
        ValueType::BigInt => "bigint",
        ValueType::External => "external",
        ValueType::Object if is_array(value) => "array",
        _ => "object",
    }
}

/// Whether a value is `undefined` or `null` (an omitted optional argument).
pub(crate) fn is_nullish(value: Option<Value>) -> bool {
    value.is_none_or(|v| matches!(type_of(v), ValueType::Undefined | ValueType::Null))
}

/// Keys and tags are at most 255 bytes: reading into a buffer this size
/// copies every valid one without allocating.
const INLINE: usize = 256;

/// A JS string read as UTF-8: inline when short (every valid key is).
#[allow(
    clippy::large_enum_variant,
    reason = "a key lives on the stack for one call; inline, reading it allocates nothing"
)]
pub(crate) enum Str {
    Inline { buf: [u8; INLINE], len: usize },
    Heap(String),
}

impl std::ops::Deref for Str {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            // SAFETY: napi writes whole UTF-8 sequences only, and `len` is
            // the count it reported.
            Str::Inline { buf, len } => unsafe { std::str::from_utf8_unchecked(&buf[..*len]) },
            Str::Heap(s) => s,
        }
    }
}

/// Why a value could not be read as a string.
pub(crate) enum StrError {
    /// Not a string; the value's type name.
    NotString(&'static str),
    /// A string holding an unpaired UTF-16 surrogate: not valid Unicode, so
    /// it has no UTF-8 form (napi would silently replace it with U+FFFD).
    LoneSurrogate,
    /// napi failed.
    Napi(Error),
}

/// Reads a JS string as UTF-8 without losing information: a string with a
/// lone surrogate is refused rather than altered.
#[inline]
pub(crate) fn read_str(env: &Env, value: Value) -> Result<Str, StrError> {
    // Built in place (not moved into the result afterwards): a key is read
    // on every L1 hit.
    let mut out = Str::Inline {
        buf: [0u8; INLINE],
        len: 0,
    };
    let Str::Inline { buf, len } = &mut out else {
        unreachable!("built inline above");
    };
    // SAFETY: the buffer is INLINE bytes long, as passed; napi writes at most
    // INLINE - 1 bytes and a NUL. (Raw, because napi-rs's string reads
    // allocate, and a key is read on every L1 hit.)
    let status = unsafe {
        sys::napi_get_value_string_utf8(
            env.raw(),
            value.raw(),
            buf.as_mut_ptr().cast(),
            INLINE,
            len,
        )
    };
    match status {
        sys::Status::napi_ok => {}
        sys::Status::napi_string_expected => {
            return Err(StrError::NotString(type_name(value)));
        }
        status => {
            let error = napi::Error::new(napi::Status::from(status), String::new());
            return Err(StrError::Napi(napi_failed("reading a string", &error)));
        }
    }
    // napi stops before a character that does not fit, so a string that was
    // cut short reports up to 3 bytes less than the buffer holds.
    if *len + 4 >= INLINE {
        out = Str::Heap(read_long_str(env, value).map_err(StrError::Napi)?);
    }
    // U+FFFD is what napi writes for a lone surrogate; only then is the
    // UTF-16 form checked.
    if out.contains('\u{FFFD}') && has_lone_surrogate(env, value).map_err(StrError::Napi)? {
        return Err(StrError::LoneSurrogate);
    }
    Ok(out)
}

/// Reads a JS string of any length as UTF-8 (a lone surrogate becomes
/// U+FFFD; for strings that cannot hold one, such as `JSON.stringify` output).
pub(crate) fn read_long_str(env: &Env, value: Value) -> Result<String, Error> {
    let read = JsString::from_unknown(value)
        .and_then(|s| s.into_utf8())
        .and_then(|s| s.into_owned());
    check(env, read, "reading a string")
}

/// A key argument: a string that is valid Unicode (the engine checks the rest).
#[inline]
pub(crate) fn key(env: &Env, value: Value) -> Result<Str, Error> {
    read_str(env, value).map_err(|e| match e {
        StrError::NotString(got) => argument(format!("key must be a string, got {got}")),
        StrError::LoneSurrogate => Error::new(
            ErrorKind::InvalidKey,
            "key holds a lone surrogate, which is not valid Unicode",
        ),
        StrError::Napi(e) => e,
    })
}

/// A string argument other than a key (`what` names it in errors).
pub(crate) fn string_arg(env: &Env, value: Value, what: &str) -> Result<String, Error> {
    match read_str(env, value) {
        Ok(s) => Ok(s.to_string()),
        Err(StrError::NotString(got)) => {
            Err(argument(format!("{what} must be a string, got {got}")))
        }
        Err(StrError::LoneSurrogate) => Err(argument(format!(
            "{what} holds a lone surrogate, which is not valid Unicode"
        ))),
        Err(StrError::Napi(e)) => Err(e),
    }
}

fn has_lone_surrogate(env: &Env, value: Value) -> Result<bool, Error> {
    let units = JsString::from_unknown(value).and_then(|s| s.into_utf16());
    let units = check(env, units, "reading a string")?;
    Ok(char::decode_utf16(units.as_slice().iter().copied()).any(|c| c.is_err()))
}

/// A JS string from UTF-8.
pub(crate) fn string<'e>(env: &'e Env, s: &str) -> Result<Value<'e>, Error> {
    let made = env.create_string(s).map(|s| s.to_unknown());
    check(env, made, "creating a string")
}

/// A JS value of a Rust one (a number, a boolean, `()` for `undefined`, a
/// `#[napi(object)]` struct).
pub(crate) fn to_js<T: ToNapiValue>(env: &Env, value: T) -> Result<Value<'_>, Error> {
    check(env, value.into_unknown(env), "converting a result")
}

/// A JS number.
pub(crate) fn number(env: &Env, n: f64) -> Result<Value<'_>, Error> {
    to_js(env, n)
}

/// A JS number as `f64`, or `None` when the value is not a number.
pub(crate) fn as_number(value: Value) -> Option<f64> {
    match type_of(value) {
        ValueType::Number => f64::from_unknown(value).ok(),
        _ => None,
    }
}

/// A JS boolean as `bool` (`false` for any other value).
pub(crate) fn as_bool(value: Value) -> bool {
    type_of(value) == ValueType::Boolean && bool::from_unknown(value).unwrap_or(false)
}

/// `true` or `false`.
pub(crate) fn boolean(env: &Env, b: bool) -> Result<Value<'_>, Error> {
    to_js(env, b)
}

/// `undefined`.
pub(crate) fn undefined(env: &Env) -> Result<Value<'_>, Error> {
    to_js(env, ())
}

/// The global object.
pub(crate) fn global(env: &Env) -> Result<Value<'_>, Error> {
    let global = env.get_global().map(|g| g.to_unknown());
    check(env, global, "getting the global object")
}

/// `value` as an object, for property access (napi refuses a primitive).
fn object(value: Value<'_>) -> napi::Result<Object<'_>> {
    Object::from_unknown(value)
}

/// `object[name]`.
pub(crate) fn get_named<'e>(
    env: &Env,
    object_: Value<'e>,
    name: &CStr,
) -> Result<Value<'e>, Error> {
    // A getter may run user code.
    let got = object(object_).and_then(|o| o.get_c_named_property_unchecked::<Unknown<'e>>(name));
    check(env, got, "reading a property")
}

/// `object[name] = value`.
pub(crate) fn set_named(env: &Env, object_: Value, name: &CStr, value: Value) -> Result<(), Error> {
    let set = object(object_).and_then(|mut o| o.set_c_named_property(name, value));
    check(env, set, "setting a property")
}

/// Whether a value is an array.
pub(crate) fn is_array(value: Value) -> bool {
    value.is_array().unwrap_or(false)
}

/// The elements of an array.
pub(crate) fn elements<'e>(env: &Env, array: Value<'e>) -> Result<Vec<Value<'e>>, Error> {
    let array = check(env, object(array), "reading an array")?;
    let len = check(env, array.get_array_length(), "reading an array's length")?;
    let mut elements = Vec::with_capacity(len as usize);
    for i in 0..len {
        let element = array.get_element::<Unknown<'e>>(i);
        elements.push(check(env, element, "reading an array element")?);
    }
    Ok(elements)
}

/// A new array of `values`.
pub(crate) fn array<'e>(env: &'e Env, values: &[Value]) -> Result<Value<'e>, Error> {
    let made = Array::from_ref_vec(env, values).map(|a| a.to_unknown());
    check(env, made, "creating an array")
}

/// The own enumerable string-keyed property names of an object.
pub(crate) fn own_keys<'e>(env: &Env, object_: Value<'e>) -> Result<Vec<Value<'e>>, Error> {
    let names = object(object_).and_then(|o| {
        o.get_all_property_names(
            KeyCollectionMode::OwnOnly,
            KeyFilter::Enumerable,
            KeyConversion::NumbersToStrings,
        )
    });
    let names = check(env, names, "listing an object's keys")?;
    Ok(elements(env, names.to_unknown())?
        .into_iter()
        .filter(|name| type_of(*name) == ValueType::String)
        .collect())
}

/// `object[key]` for a key given as a JS value.
pub(crate) fn get_property<'e>(
    env: &Env,
    object_: Value<'e>,
    key: Value,
) -> Result<Value<'e>, Error> {
    // A getter may run user code.
    let got = object(object_).and_then(|o| o.get_property::<Unknown, Unknown<'e>>(key));
    check(env, got, "reading a property")
}

/// Whether a value is a typed array (a `Buffer` is one).
pub(crate) fn is_typed_array(value: Value) -> bool {
    value.is_typedarray().unwrap_or(false)
}

/// The bytes of a `Uint8Array` (a `Buffer` is one), copied; `None` for any
/// other value.
pub(crate) fn uint8_bytes(value: Value) -> Option<Vec<u8>> {
    if !is_typed_array(value) {
        return None;
    }
    // Any other typed array is refused by napi-rs's type check.
    Uint8ArraySlice::from_unknown(value)
        .ok()
        .map(|bytes| bytes.to_vec())
}

/// A new `Buffer` holding a copy of `bytes`.
pub(crate) fn buffer<'e>(env: &'e Env, bytes: &[u8]) -> Result<Value<'e>, Error> {
    let made = BufferSlice::copy_from(env, bytes).map(|b| b.to_unknown());
    check(env, made, "creating a Buffer")
}

/// The arguments of a call, as napi-rs passes them.
struct Args<'a, 'e>(&'a [Value<'e>]);

impl JsValuesTupleIntoVec for Args<'_, '_> {
    fn into_vec(self, _env: sys::napi_env) -> napi::Result<Vec<sys::napi_value>> {
        Ok(self.0.iter().map(|v| v.raw()).collect())
    }
}

/// Calls `function` with `this` and `args`; `Err` holds the exception it threw.
pub(crate) fn call<'e>(
    env: &'e Env,
    function: Value,
    this: Value,
    args: &[Value],
) -> Result<Result<Value<'e>, Value<'e>>, Error> {
    let called = Function::<Args, Unknown<'e>>::from_unknown(function)
        .and_then(|f| f.apply(this, Args(args)));
    match called {
        Ok(value) => Ok(Ok(value)),
        Err(e) => match take_exception(env) {
            Some(exception) => Ok(Err(exception)),
            None => Err(napi_failed("calling a function", &e)),
        },
    }
}

/// `new constructor(...args)`.
pub(crate) fn construct<'e>(
    env: &'e Env,
    constructor: Value,
    args: &[Value],
) -> Result<Value<'e>, Error> {
    let made = Function::<Args, Unknown>::from_unknown(constructor)
        .and_then(|c| c.new_instance(Args(args)));
    check(env, made, "constructing an object")
}

/// Whether `value instanceof constructor`.
pub(crate) fn instance_of(env: &Env, value: Value, constructor: Value) -> Result<bool, Error> {
    check(env, value.instanceof(constructor), "checking instanceof")
}

/// A pending promise's resolver, settled once on the JS thread with [`settle`].
pub(crate) struct Deferred(sys::napi_deferred);

// SAFETY: the deferred is settled on the JS thread only (by a job a
// thread-safe function runs there); other threads only move it.
unsafe impl Send for Deferred {}

/// A pending promise and the handle that settles it (exactly once, on the
/// JS thread), for a promise settled when work elsewhere ends. (napi-rs's
/// deferred would settle it through a thread-safe function of its own per
/// promise; the binding's completions share one.)
pub(crate) fn promise(env: &Env) -> Result<(Deferred, Value<'_>), Error> {
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    // SAFETY: a valid env; on success both out-params are written, and the
    // promise handle is valid for this call.
    let status = unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) };
    if status != sys::Status::napi_ok {
        let error = napi::Error::new(napi::Status::from(status), String::new());
        return Err(napi_failed("creating a promise", &error));
    }
    let promise = PromiseRaw::<Unknown>::new(env.raw(), promise).to_unknown();
    Ok((Deferred(deferred), promise))
}

/// Settles a deferred: resolves it with `Ok`, rejects it with `Err`.
/// Resolving with a thenable adopts its state, as `Promise.resolve` does.
pub(crate) fn settle(
    env: &Env,
    deferred: Deferred,
    outcome: Result<Value, Value>,
) -> Result<(), Error> {
    // SAFETY: `deferred` comes from `promise` and is settled once (this
    // consumes it): napi frees it here.
    let status = unsafe {
        match outcome {
            Ok(value) => sys::napi_resolve_deferred(env.raw(), deferred.0, value.raw()),
            Err(error) => sys::napi_reject_deferred(env.raw(), deferred.0, error.raw()),
        }
    };
    match status {
        sys::Status::napi_ok => Ok(()),
        status => Err(napi_failed(
            "settling a promise",
            &napi::Error::new(napi::Status::from(status), String::new()),
        )),
    }
}

/// A promise already settled with `outcome`.
pub(crate) fn settled<'e>(
    env: &'e Env,
    outcome: Result<Value<'e>, Value<'e>>,
) -> Result<Value<'e>, Error> {
    let made = match outcome {
        Ok(value) => PromiseRaw::resolve(env, value).map(|p| p.to_unknown()),
        Err(error) => PromiseRaw::<Unknown>::reject(env, error).map(|p| p.to_unknown()),
    };
    check(env, made, "settling a promise")
}

/// A JS `Error` with `message`, `code` (napi-rs's error status) and
/// `cause` when given.
pub(crate) fn error<'e>(
    env: &'e Env,
    code: &str,
    message: &str,
    cause: Option<napi::Error>,
) -> Value<'e> {
    let mut error = napi::Error::new(code.to_owned(), message.to_owned());
    if let Some(cause) = cause {
        error.set_cause(cause);
    }
    JsError::from(error).into_unknown(*env)
}

/// A plain JS `Error` with `message` and `cause` and no code (the causes
/// of an engine error).
pub(crate) fn plain_error<'e>(
    env: &'e Env,
    message: &str,
    cause: Option<Value>,
) -> Result<Value<'e>, Error> {
    let constructor = get_named(env, global(env)?, c"Error")?;
    let error = construct(env, constructor, &[string(env, message)?])?;
    if let Some(cause) = cause {
        set_named(env, error, c"cause", cause)?;
    }
    Ok(error)
}

/// A strong reference to a JS value, released explicitly with [`Held::release`].
///
/// Node before 22 (napi < 10) references objects, functions and symbols
/// only, so any other value is held inside a one-element array.
///
/// It may travel with work that runs off the JS thread; it is only read
/// and released on the JS thread.
pub(crate) struct Held {
    held: UnknownRef<false>,
    boxed: bool,
}

impl Held {
    /// Keeps `value` alive until released.
    pub(crate) fn new(env: &Env, value: Value) -> Result<Self, Error> {
        let boxed = !matches!(
            type_of(value),
            ValueType::Object | ValueType::Function | ValueType::Symbol
        );
        let target = match boxed {
            true => array(env, &[value])?,
            false => value,
        };
        let held = check(
            env,
            UnknownRef::from_unknown(target),
            "creating a reference",
        )?;
        Ok(Self { held, boxed })
    }

    /// The value.
    // Inlined: reading a kept value is on the L1 hit path.
    #[inline(always)]
    pub(crate) fn get<'e>(&self, env: &'e Env) -> Result<Value<'e>, Error> {
        let value = check(env, self.held.get_value(env), "reading a reference")?;
        if !self.boxed {
            return Ok(value);
        }
        let element = object(value).and_then(|o| o.get_element::<Unknown<'e>>(0));
        check(env, element, "reading a reference")
    }

    /// Lets the value go.
    pub(crate) fn release(self, env: &Env) {
        // Deleting a reference fails only in a dying environment.
        let _ = self.held.unref(env);
    }
}
