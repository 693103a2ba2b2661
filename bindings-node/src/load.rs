//! JS loaders and source writes as the core's: the adapter, and nothing else.
//!
//! Loading (single-flight in the process and across processes, the circuit
//! breaker, timeouts, fail-safe stale copies, negative caching,
//! refresh-ahead) and writing to the source (write-through, the write-behind
//! outbox with its retries, ordering and dead letters) live in the core,
//! once. This module only turns JS functions into what the core calls: the
//! loader of one `getOrLoad` or `getOrLoadMany` call, or the source given at
//! open (`new HybridStorage(config, { source })`), whose `store` and
//! `remove` make it writable.
//!
//! The core calls a JS function from its runtime thread. The call is queued
//! to the JS thread through a napi thread-safe function; there the JS
//! function runs with its arguments (a loader's key or array of missing
//! keys; a store's key, value and idempotency key; a remove's key and
//! idempotency key), its value is awaited if it is a promise
//! (`Promise.resolve(value).then(...)`) and converted there (a loaded value
//! is encoded as `set` encodes: a `Buffer` as its bytes, anything else as
//! JSON, `undefined` is "not found"; what a store or remove resolves to is
//! ignored), and the answer goes back to the core over a oneshot channel.
//! No thread waits for JS: the runtime task awaits the channel.
//!
//! The value handed to `store` is decoded as `get` decodes it: the parsed
//! JSON, or, for stored bytes that are not UTF-8 JSON (a value written as a
//! `Buffer` or `Uint8Array`), a `Buffer` of them.
//!
//! A function that throws or rejects fails with kind `source`, its message,
//! and its original value as the cause ([`LoaderFailure`]), which
//! [`crate::error::to_js`] puts back as `err.cause` (and the outbox keeps
//! the message as a dead letter's `lastError`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use napi::bindgen_prelude::{
    ClassInstance, FromNapiValue, Function, FunctionCallContext, JsValue, JsValuesTupleIntoVec,
    ToNapiValue, Unknown,
};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status, ValueType, sys};
use tierstack::source::{FetchFuture, Fetched, Source, WriteFuture};
use tierstack::{Error, ErrorKind};
use tokio::sync::oneshot;

use crate::error::argument;
use crate::js_values::{self, Thrown, Value};
use crate::value::Builtins;

/// What a JS function is called with: a loader's key or array of missing
/// keys, a store's key, value and idempotency key, a remove's key and
/// idempotency key.
pub(crate) enum Arg {
    Key(String),
    Keys(Vec<String>),
    Store {
        key: String,
        value: Bytes,
        idempotency_key: String,
    },
    Remove {
        key: String,
        idempotency_key: String,
    },
}

impl JsValuesTupleIntoVec for Arg {
    fn into_vec(self, env: sys::napi_env) -> napi::Result<Vec<sys::napi_value>> {
        // Called by napi-rs on the JS thread (the thread-safe function's call).
        let env = Env::from_raw(env);
        let values = match self {
            Arg::Key(key) => vec![key.into_unknown(&env)?],
            Arg::Keys(keys) => vec![keys.into_unknown(&env)?],
            Arg::Store {
                key,
                value,
                idempotency_key,
            } => vec![
                key.into_unknown(&env)?,
                stored_value(&env, &value)?,
                idempotency_key.into_unknown(&env)?,
            ],
            Arg::Remove {
                key,
                idempotency_key,
            } => vec![key.into_unknown(&env)?, idempotency_key.into_unknown(&env)?],
        };
        Ok(values.iter().map(|v| v.raw()).collect())
    }
}

/// The value a `store` function is handed: decoded as `get` decodes it, or
/// a `Buffer` of bytes that are not UTF-8 JSON.
fn stored_value<'e>(env: &'e Env, bytes: &[u8]) -> napi::Result<Value<'e>> {
    let value = Builtins::capture(env).and_then(|builtins| {
        let decoded = builtins.decode(env, bytes);
        builtins.release(env);
        match decoded {
            Ok(value) => Ok(value),
            Err(err) if err.kind() == ErrorKind::InvalidValue => js_values::buffer(env, bytes),
            Err(err) => Err(err),
        }
    });
    value.map_err(|e| crate::error::to_napi(env, &e))
}

/// A JS function callable from any thread. `WEAK`: it does not keep the
/// event loop alive (the functions of a storage's source); a per-call loader
/// does, until the core drops it.
pub(crate) struct JsFunction<const WEAK: bool> {
    function: ThreadsafeFunction<Arg, Returned, Arg, Status, false, WEAK>,
    /// Names the function in errors (`"loader"`, `"source store function"`).
    what: &'static str,
}

/// A loader given with one call (`getOrLoad`, `getOrLoadMany`).
pub(crate) type CallLoader = JsFunction<false>;

