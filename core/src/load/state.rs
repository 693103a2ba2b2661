//! The loading state of one cache: its source and breaker, the flights in
//! progress, and the negative cache, reset in a forked child.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::NEGATIVE_CAP;
use super::flight::Flight;
use crate::breaker::Breaker;
use crate::error::Result;
use crate::source::Source;

/// The loading state of one cache.
pub(crate) struct Loads {
    pub(super) source: Option<Arc<dyn Source>>,
    pub(crate) breaker: Breaker,
    flights: Mutex<HashMap<String, Arc<Flight>>>,
    negative: Mutex<HashMap<String, u64>>,
    negative_len: AtomicUsize,
    /// A fingerprint of the rate-limit figures last written to the file
    /// (see `shared.rs`), so that an unchanged figure is not written again.
    pub(super) shared_rate_limit: AtomicU64,
    /// The fork generation (see [`crate::fork`]) the maps belong to: a
    /// forked child has none of the parent's flights in progress.
    generation: AtomicU64,
    /// The generation the maps are being reset for, by one thread.
    building: AtomicU64,
}

impl Loads {
    pub(crate) fn new(source: Option<Arc<dyn Source>>, breaker: Breaker) -> Self {
        Self {
            source,
            breaker,
            flights: Mutex::new(HashMap::new()),
            negative: Mutex::new(HashMap::new()),
            negative_len: AtomicUsize::new(0),
            shared_rate_limit: AtomicU64::new(0),
            generation: AtomicU64::new(crate::fork::fork_generation()),
            building: AtomicU64::new(crate::fork::fork_generation()),
        }
    }

    /// Whether a source is configured (plain reads load through it).
    #[inline]
    pub(crate) fn has_source(&self) -> bool {
        self.source.is_some()
    }

    /// Whether the configured source has anything for `key` (see
    /// [`Source::serves`]); an unsafe key is an error.
    pub(crate) fn serves(&self, key: &str) -> Result<bool> {
        self.source.as_ref().map_or(Ok(false), |s| s.serves(key))
    }

    /// In a forked child, drops the parent's flights (their tasks do not
    /// exist here) before the maps are used.
    #[inline]
    fn after_fork(&self) {
        let generation = crate::fork::fork_generation();
        if self.generation.load(Ordering::Acquire) != generation {
            self.reset_after_fork(generation);
        }
    }

    /// One thread of the child resets the maps; the others wait for it
    /// before they take a lock (as `L1` does for the memory tier).
    #[cold]
    fn reset_after_fork(&self, generation: u64) {
        let building = self.building.load(Ordering::Acquire);
        if building != generation
            && self
                .building
                .compare_exchange(building, generation, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // SAFETY: in a forked child, a lock of these maps found held
            // was taken by a parent's thread, which does not exist here and
            // will never release it; no thread of the child takes them
            // until `generation` is stored below (they wait in this
            // function).
            unsafe {
                crate::fork::unlock_abandoned(&self.flights);
                crate::fork::unlock_abandoned(&self.negative);
            }
            self.flights.lock().clear();
            self.negative.lock().clear();
            self.negative_len.store(0, Ordering::Relaxed);
            self.generation.store(generation, Ordering::Release);
        }
        while self.generation.load(Ordering::Acquire) != generation {
            std::thread::yield_now();
        }
    }

    pub(super) fn negative_until(&self, key: &str, now: u64) -> Option<u64> {
        if self.negative_len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.after_fork();
        let mut negative = self.negative.lock();
        match negative.get(key) {
            Some(&until) if now < until => Some(until),
            Some(_) => {
                negative.remove(key);
                self.negative_len.store(negative.len(), Ordering::Relaxed);
                None
            }
            None => None,
        }
    }

    pub(super) fn remember_not_found(&self, key: &str, until: u64, now: u64) {
        self.after_fork();
        let mut negative = self.negative.lock();
        if negative.len() >= NEGATIVE_CAP {
            negative.retain(|_, &mut u| now < u);
            if negative.len() >= NEGATIVE_CAP {
                negative.clear();
            }
        }
        negative.insert(key.to_owned(), until);
        self.negative_len.store(negative.len(), Ordering::Relaxed);
    }

    /// Forgets "not found" for keys just written.
    pub(crate) fn forget_not_found<'a>(&self, keys: impl Iterator<Item = &'a str>) {
        if self.negative_len.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.after_fork();
        let mut negative = self.negative.lock();
        for key in keys {
            negative.remove(key);
        }
        self.negative_len.store(negative.len(), Ordering::Relaxed);
    }

    pub(super) fn flight(&self, key: &str) -> Option<Arc<Flight>> {
        self.after_fork();
        self.flights.lock().get(key).cloned()
    }

    /// The flight of `key`: `(flight, true)` if the caller must start it.
    pub(super) fn join(&self, key: &str) -> (Arc<Flight>, bool) {
        self.after_fork();
        let mut flights = self.flights.lock();
        if let Some(flight) = flights.get(key) {
            return (flight.clone(), false);
        }
        let flight = Flight::new();
        flights.insert(key.to_owned(), flight.clone());
        (flight, true)
    }

    pub(super) fn end(&self, key: &str, flight: &Arc<Flight>) {
        self.after_fork();
        let mut flights = self.flights.lock();
        if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            flights.remove(key);
        }
    }
}
