//! Open and half-open: the open period, its backoff and jitter, probes, and
//! rate limits.

use super::*;

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
