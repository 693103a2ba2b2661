//! `getStats()`: the field names of the storage design it replaces (`hits`
//! per tier, `misses`, `hitRate` in percent, `avgResponseTimes`,
//! `totalOperations`, `tierAvailability`, `circuitBreaker`) plus the
//! engine's own figures: coherence with other processes (`invalidations`,
//! `resyncs`), per tier, loading (`source`, with the source's rate
//! limit), the write-behind outbox (`outbox`), and Redis with its backplane
//! (`redis`; its tier's hits are `hits.redis`).

use napi::bindgen_prelude::{Either, Null, ToNapiValue};
use napi::{Env, JsValue, sys};
use napi_derive::napi;
use tierstack::{BreakerState, BreakerStatus, Tier};

use crate::outbox::OutboxStats;

/// Mean read time per tier, in milliseconds (0 for a tier that served no read).
#[napi(object, object_from_js = false)]
pub struct ResponseTimes {
    /// L1 hits (sampled: one hit in 64 is timed).
    pub memory: f64,
    /// L2 hits (sampled: one hit in 64 is timed).
    pub sqlite: f64,
    /// Redis hits (0 without Redis).
    pub redis: f64,
}

/// Reads each cache tier answered with a fresh value. A value loaded from
/// the source is not a hit (it is in `misses`; `source` counts the loads).
#[napi(object, object_from_js = false)]
pub struct TierHits {
    /// L1 hits.
    pub memory: f64,
    /// L2 hits.
    pub sqlite: f64,
    /// Redis hits (0 without Redis).
    pub redis: f64,
}

/// Which tiers serve.
#[napi(object, object_from_js = false)]
pub struct TierAvailability {
    /// Whether this process keeps an L1 (`memory.enabled`).
    pub memory: bool,
    /// Whether the SQLite file is in use (`sqlite.enabled`).
    pub sqlite: bool,
    /// Whether a `redis` section is in use and Redis's own breaker admits a
    /// call now.
    pub redis: bool,
    /// Whether a source is configured (`options.source` or `github`) and
    /// its breaker admits a call now.
    pub source: bool,
}

/// The counters of one tier.
#[napi(object, object_from_js = false)]
pub struct TierStats {
    /// `"memory"`, `"sqlite"` or `"redis"`.
    pub tier: String,
    /// Reads this tier answered.
    pub hits: f64,
    /// Reads that reached this tier and went on down.
    pub misses: f64,
    /// Mean time of a read this tier answered, in microseconds.
    pub avg_time_us: f64,
    /// Entries removed to keep within `maxBytes`.
    pub evictions: f64,
    /// Entries held (for `sqlite`, including expired rows kept for stale
    /// serving; 0 for `redis`, which this process does not count).
    pub entries: f64,
    /// Bytes charged against the budget (0 for `redis`).
    pub bytes: f64,
    /// The budget (0 for `redis`).
    pub max_bytes: f64,
}

