//! Counters and their snapshot.
//!
//! Each counter has one cache-line-padded cell per thread slot. The first
//! [`OWNED_SLOTS`] threads to touch any counter each own a slot until they
//! exit, and bump their cell with a plain load and store: one writer per
//! cell, so no locked instruction on the L1 hit path and no cache line
//! shared between threads. Threads beyond that share one last cell, bumped
//! atomically. Reads sum the cells.
//!
//! L1 hit times are sampled (one hit in [`TIME_SAMPLE_EVERY`] per thread is
//! timed, chosen from the thread's own hit count) to keep clock reads off the hit path; every other tier's reads
//! are all timed.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::source::RateLimit;

use crate::entry::Tier;

/// Threads that get a cell of their own in every counter.
const OWNED_SLOTS: usize = 15;
/// The cell shared by every other thread.
const SHARED_SLOT: usize = OWNED_SLOTS;
const UNASSIGNED: usize = usize::MAX;

/// One L1 read in this many (per thread) is timed for [`TierStats::avg_time_us`].
pub const TIME_SAMPLE_EVERY: u32 = 64;

#[repr(align(128))]
#[derive(Default)]
struct Cell128(AtomicU64);

/// A counter that many threads can bump without sharing a cache line.
#[derive(Default)]
pub(crate) struct Counter {
    cells: [Cell128; OWNED_SLOTS + 1],
}

static SLOT_TAKEN: [AtomicBool; OWNED_SLOTS] = [const { AtomicBool::new(false) }; OWNED_SLOTS];

/// Per-thread state: the slot this thread writes. Dropping it (at thread
/// exit) frees the slot.
struct Local {
    slot: Cell<usize>,
}

impl Drop for Local {
    fn drop(&mut self) {
        let slot = self.slot.replace(SHARED_SLOT);
        if slot < OWNED_SLOTS {
            // Release: this thread's last stores are visible to the next owner.
            SLOT_TAKEN[slot].store(false, Ordering::Release);
        }
    }
}

thread_local! {
    static LOCAL: Local = const { Local { slot: Cell::new(UNASSIGNED) } };
}

#[inline]
fn slot() -> usize {
    LOCAL
        .try_with(|l| match l.slot.get() {
            UNASSIGNED => assign_slot(&l.slot),
            slot => slot,
        })
        .unwrap_or(SHARED_SLOT)
}

#[cold]
fn assign_slot(cell: &Cell<usize>) -> usize {
    let slot = SLOT_TAKEN
        .iter()
        .position(|taken| {
            taken
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })
        .unwrap_or(SHARED_SLOT);
    cell.set(slot);
    slot
}

impl Counter {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        let slot = slot();
        let cell = &self.cells[slot].0;
        if slot == SHARED_SLOT {
            cell.fetch_add(n, Ordering::Relaxed);
        } else {
            // This thread is the cell's only writer.
            cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        }
    }

    #[inline]
    pub(crate) fn incr(&self) {
        self.add(1);
    }

    /// The start time of the next event to time, if the next bump of this
    /// thread's cell is one in [`TIME_SAMPLE_EVERY`]; reads only, so the
    /// sampling decision adds no store to the hit path.
    #[inline]
    pub(crate) fn sample_next(&self) -> Option<Instant> {
        let n = self.cells[slot()].0.load(Ordering::Relaxed);
        (n % u64::from(TIME_SAMPLE_EVERY) == u64::from(TIME_SAMPLE_EVERY) - 1).then(Instant::now)
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
    pub(crate) redis: TierCounters,
    /// Redis calls that failed (see [`RedisStats::errors`]).
    pub(crate) redis_errors: Counter,
    /// Redis calls skipped while its breaker was open.
    pub(crate) redis_skipped: Counter,
    /// The backplane's counters (see [`BackplaneStats`]).
    pub(crate) backplane: BackplaneCounters,
    pub(crate) misses: Counter,
    pub(crate) sets: Counter,
    /// Loaded values answered but not stored (see [`Stats::not_stored`]).
    pub(crate) not_stored: Counter,
    pub(crate) deletes: Counter,
    /// L1 entries dropped because another process changed them.
    pub(crate) coherence_drops: Counter,
    /// Times L1 was emptied because what changed could not be told.
    pub(crate) coherence_resets: Counter,
    pub(crate) sqlite_rebuilds: Counter,
    pub(crate) sqlite_reopens: Counter,
    pub(crate) source: SourceCounters,
}