/// Converts what a JS function resolved to, on the JS thread.
type Convert<T> = fn(&Env, Value) -> Result<T, Error>;

/// What a JS function returned, as the thread-safe function's callback
/// takes it on the JS thread (valid during that callback only).
type Returned = Unknown<'static>;

impl<const WEAK: bool> JsFunction<WEAK> {
    /// Wraps `function` (`what` names it in errors).
    pub(crate) fn new(function: Value, what: &'static str) -> Result<Self, Error> {
        check_function(function, what)?;
        let napi_failed = |e: napi::Error| {
            Error::new(
                ErrorKind::Internal,
                format!("wrapping the {what}: {}", e.reason),
            )
        };
        let function = Function::<Arg, Returned>::from_unknown(function).map_err(napi_failed)?;
        let function = function
            .build_threadsafe_function::<Arg>()
            .callee_handled::<false>()
            .weak::<WEAK>()
            .build()
            .map_err(napi_failed)?;
        Ok(Self { function, what })
    }

    /// Calls the function on the JS thread with `arg`; its answer, converted
    /// there by `convert`.
    fn call<T: Send + 'static>(
        &self,
        arg: Arg,
        convert: Convert<T>,
    ) -> impl Future<Output = tierstack::Result<T>> + Send + 'static + use<T, WEAK> {
        let (sender, receiver) = oneshot::channel();
        let what = self.what;
        let status = self.function.call_with_return_value(
            arg,
            ThreadsafeFunctionCallMode::NonBlocking,
            move |returned: napi::Result<Returned>, env: Env| {
                returned_on_js_thread(&env, returned, sender, convert);
                Ok(())
            },
        );
        async move {
            if status != Status::Ok {
                return Err(Error::new(
                    ErrorKind::Source,
                    format!(
                        "the JS {what} could not be called ({status}): the environment is shutting down"
                    ),
                ));
            }
            receiver.await.unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Source,
                    format!("the JS {what}'s answer was lost: the environment is shutting down"),
                ))
            })
        }
    }

    /// Loads one key: a value, or not found for `undefined`.
    pub(crate) fn fetch(&self, key: String) -> FetchFuture {
        Box::pin(self.call(Arg::Key(key), fetched))
    }

    /// Loads a batch: the loader's `Map` or object of the keys it found.
    pub(crate) fn fetch_many(
        &self,
        keys: Vec<String>,
    ) -> impl Future<Output = tierstack::Result<HashMap<String, Fetched>>> + Send + 'static + use<WEAK>
    {
        self.call(Arg::Keys(keys), fetched_many)
    }

    /// Stores `value` under `key`: the call settles the write.
    fn store(&self, key: String, value: Bytes, idempotency_key: String) -> WriteFuture {
        let arg = Arg::Store {
            key,
            value,
            idempotency_key,
        };
        Box::pin(self.call(arg, written))
    }

    /// Removes `key`: the call settles the write.
    fn remove(&self, key: String, idempotency_key: String) -> WriteFuture {
        let arg = Arg::Remove {
            key,
            idempotency_key,
        };
        Box::pin(self.call(arg, written))
    }
}

/// A write's answer: whatever a store or remove resolved to, it is done.
fn written(_: &Env, _: Value) -> Result<(), Error> {
    Ok(())
}

/// Refuses a `what` that is not a function, as [`JsFunction::new`] does,
/// without wrapping it.
pub(crate) fn check_function(function: Value, what: &str) -> Result<(), Error> {
    match js_values::type_of(function) {
        ValueType::Function => Ok(()),
        _ => Err(argument(format!(
            "{what} must be a function, got {}",
            js_values::type_name(function)
        ))),
    }
}

impl CallLoader {
    /// The core loader of a `getOrLoad` call's `loader` (already checked
    /// with [`check_function`]), wrapped now, on the JS thread, for a caller
    /// that cannot fail where it makes it: the core asks for it only when an
    /// L1 hit is due for a refresh ahead. A wrapping that fails becomes that
    /// load's failure.
    pub(crate) fn load_fn(function: Value) -> impl FnOnce(String) -> FetchFuture + Send + 'static {
        let loader = Self::new(function, "loader");
        move |key| match loader {
            Ok(loader) => loader.fetch(key),
            Err(err) => Box::pin(std::future::ready(Err(err))),
        }
    }
}

