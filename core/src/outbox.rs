//! Writes to the source: the write strategies' side of a source that can
//! store and remove (see [`crate::Source::store`]).
//!
//! - **write-through**: [`Outbox::write_through`] calls the source before
//!   the tiers are written; its error is the caller's, and the tiers are
//!   left as they were.
//! - **write-behind**: `set` returns once the write is in L1 and in this
//!   process's journal, a memory-mapped file (see
//!   `tier::sqlite::journal`): a write acknowledged survives a crash of
//!   the process. The worker, woken by the write, drains the journal: it
//!   commits the writes to L2 and to the outbox in one transaction, with
//!   `synchronous = FULL`, after which they survive a power loss too.
//!   (Every read or write this process makes of the file drains first, so
//!   it reads its own writes, and every other process's waits for the
//!   drain, so it reads them too; a process that ends without draining
//!   leaves its journal to the next one to open the file, to a process
//!   waiting for it, or to another process's worker.) The worker then
//!   delivers the outbox to the source.
//!
//! # The worker
//!
//! - Pending writes of one key coalesce: the outbox holds one row per key,
//!   replaced by a later write (last write wins), whose version (the
//!   write's change number) orders deliveries. A delivery removes the row
//!   only if no newer write replaced it meanwhile, so a key's writes reach
//!   the source in order, and the last one always does.
//! - Each write carries an idempotency key, the same on every attempt, for
//!   a source that can tell a repeated delivery (a process killed after
//!   the source took a write and before the row was removed delivers it
//!   again after its restart).
//! - A failed attempt is retried after `retry_base × 2^(attempts - 1)`, at
//!   most `retry_max`, less a random share up to a half (so that writers
//!   that failed together do not retry together); after `max_attempts`
//!   the write moves to the dead letters, which can be listed, retried and
//!   purged. Source writes are not guarded by the circuit breaker (it
//!   guards loads): backoff is the outbox's own.
//! - Of the processes sharing the file, one drains at a time: the holder
//!   of the file's outbox lease, which lasts `fail_safe.hard_timeout` plus
//!   a margin and is renewed by every pass. A holder that died (its
//!   process is gone) is replaced at once; one that hangs, at the lease's
//!   end. At open, the outbox left by a process that stopped or crashed is
//!   delivered.
//! - `flush()` returns once the outbox is empty, or fails with
//!   [`ErrorKind::Timeout`] at `outbox.flush_timeout`; `close()` delivers
//!   for up to `outbox.close_timeout`, and what is left stays in the file
//!   for the next process.
//!
//! Without an L2 file the outbox is held in memory: it survives nothing,
//! which [`OutboxStats::durable`] says.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;

pub use crate::config::OutboxConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::source::Source;
use crate::tier::sqlite::{Attempt, Behind, Depth, Pending, SqliteTier, WriteId};

use self::identity::Identity;
pub(crate) use self::identity::random_u64;
use self::memory_queue::MemoryQueue;
pub(crate) use self::worker::spawn_outbox;

mod identity;
mod memory_queue;
mod worker;

/// Added to `fail_safe.hard_timeout` for the drainer's lease: a delivery
/// under way is abandoned before the lease can end.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// How often, at most, an idle worker looks at the file for writes other
/// processes queued, or a waiting one for the lease.
const POLL: Duration = Duration::from_millis(200);

/// How often, at most, a worker looks for the write-behind journals of
/// processes that ended (see `tier::sqlite::journal`).
const ORPHANS_EVERY: Duration = Duration::from_secs(1);

/// How often `flush` and `close` look at the outbox while they wait.
const FLUSH_POLL: Duration = Duration::from_millis(5);

/// The outbox in [`crate::Stats::outbox`] (and `outbox_stats()` in hosts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStats {
    /// Whether the outbox survives a crash (it is in the L2 file); `false`
    /// without one.
    pub durable: bool,
    /// Writes waiting for the source (those of every process on the file).
    pub pending: u64,
    /// Age of the oldest pending write, in milliseconds.
    pub oldest_age_ms: Option<u64>,
    /// Pending writes that failed at least once.
    pub retrying: u64,
    /// Failed attempts made by this process.
    pub retries: u64,
    /// Writes delivered by this process.
    pub delivered: u64,
    /// Writes in the dead letters.
    pub dead: u64,
}