/// The counters of loading from the source; see [`SourceStats`].
#[derive(Default)]
pub(crate) struct SourceCounters {
    pub(crate) requests: Counter,
    pub(crate) successes: Counter,
    pub(crate) failures: Counter,
    pub(crate) timeouts: Counter,
    pub(crate) not_found: Counter,
    pub(crate) rejected: Counter,
    pub(crate) coalesced: Counter,
    pub(crate) coalesced_processes: Counter,
    pub(crate) coalesced_machines: Counter,
    pub(crate) stale_served: Counter,
    pub(crate) negative_hits: Counter,
    pub(crate) refreshes: Counter,
}

impl SourceCounters {
    fn all(&self) -> [&Counter; 12] {
        [
            &self.requests,
            &self.successes,
            &self.failures,
            &self.timeouts,
            &self.not_found,
            &self.rejected,
            &self.coalesced,
            &self.coalesced_processes,
            &self.coalesced_machines,
            &self.stale_served,
            &self.negative_hits,
            &self.refreshes,
        ]
    }

    pub(crate) fn snapshot(&self) -> SourceStats {
        SourceStats {
            requests: self.requests.get(),
            successes: self.successes.get(),
            failures: self.failures.get(),
            timeouts: self.timeouts.get(),
            not_found: self.not_found.get(),
            rejected: self.rejected.get(),
            coalesced: self.coalesced.get(),
            coalesced_processes: self.coalesced_processes.get(),
            coalesced_machines: self.coalesced_machines.get(),
            stale_served: self.stale_served.get(),
            negative_hits: self.negative_hits.get(),
            refreshes: self.refreshes.get(),
            rate_limit: None,
        }
    }
}

/// Loading from the source, in [`Stats::source`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceStats {
    /// Calls made to the source (a batched call counts once).
    pub requests: u64,
    /// Calls that answered (a value, not-modified or not-found).
    pub successes: u64,
    /// Calls that failed (timeouts included).
    pub failures: u64,
    /// Calls abandoned at `fail_safe.hard_timeout` (also in `failures`).
    pub timeouts: u64,
    /// Keys the source answered "not found".
    pub not_found: u64,
    /// Loads not attempted because the circuit breaker was open.
    pub rejected: u64,
    /// Callers that waited for a load another caller of this process
    /// started, instead of calling the source themselves.
    pub coalesced: u64,
    /// Loads this process left to another process sharing the L2 file,
    /// reading what it stored.
    pub coalesced_processes: u64,
    /// Loads this process left to another machine sharing Redis (a lease
    /// another machine held), reading what it stored in Redis.
    pub coalesced_machines: u64,
    /// Reads answered with a stale copy (the source failed, was cut off by
    /// the breaker, or was slower than `fail_safe.soft_timeout`).
    pub stale_served: u64,
    /// Reads answered "not found" from the negative cache.
    pub negative_hits: u64,
    /// Background refreshes started (refresh-ahead).
    pub refreshes: u64,
    /// The configured source's latest rate-limit figures (GitHub's
    /// `X-RateLimit-*` headers), shared by the processes on the L2 file;
    /// `None` when it sent none.
    pub rate_limit: Option<RateLimit>,
}

impl Counters {
    pub(crate) fn tier(&self, tier: Tier) -> &TierCounters {
        match tier {
            Tier::Memory => &self.memory,
            Tier::Sqlite | Tier::Source => &self.sqlite,
            Tier::Redis => &self.redis,
        }
    }

