//! `getOrLoad`: a read that, on a miss, calls the caller's loader, stores
//! what it gives and returns it.
//!
//! Concurrent calls for one key in one storage share one loader call: the
//! first miss starts the load and registers its promise; later calls for the
//! key, until it settles, get that same promise without reading (so they
//! count neither a hit nor a miss). The loader runs on the JS thread; its
//! value (a promise is awaited) is encoded there and stored off the JS
//! thread, and the shared promise resolves once it is stored. A loader that
//! throws or rejects makes the shared promise reject with its own error and
//! stores nothing; a value that cannot be stored rejects with the engine's
//! error (`invalid_value` for a value JSON cannot encode).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use napi::bindgen_prelude::{FunctionCallContext, JsValue, Unknown};
use napi::{Env, Task, sys};
use tierstack::{Error, ErrorKind, SetOptions, blocking::Cache};

use crate::error;
use crate::js::{self, Held, Value};
use crate::task::Raw;
use crate::value::Builtins;

/// The loads in flight, by key: an id and the shared promise.
type InFlight = HashMap<String, (u64, Held)>;

/// The loads in flight of one storage.
#[derive(Default)]
pub(crate) struct Loads {
    in_flight: Arc<Mutex<InFlight>>,
    next_id: Cell<u64>,
}

/// A deferred, settled once on the JS thread.
struct Deferred(sys::napi_deferred);

// SAFETY: only settled on the JS thread (in a promise reaction or a task's
// completion); other threads only move it.
unsafe impl Send for Deferred {}

/// A load between its loader's call and its end.
struct Pending {
    deferred: Deferred,
    cache: Cache,
    key: String,
    options: SetOptions,
    id: u64,
    in_flight: Arc<Mutex<InFlight>>,
}

impl Loads {
    /// The promise of the load of `key` in flight, if there is one.
    pub(crate) fn joined(&self, env: &Env, key: &str) -> Result<Option<Value>, Error> {
        let in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        in_flight.get(key).map(|(_, p)| p.get(env)).transpose()
    }

    /// Calls `loader` for `key` and returns the promise every caller shares.
    ///
    /// The load is registered before the loader runs, so a loader that asks
    /// for its own key joins its own load instead of starting another.
    pub(crate) fn start(
        &self,
        env: &Env,
        cache: &Cache,
        key: &str,
        loader: Value,
        options: SetOptions,
    ) -> Result<Value, Error> {
        let (deferred, promise) = js::promise(env)?;
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        let pending = Pending {
            deferred: Deferred(deferred),
            cache: cache.clone(),
            key: key.to_owned(),
            options,
            id,
            in_flight: self.in_flight.clone(),
        };
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned(), (id, Held::new(env, promise)?));
        let pending = Rc::new(RefCell::new(Some(pending)));
        if let Err(err) = call_loader(env, loader, &pending) {
            // The load could not be set up: it ends here, so that the next
            // call for the key loads again.
            if let Some(pending) = pending.borrow_mut().take() {
                finish(env, pending, Err(error::to_js(env, &err)));
            }
        }
        Ok(promise)
    }
}

/// Calls the loader and reacts to its value: `Promise.resolve(loaded)
/// .then(stored, failed)`, so a plain value and a promise are awaited alike.
/// Neither reaction throws, so the promise `then` returns never rejects
/// unobserved.
fn call_loader(
    env: &Env,
    loader: Value,
    pending: &Rc<RefCell<Option<Pending>>>,
) -> Result<(), Error> {
    let undefined = js::undefined(env)?;
    let loaded = match js::call(env, loader, undefined, &[])? {
        Ok(loaded) => loaded,
        Err(exception) => {
            if let Some(pending) = pending.borrow_mut().take() {
                finish(env, pending, Err(exception));
            }
            return Ok(());
        }
    };
    let adopted = js::settled(env, Ok(loaded))?;
    let reaction = |name: &str, on: fn(&Env, Pending, Value)| {
        let pending = pending.clone();
        env.create_function_from_closure::<Unknown, (), _>(name, move |ctx: FunctionCallContext| {
            let arg = match ctx.get::<Unknown>(0) {
                Ok(arg) => arg.raw(),
                Err(_) => js::undefined(ctx.env).map_err(|e| error::to_napi(ctx.env, &e))?,
            };
            if let Some(pending) = pending.borrow_mut().take() {
                on(ctx.env, pending, arg);
            }
            Ok(())
        })
        .map(|f| f.raw())
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("creating a promise reaction: {}", e.reason),
            )
        })
    };
    let on_value = reaction("stored", store)?;
    let on_error = reaction("failed", |env, pending, reason| {
        finish(env, pending, Err(reason))
    })?;
    let then = js::get_named(env, adopted, c"then")?;
    js::call(env, then, adopted, &[on_value, on_error])?
        .map_err(|e| Error::new(ErrorKind::Internal, js::message_of(env, e)))?;
    Ok(())
}

/// Encodes the loaded value and stores it off the JS thread.
fn store(env: &Env, pending: Pending, value: Value) {
    let bytes = Builtins::capture(env).and_then(|builtins| {
        let bytes = builtins.encode(env, value);
        builtins.release(env);
        bytes
    });
    let (bytes, held) = match bytes.and_then(|b| Ok((b, Held::new(env, value)?))) {
        Ok(ok) => ok,
        Err(err) => return finish(env, pending, Err(error::to_js(env, &err))),
    };
    let task = Store {
        pending: Some(pending),
        bytes,
        value: Some(held),
    };
    // Queueing only fails while the environment shuts down, when no one is
    // left to wait for the promise.
    let _ = env.spawn(task);
}

/// Settles the shared promise and ends the load.
fn finish(env: &Env, pending: Pending, outcome: Result<Value, Value>) {
    let mut in_flight = pending
        .in_flight
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if in_flight
        .get(&pending.key)
        .is_some_and(|(id, _)| *id == pending.id)
        && let Some((_, promise)) = in_flight.remove(&pending.key)
    {
        promise.release(env);
    }
    drop(in_flight);
    // Settling only fails while the environment shuts down.
    let _ = js::settle(env, pending.deferred.0, outcome);
}

/// Stores a loaded value off the JS thread, then settles the shared promise.
struct Store {
    pending: Option<Pending>,
    bytes: Bytes,
    value: Option<Held>,
}

impl Task for Store {
    type Output = tierstack::Result<()>;
    type JsValue = Raw;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(match &self.pending {
            Some(p) => p
                .cache
                .set_with(p.key.as_str(), self.bytes.clone(), p.options.clone()),
            None => Err(Error::new(ErrorKind::Internal, "a load was stored twice")),
        })
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Raw> {
        if let (Some(pending), Some(value)) = (self.pending.take(), self.value.take()) {
            let outcome = match output {
                Ok(()) => value.get(&env).map_err(|e| error::to_js(&env, &e)),
                Err(err) => Err(error::to_js(&env, &err)),
            };
            finish(&env, pending, outcome);
            value.release(&env);
        }
        js::undefined(&env)
            .map(Raw)
            .map_err(|e| error::to_napi(&env, &e))
    }

    fn finally(mut self, env: Env) -> napi::Result<()> {
        if let Some(value) = self.value.take() {
            value.release(&env);
        }
        Ok(())
    }
}
