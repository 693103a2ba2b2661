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
//!
//! **Fork.** The state is changed inside the fork gate (see `crate::fork`),
//! so a child never finds it locked by a thread it does not have. The
//! parent's permits belong to such threads: in a child, the first use of the
//! breaker starts a new generation and frees a half-open breaker's probe
//! slots, so that the child may probe for itself.

mod config;
mod locked;
#[cfg(test)]
mod tests;
mod window;

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

pub use config::CircuitBreakerConfig;
use window::Window;

use crate::clock::Clock;

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
            self.shared.lock().release(self);
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
        let mut state = self.shared.lock();
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
        let state = self.shared.lock();
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
        let mut state = self.shared.lock();
        if !matches!(state.phase, Phase::Open { .. }) {
            state.trips += 1;
        }
        state.enter(Phase::Open { until: None });
    }

    /// Closes the breaker, from any state, and clears the failure counts,
    /// the window and the backoff. `last_failure_at` and `trips` are history
    /// and stay.
    pub fn close(&self) {
        self.shared.lock().close();
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
        let mut state = self.shared.lock();
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
        match self.shared.lock().phase {
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
    /// The fork generation (see [`crate::fork`]) of the process the
    /// permits were issued in.
    forks: u64,
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
            forks: crate::fork::fork_generation(),
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
