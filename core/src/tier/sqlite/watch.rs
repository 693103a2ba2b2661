//! This cache's watch on the file's change log: what other caches changed
//! in the file since the last check (see [`crate::coherence`]).

use std::sync::atomic::Ordering;

use super::SqliteTier;
use crate::coherence::{Changes, Watch};
use crate::error::{Error, Result};

impl SqliteTier {
    /// If `due()` (asked under this cache's watch lock, so that callers
    /// racing here check once), hands `apply` what other caches changed in
    /// the file since the last check (see [`crate::coherence`]), still under
    /// the lock. The first check, here, in a forked child or after the file
    /// was swapped (see [`super::recovery`]), answers [`Changes::All`]: nothing was
    /// vouched for before it. The check waits for the records other caches
    /// journaled before it (see [`super::journal`]).
    pub(crate) fn sync(&self, due: impl FnOnce() -> bool, apply: impl FnOnce(Result<Changes>)) {
        // What other caches acknowledged before now is in the file first.
        // Waited for before the fork gate and the watch lock are taken: the
        // journal waited for may be one that another thread of this process
        // is replaying, and that thread needs the gate to commit it, which
        // a fork queued meanwhile keeps shut until every holder leaves.
        if let Err(err) = self.wait_for_peers() {
            tracing::debug!(error = %err, "could not replay another process's journal");
        }
        let _gate = match self.enter() {
            Ok(gate) => gate,
            Err(err) => return apply(Err(err)),
        };
        let mut watch = self.watch.lock();
        if !due() {
            return;
        }
        if self.closed.load(Ordering::Acquire) {
            return apply(Err(Error::closed()));
        }
        let origin = self.origin.load(Ordering::Relaxed);
        let epoch = self.file_epoch();
        let changes = match watch.as_mut() {
            Some((on, watch)) if *on == epoch => watch.poll(origin),
            _ => self.connect().and_then(Watch::open).map(|opened| {
                let head = opened.seen();
                *watch = Some((epoch, opened));
                Changes::All { head }
            }),
        };
        apply(changes);
    }
}
