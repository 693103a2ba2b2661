//! A breaker in a child forked while the parent used it: never locked by a
//! thread the child does not have, and free of the parent's probes.

use std::sync::Barrier;
use std::time::Instant;

use super::*;

/// Forks; the child runs `f` and exits 0 if it returned true, 1 if not.
/// `None` if the child had not exited after 10 s (it is killed then).
fn in_child(f: impl FnOnce() -> bool) -> Option<i32> {
    // SAFETY: the child only uses a breaker (whose fork handling is under
    // test) and leaves through `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = i32::from(!f());
        // SAFETY: ends the child without running the parent's exit hooks.
        unsafe { libc::_exit(code) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = 0;
    // SAFETY: waits for the child forked above; `status` is writable.
    while unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == 0 {
        if Instant::now() > deadline {
            // SAFETY: kills and reaps the child forked above, stuck.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(ms(5));
    }
    assert!(libc::WIFEXITED(status), "the child died: status {status}");
    Some(libc::WEXITSTATUS(status))
}

#[test]
fn a_child_forked_while_another_thread_held_the_breaker_uses_it_at_once() {
    crate::fork::watch_forks();
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
    crate::fork::watch_forks();
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
