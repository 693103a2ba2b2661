//! Storing what the source answered: a value in every tier (its TTL
//! shortened by up to `ttl_jitter`), not-modified as a renewed copy,
//! not-found remembered for `negative_ttl` and the stored copy removed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{Job, Outcome, blocking, ms};
use crate::cache::Engine;
use crate::entry::{GetOptions, Lookup, SetOptions, Tier};
use crate::error::{Error, ErrorKind};
use crate::key;
use crate::source::{Fetched, Loaded};
use crate::tier::sqlite::Found;

impl Engine {
    /// Stores what the source answered for a job's key, off the runtime's
    /// async threads.
    pub(super) async fn store(self: &Arc<Self>, job: &Job, fetched: Fetched) -> Outcome {
        let (engine, key, options, stale) = (
            self.clone(),
            job.key.clone(),
            job.options.clone(),
            job.stale.clone(),
        );
        blocking(move || engine.store_fetched(&key, fetched, &options, stale)).await
    }

    /// Stores what the source answered for `key` and reports it.
    pub(super) fn store_fetched(
        &self,
        key: &str,
        fetched: Fetched,
        options: &GetOptions,
        stale: Option<Found>,
    ) -> Outcome {
        let now = self.clock.now_ms();
        let loaded = match fetched {
            Fetched::Value(loaded) => loaded,
            Fetched::NotModified { ttl } => match stale {
                Some(found) => {
                    let mut loaded = Loaded::new(found.value);
                    loaded.ttl = ttl;
                    loaded.validator = found.etag;
                    loaded
                }
                None => {
                    return Err(Error::new(
                        ErrorKind::Source,
                        format!(
                            "the source answered \"not modified\" for {}, which holds no copy",
                            key::quote(key)
                        ),
                    ));
                }
            },
            Fetched::NotFound => {
                self.counters.source.not_found.incr();
                if !self.config.negative_ttl.is_zero() {
                    let until = now.saturating_add(ms(self.config.negative_ttl));
                    self.loads.remember_not_found(key, until, now);
                }
                if stale.is_some() {
                    // The source says it is gone: so is the stored copy.
                    if let Err(err) = self.delete(key) {
                        tracing::warn!(key = %key::quote(key), error = %err, "removing a copy the source no longer has failed");
                    }
                }
                return Ok(None);
            }
        };
        let ttl = loaded
            .ttl
            .or(options.ttl_override())
            .unwrap_or(self.config.sqlite.ttl);
        let ttl = jitter(ttl, self.config.ttl_jitter);
        let mut set = SetOptions::new().ttl(ttl);
        set.tags = options.tags.clone();
        set.tags.extend(loaded.tags);
        let value: Bytes = loaded.value;
        // The caller asked for the value, which it has: a failure to keep
        // it (a value too large for every tier, a failed write) is logged
        // and counted, unless the loader's own answer was bad.
        let stored = self
            .check_fits(key, value.len())
            .map(|()| self.store_loaded(key.to_owned(), value.clone(), &set, loaded.validator));
        match stored {
            Ok(Ok(())) => {}
            // The loader's own bad TTL or tags.
            Ok(Err(err))
                if matches!(
                    err.kind(),
                    ErrorKind::InvalidArgument | ErrorKind::InvalidKey
                ) =>
            {
                return Err(err);
            }
            Ok(Err(err)) | Err(err) => {
                self.counters.not_stored.incr();
                tracing::warn!(key = %key::quote(key), error = %err, "a loaded value was answered but not stored");
            }
        }
        Ok(Some(Lookup {
            value,
            tier: Tier::Source,
            stale: false,
            age: Duration::ZERO,
        }))
    }
}

/// `ttl` shortened by a random share up to `share`.
fn jitter(ttl: Duration, share: f64) -> Duration {
    if share <= 0.0 {
        return ttl;
    }
    ttl.mul_f64(1.0 - share * random_unit())
}

/// A number in `[0, 1)`, from a per-thread xorshift seeded by the clock
/// and the thread: enough to spread expiries, not for anything secret.
pub(crate) fn random_unit() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    STATE.with(|state| {
        let mut x = state.get();
        if x == 0 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            x = nanos ^ (state as *const Cell<u64> as u64).rotate_left(32) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_only_shortens_and_stays_within_its_share() {
        let ttl = Duration::from_secs(100);
        for _ in 0..1000 {
            let j = jitter(ttl, 0.1);
            assert!(j <= ttl && j > Duration::from_secs(90), "{j:?}");
        }
        assert_eq!(jitter(ttl, 0.0), ttl);
    }
}
