//! The load path: what happens when a read misses every tier and a source
//! can answer it. Once, here, for every host.
//!
//! In order, for a key that no tier holds fresh:
//! 0. **The source's keys.** A key the configured source does not serve
//!    ([`Source::serves`]) is a plain miss, with no load; one whose parts
//!    it refuses is an error (GitHub: `invalid_key`) before any request.
//! 1. **Negative cache.** A key the source recently answered "not found"
//!    for is not asked again before `negative_ttl` passes (remembered in
//!    this process and, for other processes, in the file; see
//!    [`crate::tier::sqlite`]'s leases).
//! 2. **Single-flight in the process.** The first caller starts a *flight*;
//!    every caller for the key until it lands waits for that flight's
//!    result (counted as `coalesced`).
//! 3. **Single-flight across processes.** The flight takes the key's lease
//!    in the L2 file. If another process holds it, the flight waits on the
//!    file for that process's value (`coalesced_processes`); a lease whose
//!    holder died or overran ends, and the flight takes it over.
//! 4. **Single-flight across machines** (with Redis): the flight then
//!    takes the key's lease in Redis; while another machine holds it, the
//!    flight waits for that machine's fill (`coalesced_machines`; see
//!    `load/machines.rs`).
//! 5. **The breaker.** Open: the source is not called and the flight fails
//!    with [`ErrorKind::SourceUnavailable`] (`rejected`). For a configured
//!    source that shares its limits ([`Source::shared_scope`]: GitHub's
//!    rate limit belongs to its token), a bar another process recorded in
//!    the file holds the breaker open too, and this process's trips and
//!    rate-limit figures are recorded for the others (`load/shared.rs`).
//! 6. **The fetch,** abandoned at `fail_safe.hard_timeout`
//!    ([`ErrorKind::Timeout`]). Its outcome is counted by the breaker; a
//!    value is stored in every tier (its TTL shortened by up to
//!    `ttl_jitter`), not-modified renews the stored copy, not-found is
//!    remembered for `negative_ttl` and removes a stored copy.
//!
//! **Fail-safe.** A caller that holds a stale copy (expired, within
//! `fail_safe.max_stale`) gets it, marked stale, when the flight fails, or
//! once the flight has run for `fail_safe.soft_timeout` (the flight goes on
//! in the background and fills the tiers). Only a caller with no usable
//! copy gets the error. A cache without an L2 file has no stale copies.
//!
//! **Refresh-ahead.** A hit on a value past `refresh_ahead` of its TTL is
//! answered at once and starts a flight in the background, unless one is
//! under way.
//!
//! Flights run on the shared runtime, never on the caller's thread, so that
//! a caller can stop waiting (soft timeout) while the fetch finishes. The
//! engine's one circuit breaker guards the configured source and every
//! per-call loader alike: they are the same source of truth to the cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::breaker::{CallOutcome, Permit};
use crate::cache::Engine;
use crate::entry::{GetOptions, Lookup, Tier};
use crate::error::{Error, ErrorKind, Result};
use crate::key;
use crate::runtime;
#[cfg(doc)]
use crate::source::Source;
use crate::source::{FetchFuture, FetchManyFuture};
use crate::tier::sqlite::Found;

mod flight;
mod lease;
#[cfg(feature = "redis")]
mod machines;
mod many;
mod shared;
mod state;
mod store;

use flight::{Flight, Waited, soft_timed};
use lease::Leased;
pub(crate) use state::Loads;
pub(crate) use store::random_unit;

/// A negative cache holds at most this many keys in memory.
const NEGATIVE_CAP: usize = 65_536;

/// A lease outlives the hard timeout by this much, so that a live holder
/// abandons its fetch before another process may take over.
const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// How often, at most, a flight waiting for another process's load looks
/// at the file.
const REMOTE_POLL_MAX: Duration = Duration::from_millis(20);

/// What a flight ends with: the value (`None`: not found), or the error.
pub(crate) type Outcome = Result<Option<Lookup>>;

/// How a flight fetches.
pub(crate) enum Fetcher {
    /// The cache's configured source.
    Configured,
    /// A loader given with this call.
    Once(Box<dyn FnOnce(String, Option<String>) -> FetchFuture + Send>),
}

