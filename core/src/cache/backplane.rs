//! The engine's side of the backplane (see [`crate::backplane`], Cargo
//! feature `redis`): starting the reader, applying other machines' changes
//! to L1 and the L2 file, and the reader's place recorded in the file.

use std::sync::Arc;

use super::Engine;
#[cfg(feature = "redis")]
use crate::error::Error;
#[cfg(feature = "redis")]
use crate::tier::memory::{L1, MemoryTier};
#[cfg(feature = "redis")]
use crate::tier::sqlite::Write;

/// Starts the backplane's reader for this process (see
/// [`crate::backplane`]), unless it runs.
#[cfg(feature = "redis")]
pub(super) fn start_backplane(engine: &Arc<Engine>) {
    crate::backplane::start(engine, Arc::downgrade(engine));
}

#[cfg(not(feature = "redis"))]
pub(super) fn start_backplane(_engine: &Arc<Engine>) {}

impl Engine {
    /// Applies other processes' changes read from the backplane: drops
    /// their keys, tagged entries or everything from L1, and from L2 those
    /// made through another file (see [`crate::backplane`]). Keys a tag
    /// removed from L2 are removed from Redis too (quietly: every machine
    /// hears of the tag).
    #[cfg(feature = "redis")]
    pub(crate) fn apply_remote(&self, remote: &crate::backplane::Remote) {
        let Some(redis) = &self.redis else {
            return;
        };
        let now = self.clock.now_ms();
        let mut tagged = Vec::new();
        let changing = match remote.clear || !remote.tags.is_empty() {
            true => redis.changing_all(),
            false => redis.changing(remote.keys.iter().map(String::as_str)),
        };
        {
            let memory = self.memory.as_ref().map(L1::get);
            let pending = memory.map(MemoryTier::begin_all);
            let mut seq = None;
            if let Some(sqlite) = &self.sqlite {
                let failed = |err: Error| {
                    tracing::warn!(error = %err, "dropping other machines' changes from L2 failed");
                };
                if remote.clear_file {
                    sqlite.clear().map_or_else(failed, |s| seq = Some(s));
                } else {
                    if !remote.file_keys.is_empty() {
                        let writes = remote
                            .file_keys
                            .iter()
                            .cloned()
                            .map(Write::Delete)
                            .collect();
                        match sqlite.write(writes) {
                            Ok(outcomes) => seq = outcomes.iter().map(|o| o.seq).max(),
                            Err(err) => failed(err),
                        }
                    }
                    for tag in &remote.file_tags {
                        match sqlite.delete_tagged(tag, now) {
                            Ok((removed, s)) => {
                                tagged.extend(removed);
                                seq = seq.max(Some(s));
                            }
                            Err(err) => failed(err),
                        }
                    }
                }
                self.follow_file_swap();
            }
            if let (Some(memory), Some(pending)) = (memory, &pending) {
                if remote.clear {
                    memory.invalidate_all(pending, seq);
                } else {
                    let (dropped, fresh) =
                        memory.invalidate(pending, &remote.keys, &remote.tags, seq, now);
                    self.counters
                        .coherence_drops
                        .add(dropped + fresh.len() as u64);
                }
            }
        }
        drop(changing);
        if !tagged.is_empty() {
            let keys: Vec<&str> = tagged.iter().map(String::as_str).collect();
            redis.delete(&keys, true);
        }
    }

    /// Where the processes on the L2 file read the backplane's stream to
    /// (see [`SqliteTier::backplane_cursor`]); `None` without a file, or if
    /// it cannot be read (logged).
    ///
    /// [`SqliteTier::backplane_cursor`]: crate::tier::sqlite::SqliteTier::backplane_cursor
    #[cfg(feature = "redis")]
    pub(crate) fn backplane_cursor(&self) -> Option<(i64, i64)> {
        let recorded = self.sqlite.as_ref()?.backplane_cursor();
        self.follow_file_swap();
        recorded
            .inspect_err(|err| tracing::warn!(error = %err, "reading the backplane's place in the L2 file failed"))
            .ok()
            .flatten()
    }

    /// Records where this process read the backplane's stream to, in the
    /// L2 file, if any; a failure is logged.
    #[cfg(feature = "redis")]
    pub(crate) fn record_backplane_cursor(&self, epoch: i64, last: i64) {
        if let Some(sqlite) = &self.sqlite {
            let recorded = sqlite.record_backplane_cursor(epoch, last);
            self.follow_file_swap();
            if let Err(err) = recorded {
                tracing::debug!(error = %err, "recording the backplane's place in the L2 file failed");
            }
        }
    }

    /// Empties L1 and the L2 file's entries: the backplane cannot tell
    /// what other machines changed (see [`crate::backplane`]).
    #[cfg(feature = "redis")]
    pub(crate) fn resync_remote(&self) {
        self.apply_remote(&crate::backplane::Remote {
            clear: true,
            clear_file: true,
            ..Default::default()
        });
        self.counters.backplane.resyncs.incr();
        tracing::warn!("the backplane missed changes (stream trimmed or lost): L1 and L2 emptied");
    }
}