    pub(crate) fn reset(&self) {
        self.memory.reset();
        self.sqlite.reset();
        self.redis.reset();
        self.backplane.reset();
        for c in [
            &self.redis_errors,
            &self.redis_skipped,
            &self.misses,
            &self.sets,
            &self.not_stored,
            &self.deletes,
            &self.coherence_drops,
            &self.coherence_resets,
            &self.sqlite_rebuilds,
            &self.sqlite_reopens,
        ] {
            c.reset();
        }
        self.source.all().into_iter().for_each(Counter::reset);
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
    /// L1 entries dropped because another process sharing the L2 file
    /// changed their key (see [`crate::coherence`]).
    pub invalidations: u64,
    /// Times L1 was emptied because another process's changes could not be
    /// told one by one (a cache opening or forked, a clear, a long sleep).
    pub resyncs: u64,
    /// One entry per enabled tier, L1 first.
    pub tiers: Vec<TierStats>,
    /// Times this process found the L2 file damaged and, as
    /// `sqlite.on_corrupt` = `rebuild` says, set it aside as
    /// `<name>.corrupt-<unix time>` and started a fresh one.
    pub sqlite_rebuilds: u64,
    /// Times this process found the L2 file deleted or replaced on disk and
    /// opened the file now at its path (creating it if missing).
    pub sqlite_reopens: u64,
    /// Values loaded from the source and handed to the caller but not
    /// stored: too large for every enabled tier (larger than
    /// `sqlite.max_bytes`, or with no L2 than one L1 entry may take), or the
    /// write failed. Each is also logged as a warning. (A value a caller
    /// writes itself is refused with `invalid_argument` instead.)
    pub not_stored: u64,
    /// Loading from the source.
    pub source: SourceStats,
    /// The circuit breaker guarding the source (reading it changes nothing).
    pub breaker: crate::BreakerStatus,
    /// The write-behind outbox; `None` for the other strategies.
    pub outbox: Option<crate::OutboxStats>,
    /// The Redis tier's failures and breaker; `None` without one (its
    /// hits and misses are its entry in `tiers`).
    pub redis: Option<RedisStats>,
}

/// The Redis tier's failures, in [`Stats::redis`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedisStats {
    /// Calls that failed: an error, a refused or lost connection, or no
    /// answer within `redis.timeout`. Each is also logged as a warning;
    /// none reaches the caller.
    pub errors: u64,
    /// Calls not made because the tier's breaker was open.
    pub skipped: u64,
    /// The tier's own breaker (reading it changes nothing).
    pub breaker: crate::BreakerStatus,
    /// The backplane; `None` when `redis.backplane` is off.
    pub backplane: Option<BackplaneStats>,
}

/// The backplane's traffic, in [`RedisStats::backplane`] (see
/// `crate::backplane`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackplaneStats {
    /// Whether the reader is connected to the stream now.
    pub connected: bool,
    /// Changes this process announced on the stream.
    pub sent: u64,
    /// Other processes' changes read from the stream and applied here.
    pub received: u64,
    /// Of `received`, those read on reconnecting: changes made while this
    /// process was not reading.
    pub replayed: u64,
    /// Times this process emptied its L1 and its L2 file's entries because
    /// it could not tell what changed: the stream was trimmed past the
    /// last change it read, or Redis lost it.
    pub resyncs: u64,
    /// Changes that could not be announced (Redis failing) and were
    /// announced later, as deletes, once it answered.
    pub deferred: u64,
    /// Milliseconds from the latest change applied here (not replayed)
    /// being added to the stream (by Redis's clock) to its being applied
    /// (by this host's).
    pub lag_ms: u64,
    /// The most `lag_ms` has been since the stats were reset.
    pub max_lag_ms: u64,
}

/// The backplane's counters.
#[derive(Default)]
pub(crate) struct BackplaneCounters {
    pub(crate) sent: Counter,
    pub(crate) received: Counter,
    pub(crate) replayed: Counter,
    pub(crate) resyncs: Counter,
    pub(crate) deferred: Counter,
    pub(crate) lag_ms: std::sync::atomic::AtomicU64,
    pub(crate) max_lag_ms: std::sync::atomic::AtomicU64,
    pub(crate) connected: AtomicBool,
}