/// A write that gave up, as [`crate::Cache::dead_letters`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// The key.
    pub key: String,
    /// `"store"` or `"remove"`.
    pub op: &'static str,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: String,
    /// When it gave up, in ms since the Unix epoch.
    pub failed_ms: u64,
    /// When the write was made, in ms since the Unix epoch.
    pub created_ms: u64,
}

/// A write waiting for the source, as [`crate::Cache::pending_writes`]
/// lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingWrite {
    /// The key.
    pub key: String,
    /// `"store"` or `"remove"`.
    pub op: &'static str,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last attempt's error, if any.
    pub last_error: Option<String>,
    /// When the write was made, in ms since the Unix epoch.
    pub created_ms: u64,
}

impl From<Pending> for PendingWrite {
    fn from(p: Pending) -> Self {
        PendingWrite {
            key: p.key,
            op: p.op.as_str(),
            attempts: p.attempts,
            last_error: p.last_error,
            created_ms: p.created_ms,
        }
    }
}

impl From<Pending> for DeadLetter {
    fn from(p: Pending) -> Self {
        DeadLetter {
            key: p.key,
            op: p.op.as_str(),
            attempts: p.attempts,
            last_error: p.last_error.unwrap_or_default(),
            failed_ms: p.failed_ms,
            created_ms: p.created_ms,
        }
    }
}

/// A source's writes, and the outbox of a write-behind cache.
pub(crate) struct Outbox {
    config: OutboxConfig,
    source: Arc<dyn Source>,
    /// The queue when there is no L2 file.
    memory: Option<Mutex<MemoryQueue>>,
    /// Wakes the worker: a write was queued, or `flush` waits.
    pub(crate) wake: crate::fork::PerFork<Notify>,
    /// Names this process's writes and its lease: see [`Identity`].
    identity: Identity,
    next_write: AtomicU64,
    delivered: AtomicU64,
    retries: AtomicU64,
    /// Set by `close`: the worker stops after its pass.
    pub(crate) stopped: AtomicBool,
    /// Held while the worker takes the file's lease and while `close` gives
    /// it up, so that a pass under way when the cache closes cannot take
    /// the lease again after `close` released it (the process lives on, so
    /// nobody else could drain until the lease ran out).
    lease_lock: Mutex<()>,
    hard_timeout: Duration,
    /// When the worker last looked for journals left by processes that
    /// ended, in ms since `started`.
    orphans_checked_ms: AtomicU64,
    started: std::time::Instant,
}

impl Outbox {
    /// The outbox for `source` (`file`: whether the L2 file holds it).
    pub(crate) fn new(
        config: OutboxConfig,
        source: Arc<dyn Source>,
        file: bool,
        hard_timeout: Duration,
    ) -> Self {
        Self {
            config,
            source,
            memory: (!file).then(|| Mutex::new(MemoryQueue::default())),
            wake: crate::fork::PerFork::new(),
            identity: Identity::new(),
            next_write: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            lease_lock: Mutex::new(()),
            hard_timeout,
            orphans_checked_ms: AtomicU64::new(0),
            started: std::time::Instant::now(),
        }
    }

