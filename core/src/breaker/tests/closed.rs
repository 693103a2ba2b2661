//! Closed: what opens the breaker (consecutive failures, the failure rate
//! over the sliding window, slow calls).

use super::*;
use crate::breaker::window::WINDOW_CAPACITY;

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