/// How a batch fetches the keys it leads.
pub(crate) enum ManyFetcher {
    /// The cache's configured source.
    Configured,
    /// A loader given with this call.
    Once(Box<dyn FnOnce(Vec<String>) -> FetchManyFuture + Send>),
}

/// What the tiers hold for a key, for the load path.
pub(crate) enum Probe {
    /// A fresh value; whether it is due for a refresh ahead.
    Fresh(Lookup, bool),
    /// An expired copy still within `fail_safe.max_stale`, and the tier
    /// holding it (L2 or Redis).
    Stale(Found, Tier),
    /// Nothing usable.
    Miss,
}

/// A stale copy a caller may fall back on, and the tier holding it.
#[derive(Clone)]
struct Stale {
    found: Found,
    tier: Tier,
}

impl Stale {
    fn lookup(&self, now: u64) -> Lookup {
        Lookup {
            value: self.found.value.clone(),
            tier: self.tier,
            stale: true,
            age: Duration::from_millis(now.saturating_sub(self.found.created_ms)),
        }
    }
}

/// What a flight needs besides the engine.
struct Job {
    key: String,
    options: GetOptions,
    /// The stored copy the flight refreshes, for its validator and for
    /// not-modified.
    stale: Option<Found>,
    /// A refresh ahead: a fresh row written after this time (by another
    /// process) is the refresh; an older one is not.
    refresh_of_ms: Option<u64>,
}

impl Engine {
    /// Read-through of one key, blocking the calling thread while a load
    /// runs (on the runtime).
    pub(crate) fn load_blocking(
        self: &Arc<Self>,
        key: &str,
        fetcher: Fetcher,
        options: &GetOptions,
    ) -> Result<Option<Lookup>> {
        let (flight, stale) = match self.start_load(key, fetcher, options)? {
            Started::Done(outcome) => return outcome,
            Started::Waiting(flight, stale) => (flight, stale),
        };
        let waited = flight.wait_blocking(stale.is_some());
        self.finish_load(waited, stale)
    }

    /// Read-through of one key, awaiting a load.
    pub(crate) async fn load(
        self: &Arc<Self>,
        key: &str,
        fetcher: Fetcher,
        options: &GetOptions,
    ) -> Result<Option<Lookup>> {
        let (flight, stale) = match self.start_load(key, fetcher, options)? {
            Started::Done(outcome) => return outcome,
            Started::Waiting(flight, stale) => (flight, stale),
        };
        let waited = flight.wait(stale.is_some()).await;
        self.finish_load(waited, stale)
    }

    fn finish_load(&self, waited: Waited, stale: Option<Stale>) -> Outcome {
        let now = self.clock.now_ms();
        match (waited, stale) {
            (Waited::Landed(Err(_)) | Waited::SoftTimeout, Some(stale)) => {
                self.counters.source.stale_served.incr();
                Ok(Some(stale.lookup(now)))
            }
            (Waited::Landed(outcome), _) => outcome,
            (Waited::SoftTimeout, None) => Err(Error::new(
                ErrorKind::Internal,
                "a load without a stale copy stopped waiting early",
            )),
        }
    }