    /// Whether the worker should look for journals left by processes that
    /// ended: at most every [`ORPHANS_EVERY`].
    pub(crate) fn orphans_due(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.orphans_checked_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= ORPHANS_EVERY.as_millis() as u64
            && self
                .orphans_checked_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// The name this process takes the file's lease under.
    fn holder(&self) -> i64 {
        (self.identity.nonce() >> 1) as i64
    }

    /// A new idempotency key: unique to this write, in every process and
    /// every run.
    pub(crate) fn idempotency_key(&self) -> String {
        self.write_id().to_string()
    }

    /// [`Outbox::idempotency_key`], not yet written out.
    fn write_id(&self) -> WriteId {
        WriteId {
            nonce: self.identity.nonce(),
            n: self.next_write.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Queues a write in the in-memory outbox (no L2 file).
    pub(crate) fn enqueue_in_memory(&self, key: &str, value: Option<Bytes>, now_ms: u64) {
        if let Some(memory) = &self.memory {
            memory
                .lock()
                .enqueue(key, value, self.idempotency_key(), now_ms);
        }
    }

    /// The outbox row's part of a write-behind write made at `now_ms`.
    pub(crate) fn behind(&self, now_ms: u64) -> Behind {
        Behind {
            idempotency: self.write_id(),
            now_ms,
        }
    }

    /// The in-memory outbox's writes, oldest first.
    pub(crate) fn pending_in_memory(&self) -> Vec<PendingWrite> {
        self.memory.as_ref().map_or_else(Vec::new, |memory| {
            let memory = memory.lock();
            memory
                .pending
                .values()
                .map(|(w, _)| PendingWrite::from(w.clone()))
                .collect()
        })
    }

    /// Whether the outbox is in memory (no L2 file).
    pub(crate) fn in_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// write-through: stores `value` (or removes the key, for `None`) at
    /// the source, waiting for its answer (at most `fail_safe.hard_timeout`).
    pub(crate) fn write_through(&self, key: &str, value: Option<Bytes>) -> Result<()> {
        let call = self.call(key, value, &self.idempotency_key());
        crate::runtime::wait_for(call, None).unwrap_or_else(|| {
            Err(Error::new(
                ErrorKind::Internal,
                "a source write's task ended without an answer",
            ))
        })
    }

    /// One call of the source, bounded by the hard timeout.
    fn call(
        &self,
        key: &str,
        value: Option<Bytes>,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let future = match value {
            Some(value) => self.source.store(key, value, idempotency_key),
            None => self.source.remove(key, idempotency_key),
        };
        let (timeout, key) = (self.hard_timeout, key.to_owned());
        async move {
            match tokio::time::timeout(timeout, future).await {
                Ok(done) => done,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "the source did not answer the write of {} within {timeout:?} \
                         (fail_safe.hard_timeout)",
                        crate::key::quote(&key)
                    ),
                )),
            }
        }
    }

    /// How deep the outbox is.
    fn depth(&self, sqlite: Option<&SqliteTier>) -> Result<Depth> {
        match (&self.memory, sqlite) {
            (Some(memory), _) => Ok(memory.lock().depth()),
            (None, Some(sqlite)) => sqlite.outbox_depth(),
            (None, None) => Ok(Depth::default()),
        }
    }

    /// The outbox's figures at `now_ms`.
    pub(crate) fn stats(&self, sqlite: Option<&SqliteTier>, now_ms: u64) -> OutboxStats {
        let depth = self.depth(sqlite).unwrap_or_else(|err| {
            tracing::warn!(error = %err, "could not read the outbox's depth");
            Depth::default()
        });
        OutboxStats {
            durable: !self.in_memory(),
            pending: depth.pending,
            oldest_age_ms: depth.oldest_ms.map(|t| now_ms.saturating_sub(t)),
            retrying: depth.retrying,
            retries: self.retries.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dead: depth.dead,
        }
    }

    /// The dead letters.
    pub(crate) fn dead_letters(&self, sqlite: Option<&SqliteTier>) -> Result<Vec<DeadLetter>> {
        let dead = match (&self.memory, sqlite) {
            (Some(memory), _) => memory.lock().dead.values().cloned().collect(),
            (None, Some(sqlite)) => sqlite.dead_letters()?,
            (None, None) => Vec::new(),
        };
        Ok(dead.into_iter().map(DeadLetter::from).collect())
    }

    /// Queues the dead letters again; how many.
    pub(crate) fn retry_dead_letters(
        &self,
        sqlite: Option<&SqliteTier>,
        now_ms: u64,
    ) -> Result<u64> {
        let queued = match (&self.memory, sqlite) {
            (Some(memory), _) => memory.lock().retry_dead(now_ms),
            (None, Some(sqlite)) => sqlite.retry_dead_letters(now_ms)?,
            (None, None) => 0,
        };
        self.wake.get().notify_one();
        Ok(queued)
    }

