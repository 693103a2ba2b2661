//! The sliding window of calls the failure rate is taken over.

use std::collections::VecDeque;
use std::time::Duration;

use super::CircuitBreakerConfig;

/// The most calls the sliding window keeps; also the largest
/// `minimum_calls` accepted.
pub(super) const WINDOW_CAPACITY: usize = 4096;

/// The calls recorded while closed within the last `window`, oldest first.
#[derive(Default)]
pub(super) struct Window {
    pub(super) calls: VecDeque<Call>,
    pub(super) failures: usize,
}

#[derive(Clone, Copy)]
pub(super) struct Call {
    at_ms: u64,
    failed: bool,
}

impl Window {
    pub(super) fn push(&mut self, now: u64, failed: bool, span: Duration) {
        // Pruned from the front: if the wall clock stepped back, a few
        // calls behind a later one stay a little longer; the cap bounds them.
        while let Some(oldest) = self.calls.front() {
            let old = Duration::from_millis(now.saturating_sub(oldest.at_ms)) >= span;
            if !old && self.calls.len() < WINDOW_CAPACITY {
                break;
            }
            self.pop_front();
        }
        self.calls.push_back(Call { at_ms: now, failed });
        self.failures += usize::from(failed);
    }

    fn pop_front(&mut self) {
        if let Some(call) = self.calls.pop_front() {
            self.failures -= usize::from(call.failed);
        }
    }

    pub(super) fn rate_reached(&self, config: &CircuitBreakerConfig) -> bool {
        let calls = self.calls.len();
        calls >= config.minimum_calls as usize
            && self.failures as f64 / calls as f64 >= config.failure_rate
    }

    pub(super) fn clear(&mut self) {
        self.calls.clear();
        self.failures = 0;
    }
}
