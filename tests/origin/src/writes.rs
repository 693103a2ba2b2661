//! The writable key-value store served under `/store/` on the api host:
//! current values, the log of deliveries, deduplication by idempotency key,
//! the write counters and the write faults.
//!
//! A write is handled in two steps so that a delay can sit between them:
//! [`WriteStore::arrive`] counts it and decides whether it fails, and
//! [`WriteStore::apply`] applies it (or finds it a duplicate) just before it
//! is answered.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::model::Delivery;

/// Whether `status` can be the final answer to a request (200 to 599).
pub(crate) fn is_status(status: u16) -> bool {
    (200..=599).contains(&status)
}

/// The write faults: the next `remaining` writes (every write if `None`)
/// answer `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WriteFailure {
    status: u16,
    remaining: Option<u32>,
}

/// What the store decided when a write arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arrival {
    /// Wait this long before answering.
    pub(crate) delay: Duration,
    /// Answer this status without applying.
    pub(crate) failure: Option<u16>,
    /// The store's generation at arrival; a reset starts a new one.
    generation: u64,
}

/// What became of a write that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Applied and recorded as a delivery.
    Delivered,
    /// Its idempotency key was applied before: nothing changed.
    Duplicate,
    /// The store was reset while the write waited out its delay: nothing
    /// changed.
    Stale,
}

/// The store, its delivery log and counters.
#[derive(Debug, Default)]
pub(crate) struct WriteStore {
    values: BTreeMap<String, Vec<u8>>,
    deliveries: Vec<Delivery>,
    applied: HashSet<String>,
    attempts: usize,
    duplicates: usize,
    failure: Option<WriteFailure>,
    delay: Duration,
    generation: u64,
}

impl WriteStore {
    /// Empty store, empty log, zero counters, no faults; a write that
    /// arrived before is [`Applied::Stale`] when it comes to be applied.
    pub(crate) fn reset(&mut self) {
        let generation = self.generation + 1;
        *self = WriteStore {
            generation,
            ..WriteStore::default()
        };
    }

    /// Counts a write request (whatever it carries) and takes the write
    /// fault for it, if one is set.
    pub(crate) fn arrive(&mut self) -> Arrival {
        self.attempts += 1;
        let failure = self.failure.map(|f| f.status);
        if let Some(WriteFailure {
            remaining: Some(n), ..
        }) = &mut self.failure
        {
            debug_assert!(*n > 0, "a spent write fault is removed");
            *n -= 1;
            if *n == 0 {
                self.failure = None;
            }
        }
        Arrival {
            delay: self.delay,
            failure,
            generation: self.generation,
        }
    }

    /// Applies a write that arrived as `arrival` and did not fail: sets
    /// `key` to `value` (removes it for `None`) and records a delivery,
    /// unless `idempotency_key` was applied before.
    pub(crate) fn apply(
        &mut self,
        arrival: Arrival,
        key: &str,
        idempotency_key: &str,
        value: Option<Vec<u8>>,
    ) -> Applied {
        debug_assert!(arrival.failure.is_none(), "a failed write is not applied");
        if arrival.generation != self.generation {
            return Applied::Stale;
        }
        if !self.applied.insert(idempotency_key.to_owned()) {
            self.duplicates += 1;
            return Applied::Duplicate;
        }
        match &value {
            Some(bytes) => {
                self.values.insert(key.to_owned(), bytes.clone());
            }
            None => {
                self.values.remove(key);
            }
        }
        self.deliveries.push(Delivery {
            key: key.to_owned(),
            idempotency_key: idempotency_key.to_owned(),
            value,
            seq: self.deliveries.len() as u64,
        });
        Applied::Delivered
    }

    /// The current value of `key`.
    pub(crate) fn value(&self, key: &str) -> Option<&[u8]> {
        self.values.get(key).map(Vec::as_slice)
    }

    pub(crate) fn deliveries(&self) -> &[Delivery] {
        &self.deliveries
    }

    pub(crate) fn attempts(&self) -> usize {
        self.attempts
    }

    pub(crate) fn duplicates(&self) -> usize {
        self.duplicates
    }

