//! Core futures as JS promises, without blocking any thread.
//!
//! A read that may load (`getOrLoad`, `getOrLoadMany`, and the reads of a
//! storage opened with a source) is a future of the async core, once an L1
//! hit has been ruled out (`getOrLoad` and `get` answer those before any
//! future exists). It is polled once on the JS thread: an L1 or L2 hit, a
//! negative-cache hit, an error is ready at once and settles the promise
//! without leaving the thread. Otherwise the future, now waiting for a flight, moves to the
//! core's runtime (`tierstack::runtime::handle().spawn`), and when it ends
//! the promise is settled on the JS thread through a napi thread-safe
//! function, which also keeps the event loop alive meanwhile. No libuv
//! pool thread ever waits for a JS loader, so a loader that uses the pool
//! (fs, crypto) cannot deadlock it.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use napi::bindgen_prelude::FunctionCallContext;
use napi::threadsafe_function::{
    ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode,
};
use napi::{Env, Status, sys};
use tierstack::{Error, ErrorKind};

use crate::error;
use crate::js::{self, Value};

/// Work to run on the JS thread.
type Job = Box<dyn FnOnce(&Env) + Send>;

/// Turns a future's output into the promise's value, on the JS thread.
pub(crate) type Settle<R> = Box<dyn FnOnce(&Env, R) -> Result<Value, Error> + Send>;

/// A deferred, settled once on the JS thread.
struct Deferred(sys::napi_deferred);

// SAFETY: only settled on the JS thread (by a job the thread-safe function
// runs there); other threads only move it.
unsafe impl Send for Deferred {}

/// The promise of `future`, settled with `settle` of its output.
pub(crate) fn promise<R: Send + 'static>(
    env: &Env,
    future: impl Future<Output = R> + Send + 'static,
    settle: Settle<R>,
) -> Result<Value, Error> {
    let mut future = Box::pin(future);
    let mut context = Context::from_waker(Waker::noop());
    // The future is polled again on the runtime with a real waker, so the
    // no-op waker given here is replaced before anything relies on it.
    if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
        let outcome = settle(env, output).map_err(|e| error::to_js(env, &e));
        return js::settled(env, outcome);
    }
    let (deferred, promise) = js::promise(env)?;
    let deferred = Deferred(deferred);
    let js_thread = js_thread(env)?;
    tierstack::runtime::handle().spawn(async move {
        let output = future.await;
        let job: Job = Box::new(move |env| {
            let deferred = deferred;
            let outcome = settle(env, output).map_err(|e| error::to_js(env, &e));
            // Settling only fails while the environment shuts down.
            let _ = js::settle(env, deferred.0, outcome);
        });
        // Queueing only fails while the environment shuts down, when no one
        // is left to wait for the promise.
        let _ = js_thread.call(job, ThreadsafeFunctionCallMode::NonBlocking);
    });
    Ok(promise)
}

/// A thread-safe function that runs a [`Job`] on the JS thread; it keeps the
/// event loop alive until dropped.
fn js_thread(env: &Env) -> Result<ThreadsafeFunction<Job, (), (), Status, false>, Error> {
    let failed = |e: napi::Error| {
        Error::new(
            ErrorKind::Internal,
            format!("setting up a completion: {}", e.reason),
        )
    };
    let noop = env
        .create_function_from_closure::<(), (), _>("settled", |_: FunctionCallContext| Ok(()))
        .map_err(failed)?;
    noop.build_threadsafe_function::<Job>()
        .callee_handled::<false>()
        .build_callback(|ctx: ThreadsafeCallContext<Job>| {
            (ctx.value)(&ctx.env);
            Ok(())
        })
        .map_err(failed)
}

/// What a read gives back to JS: a value to settle a promise with, or the
/// promise of a load.
pub(crate) enum Reply {
    Value(Value),
    Promise(Value),
}

impl Reply {
    /// What the direct-dispatch methods hand their JS side (see
    /// [`crate::dispatch`]), which makes the promise: the value, or the
    /// promise of the load.
    pub(crate) fn into_answer(self) -> Value {
        match self {
            Reply::Value(value) | Reply::Promise(value) => value,
        }
    }

    /// The promise: already settled for a value.
    pub(crate) fn into_promise(self, env: &Env) -> Result<Value, Error> {
        match self {
            Reply::Value(value) => js::settled(env, Ok(value)),
            Reply::Promise(promise) => Ok(promise),
        }
    }
}
