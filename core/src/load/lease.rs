//! A flight's side of single-flight across processes: taking the key's
//! lease in the L2 file, waiting on the file while another process holds
//! it, and ending it (see `tier::sqlite`'s leases for the file's side).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Job, LEASE_MARGIN, Outcome, REMOTE_POLL_MAX, blocking, ms};
use crate::cache::Engine;
use crate::entry::Lookup;
use crate::error::{ErrorKind, Result};
use crate::key;
use crate::tier::sqlite::Lease;

/// How taking a lease ended.
pub(crate) enum Leased {
    /// This flight holds the lease.
    Held,
    /// Another process's load answered.
    Answered(Outcome),
    /// No lease could be had (a read-only file): load without one.
    Unavailable,
}

impl Engine {
    /// Takes the key's lease in the file, waiting while another process
    /// holds it.
    pub(super) async fn take_lease(
        self: &Arc<Self>,
        job: &Job,
        holder: i64,
        started: Instant,
    ) -> Result<Leased> {
        let lease_ms = ms(self.config.fail_safe.hard_timeout + LEASE_MARGIN);
        // A live holder ends its lease within its hard timeout; a dead one's
        // is taken over at once or at its expiry: past twice the lease,
        // something is wrong with the clock or the file, and this flight
        // loads on its own.
        let give_up = Duration::from_millis(lease_ms.saturating_mul(2));
        let mut pause = Duration::from_millis(1);
        let mut waited = false;
        loop {
            let now = self.clock.now_ms();
            let (engine, key) = (self.clone(), job.key.clone());
            let lease = blocking(move || {
                let sqlite = engine.sqlite.as_ref().expect("a lease needs a file");
                sqlite.lease(&key, holder, now, lease_ms)
            })
            .await;
            let lease = match lease {
                Ok(lease) => lease,
                Err(err) if err.kind() == ErrorKind::Closed => return Err(err),
                Err(err) => {
                    // A read-only file, a full disk: load without a lease.
                    tracing::debug!(error = %err, "no load lease; loading without one");
                    return Ok(Leased::Unavailable);
                }
            };
            match lease {
                Lease::Free => return Ok(Leased::Held),
                Lease::Filled => {
                    if let Some(lookup) = self.read_filled(job, now).await? {
                        if waited {
                            self.counters.source.coalesced_processes.incr();
                        }
                        return Ok(Leased::Answered(Ok(Some(lookup))));
                    }
                    // A refresh ahead found the row it refreshes, which
                    // nobody else is refreshing: it loads without a lease
                    // (another process refreshing at once loads too).
                    if job.refresh_of_ms.is_some() {
                        return Ok(Leased::Unavailable);
                    }
                }
                Lease::NotFound { until_ms } => {
                    self.loads.remember_not_found(&job.key, until_ms, now);
                    if waited {
                        self.counters.source.coalesced_processes.incr();
                    }
                    self.counters.source.negative_hits.incr();
                    return Ok(Leased::Answered(Ok(None)));
                }
                Lease::Held => waited = true,
            }
            if started.elapsed() > give_up {
                return Ok(Leased::Unavailable);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(REMOTE_POLL_MAX);
        }
    }

    /// The value another process stored, promoted; `None` if the row is
    /// not what this flight waits for (a refresh ahead sees its own old row).
    async fn read_filled(self: &Arc<Self>, job: &Job, now: u64) -> Result<Option<Lookup>> {
        let (engine, key) = (self.clone(), job.key.clone());
        let refresh_of = job.refresh_of_ms;
        blocking(move || {
            let sqlite = engine.sqlite.as_ref().expect("filled in a file");
            let memory = engine.l1(now);
            let ticket = memory.map(|m| (m, m.ticket(&key)));
            let found = sqlite.get(&key, now);
            engine.follow_file_swap();
            match found? {
                Some(found)
                    if now < found.expires_ms
                        && refresh_of.is_none_or(|old| found.created_ms > old) =>
                {
                    Ok(Some(engine.promote(ticket, &key, found, now).0))
                }
                _ => Ok(None),
            }
        })
        .await
    }

    /// Ends a job's lease; a "not found" stays in the file for `negative_ttl`.
    pub(super) async fn end_lease(self: &Arc<Self>, job: &Job, holder: i64, outcome: &Outcome) {
        let now = self.clock.now_ms();
        let not_found_until = match outcome {
            Ok(None) if !self.config.negative_ttl.is_zero() => {
                Some(now.saturating_add(ms(self.config.negative_ttl)))
            }
            _ => None,
        };
        let (engine, key) = (self.clone(), job.key.clone());
        let ended = blocking(move || {
            let sqlite = engine.sqlite.as_ref().expect("leased on a file");
            sqlite.end_lease(&key, holder, not_found_until)
        })
        .await;
        if let Err(err) = ended {
            // The lease expires on its own.
            tracing::warn!(key = %key::quote(&job.key), error = %err, "ending a load lease failed");
        }
    }
}
