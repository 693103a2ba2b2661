//! The raw napi calls the binding needs that napi-rs has no wrapper for, or
//! whose wrapper costs more than the L1 hit path can afford: reading keys
//! without losing lone surrogates, the bytes of a `Uint8Array`, property and
//! array access, calls that report the JS exception they raise, and settled
//! promises.
//!
//! Every function here runs on the JS thread with the `env` of the current
//! call; values are `napi_value` handles valid for that call.

use std::ffi::CStr;
use std::ptr;

use napi::sys;
use napi::{Env, ValueType};
use tierstack::{Error, ErrorKind};

use crate::error::argument;

/// A JS value handle, valid during the current call.
pub(crate) type Value = sys::napi_value;

/// A napi call failed for a reason other than a JS exception: a bug or a
/// dying environment.
pub(crate) fn napi_failed(what: &str, status: sys::napi_status) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("{what} failed (napi status {status})"),
    )
}

/// Turns a napi status into a result. An exception pending after a failed
/// call was thrown by the caller's own code (a getter, a proxy trap) while
/// napi ran it, whatever status napi reports (Node reports some as a
/// generic failure): it is taken, so the environment is usable afterwards,
/// and kept as a [`Thrown`], so the call fails with that very value.
pub(crate) fn check(env: &Env, status: sys::napi_status, what: &str) -> Result<(), Error> {
    if status == sys::Status::napi_ok {
        return Ok(());
    }
    match take_exception(env) {
        Some(exception) => Err(thrown(env, exception, what)),
        None => Err(napi_failed(what, status)),
    }
}

/// A value that JS code run by the binding threw (a getter, a proxy trap,
/// an iterator), kept without running more JS. An [`Error`] whose source is
/// a `Thrown` becomes that value again when it reaches JS
/// ([`crate::error::to_js`]): the promise rejects with exactly what was thrown.
pub(crate) struct Thrown(napi::Error);

impl Thrown {
    /// Keeps `value`, a thrown or rejected JS value, on the JS thread.
    pub(crate) fn new(env: &Env, value: Value) -> Self {
        // SAFETY: a handle of the current call on this env.
        let value = unsafe { napi::bindgen_prelude::Unknown::from_raw_unchecked(env.raw(), value) };
        Self(napi::Error::from_unknown_without_coercion(value))
    }

    /// What napi-rs caught from a JS call (it holds the thrown value).
    pub(crate) fn from_error(error: napi::Error) -> Self {
        Self(error)
    }

