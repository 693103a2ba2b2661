//! Writes begun and ended on a stripe of keys, for the tickets that let a
//! copy read from a lower tier be kept only if no write of its stripe
//! began since the read (L1's promotions, the Redis tier's copies).

use std::sync::atomic::{AtomicU64, Ordering};

/// Writes begun and ended on one stripe.
#[derive(Default)]
pub(crate) struct Progress {
    started: AtomicU64,
    finished: AtomicU64,
}

impl Progress {
    /// A write begins.
    pub(crate) fn begin(&self) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }

    /// A write ended.
    pub(crate) fn end(&self) {
        self.finished.fetch_add(1, Ordering::SeqCst);
    }

    /// The writes begun so far, if none is under way: a ticket.
    pub(crate) fn idle_at(&self) -> Option<u64> {
        let started = self.started.load(Ordering::SeqCst);
        (self.finished.load(Ordering::SeqCst) == started).then_some(started)
    }

    /// Whether no write began since `ticket` (from [`Progress::idle_at`]);
    /// never, for a ticket taken while one was under way.
    pub(crate) fn unchanged_since(&self, ticket: Option<u64>) -> bool {
        ticket.is_some_and(|started| self.started.load(Ordering::SeqCst) == started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_holds_until_a_write_begins() {
        let progress = Progress::default();
        let ticket = progress.idle_at();
        assert!(progress.unchanged_since(ticket));
        progress.begin();
        assert!(!progress.unchanged_since(ticket));
        // Under way: no ticket.
        assert_eq!(progress.idle_at(), None);
        assert!(!progress.unchanged_since(progress.idle_at()));
        progress.end();
        assert!(progress.unchanged_since(progress.idle_at()));
    }
}
