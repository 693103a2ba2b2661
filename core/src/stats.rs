//! Counters and their snapshot.
//!
//! Counters are striped across cache-line-padded cells chosen per thread, so
//! threads hitting L1 at once do not fight over one cache line. L1 hit times
//! are sampled (one hit in [`TIME_SAMPLE_EVERY`] per thread is timed) to keep
//! clock reads off the hit path; every other tier's reads are all timed.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::entry::Tier;

const STRIPES: usize = 16;

/// One L1 read in this many (per thread) is timed for [`TierStats::avg_time_us`].
pub const TIME_SAMPLE_EVERY: u32 = 64;

#[repr(align(128))]
#[derive(Default)]
struct Cell128(AtomicU64);

/// A counter that many threads can bump without sharing a cache line.
#[derive(Default)]
pub(crate) struct Counter {
    cells: [Cell128; STRIPES],
}

thread_local! {
    static STRIPE: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
    };
    static SAMPLE_TICK: Cell<u32> = const { Cell::new(0) };
}

impl Counter {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        let stripe = STRIPE.with(|s| *s);
        self.cells[stripe].0.fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn incr(&self) {
        self.add(1);
    }

    pub(crate) fn get(&self) -> u64 {
        self.cells.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn reset(&self) {
        for c in &self.cells {
            c.0.store(0, Ordering::Relaxed);
        }
    }
}

/// Whether this L1 read should be timed.
#[inline]
pub(crate) fn sample_this_read() -> Option<Instant> {
    SAMPLE_TICK.with(|t| {
        let n = t.get().wrapping_add(1);
        t.set(n);
        (n % TIME_SAMPLE_EVERY == 0).then(Instant::now)
    })
}

/// The counters of one tier.
#[derive(Default)]
pub(crate) struct TierCounters {
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) evictions: Counter,
    timed: Counter,
    time_ns: Counter,
}

impl TierCounters {
    #[inline]
    pub(crate) fn record_time(&self, took: Duration) {
        self.timed.incr();
        self.time_ns.add(took.as_nanos() as u64);
    }

    fn avg_time_us(&self) -> f64 {
        match self.timed.get() {
            0 => 0.0,
            n => self.time_ns.get() as f64 / n as f64 / 1000.0,
        }
    }

    fn reset(&self) {
        for c in [
            &self.hits,
            &self.misses,
            &self.evictions,
            &self.timed,
            &self.time_ns,
        ] {
            c.reset();
        }
    }

    pub(crate) fn snapshot(
        &self,
        tier: Tier,
        entries: u64,
        bytes: u64,
        max_bytes: u64,
    ) -> TierStats {
        TierStats {
            tier,
            hits: self.hits.get(),
            misses: self.misses.get(),
            avg_time_us: self.avg_time_us(),
            evictions: self.evictions.get(),
            entries,
            bytes,
            max_bytes,
        }
    }
}

/// Every counter of a cache.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) memory: TierCounters,
    pub(crate) sqlite: TierCounters,
    pub(crate) misses: Counter,
    pub(crate) sets: Counter,
    pub(crate) deletes: Counter,
}

impl Counters {
    pub(crate) fn tier(&self, tier: Tier) -> &TierCounters {
        match tier {
            Tier::Memory => &self.memory,
            Tier::Sqlite => &self.sqlite,
        }
    }

    pub(crate) fn reset(&self) {
        self.memory.reset();
        self.sqlite.reset();
        for c in [&self.misses, &self.sets, &self.deletes] {
            c.reset();
        }
    }
}

/// A snapshot of a cache's counters, from [`crate::Cache::stats`].
///
/// Serialises to JSON with these field names (the C host's stats JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Reads that some tier answered with a fresh value.
    pub hits: u64,
    /// Reads that no tier could answer.
    pub misses: u64,
    /// `hits / (hits + misses)`, 0 before the first read.
    pub hit_rate: f64,
    /// Values written (each key of an `mset` counts once).
    pub sets: u64,
    /// Deletes of keys that held a fresh value.
    pub deletes: u64,
    /// One entry per enabled tier, L1 first.
    pub tiers: Vec<TierStats>,
}

/// The counters of one tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierStats {
    /// Which tier.
    pub tier: Tier,
    /// Reads this tier answered.
    pub hits: u64,
    /// Reads that reached this tier and went on down.
    pub misses: u64,
    /// Mean time of a read this tier answered, in microseconds, from the call
    /// to its return (for `memory`, over a sample of one read in 64).
    pub avg_time_us: f64,
    /// Entries removed to keep within `max_bytes`.
    pub evictions: u64,
    /// Entries held (for `sqlite`, including expired rows kept for stale serving).
    pub entries: u64,
    /// Bytes charged against the budget.
    pub bytes: u64,
    /// The budget.
    pub max_bytes: u64,
}

impl Stats {
    /// The stats of `tier`, if it is enabled.
    pub fn tier(&self, tier: Tier) -> Option<&TierStats> {
        self.tiers.iter().find(|t| t.tier == tier)
    }

    /// Prometheus text exposition of these stats.
    pub fn to_prometheus(&self, namespace: &str) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let ns = namespace;
        for (name, value) in [
            ("hits_total", self.hits),
            ("misses_total", self.misses),
            ("sets_total", self.sets),
            ("deletes_total", self.deletes),
        ] {
            let _ = writeln!(out, "# TYPE tierstack_{name} counter");
            let _ = writeln!(out, "tierstack_{name}{{namespace=\"{ns}\"}} {value}");
        }
        type Family = (&'static str, &'static str, fn(&TierStats) -> f64);
        let families: [Family; 6] = [
            ("tier_hits_total", "counter", |t| t.hits as f64),
            ("tier_misses_total", "counter", |t| t.misses as f64),
            ("tier_evictions_total", "counter", |t| t.evictions as f64),
            ("tier_entries", "gauge", |t| t.entries as f64),
            ("tier_bytes", "gauge", |t| t.bytes as f64),
            ("tier_avg_time_microseconds", "gauge", |t| t.avg_time_us),
        ];
        for (name, kind, value) in families {
            let _ = writeln!(out, "# TYPE tierstack_{name} {kind}");
            for t in &self.tiers {
                let _ = writeln!(
                    out,
                    "tierstack_{name}{{namespace=\"{ns}\",tier=\"{}\"}} {}",
                    t.tier,
                    value(t)
                );
            }
        }
        out
    }
}

impl Serialize for Tier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_sums_across_threads() {
        let counter = std::sync::Arc::new(Counter::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = counter.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| c.incr()))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.get(), 4000);
    }

    #[test]
    fn one_read_in_sample_every_is_timed() {
        let timed = (0..TIME_SAMPLE_EVERY * 3)
            .filter(|_| sample_this_read().is_some())
            .count();
        assert_eq!(timed, 3);
    }
}