    /// The thrown value; on the JS thread that caught it, the same value
    /// (napi-rs keeps a reference to it and releases it when this is dropped).
    pub(crate) fn value(&self, env: &Env) -> Option<Value> {
        let held = self.0.try_clone().ok()?;
        // SAFETY: a valid env of the current call.
        unsafe {
            <napi::Error as napi::bindgen_prelude::ToNapiValue>::to_napi_value(env.raw(), held)
        }
        .ok()
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
pub(crate) fn thrown(env: &Env, exception: Value, what: &str) -> Error {
    let thrown = Thrown::new(env, exception);
    Error::new(
        ErrorKind::InvalidArgument,
        format!("{what}: JS code threw: {thrown}"),
    )
    .with_source(thrown)
}

/// Takes the pending JS exception, if there is one.
pub(crate) fn take_exception(env: &Env) -> Option<Value> {
    let mut pending = false;
    // SAFETY: a valid env; the out-param is written on success.
    let status = unsafe { sys::napi_is_exception_pending(env.raw(), &mut pending) };
    if status != sys::Status::napi_ok || !pending {
        // (Taking an exception when none is pending gives `undefined`.)
        return None;
    }
    let mut exception = ptr::null_mut();
    // SAFETY: a valid env; the out-param is written on success.
    let status = unsafe { sys::napi_get_and_clear_last_exception(env.raw(), &mut exception) };
    (status == sys::Status::napi_ok && !exception.is_null()).then_some(exception)
}

/// `String(value.message ?? value)`, for error messages.
pub(crate) fn message_of(env: &Env, value: Value) -> String {
    let source = match type_of(env, value) {
        ValueType::Object => match get_named(env, value, c"message") {
            Ok(message) if type_of(env, message) == ValueType::String => message,
            _ => value,
        },
        _ => value,
    };
    let mut string = ptr::null_mut();
    // SAFETY: a valid env and value; coercion may run user code (toString),
    // which is allowed on the JS thread.
    let status = unsafe { sys::napi_coerce_to_string(env.raw(), source, &mut string) };
    if status != sys::Status::napi_ok {
        take_exception(env);
        return "an exception that cannot be shown".to_owned();
    }
    match read_str(env, string) {
        Ok(s) => s.to_string(),
        Err(_) => "an exception that cannot be shown".to_owned(),
    }
}

/// The `typeof` of a value, with `null` apart.
pub(crate) fn type_of(env: &Env, value: Value) -> ValueType {
    let mut kind = 0;
    // SAFETY: a valid env and value.
    match unsafe { sys::napi_typeof(env.raw(), value, &mut kind) } {
        sys::Status::napi_ok => ValueType::from(kind),
        _ => ValueType::Unknown,
    }
}

/// How a value's type is named in error messages.
pub(crate) fn type_name(env: &Env, value: Value) -> &'static str {
    match type_of(env, value) {
        ValueType::Undefined => "undefined",
        ValueType::Null => "null",
        ValueType::Boolean => "boolean",
        ValueType::Number => "number",
        ValueType::String => "string",
        ValueType::Symbol => "symbol",
        ValueType::Function => "function",
        ValueType::BigInt => "bigint",
        ValueType::External => "external",
        ValueType::Object if is_array(env, value) => "array",
        _ => "object",
    }
}

/// Whether a value is `undefined` or `null` (an omitted optional argument).
pub(crate) fn is_nullish(env: &Env, value: Option<Value>) -> bool {
    value.is_none_or(|v| matches!(type_of(env, v), ValueType::Undefined | ValueType::Null))
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
    // INLINE - 1 bytes and a NUL.
    let status = unsafe {
        sys::napi_get_value_string_utf8(env.raw(), value, buf.as_mut_ptr().cast(), INLINE, len)
    };
    match status {
        sys::Status::napi_ok => {}
        sys::Status::napi_string_expected => {
            return Err(StrError::NotString(type_name(env, value)));
        }
        status => return Err(StrError::Napi(napi_failed("reading a string", status))),
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
    let bytes = read_units(env, |buf: *mut u8, size, len| {
        // SAFETY: `buf` holds `size` bytes, or is null to ask for the length.
        unsafe { sys::napi_get_value_string_utf8(env.raw(), value, buf.cast(), size, len) }
    })?;
    String::from_utf8(bytes).map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))
}

/// A string's code units, read by `read(buffer, size, &mut len)` (a napi
/// string getter): once with no buffer for the length, then into one.
fn read_units<T: Copy + Default>(
    env: &Env,
    read: impl Fn(*mut T, usize, &mut usize) -> sys::napi_status,
) -> Result<Vec<T>, Error> {
    let mut len = 0usize;
    check(
        env,
        read(ptr::null_mut(), 0, &mut len),
        "reading a string's length",
    )?;
    let mut units = vec![T::default(); len + 1];
    check(
        env,
        read(units.as_mut_ptr(), units.len(), &mut len),
        "reading a string",
    )?;
    units.truncate(len);
    Ok(units)
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
    let units = read_units(env, |buf: *mut u16, size, len| {
        // SAFETY: `buf` holds `size` code units, or is null to ask for the length.
        unsafe { sys::napi_get_value_string_utf16(env.raw(), value, buf, size, len) }
    })?;
    Ok(char::decode_utf16(units).any(|c| c.is_err()))
}

/// A JS string from UTF-8.
pub(crate) fn string(env: &Env, s: &str) -> Result<Value, Error> {
    let mut out = ptr::null_mut();
    // SAFETY: the pointer and length describe `s`.
    let status = unsafe {
        sys::napi_create_string_utf8(env.raw(), s.as_ptr().cast(), s.len() as isize, &mut out)
    };
    check(env, status, "creating a string")?;
    Ok(out)
}

/// A JS number.
pub(crate) fn number(env: &Env, n: f64) -> Result<Value, Error> {
    let mut out = ptr::null_mut();
    // SAFETY: a valid env.
    let status = unsafe { sys::napi_create_double(env.raw(), n, &mut out) };
    check(env, status, "creating a number")?;
    Ok(out)
}

