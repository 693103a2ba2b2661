//! Promotion: an L2 or Redis hit copied into the tiers above it, and when a
//! copied value is due for a refresh ahead.

use std::time::Duration;

use super::{Engine, ms};
use crate::entry::{Lookup, Tier};
use crate::key;
use crate::tier::envelope::Stored;
use crate::tier::memory::{MemEntry, MemoryTier, Ticket};
use crate::tier::redis::ReadTicket;
use crate::tier::sqlite::{Found, Write};

impl Engine {
    /// Copies an L2 hit into L1 (with the ticket taken before L2 was read)
    /// and reports it, with the L1 version now holding it.
    pub(crate) fn promote(
        &self,
        ticket: Option<(&MemoryTier, Ticket)>,
        key: &str,
        found: Found,
        now: u64,
    ) -> (Lookup, Option<u64>) {
        let mut version = None;
        if let Some((memory, ticket)) = ticket {
            let expires_ms = found
                .expires_ms
                .min(now.saturating_add(ms(self.config.memory.ttl)));
            let refresh_ms = self.refresh_ms(found.created_ms, found.expires_ms);
            version = memory.promote(
                ticket,
                key,
                MemEntry::new(found.value.clone(), found.created_ms, expires_ms)
                    .first_written(found.first_ms)
                    .in_row(found.row)
                    .refresh_at(refresh_ms),
            );
        }
        let lookup = Lookup {
            value: found.value,
            tier: Tier::Sqlite,
            stale: false,
            age: Duration::from_millis(now.saturating_sub(found.created_ms)),
        };
        (lookup, version)
    }

    /// When a value written at `created_ms` to expire at `expires_ms` is
    /// due for a refresh ahead (`u64::MAX`: never).
    #[inline]
    pub(super) fn refresh_ms(&self, created_ms: u64, expires_ms: u64) -> u64 {
        let share = self.config.refresh_ahead;
        if share <= 0.0 || share >= 1.0 {
            return u64::MAX;
        }
        let ttl = expires_ms.saturating_sub(created_ms);
        created_ms.saturating_add((ttl as f64 * share) as u64)
    }

    /// Writes a Redis hit into L2 (if it fits there; a failure is logged)
    /// and L1, as its own write would, and reports it; `ticket`: taken
    /// before Redis was read. If a change of the key began since (this
    /// process's write, or another's applied by the backplane), the hit is
    /// answered but not kept: it may be what that change replaced. Nor is
    /// it kept in L2 over a write of the key another process on the file
    /// made meanwhile (see [`Write::Copy`]).
    pub(crate) fn promote_from_redis(
        &self,
        key: &str,
        stored: Stored,
        now: u64,
        ticket: ReadTicket,
    ) -> (Lookup, Option<u64>) {
        let lookup = |stored: &Stored| Lookup {
            value: stored.value.clone(),
            tier: Tier::Redis,
            stale: false,
            age: Duration::from_millis(now.saturating_sub(stored.created_ms)),
        };
        let Some(redis) = &self.redis else {
            return (lookup(&stored), None);
        };
        let kept = redis.keep_if(ticket, || self.keep_from_redis(key, &stored, now));
        (lookup(&stored), kept.flatten())
    }

    /// Stores a Redis hit in L2 and L1; the L1 version holding it.
    fn keep_from_redis(&self, key: &str, stored: &Stored, now: u64) -> Option<u64> {
        let memory = self.l1(now);
        let pending = memory.map(|m| m.begin(key));
        let (mut seq, mut row) = (None, 0);
        if let Some(sqlite) = &self.sqlite
            && self.check_fits(key, stored.value.len()).is_ok()
        {
            let written = sqlite.write(vec![Write::Copy(stored.to_row(key))]);
            self.follow_file_swap();
            match written {
                Ok(outcomes) => match outcomes.first() {
                    Some(outcome) if outcome.row.is_some() => {
                        (seq, row) = (Some(outcome.seq), outcome.row.unwrap_or(0));
                    }
                    // The file holds a newer write: neither tier keeps the copy.
                    _ => return None,
                },
                Err(err) => {
                    tracing::warn!(key = %key::quote(key), error = %err, "copying a Redis hit into L2 failed");
                }
            }
        }
        let mut version = None;
        if let (Some(memory), Some(pending)) = (memory, &pending) {
            let expires_ms = stored
                .expires_ms
                .min(now.saturating_add(ms(self.config.memory.ttl)));
            let entry = MemEntry::new(stored.value.clone(), stored.created_ms, expires_ms)
                .in_row(row)
                .refresh_at(self.refresh_ms(stored.created_ms, stored.expires_ms));
            version = memory.apply(pending, key, Some(entry), &stored.tags, seq);
        }
        version
    }
}
