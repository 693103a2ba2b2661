//! Read tickets: a copy read from Redis is kept in L2 and L1 only if no
//! change of its key (by stripe of keys) began in this process since the
//! read.

use parking_lot::Mutex;

use super::RedisTier;
use crate::fork;

/// Stripes of keys for [`RedisTier::ticket`].
pub(super) const STRIPES: usize = 64;

/// Changes of one stripe's keys: begun and ended.
#[derive(Default)]
pub(super) struct Stripe {
    progress: crate::tier::Progress,
    /// Held while a copy is kept, and while a change begins.
    lock: Mutex<()>,
}

/// A read of Redis's ticket: its key's stripe, and the changes begun there
/// when it was taken (`None`: one was under way).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadTicket {
    stripe: usize,
    started: Option<u64>,
}

/// A change under way (see [`RedisTier::changing`]): ended when dropped.
pub(crate) struct Changing<'a> {
    tier: &'a RedisTier,
    stripes: Vec<usize>,
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        for &i in &self.stripes {
            self.tier.stripes[i].progress.end();
        }
    }
}

impl RedisTier {
    /// A ticket for keeping a copy of `key` read from Redis (see
    /// [`RedisTier::keep_if`]), taken before the read.
    pub(crate) fn ticket(&self, key: &str) -> ReadTicket {
        let i = self.stripe_of(key);
        ReadTicket {
            stripe: i,
            started: self.stripes[i].progress.idle_at(),
        }
    }

    /// Whether no change of the ticket's stripe began since it was taken
    /// (nor was under way then).
    pub(crate) fn still_valid(&self, ticket: ReadTicket) -> bool {
        self.stripes[ticket.stripe]
            .progress
            .unchanged_since(ticket.started)
    }

    /// Runs `keep` (storing a copy read from Redis with `ticket`) unless a
    /// change of its stripe began since the ticket was taken; no change
    /// begins while it runs.
    pub(crate) fn keep_if<R>(&self, ticket: ReadTicket, keep: impl FnOnce() -> R) -> Option<R> {
        let _gate = fork::fork_gate();
        let _stripe = self.stripes[ticket.stripe].lock.lock();
        self.still_valid(ticket).then(keep)
    }

    /// Announces a change of `keys` (this process's write, or another
    /// process's applied here), before it reaches L2; it ends when the
    /// returned guard drops, after it reached Redis.
    pub(crate) fn changing<'k>(&self, keys: impl IntoIterator<Item = &'k str>) -> Changing<'_> {
        let mut stripes: Vec<usize> = keys.into_iter().map(|k| self.stripe_of(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        self.begin(stripes)
    }

    /// Announces a change that may touch any key (a clear, a tag).
    pub(crate) fn changing_all(&self) -> Changing<'_> {
        self.begin((0..STRIPES).collect())
    }

    fn begin(&self, stripes: Vec<usize>) -> Changing<'_> {
        let _gate = fork::fork_gate();
        for &i in &stripes {
            let stripe = &self.stripes[i];
            let _stripe = stripe.lock.lock();
            stripe.progress.begin();
        }
        Changing {
            tier: self,
            stripes,
        }
    }

    fn stripe_of(&self, key: &str) -> usize {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key) as usize % STRIPES
    }
}
