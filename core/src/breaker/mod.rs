//! A circuit breaker: stop calling a source that keeps failing, and try it
//! again later.
//!
//! One [`Breaker`] guards one source. A caller asks [`Breaker::try_acquire`]
//! for a [`Permit`], calls the source only if it got one, and hands the
//! permit back to [`Breaker::record`] with how the call ended
//! ([`CallOutcome`]), or to [`Breaker::release`] if it never made the call.
//!
//! ```text
//!              threshold consecutive failures, a failure rate
//!              over the window, or a rate limit
//!   closed ───────────────────────────────────────────────▶ open
//!     ▲                                                    │  ▲
//!     │ success_threshold             the open period has  │  │ a probe fails
//!     │ probe successes               passed: try_acquire  ▼  │ (the next period: ×2)
//!     └───────────────────────────────────────────────── half-open
//! ```
//!
//! - **Closed**: every call is admitted. It opens after `threshold`
//!   consecutive failures, or when a failure leaves at least `minimum_calls`
//!   calls in the sliding `window` of which at least `failure_rate` failed.
//!   A call that took at least `slow_call` is a failure, whatever it returned.
//!   The window is the calls *recorded* within the last `window` of clock
//!   time, kept as a queue of (time, failed) pairs pruned by time and capped
//!   at the latest 4096 calls (16 bytes each: at most 64 KiB a breaker). It
//!   is exact for any rate a remote source sustains; past 4096 calls a
//!   window, the rate is that of the latest 4096 calls.
//! - **Open**: no call is admitted. The `n`-th trip since the breaker last
//!   closed opens it for `timeout` × 2^(n−1), capped at `max_timeout`, plus
//!   jitter: a random 0–10% of that period (whole milliseconds), so the
//!   processes sharing a source do not all come back at the same instant. A
//!   period of `base` ms therefore ends between `base` and `base + base / 10`
//!   ms after the trip. A rate limit with a reset time opens it until that
//!   time exactly. The first [`Breaker::try_acquire`] at or after the end
//!   turns it half-open; [`Breaker::status`] never does.
//! - **Half-open**: at most `half_open_probes` calls are in flight at once.
//!   `success_threshold` successful probes close it (clearing the failure
//!   counts, the window and the backoff); a failed probe opens it again for
//!   the next, longer period.
//! - **Manual**: [`Breaker::open`] forces it open until [`Breaker::close`],
//!   with no half-open in between; `close` closes it from any state.
//!
//! Every change of state starts a new generation. A permit issued in an
//! earlier one is recorded harmlessly: it changes neither the state nor the
//! window, and a failure only updates `last_failure_at` (and, while open,
//! `failure_count`). So a slow call from before a trip that succeeds late
//! cannot close the breaker, and a late failure cannot trip a breaker that
//! has recovered since.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::MAX_TTL;
use crate::error::{Error, ErrorKind, Result};

/// The most calls the sliding window keeps; also the largest
/// `minimum_calls` accepted.
const WINDOW_CAPACITY: usize = 4096;

/// The `circuit_breaker` section of the config.
///
/// | key | default | meaning |
/// |---|---|---|
/// | `threshold` | 5 | consecutive failures that open it |
/// | `failure_rate` | 0.5 | share of failures in the window that opens it, in (0, 1] |
/// | `minimum_calls` | 10 | calls in the window before the rate counts, 1–4096 |
/// | `window` | 60 | seconds of calls the failure rate is taken over |
/// | `slow_call` | 10 | seconds from which a call counts as a failure |
/// | `timeout` | 60 | seconds of the first open period |
/// | `max_timeout` | 600 | seconds the open period grows to at most (before jitter) |
/// | `half_open_probes` | 1 | calls admitted at once while half-open |
/// | `success_threshold` | 2 | successful probes that close it |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open the breaker (at least 1).
    pub threshold: u32,
    /// The share of failed calls in the window that opens the breaker,
    /// greater than 0 and at most 1.
    pub failure_rate: f64,
    /// Calls recorded in the window before the failure rate counts
    /// (1 to 4096).
    pub minimum_calls: u32,
    /// The sliding window the failure rate is taken over.
    #[serde(with = "crate::config::seconds")]
    pub window: Duration,
    /// A call that takes at least this long counts as a failure.
    #[serde(with = "crate::config::seconds")]
    pub slow_call: Duration,
    /// The first open period.
    #[serde(with = "crate::config::seconds")]
    pub timeout: Duration,
    /// The longest open period (jitter comes on top); at least `timeout`.
    #[serde(with = "crate::config::seconds")]
    pub max_timeout: Duration,
    /// Calls admitted at once while half-open (at least 1).
    pub half_open_probes: u32,
    /// Successful probes that close the breaker (at least 1).
    pub success_threshold: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            threshold: 5,
            failure_rate: 0.5,
            minimum_calls: 10,
            window: Duration::from_secs(60),
            slow_call: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            max_timeout: Duration::from_secs(600),
            half_open_probes: 1,
            success_threshold: 2,
        }
    }
}

impl CircuitBreakerConfig {
    /// Checks every value; errors are of kind [`ErrorKind::InvalidConfig`]
    /// and name the key as `circuit_breaker.<name>`.
    pub fn validate(&self) -> Result<()> {
        at_least_one("threshold", self.threshold)?;
        let rate = self.failure_rate;
        // Written so that NaN fails too.
        if !(rate > 0.0 && rate <= 1.0) {
            return Err(invalid(format!(
                "circuit_breaker.failure_rate must be greater than 0 and at most 1, not {rate}"
            )));
        }
        at_least_one("minimum_calls", self.minimum_calls)?;
        if self.minimum_calls as usize > WINDOW_CAPACITY {
            return Err(invalid(format!(
                "circuit_breaker.minimum_calls must be at most {WINDOW_CAPACITY} \
                 (the window keeps the latest {WINDOW_CAPACITY} calls)"
            )));
        }
        check_duration("window", self.window)?;
        check_duration("slow_call", self.slow_call)?;
        check_duration("timeout", self.timeout)?;
        check_duration("max_timeout", self.max_timeout)?;
        if self.max_timeout < self.timeout {
            return Err(invalid(
                "circuit_breaker.max_timeout must be at least circuit_breaker.timeout",
            ));
        }
        at_least_one("half_open_probes", self.half_open_probes)?;
        at_least_one("success_threshold", self.success_threshold)?;
        Ok(())
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidConfig, message)
}

