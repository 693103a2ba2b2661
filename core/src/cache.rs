//! [`Cache`]: the orchestrator of the tiers — the read path with promotion,
//! the write path, and background maintenance.
//!
//! The engine itself is synchronous: L1 is memory, and L2 point reads are a
//! few microseconds on a reader connection that never waits for a writer.
//! The async [`Cache`] therefore answers reads on the calling task and moves
//! writes (which may wait for another process's write lock) to the shared
//! runtime's blocking pool. [`crate::blocking::Cache`] calls the engine
//! directly.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::breaker::{Breaker, BreakerStatus};
use crate::clock::Clock;
use crate::coherence::Changes;
use crate::config::{CacheBuilder, Config, Strategy};
use crate::entry::{Entry, GetOptions, Lookup, Metadata, SetOptions, Tier};
use crate::error::{Error, ErrorKind, Result};
use crate::key::{self, Glob};
use crate::load::{Fetcher, Loads, ManyFetcher, Probe};
use crate::outbox::{DeadLetter, Outbox, OutboxStats, PendingWrite};
use crate::runtime;
use crate::source::{Fetched, GitHub, Source};
use crate::stats::{Counters, RedisStats, SourceStats, Stats};
use crate::tier::Inspection;
use crate::tier::envelope::Stored;
use crate::tier::memory::{self, L1, MemEntry, MemoryTier, Ticket};
use crate::tier::redis::{ReadTicket, RedisTier};
use crate::tier::sqlite::{self, Found, Outcome, Row, SqliteTier, Write};

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

/// Starts the backplane's reader for this process (see
/// [`crate::backplane`]), unless it runs.
#[cfg(feature = "redis")]
fn start_backplane(engine: &Arc<Engine>) {
    crate::backplane::start(engine, Arc::downgrade(engine));
}

#[cfg(not(feature = "redis"))]
fn start_backplane(_engine: &Arc<Engine>) {}

/// How often L2 maintenance runs when nothing asks for it sooner: buffered
/// accesses are written, the budget enforced, dead rows purged.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

