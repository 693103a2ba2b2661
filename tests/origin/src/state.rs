//! The state the listeners share with the `Origin` handle: files, faults,
//! the rate limit, the request log and the writable store, behind one mutex.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::model::{Fault, Host, RateLimit, Request, epoch_now};
use crate::store::Store;
use crate::writes::WriteStore;

/// The state, shared between the handle and the server thread.
pub(crate) type Shared = Arc<Mutex<State>>;

/// Locks the state. A panic while it was held leaves it usable: every
/// update is a single assignment or push.
pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the rate limit says about one api request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateVerdict {
    /// Serve it.
    Allowed,
    /// Answer 403: the window is used up.
    Exceeded,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) store: Store,
    faults: Vec<Fault>,
    pub(crate) rate: RateLimit,
    log: Vec<(u64, Request)>,
    next_id: u64,
    /// The raw host's base URL, for `download_url`.
    pub(crate) raw_url: String,
    /// The key-value store under `/store/`.
    pub(crate) writes: WriteStore,
}

impl State {
    pub(crate) fn new(raw_url: String) -> State {
        State {
            store: Store::seeded(),
            faults: Vec::new(),
            rate: RateLimit::fresh(epoch_now()),
            log: Vec::new(),
            next_id: 0,
            raw_url,
            writes: WriteStore::default(),
        }
    }

    /// Seed content, no faults, a fresh rate limit, an empty log, an empty
    /// store. Request ids go on from where they were, so that a request
    /// answered after the reset never sets the status of one logged after
    /// it; the store keeps track of writes that arrived before the reset, so
    /// that they are not applied after it.
    pub(crate) fn reset(&mut self) {
        let next_id = self.next_id;
        let mut writes = std::mem::take(&mut self.writes);
        writes.reset();
        *self = State::new(std::mem::take(&mut self.raw_url));
        self.next_id = next_id;
        self.writes = writes;
    }

    /// Logs a request; the id sets its status later.
    pub(crate) fn log(&mut self, request: Request) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.log.push((id, request));
        id
    }

    /// Records the status answered to a logged request (unless the log was
    /// cleared since).
    pub(crate) fn answered(&mut self, id: u64, status: u16) {
        if let Ok(i) = self.log.binary_search_by_key(&id, |(id, _)| *id) {
            self.log[i].1.status = status;
        }
    }

    pub(crate) fn requests(&self) -> Vec<Request> {
        self.log.iter().map(|(_, r)| r.clone()).collect()
    }

    pub(crate) fn count_matching(&self, path_contains: &str) -> usize {
        self.log
            .iter()
            .filter(|(_, r)| r.path.contains(path_contains))
            .count()
    }

    pub(crate) fn clear_log(&mut self) {
        self.log.clear();
    }

    /// Adds a fault after the others; one that applies to no request
    /// (`times: Some(0)`) is dropped.
    pub(crate) fn add_fault(&mut self, fault: Fault) {
        if fault.times != Some(0) {
            self.faults.push(fault);
        }
    }

    pub(crate) fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// The first fault that matches, counting down its `times` (and
    /// removing it when they run out).
    pub(crate) fn take_fault(&mut self, host: Host, path: &str) -> Option<Fault> {
        let i = self.faults.iter().position(|f| f.matches(host, path))?;
        let fault = self.faults[i].clone();
        match fault.times {
            Some(n) if n <= 1 => {
                self.faults.remove(i);
            }
            Some(n) => self.faults[i].times = Some(n - 1),
            None => {}
        }
        Some(fault)
    }

    /// Admits an api request at `now` (epoch seconds): starts a new window
    /// when the old one has ended, and refuses when none are left. The
    /// request is counted by [`State::charge`] once its answer is known,
    /// since 304s are free.
    pub(crate) fn admit(&mut self, now: u64) -> RateVerdict {
        self.rate.roll(now);
        if self.rate.remaining == 0 {
            RateVerdict::Exceeded
        } else {
            RateVerdict::Allowed
        }
    }

    /// Counts one answered api request against the limit.
    pub(crate) fn charge(&mut self) {
        self.rate.remaining = self.rate.remaining.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str) -> Request {
        Request {
            host: Host::Raw,
            method: "GET".into(),
            path: path.into(),
            query: None,
            authorization: None,
            if_none_match: None,
            status: 0,
        }
    }

    #[test]
    fn faults_apply_in_order_and_count_down() {
        let mut state = State::new(String::new());
        state.add_fault(Fault {
            path_contains: Some("button".into()),
            times: Some(2),
            status: Some(500),
            ..Fault::default()
        });
        state.add_fault(Fault {
            host: Some(Host::Api),
            status: Some(502),
            ..Fault::default()
        });
        state.add_fault(Fault {
            times: Some(0),
            status: Some(503),
            ..Fault::default()
        });
        let status = |s: &mut State, host, path| s.take_fault(host, path).and_then(|f| f.status);
        assert_eq!(status(&mut state, Host::Raw, "/x/button.tsx"), Some(500));
        assert_eq!(status(&mut state, Host::Raw, "/x/card.tsx"), None);
        assert_eq!(status(&mut state, Host::Api, "/x/button.tsx"), Some(500));
        assert_eq!(status(&mut state, Host::Api, "/x/button.tsx"), Some(502));
        assert_eq!(status(&mut state, Host::Raw, "/x/button.tsx"), None);
        assert_eq!(status(&mut state, Host::Api, "/x/card.tsx"), Some(502));
    }

    #[test]
    fn rate_limit_counts_down_refuses_and_recovers_at_reset() {
        let mut state = State::new(String::new());
        state.rate = RateLimit {
            limit: 2,
            remaining: 2,
            reset: 1_000,
        };
        assert_eq!(state.admit(990), RateVerdict::Allowed);
        state.charge();
        assert_eq!(state.admit(990), RateVerdict::Allowed);
        state.charge();
        assert_eq!(state.rate.used(), 2);
        assert_eq!(state.admit(999), RateVerdict::Exceeded);
        assert_eq!(state.admit(1_000), RateVerdict::Allowed);
        assert_eq!(
            state.rate,
            RateLimit {
                limit: 2,
                remaining: 2,
                reset: 4_600
            }
        );
    }

    #[test]
    fn the_log_records_status_by_id_and_survives_clearing() {
        let mut state = State::new(String::new());
        let first = state.log(request("/a"));
        let second = state.log(request("/b"));
        state.answered(second, 404);
        state.clear_log();
        state.answered(first, 200);
        assert!(state.requests().is_empty());
        let third = state.log(request("/a/b"));
        state.answered(third, 304);
        assert_eq!(state.requests()[0].status, 304);
        assert_eq!(state.count_matching("/a"), 1);
    }

    #[test]
    fn a_request_answered_after_a_reset_leaves_the_new_log_alone() {
        let mut state = State::new(String::new());
        let before = state.log(request("/slow"));
        state.reset();
        let after = state.log(request("/new"));
        state.answered(before, 200);
        assert_eq!(state.requests()[0].status, 0);
        state.answered(after, 404);
        assert_eq!(state.requests()[0].status, 404);
    }
}
