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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::breaker::{Breaker, CallOutcome, Permit};
use crate::cache::Engine;
use crate::entry::{GetOptions, Lookup, SetOptions, Tier};
use crate::error::{Error, ErrorKind, Result};
use crate::key;
use crate::runtime;
use crate::source::{FetchFuture, FetchManyFuture, Fetched, Loaded, Source};
use crate::tier::sqlite::Found;

mod flight;
mod lease;
#[cfg(feature = "redis")]
mod machines;
mod many;
mod shared;

use flight::{Flight, Waited, soft_timed};
use lease::Leased;

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

/// The loading state of one cache.
pub(crate) struct Loads {
    source: Option<Arc<dyn Source>>,
    pub(crate) breaker: Breaker,
    flights: Mutex<HashMap<String, Arc<Flight>>>,
    negative: Mutex<HashMap<String, u64>>,
    negative_len: AtomicUsize,
    /// A fingerprint of the rate-limit figures last written to the file
    /// (see `shared.rs`), so that an unchanged figure is not written again.
    shared_rate_limit: AtomicU64,
    /// The fork generation (see [`crate::fork`]) the maps belong to: a
    /// forked child has none of the parent's flights in progress.
    generation: AtomicU64,
    /// The generation the maps are being reset for, by one thread.
    building: AtomicU64,
}

impl Loads {
    pub(crate) fn new(source: Option<Arc<dyn Source>>, breaker: Breaker) -> Self {
        Self {
            source,
            breaker,
            flights: Mutex::new(HashMap::new()),
            negative: Mutex::new(HashMap::new()),
            negative_len: AtomicUsize::new(0),
            shared_rate_limit: AtomicU64::new(0),
            generation: AtomicU64::new(crate::fork::fork_generation()),
            building: AtomicU64::new(crate::fork::fork_generation()),
        }
    }

    /// Whether a source is configured (plain reads load through it).
    #[inline]
    pub(crate) fn has_source(&self) -> bool {
        self.source.is_some()
    }

    /// Whether the configured source has anything for `key` (see
    /// [`Source::serves`]); an unsafe key is an error.
    pub(crate) fn serves(&self, key: &str) -> Result<bool> {
        self.source.as_ref().map_or(Ok(false), |s| s.serves(key))
    }

    /// In a forked child, drops the parent's flights (their tasks do not
    /// exist here) before the maps are used.
    #[inline]
    fn after_fork(&self) {
        let generation = crate::fork::fork_generation();
        if self.generation.load(Ordering::Acquire) != generation {
            self.reset_after_fork(generation);
        }
    }

    /// One thread of the child resets the maps; the others wait for it
    /// before they take a lock (as `L1` does for the memory tier).
    #[cold]
    fn reset_after_fork(&self, generation: u64) {
        let building = self.building.load(Ordering::Acquire);
        if building != generation
            && self
                .building
                .compare_exchange(building, generation, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // SAFETY: in a forked child, a lock of these maps found held
            // was taken by a parent's thread, which does not exist here and
            // will never release it; no thread of the child takes them
            // until `generation` is stored below (they wait in this
            // function).
            unsafe {
                crate::fork::unlock_abandoned(&self.flights);
                crate::fork::unlock_abandoned(&self.negative);
            }
            self.flights.lock().clear();
            self.negative.lock().clear();
            self.negative_len.store(0, Ordering::Relaxed);
            self.generation.store(generation, Ordering::Release);
        }
        while self.generation.load(Ordering::Acquire) != generation {
            std::thread::yield_now();
        }
    }

    fn negative_until(&self, key: &str, now: u64) -> Option<u64> {
        if self.negative_len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.after_fork();
        let mut negative = self.negative.lock();
        match negative.get(key) {
            Some(&until) if now < until => Some(until),
            Some(_) => {
                negative.remove(key);
                self.negative_len.store(negative.len(), Ordering::Relaxed);
                None
            }
            None => None,
        }
    }

    fn remember_not_found(&self, key: &str, until: u64, now: u64) {
        self.after_fork();
        let mut negative = self.negative.lock();
        if negative.len() >= NEGATIVE_CAP {
            negative.retain(|_, &mut u| now < u);
            if negative.len() >= NEGATIVE_CAP {
                negative.clear();
            }
        }
        negative.insert(key.to_owned(), until);
        self.negative_len.store(negative.len(), Ordering::Relaxed);
    }

    /// Forgets "not found" for keys just written.
    pub(crate) fn forget_not_found<'a>(&self, keys: impl Iterator<Item = &'a str>) {
        if self.negative_len.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.after_fork();
        let mut negative = self.negative.lock();
        for key in keys {
            negative.remove(key);
        }
        self.negative_len.store(negative.len(), Ordering::Relaxed);
    }

    fn flight(&self, key: &str) -> Option<Arc<Flight>> {
        self.after_fork();
        self.flights.lock().get(key).cloned()
    }

    /// The flight of `key`: `(flight, true)` if the caller must start it.
    fn join(&self, key: &str) -> (Arc<Flight>, bool) {
        self.after_fork();
        let mut flights = self.flights.lock();
        if let Some(flight) = flights.get(key) {
            return (flight.clone(), false);
        }
        let flight = Flight::new();
        flights.insert(key.to_owned(), flight.clone());
        (flight, true)
    }

    fn end(&self, key: &str, flight: &Arc<Flight>) {
        self.after_fork();
        let mut flights = self.flights.lock();
        if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            flights.remove(key);
        }
    }
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

    /// Stores what the source answered for a job's key, off the runtime's
    /// async threads.
    async fn store(self: &Arc<Self>, job: &Job, fetched: Fetched) -> Outcome {
        let (engine, key, options, stale) = (
            self.clone(),
            job.key.clone(),
            job.options.clone(),
            job.stale.clone(),
        );
        blocking(move || engine.store_fetched(&key, fetched, &options, stale)).await
    }

    /// Stores what the source answered for `key` and reports it.
    fn store_fetched(
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