    /// Drops the dead letters; how many.
    pub(crate) fn purge_dead_letters(&self, sqlite: Option<&SqliteTier>) -> Result<u64> {
        match (&self.memory, sqlite) {
            (Some(memory), _) => Ok(std::mem::take(&mut memory.lock().dead).len() as u64),
            (None, Some(sqlite)) => sqlite.purge_dead_letters(),
            (None, None) => Ok(0),
        }
    }

    /// The pause before attempt `attempts + 1`, after `attempts` failures.
    fn backoff(&self, attempts: u32) -> Duration {
        let doubled = self
            .config
            .retry_base
            .saturating_mul(1u32 << (attempts.saturating_sub(1)).min(20));
        let pause = doubled.min(self.config.retry_max);
        pause.mul_f64(1.0 - 0.5 * crate::load::random_unit())
    }

    /// What becomes of `write` after an attempt answered `answer`
    /// (`None`: its task failed).
    fn settle_one(&self, write: &Pending, answer: Option<Result<()>>, now_ms: u64) -> Attempt {
        let error = match answer {
            Some(Ok(())) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                return Attempt::Delivered;
            }
            Some(Err(err)) => err.to_string(),
            None => "the delivery task failed".to_owned(),
        };
        self.retries.fetch_add(1, Ordering::Relaxed);
        let attempts = write.attempts + 1;
        if attempts >= self.config.max_attempts {
            tracing::warn!(key = %write.key, attempts, %error,
                "a write for the source moved to the dead letters");
            return Attempt::Dead { error };
        }
        let next_ms = now_ms.saturating_add(self.backoff(attempts).as_millis() as u64);
        Attempt::Retry { next_ms, error }
    }

    /// Waits (blocking) until the outbox is empty or `timeout` passes;
    /// whether it emptied.
    pub(crate) fn wait_empty(
        &self,
        sqlite: Option<&SqliteTier>,
        timeout: Duration,
    ) -> Result<bool> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.depth(sqlite)?.pending == 0 {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            self.wake.get().notify_one();
            std::thread::sleep(FLUSH_POLL);
        }
    }

    /// `flush`: waits for the outbox to empty, at most `outbox.flush_timeout`.
    pub(crate) fn flush(&self, sqlite: Option<&SqliteTier>) -> Result<()> {
        let timeout = self.config.flush_timeout;
        if self.wait_empty(sqlite, timeout)? {
            return Ok(());
        }
        let depth = self.depth(sqlite)?;
        Err(Error::new(
            ErrorKind::Timeout,
            format!(
                "the outbox still holds {} write(s) for the source after {timeout:?} \
                 (outbox.flush_timeout); they stay queued",
                depth.pending
            ),
        ))
    }

    /// `close`: delivers for up to `outbox.close_timeout` (with
    /// `deliver`), then stops the worker and gives up the lease. What is
    /// left stays in the file.
    pub(crate) fn close(&self, sqlite: Option<&SqliteTier>, deliver: bool) {
        let delivered = match deliver {
            true => self.wait_empty(sqlite, self.config.close_timeout),
            false => self.depth(sqlite).map(|d| d.pending == 0),
        };
        match delivered {
            Ok(true) => {}
            Ok(false) if self.in_memory() => tracing::warn!(
                "closing with writes for the source still queued in memory (no file): they are lost"
            ),
            Ok(false) => tracing::warn!(
                "closing with writes for the source still queued; the next process to open the \
                 file delivers them"
            ),
            Err(err) => tracing::warn!(error = %err, "could not read the outbox at close"),
        }
        let _lease = self.lease_lock.lock();
        self.stopped.store(true, Ordering::Release);
        self.wake.get().notify_one();
        if let Some(sqlite) = sqlite.filter(|_| !self.in_memory())
            && let Err(err) = sqlite.end_outbox_lease(self.holder())
        {
            tracing::debug!(error = %err, "could not end the outbox lease");
        }
    }
}
