//! The configured source's limits, shared with the other processes on the
//! L2 file (see `tier::sqlite`'s `source_limits`): a bar another process
//! recorded opens this process's breaker until then; a trip of this
//! process's breaker, and the rate-limit figures the source last sent, are
//! recorded for the others.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::blocking;
use crate::cache::Engine;
use crate::source::RateLimit;
use crate::tier::sqlite::LimitUpdate;

impl Engine {
    /// The configured source's sharing scope, when there is a file to
    /// share through.
    fn shared_scope(&self) -> Option<String> {
        self.sqlite.as_ref()?;
        Some(self.loads.source.as_ref()?.shared_scope()?.to_owned())
    }

    /// Before a call of the configured source: holds the breaker open
    /// until a bar another process recorded, if one stands; answers the
    /// breaker's trips so far, for [`Engine::share_limit`] after the call.
    pub(super) async fn follow_shared_limit(self: &Arc<Self>) -> u64 {
        let trips = || self.loads.breaker.status().trips;
        let Some(scope) = self.shared_scope() else {
            return trips();
        };
        let engine = self.clone();
        let found = blocking(move || {
            let sqlite = engine.sqlite.as_ref().expect("a scope needs a file");
            sqlite.shared_limit(&scope)
        })
        .await;
        match found {
            Ok(limit) => self.loads.breaker.hold_open_until(limit.open_until_ms),
            Err(err) => tracing::debug!(error = %err, "the shared source limits could not be read"),
        }
        trips()
    }

    /// After a call of the configured source: records a trip of the
    /// breaker since `trips_before`, and the latest rate-limit figures.
    pub(super) async fn share_limit(self: &Arc<Self>, trips_before: u64) {
        let Some(scope) = self.shared_scope() else {
            return;
        };
        let status = self.loads.breaker.status();
        let update = (status.trips > trips_before)
            .then_some(status.next_attempt_at)
            .flatten()
            .map(LimitUpdate::OpenUntil);
        let rate_limit = self.loads.source.as_ref().and_then(|s| s.rate_limit());
        let print = rate_limit.map_or(0, fingerprint);
        let changed = self.loads.shared_rate_limit.swap(print, Ordering::AcqRel) != print;
        let rate_limit = rate_limit.filter(|_| changed);
        if update.is_none() && rate_limit.is_none() {
            return;
        }
        let (engine, now) = (self.clone(), self.clock.now_ms());
        let written = blocking(move || {
            let sqlite = engine.sqlite.as_ref().expect("a scope needs a file");
            sqlite.record_limit(&scope, update, rate_limit, now)
        })
        .await;
        if let Err(err) = written {
            // Written again next time.
            self.loads.shared_rate_limit.store(0, Ordering::Release);
            tracing::debug!(error = %err, "the shared source limits could not be written");
        }
    }

    /// A manual close lifts the bar for every process.
    pub(crate) fn lift_shared_limit(&self) {
        let (Some(scope), Some(sqlite)) = (self.shared_scope(), &self.sqlite) else {
            return;
        };
        let now = self.clock.now_ms();
        if let Err(err) = sqlite.record_limit(&scope, Some(LimitUpdate::Lift), None, now) {
            tracing::debug!(error = %err, "the shared source limits could not be written");
        }
    }

    /// The configured source's latest rate-limit figures: as the file
    /// holds them for its scope (any process's latest), else as this
    /// process was told.
    pub(crate) fn source_rate_limit(&self) -> Option<RateLimit> {
        let source = self.loads.source.as_ref()?;
        if let (Some(scope), Some(sqlite)) = (self.shared_scope(), &self.sqlite)
            && let Ok(limit) = sqlite.shared_limit(&scope)
            && limit.rate_limit.is_some()
        {
            return limit.rate_limit;
        }
        source.rate_limit()
    }
}

/// A non-zero fingerprint of rate-limit figures.
fn fingerprint(limit: RateLimit) -> u64 {
    let mut h = DefaultHasher::new();
    (limit.limit, limit.remaining, limit.reset_at_ms).hash(&mut h);
    h.finish() | 1
}
