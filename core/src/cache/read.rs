//! The read path: L1, then L2, then Redis, with promotion of a fresh hit
//! and every read counted; `mget` and `has`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Engine;
use crate::entry::{Lookup, Tier};
use crate::error::Result;
use crate::key;
use crate::tier::memory::MemEntry;
use crate::tier::redis::{ReadTicket, RedisTier};
use crate::tier::sqlite;

/// Reads `key` from Redis with `read`, and again (up to twice more) if a
/// change of it was under way or began meanwhile: the answer may be what
/// that change replaced, which would then not be kept (see
/// [`Engine::promote_from_redis`]). Returns the read's ticket, and the
/// answer.
fn read_settled<T>(redis: &RedisTier, key: &str, read: impl Fn() -> T) -> (ReadTicket, T) {
    let mut tries = 1;
    loop {
        let ticket = redis.ticket(key);
        let got = read();
        if tries == 3 || redis.still_valid(ticket) {
            return (ticket, got);
        }
        tries += 1;
    }
}

impl Engine {
    /// The read path: L1, then L2 with promotion.
    #[inline]
    pub(crate) fn lookup(&self, key: &str) -> Result<Option<Lookup>> {
        self.read(key, memory_lookup, |lookup| lookup)
    }

    /// [`Engine::lookup`]'s value alone: an L1 hit builds no [`Lookup`]
    /// (its tier and age cost a `get` that drops them about 17
    /// instructions a hit, some 5 % of it). Always inlined, as
    /// [`crate::blocking::Cache::get`] is (see there).
    #[inline(always)]
    pub(crate) fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.read(key, |entry, _| entry.value, |lookup| lookup.value)
    }

    /// The read path, handing an L1 hit to `hit` (with the time) and what
    /// the tiers below found to `below`.
    #[inline(always)]
    fn read<T>(
        &self,
        key: &str,
        hit: impl FnOnce(MemEntry, u64) -> T,
        below: impl FnOnce(Lookup) -> T,
    ) -> Result<Option<T>> {
        self.check_open()?;
        let now = self.clock.now_ms();
        if let Some(entry) = self.memory_hit(key, now) {
            if now >= entry.refresh_ms {
                self.refresh_configured(key, entry.created_ms);
            }
            return Ok(Some(hit(entry, now)));
        }
        Ok(self.lookup_miss(key, now)?.map(|(lookup, _)| below(lookup)))
    }

    /// [`Engine::lookup`], plus the version of the L1 entry holding the
    /// value afterwards (`None` when L1 does not hold it).
    #[inline]
    pub(crate) fn lookup_versioned(&self, key: &str) -> Result<Option<(Lookup, Option<u64>)>> {
        self.check_open()?;
        let now = self.clock.now_ms();
        if let Some(entry) = self.memory_hit(key, now) {
            if now >= entry.refresh_ms {
                self.refresh_configured(key, entry.created_ms);
            }
            let version = entry.version;
            return Ok(Some((memory_lookup(entry, now), Some(version))));
        }
        self.lookup_miss(key, now)
    }

    /// Past an L1 miss: validates the key, counts the miss, reads below.
    #[inline(never)]
    fn lookup_miss(&self, key: &str, now: u64) -> Result<Option<(Lookup, Option<u64>)>> {
        key::validate(key)?;
        if self.memory.is_some() {
            self.counters.memory.misses.incr();
        }
        self.lookup_below_memory(key, now)
    }

    /// The version of `key`'s fresh L1 entry, counted as an L1 hit; `None`
    /// (and nothing counted) otherwise.
    #[inline]
    pub(crate) fn memory_version(&self, key: &str) -> Option<u64> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let now = self.clock.now_ms();
        let entry = self.memory_hit(key, now)?;
        if now >= entry.refresh_ms {
            self.refresh_configured(key, entry.created_ms);
        }
        Some(entry.version)
    }

    /// An L1 hit, counted; `None` on a miss (not counted: the caller goes on).
    ///
    /// Always inlined, as [`MemoryTier::get`](crate::tier::memory::MemoryTier::get)
    /// is into it: with several callers (`get`, `lookup`, `get_or_load`…)
    /// LLVM called it, and a hit then took 117–130 ns instead of 91–92 in
    /// the same loop over 10,000 keys (a call in the middle of the lookups
    /// leaves the CPU fewer of the next key's cache misses to overlap).
    #[inline(always)]
    pub(super) fn memory_hit(&self, key: &str, now: u64) -> Option<MemEntry> {
        let memory = self.l1(now)?;
        // Every key in L1 was validated on its way in, so a hit needs no
        // check; on a miss the key is validated before it goes further.
        let hits = self.counters.memory.hits.mine();
        let timer = hits.sample_next();
        let entry = memory.get(key, now)?;
        hits.incr();
        if let Some(start) = timer {
            self.counters.memory.record_time(start.elapsed());
            // The same one hit in 64 refreshes the row's recency in L2, so a
            // key hot in L1 is not evicted from L2 as unused. By row id into
            // a slot: no lock, no allocation (see `SqliteTier::touch`).
            if let Some(sqlite) = &self.sqlite {
                sqlite.touch(entry.row);
            }
        }
        Some(entry)
    }

    #[inline(never)]
    fn lookup_below_memory(&self, key: &str, now: u64) -> Result<Option<(Lookup, Option<u64>)>> {
        match self.read_below(key, now)? {
            Below::Fresh(found, refresh) => {
                if refresh {
                    self.refresh_configured(
                        key,
                        now.saturating_sub(found.0.age.as_millis() as u64),
                    );
                }
                Ok(Some(found))
            }
            Below::Stale(..) | Below::Miss => Ok(None),
        }
    }

    /// What L2, then Redis, hold for `key`, promoted if fresh; counted.
    pub(super) fn read_below(&self, key: &str, now: u64) -> Result<Below> {
        let mut below = Below::Miss;
        if let Some(sqlite) = &self.sqlite {
            // Timed as an L1 hit is, one hit in `TIME_SAMPLE_EVERY`: two
            // clock reads are some 2 % of a file hit.
            let hits = self.counters.sqlite.hits.mine();
            let timer = hits.sample_next();
            let ticket = self.l1(now).map(|m| (m, m.ticket(key)));
            let found = sqlite.get(key, now);
            self.follow_file_swap();
            match found? {
                Some(found) if now < found.expires_ms => {
                    let refresh = now >= self.refresh_ms(found.created_ms, found.expires_ms);
                    let promoted = self.promote(ticket, key, found, now);
                    hits.incr();
                    if let Some(start) = timer {
                        self.counters.sqlite.record_time(start.elapsed());
                    }
                    return Ok(Below::Fresh(promoted, refresh));
                }
                Some(found) if now < found.stale_until_ms => {
                    self.counters.sqlite.misses.incr();
                    below = Below::Stale(found, Tier::Sqlite);
                }
                _ => self.counters.sqlite.misses.incr(),
            }
        }
        if let Some(redis) = &self.redis {
            let start = Instant::now();
            let (ticket, got) = read_settled(redis, key, || redis.get(key));
            match got {
                Some(Some(stored)) if now < stored.expires_ms => {
                    let refresh = now >= self.refresh_ms(stored.created_ms, stored.expires_ms);
                    let promoted = self.promote_from_redis(key, stored, now, ticket);
                    self.counters.redis.hits.incr();
                    self.counters.redis.record_time(start.elapsed());
                    return Ok(Below::Fresh(promoted, refresh));
                }
                Some(Some(stored)) if now < stored.stale_until_ms => {
                    self.counters.redis.misses.incr();
                    if let Below::Miss = below {
                        below = Below::Stale(stored.into_found(), Tier::Redis);
                    }
                }
                Some(_) => self.counters.redis.misses.incr(),
                // Skipped or failed: counted as such.
                None => {}
            }
        }
        self.counters.misses.incr();
        Ok(below)
    }

    pub(crate) fn mget(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        self.check_open()?;
        for key in keys {
            key::validate(key)?;
        }
        let now = self.clock.now_ms();
        let mut out: Vec<Option<Bytes>> = vec![None; keys.len()];
        let mut missing: Vec<usize> = Vec::new();
        let memory = self.l1(now);
        match memory {
            Some(memory) => {
                for (i, key) in keys.iter().enumerate() {
                    match memory.get(key, now) {
                        Some(entry) => out[i] = Some(entry.value),
                        None => missing.push(i),
                    }
                }
                let hits = (keys.len() - missing.len()) as u64;
                self.counters.memory.hits.add(hits);
                self.counters.memory.misses.add(missing.len() as u64);
            }
            None => missing.extend(0..keys.len()),
        }
        if let (Some(sqlite), false) = (&self.sqlite, missing.is_empty()) {
            let start = Instant::now();
            let wanted: Vec<&str> = missing.iter().map(|&i| keys[i]).collect();
            let tickets: Vec<_> = wanted
                .iter()
                .map(|k| memory.map(|m| (m, m.ticket(k))))
                .collect();
            // By key: a key asked for twice is answered twice (not taken
            // out of the map by its first occurrence).
            let found = sqlite.get_many(&wanted, now);
            self.follow_file_swap();
            let found = found?;
            let mut hits = 0u64;
            let mut tickets = tickets.into_iter();
            missing.retain(|&i| {
                let ticket = tickets.next().flatten();
                match found.get(keys[i]).filter(|f| now < f.expires_ms).cloned() {
                    Some(f) => {
                        out[i] = Some(self.promote(ticket, keys[i], f, now).0.value);
                        hits += 1;
                        false
                    }
                    None => true,
                }
            });
            self.counters.sqlite.hits.add(hits);
            self.counters.sqlite.misses.add(missing.len() as u64);
            if hits > 0 {
                let each = start.elapsed() / hits as u32;
                (0..hits).for_each(|_| self.counters.sqlite.record_time(each));
            }
        }
        if let (Some(redis), false) = (&self.redis, missing.is_empty()) {
            let start = Instant::now();
            let wanted: Vec<&str> = missing.iter().map(|&i| keys[i]).collect();
            let tickets: Vec<ReadTicket> = wanted.iter().map(|k| redis.ticket(k)).collect();
            let mut tickets = tickets.into_iter();
            if let Some(found) = redis.get_many(&wanted) {
                let mut hits = 0u64;
                let mut found = found.into_iter();
                missing.retain(|&i| match (found.next().flatten(), tickets.next()) {
                    (Some(stored), Some(ticket)) if now < stored.expires_ms => {
                        out[i] = Some(
                            self.promote_from_redis(keys[i], stored, now, ticket)
                                .0
                                .value,
                        );
                        hits += 1;
                        false
                    }
                    _ => true,
                });
                self.counters.redis.hits.add(hits);
                self.counters.redis.misses.add(missing.len() as u64);
                if hits > 0 {
                    let each = start.elapsed() / hits as u32;
                    (0..hits).for_each(|_| self.counters.redis.record_time(each));
                }
            }
        }
        self.counters.misses.add(missing.len() as u64);
        Ok(out)
    }

    pub(crate) fn has(&self, key: &str) -> Result<bool> {
        self.check_open()?;
        key::validate(key)?;
        let now = self.clock.now_ms();
        if self.l1(now).is_some_and(|m| m.contains_fresh(key, now)) {
            return Ok(true);
        }
        match &self.sqlite {
            Some(sqlite) => sqlite.contains_fresh(key, now),
            None => Ok(false),
        }
    }
}

/// What L2 or Redis hold for a key.
pub(super) enum Below {
    /// Fresh, promoted; whether due for a refresh ahead.
    Fresh((Lookup, Option<u64>), bool),
    /// Expired, within `fail_safe.max_stale`; the tier holding it.
    Stale(sqlite::Found, Tier),
    Miss,
}

/// What an L1 hit reports.
#[inline]
pub(super) fn memory_lookup(entry: MemEntry, now: u64) -> Lookup {
    Lookup {
        value: entry.value,
        tier: Tier::Memory,
        stale: false,
        age: Duration::from_millis(now.saturating_sub(entry.created_ms)),
    }
}
