//! Ordering writes and promotions.
//!
//! L1 is a copy of L2, filled by two kinds of callers that race: writers,
//! who store their value after committing it to L2, and readers, who copy a
//! value they read from L2 (promotion). Keys are spread over [`STRIPES`]
//! stripes, each with counters of the writes started and finished and, under
//! its lock, the change number (see [`crate::coherence`]) of the latest write
//! applied to L1:
//!
//! - a writer announces itself ([`MemoryTier::begin`]) before it writes L2,
//!   and applies its write to L1 under the stripe lock only if no later
//!   write of the stripe was applied there first; otherwise it removes the
//!   key, and the next read goes to L2;
//! - a reader takes a [`Ticket`] before it reads L2, and its promotion is
//!   applied under the stripe lock only if no write of the stripe started
//!   since (nor was running when the ticket was taken);
//! - a clear, a tag invalidation, and a poll of other processes' changes
//!   (read up to change N of the log) count as a write of every stripe
//!   numbered N: a write of this process committed before N but not yet
//!   applied is dropped instead. Otherwise a poll could consume another
//!   process's change of a key and the older write of this process be
//!   applied after it, to be served until it expires.
//!
//! - a write that goes through the journal (see `tier::sqlite::journal`)
//!   has no change number until it is drained: it is applied to L1 at once,
//!   under the journal's lock, so that such writes reach L1 in the order
//!   the journal (and so L2) has them, and it marks its stripe with the
//!   number of its append. A write committed directly drains the journal
//!   first, so a journaled write of its stripe applied since it began may
//!   come before or after it in L2: it removes the key instead of storing
//!   its own value.
//!
//! So a promotion never puts back a value older than a write that returned,
//! nor resurrects a deleted key, and L1 ends a burst of writes to one key
//! with the value L2 holds (or without the key).

use std::hash::BuildHasher;

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::reads::depart;
use super::{MemEntry, MemoryTier};

/// How many stripes order the writes and promotions of L1 (see the module
/// docs); a power of two.
pub(crate) const STRIPES: usize = 64;

/// One stripe of keys; see the module docs.
#[repr(align(64))]
#[derive(Default)]
pub(super) struct Stripe {
    progress: crate::tier::Progress,
    /// The change number of the latest write applied to L1.
    applied: Mutex<u64>,
    /// The append number of the latest journaled write applied to L1
    /// (written under `applied`'s lock).
    journaled: AtomicU64,
}

/// A write in progress, from [`MemoryTier::begin`] until dropped.
#[must_use = "the write is in progress until this is dropped"]
pub(crate) struct Pending<'a> {
    stripes: &'a [Stripe],
    /// Journaled writes applied to L1 before it began.
    appends: u64,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        for stripe in self.stripes {
            stripe.progress.end();
        }
    }
}

/// Taken before reading L2; allows a promotion only if no write of the key's
/// stripe started since.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    stripe: usize,
    started: Option<u64>,
}

