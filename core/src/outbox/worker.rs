//! The write-behind outbox's worker: a task on the shared runtime that
//! delivers what is due, pass after pass, to the source.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{LEASE_MARGIN, POLL};
use crate::cache::Engine;
use crate::error::{ErrorKind, Result};
use crate::runtime;
use crate::source::run_blocking;
use crate::tier::sqlite::{Attempt, JOURNAL_LINGER, Pending};

/// Starts the write-behind outbox's worker (see [`crate::outbox`]).
pub(crate) fn spawn_outbox(engine: Weak<Engine>) {
    runtime::handle().spawn(async move {
        let mut lingered = false;
        loop {
            let Some(strong) = engine.upgrade() else {
                return;
            };
            let Some(outbox) = strong.outbox.as_ref() else {
                return;
            };
            if outbox.stopped.load(Ordering::Acquire) || strong.is_closed() {
                return;
            }
            // Writes journaled: those of the next moment join them in the
            // drain's one commit (and the writer wakes the worker once).
            if !lingered && strong.sqlite.as_ref().is_some_and(|s| s.journal_pending()) {
                drop(strong);
                tokio::time::sleep(JOURNAL_LINGER).await;
                lingered = true;
                continue;
            }
            lingered = false;
            let wake = outbox.wake.get();
            let passed = strong.outbox_pass().await;
            // Its drain of the journal may have found the file swapped.
            strong.follow_file_swap();
            let pause = match passed {
                // Records journaled while the pass drained wait for no wake.
                Ok(_) if strong.sqlite.as_ref().is_some_and(|s| s.journal_pending()) => {
                    Duration::ZERO
                }
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

impl Engine {
    /// One pass of the outbox's worker: takes the lease (with a file),
    /// delivers what is due, records what became of it. Returns how long
    /// to wait before the next pass (unless woken).
    pub(crate) async fn outbox_pass(self: &Arc<Self>) -> Result<Duration> {
        let Some(outbox) = self.outbox.as_ref() else {
            return Ok(POLL);
        };
        let now_ms = self.clock.now_ms();
        let limit = outbox.config.batch as usize;
        // What is due, and with nothing due, when the next write will be.
        let (due, next_ms) = match &outbox.memory {
            Some(memory) => {
                let memory = memory.lock();
                let due = memory.due(now_ms, limit);
                let next_ms = due.is_empty().then(|| memory.depth().next_due_ms);
                (due, next_ms.flatten())
            }
            None if self.sqlite.is_some() => {
                let lease_ms = (outbox.hard_timeout + LEASE_MARGIN).as_millis() as u64;
                let (engine, holder) = (self.clone(), outbox.holder());
                let due = run_blocking(move || {
                    let (sqlite, outbox) = (engine.sqlite.as_ref(), engine.outbox.as_ref());
                    let (sqlite, outbox) = (sqlite.expect("checked above"), outbox.expect("held"));
                    // This process's journal first, and now and then those
                    // of processes that ended: their writes join the outbox.
                    sqlite.settle()?;
                    sqlite.warm_journal();
                    if outbox.orphans_due()
                        && let Err(err) = sqlite.replay_orphans()
                    {
                        tracing::warn!(error = %err, "could not replay a journal");
                    }
                    let lease = outbox.lease_lock.lock();
                    if outbox.stopped.load(Ordering::Acquire)
                        || !sqlite.outbox_lease(holder, now_ms, lease_ms)?
                    {
                        return Ok(None);
                    }
                    drop(lease);
                    // Here, not on the runtime's thread: reading the file
                    // may wait for other caches' journals, whose drains
                    // need that thread.
                    let due = sqlite.outbox_due(now_ms, limit)?;
                    let next_ms = match due.is_empty() {
                        true => sqlite.outbox_depth()?.next_due_ms,
                        false => None,
                    };
                    Ok(Some((due, next_ms)))
                })
                .await?;
                match due {
                    Some(due) => due,
                    None => return Ok(POLL),
                }
            }
            None => return Ok(POLL),
        };
        if due.is_empty() {
            let until_due =
                next_ms.map_or(POLL, |t| Duration::from_millis(t.saturating_sub(now_ms)));
            return Ok(until_due.min(POLL));
        }
        let full = due.len() == limit;
        let mut calls = tokio::task::JoinSet::new();
        for (i, write) in due.iter().enumerate() {
            let call = outbox.call(&write.key, write.value.clone(), &write.idempotency_key);
            calls.spawn(async move { (i, call.await) });
        }
        let mut answers: Vec<Option<Result<()>>> = (0..due.len()).map(|_| None).collect();
        while let Some(joined) = calls.join_next().await {
            match joined {
                Ok((i, answer)) => answers[i] = Some(answer),
                Err(err) => tracing::warn!(error = %err, "an outbox delivery task failed"),
            }
        }
        let settled: Vec<(Pending, Attempt)> = due
            .into_iter()
            .zip(answers)
            .map(|(write, answer)| {
                let attempt = outbox.settle_one(&write, answer, now_ms);
                (write, attempt)
            })
            .collect();
        match &outbox.memory {
            Some(memory) => memory.lock().settle(&settled, now_ms),
            None => {
                let engine = self.clone();
                run_blocking(move || {
                    let sqlite = engine.sqlite.as_ref().expect("checked above");
                    sqlite.outbox_settle(&settled, now_ms)
                })
                .await?;
            }
        }
        Ok(if full {
            Duration::ZERO
        } else {
            Duration::from_millis(20)
        })
    }
}
