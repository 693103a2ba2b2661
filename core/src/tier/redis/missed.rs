//! Changes Redis missed: remembered while it fails, delivered (deleted and
//! announced) once it answers again.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::RedisTier;
use super::stream::Change;
use crate::fork;

/// The most keys remembered as missed by Redis; past this, a clear is
/// announced instead once Redis answers.
pub(super) const MISSED_MAX: usize = 10_000;

/// What Redis missed of this process's changes (see the module docs).
#[derive(Default)]
pub(super) struct Missed {
    keys: HashSet<String>,
    tags: HashSet<String>,
    all: bool,
}

impl Missed {
    fn is_empty(&self) -> bool {
        !self.all && self.keys.is_empty() && self.tags.is_empty()
    }
}

impl RedisTier {
    pub(super) fn remember_missed(&self, changes: Vec<Change>) {
        let _gate = fork::fork_gate();
        let mut missed = self.missed.lock();
        for change in changes {
            match change {
                Change::Set(key) | Change::Delete(key) => {
                    missed.keys.insert(key);
                }
                Change::Tag(tag) => {
                    missed.tags.insert(tag);
                }
                Change::Clear => missed.all = true,
            }
        }
        if missed.keys.len() + missed.tags.len() > MISSED_MAX {
            missed.all = true;
        }
        if missed.all {
            missed.keys.clear();
            missed.tags.clear();
        }
        self.has_missed.store(true, Ordering::Release);
    }
    /// Delivers what Redis missed, if anything, now that it answers: each
    /// missed key deleted and announced deleted, each missed tag
    /// announced, or, past [`MISSED_MAX`], this prefix's keys unlinked and
    /// a clear announced. What fails stays remembered. Run by the
    /// backplane's task.
    pub(crate) async fn deliver_missed(&self) {
        // Not while the breaker is open: Redis is not known to be back.
        if !self.has_missed.load(Ordering::Acquire) || !self.breaker.status().allows_request {
            return;
        }
        let missed = {
            let _gate = fork::fork_gate();
            let mut missed = self.missed.lock();
            self.has_missed.store(false, Ordering::Release);
            std::mem::take(&mut *missed)
        };
        if missed.is_empty() {
            return;
        }
        let mut changes: Vec<Change> = Vec::new();
        let delivered = if missed.all {
            changes.push(Change::Clear);
            let unlinked = self.unlink_all_async().await.is_some();
            unlinked && {
                let mut pipe = ::redis::pipe();
                self.announce(&mut pipe, &changes);
                self.pipeline_async(pipe).await
            }
        } else {
            let mut pipe = ::redis::pipe();
            let keys: Vec<String> = missed.keys.iter().map(|k| self.key(k)).collect();
            if !keys.is_empty() {
                pipe.cmd("DEL").arg(keys).ignore();
            }
            changes.extend(missed.keys.iter().cloned().map(Change::Delete));
            changes.extend(missed.tags.iter().cloned().map(Change::Tag));
            self.announce(&mut pipe, &changes);
            self.pipeline_async(pipe).await
        };
        if delivered {
            self.counters.backplane.deferred.add(changes.len() as u64);
            if self.backplane {
                self.counters.backplane.sent.add(changes.len() as u64);
            }
            tracing::info!(
                changes = changes.len(),
                "Redis answers again: the changes it missed were delivered"
            );
        } else {
            self.remember_missed(changes);
        }
    }

    async fn pipeline_async(&self, pipe: ::redis::Pipeline) -> bool {
        self.call_async(self.timeout, move |mut c| async move {
            pipe.query_async::<()>(&mut c).await
        })
        .await
        .is_some()
    }
}