/// A snapshot of a storage's counters.
#[napi(object, object_from_js = false)]
pub struct StorageStats {
    /// Reads each tier answered with a fresh value.
    pub hits: TierHits,
    /// Reads that no tier could answer (a value then loaded from the source
    /// included).
    pub misses: f64,
    /// The share of reads a tier answered, in percent (0–100):
    /// `100 * hits / (hits + misses)` where `hits` is `hits.memory +
    /// hits.sqlite + hits.redis`, 0 before the first read. Not rounded.
    pub hit_rate: f64,
    /// Mean read time per tier, in milliseconds.
    pub avg_response_times: ResponseTimes,
    /// Reads, writes and deletes counted: `hits.memory + hits.sqlite +
    /// hits.redis + misses + sets + deletes`.
    pub total_operations: f64,
    /// Which tiers serve.
    pub tier_availability: TierAvailability,
    /// Values written (each key of an `mset` counts once).
    pub sets: f64,
    /// Deletes of keys that held a fresh value.
    pub deletes: f64,
    /// L1 entries dropped because another process sharing the SQLite file
    /// changed their key.
    pub invalidations: f64,
    /// Times L1 was emptied because another process's changes could not be
    /// told one by one (a clear, or more changes since the last check than
    /// the file's change log keeps).
    pub resyncs: f64,
    /// One entry per enabled tier: `memory`, `sqlite`, `redis`, in that order.
    pub tiers: Vec<TierStats>,
    /// Times the SQLite file was found damaged, set aside as
    /// `<name>.corrupt-<unix time>` and replaced by a fresh one.
    pub sqlite_rebuilds: f64,
    /// Times the SQLite file was found deleted or replaced on disk and the
    /// file now at its path was opened.
    pub sqlite_reopens: f64,
    /// Loading: calls of loaders and of the source, and how reads were answered.
    pub source: SourceStats,
    /// The circuit breaker guarding the loaders (as `getCircuitBreakerStatus()`).
    pub circuit_breaker: CircuitBreakerStatus,
    /// The write-behind outbox (as `outboxStats()`); `null` for the other
    /// strategies.
    pub outbox: Either<OutboxStats, Null>,
    /// Redis: its failures, its breaker and the backplane; `null` without a
    /// `redis` section.
    pub redis: Either<RedisStats, Null>,
}

/// Redis's figures, in `getStats().redis`. Its hits and misses are
/// `hits.redis` and its entry in `tiers`.
#[napi(object, object_from_js = false)]
pub struct RedisStats {
    /// Redis calls that failed: an error, a refused or lost connection, or
    /// no answer within `redis.timeout`. Each is logged as a warning; none
    /// fails a call of this storage.
    pub errors: f64,
    /// Redis calls not made because Redis's breaker was open.
    pub skipped: f64,
    /// Redis's own breaker (the shape of `getCircuitBreakerStatus()`).
    pub breaker: CircuitBreakerStatus,
    /// The backplane; `null` when `redis.backplane` is `false`.
    pub backplane: Either<BackplaneStats, Null>,
}

/// The backplane's traffic, in `getStats().redis.backplane`.
#[napi(object, object_from_js = false)]
pub struct BackplaneStats {
    /// Whether this storage reads the stream of changes now.
    pub connected: bool,
    /// Changes this storage added to the stream.
    pub sent: f64,
    /// Changes of other storages (other processes and machines) read from
    /// the stream and applied here.
    pub received: f64,
    /// Of `received`, those read on reconnecting: made while this storage
    /// was cut off from Redis.
    pub replayed: f64,
    /// Times this storage emptied its memory tier and its SQLite file's
    /// entries because it could not tell what changed while it was cut off
    /// (the stream was trimmed past the last change it read, or Redis lost
    /// it).
    pub resyncs: f64,
    /// Changes that could not be added to the stream while Redis failed,
    /// added later (as deletes) once it answered again.
    pub deferred: f64,
    /// Milliseconds from the latest applied change being added to the
    /// stream (by Redis's clock) to its being applied here (by this host's).
    pub lag_ms: f64,
    /// The most `lagMs` has been since the stats were reset.
    pub max_lag_ms: f64,
}

impl From<tierstack::BackplaneStats> for BackplaneStats {
    fn from(stats: tierstack::BackplaneStats) -> Self {
        Self {
            connected: stats.connected,
            sent: stats.sent as f64,
            received: stats.received as f64,
            replayed: stats.replayed as f64,
            resyncs: stats.resyncs as f64,
            deferred: stats.deferred as f64,
            lag_ms: stats.lag_ms as f64,
            max_lag_ms: stats.max_lag_ms as f64,
        }
    }
}

impl From<tierstack::RedisStats> for RedisStats {
    fn from(stats: tierstack::RedisStats) -> Self {
        Self {
            errors: stats.errors as f64,
            skipped: stats.skipped as f64,
            breaker: stats.breaker.into(),
            backplane: match stats.backplane {
                Some(backplane) => Either::A(backplane.into()),
                None => Either::B(Null),
            },
        }
    }
}

