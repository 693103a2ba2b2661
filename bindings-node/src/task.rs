//! Engine work that runs off the JS thread: the writes, which may wait for
//! another process's write lock. The promise settles on the JS thread when
//! the work is done.
//!
//! [`spawn`] runs it on libuv's thread pool (napi async work). Work that
//! may wait for a JS function of the storage's source (a write under
//! write-through, which calls `store` / `remove` first; `flush` and
//! `dispose` under write-behind, which wait for the outbox's deliveries)
//! runs on the core runtime's blocking pool instead ([`spawn_waiting_for_js`]):
//! a libuv pool thread waiting for a JS function that itself needs the pool
//! (fs, dns, crypto) could leave it none.

use napi::bindgen_prelude::{FromNapiValue, ToNapiValue, TypeName};
use napi::{Env, JsValue, Task, ValueType, sys};
use tierstack::{Error, ErrorKind, blocking::Cache};

use crate::drive;
use crate::error;
use crate::js::Value;

/// A JS value made on the JS thread, handed back as a task's result (or
/// what a JS loader returned, see `load`).
pub(crate) struct Raw(pub(crate) Value);

// SAFETY: made and read on the JS thread only; a thread-safe function's
// type mentions it, but no value of it crosses threads.
unsafe impl Send for Raw {}
// SAFETY: as above.
unsafe impl Sync for Raw {}

impl TypeName for Raw {
    fn type_name() -> &'static str {
        "unknown"
    }

    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl FromNapiValue for Raw {
    unsafe fn from_napi_value(_env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        Ok(Self(value))
    }
}

impl ToNapiValue for Raw {
    unsafe fn to_napi_value(_env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        Ok(val.0)
    }
}

/// Turns the result of engine work into its JS value, on the JS thread.
pub(crate) type ToJs<R> = fn(&Env, R) -> Result<Value, Error>;

type Work<R> = Box<dyn FnOnce(&Cache) -> tierstack::Result<R> + Send>;

struct Offload<R> {
    cache: Cache,
    work: Option<Work<R>>,
    to_js: ToJs<R>,
}

impl<R: Send + 'static> Task for Offload<R> {
    type Output = tierstack::Result<R>;
    type JsValue = Raw;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(match self.work.take() {
            Some(work) => work(&self.cache),
            None => Err(Error::new(ErrorKind::Internal, "a task ran twice")),
        })
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Raw> {
        output
            .and_then(|r| (self.to_js)(&env, r))
            .map(Raw)
            .map_err(|e| error::to_napi(&env, &e))
    }
}

/// Runs `work` on `cache` off the JS thread; the promise resolves with
/// `to_js` of its result or rejects with its error.
pub(crate) fn spawn<R: Send + 'static>(
    env: &Env,
    cache: &Cache,
    work: impl FnOnce(&Cache) -> tierstack::Result<R> + Send + 'static,
    to_js: ToJs<R>,
) -> Result<Value, Error> {
    let task = Offload {
        cache: cache.clone(),
        work: Some(Box::new(work)),
        to_js,
    };
    let promise = env
        .spawn(task)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("queueing work: {}", e.reason)))?;
    Ok(promise.promise_object().raw())
}

/// [`spawn`] for work that may wait for a JS function: run on the core
/// runtime's blocking pool, settled through [`drive::promise`].
pub(crate) fn spawn_waiting_for_js<R: Send + 'static>(
    env: &Env,
    cache: &Cache,
    work: impl FnOnce(&Cache) -> tierstack::Result<R> + Send + 'static,
    to_js: ToJs<R>,
) -> Result<Value, Error> {
    let cache = cache.clone();
    let task = tierstack::runtime::handle().spawn_blocking(move || work(&cache));
    drive::promise(
        env,
        async move {
            task.await
                .map_err(|e| Error::new(ErrorKind::Internal, format!("a write task failed: {e}")))?
        },
        Box::new(move |env, output| to_js(env, output?)),
    )
}