/// A JS number as `f64`, or `None` when the value is not a number.
pub(crate) fn as_number(env: &Env, value: Value) -> Option<f64> {
    let mut out = 0.0;
    // SAFETY: a valid env and value; a non-number is reported by status.
    let status = unsafe { sys::napi_get_value_double(env.raw(), value, &mut out) };
    (status == sys::Status::napi_ok).then_some(out)
}

/// A JS boolean as `bool` (`false` for any other value).
pub(crate) fn as_bool(env: &Env, value: Value) -> bool {
    let mut out = false;
    // SAFETY: a valid env and value; a non-boolean is reported by status.
    let status = unsafe { sys::napi_get_value_bool(env.raw(), value, &mut out) };
    status == sys::Status::napi_ok && out
}

/// `true` or `false`.
pub(crate) fn boolean(env: &Env, b: bool) -> Result<Value, Error> {
    let mut out = ptr::null_mut();
    // SAFETY: a valid env.
    let status = unsafe { sys::napi_get_boolean(env.raw(), b, &mut out) };
    check(env, status, "creating a boolean")?;
    Ok(out)
}

/// `undefined`.
pub(crate) fn undefined(env: &Env) -> Result<Value, Error> {
    let mut out = ptr::null_mut();
    // SAFETY: a valid env.
    let status = unsafe { sys::napi_get_undefined(env.raw(), &mut out) };
    check(env, status, "getting undefined")?;
    Ok(out)
}

/// The global object.
pub(crate) fn global(env: &Env) -> Result<Value, Error> {
    let mut out = ptr::null_mut();
    // SAFETY: a valid env.
    let status = unsafe { sys::napi_get_global(env.raw(), &mut out) };
    check(env, status, "getting the global object")?;
    Ok(out)
}

/// `object[name]`.
pub(crate) fn get_named(env: &Env, object: Value, name: &CStr) -> Result<Value, Error> {
    let mut out = ptr::null_mut();
    // SAFETY: `name` is NUL-terminated; a getter may run user code.
    let status =
        unsafe { sys::napi_get_named_property(env.raw(), object, name.as_ptr(), &mut out) };
    check(env, status, "reading a property")?;
    Ok(out)
}

/// `object[name] = value`.
pub(crate) fn set_named(env: &Env, object: Value, name: &CStr, value: Value) -> Result<(), Error> {
    // SAFETY: `name` is NUL-terminated.
    let status = unsafe { sys::napi_set_named_property(env.raw(), object, name.as_ptr(), value) };
    check(env, status, "setting a property")
}

/// Whether a value is an array.
pub(crate) fn is_array(env: &Env, value: Value) -> bool {
    let mut out = false;
    // SAFETY: a valid env and value.
    let status = unsafe { sys::napi_is_array(env.raw(), value, &mut out) };
    status == sys::Status::napi_ok && out
}

/// The elements of an array.
pub(crate) fn elements(env: &Env, array: Value) -> Result<Vec<Value>, Error> {
    let mut len = 0u32;
    // SAFETY: `array` is an array (checked by the caller).
    let status = unsafe { sys::napi_get_array_length(env.raw(), array, &mut len) };
    check(env, status, "reading an array's length")?;
    (0..len)
        .map(|i| {
            let mut out = ptr::null_mut();
            // SAFETY: a valid array and index.
            let status = unsafe { sys::napi_get_element(env.raw(), array, i, &mut out) };
            check(env, status, "reading an array element")?;
            Ok(out)
        })
        .collect()
}

/// A new array of `values`.
pub(crate) fn array(env: &Env, values: &[Value]) -> Result<Value, Error> {
    let mut out = ptr::null_mut();
    // SAFETY: a valid env.
    let status = unsafe { sys::napi_create_array_with_length(env.raw(), values.len(), &mut out) };
    check(env, status, "creating an array")?;
    for (i, &value) in values.iter().enumerate() {
        // SAFETY: a fresh array and a valid value.
        let status = unsafe { sys::napi_set_element(env.raw(), out, i as u32, value) };
        check(env, status, "setting an array element")?;
    }
    Ok(out)
}