/// The loader's return value on the JS thread: a throw fails at once, a
/// value or promise is awaited through `Promise.resolve(value).then(...)`.
/// A panic here fails the call with an `internal` error.
fn returned_on_js_thread<T: Send + 'static>(
    env: &Env,
    returned: napi::Result<Returned>,
    sender: oneshot::Sender<tierstack::Result<T>>,
    convert: Convert<T>,
) {
    let sender = Rc::new(RefCell::new(Some(sender)));
    let outcome = catch_unwind(AssertUnwindSafe(|| match returned {
        Ok(value) => await_value(env, value, &sender, convert),
        Err(thrown) => Err(failure(env, Thrown::from_error(thrown))),
    }))
    .unwrap_or_else(|panic| Err(crate::error::panicked("a JS function's answer", &*panic)));
    if let Err(err) = outcome
        && let Some(sender) = sender.borrow_mut().take()
    {
        let _ = sender.send(Err(err));
    }
}

type Pending<T> = Rc<RefCell<Option<oneshot::Sender<tierstack::Result<T>>>>>;

fn await_value<T: Send + 'static>(
    env: &Env,
    value: Value,
    sender: &Pending<T>,
    convert: Convert<T>,
) -> Result<(), Error> {
    let adopted = js_values::settled(env, Ok(value))?;
    let reaction = |name: &str, rejected: bool| {
        let sender = sender.clone();
        env.create_function_from_closure::<Unknown, (), _>(name, move |ctx: FunctionCallContext| {
            let arg = match ctx.get::<Unknown>(0) {
                Ok(arg) => arg,
                Err(_) => {
                    js_values::undefined(ctx.env).map_err(|e| crate::error::to_napi(ctx.env, &e))?
                }
            };
            if let Some(sender) = sender.borrow_mut().take() {
                let answer = catch_unwind(AssertUnwindSafe(|| match rejected {
                    false => convert(ctx.env, arg),
                    true => Err(failure(ctx.env, Thrown::new(arg))),
                }))
                .unwrap_or_else(|panic| {
                    Err(crate::error::panicked("a JS function's answer", &*panic))
                });
                let _ = sender.send(answer);
            }
            Ok(())
        })
        .map(|f| f.to_unknown())
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("creating a promise reaction: {}", e.reason),
            )
        })
    };
    let on_value = reaction("loaded", false)?;
    let on_error = reaction("failed", true)?;
    let then = js_values::get_named(env, adopted, c"then")?;
    js_values::call(env, then, adopted, &[on_value, on_error])?
        .map_err(|e| Error::new(ErrorKind::Internal, js_values::message_of(env, e)))?;
    Ok(())
}

/// The error of a loader that threw or rejected with `thrown`.
fn failure(env: &Env, thrown: Thrown) -> Error {
    let message = match thrown.value(env) {
        Some(value) => js_values::message_of(env, value),
        None => thrown.to_string(),
    };
    Error::new(ErrorKind::Source, message).with_source(LoaderFailure(thrown))
}

/// The cause of a `source` error: what the JS loader threw or rejected with.
#[derive(Debug)]
pub(crate) struct LoaderFailure(pub(crate) Thrown);

impl std::fmt::Display for LoaderFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for LoaderFailure {}

/// A loader's answer that chooses its own TTL or tags:
/// `return new Loaded(value, { ttl: 60, tags: ['docs'] })`. Without one, a
/// loaded value takes the call's TTL (else `sqlite.ttl`). The value is
/// encoded when the answer is made, as `set` encodes it.
#[napi_derive::napi]
pub struct Loaded {
    value: bytes::Bytes,
    options: tierstack::SetOptions,
}

#[napi_derive::napi]
impl Loaded {
    /// Throws with `code === 'invalid_value'` for a value JSON cannot
    /// encode, `'invalid_argument'` for bad options.
    #[napi(
        catch_unwind,
        constructor,
        ts_args_type = "value: unknown, options?: number | SetOptions | null"
    )]
    pub fn new(env: &Env, value: Unknown, options: Unknown) -> napi::Result<Self> {
        crate::cache::guarded(env, "new Loaded", || {
            let options = crate::entry::set_options(env, Some(options))?;
            Ok(Self {
                value: encode(env, value)?,
                options,
            })
        })
    }
}

/// The [`Loaded`] that `value` wraps, if it is one (napi-rs checks the
/// class's type tag).
fn as_loaded<'e>(value: Value<'e>) -> Option<ClassInstance<'e, Loaded>> {
    if js_values::type_of(value) != ValueType::Object {
        return None;
    }
    ClassInstance::<Loaded>::from_unknown(value).ok()
}

/// One answer: `undefined` is not found, a [`Loaded`] a value with its own
/// TTL and tags, anything else the value.
fn answer(
    value: Value,
    encode: impl FnOnce(Value) -> Result<bytes::Bytes, Error>,
) -> Result<Fetched, Error> {
    if js_values::type_of(value) == ValueType::Undefined {
        return Ok(Fetched::NotFound);
    }
    if let Some(instance) = as_loaded(value) {
        let loaded: &Loaded = &instance;
        let mut answer =
            tierstack::Loaded::new(loaded.value.clone()).tags(loaded.options.tags.clone());
        if let Some(ttl) = loaded.options.ttl {
            answer = answer.ttl(ttl);
        }
        return Ok(Fetched::Value(answer));
    }
    encode(value).map(Fetched::value)
}

