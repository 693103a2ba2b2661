//! Reading the status, and permits from an earlier generation.

use super::*;

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
