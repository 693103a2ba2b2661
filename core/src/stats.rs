//! Counters and their snapshot: the counters every tier and the load path
//! bump (each a [`Counter`], see `stats/counter.rs`), and [`Stats`], the
//! snapshot a cache reports (as JSON, or for Prometheus: see
//! `stats/prometheus.rs`).
//!
//! L1 and L2 hit times are sampled (a thread's first hit of the tier, then
//! one in [`TIME_SAMPLE_EVERY`], chosen from the thread's own hit count) to
//! keep clock reads off the hit path; Redis hits are all timed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::source::RateLimit;

use crate::entry::Tier;

pub(crate) use self::counter::Counter;

mod counter;
mod prometheus;

/// One L1 or L2 hit in this many (per thread) is timed for [`TierStats::avg_time_us`].
pub const TIME_SAMPLE_EVERY: u32 = 64;

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
    /// to its return (for `memory` and `sqlite`, over a sample of one hit
    /// in 64).
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
}

impl Serialize for Tier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
