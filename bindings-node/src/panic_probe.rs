//! Debug builds only: functions that panic inside the binding's panic
//! boundaries, so the tests can check that a panic becomes an `internal`
//! error and never aborts the process. Not in the TypeScript types.

use napi::Env;
use napi::bindgen_prelude::Unknown;
use napi_derive::napi;
use tierstack::Error;
use tierstack::blocking::Cache;

use crate::cache::{HybridStorage, guarded, promised};
use crate::drive::{self, Reply};
use crate::js_values::{self, Value};
use crate::task;

/// The message of every panic here.
const PANIC: &str = "a panic for the test";

impl HybridStorage {
    /// `storage.__panicRead(key)`, a read method dispatched directly (see
    /// `dispatch`) that panics: the promise rejects with code `internal`.
    pub(crate) fn panic_read<'e>(&self, _: &'e Env, _: Value) -> Result<Reply<'e>, Error> {
        panic!("{PANIC}")
    }
}

/// A synchronous method that panics: throws an `Error` with code `internal`.
#[napi(catch_unwind, skip_typescript, js_name = "__panicSync")]
pub fn panic_sync(env: &Env) -> napi::Result<bool> {
    guarded(env, "__panicSync", || panic!("{PANIC}"))
}

/// A promise-returning method that panics on the JS thread: the promise
/// rejects with code `internal`.
#[napi(catch_unwind, skip_typescript, js_name = "__panicAsync")]
pub fn panic_async(env: &Env) -> napi::Result<Unknown<'_>> {
    promised(env, "__panicAsync", || panic!("{PANIC}"))
}

/// A write whose work panics on libuv's thread pool: the promise rejects
/// with code `internal`.
#[napi(catch_unwind, skip_typescript, js_name = "__panicInWrite")]
pub fn panic_in_write(env: &Env) -> napi::Result<Unknown<'_>> {
    promised(env, "__panicInWrite", || {
        let mut config = tierstack::Config::default();
        config.sqlite.enabled = false;
        let cache = Cache::builder().config(config).build_blocking()?;
        task::spawn(
            env,
            &cache,
            |_: &Cache| -> tierstack::Result<()> { panic!("{PANIC}") },
            |env, ()| js_values::undefined(env),
        )
    })
}

/// A read whose core future panics on the core's runtime, after it left
/// the JS thread: the promise rejects with code `internal`.
#[napi(catch_unwind, skip_typescript, js_name = "__panicInLoad")]
pub fn panic_in_load(env: &Env) -> napi::Result<Unknown<'_>> {
    promised(env, "__panicInLoad", || {
        let fail = || -> tierstack::Result<()> { panic!("{PANIC}") };
        drive::promise(
            env,
            async move {
                // Pending when first polled on the JS thread.
                tokio::task::yield_now().await;
                fail()
            },
            Box::new(|env, ()| js_values::undefined(env)),
        )
    })
}