/// One key's answer.
fn fetched(env: &Env, value: Value) -> Result<Fetched, Error> {
    answer(value, |v| encode(env, v))
}

/// A batch's answer: a `Map` or plain object (or `undefined`: none found).
fn fetched_many(env: &Env, value: Value) -> Result<HashMap<String, Fetched>, Error> {
    if js_values::is_nullish(Some(value)) {
        return Ok(HashMap::new());
    }
    let builtins = Builtins::capture(env)?;
    let answers = (|| {
        let mut out = HashMap::new();
        let entries = builtins.entries(env, value).map_err(|e| {
            Error::new(
                ErrorKind::InvalidValue,
                format!(
                    "a batch loader must return a Map or a plain object: {}",
                    e.message()
                ),
            )
        })?;
        for (key, value) in entries {
            let key = js_values::key(env, key)?.to_string();
            out.insert(key, answer(value, |v| builtins.encode(env, v))?);
        }
        Ok(out)
    })();
    builtins.release(env);
    answers
}

fn encode(env: &Env, value: Value) -> Result<bytes::Bytes, Error> {
    let builtins = Builtins::capture(env)?;
    let bytes = builtins.encode(env, value);
    builtins.release(env);
    bytes
}

/// The source given at open: `source` is a function (read-only), or an
/// object with a `load` function and, to make it writable, `store` and
/// `remove` functions (both or neither).
pub(crate) struct JsSource {
    load: JsFunction<true>,
    writes: Option<(JsFunction<true>, JsFunction<true>)>,
}

/// The keys of a source object.
const SOURCE_KEYS: [&str; 3] = ["load", "store", "remove"];

impl JsSource {
    pub(crate) fn new(env: &Env, source: Value) -> Result<Self, Error> {
        match js_values::type_of(source) {
            ValueType::Function => Ok(Self {
                load: JsFunction::new(source, "source load function")?,
                writes: None,
            }),
            ValueType::Object if !js_values::is_array(source) => {
                for name in js_values::own_keys(env, source)? {
                    let name = js_values::string_arg(env, name, "a source key")?;
                    if !SOURCE_KEYS.contains(&name.as_str()) {
                        return Err(argument(format!(
                            "unknown source key `{name}`, expected one of: {}",
                            SOURCE_KEYS.join(", ")
                        )));
                    }
                }
                let load = js_values::get_named(env, source, c"load")?;
                let store = js_values::get_named(env, source, c"store")?;
                let remove = js_values::get_named(env, source, c"remove")?;
                let writes = match (
                    js_values::is_nullish(Some(store)),
                    js_values::is_nullish(Some(remove)),
                ) {
                    (true, true) => None,
                    (false, false) => Some((
                        JsFunction::new(store, "source store function")?,
                        JsFunction::new(remove, "source remove function")?,
                    )),
                    (false, true) => {
                        return Err(argument(
                            "source.store is given without source.remove: a writable source has both",
                        ));
                    }
                    (true, false) => {
                        return Err(argument(
                            "source.remove is given without source.store: a writable source has both",
                        ));
                    }
                };
                Ok(Self {
                    load: JsFunction::new(load, "source load function")?,
                    writes,
                })
            }
            _ => Err(argument(format!(
                "source must be a function or an object with load (and store and remove) functions, got {}",
                js_values::type_name(source)
            ))),
        }
    }
}

impl Source for JsSource {
    fn name(&self) -> &str {
        "js"
    }

    fn fetch(&self, key: &str, _validator: Option<&str>) -> FetchFuture {
        self.load.fetch(key.to_owned())
    }

    fn writable(&self) -> bool {
        self.writes.is_some()
    }

    fn store(&self, key: &str, value: Bytes, idempotency_key: &str) -> WriteFuture {
        match &self.writes {
            Some((store, _)) => store.store(key.to_owned(), value, idempotency_key.to_owned()),
            None => tierstack::source::refuse_write(self.name(), key),
        }
    }

    fn remove(&self, key: &str, idempotency_key: &str) -> WriteFuture {
        match &self.writes {
            Some((_, remove)) => remove.remove(key.to_owned(), idempotency_key.to_owned()),
            None => tierstack::source::refuse_write(self.name(), key),
        }
    }
}

/// The source as the core takes it.
pub(crate) fn source(env: &Env, source: Value) -> Result<Arc<dyn Source>, Error> {
    Ok(Arc::new(JsSource::new(env, source)?))
}
