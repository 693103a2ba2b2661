//! Everything about `fork()`: the fork gate, the `pthread_atfork` handlers,
//! the fork generation, and the release of locks a parent's thread left
//! held in a child.
//!
//! A child created by `fork()` has only the forking thread: none of the
//! parent's runtime threads, background tasks or lock holders. Each part of
//! the cache therefore notes the [`fork_generation`] its state belongs to
//! and, on its first use in a child (a new generation), drops what the
//! parent left and starts over. The [`fork_gate`] keeps `fork()` out while
//! any thread is inside SQLite, so that no SQLite call is half done (with
//! SQLite's internal locks held) when a child is created.
//!
//! The per-part hooks stay with the state they reset:
//! - the shared runtime ([`crate::runtime`]): `runtime::release_after_fork`,
//!   called from this module's child handler, and `runtime::handle`, which
//!   builds a new runtime in a new generation;
//! - L1 (`core/src/tier/memory.rs`): `L1::after_fork` replaces the tier by
//!   a new, empty one;
//! - L2 (`core/src/tier/sqlite/`): `SqliteTier::reset_after_fork` releases
//!   its locks, draws a new change-log origin (see [`crate::coherence`]),
//!   reopens the writer and runs the restart given to `SqliteTier::on_fork`;
//! - the engine's background work (`core/src/cache/maintenance.rs`):
//!   `start_maintenance` hands `SqliteTier::on_fork` the restart of the
//!   maintenance loop, the outbox's worker and the backplane's reader;
//! - the load path (`core/src/load/state.rs`): `Loads::after_fork` drops the
//!   parent's flights and negative cache;
//! - the outbox (`core/src/outbox/identity.rs`): `Identity::nonce` draws
//!   a new nonce, so that the child's writes and lease do not pass for the
//!   parent's;
//! - Redis (`core/src/tier/redis.rs`): connections, the node id and the
//!   watchers of news on the stream are kept per generation; the backplane
//!   (`core/src/backplane.rs`) starts one reader per generation, and a
//!   reader of an older one stops.
//! - notifications a task waits on (the backplane reader's stop, the
//!   outbox worker's wake): [`PerFork`] values, one per generation.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use parking_lot::Mutex;

/// How many times this process's line of ancestors has forked; see
/// [`fork_generation`].
pub(crate) static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
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
    crate::runtime::release_after_fork();
}

/// Releases `mutex` if a thread that no longer exists (one of the parent's,
/// in a forked child) left it locked, and clears the parent's threads from
/// its queue of waiters.
///
/// `parking_lot` queues a mutex's sleeping waiters in one table for the
/// whole process, which a child inherits: a parent's thread parked on the
/// mutex at the fork stays in that queue, and an unlock in the child would
/// wake it, a thread that does not exist, instead of the child's own
/// waiter queued behind it, which would then sleep forever. The parent's
/// waiters are unparked here (their wake-up writes to memory nothing in the
/// child reads), whether or not the mutex was held at the fork: an unlock
/// under way at the fork can leave it free with its queue still full.
///
/// The table is visited only when the mutex says threads are parked on it,
/// as an unlock would: a slot of the table that a parent's thread was
/// changing at the fork stays locked in the child.
///
/// # Safety
///
/// No thread of this process may hold `mutex` or wait for it.
pub(crate) unsafe fn unlock_abandoned<T>(mutex: &Mutex<T>) {
    if has_parked(mutex) {
        // SAFETY: the raw mutex is only read for its address, the key
        // `parking_lot` parks its waiters under.
        let key = std::ptr::from_ref(unsafe { mutex.raw() }).addr();
        // SAFETY: the key is the mutex's own, and every thread parked
        // under it is a parent's (the caller's promise), so none of the
        // child's is taken from its queue.
        unsafe { parking_lot_core::unpark_all(key, parking_lot_core::DEFAULT_UNPARK_TOKEN) };
    }
    if mutex.is_locked() {
        // SAFETY: held, and by no thread of this process (the caller's
        // promise), so no guard will ever release it.
        unsafe { mutex.force_unlock(Default::default()) };
    }
    // A lock and unlock clears the mark that threads are parked, left set
    // when they were taken from the queue above while the mutex was free.
    drop(mutex.try_lock());
}

/// `parking_lot`'s mark that threads are parked on a raw mutex: the second
/// bit of its one byte of state (`PARKED_BIT` in its `raw_mutex.rs`).
const PARKED_BIT: u8 = 0b10;

