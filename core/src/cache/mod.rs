//! The engine shared by every handle of one cache: the [`Engine`] type, and
//! its opening and closing. Its jobs live in files of their own:
//!
//! - `read.rs`: the read path, L1 then L2 then Redis, counted;
//! - `promote.rs`: copying a hit from L2 or Redis into the tiers above it;
//! - `write.rs`: the write path (set, delete, clear, tag invalidation);
//! - `load.rs`: what the load path ([`crate::load`]) asks of the tiers;
//! - `coherence.rs`: L1 kept coherent with other processes' changes to the
//!   L2 file;
//! - `outbox.rs`: the write-behind outbox's figures and dead letters;
//! - `backplane.rs`: other machines' changes applied (Cargo feature `redis`);
//! - `maintenance.rs`: the L2 maintenance loop, `flush`;
//! - `inspect.rs`: keys, entries with metadata, tags, stats;
//! - `async_cache.rs`: the async facade [`Cache`].
//!
//! The engine itself is synchronous: L1 is memory, and L2 point reads are a
//! few microseconds on a reader connection that never waits for a writer.
//! The async [`Cache`] therefore answers reads on the calling task and moves
//! writes (which may wait for another process's write lock) to the shared
//! runtime's blocking pool. [`crate::blocking::Cache`] calls the engine
//! directly.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crate::breaker::Breaker;
use crate::clock::Clock;
use crate::config::{Config, Strategy};
use crate::error::{Error, ErrorKind, Result};
use crate::load::Loads;
use crate::outbox::Outbox;
use crate::source::{GitHub, Source};
use crate::stats::Counters;
use crate::tier::memory::L1;
use crate::tier::redis::RedisTier;
use crate::tier::sqlite::SqliteTier;

mod async_cache;
mod backplane;
mod coherence;
mod inspect;
mod load;
mod maintenance;
mod outbox;
mod promote;
mod read;
mod write;

use crate::outbox::spawn_outbox;
pub use async_cache::Cache;
use backplane::start_backplane;
pub use maintenance::MAINTENANCE_INTERVAL;
use maintenance::start_maintenance;

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
    pub(super) fn open(
        config: Config,
        clock: Clock,
        source: Option<Arc<dyn Source>>,
    ) -> Result<Arc<Self>> {
        config.validate()?;
        let source = match (source, config.github.as_ref().filter(|g| g.enabled)) {
            (Some(_), Some(_)) => {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    "a source was handed in and github is configured: use one (or set github.enabled to false)",
                ));
            }
            (None, Some(github)) => {
                Some(Arc::new(GitHub::with_clock(github, clock.clone())?) as Arc<dyn Source>)
            }
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
                config.memory.hash_seed,
            )
        });
        let sqlite = match config.sqlite.enabled {
            true => Some(
                SqliteTier::open(
                    &config.resolved_sqlite_path()?,
                    config.sqlite.max_bytes,
                    config.sqlite.on_corrupt,
                    counters.clone(),
                )?
                .below_memory(memory.is_some()),
            ),
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
        start_maintenance(&engine, drains);
        Ok(engine)
    }

    /// Whether the cache was closed.
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
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(err) = self.close_with(false) {
            tracing::warn!(error = %err, "closing the cache on drop failed");
        }
    }
}
