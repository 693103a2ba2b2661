//! The tokio runtime shared by every cache in the process, for background
//! work (L2 maintenance) and for the async API's off-thread writes.
//!
//! It is fork-aware: a child process created by `fork()` inherits none of
//! the parent's threads, so the first use after a fork builds a new runtime
//! (the parent's, whose threads do not exist in the child, is leaked rather
//! than dropped, as dropping it would wait for them). The fork handlers
//! and the fork gate are in `crate::fork` (`core/src/fork.rs`).

use std::sync::atomic::Ordering;

use parking_lot::Mutex;
use tokio::runtime::{Builder, Handle, Runtime};

use crate::fork::{FORK_GENERATION, unlock_abandoned, watch_forks};

/// The runtime of this process (built in `generation`); it lives as long as
/// the process, and is kept here so that it stays reachable.
static RUNTIME: Mutex<Option<(u64, &'static Runtime)>> = Mutex::new(None);

/// Called in a forked child by [`crate::fork`]'s handler. A thread of the
/// parent may have held the runtime slot's lock when the child was created;
/// it does not exist here and would never release it, and the child's first
/// `handle()` (its first use of a cache file restarts maintenance) would
/// wait forever. The forking thread is not in `handle()`, which never
/// forks. A tuple half written by that thread names an older generation
/// than this child's, so `handle()` builds a new runtime either way.
pub(crate) fn release_after_fork() {
    // SAFETY: no thread of this process holds it (see above).
    unsafe { unlock_abandoned(&RUNTIME) };
}

/// A handle to the shared runtime, built on first use (and again in a
/// forked child).
pub fn handle() -> Handle {
    watch_forks();
    let generation = FORK_GENERATION.load(Ordering::SeqCst);
    let mut slot = RUNTIME.lock();
    if let Some((built_in, runtime)) = &*slot
        && *built_in == generation
    {
        return runtime.handle().clone();
    }
    let runtime: &'static Runtime = Box::leak(Box::new(build()));
    *slot = Some((generation, runtime));
    runtime.handle().clone()
}

/// Runs `future` on the shared runtime and waits for its output on this
/// thread, for at most `limit` (`None`: until it ends); `None` if none came
/// (too late, or the task ended without one). Called on one of the shared
/// runtime's own workers (a flight landing, say), the worker's duties move
/// to another thread while this one waits, so that `future` can run.
pub(crate) fn wait_for<T: Send + 'static>(
    future: impl std::future::Future<Output = T> + Send + 'static,
    limit: Option<std::time::Duration>,
) -> Option<T> {
    let handle = handle();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(future.await);
    });
    let wait = || match limit {
        Some(limit) => rx.recv_timeout(limit).ok(),
        None => rx.recv().ok(),
    };
    match Handle::try_current() {
        Ok(current)
            if current.id() == handle.id()
                && current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
        {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

fn build() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(64)
        .thread_name("tierstack")
        .enable_all()
        .build()
        .expect("the OS lets a process start threads")
}