/// The loading counters of a storage.
#[napi(object, object_from_js = false)]
pub struct SourceStats {
    /// Loader calls made (a batch counts once).
    pub requests: f64,
    /// Calls that answered (a value or not found).
    pub successes: f64,
    /// Calls that failed (timeouts included).
    pub failures: f64,
    /// Calls abandoned at `failSafe.hardTimeout` (also in `failures`).
    pub timeouts: f64,
    /// Keys a loader answered "not found" (`undefined`).
    pub not_found: f64,
    /// Loads not attempted because the breaker was open.
    pub rejected: f64,
    /// Callers that waited for a load another caller in this process started.
    pub coalesced: f64,
    /// Loads left to another process sharing the SQLite file.
    pub coalesced_processes: f64,
    /// Loads left to another machine sharing Redis (it held the key's lease
    /// in Redis); the value was read from Redis once it stored it.
    pub coalesced_machines: f64,
    /// Reads answered with a stale copy.
    pub stale_served: f64,
    /// Reads answered "not found" from the negative cache.
    pub negative_hits: f64,
    /// Background refreshes started (refresh-ahead).
    pub refreshes: f64,
    /// The configured source's latest rate-limit figures (GitHub's
    /// `X-RateLimit-*` headers), shared by the processes on the SQLite
    /// file; `null` when it sent none.
    pub rate_limit: Either<RateLimit, Null>,
}

/// A source's rate limit, as its last answer told it.
#[napi(object, object_from_js = false)]
pub struct RateLimit {
    /// Requests allowed per period, or `null` if not told.
    pub limit: Either<f64, Null>,
    /// Requests left in this period.
    pub remaining: f64,
    /// When the period ends, or `null` if not told.
    #[napi(ts_type = "Date | null")]
    pub reset_at: Either<EpochDate, Null>,
}

/// A time in ms since the Unix epoch, handed to JS as a `Date`.
pub struct EpochDate(pub(crate) f64);

impl ToNapiValue for EpochDate {
    // SAFETY: napi-rs calls this on the JS thread with the env of the
    // current call; the body makes only safe napi-rs calls.
    unsafe fn to_napi_value(env: sys::napi_env, date: Self) -> napi::Result<sys::napi_value> {
        Ok(Env::from_raw(env).create_date(date.0)?.raw())
    }
}

impl From<tierstack::RateLimit> for RateLimit {
    fn from(limit: tierstack::RateLimit) -> Self {
        Self {
            limit: match limit.limit {
                Some(n) => Either::A(n as f64),
                None => Either::B(Null),
            },
            remaining: limit.remaining as f64,
            reset_at: match limit.reset_at_ms {
                Some(ms) => Either::A(EpochDate(ms as f64)),
                None => Either::B(Null),
            },
        }
    }
}

/// `getCircuitBreakerStatus()`: the names of the design it replaces.
#[napi(object, object_from_js = false)]
pub struct CircuitBreakerStatus {
    /// `'CLOSED'` (calls go through), `'OPEN'` (no call; stale copies are
    /// served) or `'HALF_OPEN'` (probe calls decide).
    #[napi(ts_type = "'CLOSED' | 'OPEN' | 'HALF_OPEN'")]
    pub state: String,
    /// Whether the state is `'OPEN'`.
    pub is_open: bool,
    /// Consecutive failures (reset by a success, cleared when it closes).
    pub failure_count: f64,
    /// Whether a call made now would be admitted.
    pub is_request_allowed: bool,
    /// When the last failure was recorded (ms since the epoch), or `null`.
    pub last_failure_time: Either<f64, Null>,
    /// While open, when it turns half-open (ms since the epoch); else `null`.
    pub next_attempt_time: Either<f64, Null>,
    /// How many times it has opened (manual opens included).
    pub trips: f64,
}

fn ms(at: Option<u64>) -> Either<f64, Null> {
    match at {
        Some(ms) => Either::A(ms as f64),
        None => Either::B(Null),
    }
}

