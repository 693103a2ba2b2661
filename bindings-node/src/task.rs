//! Engine work that runs off the JS thread: the writes, which may wait for
//! another process's write lock. The promise settles on the JS thread when
//! the work is done.
//!
//! [`spawn`] runs it on libuv's thread pool (a napi-rs [`ScopedTask`]). Work
//! that may wait for a JS function of the storage's source (a write under
//! write-through, which calls `store` / `remove` first; `flush` and
//! `dispose` under write-behind, which wait for the outbox's deliveries)
//! runs on the core runtime's blocking pool instead ([`spawn_waiting_for_js`]):
//! a libuv pool thread waiting for a JS function that itself needs the pool
//! (fs, dns, crypto) could leave it none.
//!
//! A panic in the work rejects the promise with an `internal` error.

use std::panic::{AssertUnwindSafe, catch_unwind};

use napi::bindgen_prelude::Unknown;
use napi::{Env, JsValue, ScopedTask};
use tierstack::{Error, ErrorKind, blocking::Cache};

use crate::drive;
use crate::error;
use crate::js_values::Value;

/// Turns the result of engine work into its JS value, on the JS thread.
pub(crate) type ToJs<R> = for<'e> fn(&'e Env, R) -> Result<Value<'e>, Error>;

type Work<R> = Box<dyn FnOnce(&Cache) -> tierstack::Result<R> + Send>;

struct Offload<R> {
    cache: Cache,
    work: Option<Work<R>>,
    to_js: ToJs<R>,
}

/// Runs `work` on `cache`, a panic becoming an `internal` error.
fn run<R>(work: Work<R>, cache: &Cache) -> tierstack::Result<R> {
    catch_unwind(AssertUnwindSafe(|| work(cache)))
        .unwrap_or_else(|panic| Err(error::panicked("a write", &*panic)))
}

impl<'task, R: Send + 'static> ScopedTask<'task> for Offload<R> {
    type Output = tierstack::Result<R>;
    type JsValue = Unknown<'task>;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(match self.work.take() {
            Some(work) => run(work, &self.cache),
            None => Err(Error::new(ErrorKind::Internal, "a task ran twice")),
        })
    }

    fn resolve(&mut self, env: &'task Env, output: Self::Output) -> napi::Result<Unknown<'task>> {
        let to_js = self.to_js;
        catch_unwind(AssertUnwindSafe(|| output.and_then(|r| to_js(env, r))))
            .unwrap_or_else(|panic| Err(error::panicked("a write's answer", &*panic)))
            .map_err(|e| error::to_napi(env, &e))
    }
}

/// Runs `work` on `cache` off the JS thread; the promise resolves with
/// `to_js` of its result or rejects with its error.
pub(crate) fn spawn<'e, R: Send + 'static>(
    env: &'e Env,
    cache: &Cache,
    work: impl FnOnce(&Cache) -> tierstack::Result<R> + Send + 'static,
    to_js: ToJs<R>,
) -> Result<Value<'e>, Error> {
    let task = Offload {
        cache: cache.clone(),
        work: Some(Box::new(work)),
        to_js,
    };
    let promise = env
        .spawn(task)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("queueing work: {}", e.reason)))?;
    Ok(promise.promise_object().to_unknown())
}

/// [`spawn`] for work that may wait for a JS function: run on the core
/// runtime's blocking pool, settled through [`drive::promise`].
pub(crate) fn spawn_waiting_for_js<'e, R: Send + 'static>(
    env: &'e Env,
    cache: &Cache,
    work: impl FnOnce(&Cache) -> tierstack::Result<R> + Send + 'static,
    to_js: ToJs<R>,
) -> Result<Value<'e>, Error> {
    let cache = cache.clone();
    let work: Work<R> = Box::new(work);
    let task = tierstack::runtime::handle().spawn_blocking(move || run(work, &cache));
    drive::promise(
        env,
        async move {
            task.await
                .map_err(|e| Error::new(ErrorKind::Internal, format!("a write task failed: {e}")))?
        },
        Box::new(to_js),
    )
}