impl BackplaneCounters {
    /// Records the lag of a change applied now.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn record_lag(&self, lag_ms: u64) {
        self.lag_ms.store(lag_ms, Ordering::Relaxed);
        self.max_lag_ms.fetch_max(lag_ms, Ordering::Relaxed);
    }

    fn reset(&self) {
        for c in [
            &self.sent,
            &self.received,
            &self.replayed,
            &self.resyncs,
            &self.deferred,
        ] {
            c.reset();
        }
        self.lag_ms.store(0, Ordering::Relaxed);
        self.max_lag_ms.store(0, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> BackplaneStats {
        BackplaneStats {
            connected: self.connected.load(Ordering::Relaxed),
            sent: self.sent.get(),
            received: self.received.get(),
            replayed: self.replayed.get(),
            resyncs: self.resyncs.get(),
            deferred: self.deferred.get(),
            lag_ms: self.lag_ms.load(Ordering::Relaxed),
            max_lag_ms: self.max_lag_ms.load(Ordering::Relaxed),
        }
    }
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
            ("not_stored_total", self.not_stored),
            ("deletes_total", self.deletes),
            ("invalidations_total", self.invalidations),
            ("resyncs_total", self.resyncs),
            ("sqlite_rebuilds_total", self.sqlite_rebuilds),
            ("sqlite_reopens_total", self.sqlite_reopens),
            ("source_requests_total", self.source.requests),
            ("source_successes_total", self.source.successes),
            ("source_failures_total", self.source.failures),
            ("source_timeouts_total", self.source.timeouts),
            ("source_not_found_total", self.source.not_found),
            ("source_rejected_total", self.source.rejected),
            ("source_coalesced_total", self.source.coalesced),
            (
                "source_coalesced_processes_total",
                self.source.coalesced_processes,
            ),
            (
                "source_coalesced_machines_total",
                self.source.coalesced_machines,
            ),
            ("stale_served_total", self.source.stale_served),
            ("negative_hits_total", self.source.negative_hits),
            ("refreshes_total", self.source.refreshes),
            ("breaker_trips_total", self.breaker.trips),
        ]
        .into_iter()
        .chain(self.redis.iter().flat_map(|r| {
            [
                ("redis_errors_total", r.errors),
                ("redis_skipped_total", r.skipped),
            ]
        }))
        .chain(
            self.redis
                .iter()
                .flat_map(|r| r.backplane.iter())
                .flat_map(|b| {
                    [
                        ("backplane_sent_total", b.sent),
                        ("backplane_received_total", b.received),
                        ("backplane_replayed_total", b.replayed),
                        ("backplane_resyncs_total", b.resyncs),
                        ("backplane_deferred_total", b.deferred),
                    ]
                }),
        ) {
            let _ = writeln!(out, "# TYPE tierstack_{name} counter");
            let _ = writeln!(out, "tierstack_{name}{{namespace=\"{ns}\"}} {value}");
        }
        let state = self.breaker.state.as_str();
        let _ = writeln!(out, "# TYPE tierstack_breaker_open gauge");
        let _ = writeln!(
            out,
            "tierstack_breaker_open{{namespace=\"{ns}\",state=\"{state}\"}} {}",
            u8::from(!self.breaker.allows_request)
        );
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
    fn counter_sums_across_threads_owned_and_shared() {
        let counter = std::sync::Arc::new(Counter::default());
        // More threads than owned slots, so the shared cell is used too.
        let threads = OWNED_SLOTS + 9;
        let all_started = std::sync::Arc::new(std::sync::Barrier::new(threads));
        let threads: Vec<_> = (0..threads)
            .map(|_| {
                let (c, all_started) = (counter.clone(), all_started.clone());
                std::thread::spawn(move || {
                    c.incr();
                    all_started.wait();
                    (1..1000).for_each(|_| c.incr());
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.get(), 1000 * (OWNED_SLOTS as u64 + 9));
    }

    #[test]
    fn one_event_in_sample_every_is_timed() {
        let counter = Counter::default();
        let timed = (0..TIME_SAMPLE_EVERY * 3)
            .filter(|_| {
                let sampled = counter.sample_next().is_some();
                counter.incr();
                sampled
            })
            .count();
        assert_eq!(timed, 3);
    }
}
