//! The tokio runtime shared by every cache in the process, for background
//! work (L2 maintenance) and for the async API's off-thread writes.
//!
//! It is fork-aware: a child process created by `fork()` inherits none of
//! the parent's threads, so the first use after a fork builds a new runtime
//! (the parent's, whose threads do not exist in the child, is leaked rather
//! than dropped, as dropping it would wait for them).

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use std::cell::Cell;
use std::sync::atomic::AtomicUsize;

use parking_lot::Mutex;
use tokio::runtime::{Builder, Handle, Runtime};

static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
/// The runtime of this process (built in `generation`); it lives as long as
/// the process, and is kept here so that it stays reachable.
static RUNTIME: Mutex<Option<(u64, &'static Runtime)>> = Mutex::new(None);
static ATFORK: Once = Once::new();
static GATE: Gate = Gate::new();

/// The fork gate: every thread inside SQLite is counted in `inside`, and
/// `fork()` waits until none is, so that no SQLite call is half done (with
/// SQLite's internal locks held) when a child is created.
struct Gate {
    inside: AtomicUsize,
    /// How many threads are in `fork()`: a count, since threads may fork at
    /// once and the first to finish must not reopen the gate for the others.
    forking: AtomicUsize,
}

impl Gate {
    const fn new() -> Self {
        Self {
            inside: AtomicUsize::new(0),
            forking: AtomicUsize::new(0),
        }
    }

    /// Counts the calling thread in, once no fork is under way.
    fn enter(&self) {
        loop {
            while self.forking.load(Ordering::SeqCst) != 0 {
                std::thread::yield_now();
            }
            self.inside.fetch_add(1, Ordering::SeqCst);
            if self.forking.load(Ordering::SeqCst) == 0 {
                return;
            }
            self.inside.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn leave(&self) {
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }

    fn before_fork(&self) {
        self.forking.fetch_add(1, Ordering::SeqCst);
        while self.inside.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }

    fn after_fork_in_parent(&self) {
        self.forking.fetch_sub(1, Ordering::SeqCst);
    }

    /// In the child, which has only the forking thread (`depth`: how deep
    /// that thread is in gate sections): the counts are that thread's
    /// alone. The parent's may be off by the threads that, when the child
    /// was created, had counted themselves in at the start of
    /// [`Gate::enter`] and were about to see the fork and count themselves
    /// out: that count would never come down in the child, and its own
    /// forks (a fork of a fork) would wait for it forever.
    fn after_fork_in_child(&self, depth: usize) {
        self.inside.store(usize::from(depth > 0), Ordering::SeqCst);
        self.forking.store(0, Ordering::SeqCst);
    }
}

thread_local! {
    /// How deep this thread is in nested gate sections.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

extern "C" fn before_fork() {
    GATE.before_fork();
}

extern "C" fn after_fork_in_parent() {
    GATE.after_fork_in_parent();
}

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
    GATE.after_fork_in_child(DEPTH.try_with(Cell::get).unwrap_or(0));
    // A thread of the parent may have held the runtime slot's lock when the
    // child was created; it does not exist here and would never release it,
    // and the child's first `handle()` (its first use of a cache file
    // restarts maintenance) would wait forever. The forking thread is not
    // in `handle()`, which never forks. A tuple half written by that
    // thread names an older generation than this child's, so `handle()`
    // builds a new runtime either way.
    // SAFETY: no thread of this process holds it (see above).
    unsafe { unlock_abandoned(&RUNTIME) };
}

/// Releases `mutex` if a thread that no longer exists (one of the parent's,
/// in a forked child) left it locked.
///
/// # Safety
///
/// No thread of this process may hold `mutex`.
pub(crate) unsafe fn unlock_abandoned<T>(mutex: &Mutex<T>) {
    if mutex.is_locked() {
        // SAFETY: held, and by no thread of this process (the caller's
        // promise), so no guard will ever release it.
        unsafe { mutex.force_unlock(Default::default()) };
    }
}

/// Registers the fork handlers; idempotent. Called when the first cache
/// opens.
pub(crate) fn watch_forks() {
    ATFORK.call_once(|| {
        // SAFETY: the handlers take and release one lock and bump an atomic.
        unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_in_parent),
                Some(after_fork_in_child),
            )
        };
    });
}

/// Keeps `fork()` out while held. Nested sections of one thread pass
/// straight in, so they never wait on a fork queued between them.
pub(crate) fn fork_gate() -> ForkGate {
    DEPTH.with(|depth| {
        if depth.get() == 0 {
            GATE.enter();
        }
        depth.set(depth.get() + 1);
    });
    ForkGate(std::marker::PhantomData)
}

/// A section inside the fork gate; see [`fork_gate`]. Not `Send`: it is
/// released by the thread that entered.
pub(crate) struct ForkGate(std::marker::PhantomData<*const ()>);

impl Drop for ForkGate {
    fn drop(&mut self) {
        DEPTH.with(|depth| {
            depth.set(depth.get() - 1);
            if depth.get() == 0 {
                GATE.leave();
            }
        });
    }
}

/// How many times this process's line of ancestors has forked since the
/// first cache opened: it changes in a child after `fork()`.
pub(crate) fn fork_generation() -> u64 {
    FORK_GENERATION.load(Ordering::Acquire)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_runtime_until_a_fork() {
        let a = handle();
        let b = handle();
        assert_eq!(a.id(), b.id());
        before_fork();
        after_fork_in_child();
        let c = handle();
        assert_ne!(a.id(), c.id());
        assert_eq!(c.block_on(async { 7 }), 7);
    }

    #[test]
    fn a_child_does_not_inherit_a_count_its_parents_threads_left_up() {
        let gate = Gate::new();
        gate.enter();
        gate.leave();
        gate.before_fork();
        // A thread of the parent counted itself in after `before_fork`
        // looked, and was about to see the fork and count itself out, when
        // the child was created.
        gate.inside.fetch_add(1, Ordering::SeqCst);
        gate.after_fork_in_child(0);
        assert_eq!(gate.inside.load(Ordering::SeqCst), 0);
        assert_eq!(gate.forking.load(Ordering::SeqCst), 0);
        // The child's own threads and forks get through.
        gate.enter();
        gate.leave();
        gate.before_fork();
        gate.after_fork_in_parent();
        // A child forked from inside a gate section counts its thread in.
        gate.after_fork_in_child(2);
        assert_eq!(gate.inside.load(Ordering::SeqCst), 1);
    }
}
