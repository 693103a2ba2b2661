//! A breaker in a child forked while the parent used it: never locked by a
//! thread the child does not have, and free of the parent's probes.

use std::sync::Barrier;

use super::*;
use crate::fork::testing::in_child;

#[test]
fn a_child_forked_while_another_thread_held_the_breaker_uses_it_at_once() {
    let (breaker, _) = breaker(CircuitBreakerConfig::default());
    let held = Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            let _state = breaker.shared.lock();
            held.wait();
            // Long enough for the fork below to be under way meanwhile.
            std::thread::sleep(ms(200));
        });
        held.wait();
        let child = in_child(|| {
            let permit = breaker.try_acquire();
            permit.is_some() && breaker.status().state == BreakerState::Closed
        });
        assert_eq!(child, Some(0), "the child's breaker hung or refused");
    });
}

#[test]
fn a_child_forked_while_the_parent_probed_may_probe_for_itself() {
    let config = CircuitBreakerConfig {
        threshold: 1,
        half_open_probes: 1,
        success_threshold: 1,
        ..Default::default()
    };
    let (breaker, manual) = breaker(config);
    trip(&breaker, &manual);
    // The parent's only probe slot is taken by a call that the child,
    // which has only this thread, will never finish.
    let parent_probe = probe(&breaker, &manual);
    assert!(breaker.try_acquire().is_none());
    let child = in_child(|| {
        let Some(probe) = breaker.try_acquire() else {
            return false;
        };
        breaker.record(probe, CallOutcome::Success);
        breaker.status().state == BreakerState::Closed
    });
    assert_eq!(child, Some(0), "the child could not probe");
    // The parent's own breaker is as it was.
    assert_eq!(breaker.status().state, BreakerState::HalfOpen);
    assert!(breaker.try_acquire().is_none());
    breaker.record(parent_probe, CallOutcome::Success);
    assert_eq!(breaker.status().state, BreakerState::Closed);
}