fn at_least_one(name: &str, value: u32) -> Result<()> {
    if value == 0 {
        return Err(invalid(format!(
            "circuit_breaker.{name} must be at least 1"
        )));
    }
    Ok(())
}

fn check_duration(name: &str, d: Duration) -> Result<()> {
    if d.is_zero() {
        return Err(invalid(format!(
            "circuit_breaker.{name} must be greater than 0 seconds"
        )));
    }
    if d > MAX_TTL {
        return Err(invalid(format!(
            "circuit_breaker.{name} is longer than 100 years"
        )));
    }
    Ok(())
}

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// No call goes through until the open period ends (or, forced open,
    /// until [`Breaker::close`]).
    Open,
    /// A few probe calls go through to find out whether the source is back.
    HalfOpen,
}

impl BreakerState {
    /// The stable name: `"closed"`, `"open"` or `"half-open"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Breaker::status`] reports; serialises to JSON with exactly these
/// field names, the same in every host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerStatus {
    /// The state.
    pub state: BreakerState,
    /// Consecutive failures so far: reset by a success, kept while open,
    /// cleared when the breaker closes.
    pub failure_count: u32,
    /// Whether a call made now would be admitted. An open breaker past its
    /// period says `true`: the call would be a half-open probe.
    pub allows_request: bool,
    /// When the last failure was recorded, in ms since the Unix epoch.
    pub last_failure_at: Option<u64>,
    /// While open, when it turns half-open, in ms since the Unix epoch;
    /// `None` when not open, or forced open by [`Breaker::open`].
    pub next_attempt_at: Option<u64>,
    /// How many times it has opened in total, manual opens included.
    pub trips: u64,
}

/// How a call ended, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The source answered: a value, not-modified or not-found. A success
    /// that took at least `slow_call` counts as a failure.
    Success,
    /// An error or a timeout.
    Failure,
    /// The source said "not before": a failure that opens the breaker at
    /// once, until `until_ms` (ms since the Unix epoch, exactly, without
    /// jitter) or, when `None`, for the normal open period.
    RateLimited {
        /// When the source accepts calls again, if it said.
        until_ms: Option<u64>,
    },
}

/// Admission to make one call, from [`Breaker::try_acquire`]. Hand it back
/// to [`Breaker::record`] once the call has ended, or to
/// [`Breaker::release`] if it was not made.
///
/// Dropping a permit releases it, so a caller cancelled while it holds one
/// (an async task dropped mid-call) never keeps a half-open probe slot
/// taken.
#[must_use = "a permit is handed back with Breaker::record or Breaker::release"]
pub struct Permit {
    shared: Arc<Shared>,
    started_ms: u64,
    probe: bool,
    generation: u64,
    /// Set once recorded or released, so that `drop` does nothing more.
    settled: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("started_ms", &self.started_ms)
            .field("probe", &self.probe)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.state.lock().release(self);
        }
    }
}

/// A circuit breaker for one source; see the [module docs](self) for the
/// state machine.
///
/// `Send + Sync`. Its state sits under one mutex: it is taken once per
/// source call, never on a cache hit. [`Breaker::new`] expects a config
/// that passed [`CircuitBreakerConfig::validate`].
///
/// ```
/// use std::time::Duration;
/// use tierstack::{Breaker, BreakerState, CallOutcome, CircuitBreakerConfig, Clock, ManualClock};
///
/// let manual = ManualClock::new(1_000_000);
/// let config = CircuitBreakerConfig { threshold: 2, ..Default::default() };
/// let breaker = Breaker::new(config, Clock::from(manual.clone()));
///
/// for _ in 0..2 {
///     let permit = breaker.try_acquire().expect("closed: admitted");
///     breaker.record(permit, CallOutcome::Failure);
/// }
/// assert_eq!(breaker.status().state, BreakerState::Open);
/// assert!(breaker.try_acquire().is_none());
///
/// // 60 s, plus up to 10% jitter, later: one probe is admitted.
/// manual.advance(Duration::from_secs(67));
/// let probe = breaker.try_acquire().expect("half-open: a probe");
/// assert_eq!(breaker.status().state, BreakerState::HalfOpen);
/// breaker.record(probe, CallOutcome::Success);
/// ```
pub struct Breaker {
    shared: Arc<Shared>,
}

