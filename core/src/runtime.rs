//! The tokio runtime shared by every cache in the process, for background
//! work (L2 maintenance) and for the async API's off-thread writes.
//!
//! It is fork-aware: a child process created by `fork()` inherits none of
//! the parent's threads, so the first use after a fork builds a new runtime
//! (the parent's, whose threads do not exist in the child, is leaked rather
//! than dropped, as dropping it would wait for them).

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::runtime::{Builder, Handle, Runtime};

static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static RUNTIME: Mutex<Option<(u64, Handle)>> = Mutex::new(None);
static ATFORK: Once = Once::new();

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// A handle to the shared runtime, built on first use (and again in a
/// forked child).
pub fn handle() -> Handle {
    ATFORK.call_once(|| {
        // SAFETY: the handler only bumps an atomic, which is async-signal-safe.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
    let generation = FORK_GENERATION.load(Ordering::SeqCst);
    let mut slot = RUNTIME.lock();
    if let Some((built_in, handle)) = &*slot
        && *built_in == generation
    {
        return handle.clone();
    }
    let runtime: &'static Runtime = Box::leak(Box::new(build()));
    let handle = runtime.handle().clone();
    *slot = Some((generation, handle.clone()));
    handle
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_runtime_until_a_fork() {
        let a = handle();
        let b = handle();
        assert_eq!(a.id(), b.id());
        after_fork_in_child();
        let c = handle();
        assert_ne!(a.id(), c.id());
        assert_eq!(c.block_on(async { 7 }), 7);
    }
}