/// Whether `mutex` is marked as having threads parked on it. `parking_lot`
/// does not say, so its state is read: the size is checked here and the bit
/// by a test (`the_parked_mark_is_read_from_the_mutex`).
fn has_parked<T>(mutex: &Mutex<T>) -> bool {
    const _: () = assert!(std::mem::size_of::<parking_lot::RawMutex>() == 1);
    // SAFETY: a raw mutex is one `AtomicU8` (its size is checked above),
    // only ever changed atomically; this reads it without changing it.
    let state = unsafe { &*std::ptr::from_ref(mutex.raw()).cast::<AtomicU8>() };
    state.load(Ordering::Acquire) & PARKED_BIT != 0
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
/// straight in, so they never wait on a fork queued between them. A holder
/// never waits for another process (its journal, say): a thread of this
/// one may be committing for that process, and a fork queued meanwhile
/// keeps that thread out of the gate until every holder leaves.
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

/// A value each fork generation has its own of, such as the
/// `tokio::sync::Notify` a background task waits on: a task polling a
/// `Notify` locks the `Notify`'s own mutex, so a forked child must never use
/// the parent's, which one of the parent's threads may have held at the fork.
pub(crate) struct PerFork<T> {
    slot: Mutex<(u64, Arc<T>)>,
}

impl<T: Default> PerFork<T> {
    pub(crate) fn new() -> Self {
        Self {
            slot: Mutex::new((fork_generation(), Arc::default())),
        }
    }

    /// This fork generation's value: a new one on the first call in a
    /// forked child.
    pub(crate) fn get(&self) -> Arc<T> {
        let _gate = fork_gate();
        let mut slot = self.slot.lock();
        let generation = fork_generation();
        if slot.0 != generation {
            // Left to the parent's tasks, which hold it and never run
            // here: dropped, it could be the last reference, and a value's
            // drop may take the very lock abandoned at the fork.
            std::mem::forget(std::mem::replace(&mut *slot, (generation, Arc::default())));
        }
        Arc::clone(&slot.1)
    }
}

/// Test support: runs a closure in a forked child, with a deadline.
#[cfg(test)]
pub(crate) mod testing {
    use std::time::{Duration, Instant};

    /// Forks; the child runs `f` and exits 0 if it returned true, 1 if not.
    /// `None` if the child had not exited after 10 s (it is killed then).
    pub(crate) fn in_child(f: impl FnOnce() -> bool) -> Option<i32> {
        super::watch_forks();
        // SAFETY: the child only runs `f` (the caller's test of code whose
        // fork handling is under test) and leaves through `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = i32::from(!f());
            // SAFETY: ends the child without running the parent's exit hooks.
            unsafe { libc::_exit(code) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut status = 0;
        // SAFETY: waits for the child forked above; `status` is writable.
        while unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == 0 {
            if Instant::now() > deadline {
                // SAFETY: kills and reaps the child forked above, stuck.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(libc::WIFEXITED(status), "the child died: status {status}");
        Some(libc::WEXITSTATUS(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a real child: the fork handlers run in this process would start
    /// a new generation, and reset the gate, under the other tests' feet.
    #[test]
    fn same_runtime_until_a_fork() {
        let a = crate::runtime::handle();
        let b = crate::runtime::handle();
        assert_eq!(a.id(), b.id());
        let child = testing::in_child(|| {
            let c = crate::runtime::handle();
            a.id() != c.id() && c.block_on(async { 7 }) == 7
        });
        assert_eq!(
            child,
            Some(0),
            "the child's runtime was the parent's, or did not run"
        );
        assert_eq!(crate::runtime::handle().id(), a.id());
    }

    #[test]
    fn a_forked_child_gets_a_value_of_its_own_and_keeps_it() {
        let value: PerFork<AtomicUsize> = PerFork::new();
        let parents = value.get();
        parents.store(7, Ordering::SeqCst);
        assert!(Arc::ptr_eq(&parents, &value.get()));
        let child = testing::in_child(|| {
            let mine = value.get();
            !Arc::ptr_eq(&mine, &parents)
                && mine.load(Ordering::SeqCst) == 0
                && Arc::ptr_eq(&mine, &value.get())
        });
        assert_eq!(child, Some(0), "the child used the parent's value");
        assert!(Arc::ptr_eq(&parents, &value.get()));
    }

    /// The mark [`has_parked`] reads is `parking_lot`'s: set while a thread
    /// sleeps on the mutex, clear once none does.
    #[test]
    fn the_parked_mark_is_read_from_the_mutex() {
        let mutex = Arc::new(Mutex::new(()));
        assert!(!has_parked(&mutex));
        let held = mutex.lock();
        assert!(!has_parked(&mutex));
        let waiter = {
            let mutex = Arc::clone(&mutex);
            std::thread::spawn(move || drop(mutex.lock()))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !has_parked(&mutex) {
            assert!(
                std::time::Instant::now() < deadline,
                "a parked waiter was not seen"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(held);
        waiter.join().unwrap();
        assert!(!has_parked(&mutex));
        assert!(!mutex.is_locked());
    }

    /// Three of the parent's threads were parked on a mutex a fourth held at
    /// the fork. In the child, released, the mutex must not keep them in
    /// its queue: a waiter of the child's own queued behind them would wait
    /// for a wake-up that goes to a thread that does not exist.
    #[test]
    fn a_released_mutex_wakes_the_childs_waiters_not_the_parents() {
        let mutex = Arc::new(Mutex::new(0u32));
        let held = mutex.lock();
        let parked: Vec<_> = (0..3)
            .map(|_| {
                let mutex = Arc::clone(&mutex);
                std::thread::spawn(move || *mutex.lock() += 1)
            })
            .collect();
        // A waiter spins for microseconds before it parks.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let child = testing::in_child(|| {
            // SAFETY: the holder and the waiters are the parent's threads.
            unsafe { unlock_abandoned(&mutex) };
            let first = mutex.lock();
            let waiter = {
                let mutex = Arc::clone(&mutex);
                std::thread::spawn(move || *mutex.lock() += 1)
            };
            // Time for the child's waiter to park behind the parent's.
            std::thread::sleep(std::time::Duration::from_millis(250));
            drop(first);
            waiter.join().is_ok() && *mutex.lock() == 1
        });
        drop(held);
        for thread in parked {
            thread.join().unwrap();
        }
        assert_eq!(*mutex.lock(), 3);
        assert_eq!(child, Some(0), "the child's waiter was never woken");
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
