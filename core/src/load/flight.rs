//! A flight: one load of one key that every caller of the process shares,
//! waited on by blocking threads and async tasks alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tokio::sync::Notify;

use super::Outcome;

/// One load of one key that every caller of this process shares.
pub(crate) struct Flight {
    outcome: Mutex<Option<Outcome>>,
    /// Set once the flight has run for `fail_safe.soft_timeout`.
    soft_passed: AtomicBool,
    landed: Condvar,
    notify: Notify,
}

/// What a caller waiting on a flight learns.
pub(crate) enum Waited {
    /// The flight's outcome.
    Landed(Outcome),
    /// The soft timeout passed first (asked only by callers with a stale copy).
    SoftTimeout,
}

impl Flight {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            outcome: Mutex::new(None),
            soft_passed: AtomicBool::new(false),
            landed: Condvar::new(),
            notify: Notify::new(),
        })
    }

    pub(crate) fn land(&self, outcome: Outcome) {
        *self.outcome.lock() = Some(outcome);
        self.landed.notify_all();
        self.notify.notify_waiters();
    }

    pub(crate) fn pass_soft_timeout(&self) {
        let _guard = self.outcome.lock();
        self.soft_passed.store(true, Ordering::Release);
        self.landed.notify_all();
        self.notify.notify_waiters();
    }

    pub(crate) fn check(&self, has_stale: bool) -> Option<Waited> {
        if let Some(outcome) = &*self.outcome.lock() {
            return Some(Waited::Landed(outcome.clone()));
        }
        (has_stale && self.soft_passed.load(Ordering::Acquire)).then_some(Waited::SoftTimeout)
    }

    pub(crate) fn wait_blocking(&self, has_stale: bool) -> Waited {
        let mut outcome = self.outcome.lock();
        loop {
            if let Some(outcome) = &*outcome {
                return Waited::Landed(outcome.clone());
            }
            if has_stale && self.soft_passed.load(Ordering::Acquire) {
                return Waited::SoftTimeout;
            }
            self.landed.wait(&mut outcome);
        }
    }

    pub(crate) async fn wait(&self, has_stale: bool) -> Waited {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(waited) = self.check(has_stale) {
                return waited;
            }
            notified.await;
        }
    }
}

/// Awaits `run`, calling `on_soft` once if it is still running after `soft`.
pub(crate) async fn soft_timed<T>(
    soft: Duration,
    run: impl std::future::Future<Output = T>,
    on_soft: impl FnOnce(),
) -> T {
    tokio::pin!(run);
    tokio::select! {
        done = &mut run => return done,
        () = tokio::time::sleep(soft) => on_soft(),
    }
    run.await
}
