//! What the load path ([`crate::load`]) asks of the tiers: a probe of what
//! they hold for a key, L1 hits that may start a refresh ahead, and the
//! storing of a loaded value with its validator.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::Engine;
use super::read::{Below, memory_lookup};
use crate::entry::{GetOptions, Lookup, SetOptions};
use crate::error::Result;
use crate::load::{Fetcher, Probe};

impl Engine {
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
        self.write_rows(rows, options, now, None, false).map(drop)
    }
}