impl MemoryTier {
    pub(super) fn stripe_of(&self, key: &str) -> usize {
        self.hasher.hash_one(key) as usize & (STRIPES - 1)
    }
    /// Announces a write of `key`, before it goes to L2.
    pub(crate) fn begin(&self, key: &str) -> Pending<'_> {
        let i = self.stripe_of(key);
        let stripes = &self.stripes[i..=i];
        stripes[0].progress.begin();
        Pending {
            stripes,
            appends: self.appends.load(Ordering::Acquire),
        }
    }

    /// Announces a write that may touch any key (a clear, a tag
    /// invalidation, another process's changes).
    pub(crate) fn begin_all(&self) -> Pending<'_> {
        for stripe in &self.stripes[..] {
            stripe.progress.begin();
        }
        Pending {
            stripes: &self.stripes,
            appends: self.appends.load(Ordering::Acquire),
        }
    }

    /// Applies a write of `key` that L2 committed as change `seq` (`None`:
    /// there is no L2, and the write is numbered here): stores `entry`
    /// (remembered under `tags`), or removes the key when `entry` is `None`.
    /// If a later write of the key's stripe was applied first, or a
    /// journaled one since `pending` began, the key is removed instead.
    /// Returns the stored entry's version.
    pub(crate) fn apply(
        &self,
        pending: &Pending<'_>,
        key: &str,
        entry: Option<MemEntry>,
        tags: &[String],
        seq: Option<u64>,
    ) -> Option<u64> {
        let stripe = &self.stripes[self.stripe_of(key)];
        let mut applied = stripe.applied.lock();
        let seq = seq.unwrap_or(*applied + 1);
        let deleted = entry.is_none();
        let overtaken = stripe.journaled.load(Ordering::Relaxed) > pending.appends;
        match entry {
            Some(entry) if seq > *applied && !overtaken => {
                *applied = seq;
                self.insert_tagged(key, entry, tags)
            }
            _ => {
                *applied = (*applied).max(seq);
                match (deleted, self.map.remove(key)) {
                    (true, Some((_, old))) => self.forget_reads(key, old.row),
                    // Superseded by a later write of the row: its reads stay.
                    (false, Some((_, old))) => depart(&self.departed, key, &old, 0),
                    (_, None) => {}
                }
                None
            }
        }
    }

    /// Applies a write of `key` that went through the journal, under the
    /// journal's lock (see the module docs): stores `entry` (remembered
    /// under `tags`) and returns its version.
    pub(crate) fn apply_journaled(
        &self,
        _pending: &Pending<'_>,
        key: &str,
        entry: MemEntry,
        tags: &[String],
    ) -> Option<u64> {
        let stripe = &self.stripes[self.stripe_of(key)];
        // Ordered against writes committed directly by `journaled`; its
        // change number comes with its drain.
        let _applied = stripe.applied.lock();
        let append = self.appends.fetch_add(1, Ordering::AcqRel) + 1;
        stripe.journaled.store(append, Ordering::Relaxed);
        self.insert_tagged(key, entry, tags)
    }

    /// A ticket for promoting `key` (see [`MemoryTier::promote`]), to be
    /// taken before L2 is read.
    pub(crate) fn ticket(&self, key: &str) -> Ticket {
        let i = self.stripe_of(key);
        Ticket {
            stripe: i,
            started: self.stripes[i].progress.idle_at(),
        }
    }

    /// Stores an entry read from L2 with `ticket`, unless a write of its
    /// stripe ran since the ticket was taken; returns its version.
    pub(crate) fn promote(&self, ticket: Ticket, key: &str, entry: MemEntry) -> Option<u64> {
        let stripe = &self.stripes[ticket.stripe];
        let _applied = stripe.applied.lock();
        match stripe.progress.unchanged_since(ticket.started) {
            true => self.insert(key, entry),
            false => None,
        }
    }

    /// Drops `keys` and every entry tagged with one of `tags`, after
    /// `pending` (from [`MemoryTier::begin_all`]) was announced; `seq`: the
    /// number of the last change this invalidation covers (this process's
    /// own tag invalidation, or the head of the log other processes'
    /// changes were read up to), so that writes of this process committed
    /// before it are not applied after it. Returns how many of `keys` L1
    /// held, and the keys of the tagged entries that were fresh at `now_ms`.
    pub(crate) fn invalidate(
        &self,
        _pending: &Pending<'_>,
        keys: &[String],
        tags: &[String],
        seq: Option<u64>,
        now_ms: u64,
    ) -> (u64, Vec<String>) {
        self.with_every_stripe(seq, || {
            // Another process rewrote these keys (an upsert keeps the row):
            // the reads counted here still belong to it.
            let dropped = keys
                .iter()
                .filter_map(|key| self.map.remove(key.as_str()))
                .inspect(|(key, old)| depart(&self.departed, key, old, 0))
                .count() as u64;
            let fresh = tags
                .iter()
                .flat_map(|tag| self.remove_tagged(tag, now_ms))
                .collect();
            (dropped, fresh)
        })
    }

    /// Drops every entry, after `pending` (from [`MemoryTier::begin_all`])
    /// was announced; `seq`: as in [`MemoryTier::invalidate`] (this
    /// process's clear, or the head of the log when another process's
    /// changes cannot be told apart).
    pub(crate) fn invalidate_all(&self, _pending: &Pending<'_>, seq: Option<u64>) {
        self.with_every_stripe(seq, || {
            self.map.clear();
            self.tagged.lock().clear();
            self.departed.lock().take();
        });
    }

    /// Runs `f` with every stripe locked (no write is applied and no
    /// promotion made meanwhile), then records `seq`, if any, as applied in
    /// every stripe.
    fn with_every_stripe<R>(&self, seq: Option<u64>, f: impl FnOnce() -> R) -> R {
        let mut held: Vec<_> = self.stripes.iter().map(|s| s.applied.lock()).collect();
        let out = f();
        if let Some(seq) = seq {
            for applied in &mut held {
                **applied = (**applied).max(seq);
            }
        }
        out
    }
}
