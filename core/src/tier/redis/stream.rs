//! The backplane's stream as this tier writes it: the changes announced,
//! who announces them, the stream's keys, and the callers waiting for news
//! of a key.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;

use super::{OWN, RedisTier};
use crate::fork;

/// One change, as announced on the backplane's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A value stored (a set, an mset, a load).
    Set(String),
    /// A key deleted.
    Delete(String),
    /// Every entry with this tag removed.
    Tag(String),
    /// Everything removed.
    Clear,
}

impl Change {
    fn op(&self) -> (&'static str, &str) {
        match self {
            Change::Set(key) => ("s", key),
            Change::Delete(key) => ("d", key),
            Change::Tag(tag) => ("t", tag),
            Change::Clear => ("c", ""),
        }
    }

    /// The change of a stream entry's `o` and `k` fields.
    pub(crate) fn parse(op: &[u8], arg: Vec<u8>) -> Option<Self> {
        let arg = String::from_utf8(arg).ok();
        match op {
            b"s" => arg.map(Change::Set),
            b"d" => arg.map(Change::Delete),
            b"t" => arg.map(Change::Tag),
            b"c" => Some(Change::Clear),
            _ => None,
        }
    }
}

/// Who announces: this process (redrawn in a forked child) and its L2 file.
#[derive(Clone)]
pub(crate) struct Node {
    /// This process's id on the stream.
    pub(crate) id: Arc<str>,
    /// The L2 file's [`crate::tier::sqlite::SqliteTier::identity`], as
    /// text; empty without a file.
    pub(crate) file: Arc<str>,
}

impl RedisTier {
    /// This process (redrawn after a fork) and its file.
    pub(crate) fn node(&self) -> Node {
        let generation = fork::fork_generation();
        let _gate = fork::fork_gate();
        let mut node = self.node.lock();
        match &*node {
            Some((g, n)) if *g == generation => n.clone(),
            _ => {
                let n = Node {
                    id: Arc::from(format!("{:x}", crate::coherence::new_origin() as u64)),
                    file: self.file.lock().clone(),
                };
                *node = Some((generation, n.clone()));
                n
            }
        }
    }

    /// The stream's key.
    pub(crate) fn stream_key(&self) -> String {
        format!("{}{OWN}changes", self.prefix)
    }

    /// The key of the stream's epoch: a random number set by the first
    /// node; a new one means Redis lost the stream.
    pub(crate) fn epoch_key(&self) -> String {
        format!("{}{OWN}epoch", self.prefix)
    }
    /// A handle to wait on for news of `key` on the stream; call
    /// [`RedisTier::unwatch`] when done.
    pub(crate) fn watch(&self, key: &str) -> Arc<Notify> {
        self.with_watchers(|watchers| {
            watchers
                .entry(key.to_owned())
                .or_insert_with(|| Arc::new(Notify::new()))
                .clone()
        })
    }

    /// Ends a [`RedisTier::watch`].
    pub(crate) fn unwatch(&self, key: &str, notify: Arc<Notify>) {
        self.with_watchers(|watchers| {
            drop(notify);
            if watchers.get(key).is_some_and(|n| Arc::strong_count(n) == 1) {
                watchers.remove(key);
            }
        });
    }

    /// Wakes whoever waits for news of `key`.
    pub(crate) fn wake(&self, key: &str) {
        self.with_watchers(|watchers| {
            if let Some(notify) = watchers.get(key) {
                notify.notify_waiters();
            }
        });
    }

    /// Wakes everyone waiting for news of any key.
    pub(crate) fn wake_all(&self) {
        self.with_watchers(|watchers| watchers.values().for_each(|n| n.notify_waiters()));
    }

    /// Runs `f` on this fork generation's watchers (see
    /// [`fork::PerFork`]: a forked child starts with none, since a waiter
    /// polling one of the parent's `Notify`s locks that `Notify`'s mutex),
    /// inside the fork gate.
    fn with_watchers<R>(&self, f: impl FnOnce(&mut HashMap<String, Arc<Notify>>) -> R) -> R {
        let _gate = fork::fork_gate();
        f(&mut self.watchers.get().lock())
    }

    /// Adds `changes`' entries to `pipe`.
    pub(super) fn announce(&self, pipe: &mut ::redis::Pipeline, changes: &[Change]) {
        if !self.backplane || changes.is_empty() {
            return;
        }
        let node = self.node();
        let stream = self.stream_key();
        for change in changes {
            let (op, arg) = change.op();
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.max_len)
                .arg("*")
                .arg("n")
                .arg(&*node.id)
                .arg("f")
                .arg(&*node.file)
                .arg("o")
                .arg(op)
                .arg("k")
                .arg(arg)
                .ignore();
        }
    }
    /// Sends `pipe`, which announces `changes`: whether it went through.
    /// If not, the changes are remembered as missed.
    pub(super) fn send(&self, pipe: ::redis::Pipeline, changes: Vec<Change>) -> bool {
        let sent = self
            .call(self.timeout, move |mut c| async move {
                pipe.query_async::<()>(&mut c).await
            })
            .is_some();
        if !sent {
            self.remember_missed(changes);
        } else if self.backplane {
            self.counters.backplane.sent.add(changes.len() as u64);
        }
        sent
    }
}
