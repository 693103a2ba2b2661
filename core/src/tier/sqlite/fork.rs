//! Fork safety: SQLite connections must not cross a `fork()`. Every call
//! enters through a gate that holds `fork()` off, and a forked child
//! replaces the connections (and everything the parent's threads may have
//! held) before its first call.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::Notify;

use super::SqliteTier;
use super::access::Access;
use crate::coherence;
use crate::error::Result;
use crate::fork::unlock_abandoned;

impl SqliteTier {
    /// Sets what to run once in a forked child after its connections were
    /// replaced, with the child's new [`SqliteTier::wakeup`] (the engine
    /// restarts its maintenance there).
    pub(crate) fn on_fork(&self, f: impl Fn(Arc<Notify>) + Send + Sync + 'static) {
        // Set once, at open; a second call has nothing to replace.
        let _ = self.after_fork.set(Box::new(f));
    }

    /// Enters SQLite: holds `fork()` off until the guard drops and, in a
    /// process forked since the connections were opened, first replaces
    /// them (SQLite connections must not cross a `fork()`).
    #[inline]
    pub(super) fn enter(&self) -> Result<crate::fork::ForkGate> {
        let gate = crate::fork::fork_gate();
        if self.forked() {
            self.reset_after_fork(crate::fork::fork_generation())?;
        }
        Ok(gate)
    }

    /// Whether this is a process forked since the connections were opened,
    /// which has not replaced them yet (see [`SqliteTier::enter`]).
    #[inline]
    pub(super) fn forked(&self) -> bool {
        self.generation.load(Ordering::Acquire) != crate::fork::fork_generation()
    }

    #[cold]
    fn reset_after_fork(&self, generation: u64) -> Result<()> {
        if self.resetting.swap(true, Ordering::AcqRel) {
            // Another thread of this child is resetting; wait for it.
            while self.generation.load(Ordering::Acquire) != generation {
                std::thread::yield_now();
            }
            return Ok(());
        }
        // SAFETY: only threads of this (child) process can hold these locks
        // from now on, and none has taken them yet: the connection locks are
        // reached through `enter`, which waits above while `resetting` is
        // set, and the read buffer only after it. A lock found held was
        // taken by a parent's thread that does not exist in this process
        // and will never release it.
        unsafe {
            unlock_abandoned(&self.current);
            unlock_abandoned(&self.writer);
            unlock_abandoned(&self.checkpointing);
            unlock_abandoned(&self.readers);
            unlock_abandoned(&self.queue);
            unlock_abandoned(&self.access);
            unlock_abandoned(&self.counting);
            unlock_abandoned(&self.watch);
            unlock_abandoned(self.wakeup.lock());
            self.journal.forget_after_fork();
        }
        // Closing the inherited connections first lets the new ones take
        // their own locks: SQLite shares lock state between connections of
        // one process, and the parent's locks were not inherited. A close
        // checkpoints only if no other process holds the file open.
        drop(self.writer.lock().take());
        // Forgets those lent to the parent's threads, which do not run here.
        *self.readers.lock() = Default::default();
        self.queue.lock().clear();
        *self.access.lock() = Access::default();
        *self.watch.lock() = None;
        self.wakeup.renew();
        self.origin
            .store(coherence::new_origin(), Ordering::Relaxed);
        let reopened = match self.closed.load(Ordering::Acquire) {
            true => Ok(()),
            false => self.open_writer().map(|conn| *self.writer.lock() = conn),
        };
        self.generation.store(generation, Ordering::Release);
        self.resetting.store(false, Ordering::Release);
        if reopened.is_ok()
            && let Some(restart) = self.after_fork.get()
        {
            restart(self.wakeup.notify());
        }
        reopened
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::config::OnCorrupt;
    use crate::tier::sqlite::{Row, SqliteTier, Tried, Write};

    /// A write that must not wait, in a child forked while a thread of the
    /// parent held the write queue's lock: the child takes the queue only
    /// past `enter`, which frees it, so the write is done, not stuck.
    #[test]
    fn a_child_forked_while_the_write_queue_was_held_writes_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fork.db");
        let tier = SqliteTier::open(&path, u64::MAX, OnCorrupt::Fail, Arc::default()).unwrap();
        let held = tier.queue.lock();
        let child = crate::fork::testing::in_child(|| {
            let tried = tier.try_write(vec![Write::Put(Row::fresh("k", "v"))]);
            matches!(tried, Ok(Tried::Done(_)))
        });
        drop(held);
        assert_eq!(child, Some(0), "the child's write hung or was not done");
    }
}
