//! What the cache holds and how it fared: keys, entries with their
//! metadata, tags, the L2 file's inspection, and the stats snapshot.

use super::Engine;
use crate::entry::{Entry, Metadata, Tier};
use crate::error::Result;
use crate::key::{self, Glob};
use crate::stats::{RedisStats, SourceStats, Stats};
use crate::tier::Inspection;
use crate::tier::memory::L1;

impl Engine {
    pub(crate) fn keys(&self, pattern: &str) -> Result<Vec<String>> {
        self.check_open()?;
        let glob = Glob::new(pattern)?;
        let now = self.clock.now_ms();
        let keys = match &self.sqlite {
            Some(sqlite) => sqlite.fresh_keys(&glob.to_sqlite_glob(), now),
            None => Ok(Vec::new()),
        };
        self.follow_file_swap();
        let mut keys: Vec<String> = keys?;
        if let Some(memory) = self.l1(now) {
            keys.extend(memory.fresh_keys(now).filter(|k| glob.matches(k)));
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    pub(crate) fn len(&self) -> Result<u64> {
        Ok(self.keys("*")?.len() as u64)
    }

    /// The stored entry of `key`, fresh or not, with every read of it
    /// counted so far: those L2 recorded, those it holds to record, and
    /// this process's L1 hits not yet handed to it. Not counted as a read.
    pub(crate) fn entry(&self, key: &str) -> Result<Option<Entry>> {
        self.check_open()?;
        key::validate(key)?;
        let now = self.clock.now_ms();
        let Some(sqlite) = &self.sqlite else {
            let held = self
                .memory
                .as_ref()
                .and_then(|m| m.get().peek_fresh(key, now));
            return Ok(held.map(|e| {
                let reads = self
                    .memory
                    .as_ref()
                    .map_or(0, |m| m.get().pending_reads(key, 0));
                Entry {
                    key: key.to_owned(),
                    meta: Metadata {
                        first_written_ms: e.first_ms,
                        created_ms: e.created_ms,
                        expires_ms: e.expires_ms,
                        stale_until_ms: e.expires_ms,
                        size: key.len() as u64
                            + e.value.len() as u64
                            + crate::tier::MEMORY_ENTRY_OVERHEAD,
                        access_count: reads,
                        last_access_ms: e.created_ms,
                        ..Metadata::default()
                    },
                    value: e.value,
                }
            }));
        };
        // No hand-over of reads runs meanwhile, so each read is in exactly
        // one of the places added up here.
        let _counting = sqlite.counting();
        let found = sqlite.entry(key);
        self.follow_file_swap();
        let Some((mut entry, row)) = found? else {
            return Ok(None);
        };
        if let Some(memory) = self.memory.as_ref().map(L1::get) {
            entry.meta.access_count += memory.pending_reads(key, row);
        }
        Ok(Some(entry))
    }

    /// [`Engine::entry`] if fresh at the clock's now.
    pub(crate) fn fresh_entry(&self, key: &str) -> Result<Option<Entry>> {
        let entry = self.entry(key)?;
        Ok(entry.filter(|e| e.is_fresh(self.clock.now_ms())))
    }

    /// The tags L2's rows carry, with how many rows carry each.
    pub(crate) fn tags(&self) -> Result<Vec<(String, u64)>> {
        self.check_open()?;
        match &self.sqlite {
            Some(sqlite) => sqlite.tag_counts(),
            None => Ok(Vec::new()),
        }
    }

    pub(crate) fn inspect(&self) -> Result<Option<Inspection>> {
        self.check_open()?;
        self.sqlite
            .as_ref()
            .map(|s| s.inspect(self.clock.now_ms()))
            .transpose()
    }

    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counters;
        let mut tiers = Vec::with_capacity(2);
        if let Some(m) = self.memory.as_ref().map(L1::get) {
            tiers.push(c.tier(Tier::Memory).snapshot(
                Tier::Memory,
                m.entries(),
                m.bytes(),
                m.max_bytes(),
            ));
        }
        if let Some(s) = &self.sqlite {
            tiers.push(c.tier(Tier::Sqlite).snapshot(
                Tier::Sqlite,
                s.entries(),
                s.bytes(),
                s.max_bytes(),
            ));
        }
        if self.redis.is_some() {
            tiers.push(c.tier(Tier::Redis).snapshot(Tier::Redis, 0, 0, 0));
        }
        let hits: u64 = tiers.iter().map(|t| t.hits).sum();
        let misses = c.misses.get();
        let reads = hits + misses;
        Stats {
            hits,
            misses,
            hit_rate: if reads == 0 {
                0.0
            } else {
                hits as f64 / reads as f64
            },
            sets: c.sets.get(),
            deletes: c.deletes.get(),
            invalidations: c.coherence_drops.get(),
            resyncs: c.coherence_resets.get(),
            tiers,
            sqlite_rebuilds: c.sqlite_rebuilds.get(),
            sqlite_reopens: c.sqlite_reopens.get(),
            not_stored: c.not_stored.get(),
            source: SourceStats {
                rate_limit: self.source_rate_limit(),
                ..c.source.snapshot()
            },
            breaker: self.loads.breaker.status(),
            outbox: self.outbox_stats(),
            redis: self.redis.as_ref().map(|redis| RedisStats {
                errors: c.redis_errors.get(),
                skipped: c.redis_skipped.get(),
                breaker: redis.breaker_status(),
                backplane: redis.announces().then(|| c.backplane.snapshot()),
            }),
        }
    }

    pub(crate) fn reset_stats(&self) {
        self.counters.reset();
    }
}