impl From<BreakerStatus> for CircuitBreakerStatus {
    fn from(status: BreakerStatus) -> Self {
        let state = match status.state {
            BreakerState::Closed => "CLOSED",
            BreakerState::Open => "OPEN",
            BreakerState::HalfOpen => "HALF_OPEN",
        };
        Self {
            state: state.to_owned(),
            is_open: status.state == BreakerState::Open,
            failure_count: f64::from(status.failure_count),
            is_request_allowed: status.allows_request,
            last_failure_time: ms(status.last_failure_at),
            next_attempt_time: ms(status.next_attempt_at),
            trips: status.trips as f64,
        }
    }
}

impl StorageStats {
    /// The JS stats of a snapshot; `has_source`: whether a source is
    /// configured.
    pub(crate) fn new(stats: tierstack::Stats, has_source: bool) -> Self {
        let avg_ms = |tier| stats.tier(tier).map_or(0.0, |t| t.avg_time_us / 1000.0);
        let hits = |tier| stats.tier(tier).map_or(0.0, |t| t.hits as f64);
        Self {
            hits: TierHits {
                memory: hits(Tier::Memory),
                sqlite: hits(Tier::Sqlite),
                redis: hits(Tier::Redis),
            },
            misses: stats.misses as f64,
            hit_rate: match stats.hits + stats.misses {
                0 => 0.0,
                reads => 100.0 * stats.hits as f64 / reads as f64,
            },
            avg_response_times: ResponseTimes {
                memory: avg_ms(Tier::Memory),
                sqlite: avg_ms(Tier::Sqlite),
                redis: avg_ms(Tier::Redis),
            },
            total_operations: (stats.hits + stats.misses + stats.sets + stats.deletes) as f64,
            tier_availability: TierAvailability {
                memory: stats.tier(Tier::Memory).is_some(),
                sqlite: stats.tier(Tier::Sqlite).is_some(),
                redis: stats
                    .redis
                    .as_ref()
                    .is_some_and(|redis| redis.breaker.allows_request),
                source: has_source && stats.breaker.allows_request,
            },
            sets: stats.sets as f64,
            deletes: stats.deletes as f64,
            invalidations: stats.invalidations as f64,
            resyncs: stats.resyncs as f64,
            tiers: stats
                .tiers
                .iter()
                .map(|t| TierStats {
                    tier: t.tier.as_str().to_owned(),
                    hits: t.hits as f64,
                    misses: t.misses as f64,
                    avg_time_us: t.avg_time_us,
                    evictions: t.evictions as f64,
                    entries: t.entries as f64,
                    bytes: t.bytes as f64,
                    max_bytes: t.max_bytes as f64,
                })
                .collect(),
            sqlite_rebuilds: stats.sqlite_rebuilds as f64,
            sqlite_reopens: stats.sqlite_reopens as f64,
            source: SourceStats {
                requests: stats.source.requests as f64,
                successes: stats.source.successes as f64,
                failures: stats.source.failures as f64,
                timeouts: stats.source.timeouts as f64,
                not_found: stats.source.not_found as f64,
                rejected: stats.source.rejected as f64,
                coalesced: stats.source.coalesced as f64,
                coalesced_processes: stats.source.coalesced_processes as f64,
                coalesced_machines: stats.source.coalesced_machines as f64,
                stale_served: stats.source.stale_served as f64,
                negative_hits: stats.source.negative_hits as f64,
                refreshes: stats.source.refreshes as f64,
                rate_limit: match stats.source.rate_limit {
                    Some(limit) => Either::A(limit.into()),
                    None => Either::B(Null),
                },
            },
            circuit_breaker: stats.breaker.into(),
            outbox: match stats.outbox {
                Some(outbox) => Either::A(outbox.into()),
                None => Either::B(Null),
            },
            redis: match stats.redis {
                Some(redis) => Either::A(redis.into()),
                None => Either::B(Null),
            },
        }
    }
}
