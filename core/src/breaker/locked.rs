//! The breaker's state lock: taken inside the fork gate, and the parent's
//! permits forgotten on its first use in a forked child.

use std::ops::{Deref, DerefMut};

use parking_lot::MutexGuard;

use super::{Phase, Shared, State};
use crate::fork::{ForkGate, fork_gate, fork_generation};

impl Shared {
    /// The state, locked inside the fork gate; its first use in a forked
    /// child forgets the parent's permits (see the [breaker's docs](super)).
    pub(super) fn lock(&self) -> Locked<'_> {
        let gate = fork_gate();
        let mut state = self.state.lock();
        let forks = fork_generation();
        if state.forks != forks {
            state.forks = forks;
            let phase = match state.phase {
                Phase::HalfOpen { successes, .. } => Phase::HalfOpen {
                    in_flight: 0,
                    successes,
                },
                phase => phase,
            };
            state.enter(phase);
        }
        Locked { state, _gate: gate }
    }
}

/// The locked state, and the fork gate held until it is unlocked (fields
/// drop in order).
pub(super) struct Locked<'a> {
    state: MutexGuard<'a, State>,
    _gate: ForkGate,
}

impl Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}