/// The own enumerable string-keyed property names of an object.
pub(crate) fn own_keys(env: &Env, object: Value) -> Result<Vec<Value>, Error> {
    let mut names = ptr::null_mut();
    // SAFETY: `object` is an object (checked by the caller).
    let status = unsafe {
        sys::napi_get_all_property_names(
            env.raw(),
            object,
            sys::KeyCollectionMode::own_only,
            sys::KeyFilter::enumerable | sys::KeyFilter::skip_symbols,
            sys::KeyConversion::numbers_to_strings,
            &mut names,
        )
    };
    check(env, status, "listing an object's keys")?;
    elements(env, names)
}

/// `object[key]` for a key given as a JS value.
pub(crate) fn get_property(env: &Env, object: Value, key: Value) -> Result<Value, Error> {
    let mut out = ptr::null_mut();
    // SAFETY: valid handles; a getter may run user code.
    let status = unsafe { sys::napi_get_property(env.raw(), object, key, &mut out) };
    check(env, status, "reading a property")?;
    Ok(out)
}

/// Whether a value is a typed array (a `Buffer` is one).
pub(crate) fn is_typed_array(env: &Env, value: Value) -> bool {
    let mut out = false;
    // SAFETY: a valid env and value.
    let status = unsafe { sys::napi_is_typedarray(env.raw(), value, &mut out) };
    status == sys::Status::napi_ok && out
}

/// The bytes of a `Uint8Array` (a `Buffer` is one), copied; `None` for any
/// other value.
pub(crate) fn uint8_bytes(env: &Env, value: Value) -> Result<Option<Vec<u8>>, Error> {
    if !is_typed_array(env, value) {
        return Ok(None);
    }
    let mut kind = 0;
    let mut len = 0usize;
    let mut data = ptr::null_mut();
    // SAFETY: `value` is a typed array; the array buffer and offset are not needed.
    let status = unsafe {
        sys::napi_get_typedarray_info(
            env.raw(),
            value,
            &mut kind,
            &mut len,
            &mut data,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    check(env, status, "reading a typed array")?;
    if kind != sys::TypedarrayType::uint8_array {
        return Ok(None);
    }
    if len == 0 || data.is_null() {
        return Ok(Some(Vec::new()));
    }
    // SAFETY: napi reports `len` bytes at `data`, alive for this call; they
    // are copied before any JS runs.
    Ok(Some(
        unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }.to_vec(),
    ))
}

/// A new `Buffer` holding a copy of `bytes`.
pub(crate) fn buffer(env: &Env, bytes: &[u8]) -> Result<Value, Error> {
    let mut out = ptr::null_mut();
    let mut data = ptr::null_mut();
    // SAFETY: the pointer and length describe `bytes`; napi copies them.
    let status = unsafe {
        sys::napi_create_buffer_copy(
            env.raw(),
            bytes.len(),
            bytes.as_ptr().cast(),
            &mut data,
            &mut out,
        )
    };
    check(env, status, "creating a Buffer")?;
    Ok(out)
}

/// Calls `function` with `this` and `args`; `Err` holds the exception it threw.
pub(crate) fn call(
    env: &Env,
    function: Value,
    this: Value,
    args: &[Value],
) -> Result<Result<Value, Value>, Error> {
    let mut out = ptr::null_mut();
    // SAFETY: valid handles; `args` holds `args.len()` values.
    let status = unsafe {
        sys::napi_call_function(
            env.raw(),
            this,
            function,
            args.len(),
            args.as_ptr(),
            &mut out,
        )
    };
    if status == sys::Status::napi_ok {
        return Ok(Ok(out));
    }
    match take_exception(env) {
        Some(exception) => Ok(Err(exception)),
        None => Err(napi_failed("calling a function", status)),
    }
}

/// `new constructor(...args)`.
pub(crate) fn construct(env: &Env, constructor: Value, args: &[Value]) -> Result<Value, Error> {
    let mut out = ptr::null_mut();
    // SAFETY: valid handles; `args` holds `args.len()` values.
    let status = unsafe {
        sys::napi_new_instance(env.raw(), constructor, args.len(), args.as_ptr(), &mut out)
    };
    check(env, status, "constructing an object")?;
    Ok(out)
}

/// Whether `value instanceof constructor`.
pub(crate) fn instance_of(env: &Env, value: Value, constructor: Value) -> Result<bool, Error> {
    let mut out = false;
    // SAFETY: valid handles.
    let status = unsafe { sys::napi_instanceof(env.raw(), value, constructor, &mut out) };
    check(env, status, "checking instanceof")?;
    Ok(out)
}

/// A pending promise and the handle that settles it (exactly once, on the JS thread).
pub(crate) fn promise(env: &Env) -> Result<(sys::napi_deferred, Value), Error> {
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    // SAFETY: a valid env.
    let status = unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) };
    check(env, status, "creating a promise")?;
    Ok((deferred, promise))
}

