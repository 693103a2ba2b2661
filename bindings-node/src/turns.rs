//! The order of a storage's writes. Each write handed to a thread takes a
//! turn on the JS thread, when it is made, and waits for it on its thread,
//! so a storage's writes are done in the order they were made, however the
//! threads are scheduled (libuv's pool runs queued work on four threads at
//! once). A `set` is done at once on the JS thread only while no turn is
//! taken and not yet done.

use std::collections::BTreeSet;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

/// The turns of one storage.
#[derive(Default)]
pub(crate) struct Turns {
    state: Mutex<State>,
    turned: Condvar,
}

#[derive(Default)]
struct State {
    /// The number the next turn gets.
    next: u64,
    /// The turn being served: every one before it is done.
    serving: u64,
    /// Turns done out of order (dropped without running), skipped when
    /// they come up.
    skipped: BTreeSet<u64>,
}

/// A turn taken; done when dropped.
pub(crate) struct Turn {
    turns: Arc<Turns>,
    number: u64,
}

impl Turns {
    /// Takes the next turn.
    pub(crate) fn take(self: &Arc<Self>) -> Turn {
        let mut state = self.state.lock();
        let number = state.next;
        state.next += 1;
        Turn {
            turns: self.clone(),
            number,
        }
    }

    /// Whether every turn taken is done.
    pub(crate) fn idle(&self) -> bool {
        let state = self.state.lock();
        state.serving == state.next
    }
}

impl Turn {
    /// Waits until every turn taken before this one is done.
    pub(crate) fn wait(&self) {
        let mut state = self.turns.state.lock();
        while state.serving != self.number {
            self.turns.turned.wait(&mut state);
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut state = self.turns.state.lock();
        let state = &mut *state;
        state.skipped.insert(self.number);
        while state.skipped.remove(&state.serving) {
            state.serving += 1;
        }
        self.turns.turned.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_are_served_in_the_order_taken() {
        let turns = Arc::new(Turns::default());
        let taken: Vec<Turn> = (0..8).map(|_| turns.take()).collect();
        assert!(!turns.idle());
        let done = Arc::new(Mutex::new(Vec::new()));
        // Run on threads started in reverse order.
        let threads: Vec<_> = taken
            .into_iter()
            .enumerate()
            .rev()
            .map(|(i, turn)| {
                let done = done.clone();
                std::thread::spawn(move || {
                    turn.wait();
                    done.lock().push(i);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(*done.lock(), (0..8).collect::<Vec<_>>());
        assert!(turns.idle());
    }

    #[test]
    fn a_turn_dropped_unrun_does_not_hold_up_the_next() {
        let turns = Arc::new(Turns::default());
        let (first, second, third) = (turns.take(), turns.take(), turns.take());
        drop(second);
        drop(first);
        third.wait();
        drop(third);
        assert!(turns.idle());
    }
}