/// The engine shared by every handle of one cache.
pub(crate) struct Engine {
    pub(crate) config: Config,
    pub(crate) clock: Clock,
    memory: Option<L1>,
    pub(crate) sqlite: Option<SqliteTier>,
    /// The Redis shared by many machines (see [`crate::tier`]); always
    /// `None` in a build without the `redis` feature.
    redis: Option<RedisTier>,
    pub(crate) counters: Arc<Counters>,
    closed: AtomicBool,
    /// The L2 [`SqliteTier::file_epoch`] the L1 was last checked against.
    l1_epoch: AtomicU64,
    /// The source, its breaker, the loads in flight (see [`crate::load`]).
    pub(crate) loads: Loads,
    /// This engine, for background work started from `&self`.
    pub(crate) me: OnceLock<Weak<Engine>>,
    /// The source's writes: write-through's calls, write-behind's outbox
    /// (see [`crate::outbox`]); `None` for the other strategies.
    pub(crate) outbox: Option<Outbox>,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

impl Engine {
    fn open(config: Config, clock: Clock, source: Option<Arc<dyn Source>>) -> Result<Arc<Self>> {
        config.validate()?;
        let source = match (source, config.github.as_ref().filter(|g| g.enabled)) {
            (Some(_), Some(_)) => {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    "a source was handed in and github is configured: use one (or set github.enabled to false)",
                ));
            }
            (None, Some(github)) => Some(Arc::new(GitHub::new(github)?) as Arc<dyn Source>),
            (source, None) => source,
        };
        let strategy = config.strategy;
        let outbox = match (strategy.writes_source(), &source) {
            (false, _) => None,
            (true, Some(source)) if source.writable() => Some(Outbox::new(
                config.outbox.clone(),
                source.clone(),
                config.sqlite.enabled,
                config.fail_safe.hard_timeout,
            )),
            (true, found) => {
                let why = match found {
                    Some(source) => format!(
                        "the source ({}) is read-only: it has no store and remove",
                        source.name()
                    ),
                    None => "no source is configured".to_owned(),
                };
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "strategy {} writes to the source, but {why}; give a source that can \
                         store (store/remove) or use read-through or cache-aside",
                        strategy.as_str()
                    ),
                ));
            }
        };
        // cache-aside: a miss never calls the configured source.
        let source = source.filter(|_| strategy != Strategy::CacheAside);
        let breaker = Breaker::new(config.circuit_breaker.clone(), clock.clone());
        let counters = Arc::new(Counters::default());
        // Nothing connects here: the first call does.
        let redis = RedisTier::open(&config, clock.clone(), counters.clone())?;
        let memory = config.memory.enabled.then(|| {
            L1::new(
                config.memory.max_bytes,
                counters.clone(),
                config
                    .sqlite
                    .enabled
                    .then(|| ms(config.sqlite.coherence_interval)),
            )
        });
        let sqlite = match config.sqlite.enabled {
            true => Some(SqliteTier::open(
                &config.resolved_sqlite_path()?,
                config.sqlite.max_bytes,
                config.sqlite.on_corrupt,
                counters.clone(),
            )?),
            false => None,
        };
        let engine = Arc::new(Self {
            config,
            clock,
            memory,
            sqlite,
            redis,
            counters,
            closed: AtomicBool::new(false),
            l1_epoch: AtomicU64::new(0),
            loads: Loads::new(source, breaker),
            me: OnceLock::new(),
            outbox,
        });
        let _ = engine.me.set(Arc::downgrade(&engine));
        if let Some(memory) = engine.memory.as_ref().map(L1::get) {
            // Starts watching the file before L1 holds anything.
            engine.sync(memory, engine.clock.now_ms());
        }
        let drains = strategy == Strategy::WriteBehind;
        if drains {
            spawn_outbox(Arc::downgrade(&engine));
        }
        if let (Some(redis), Some(sqlite)) = (&engine.redis, &engine.sqlite) {
            // Changes other machines announce are dropped from this file
            // too; those of processes on this file are not.
            match sqlite.identity() {
                Ok(id) => redis.set_file(id),
                Err(err) => {
                    tracing::warn!(error = %err, "the L2 file has no identity for the backplane");
                }
            }
        }
        start_backplane(&engine);
        if let Some(sqlite) = &engine.sqlite {
            let weak = Arc::downgrade(&engine);
            spawn_maintenance(weak.clone(), sqlite.wake());
            // A forked child has none of the parent's threads: its first use
            // of the file restarts maintenance (and the outbox's worker, and
            // the backplane's reader) there.
            sqlite.on_fork(move |wake| {
                spawn_maintenance(weak.clone(), wake);
                if drains {
                    spawn_outbox(weak.clone());
                }
                if let Some(engine) = weak.upgrade() {
                    start_backplane(&engine);
                }
            });
        }
        Ok(engine)
    }

    /// Whether the cache was closed.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The Redis tier, if any.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn redis(&self) -> Option<&RedisTier> {
        self.redis.as_ref()
    }

    #[inline]
    pub(crate) fn check_open(&self) -> Result<()> {
        match self.closed.load(Ordering::Acquire) {
            false => Ok(()),
            true => Err(Error::closed()),
        }
    }

    /// This process's L1, first brought up to date with other processes'
    /// changes to the L2 file when a check is due (see [`crate::coherence`]).
    #[inline]
    pub(crate) fn l1(&self, now: u64) -> Option<&MemoryTier> {
        let memory = self.memory.as_ref()?.get();
        if memory.check_due(now) {
            self.sync(memory, now);
        }
        Some(memory)
    }

    /// Drops from L1 what other processes changed in the L2 file since the
    /// last check, and records the time of this one.
    #[cold]
    #[inline(never)]
    fn sync(&self, memory: &MemoryTier, now: u64) {
        let Some(sqlite) = &self.sqlite else {
            return;
        };
        let due = || memory.check_due(now);
        sqlite.sync(due, |changes| {
            // Up to `head`, this cache's own writes not yet in L1 are
            // dropped rather than applied: one may be older than a change
            // reported here (see `Changes`).
            match changes {
                Ok(Changes::None) => {}
                Ok(Changes::Some { keys, tags, head }) => {
                    let pending = memory.begin_all();
                    let (dropped, tagged) =
                        memory.invalidate(&pending, &keys, &tags, Some(head), now);
                    self.counters
                        .coherence_drops
                        .add(dropped + tagged.len() as u64);
                }
                Ok(Changes::All { head }) => self.reset_l1(memory, Some(head)),
                Err(err) => {
                    // Unable to tell what changed: serve nothing unchecked.
                    // Nothing was marked seen, so the next poll reports
                    // again whatever this one could not.
                    if err.kind() != ErrorKind::Closed {
                        tracing::warn!(error = %err, "reading the change log failed; L1 cleared");
                    }
                    self.reset_l1(memory, None);
                }
            }
            memory.checked_at.store(now, Ordering::Relaxed);
        });
    }

    /// Empties L1, counted as a resync if it held anything; `head`: as in
    /// [`MemoryTier::invalidate_all`].
    fn reset_l1(&self, memory: &MemoryTier, head: Option<u64>) {
        if memory.entries() > 0 {
            self.counters.coherence_resets.incr();
        }
        let pending = memory.begin_all();
        memory.invalidate_all(&pending, head);
    }

    /// The read path: L1, then L2 with promotion.
    #[inline]
    pub(crate) fn lookup(&self, key: &str) -> Result<Option<Lookup>> {
        self.check_open()?;
        let now = self.clock.now_ms();
        if let Some(entry) = self.memory_hit(key, now) {
            if now >= entry.refresh_ms {
                self.refresh_configured(key, entry.created_ms);
            }
            return Ok(Some(memory_lookup(entry, now)));
        }
        Ok(self.lookup_miss(key, now)?.map(|(lookup, _)| lookup))
    }

    /// What the tiers hold for `key` (counted as a read), for the load
    /// path: fresh (and whether due for a refresh ahead), stale, or nothing.
    pub(crate) fn probe(&self, key: &str, now: u64) -> Result<Probe> {
        if let Some(entry) = self.memory_hit(key, now) {
            let refresh = now >= entry.refresh_ms;
            return Ok(Probe::Fresh(memory_lookup(entry, now), refresh));
        }
        if self.memory.is_some() {
            self.counters.memory.misses.incr();
        }
        match self.read_below(key, now)? {
            Below::Fresh((lookup, _), refresh) => Ok(Probe::Fresh(lookup, refresh)),
            Below::Stale(found, tier) => Ok(Probe::Stale(found, tier)),
            Below::Miss => Ok(Probe::Miss),
        }
    }

    /// An L1 hit, counted, with its version and whether it is due for a
    /// refresh ahead; `None` (not counted) otherwise.
    #[inline]
    pub(crate) fn memory_lookup_hit(&self, key: &str) -> Option<(Lookup, u64, bool)> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let now = self.clock.now_ms();
        let entry = self.memory_hit(key, now)?;
        let (version, refresh) = (entry.version, now >= entry.refresh_ms);
        Some((memory_lookup(entry, now), version, refresh))
    }

    /// An L1 hit (counted) with its version, after starting a refresh
    /// ahead through the fetcher `fetcher()` makes if it is due; on a miss,
    /// `fetcher` back, unused, for the load.
    #[inline]
    pub(crate) fn hit_or_refresh<M: FnOnce() -> Fetcher>(
        self: &Arc<Self>,
        key: &str,
        fetcher: M,
        options: &GetOptions,
    ) -> std::result::Result<(Lookup, u64), M> {
        match self.memory_lookup_hit(key) {
            Some((hit, version, false)) => Ok((hit, version)),
            Some((hit, version, true)) => {
                let now = self.clock.now_ms();
                self.refresh_ahead(key, fetcher(), options, hit.age, now);
                Ok((hit, version))
            }
            None => Err(fetcher),
        }
    }

    /// The fresh L1 entry of `key`, not counted (a flight's last look).
    pub(crate) fn memory_fresh(&self, key: &str) -> Option<Lookup> {
        let now = self.clock.now_ms();
        let memory = self.l1(now)?;
        memory.peek_fresh(key, now).map(|e| memory_lookup(e, now))
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
    #[inline]
    fn memory_hit(&self, key: &str, now: u64) -> Option<MemEntry> {
        let memory = self.l1(now)?;
        // Every key in L1 was validated on its way in, so a hit needs no
        // check; on a miss the key is validated before it goes further.
        let timer = self.counters.memory.hits.sample_next();
        let entry = memory.get(key, now)?;
        self.counters.memory.hits.incr();
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

    /// Empties L1 if the L2 file was swapped since the last check (a
    /// replaced or deleted file reopened, a damaged one rebuilt): what L1
    /// holds came from the old file. Checked after L2 calls on the miss and
    /// write paths, whether they succeeded or not; an L1 hit does not check.
    pub(crate) fn follow_file_swap(&self) {
        if let (Some(sqlite), Some(memory)) = (&self.sqlite, &self.memory) {
            let epoch = sqlite.file_epoch();
            if self.l1_epoch.swap(epoch, Ordering::AcqRel) != epoch {
                self.reset_l1(memory.get(), None);
            }
        }
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
    fn read_below(&self, key: &str, now: u64) -> Result<Below> {
        let mut below = Below::Miss;
        if let Some(sqlite) = &self.sqlite {
            let start = Instant::now();
            let ticket = self.l1(now).map(|m| (m, m.ticket(key)));
            let found = sqlite.get(key, now);
            self.follow_file_swap();
            match found? {
                Some(found) if now < found.expires_ms => {
                    let refresh = now >= self.refresh_ms(found.created_ms, found.expires_ms);
                    let promoted = self.promote(ticket, key, found, now);
                    self.counters.sqlite.hits.incr();
                    self.counters.sqlite.record_time(start.elapsed());
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

    /// Writes a Redis hit into L2 (if it fits there; a failure is logged)
    /// and L1, as its own write would, and reports it; `ticket`: taken
    /// before Redis was read. If a change of the key began since (this
    /// process's write, or another's applied by the backplane), the hit is
    /// answered but not kept: it may be what that change replaced. Nor is
    /// it kept in L2 over a write of the key another process on the file
    /// made meanwhile (see [`Write::Copy`]).
    pub(crate) fn promote_from_redis(
        &self,
        key: &str,
        stored: Stored,
        now: u64,
        ticket: ReadTicket,
    ) -> (Lookup, Option<u64>) {
        let lookup = |stored: &Stored| Lookup {
            value: stored.value.clone(),
            tier: Tier::Redis,
            stale: false,
            age: Duration::from_millis(now.saturating_sub(stored.created_ms)),
        };
        let Some(redis) = &self.redis else {
            return (lookup(&stored), None);
        };
        let kept = redis.keep_if(ticket, || self.keep_from_redis(key, &stored, now));
        (lookup(&stored), kept.flatten())
    }

    /// Stores a Redis hit in L2 and L1; the L1 version holding it.
    fn keep_from_redis(&self, key: &str, stored: &Stored, now: u64) -> Option<u64> {
        let memory = self.l1(now);
        let pending = memory.map(|m| m.begin(key));
        let (mut seq, mut row) = (None, 0);
        if let Some(sqlite) = &self.sqlite
            && self.check_fits(key, stored.value.len()).is_ok()
        {
            let written = sqlite.write(vec![Write::Copy(stored.to_row(key))]);
            self.follow_file_swap();
            match written {
                Ok(outcomes) => match outcomes.first() {
                    Some(outcome) if outcome.row.is_some() => {
                        (seq, row) = (Some(outcome.seq), outcome.row.unwrap_or(0));
                    }
                    // The file holds a newer write: neither tier keeps the copy.
                    _ => return None,
                },
                Err(err) => {
                    tracing::warn!(key = %key::quote(key), error = %err, "copying a Redis hit into L2 failed");
                }
            }
        }
        let mut version = None;
        if let (Some(memory), Some(pending)) = (memory, &pending) {
            let expires_ms = stored
                .expires_ms
                .min(now.saturating_add(ms(self.config.memory.ttl)));
            let entry = MemEntry::new(stored.value.clone(), stored.created_ms, expires_ms)
                .in_row(row)
                .refresh_at(self.refresh_ms(stored.created_ms, stored.expires_ms));
            version = memory.apply(pending, key, Some(entry), &stored.tags, seq);
        }
        version
    }

    /// When a value written at `created_ms` to expire at `expires_ms` is
    /// due for a refresh ahead (`u64::MAX`: never).
    #[inline]
    fn refresh_ms(&self, created_ms: u64, expires_ms: u64) -> u64 {
        let share = self.config.refresh_ahead;
        if share <= 0.0 || share >= 1.0 {
            return u64::MAX;
        }
        let ttl = expires_ms.saturating_sub(created_ms);
        created_ms.saturating_add((ttl as f64 * share) as u64)
    }

    /// Copies an L2 hit into L1 (with the ticket taken before L2 was read)
    /// and reports it, with the L1 version now holding it.
    pub(crate) fn promote(
        &self,
        ticket: Option<(&MemoryTier, Ticket)>,
        key: &str,
        found: Found,
        now: u64,
    ) -> (Lookup, Option<u64>) {
        let mut version = None;
        if let Some((memory, ticket)) = ticket {
            let expires_ms = found
                .expires_ms
                .min(now.saturating_add(ms(self.config.memory.ttl)));
            let refresh_ms = self.refresh_ms(found.created_ms, found.expires_ms);
            version = memory.promote(
                ticket,
                key,
                MemEntry::new(found.value.clone(), found.created_ms, expires_ms)
                    .first_written(found.first_ms)
                    .in_row(found.row)
                    .refresh_at(refresh_ms),
            );
        }
        let lookup = Lookup {
            value: found.value,
            tier: Tier::Sqlite,
            stale: false,
            age: Duration::from_millis(now.saturating_sub(found.created_ms)),
        };
        (lookup, version)
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

    /// Builds the rows for a write, checking keys and sizes first so that a
    /// bad item leaves everything untouched.
    fn rows(
        &self,
        items: Vec<(String, Bytes)>,
        options: &SetOptions,
        now: u64,
    ) -> Result<Vec<Row>> {
        let ttl = options.ttl_override().unwrap_or(self.config.sqlite.ttl);
        if ttl > crate::config::MAX_TTL {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "ttl is longer than 100 years",
            ));
        }
        for tag in &options.tags {
            validate_tag(tag)?;
        }
        let expires_ms = now.saturating_add(ms(ttl));
        let stale_until_ms = expires_ms.saturating_add(ms(self.config.fail_safe.max_stale));
        items
            .into_iter()
            .map(|(key, value)| {
                key::validate(&key).map_err(|e| e.context(format!("key {}", key::quote(&key))))?;
                self.check_fits(&key, value.len())?;
                Ok(Row {
                    key,
                    value,
                    created_ms: now,
                    expires_ms,
                    stale_until_ms,
                    tags: options.tags.clone(),
                    etag: None,
                })
            })
            .collect()
    }

    /// Whether an enabled tier can hold a value of `value_len` bytes under
    /// `key`; `invalid_argument`, naming the budget and the sizes, if none
    /// can.
    ///
    /// With an L2, every value is written there and L1 holds copies of its
    /// rows, so the value must fit `sqlite.max_bytes`; one larger than an
    /// L1 entry may take is kept in L2 only. Without an L2, it must fit one
    /// L1 entry: one shard's share of `memory.max_bytes`.
    pub(crate) fn check_fits(&self, key: &str, value_len: usize) -> Result<()> {
        if let Some(sqlite) = &self.sqlite {
            let size = sqlite::row_size(key, value_len);
            if size > sqlite.max_bytes() {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "value for {} needs {size} bytes in L2; sqlite.max_bytes is {} \
                         (with sqlite enabled every value is stored in L2, and L1 holds copies of its rows)",
                        key::quote(key),
                        sqlite.max_bytes()
                    ),
                ));
            }
        } else if let Some(memory) = self.memory.as_ref().map(L1::get) {
            let size = memory::entry_size(key, value_len);
            if size > memory.max_entry() {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "value for {} needs {size} bytes in L1, over the {} bytes one L1 entry \
                         may take (memory.max_bytes is {}, split over {} shards); \
                         sqlite is disabled, so no tier can hold it",
                        key::quote(key),
                        memory.max_entry(),
                        memory.max_bytes(),
                        memory.shards()
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn set_many(&self, items: Vec<(String, Bytes)>, options: &SetOptions) -> Result<()> {
        self.check_open()?;
        let now = self.clock.now_ms();
        let rows = self.rows(items, options, now)?;
        match (self.config.strategy, &self.outbox) {
            (Strategy::WriteThrough, Some(outbox)) => {
                // The source first, key by key: a failure leaves that key's
                // tiers (and those of the keys after it) unchanged.
                let mut stored = Vec::with_capacity(rows.len());
                let mut failed = None;
                for row in rows {
                    match outbox.write_through(&row.key, Some(row.value.clone())) {
                        Ok(()) => stored.push(row),
                        Err(err) => {
                            failed = Some(err);
                            break;
                        }
                    }
                }
                if !stored.is_empty() {
                    self.write_rows(stored, options, now, None)?;
                }
                failed.map_or(Ok(()), Err)
            }
            (Strategy::WriteBehind, Some(outbox)) => {
                self.write_rows(rows, options, now, Some(outbox))?;
                outbox.wake.notify_one();
                Ok(())
            }
            _ => self.write_rows(rows, options, now, None),
        }
    }

    /// Stores a value loaded from the source, with its validator.
    pub(crate) fn store_loaded(
        &self,
        key: String,
        value: Bytes,
        options: &SetOptions,
        validator: Option<String>,
    ) -> Result<()> {
        self.check_open()?;
        let now = self.clock.now_ms();
        let mut rows = self.rows(vec![(key, value)], options, now)?;
        rows.iter_mut().for_each(|r| r.etag = validator.clone());
        self.write_rows(rows, options, now, None)
    }

    /// Writes `rows` to the tiers; with `behind`, also queues them for the
    /// source in its outbox (in the same L2 commit, made durable).
    fn write_rows(
        &self,
        rows: Vec<Row>,
        options: &SetOptions,
        now: u64,
        behind: Option<&Outbox>,
    ) -> Result<()> {
        self.loads
            .forget_not_found(rows.iter().map(|r| r.key.as_str()));
        let count = rows.len() as u64;
        let memory_ttl = options
            .ttl_override()
            .map_or(self.config.memory.ttl, |t| t.min(self.config.memory.ttl));
        let memory_expires = now.saturating_add(ms(memory_ttl));
        let memory = self.memory.as_ref().map(L1::get);
        // Announced before L2 is written; see `tier::memory`.
        let l1: Vec<_> = match memory {
            Some(memory) => rows
                .iter()
                .map(|r| {
                    let entry = MemEntry::new(r.value.clone(), now, memory_expires)
                        .refresh_at(self.refresh_ms(now, r.expires_ms));
                    (memory.begin(&r.key), r.key.clone(), entry)
                })
                .collect(),
            None => Vec::new(),
        };
        // Written to Redis after L2 and L1; a copy of these keys read from
        // Redis meanwhile is not kept.
        let changing = self
            .redis
            .as_ref()
            .map(|redis| redis.changing(rows.iter().map(|r| r.key.as_str())));
        let shared = self.redis.as_ref().map(|redis| (redis, rows.clone()));
        let written: Vec<Option<Outcome>> = match &self.sqlite {
            Some(sqlite) => {
                let writes = rows
                    .into_iter()
                    .map(|row| match behind {
                        Some(outbox) => Write::PutBehind(row, outbox.behind(now)),
                        None => Write::Put(row),
                    })
                    .collect();
                let written = sqlite.write(writes);
                self.follow_file_swap();
                written?.into_iter().map(Some).collect()
            }
            None => {
                if let Some(outbox) = behind {
                    for row in &rows {
                        outbox.enqueue_in_memory(&row.key, Some(row.value.clone()), now);
                    }
                }
                vec![None; rows.len()]
            }
        };
        if let Some(memory) = memory {
            for ((pending, key, entry), outcome) in l1.into_iter().zip(written) {
                let (seq, row) = outcome.map_or((None, None), |o| (Some(o.seq), o.row));
                let entry = entry.in_row(row.unwrap_or(0));
                memory.apply(&pending, &key, Some(entry), &options.tags, seq);
            }
        }
        if let Some((redis, rows)) = shared {
            // A failure is counted and logged by the tier; the write stands.
            redis.put(&rows, now);
        }
        drop(changing);
        self.counters.sets.add(count);
        Ok(())
    }

    pub(crate) fn delete(&self, key: &str) -> Result<bool> {
        self.check_open()?;
        key::validate(key)?;
        let now = self.clock.now_ms();
        let behind = match (self.config.strategy, &self.outbox) {
            (Strategy::WriteThrough, Some(outbox)) => {
                outbox.write_through(key, None)?;
                None
            }
            (Strategy::WriteBehind, Some(outbox)) => Some(outbox),
            _ => None,
        };
        let memory = self.l1(now);
        let pending = memory.map(|m| m.begin(key));
        let changing = self.redis.as_ref().map(|redis| redis.changing([key]));
        let mut existed = memory.is_some_and(|m| m.contains_fresh(key, now));
        let mut seq = None;
        if let (None, Some(outbox)) = (&self.sqlite, behind) {
            outbox.enqueue_in_memory(key, None, now);
        }
        if let Some(sqlite) = &self.sqlite {
            let write = match behind {
                Some(outbox) => Write::DeleteBehind(key.to_owned(), outbox.behind(now)),
                None => Write::Delete(key.to_owned()),
            };
            let outcome = sqlite.write(vec![write]);
            self.follow_file_swap();
            let outcome = outcome?;
            let outcome = outcome.first().ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    "a delete came back without its outcome",
                )
            })?;
            existed |= outcome.removed_expires_ms.is_some_and(|e| now < e);
            seq = Some(outcome.seq);
        }
        if let (Some(memory), Some(pending)) = (memory, &pending) {
            memory.apply(pending, key, None, &[], seq);
        }
        if let Some(redis) = &self.redis {
            redis.delete(&[key], false);
        }
        drop(changing);
        if existed {
            self.counters.deletes.incr();
        }
        if let Some(outbox) = behind {
            outbox.wake.notify_one();
        }
        Ok(existed)
    }

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

    /// Hands the L1 hits counted per key to L2, which adds them to the
    /// rows' read counts with its next pass: the same way as its own reads,
    /// so that an L1 hit costs an atomic add and no lock.
    fn hand_over_reads(&self) {
        if let (Some(sqlite), Some(memory)) = (&self.sqlite, &self.memory) {
            let _counting = sqlite.counting();
            sqlite.record_reads(&memory.get().take_reads(), self.clock.now_ms());
        }
    }

    /// Applies other processes' changes read from the backplane: drops
    /// their keys, tagged entries or everything from L1, and from L2 those
    /// made through another file (see [`crate::backplane`]). Keys a tag
    /// removed from L2 are removed from Redis too (quietly: every machine
    /// hears of the tag).
    #[cfg(feature = "redis")]
    pub(crate) fn apply_remote(&self, remote: &crate::backplane::Remote) {
        let Some(redis) = &self.redis else {
            return;
        };
        let now = self.clock.now_ms();
        let mut tagged = Vec::new();
        let changing = match remote.clear || !remote.tags.is_empty() {
            true => redis.changing_all(),
            false => redis.changing(remote.keys.iter().map(String::as_str)),
        };
        {
            let memory = self.memory.as_ref().map(L1::get);
            let pending = memory.map(MemoryTier::begin_all);
            let mut seq = None;
            if let Some(sqlite) = &self.sqlite {
                let failed = |err: Error| {
                    tracing::warn!(error = %err, "dropping other machines' changes from L2 failed");
                };
                if remote.clear_file {
                    sqlite.clear().map_or_else(failed, |s| seq = Some(s));
                } else {
                    if !remote.file_keys.is_empty() {
                        let writes = remote
                            .file_keys
                            .iter()
                            .cloned()
                            .map(Write::Delete)
                            .collect();
                        match sqlite.write(writes) {
                            Ok(outcomes) => seq = outcomes.iter().map(|o| o.seq).max(),
                            Err(err) => failed(err),
                        }
                    }
                    for tag in &remote.file_tags {
                        match sqlite.delete_tagged(tag, now) {
                            Ok((removed, s)) => {
                                tagged.extend(removed);
                                seq = seq.max(Some(s));
                            }
                            Err(err) => failed(err),
                        }
                    }
                }
                self.follow_file_swap();
            }
            if let (Some(memory), Some(pending)) = (memory, &pending) {
                if remote.clear {
                    memory.invalidate_all(pending, seq);
                } else {
                    let (dropped, fresh) =
                        memory.invalidate(pending, &remote.keys, &remote.tags, seq, now);
                    self.counters
                        .coherence_drops
                        .add(dropped + fresh.len() as u64);
                }
            }
        }
        drop(changing);
        if !tagged.is_empty() {
            let keys: Vec<&str> = tagged.iter().map(String::as_str).collect();
            redis.delete(&keys, true);
        }
    }

    /// Where the processes on the L2 file read the backplane's stream to
    /// (see [`SqliteTier::backplane_cursor`]); `None` without a file, or
    /// if it cannot be read (logged).
    #[cfg(feature = "redis")]
    pub(crate) fn backplane_cursor(&self) -> Option<(i64, i64)> {
        let recorded = self.sqlite.as_ref()?.backplane_cursor();
        self.follow_file_swap();
        recorded
            .inspect_err(|err| tracing::warn!(error = %err, "reading the backplane's place in the L2 file failed"))
            .ok()
            .flatten()
    }

    /// Records where this process read the backplane's stream to, in the
    /// L2 file, if any; a failure is logged.
    #[cfg(feature = "redis")]
    pub(crate) fn record_backplane_cursor(&self, epoch: i64, last: i64) {
        if let Some(sqlite) = &self.sqlite {
            let recorded = sqlite.record_backplane_cursor(epoch, last);
            self.follow_file_swap();
            if let Err(err) = recorded {
                tracing::debug!(error = %err, "recording the backplane's place in the L2 file failed");
            }
        }
    }

    /// Empties L1 and the L2 file's entries: the backplane cannot tell
    /// what other machines changed (see [`crate::backplane`]).
    #[cfg(feature = "redis")]
    pub(crate) fn resync_remote(&self) {
        self.apply_remote(&crate::backplane::Remote {
            clear: true,
            clear_file: true,
            ..Default::default()
        });
        self.counters.backplane.resyncs.incr();
        tracing::warn!("the backplane missed changes (stream trimmed or lost): L1 and L2 emptied");
    }

    pub(crate) fn clear(&self) -> Result<()> {
        self.check_open()?;
        let memory = self.memory.as_ref().map(L1::get);
        let pending = memory.map(MemoryTier::begin_all);
        let _changing = self.redis.as_ref().map(RedisTier::changing_all);
        let seq = match &self.sqlite {
            Some(sqlite) => Some(sqlite.clear()?),
            None => None,
        };
        if let (Some(memory), Some(pending)) = (memory, &pending) {
            memory.invalidate_all(pending, seq);
        }
        if let Some(redis) = &self.redis {
            redis.clear();
        }
        Ok(())
    }

    pub(crate) fn invalidate_tag(&self, tag: &str) -> Result<u64> {
        self.check_open()?;
        validate_tag(tag)?;
        let now = self.clock.now_ms();
        let memory = self.memory.as_ref().map(L1::get);
        let pending = memory.map(MemoryTier::begin_all);
        let _changing = self.redis.as_ref().map(RedisTier::changing_all);
        let (mut removed, seq) = match &self.sqlite {
            Some(sqlite) => {
                let removed = sqlite.delete_tagged(tag, now);
                self.follow_file_swap();
                let (removed, seq) = removed?;
                (removed, Some(seq))
            }
            None => (Vec::new(), None),
        };
        if let (Some(memory), Some(pending)) = (memory, &pending) {
            // L1 may also hold tagged entries L2 no longer has (evicted, or
            // no L2 at all).
            let tags = [tag.to_owned()];
            removed.extend(memory.invalidate(pending, &removed, &tags, seq, now).1);
        }
        removed.sort_unstable();
        removed.dedup();
        if let Some(redis) = &self.redis {
            // The keys this host held; the backplane carries the tag to the
            // other machines, which remove theirs.
            let keys: Vec<&str> = removed.iter().map(String::as_str).collect();
            redis.invalidate_tag(tag, &keys);
        }
        let count = removed.len() as u64;
        self.counters.deletes.add(count);
        Ok(count)
    }

    pub(crate) fn run_pending_tasks(&self) -> Result<()> {
        self.check_open()?;
        self.hand_over_reads();
        if let Some(sqlite) = &self.sqlite {
            sqlite.maintain(self.clock.now_ms(), true)?;
        }
        Ok(())
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.check_open()?;
        if let Some(outbox) = self.draining() {
            outbox.flush(self.sqlite.as_ref())?;
        }
        self.hand_over_reads();
        if let Some(sqlite) = &self.sqlite {
            sqlite.maintain(self.clock.now_ms(), true)?;
            sqlite.checkpoint()?;
        }
        Ok(())
    }

    /// The outbox a worker drains: write-behind's.
    fn draining(&self) -> Option<&Outbox> {
        self.outbox
            .as_ref()
            .filter(|_| self.config.strategy == Strategy::WriteBehind)
    }

    /// The write-behind outbox's figures; `None` for other strategies.
    pub(crate) fn outbox_stats(&self) -> Option<OutboxStats> {
        let outbox = self.draining()?;
        Some(outbox.stats(self.sqlite.as_ref(), self.clock.now_ms()))
    }

    /// Writes that gave up: this cache's outbox's, or (for a cache that
    /// does not drain, such as the CLI's) those in the L2 file.
    pub(crate) fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.check_open()?;
        match (self.draining(), &self.sqlite) {
            (Some(outbox), sqlite) => outbox.dead_letters(sqlite.as_ref()),
            (None, Some(sqlite)) => Ok(sqlite
                .dead_letters()?
                .into_iter()
                .map(DeadLetter::from)
                .collect()),
            (None, None) => Ok(Vec::new()),
        }
    }

    /// Writes waiting for the source (in the L2 file, or this cache's
    /// in-memory outbox), oldest first.
    pub(crate) fn pending_writes(&self) -> Result<Vec<PendingWrite>> {
        self.check_open()?;
        match (self.draining(), &self.sqlite) {
            (Some(outbox), None) => Ok(outbox.pending_in_memory()),
            (_, Some(sqlite)) => Ok(sqlite
                .outbox_pending()?
                .into_iter()
                .map(PendingWrite::from)
                .collect()),
            (None, None) => Ok(Vec::new()),
        }
    }

    /// The tags L2's rows carry, with how many rows carry each.
    pub(crate) fn tags(&self) -> Result<Vec<(String, u64)>> {
        self.check_open()?;
        match &self.sqlite {
            Some(sqlite) => sqlite.tag_counts(),
            None => Ok(Vec::new()),
        }
    }

    /// Queues the dead letters again; how many.
    pub(crate) fn retry_dead_letters(&self) -> Result<u64> {
        self.check_open()?;
        let now = self.clock.now_ms();
        match (self.draining(), &self.sqlite) {
            (Some(outbox), sqlite) => outbox.retry_dead_letters(sqlite.as_ref(), now),
            (None, Some(sqlite)) => sqlite.retry_dead_letters(now),
            (None, None) => Ok(0),
        }
    }

    /// Deletes the dead letters; how many.
    pub(crate) fn purge_dead_letters(&self) -> Result<u64> {
        self.check_open()?;
        match (self.draining(), &self.sqlite) {
            (Some(outbox), sqlite) => outbox.purge_dead_letters(sqlite.as_ref()),
            (None, Some(sqlite)) => sqlite.purge_dead_letters(),
            (None, None) => Ok(0),
        }
    }

    pub(crate) fn inspect(&self) -> Result<Option<Inspection>> {
        self.check_open()?;
        self.sqlite
            .as_ref()
            .map(|s| s.inspect(self.clock.now_ms()))
            .transpose()
    }

    pub(crate) fn close(&self) -> Result<()> {
        self.close_with(true)
    }

    /// Closes; with `deliver`, the write-behind outbox is delivered first
    /// for up to `outbox.close_timeout` (not when the last handle is
    /// dropped: no worker can run then, and what is pending stays in the
    /// file for the next process).
    fn close_with(&self, deliver: bool) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(outbox) = self.draining() {
            outbox.close(self.sqlite.as_ref(), deliver);
        }
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(redis) = &self.redis {
            redis.halt();
        }
        self.hand_over_reads();
        if let Some(memory) = self.memory.as_ref().map(L1::get) {
            let pending = memory.begin_all();
            memory.invalidate_all(&pending, None);
        }
        match &self.sqlite {
            Some(sqlite) => sqlite.close(self.clock.now_ms()),
            None => Ok(()),
        }
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

/// What L2 or Redis hold for a key.
enum Below {
    /// Fresh, promoted; whether due for a refresh ahead.
    Fresh((Lookup, Option<u64>), bool),
    /// Expired, within `fail_safe.max_stale`; the tier holding it.
    Stale(sqlite::Found, Tier),
    Miss,
}

/// What an L1 hit reports.
#[inline]
fn memory_lookup(entry: MemEntry, now: u64) -> Lookup {
    Lookup {
        value: entry.value,
        tier: Tier::Memory,
        stale: false,
        age: Duration::from_millis(now.saturating_sub(entry.created_ms)),
    }
}

/// A tag is 1–255 bytes without control characters. The error quotes it
/// as [`key::quote`] quotes a key: at most 64 bytes and its length, so a
/// huge tag does not make a huge message.
fn validate_tag(tag: &str) -> Result<()> {
    if tag.is_empty() || tag.len() > key::MAX_KEY_LEN || tag.chars().any(char::is_control) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "tag {} must be 1-255 bytes without control characters",
                key::quote(tag)
            ),
        ));
    }
    Ok(())
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(err) = self.close_with(false) {
            tracing::warn!(error = %err, "closing the cache on drop failed");
        }
    }
}