struct Shared {
    config: CircuitBreakerConfig,
    clock: Clock,
    state: Mutex<State>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("config", &self.shared.config)
            .field("status", &self.status())
            .finish()
    }
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: CircuitBreakerConfig, clock: Clock) -> Self {
        // std's per-process random hash keys (new ones for every
        // `RandomState`) seed the jitter: breakers tripping at the same
        // instant, in one process or many, draw different periods.
        let seed = RandomState::new().hash_one(clock.now_ms());
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::new(seed)),
                config,
                clock,
            }),
        }
    }

    /// A permit if a call may be made now; `None` if the breaker is open, or
    /// half-open with every probe slot taken. An open breaker whose period
    /// has passed turns half-open here, and the caller gets a probe permit.
    pub fn try_acquire(&self) -> Option<Permit> {
        let now = self.shared.clock.now_ms();
        let probes = self.shared.config.half_open_probes;
        let mut state = self.shared.state.lock();
        let probe = match &mut state.phase {
            Phase::Closed => false,
            Phase::HalfOpen { in_flight, .. } if *in_flight < probes => {
                *in_flight += 1;
                true
            }
            Phase::HalfOpen { .. } => return None,
            Phase::Open { until: Some(until) } if now >= *until => {
                state.enter(Phase::HalfOpen {
                    in_flight: 1,
                    successes: 0,
                });
                true
            }
            Phase::Open { .. } => return None,
        };
        Some(Permit {
            shared: Arc::clone(&self.shared),
            started_ms: now,
            probe,
            generation: state.generation,
            settled: false,
        })
    }

    /// Records how the call made under `permit` ended. Its duration is the
    /// time from [`Breaker::try_acquire`] to now; a [`CallOutcome::Success`]
    /// that took at least `slow_call` counts as a failure.
    pub fn record(&self, mut permit: Permit, outcome: CallOutcome) {
        debug_assert!(
            Arc::ptr_eq(&self.shared, &permit.shared),
            "a permit is recorded on the breaker that issued it"
        );
        // The permit's own breaker, which is `self` whenever the caller is right.
        let shared = &permit.shared;
        let now = shared.clock.now_ms();
        let took = Duration::from_millis(now.saturating_sub(permit.started_ms));
        let failed = match outcome {
            CallOutcome::Success => took >= shared.config.slow_call,
            CallOutcome::Failure | CallOutcome::RateLimited { .. } => true,
        };
        let rate_limited = match outcome {
            CallOutcome::RateLimited { until_ms } => Some(until_ms),
            CallOutcome::Success | CallOutcome::Failure => None,
        };
        shared
            .state
            .lock()
            .record(&shared.config, &permit, now, failed, rate_limited);
        permit.settled = true;
    }

    /// Gives a permit back without counting anything (the call was not
    /// made, e.g. its caller was cancelled); a half-open probe slot is
    /// freed. Dropping the permit does the same.
    pub fn release(&self, permit: Permit) {
        debug_assert!(
            Arc::ptr_eq(&self.shared, &permit.shared),
            "a permit is released on the breaker that issued it"
        );
        drop(permit);
    }

    /// The status. Reading it changes nothing: an open breaker past its
    /// period is reported open with `allows_request: true`, and stays open
    /// until the next [`Breaker::try_acquire`].
    pub fn status(&self) -> BreakerStatus {
        let now = self.shared.clock.now_ms();
        let state = self.shared.state.lock();
        let (breaker_state, allows_request, next_attempt_at) = match state.phase {
            Phase::Closed => (BreakerState::Closed, true, None),
            Phase::Open { until } => (
                BreakerState::Open,
                until.is_some_and(|until| now >= until),
                until,
            ),
            Phase::HalfOpen { in_flight, .. } => (
                BreakerState::HalfOpen,
                in_flight < self.shared.config.half_open_probes,
                None,
            ),
        };
        BreakerStatus {
            state: breaker_state,
            failure_count: state.failure_count,
            allows_request,
            last_failure_at: state.last_failure_at,
            next_attempt_at,
            trips: state.trips,
        }
    }

    /// Forces the breaker open until [`Breaker::close`]: no call is
    /// admitted and it never turns half-open by itself. Counts as a trip,
    /// unless it was open already.
    pub fn open(&self) {
        let mut state = self.shared.state.lock();
        if !matches!(state.phase, Phase::Open { .. }) {
            state.trips += 1;
        }
        state.enter(Phase::Open { until: None });
    }

    /// Closes the breaker, from any state, and clears the failure counts,
    /// the window and the backoff. `last_failure_at` and `trips` are history
    /// and stay.
    pub fn close(&self) {
        self.shared.state.lock().close();
    }

    /// Opens the breaker until `until_ms` (ms since the Unix epoch) because
    /// someone else found the source cut off: another process sharing its
    /// rate limit. Counts as a trip unless it was open already; an open
    /// period ending earlier is extended; a breaker opened by hand, or one
    /// already open longer, is left as it is. A time not after now changes
    /// nothing.
    pub fn hold_open_until(&self, until_ms: u64) {
        let now = self.shared.clock.now_ms();
        if until_ms <= now {
            return;
        }
        let mut state = self.shared.state.lock();
        match state.phase {
            Phase::Open { until: None } => {}
            Phase::Open { until: Some(until) } if until >= until_ms => {}
            Phase::Open { .. } => state.enter(Phase::Open {
                until: Some(until_ms),
            }),
            Phase::Closed | Phase::HalfOpen { .. } => {
                state.trips += 1;
                state.window.clear();
                state.enter(Phase::Open {
                    until: Some(until_ms),
                });
            }
        }
    }

    /// When an open breaker admits its next call, in ms since the Unix
    /// epoch; `None` if it is not open, or forced open.
    pub fn retry_at_ms(&self) -> Option<u64> {
        match self.shared.state.lock().phase {
            Phase::Open { until } => until,
            Phase::Closed | Phase::HalfOpen { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    /// `until: None` is forced open.
    Open {
        until: Option<u64>,
    },
    HalfOpen {
        in_flight: u32,
        successes: u32,
    },
}

struct State {
    phase: Phase,
    /// Bumped on every change of state; permits carry the one they were
    /// issued in.
    generation: u64,
    failure_count: u32,
    last_failure_at: Option<u64>,
    trips: u64,
    /// Trips since the breaker last closed: the backoff exponent.
    consecutive_trips: u32,
    window: Window,
    /// xorshift64 state for the jitter; never 0.
    rng: u64,
}

impl State {
    fn new(seed: u64) -> Self {
        Self {
            phase: Phase::Closed,
            generation: 0,
            failure_count: 0,
            last_failure_at: None,
            trips: 0,
            consecutive_trips: 0,
            window: Window::default(),
            rng: seed | 1,
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.generation += 1;
    }

    fn close(&mut self) {
        self.enter(Phase::Closed);
        self.failure_count = 0;
        self.consecutive_trips = 0;
        self.window.clear();
    }

    /// Opens the breaker: until `until` (a rate limit's reset, not before
    /// now), else for the backoff period with jitter.
    fn trip(&mut self, config: &CircuitBreakerConfig, now: u64, until: Option<u64>) {
        self.trips += 1;
        self.consecutive_trips = self.consecutive_trips.saturating_add(1);
        let until = match until {
            Some(until) => until.max(now),
            None => {
                let base = open_period_ms(config, self.consecutive_trips);
                let jitter = self.next_random() % (base / 10 + 1);
                now.saturating_add(base).saturating_add(jitter)
            }
        };
        self.window.clear();
        self.enter(Phase::Open { until: Some(until) });
    }

    fn record(
        &mut self,
        config: &CircuitBreakerConfig,
        permit: &Permit,
        now: u64,
        failed: bool,
        rate_limited: Option<Option<u64>>,
    ) {
        if failed {
            self.last_failure_at = Some(now);
        }
        if permit.generation != self.generation {
            // Issued before the last change of state: harmless. A failure is
            // still news while open, where the count is only reported.
            if failed && matches!(self.phase, Phase::Open { .. }) {
                self.failure_count = self.failure_count.saturating_add(1);
            }
            return;
        }
        match &mut self.phase {
            Phase::Closed => {
                debug_assert!(!permit.probe);
                self.window.push(now, failed, config.window);
                if !failed {
                    self.failure_count = 0;
                    return;
                }
                self.failure_count = self.failure_count.saturating_add(1);
                if let Some(until) = rate_limited {
                    self.trip(config, now, until);
                } else if self.failure_count >= config.threshold || self.window.rate_reached(config)
                {
                    self.trip(config, now, None);
                }
            }
            Phase::HalfOpen {
                in_flight,
                successes,
            } => {
                debug_assert!(permit.probe && *in_flight > 0);
                *in_flight = in_flight.saturating_sub(1);
                if failed {
                    self.failure_count = self.failure_count.saturating_add(1);
                    self.trip(config, now, rate_limited.flatten());
                } else {
                    *successes += 1;
                    self.failure_count = 0;
                    if *successes >= config.success_threshold {
                        self.close();
                    }
                }
            }
            Phase::Open { .. } => {
                debug_assert!(false, "no permit is issued while open");
            }
        }
    }

    fn release(&mut self, permit: &Permit) {
        if permit.generation != self.generation || !permit.probe {
            return;
        }
        if let Phase::HalfOpen { in_flight, .. } = &mut self.phase {
            debug_assert!(*in_flight > 0);
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// xorshift64: plenty for spreading retries; not for anything secret.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// `timeout` × 2^(trip − 1), capped at `max_timeout`, in ms (at least 1).
fn open_period_ms(config: &CircuitBreakerConfig, trip: u32) -> u64 {
    let doubling = 1u64.checked_shl(trip.saturating_sub(1)).unwrap_or(u64::MAX);
    millis(config.timeout)
        .saturating_mul(doubling)
        .min(millis(config.max_timeout))
        .max(1)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The calls recorded while closed within the last `window`, oldest first.
#[derive(Default)]
struct Window {
    calls: VecDeque<Call>,
    failures: usize,
}

#[derive(Clone, Copy)]
struct Call {
    at_ms: u64,
    failed: bool,
}

impl Window {
    fn push(&mut self, now: u64, failed: bool, span: Duration) {
        // Pruned from the front: if the wall clock stepped back, a few
        // calls behind a later one stay a little longer; the cap bounds them.
        while let Some(oldest) = self.calls.front() {
            let old = Duration::from_millis(now.saturating_sub(oldest.at_ms)) >= span;
            if !old && self.calls.len() < WINDOW_CAPACITY {
                break;
            }
            self.pop_front();
        }
        self.calls.push_back(Call { at_ms: now, failed });
        self.failures += usize::from(failed);
    }

    fn pop_front(&mut self) {
        if let Some(call) = self.calls.pop_front() {
            self.failures -= usize::from(call.failed);
        }
    }

    fn rate_reached(&self, config: &CircuitBreakerConfig) -> bool {
        let calls = self.calls.len();
        calls >= config.minimum_calls as usize
            && self.failures as f64 / calls as f64 >= config.failure_rate
    }

    fn clear(&mut self) {
        self.calls.clear();
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const START: u64 = 1_000_000;

    fn breaker(config: CircuitBreakerConfig) -> (Breaker, ManualClock) {
        config.validate().unwrap();
        let manual = ManualClock::new(START);
        (Breaker::new(config, Clock::from(manual.clone())), manual)
    }

    fn call(breaker: &Breaker, outcome: CallOutcome) {
        let permit = breaker.try_acquire().expect("admitted");
        breaker.record(permit, outcome);
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// Trips a closed breaker with `threshold` failures; returns when.
    fn trip(breaker: &Breaker, manual: &ManualClock) -> u64 {
        for _ in 0..breaker.shared.config.threshold {
            call(breaker, CallOutcome::Failure);
        }
        assert_eq!(breaker.status().state, BreakerState::Open);
        manual.now_ms()
    }

    /// Moves to the end of the open period and takes the probe it admits.
    fn probe(breaker: &Breaker, manual: &ManualClock) -> Permit {
        manual.set(breaker.retry_at_ms().expect("open until a time"));
        let permit = breaker.try_acquire().expect("a probe");
        assert_eq!(breaker.status().state, BreakerState::HalfOpen);
        permit
    }

    #[test]
    fn threshold_consecutive_failures_open_it() {
        let (breaker, _) = breaker(CircuitBreakerConfig {
            threshold: 3,
            ..Default::default()
        });
        call(&breaker, CallOutcome::Failure);
        call(&breaker, CallOutcome::Failure);
        call(&breaker, CallOutcome::Success);
        assert_eq!(breaker.status().failure_count, 0);
        call(&breaker, CallOutcome::Failure);
        call(&breaker, CallOutcome::Failure);
        let status = breaker.status();
        assert_eq!(status.state, BreakerState::Closed);
        assert_eq!(status.failure_count, 2);
        assert!(status.allows_request);
        call(&breaker, CallOutcome::Failure);
        let status = breaker.status();
        assert_eq!(status.state, BreakerState::Open);
        assert_eq!(status.failure_count, 3);
        assert!(!status.allows_request);
        assert_eq!(status.last_failure_at, Some(START));
        assert_eq!(status.trips, 1);
        assert!(breaker.try_acquire().is_none());
    }

    #[test]
    fn failure_rate_counts_from_minimum_calls() {
        let (breaker, _) = breaker(CircuitBreakerConfig {
            threshold: 100,
            failure_rate: 0.5,
            minimum_calls: 10,
            ..Default::default()
        });
        // Success, failure, ...: 4 failures in 9 calls, below the minimum.
        for i in 0..9 {
            let outcome = if i % 2 == 1 {
                CallOutcome::Failure
            } else {
                CallOutcome::Success
            };
            call(&breaker, outcome);
        }
        call(&breaker, CallOutcome::Failure);
        // 5 failures out of 10 calls: 0.5.
        assert_eq!(breaker.status().state, BreakerState::Open);
        assert_eq!(breaker.status().failure_count, 1);
    }

    #[test]
    fn below_minimum_calls_the_rate_never_opens_it() {
        let (breaker, _) = breaker(CircuitBreakerConfig {
            threshold: 100,
            minimum_calls: 10,
            ..Default::default()
        });
        // 8 of 9 calls fail: a rate of 0.89, over 0.5, but 9 calls.
        call(&breaker, CallOutcome::Success);
        for _ in 0..8 {
            call(&breaker, CallOutcome::Failure);
        }
        assert_eq!(breaker.status().state, BreakerState::Closed);
        call(&breaker, CallOutcome::Failure);
        assert_eq!(breaker.status().state, BreakerState::Open);
    }

    #[test]
    fn old_calls_slide_out_of_the_window() {
        let config = CircuitBreakerConfig {
            threshold: 100,
            failure_rate: 0.5,
            minimum_calls: 4,
            window: Duration::from_secs(60),
            ..Default::default()
        };
        // Old successes leave: 4 failures of 9 (0.44) would stay closed.
        let (breaker, manual) = breaker(config.clone());
        for _ in 0..5 {
            call(&breaker, CallOutcome::Success);
        }
        manual.advance(Duration::from_secs(30));
        for _ in 0..3 {
            call(&breaker, CallOutcome::Failure);
        }
        assert_eq!(breaker.status().state, BreakerState::Closed);
        manual.advance(Duration::from_secs(30));
        call(&breaker, CallOutcome::Failure);
        // The successes are exactly `window` old: gone; 4 of 4 fail.
        assert_eq!(breaker.status().state, BreakerState::Open);

        // Old failures leave: 4 failures of 7 (0.57) would open it.
        let (breaker, manual) = self::breaker(config);
        for _ in 0..3 {
            call(&breaker, CallOutcome::Failure);
        }
        manual.advance(Duration::from_secs(60));
        for _ in 0..3 {
            call(&breaker, CallOutcome::Success);
        }
        call(&breaker, CallOutcome::Failure);
        let status = breaker.status();
        assert_eq!(status.state, BreakerState::Closed);
        assert_eq!(status.failure_count, 1);
    }

    #[test]
    fn a_call_just_inside_the_window_still_counts() {
        let (breaker, manual) = breaker(CircuitBreakerConfig {
            threshold: 100,
            failure_rate: 1.0,
            minimum_calls: 2,
            window: Duration::from_secs(60),
            ..Default::default()
        });
        call(&breaker, CallOutcome::Failure);
        manual.advance(ms(59_999));
        call(&breaker, CallOutcome::Failure);
        assert_eq!(breaker.status().state, BreakerState::Open);

        let (breaker, manual) = self::breaker(breaker.shared.config.clone());
        call(&breaker, CallOutcome::Failure);
        manual.advance(ms(60_000));
        call(&breaker, CallOutcome::Failure);
        assert_eq!(breaker.status().state, BreakerState::Closed);
    }

    #[test]
    fn the_window_keeps_the_latest_calls_only() {
        let (breaker, _) = breaker(CircuitBreakerConfig {
            threshold: u32::MAX,
            failure_rate: 0.5,
            minimum_calls: 10,
            ..Default::default()
        });
        for _ in 0..WINDOW_CAPACITY * 2 {
            call(&breaker, CallOutcome::Success);
        }
        let state = breaker.shared.state.lock();
        assert_eq!(state.window.calls.len(), WINDOW_CAPACITY);
        assert_eq!(state.window.failures, 0);
        drop(state);
        // The latest 4096 calls: 2048 successes and 2048 failures opens it
        // exactly at the 2048th failure.
        for i in 1..=WINDOW_CAPACITY / 2 {
            call(&breaker, CallOutcome::Failure);
            let expected = if i == WINDOW_CAPACITY / 2 {
                BreakerState::Open
            } else {
                BreakerState::Closed
            };
            assert_eq!(breaker.status().state, expected, "failure {i}");
        }
    }

    #[test]
    fn slow_calls_count_as_failures() {
        let (breaker, manual) = breaker(CircuitBreakerConfig {
            threshold: 2,
            slow_call: Duration::from_secs(10),
            ..Default::default()
        });
        let permit = breaker.try_acquire().unwrap();
        manual.advance(ms(9_999));
        breaker.record(permit, CallOutcome::Success);
        assert_eq!(breaker.status().failure_count, 0);
        assert_eq!(breaker.status().last_failure_at, None);

        let permit = breaker.try_acquire().unwrap();
        manual.advance(ms(10_000));
        breaker.record(permit, CallOutcome::Success);
        assert_eq!(breaker.status().failure_count, 1);
        assert_eq!(breaker.status().last_failure_at, Some(START + 19_999));

        let permit = breaker.try_acquire().unwrap();
        manual.advance(ms(20_000));
        breaker.record(permit, CallOutcome::Success);
        assert_eq!(breaker.status().state, BreakerState::Open);
    }

    #[test]
    fn open_until_the_period_then_half_open_admits_one_probe() {
        let (breaker, manual) = breaker(CircuitBreakerConfig {
            threshold: 1,
            timeout: Duration::from_secs(60),
            ..Default::default()
        });
        let opened = trip(&breaker, &manual);
        let next = breaker.status().next_attempt_at.unwrap();
        assert!(
            (opened + 60_000..=opened + 66_000).contains(&next),
            "{next}"
        );
        assert_eq!(breaker.retry_at_ms(), Some(next));

        manual.set(opened + 60_000 - 1);
        assert!(breaker.try_acquire().is_none());
        assert!(!breaker.status().allows_request);
        manual.set(opened + 66_000 + 1);
        let status = breaker.status();
        assert_eq!(status.state, BreakerState::Open);
        assert!(status.allows_request);

        let probe = breaker.try_acquire().expect("a probe");
        let status = breaker.status();
        assert_eq!(status.state, BreakerState::HalfOpen);
        assert!(!status.allows_request);
        assert_eq!(status.next_attempt_at, None);
        assert_eq!(breaker.retry_at_ms(), None);
        assert!(breaker.try_acquire().is_none());
        breaker.release(probe);
    }

    #[test]
    fn half_open_admits_only_its_probes_at_once() {
        let (breaker, manual) = breaker(CircuitBreakerConfig {
            threshold: 1,
            half_open_probes: 3,
            success_threshold: 3,
            ..Default::default()
        });
        trip(&breaker, &manual);
        let first = probe(&breaker, &manual);
        let second = breaker.try_acquire().expect("probe 2");
        let third = breaker.try_acquire().expect("probe 3");
        assert!(breaker.try_acquire().is_none());
        assert!(!breaker.status().allows_request);
        // A released slot (the call was not made) is free again.
        breaker.release(second);
        assert!(breaker.status().allows_request);
        let fourth = breaker.try_acquire().expect("the freed slot");
        assert!(breaker.try_acquire().is_none());
        // So is a dropped one (the caller was cancelled).
        drop(third);
        let fifth = breaker.try_acquire().expect("the dropped slot");
        for permit in [first, fourth] {
            breaker.record(permit, CallOutcome::Success);
        }
        assert_eq!(breaker.status().state, BreakerState::HalfOpen);
        breaker.record(fifth, CallOutcome::Success);
        assert_eq!(breaker.status().state, BreakerState::Closed);
    }

    #[test]
    fn success_threshold_probes_close_it_and_clear_everything() {
        let (breaker, manual) = breaker(CircuitBreakerConfig {
            threshold: 2,
            success_threshold: 2,
            ..Default::default()
        });
        trip(&breaker, &manual);
        let failed_at = manual.now_ms();
        let permit = probe(&breaker, &manual);
        breaker.record(permit, CallOutcome::Success);
        let status = breaker.status();
        assert_eq!(status.state, BreakerState::HalfOpen);
        assert_eq!(status.failure_count, 0);
        assert!(status.allows_request);
        let permit = breaker.try_acquire().expect("the second probe");
        breaker.record(permit, CallOutcome::Success);
        assert_eq!(
            breaker.status(),
            BreakerStatus {
                state: BreakerState::Closed,
                failure_count: 0,
                allows_request: true,
                last_failure_at: Some(failed_at),
                next_attempt_at: None,
                trips: 1,
            }
        );
        // The backoff was reset: the next trip opens for `timeout` again.
        let opened = trip(&breaker, &manual);
        let next = breaker.retry_at_ms().unwrap();
        assert!(
            (opened + 60_000..=opened + 66_000).contains(&next),
            "{next}"
        );
    }

    #[test]
    fn a_failed_probe_reopens_it_for_longer() {
        let (breaker, manual) = breaker(CircuitBreakerConfig {
            threshold: 1,
            success_threshold: 2,
            ..Default::default()
        });
        trip(&breaker, &manual);
        let permit = probe(&breaker, &manual);
        breaker.record(permit, CallOutcome::Success);
        let permit = breaker.try_acquire().unwrap();
        let now = manual.now_ms();
        breaker.record(permit, CallOutcome::Failure);
        let status = breaker.status();
        assert_eq!(status.state, BreakerState::Open);
        assert_eq!(status.failure_count, 1);
        assert_eq!(status.trips, 2);
        assert_eq!(status.last_failure_at, Some(now));
        let next = status.next_attempt_at.unwrap();
        assert!((now + 120_000..=now + 132_000).contains(&next), "{next}");
    }

    #[test]
    fn the_open_period_doubles_up_to_max_timeout() {
        let (breaker, manual) = breaker(CircuitBreakerConfig {
            threshold: 1,
            timeout: Duration::from_secs(60),
            max_timeout: Duration::from_secs(600),
            ..Default::default()
        });
        trip(&breaker, &manual);
        let bases = [60_000, 120_000, 240_000, 480_000, 600_000, 600_000, 600_000];
        for (i, base) in bases.into_iter().enumerate() {
            if i > 0 {
                let permit = probe(&breaker, &manual);
                breaker.record(permit, CallOutcome::Failure);
            }
            let opened = manual.now_ms();
            let next = breaker.retry_at_ms().unwrap();
            assert!(
                (opened + base..=opened + base + base / 10).contains(&next),
                "trip {}: {next} - {opened} not in [{base}, {base} * 1.1]",
                i + 1
            );
            manual.set(opened + base - 1);
            assert!(breaker.try_acquire().is_none(), "trip {}", i + 1);
            manual.set(opened);
        }
        assert_eq!(breaker.status().trips, bases.len() as u64);
    }

    #[test]
    fn jitter_varies() {
        let (breaker, manual) = breaker(CircuitBreakerConfig {
            threshold: 1,
            timeout: Duration::from_secs(600),
            ..Default::default()
        });
        let mut jitters = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let opened = trip(&breaker, &manual);
            jitters.insert(breaker.retry_at_ms().unwrap() - opened - 600_000);
            breaker.close();
        }
        assert!(jitters.len() > 1, "{jitters:?}");
        assert!(jitters.iter().all(|&j| j <= 60_000), "{jitters:?}");
    }

    #[test]
    fn a_rate_limit_opens_it_until_the_reset() {
        let (breaker, manual) = breaker(CircuitBreakerConfig {
            threshold: 5,
            ..Default::default()
        });
        let reset = START + 3_600_000;
        call(
            &breaker,
            CallOutcome::RateLimited {
                until_ms: Some(reset),
            },
        );
        assert_eq!(
            breaker.status(),
            BreakerStatus {
                state: BreakerState::Open,
                failure_count: 1,
                allows_request: false,
                last_failure_at: Some(START),
                next_attempt_at: Some(reset),
                trips: 1,
            }
        );
        manual.set(reset - 1);
        assert!(breaker.try_acquire().is_none());
        manual.set(reset);
        assert!(breaker.try_acquire().is_some());
    }

    #[test]
    fn held_open_by_another_process_until_a_time() {
        let (breaker, manual) = breaker(CircuitBreakerConfig::default());
        let now = manual.now_ms();
        breaker.hold_open_until(now); // not after now: nothing
        assert_eq!(breaker.status().state, BreakerState::Closed);
        breaker.hold_open_until(now + 5_000);
        let status = breaker.status();
        assert_eq!(
            (status.state, status.next_attempt_at, status.trips),
            (BreakerState::Open, Some(now + 5_000), 1)
        );
        assert!(breaker.try_acquire().is_none());
        // Extended, not shortened, and not counted again.
        breaker.hold_open_until(now + 9_000);
        breaker.hold_open_until(now + 1_000);
        let status = breaker.status();
        assert_eq!(
            (status.next_attempt_at, status.trips),
            (Some(now + 9_000), 1)
        );
        manual.set(now + 9_000);
        let probe = breaker.try_acquire().expect("half-open at the time given");
        assert_eq!(breaker.status().state, BreakerState::HalfOpen);
        breaker.record(probe, CallOutcome::Success);
        // Opened by hand: left alone.
        breaker.open();
        breaker.hold_open_until(manual.now_ms() + 1_000);
        assert_eq!(breaker.status().next_attempt_at, None);
    }

    #[test]
    fn a_rate_limit_in_the_past_opens_it_until_now() {
        let (breaker, _) = breaker(CircuitBreakerConfig::default());
        call(
            &breaker,
            CallOutcome::RateLimited {
                until_ms: Some(START - 5_000),
            },
        );
        assert_eq!(breaker.retry_at_ms(), Some(START));
        assert_eq!(breaker.status().state, BreakerState::Open);
        assert!(breaker.status().allows_request);
    }

    #[test]
    fn a_rate_limit_without_a_reset_opens_it_for_the_period() {
        let (breaker, _) = breaker(CircuitBreakerConfig::default());
        call(&breaker, CallOutcome::RateLimited { until_ms: None });
        let next = breaker.retry_at_ms().unwrap();
        assert!((START + 60_000..=START + 66_000).contains(&next), "{next}");
        assert_eq!(breaker.status().failure_count, 1);
    }

    #[test]
    fn a_rate_limited_probe_reopens_it_until_the_reset() {
        let (breaker, manual) = breaker(CircuitBreakerConfig {
            threshold: 1,
            ..Default::default()
        });
        trip(&breaker, &manual);
        let permit = probe(&breaker, &manual);
        let reset = manual.now_ms() + 5_000;
        breaker.record(
            permit,
            CallOutcome::RateLimited {
                until_ms: Some(reset),
            },
        );
        assert_eq!(breaker.retry_at_ms(), Some(reset));
        assert_eq!(breaker.status().trips, 2);
    }

    #[test]
    fn manual_open_holds_until_close() {
        let (breaker, manual) = breaker(CircuitBreakerConfig::default());
        call(&breaker, CallOutcome::Failure);
        breaker.open();
        let status = breaker.status();
        assert_eq!(status.state, BreakerState::Open);
        assert_eq!(status.next_attempt_at, None);
        assert!(!status.allows_request);
        assert_eq!(status.trips, 1);
        assert_eq!(breaker.retry_at_ms(), None);
        manual.advance(Duration::from_secs(365 * 24 * 3600));
        assert!(breaker.try_acquire().is_none());
        assert_eq!(breaker.status().state, BreakerState::Open);
        // Already open: no second trip.
        breaker.open();
        assert_eq!(breaker.status().trips, 1);

        breaker.close();
        assert_eq!(
            breaker.status(),
            BreakerStatus {
                state: BreakerState::Closed,
                failure_count: 0,
                allows_request: true,
                last_failure_at: Some(START),
                next_attempt_at: None,
                trips: 1,
            }
        );
        assert!(breaker.try_acquire().is_some());
    }

    #[test]
    fn manual_close_clears_the_backoff_and_the_window() {
        let (breaker, manual) = breaker(CircuitBreakerConfig {
            threshold: 1,
            failure_rate: 0.5,
            minimum_calls: 2,
            ..Default::default()
        });
        trip(&breaker, &manual);
        let permit = probe(&breaker, &manual);
        breaker.record(permit, CallOutcome::Failure);
        breaker.close();
        let opened = trip(&breaker, &manual);
        let next = breaker.retry_at_ms().unwrap();
        assert!(
            (opened + 60_000..=opened + 66_000).contains(&next),
            "{next}"
        );

        // The window: calls before a close do not count after it. With
        // them, 2 failures of 3 (0.67) would open it.
        let (breaker, _) = self::breaker(CircuitBreakerConfig {
            threshold: 100,
            failure_rate: 0.6,
            minimum_calls: 2,
            ..Default::default()
        });
        call(&breaker, CallOutcome::Success);
        call(&breaker, CallOutcome::Failure);
        breaker.close();
        call(&breaker, CallOutcome::Failure);
        assert_eq!(breaker.status().state, BreakerState::Closed);
    }

    #[test]
    fn manual_open_of_a_half_open_breaker_counts_a_trip() {
        let (breaker, manual) = breaker(CircuitBreakerConfig {
            threshold: 1,
            ..Default::default()
        });
        trip(&breaker, &manual);
        let permit = probe(&breaker, &manual);
        breaker.open();
        // The probe ends after: it cannot close a forced-open breaker.
        breaker.record(permit, CallOutcome::Success);
        let status = breaker.status();
        assert_eq!(status.state, BreakerState::Open);
        assert_eq!(status.next_attempt_at, None);
        assert_eq!(status.trips, 2);
    }

    #[test]
    fn reading_the_status_changes_nothing() {
        let (breaker, manual) = breaker(CircuitBreakerConfig {
            threshold: 1,
            ..Default::default()
        });
        trip(&breaker, &manual);
        let before = breaker.status();
        manual.advance(Duration::from_secs(3600));
        let after = breaker.status();
        assert_eq!(
            after,
            BreakerStatus {
                allows_request: true,
                ..before.clone()
            }
        );
        for _ in 0..1_000 {
            assert_eq!(breaker.status(), after);
            assert_eq!(breaker.retry_at_ms(), before.next_attempt_at);
        }
        assert_eq!(breaker.status().state, BreakerState::Open);
        assert_eq!(breaker.status().trips, 1);
        assert!(breaker.try_acquire().is_some());
        assert_eq!(breaker.status().state, BreakerState::HalfOpen);
    }

    #[test]
    fn a_late_success_from_before_a_trip_changes_nothing() {
        let (breaker, manual) = breaker(CircuitBreakerConfig {
            threshold: 1,
            success_threshold: 1,
            ..Default::default()
        });
        let slow = breaker.try_acquire().unwrap();
        trip(&breaker, &manual);
        let status = breaker.status();
        breaker.record(slow, CallOutcome::Success);
        assert_eq!(breaker.status(), status);

        // Nor in half-open: it is not a probe.
        let (breaker, manual) = self::breaker(breaker.shared.config.clone());
        let slow = breaker.try_acquire().unwrap();
        trip(&breaker, &manual);
        let probe = probe(&breaker, &manual);
        breaker.record(slow, CallOutcome::Success);
        assert_eq!(breaker.status().state, BreakerState::HalfOpen);
        assert!(!breaker.status().allows_request);
        breaker.record(probe, CallOutcome::Success);
        assert_eq!(breaker.status().state, BreakerState::Closed);
    }

    #[test]
    fn a_late_failure_while_open_only_updates_the_counts() {
        let (breaker, manual) = breaker(CircuitBreakerConfig {
            threshold: 2,
            ..Default::default()
        });
        let late = breaker.try_acquire().unwrap();
        trip(&breaker, &manual);
        let before = breaker.status();
        manual.advance(ms(500));
        breaker.record(late, CallOutcome::RateLimited { until_ms: None });
        assert_eq!(
            breaker.status(),
            BreakerStatus {
                failure_count: 3,
                last_failure_at: Some(START + 500),
                ..before
            }
        );
    }

    #[test]
    fn a_late_failure_after_recovery_does_not_count() {
        let (breaker, manual) = breaker(CircuitBreakerConfig {
            threshold: 1,
            success_threshold: 1,
            ..Default::default()
        });
        let late = breaker.try_acquire().unwrap();
        trip(&breaker, &manual);
        let permit = probe(&breaker, &manual);
        breaker.record(permit, CallOutcome::Success);
        breaker.record(late, CallOutcome::Failure);
        let status = breaker.status();
        assert_eq!(status.state, BreakerState::Closed);
        assert_eq!(status.failure_count, 0);
        assert_eq!(status.last_failure_at, Some(manual.now_ms()));
    }

    #[test]
    fn a_stale_probe_does_not_free_a_new_slot() {
        let (breaker, manual) = breaker(CircuitBreakerConfig {
            threshold: 1,
            ..Default::default()
        });
        trip(&breaker, &manual);
        let old = probe(&breaker, &manual);
        let failing = {
            // A new half-open round, while the old probe is still out.
            breaker.open();
            breaker.close();
            trip(&breaker, &manual);
            probe(&breaker, &manual)
        };
        breaker.release(old);
        assert!(breaker.try_acquire().is_none());
        breaker.record(failing, CallOutcome::Failure);
        assert_eq!(breaker.status().state, BreakerState::Open);
    }

    #[test]
    fn config_defaults_and_json() {
        let config: CircuitBreakerConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, CircuitBreakerConfig::default());
        config.validate().unwrap();
        let config: CircuitBreakerConfig =
            serde_json::from_str(r#"{"threshold": 3, "window": 1.5, "max_timeout": 900}"#).unwrap();
        assert_eq!(
            config,
            CircuitBreakerConfig {
                threshold: 3,
                window: ms(1_500),
                max_timeout: Duration::from_secs(900),
                ..Default::default()
            }
        );
        let json = serde_json::to_value(CircuitBreakerConfig::default()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "threshold": 5, "failure_rate": 0.5, "minimum_calls": 10,
                "window": 60, "slow_call": 10, "timeout": 60,
                "max_timeout": 600, "half_open_probes": 1, "success_threshold": 2,
            })
        );
        let back: CircuitBreakerConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, CircuitBreakerConfig::default());

        let err =
            serde_json::from_str::<CircuitBreakerConfig>(r#"{"successThreshold": 3}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `successThreshold`"),
            "{err}"
        );
        let err = serde_json::from_str::<CircuitBreakerConfig>(r#"{"timeout": -1}"#).unwrap_err();
        assert!(err.to_string().contains("not a number of seconds"), "{err}");
    }

    #[test]
    fn config_validation_names_the_key() {
        let base = CircuitBreakerConfig::default;
        let long = MAX_TTL + Duration::from_secs(1);
        let cases = [
            (
                CircuitBreakerConfig {
                    threshold: 0,
                    ..base()
                },
                "circuit_breaker.threshold must be at least 1",
            ),
            (
                CircuitBreakerConfig {
                    failure_rate: 0.0,
                    ..base()
                },
                "circuit_breaker.failure_rate must be greater than 0 and at most 1",
            ),
            (
                CircuitBreakerConfig {
                    failure_rate: 1.01,
                    ..base()
                },
                "circuit_breaker.failure_rate must be greater than 0 and at most 1",
            ),
            (
                CircuitBreakerConfig {
                    failure_rate: f64::NAN,
                    ..base()
                },
                "circuit_breaker.failure_rate must be greater than 0 and at most 1",
            ),
            (
                CircuitBreakerConfig {
                    minimum_calls: 0,
                    ..base()
                },
                "circuit_breaker.minimum_calls must be at least 1",
            ),
            (
                CircuitBreakerConfig {
                    minimum_calls: 4097,
                    ..base()
                },
                "circuit_breaker.minimum_calls must be at most 4096",
            ),
            (
                CircuitBreakerConfig {
                    window: Duration::ZERO,
                    ..base()
                },
                "circuit_breaker.window must be greater than 0 seconds",
            ),
            (
                CircuitBreakerConfig {
                    slow_call: Duration::ZERO,
                    ..base()
                },
                "circuit_breaker.slow_call must be greater than 0 seconds",
            ),
            (
                CircuitBreakerConfig {
                    timeout: Duration::ZERO,
                    ..base()
                },
                "circuit_breaker.timeout must be greater than 0 seconds",
            ),
            (
                CircuitBreakerConfig {
                    window: long,
                    ..base()
                },
                "circuit_breaker.window is longer than 100 years",
            ),
            (
                CircuitBreakerConfig {
                    max_timeout: long,
                    ..base()
                },
                "circuit_breaker.max_timeout is longer than 100 years",
            ),
            (
                CircuitBreakerConfig {
                    timeout: Duration::from_secs(700),
                    ..base()
                },
                "circuit_breaker.max_timeout must be at least circuit_breaker.timeout",
            ),
            (
                CircuitBreakerConfig {
                    half_open_probes: 0,
                    ..base()
                },
                "circuit_breaker.half_open_probes must be at least 1",
            ),
            (
                CircuitBreakerConfig {
                    success_threshold: 0,
                    ..base()
                },
                "circuit_breaker.success_threshold must be at least 1",
            ),
        ];
        for (config, needle) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{needle}");
            assert!(err.message().starts_with(needle), "{}", err.message());
        }
        let edges = CircuitBreakerConfig {
            failure_rate: 1.0,
            minimum_calls: 4096,
            timeout: MAX_TTL,
            max_timeout: MAX_TTL,
            ..base()
        };
        edges.validate().unwrap();
    }

    #[test]
    fn the_status_serialises_with_the_shared_names() {
        let status = BreakerStatus {
            state: BreakerState::HalfOpen,
            failure_count: 2,
            allows_request: false,
            last_failure_at: Some(1_700_000_000_000),
            next_attempt_at: None,
            trips: 3,
        };
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({
                "state": "half-open", "failure_count": 2, "allows_request": false,
                "last_failure_at": 1_700_000_000_000u64, "next_attempt_at": null,
                "trips": 3,
            })
        );
        for state in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::from(state.as_str())
            );
            assert_eq!(state.to_string(), state.as_str());
        }
    }

    #[test]
    fn a_breaker_is_send_and_sync_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Breaker>();
        send_sync::<Permit>();
        let (breaker, _) = breaker(CircuitBreakerConfig {
            threshold: 1_000,
            ..Default::default()
        });
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if let Some(permit) = breaker.try_acquire() {
                            breaker.record(permit, CallOutcome::Failure);
                        }
                    }
                });
            }
        });
        // Threshold 1000 is not reached; the rate (1.0) over 10+ calls is.
        let status = breaker.status();
        assert_eq!(status.state, BreakerState::Open);
        assert_eq!(status.trips, 1);
    }
}
