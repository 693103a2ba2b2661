//! Unit tests of the breaker, driven by a manual clock: the helpers they
//! share, and one file per part of the state machine.

mod closed;
mod config;
mod fork;
mod generations;
mod manual;
mod open;

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