/// Starts the write-behind outbox's worker (see [`crate::outbox`]).
fn spawn_outbox(engine: Weak<Engine>) {
    runtime::handle().spawn(async move {
        loop {
            let Some(strong) = engine.upgrade() else {
                return;
            };
            let Some(outbox) = strong.outbox.as_ref() else {
                return;
            };
            if outbox.stopped.load(Ordering::Acquire) || strong.closed.load(Ordering::Acquire) {
                return;
            }
            let wake = outbox.wake.clone();
            let pause = match strong.outbox_pass().await {
                Ok(pause) => pause,
                Err(err) if err.kind() == ErrorKind::Closed => return,
                Err(err) => {
                    tracing::warn!(error = %err, "the outbox's pass failed; trying again");
                    std::time::Duration::from_secs(1)
                }
            };
            drop(strong);
            if !pause.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = wake.notified() => {}
                }
            }
        }
    });
}

fn spawn_maintenance(engine: Weak<Engine>, wake: Arc<tokio::sync::Notify>) {
    runtime::handle().spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(MAINTENANCE_INTERVAL) => {}
                () = wake.notified() => {}
            }
            let Some(engine) = engine.upgrade() else {
                return;
            };
            if engine.closed.load(Ordering::Acquire) {
                return;
            }
            let pass = tokio::task::spawn_blocking(move || engine.run_pending_tasks()).await;
            match pass {
                Ok(Ok(())) => {}
                Ok(Err(err)) if err.kind() == ErrorKind::Closed => return,
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "cache maintenance failed; retrying next tick")
                }
                Err(err) => tracing::warn!(error = %err, "cache maintenance task failed"),
            }
        }
    });
}

