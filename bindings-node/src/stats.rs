//! `getStats()`: the field names of the storage design it replaces (`hits`,
//! `misses`, `hitRate`, `avgResponseTimes`, `totalOperations`) plus the
//! engine's own figures: coherence with other processes (`invalidations`,
//! `resyncs`) and per tier.

use napi_derive::napi;
use tierstack::Tier;

/// Mean read time per tier, in milliseconds (0 for a tier that served no read).
#[napi(object, object_from_js = false)]
pub struct ResponseTimes {
    /// L1 hits (sampled: one read in 64 is timed).
    pub memory: f64,
    /// L2 hits.
    pub sqlite: f64,
}

/// The counters of one tier.
#[napi(object, object_from_js = false)]
pub struct TierStats {
    /// `"memory"` or `"sqlite"`.
    pub tier: String,
    /// Reads this tier answered.
    pub hits: f64,
    /// Reads that reached this tier and went on down.
    pub misses: f64,
    /// Mean time of a read this tier answered, in microseconds.
    pub avg_time_us: f64,
    /// Entries removed to keep within `maxBytes`.
    pub evictions: f64,
    /// Entries held (for `sqlite`, including expired rows kept for stale serving).
    pub entries: f64,
    /// Bytes charged against the budget.
    pub bytes: f64,
    /// The budget.
    pub max_bytes: f64,
}

/// A snapshot of a storage's counters.
#[napi(object, object_from_js = false)]
pub struct StorageStats {
    /// Reads that some tier answered with a fresh value.
    pub hits: f64,
    /// Reads that no tier could answer.
    pub misses: f64,
    /// `hits / (hits + misses)`, 0 before the first read.
    pub hit_rate: f64,
    /// Mean read time per tier, in milliseconds.
    pub avg_response_times: ResponseTimes,
    /// `hits + misses + sets + deletes`.
    pub total_operations: f64,
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
    /// One entry per enabled tier, L1 first.
    pub tiers: Vec<TierStats>,
    /// Times the SQLite file was found damaged, set aside as
    /// `<name>.corrupt-<unix time>` and replaced by a fresh one.
    pub sqlite_rebuilds: f64,
    /// Times the SQLite file was found deleted or replaced on disk and the
    /// file now at its path was opened.
    pub sqlite_reopens: f64,
}

impl From<tierstack::Stats> for StorageStats {
    fn from(stats: tierstack::Stats) -> Self {
        let avg_ms = |tier| stats.tier(tier).map_or(0.0, |t| t.avg_time_us / 1000.0);
        Self {
            hits: stats.hits as f64,
            misses: stats.misses as f64,
            hit_rate: stats.hit_rate,
            avg_response_times: ResponseTimes {
                memory: avg_ms(Tier::Memory),
                sqlite: avg_ms(Tier::Sqlite),
            },
            total_operations: (stats.hits + stats.misses + stats.sets + stats.deletes) as f64,
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
        }
    }
}
