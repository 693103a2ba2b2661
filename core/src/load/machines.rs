//! A flight's side of single-flight across machines (Cargo feature
//! `redis`): a lease on the key in Redis (`SET NX PX`, by script), taken
//! after this host's own (the L2 file's) lease. While another machine holds
//! it, the flight waits for that machine's fill, announced on the
//! backplane's stream (and looked for in Redis at least every
//! [`super::REMOTE_POLL_MAX`]), and reads it from Redis
//! (`coalesced_machines`). A lease lasts `fail_safe.hard_timeout` plus a
//! second, as the file's does; a flight that has waited that long loads on
//! its own. A "not found" stays in the lease for `negative_ttl`, so that
//! the other machines answer it without asking the source. Redis failing
//! (or its breaker open): the flight loads without a lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Job, LEASE_MARGIN, Outcome, REMOTE_POLL_MAX, blocking, ms};
use crate::cache::Engine;
use crate::entry::Lookup;
use crate::tier::redis::LeaseState;

/// How taking the machines' lease ended.
pub(crate) enum MachineLease {
    /// This flight holds it, under this token.
    Held(String),
    /// Another machine's load answered.
    Answered(Outcome),
    /// No lease (no Redis, Redis failing, or waited too long): load
    /// without one.
    Unavailable,
}

impl Engine {
    /// Takes the key's lease in Redis, waiting while another machine holds
    /// it.
    pub(super) async fn take_machine_lease(self: &Arc<Self>, job: &Job) -> MachineLease {
        let Some(redis) = self.redis() else {
            return MachineLease::Unavailable;
        };
        let lease = self.config.fail_safe.hard_timeout + LEASE_MARGIN;
        let deadline = Instant::now() + lease;
        let token = format!(
            "{}:{:x}",
            redis.node().id,
            crate::coherence::new_origin() as u64
        );
        let news = redis.watch(&job.key);
        let mut pause = Duration::from_millis(1);
        let mut waited = false;
        let outcome = loop {
            let notified = news.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match redis.lease(&job.key, &token, lease).await {
                None => break MachineLease::Unavailable,
                Some(LeaseState::Taken) => {
                    // Another machine may have filled the key since this
                    // flight missed it, and ended its lease.
                    if let Some(found) = self.read_machine_fill(job).await {
                        redis.end_lease(&job.key, &token, None).await;
                        self.counters.source.coalesced_machines.incr();
                        break MachineLease::Answered(Ok(Some(found)));
                    }
                    break MachineLease::Held(token);
                }
                Some(LeaseState::NotFound) => {
                    let now = self.clock.now_ms();
                    let until = now.saturating_add(ms(self.config.negative_ttl));
                    if !self.config.negative_ttl.is_zero() {
                        self.loads.remember_not_found(&job.key, until, now);
                    }
                    if waited {
                        self.counters.source.coalesced_machines.incr();
                    }
                    self.counters.source.negative_hits.incr();
                    break MachineLease::Answered(Ok(None));
                }
                Some(LeaseState::Held) => {
                    if let Some(found) = self.read_machine_fill(job).await {
                        self.counters.source.coalesced_machines.incr();
                        break MachineLease::Answered(Ok(Some(found)));
                    }
                    waited = true;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break MachineLease::Unavailable;
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(pause.min(left)) => {}
            }
            pause = (pause * 2).min(REMOTE_POLL_MAX);
        };
        redis.unwatch(&job.key, news);
        outcome
    }

    /// The value another machine stored in Redis for the job, kept here;
    /// `None` if Redis holds none (or only the old one a refresh replaces).
    async fn read_machine_fill(self: &Arc<Self>, job: &Job) -> Option<Lookup> {
        let redis = self.redis()?;
        let ticket = redis.ticket(&job.key);
        let stored = redis.get_async(&job.key).await??;
        let now = self.clock.now_ms();
        if now >= stored.expires_ms
            || job
                .refresh_of_ms
                .is_some_and(|old| stored.created_ms <= old)
        {
            return None;
        }
        let (engine, key) = (self.clone(), job.key.clone());
        blocking(move || Ok(engine.promote_from_redis(&key, stored, now, ticket).0))
            .await
            .ok()
    }

    /// Ends the job's lease in Redis; a "not found" stays in it for
    /// `negative_ttl`.
    pub(super) async fn end_machine_lease(&self, job: &Job, token: &str, outcome: &Outcome) {
        let Some(redis) = self.redis() else {
            return;
        };
        let not_found = match outcome {
            Ok(None) if !self.config.negative_ttl.is_zero() => Some(self.config.negative_ttl),
            _ => None,
        };
        redis.end_lease(&job.key, token, not_found).await;
    }
}