    /// Everything up to waiting: the tiers, the negative cache, the flight.
    fn start_load(
        self: &Arc<Self>,
        key: &str,
        fetcher: Fetcher,
        options: &GetOptions,
    ) -> Result<Started> {
        self.check_open()?;
        key::validate(key)?;
        if let Fetcher::Configured = fetcher
            && !self.loads.has_source()
        {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "no source is configured to load from",
            ));
        }
        let now = self.clock.now_ms();
        let stale = match self.probe(key, now)? {
            Probe::Fresh(lookup, refresh) => {
                if refresh {
                    self.refresh_ahead(key, fetcher, options, lookup.age, now);
                }
                return Ok(Started::Done(Ok(Some(lookup))));
            }
            Probe::Stale(found, tier) => Some(Stale { found, tier }),
            Probe::Miss => None,
        };
        if let Fetcher::Configured = fetcher
            && !self.loads.serves(key)?
        {
            // Not the source's: a plain miss, as without a source.
            return Ok(Started::Done(Ok(None)));
        }
        if stale.is_none() && self.loads.negative_until(key, now).is_some() {
            self.counters.source.negative_hits.incr();
            return Ok(Started::Done(Ok(None)));
        }
        let (flight, lead) = self.loads.join(key);
        if lead {
            let job = Job {
                key: key.to_owned(),
                options: options.clone(),
                stale: stale.as_ref().map(|s| s.found.clone()),
                refresh_of_ms: None,
            };
            self.fly(flight.clone(), job, fetcher);
        } else {
            self.counters.source.coalesced.incr();
        }
        Ok(Started::Waiting(flight, stale))
    }

    /// Starts a background refresh of `key` unless a flight is under way.
    pub(crate) fn refresh_ahead(
        self: &Arc<Self>,
        key: &str,
        fetcher: Fetcher,
        options: &GetOptions,
        age: Duration,
        now: u64,
    ) {
        if let Fetcher::Configured = fetcher
            && !self.loads.serves(key).unwrap_or(false)
        {
            return;
        }
        if self.loads.flight(key).is_some() || self.check_open().is_err() {
            return;
        }
        let (flight, lead) = self.loads.join(key);
        if !lead {
            return;
        }
        self.counters.source.refreshes.incr();
        let created = now.saturating_sub(age.as_millis() as u64);
        let job = Job {
            key: key.to_owned(),
            options: options.clone(),
            stale: None,
            refresh_of_ms: Some(created),
        };
        self.fly(flight, job, fetcher);
    }

    /// Refresh-ahead for a plain read's hit, through the configured source.
    #[cold]
    #[inline(never)]
    pub(crate) fn refresh_configured(&self, key: &str, created_ms: u64) {
        if !self.loads.has_source() {
            return;
        }
        if let Some(engine) = self.me.get().and_then(std::sync::Weak::upgrade) {
            let now = self.clock.now_ms();
            let age = Duration::from_millis(now.saturating_sub(created_ms));
            engine.refresh_ahead(key, Fetcher::Configured, &GetOptions::default(), age, now);
        }
    }

    /// Runs a flight on the runtime and lands it.
    fn fly(self: &Arc<Self>, flight: Arc<Flight>, job: Job, fetcher: Fetcher) {
        let engine = self.clone();
        runtime::handle().spawn(async move {
            let soft = engine.config.fail_safe.soft_timeout;
            let outcome = soft_timed(soft, engine.run_flight(&job, fetcher), || {
                flight.pass_soft_timeout();
            })
            .await;
            // Ended before it lands, so that a caller woken by the landing
            // never joins it again; a caller that read the tiers before the
            // value was stored and starts a new flight finds it stored.
            engine.loads.end(&job.key, &flight);
            flight.land(outcome);
        });
    }

    /// The flight itself: lease, breaker, fetch, store.
    async fn run_flight(self: &Arc<Self>, job: &Job, fetcher: Fetcher) -> Outcome {
        let started = Instant::now();
        let hard = self.config.fail_safe.hard_timeout;
        let holder = crate::coherence::new_origin();
        let mut leased = false;
        if self.sqlite.is_some() {
            match self.take_lease(job, holder, started).await {
                Ok(Leased::Held) => leased = true,
                Ok(Leased::Answered(outcome)) => return outcome,
                Ok(Leased::Unavailable) => {}
                Err(err) => return Err(err),
            }
        } else if job.refresh_of_ms.is_none()
            && let Some(found) = self.memory_fresh(&job.key)
        {
            // Filled while this flight was being set up.
            return Ok(Some(found));
        }
        // Then the machines' lease, in Redis (a refresh ahead takes none).
        #[cfg(feature = "redis")]
        let machine = match self.redis().is_some() && job.refresh_of_ms.is_none() {
            false => None,
            true => match self.take_machine_lease(job).await {
                machines::MachineLease::Held(token) => Some(token),
                machines::MachineLease::Answered(outcome) => {
                    if leased {
                        self.end_lease(job, holder, &outcome).await;
                    }
                    return outcome;
                }
                machines::MachineLease::Unavailable => None,
            },
        };
        // The hard timeout bounds the fetch itself: a flight that waited on
        // another process's lease and took it over gets the whole of it.
        let outcome = self
            .fetch_and_store(job, fetcher, Instant::now(), hard)
            .await;
        #[cfg(feature = "redis")]
        if let Some(token) = machine {
            self.end_machine_lease(job, &token, &outcome).await;
        }
        if leased {
            self.end_lease(job, holder, &outcome).await;
        }
        outcome
    }

    /// Asks the source (through the breaker, within the hard timeout) and
    /// stores what it answers.
    async fn fetch_and_store(
        self: &Arc<Self>,
        job: &Job,
        fetcher: Fetcher,
        started: Instant,
        hard: Duration,
    ) -> Outcome {
        let what = || format!("loading {}", key::quote(&job.key));
        // The configured source's limits are shared with other processes.
        let trips = match fetcher {
            Fetcher::Configured => Some(self.follow_shared_limit().await),
            Fetcher::Once(_) => None,
        };
        let permit = self.admit(1, what)?;
        let validator = job.stale.as_ref().and_then(|s| s.etag.clone());
        let fetch = match fetcher {
            Fetcher::Configured => match &self.loads.source {
                Some(source) => source.fetch(&job.key, validator.as_deref()),
                None => {
                    self.loads.breaker.release(permit);
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        "no source is configured",
                    ));
                }
            },
            Fetcher::Once(loader) => loader(job.key.clone(), validator),
        };
        let fetched = self.call_source(permit, fetch, started, hard, what).await;
        if let Some(trips) = trips {
            self.share_limit(trips).await;
        }
        self.store(job, fetched?).await
    }

    /// The breaker's permit for a call, or `source_unavailable` (counted
    /// for `keys` keys) while it is open.
    fn admit(&self, keys: usize, what: impl Fn() -> String) -> Result<Permit> {
        self.loads.breaker.try_acquire().ok_or_else(|| {
            self.counters.source.rejected.add(keys as u64);
            let until = self.loads.breaker.retry_at_ms().map_or_else(
                || "it was opened by hand".to_owned(),
                |at| format!("until {at} ms since the Unix epoch"),
            );
            Error::new(
                ErrorKind::SourceUnavailable,
                format!(
                    "{} did not ask the source: its circuit breaker is open ({until})",
                    what()
                ),
            )
        })
    }

    /// Awaits a source call within what is left of the hard timeout, and
    /// counts its outcome, for the breaker too.
    async fn call_source<T>(
        &self,
        permit: Permit,
        call: impl std::future::Future<Output = Result<T>>,
        started: Instant,
        hard: Duration,
        what: impl Fn() -> String,
    ) -> Result<T> {
        self.counters.source.requests.incr();
        let remaining = hard.saturating_sub(started.elapsed());
        let answered = match tokio::time::timeout(remaining, call).await {
            Ok(answered) => answered,
            Err(_) => {
                self.loads.breaker.record(permit, CallOutcome::Failure);
                self.counters.source.failures.incr();
                self.counters.source.timeouts.incr();
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{} took longer than fail_safe.hard_timeout ({} s) and was abandoned",
                        what(),
                        hard.as_secs_f64()
                    ),
                ));
            }
        };
        let outcome = match &answered {
            Ok(_) => CallOutcome::Success,
            Err(err) => match err.rate_limit() {
                Some(until_ms) => CallOutcome::RateLimited { until_ms },
                None => CallOutcome::Failure,
            },
        };
        self.loads.breaker.record(permit, outcome);
        match &answered {
            Ok(_) => self.counters.source.successes.incr(),
            Err(_) => self.counters.source.failures.incr(),
        }
        answered
    }
}

enum Started {
    Done(Outcome),
    Waiting(Arc<Flight>, Option<Stale>),
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// Runs blocking engine work (SQLite) on the runtime's blocking pool.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> Result<R> + Send + 'static) -> Result<R> {
    crate::source::run_blocking(f).await
}