/// The async cache: L1 memory over an L2 SQLite file.
///
/// Cheap to clone (an `Arc` inside); every clone is the same cache, and it is
/// `Send + Sync`. Reads complete on the calling task (an L1 hit touches
/// neither the runtime nor any I/O); writes run on the shared runtime's
/// blocking pool, since they may wait for another process's write lock.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> tierstack::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let cache = tierstack::Cache::builder().sqlite_path(dir.path().join("c.db")).build()?;
/// cache.set("k", "v").await?;
/// let hit = cache.lookup("k").await?.unwrap();
/// assert_eq!((&hit.value[..], hit.tier), (&b"v"[..], tierstack::Tier::Memory));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) engine: Arc<Engine>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("namespace", &self.engine.config.namespace)
            .field("sqlite", &self.engine.sqlite.as_ref().map(|s| s.path()))
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// Opens a cache with `config`, creating the L2 file if needed.
    pub fn open(config: Config) -> Result<Self> {
        Self::open_with(config, Clock::system(), None)
    }

    /// A builder for the config.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::new()
    }

    pub(crate) fn open_with(
        config: Config,
        clock: Clock,
        source: Option<Arc<dyn Source>>,
    ) -> Result<Self> {
        let clock = if config.test_clock && clock.is_system() {
            Clock::test()
        } else {
            clock
        };
        Ok(Self {
            engine: Engine::open(config, clock, source)?,
        })
    }

    async fn off_thread<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Engine) -> Result<R> + Send + 'static,
    {
        self.engine.check_open()?;
        let engine = self.engine.clone();
        runtime::handle()
            .spawn_blocking(move || f(&engine))
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("a cache task failed: {e}")))?
    }

    /// The config the cache was opened with.
    pub fn config(&self) -> &Config {
        &self.engine.config
    }

    /// The value of `key`, or `None` on a miss. With a source configured,
    /// a miss loads from it (see [`Cache::lookup`]).
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.lookup(key).await?.map(|l| l.value))
    }

    /// The value of `key` with the tier that served it, its staleness and
    /// age. With a source configured ([`CacheBuilder::source`]), a miss in
    /// every tier loads from it, as [`Cache::get_or_load`] does with a
    /// loader: `None` then means the source does not have the key.
    pub async fn lookup(&self, key: &str) -> Result<Option<Lookup>> {
        if self.engine.loads.has_source() {
            return self
                .engine
                .load(key, Fetcher::Configured, &GetOptions::default())
                .await;
        }
        self.engine.lookup(key)
    }

    /// The values of `keys`, in order (`None` for a miss), in one round per
    /// tier. With a source configured, the keys missing everywhere are
    /// loaded from it, in one batch if it fetches batches.
    pub async fn mget<K: AsRef<str>>(&self, keys: &[K]) -> Result<Vec<Option<Bytes>>> {
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        if self.engine.loads.has_source() {
            let found = self
                .engine
                .load_many(&keys, ManyFetcher::Configured, &GetOptions::default())
                .await?;
            return Ok(found.into_iter().map(|l| l.map(|l| l.value)).collect());
        }
        self.engine.mget(&keys)
    }

    /// The value of `key`; on a miss in every tier, `loader(key)`'s answer,
    /// stored with `options` (unless the loader chooses, see
    /// [`crate::Loaded`]). `None`: the loader answered
    /// [`Fetched::NotFound`], remembered for `negative_ttl`.
    ///
    /// However many callers (in this process and in others sharing the L2
    /// file) miss the key at once, one loader runs; the others get its
    /// answer. A caller holding a stale copy gets it if the load fails, the
    /// breaker is open, or the load passes `fail_safe.soft_timeout`. A hit
    /// past `refresh_ahead` of its TTL is answered and refreshed through
    /// `loader` in the background. See [`crate::source`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> tierstack::Result<()> {
    /// use tierstack::{Fetched, GetOptions};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = tierstack::Cache::builder().sqlite_path(dir.path().join("c.db")).build()?;
    /// let load = |key: String| async move { Ok(Fetched::value(format!("source of {key}"))) };
    /// let value = cache.get_or_load("component:button", load, GetOptions::new()).await?;
    /// assert_eq!(value.as_deref(), Some(&b"source of component:button"[..]));
    /// # Ok(()) }
    /// ```
    pub async fn get_or_load<F, Fut>(
        &self,
        key: &str,
        loader: F,
        options: GetOptions,
    ) -> Result<Option<Bytes>>
    where
        F: FnOnce(String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Fetched>> + Send + 'static,
    {
        Ok(self
            .lookup_or_load(key, loader, options)
            .await?
            .map(|l| l.value))
    }

    /// [`Cache::get_or_load`], reporting the tier that answered
    /// ([`Tier::Source`] for a value just loaded), staleness and age.
    pub async fn lookup_or_load<F, Fut>(
        &self,
        key: &str,
        loader: F,
        options: GetOptions,
    ) -> Result<Option<Lookup>>
    where
        F: FnOnce(String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Fetched>> + Send + 'static,
    {
        let fetcher = || Fetcher::Once(Box::new(move |key, _| Box::pin(loader(key))));
        match self.engine.hit_or_refresh(key, fetcher, &options) {
            Ok((hit, _)) => Ok(Some(hit)),
            Err(fetcher) => self.engine.load(key, fetcher(), &options).await,
        }
    }

    /// The values of `keys`, in order; the keys missing in every tier (and
    /// not being loaded by another caller) go to one call of `loader`,
    /// whose map answers them (a key it leaves out: not found, `None`).
    pub async fn get_or_load_many<K, F, Fut>(
        &self,
        keys: &[K],
        loader: F,
        options: GetOptions,
    ) -> Result<Vec<Option<Bytes>>>
    where
        K: AsRef<str>,
        F: FnOnce(Vec<String>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<std::collections::HashMap<String, Fetched>>>
            + Send
            + 'static,
    {
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        let fetcher = ManyFetcher::Once(Box::new(move |keys| Box::pin(loader(keys))));
        let found = self.engine.load_many(&keys, fetcher, &options).await?;
        Ok(found.into_iter().map(|l| l.map(|l| l.value)).collect())
    }

    /// The status of the circuit breaker guarding the source (every
    /// loader of this cache); reading it changes nothing.
    pub fn breaker_status(&self) -> BreakerStatus {
        self.engine.loads.breaker.status()
    }

    /// Opens the breaker by hand: no source is called (stale copies are
    /// served) until [`Cache::breaker_close`].
    pub fn breaker_open(&self) {
        self.engine.loads.breaker.open();
    }

    /// Closes the breaker by hand, forgetting the failures counted.
    pub fn breaker_close(&self) {
        self.engine.loads.breaker.close();
        self.engine.lift_shared_limit();
    }

    /// Whether `key` holds a fresh value; not counted as a read.
    pub async fn has(&self, key: &str) -> Result<bool> {
        self.engine.has(key)
    }

    /// Stores `value` under `key` in every tier with the default TTLs.
    ///
    /// A value no enabled tier can hold (over `sqlite.max_bytes`; without
    /// an L2, over one L1 entry's share of `memory.max_bytes`) fails with
    /// [`ErrorKind::InvalidArgument`] and changes nothing; one that fits L2
    /// but not L1 is kept in L2 only.
    pub async fn set(&self, key: impl Into<String>, value: impl Into<Bytes>) -> Result<()> {
        self.set_with(key, value, SetOptions::default()).await
    }

    /// Stores `value` under `key` with a TTL and tags.
    pub async fn set_with(
        &self,
        key: impl Into<String>,
        value: impl Into<Bytes>,
        options: SetOptions,
    ) -> Result<()> {
        let items = vec![(key.into(), value.into())];
        self.off_thread(move |e| e.set_many(items, &options)).await
    }

    /// Stores many values in one round per tier (one L2 transaction).
    pub async fn mset<I, K, V>(&self, items: I) -> Result<()>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<Bytes>,
    {
        self.mset_with(items, SetOptions::default()).await
    }

    /// [`Cache::mset`] with a TTL and tags for every item.
    pub async fn mset_with<I, K, V>(&self, items: I, options: SetOptions) -> Result<()>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<Bytes>,
    {
        let items: Vec<(String, Bytes)> = items
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.off_thread(move |e| e.set_many(items, &options)).await
    }

    /// Removes `key` from every tier; whether it held a fresh value.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        key::validate(key)?;
        let key = key.to_owned();
        self.off_thread(move |e| e.delete(&key)).await
    }

    /// Fresh keys matching a glob where `*` is the only wildcard, sorted.
    pub async fn keys(&self, pattern: &str) -> Result<Vec<String>> {
        self.engine.keys(pattern)
    }

    /// How many fresh keys the cache holds (in any tier).
    pub async fn len(&self) -> Result<u64> {
        self.engine.len()
    }

    /// Whether the cache holds no fresh key.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.engine.len()? == 0)
    }

    /// The stored entry with its metadata, fresh or expired.
    pub async fn entry(&self, key: &str) -> Result<Option<Entry>> {
        self.engine.entry(key)
    }

    /// [`Cache::entry`] if the value is fresh by the cache's clock; `None`
    /// for a missing key or an expired one (even while it may be served
    /// stale). Not a read: counts nothing, never loads.
    pub async fn fresh_entry(&self, key: &str) -> Result<Option<Entry>> {
        self.engine.fresh_entry(key)
    }

    /// Removes every entry from every tier.
    pub async fn clear(&self) -> Result<()> {
        self.off_thread(Engine::clear).await
    }

    /// Runs L2 maintenance now rather than at its next tick: writes buffered
    /// access times, evicts least recently used rows while over budget, and
    /// purges rows past their stale-until time when due.
    pub async fn run_pending_tasks(&self) -> Result<()> {
        self.off_thread(Engine::run_pending_tasks).await
    }

    /// Removes every entry written with `tag` (see [`SetOptions::tags`]) from
    /// L2 and from this process's L1; returns how many fresh entries went.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64> {
        let tag = tag.to_owned();
        self.off_thread(move |e| e.invalidate_tag(&tag)).await
    }

    /// The write-behind outbox's figures (see [`crate::outbox`]); `None`
    /// for the other strategies.
    pub fn outbox_stats(&self) -> Option<OutboxStats> {
        self.engine.outbox_stats()
    }

    /// Writes for the source that gave up after `outbox.max_attempts`.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.off_thread(Engine::dead_letters).await
    }

    /// Writes waiting for the source, oldest first.
    pub async fn pending_writes(&self) -> Result<Vec<PendingWrite>> {
        self.off_thread(Engine::pending_writes).await
    }

    /// Queues every dead letter again, with its attempts reset; returns
    /// how many were queued. (A later write of a key drops its dead
    /// letter: retried, it would put an older value back.)
    pub async fn retry_dead_letters(&self) -> Result<u64> {
        self.off_thread(Engine::retry_dead_letters).await
    }

    /// Deletes every dead letter; returns how many there were.
    pub async fn purge_dead_letters(&self) -> Result<u64> {
        self.off_thread(Engine::purge_dead_letters).await
    }

    /// Returns once everything acknowledged is in the file and the file is
    /// up to date: buffered access times are written and the WAL is
    /// checkpointed as far as readers allow. Every write is already durable
    /// when it returns; `flush` is for handing the file to another program.
    /// With write-behind, it first waits for the outbox to empty (every
    /// write delivered to the source), and fails with
    /// [`ErrorKind::Timeout`] past `outbox.flush_timeout`.
    pub async fn flush(&self) -> Result<()> {
        self.off_thread(Engine::flush).await
    }

    /// Counts and bounds of the L2 file; `None` without an L2.
    pub async fn inspect(&self) -> Result<Option<Inspection>> {
        self.off_thread(Engine::inspect).await
    }

    /// Writes buffered state, closes the L2 file, and empties L1. Every clone
    /// is closed; later calls fail with [`ErrorKind::Closed`]. Closing twice is
    /// harmless. Dropping the last clone closes the cache too.
    pub async fn close(&self) -> Result<()> {
        let engine = self.engine.clone();
        runtime::handle()
            .spawn_blocking(move || engine.close())
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("closing failed: {e}")))?
    }

    /// Whether [`Cache::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.engine.closed.load(Ordering::Acquire)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }

    /// Sets every counter back to zero.
    pub fn reset_stats(&self) {
        self.engine.reset_stats();
    }
}