/// Settles a deferred: resolves it with `Ok`, rejects it with `Err`.
/// Resolving with a thenable adopts its state, as `Promise.resolve` does.
pub(crate) fn settle(
    env: &Env,
    deferred: sys::napi_deferred,
    outcome: Result<Value, Value>,
) -> Result<(), Error> {
    // SAFETY: `deferred` comes from `promise` and is settled once: napi frees it here.
    let status = unsafe {
        match outcome {
            Ok(value) => sys::napi_resolve_deferred(env.raw(), deferred, value),
            Err(error) => sys::napi_reject_deferred(env.raw(), deferred, error),
        }
    };
    check(env, status, "settling a promise")
}

/// A promise already settled with `outcome`.
pub(crate) fn settled(env: &Env, outcome: Result<Value, Value>) -> Result<Value, Error> {
    let (deferred, promise) = promise(env)?;
    settle(env, deferred, outcome)?;
    Ok(promise)
}

/// A JS `Error` with `message`, and `code` and `cause` when given.
pub(crate) fn error(
    env: &Env,
    code: Option<&str>,
    message: &str,
    cause: Option<Value>,
) -> Result<Value, Error> {
    let code = match code {
        Some(code) => string(env, code)?,
        None => ptr::null_mut(),
    };
    let message = string(env, message)?;
    let mut out = ptr::null_mut();
    // SAFETY: valid string handles (a null code sets none).
    let status = unsafe { sys::napi_create_error(env.raw(), code, message, &mut out) };
    check(env, status, "creating an Error")?;
    if let Some(cause) = cause {
        set_named(env, out, c"cause", cause)?;
    }
    Ok(out)
}

/// A strong reference to a JS value, released explicitly with [`Held::release`].
///
/// Node before 22 (napi < 10) references objects, functions and symbols
/// only, so any other value is held inside a one-element array.
///
/// It is a plain handle, so it may travel with work that runs off the JS
/// thread; it is only read and released on the JS thread.
pub(crate) struct Held {
    raw: sys::napi_ref,
    boxed: bool,
}

// SAFETY: the handle is only dereferenced and released on the JS thread
// (by the owner of the storage or by a task's completion, which napi runs
// there); other threads only move it.
unsafe impl Send for Held {}

impl Held {
    /// Keeps `value` alive until released.
    pub(crate) fn new(env: &Env, value: Value) -> Result<Self, Error> {
        let boxed = !matches!(
            type_of(env, value),
            ValueType::Object | ValueType::Function | ValueType::Symbol
        );
        let target = match boxed {
            true => array(env, &[value])?,
            false => value,
        };
        let mut raw = ptr::null_mut();
        // SAFETY: a valid env and an object value.
        let status = unsafe { sys::napi_create_reference(env.raw(), target, 1, &mut raw) };
        check(env, status, "creating a reference")?;
        Ok(Self { raw, boxed })
    }

    /// The value.
    #[inline]
    pub(crate) fn get(&self, env: &Env) -> Result<Value, Error> {
        let mut out = ptr::null_mut();
        // SAFETY: a live reference (not yet released).
        let status = unsafe { sys::napi_get_reference_value(env.raw(), self.raw, &mut out) };
        check(env, status, "reading a reference")?;
        if !self.boxed {
            return Ok(out);
        }
        let mut value = ptr::null_mut();
        // SAFETY: the one-element array made by `new`.
        let status = unsafe { sys::napi_get_element(env.raw(), out, 0, &mut value) };
        check(env, status, "reading a reference")?;
        Ok(value)
    }

    /// Lets the value go.
    pub(crate) fn release(self, env: &Env) {
        // SAFETY: a live reference, deleted once (this consumes it).
        unsafe { sys::napi_delete_reference(env.raw(), self.raw) };
    }
}
