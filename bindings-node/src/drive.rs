//! Core futures as JS promises, without blocking any thread.
//!
//! A read that may load (`getOrLoad`, `getOrLoadMany`, and the reads of a
//! storage opened with a source) is a future of the async core, once an L1
//! hit has been ruled out (`getOrLoad` and `get` answer those before any
//! future exists). It is polled once on the JS thread: an L1 or L2 hit, a
//! negative-cache hit, an error is ready at once and settles the promise
//! without leaving the thread. Otherwise the future, now waiting for a
//! flight, moves to the core's runtime (`tierstack::runtime::handle().spawn`),
//! and when it ends the promise is settled on the JS thread through a napi
//! thread-safe function, which also keeps the event loop alive meanwhile.
//! No libuv pool thread ever waits for a JS loader, so a loader that uses
//! the pool (fs, crypto) cannot deadlock it. A panic, in the future or while
//! its answer is made, rejects the promise with an `internal` error.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::{Context, Poll, Waker};

use napi::bindgen_prelude::FunctionCallContext;
use napi::threadsafe_function::{
    ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode,
};
use napi::{Env, Status};
use tierstack::{Error, ErrorKind};

use crate::error;
use crate::js_values::{self, Value};

/// Work to run on the JS thread.
type Job = Box<dyn FnOnce(&Env) + Send>;

/// Turns a future's value into the promise's, on the JS thread.
pub(crate) type Settle<R> = Box<dyn for<'e> FnOnce(&'e Env, R) -> Result<Value<'e>, Error> + Send>;

/// The outcome of `settle` on `output`, a panic becoming an `internal` error.
fn settled_value<'e, R>(
    env: &'e Env,
    output: tierstack::Result<R>,
    settle: Settle<R>,
) -> Result<Value<'e>, Value<'e>> {
    catch_unwind(AssertUnwindSafe(|| output.and_then(|r| settle(env, r))))
        .unwrap_or_else(|panic| Err(error::panicked("answering a read", &*panic)))
        .map_err(|e| error::to_js(env, &e))
}

/// The promise of `future`, settled with `settle` of its value, or
/// rejected with its error (an `internal` one if it panicked).
pub(crate) fn promise<'e, R: Send + 'static>(
    env: &'e Env,
    future: impl Future<Output = tierstack::Result<R>> + Send + 'static,
    settle: Settle<R>,
) -> Result<Value<'e>, Error> {
    let mut future = Box::pin(future);
    let mut context = Context::from_waker(Waker::noop());
    // The future is polled again on the runtime with a real waker, so the
    // no-op waker given here is replaced before anything relies on it.
    let polled = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut context)))
        .unwrap_or_else(|panic| Poll::Ready(Err(error::panicked("a read", &*panic))));
    if let Poll::Ready(output) = polled {
        let outcome = settled_value(env, output, settle);
        return js_values::settled(env, outcome);
    }
    let (deferred, promise) = js_values::promise(env)?;
    let js_thread = js_thread(env)?;
    let runtime = tierstack::runtime::handle();
    let task = runtime.spawn(future);
    runtime.spawn(async move {
        let output = task.await.unwrap_or_else(|e| match e.try_into_panic() {
            Ok(panic) => Err(error::panicked("a read", &*panic)),
            Err(e) => Err(Error::new(
                ErrorKind::Internal,
                format!("a read failed: {e}"),
            )),
        });
        let job: Job = Box::new(move |env| {
            let outcome = settled_value(env, output, settle);
            // Settling only fails while the environment shuts down.
            let _ = js_values::settle(env, deferred, outcome);
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
pub(crate) enum Reply<'e> {
    Value(Value<'e>),
    Promise(Value<'e>),
}

impl<'e> Reply<'e> {
    /// What the direct-dispatch methods hand their JS side (see
    /// [`crate::dispatch`]), which makes the promise: the value, or the
    /// promise of the load.
    pub(crate) fn into_answer(self) -> Value<'e> {
        match self {
            Reply::Value(value) | Reply::Promise(value) => value,
        }
    }

    /// The promise: already settled for a value.
    pub(crate) fn into_promise(self, env: &'e Env) -> Result<Value<'e>, Error> {
        match self {
            Reply::Value(value) => js_values::settled(env, Ok(value)),
            Reply::Promise(promise) => Ok(promise),
        }
    }
}
