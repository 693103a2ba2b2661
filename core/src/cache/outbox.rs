//! The engine's side of the write-behind outbox (see [`crate::outbox`]):
//! which outbox a worker drains, its figures, pending writes and dead
//! letters.

use super::Engine;
use crate::config::Strategy;
use crate::error::Result;
use crate::outbox::{DeadLetter, Outbox, OutboxStats, PendingWrite};

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