    /// The next `count` writes (every write if `None`) answer `status`;
    /// replaces the failure set before. `Some(0)` sets none.
    pub(crate) fn fail(&mut self, count: Option<u32>, status: u16) {
        self.failure = match count {
            Some(0) => None,
            remaining => Some(WriteFailure { status, remaining }),
        };
    }

    pub(crate) fn set_delay(&mut self, delay: Duration) {
        self.delay = delay;
    }

    /// No failures and no delay.
    pub(crate) fn clear_faults(&mut self) {
        self.failure = None;
        self.delay = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(store: &mut WriteStore, key: &str, id: &str, value: &str) -> Applied {
        let arrival = store.arrive();
        store.apply(arrival, key, id, Some(value.as_bytes().to_vec()))
    }

    #[test]
    fn an_idempotency_key_applies_once() {
        let mut store = WriteStore::default();
        assert_eq!(put(&mut store, "k", "a", "1"), Applied::Delivered);
        assert_eq!(put(&mut store, "k", "b", "2"), Applied::Delivered);
        assert_eq!(put(&mut store, "k", "a", "1"), Applied::Duplicate);
        assert_eq!(put(&mut store, "other", "a", "3"), Applied::Duplicate);
        assert_eq!(store.value("k"), Some(&b"2"[..]));
        assert_eq!(store.value("other"), None);
        let seqs: Vec<(&str, u64)> = store
            .deliveries()
            .iter()
            .map(|d| (d.idempotency_key.as_str(), d.seq))
            .collect();
        assert_eq!(seqs, [("a", 0), ("b", 1)]);
        assert_eq!((store.attempts(), store.duplicates()), (4, 2));
    }

    #[test]
    fn failures_count_down_and_always_lasts_until_cleared() {
        let mut store = WriteStore::default();
        store.fail(Some(2), 503);
        let failures: Vec<Option<u16>> = (0..3).map(|_| store.arrive().failure).collect();
        assert_eq!(failures, [Some(503), Some(503), None]);
        store.fail(None, 500);
        store.fail(Some(0), 503);
        assert_eq!(store.arrive().failure, None);
        store.fail(None, 500);
        store.set_delay(Duration::from_millis(7));
        let failures: Vec<Option<u16>> = (0..3).map(|_| store.arrive().failure).collect();
        assert_eq!(failures, [Some(500); 3]);
        assert_eq!(store.arrive().delay, Duration::from_millis(7));
        store.clear_faults();
        let arrival = store.arrive();
        assert_eq!((arrival.failure, arrival.delay), (None, Duration::ZERO));
        assert_eq!(store.attempts(), 9);
        assert!(store.deliveries().is_empty());
    }

    #[test]
    fn a_delete_is_delivered_even_when_nothing_was_there() {
        let mut store = WriteStore::default();
        let arrival = store.arrive();
        assert_eq!(store.apply(arrival, "k", "d", None), Applied::Delivered);
        assert_eq!(put(&mut store, "k", "p", "v"), Applied::Delivered);
        let arrival = store.arrive();
        assert_eq!(store.apply(arrival, "k", "d2", None), Applied::Delivered);
        assert_eq!(store.value("k"), None);
        let values: Vec<Option<&[u8]>> = store
            .deliveries()
            .iter()
            .map(|d| d.value.as_deref())
            .collect();
        assert_eq!(values, [None, Some(&b"v"[..]), None]);
    }

    #[test]
    fn a_reset_clears_faults_and_counters_and_outlives_waiting_writes() {
        let mut store = WriteStore::default();
        assert_eq!(put(&mut store, "k", "a", "1"), Applied::Delivered);
        store.fail(None, 500);
        store.set_delay(Duration::from_millis(7));
        store.reset();
        assert_eq!(store.value("k"), None);
        let waiting = store.arrive();
        assert_eq!((waiting.failure, waiting.delay), (None, Duration::ZERO));
        store.reset();
        assert_eq!(store.apply(waiting, "k", "b", None), Applied::Stale);
        assert_eq!((store.attempts(), store.duplicates()), (0, 0));
        assert!(store.deliveries().is_empty());
        assert_eq!(put(&mut store, "k", "a", "2"), Applied::Delivered);
        assert_eq!(store.value("k"), Some(&b"2"[..]));
    }
}
