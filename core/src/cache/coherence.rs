//! The engine's L1 kept coherent with the L2 file: other processes'
//! changes read from the file's change log (see [`crate::coherence`]) are
//! dropped from L1, and a swapped file empties it.

use std::sync::atomic::Ordering;

use super::Engine;
use crate::coherence::Changes;
use crate::error::ErrorKind;
use crate::tier::memory::MemoryTier;

impl Engine {
    /// This process's L1, first brought up to date with other processes'
    /// changes to the L2 file when a check is due (see [`crate::coherence`]).
    #[inline]
    pub(crate) fn l1(&self, now: u64) -> Option<&MemoryTier> {
        let memory = self.memory.as_ref()?.get();
        if memory.check_due(now) {
            self.sync(memory, now);
        }
        Some(memory)
    }

    /// Drops from L1 what other processes changed in the L2 file since the
    /// last check, and records the time of this one.
    #[cold]
    #[inline(never)]
    pub(super) fn sync(&self, memory: &MemoryTier, now: u64) {
        let Some(sqlite) = &self.sqlite else {
            return;
        };
        let due = || memory.check_due(now);
        sqlite.sync(due, |changes| {
            // Up to `head`, this cache's own writes not yet in L1 are
            // dropped rather than applied: one may be older than a change
            // reported here (see `Changes`).
            match changes {
                Ok(Changes::None) => {}
                Ok(Changes::Some { keys, tags, head }) => {
                    let pending = memory.begin_all();
                    let (dropped, tagged) =
                        memory.invalidate(&pending, &keys, &tags, Some(head), now);
                    self.counters
                        .coherence_drops
                        .add(dropped + tagged.len() as u64);
                }
                Ok(Changes::All { head }) => self.reset_l1(memory, Some(head)),
                Err(err) => {
                    // Unable to tell what changed: serve nothing unchecked.
                    // Nothing was marked seen, so the next poll reports
                    // again whatever this one could not.
                    if err.kind() != ErrorKind::Closed {
                        tracing::warn!(error = %err, "reading the change log failed; L1 cleared");
                    }
                    self.reset_l1(memory, None);
                }
            }
            memory.checked_at.store(now, Ordering::Relaxed);
        });
    }

    /// Empties L1, counted as a resync if it held anything; `head`: as in
    /// [`MemoryTier::invalidate_all`].
    fn reset_l1(&self, memory: &MemoryTier, head: Option<u64>) {
        if memory.entries() > 0 {
            self.counters.coherence_resets.incr();
        }
        let pending = memory.begin_all();
        memory.invalidate_all(&pending, head);
    }

    /// Empties L1 if the L2 file was swapped since the last check (a
    /// replaced or deleted file reopened, a damaged one rebuilt): what L1
    /// holds came from the old file. Checked after L2 calls on the miss and
    /// write paths, whether they succeeded or not; an L1 hit does not check.
    pub(crate) fn follow_file_swap(&self) {
        if let (Some(sqlite), Some(memory)) = (&self.sqlite, &self.memory) {
            let epoch = sqlite.file_epoch();
            if self.l1_epoch.swap(epoch, Ordering::AcqRel) != epoch {
                self.reset_l1(memory.get(), None);
            }
        }
    }
}
