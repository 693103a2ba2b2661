//! The engine's side of the write-behind outbox (see [`crate::outbox`]):
//! the worker that drains it, its figures, pending writes and dead letters.

use std::sync::Weak;
use std::sync::atomic::Ordering;

use super::Engine;
use crate::config::Strategy;
use crate::error::{ErrorKind, Result};
use crate::outbox::{DeadLetter, Outbox, OutboxStats, PendingWrite};
use crate::runtime;

impl Engine {
    /// The outbox a worker drains: write-behind's.
    pub(super) fn draining(&self) -> Option<&Outbox> {
        self.outbox
            .as_ref()
            .filter(|_| self.config.strategy == Strategy::WriteBehind)
    }

    /// The write-behind outbox's figures; `None` for other strategies.
    pub(crate) fn outbox_stats(&self) -> Option<OutboxStats> {
        let outbox = self.draining()?;
        Some(outbox.stats(self.sqlite.as_ref(), self.clock.now_ms()))
    }

    /// Writes that gave up: this cache's outbox's, or (for a cache that
    /// does not drain, such as the CLI's) those in the L2 file.
    pub(crate) fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.check_open()?;
        match (self.draining(), &self.sqlite) {
            (Some(outbox), sqlite) => outbox.dead_letters(sqlite.as_ref()),
            (None, Some(sqlite)) => Ok(sqlite
                .dead_letters()?
                .into_iter()
                .map(DeadLetter::from)
                .collect()),
            (None, None) => Ok(Vec::new()),
        }
    }

    /// Writes waiting for the source (in the L2 file, or this cache's
    /// in-memory outbox), oldest first.
    pub(crate) fn pending_writes(&self) -> Result<Vec<PendingWrite>> {
        self.check_open()?;
        match (self.draining(), &self.sqlite) {
            (Some(outbox), None) => Ok(outbox.pending_in_memory()),
            (_, Some(sqlite)) => Ok(sqlite
                .outbox_pending()?
                .into_iter()
                .map(PendingWrite::from)
                .collect()),
            (None, None) => Ok(Vec::new()),
        }
    }

    /// Queues the dead letters again; how many.
    pub(crate) fn retry_dead_letters(&self) -> Result<u64> {
        self.check_open()?;
        let now = self.clock.now_ms();
        match (self.draining(), &self.sqlite) {
            (Some(outbox), sqlite) => outbox.retry_dead_letters(sqlite.as_ref(), now),
            (None, Some(sqlite)) => sqlite.retry_dead_letters(now),
            (None, None) => Ok(0),
        }
    }

    /// Deletes the dead letters; how many.
    pub(crate) fn purge_dead_letters(&self) -> Result<u64> {
        self.check_open()?;
        match (self.draining(), &self.sqlite) {
            (Some(outbox), sqlite) => outbox.purge_dead_letters(sqlite.as_ref()),
            (None, Some(sqlite)) => sqlite.purge_dead_letters(),
            (None, None) => Ok(0),
        }
    }
}

/// Starts the write-behind outbox's worker (see [`crate::outbox`]).
pub(super) fn spawn_outbox(engine: Weak<Engine>) {
    runtime::handle().spawn(async move {
        loop {
            let Some(strong) = engine.upgrade() else {
                return;
            };
            let Some(outbox) = strong.outbox.as_ref() else {
                return;
            };
            if outbox.stopped.load(Ordering::Acquire) || strong.closed.load(Ordering::Acquire) {
                return;
            }
            let wake = outbox.wake.clone();
            let pause = match strong.outbox_pass().await {
                Ok(pause) => pause,
                Err(err) if err.kind() == ErrorKind::Closed => return,
                Err(err) => {
                    tracing::warn!(error = %err, "the outbox's pass failed; trying again");
                    std::time::Duration::from_secs(1)
                }
            };
            drop(strong);
            if !pause.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = wake.notified() => {}
                }
            }
        }
    });
}
