//! The outbox of a cache without an L2 file: pending writes and dead
//! letters held in this process's memory, coalesced per key.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use crate::tier::sqlite::{Attempt, Depth, OutboxOp, Pending};

/// The outbox of a cache without an L2 file.
#[derive(Default)]
pub(super) struct MemoryQueue {
    /// Pending writes by version.
    pub(super) pending: BTreeMap<u64, (Pending, u64)>,
    /// Key -> its pending write's version.
    by_key: HashMap<String, u64>,
    /// Dead letters by key.
    pub(super) dead: BTreeMap<String, Pending>,
    next_version: u64,
}

impl MemoryQueue {
    pub(super) fn enqueue(
        &mut self,
        key: &str,
        value: Option<Bytes>,
        idempotency_key: String,
        now_ms: u64,
    ) {
        self.next_version += 1;
        let version = self.next_version;
        if let Some(old) = self.by_key.insert(key.to_owned(), version) {
            self.pending.remove(&old);
        }
        // This write supersedes the key's dead letter.
        self.dead.remove(key);
        let op = if value.is_some() {
            OutboxOp::Store
        } else {
            OutboxOp::Remove
        };
        let write = Pending {
            key: key.to_owned(),
            version,
            op,
            value,
            idempotency_key,
            attempts: 0,
            created_ms: now_ms,
            last_error: None,
            failed_ms: 0,
        };
        self.pending.insert(version, (write, now_ms));
    }

    pub(super) fn due(&self, now_ms: u64, limit: usize) -> Vec<Pending> {
        self.pending
            .values()
            .filter(|(_, next)| *next <= now_ms)
            .take(limit)
            .map(|(w, _)| w.clone())
            .collect()
    }

    pub(super) fn settle(&mut self, settled: &[(Pending, Attempt)], now_ms: u64) {
        for (write, attempt) in settled {
            let Some((held, next)) = self.pending.get_mut(&write.version) else {
                continue;
            };
            match attempt {
                Attempt::Delivered => {
                    self.pending.remove(&write.version);
                    self.by_key.remove(&write.key);
                }
                Attempt::Retry { next_ms, error } => {
                    held.attempts += 1;
                    held.last_error = Some(error.clone());
                    *next = *next_ms;
                }
                Attempt::Dead { error } => {
                    let (mut dead, _) = self.pending.remove(&write.version).expect("held");
                    self.by_key.remove(&write.key);
                    dead.attempts += 1;
                    dead.last_error = Some(error.clone());
                    dead.failed_ms = now_ms;
                    self.dead.insert(dead.key.clone(), dead);
                }
            }
        }
    }

    pub(super) fn depth(&self) -> Depth {
        Depth {
            pending: self.pending.len() as u64,
            oldest_ms: self.pending.values().map(|(w, _)| w.created_ms).min(),
            retrying: self
                .pending
                .values()
                .filter(|(w, _)| w.attempts > 0)
                .count() as u64,
            dead: self.dead.len() as u64,
            next_due_ms: self.pending.values().map(|(_, next)| *next).min(),
        }
    }

    pub(super) fn retry_dead(&mut self, now_ms: u64) -> u64 {
        let dead = std::mem::take(&mut self.dead);
        let mut queued = 0;
        for (key, write) in dead {
            if self.by_key.contains_key(&key) {
                continue;
            }
            self.next_version += 1;
            let version = self.next_version;
            self.by_key.insert(key, version);
            let write = Pending {
                version,
                attempts: 0,
                failed_ms: 0,
                ..write
            };
            self.pending.insert(version, (write, now_ms));
            queued += 1;
        }
        queued
    }
}
