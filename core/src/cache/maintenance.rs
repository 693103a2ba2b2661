//! Background L2 maintenance: the loop that writes buffered accesses,
//! enforces the budget and purges dead rows, its restart in a forked
//! child, and `run_pending_tasks` and `flush`, which run it at once.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Engine;
use super::backplane::start_backplane;
use crate::error::{ErrorKind, Result};
use crate::outbox::spawn_outbox;
use crate::runtime;
use crate::tier::sqlite::JOURNAL_LINGER;

/// How often L2 maintenance runs when nothing asks for it sooner: buffered
/// accesses are written, the budget enforced, dead rows purged.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

impl Engine {
    pub(crate) fn run_pending_tasks(&self) -> Result<()> {
        self.check_open()?;
        self.hand_over_reads();
        if let Some(sqlite) = &self.sqlite {
            let maintained = sqlite.maintain(self.clock.now_ms(), true);
            // Its drain of the journal may have found the file swapped.
            self.follow_file_swap();
            maintained?;
        }
        Ok(())
    }

    /// One pass of the background task: when asked for one, a drain of the
    /// journal (with write-behind, its outbox's worker is woken to drain
    /// it instead); on its tick, or when asked for one, a full
    /// [`Engine::run_pending_tasks`]; when asked only for a checkpoint (the
    /// WAL grew past its threshold; see
    /// [`crate::tier::sqlite::CHECKPOINT_PAGES`]), only that.
    fn background_pass(&self, ticked: bool) -> Result<()> {
        let Some(sqlite) = &self.sqlite else {
            return Ok(());
        };
        let asked = sqlite.wakeup().take();
        if asked.drain {
            match self.draining() {
                // Write-behind's journal is drained by the outbox's worker.
                Some(outbox) => outbox.wake.get().notify_one(),
                None => {
                    // Writes of the next moment join these in the drain's
                    // commit.
                    std::thread::sleep(JOURNAL_LINGER);
                    let drained = sqlite.drain_journal();
                    // The drain may have found the file swapped.
                    self.follow_file_swap();
                    drained?;
                    sqlite.warm_journal();
                }
            }
        }
        if ticked || asked.maintain {
            self.run_pending_tasks()?;
        }
        if asked.checkpoint {
            self.check_open()?;
            sqlite.checkpoint()?;
        }
        Ok(())
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.check_open()?;
        if let Some(outbox) = self.draining() {
            outbox.flush(self.sqlite.as_ref())?;
        }
        self.hand_over_reads();
        if let Some(sqlite) = &self.sqlite {
            sqlite.maintain(self.clock.now_ms(), true)?;
            sqlite.checkpoint()?;
        }
        Ok(())
    }

    /// Hands the L1 hits counted per key to L2, which adds them to the
    /// rows' read counts with its next pass: the same way as its own reads,
    /// so that an L1 hit costs an atomic add and no lock.
    pub(super) fn hand_over_reads(&self) {
        if let (Some(sqlite), Some(memory)) = (&self.sqlite, &self.memory) {
            let _counting = sqlite.counting();
            let (taken, now) = (memory.get().take_reads(), self.clock.now_ms());
            sqlite.record_reads(&taken.rows, now);
            sqlite.record_key_reads(&taken.keys, now);
        }
    }
}

fn spawn_maintenance(engine: Weak<Engine>, wake: Arc<tokio::sync::Notify>) {
    runtime::handle().spawn(async move {
        loop {
            let ticked = tokio::select! {
                () = tokio::time::sleep(MAINTENANCE_INTERVAL) => true,
                () = wake.notified() => false,
            };
            let Some(engine) = engine.upgrade() else {
                return;
            };
            if engine.closed.load(Ordering::Acquire) {
                return;
            }
            let pass = tokio::task::spawn_blocking(move || engine.background_pass(ticked)).await;
            match pass {
                Ok(Ok(())) => {}
                Ok(Err(err)) if err.kind() == ErrorKind::Closed => return,
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "cache maintenance failed; retrying next tick")
                }
                Err(err) => tracing::warn!(error = %err, "cache maintenance task failed"),
            }
        }
    });
}

/// Starts the maintenance loop of the engine's L2 file, if it has one, and
/// hands the file what restarts the engine's background work in a forked
/// child (see [`crate::fork`]); `drains`: whether the outbox's worker runs.
pub(super) fn start_maintenance(engine: &Arc<Engine>, drains: bool) {
    if let Some(sqlite) = &engine.sqlite {
        let weak = Arc::downgrade(engine);
        spawn_maintenance(weak.clone(), sqlite.wakeup().notify());
        // A forked child has none of the parent's threads: its first use
        // of the file restarts maintenance (and the outbox's worker, and
        // the backplane's reader) there.
        sqlite.on_fork(move |wake| {
            spawn_maintenance(weak.clone(), wake);
            if drains {
                spawn_outbox(weak.clone());
            }
            if let Some(engine) = weak.upgrade() {
                start_backplane(&engine);
            }
        });
    }
}
