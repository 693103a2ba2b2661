//! Manual open and close.

use super::*;

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
