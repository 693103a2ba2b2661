//! Wall-clock time in milliseconds since the Unix epoch, and a clock that
//! tests can drive.
//!
//! Expiry times are stored as wall-clock milliseconds because every process
//! sharing a SQLite file must agree on them. The system clock reads
//! `CLOCK_REALTIME_COARSE` (a few nanoseconds through the vDSO, resolution
//! of one kernel tick, typically 1–4 ms), so checking a TTL on the L1 hit
//! path is nearly free. TTLs are therefore honoured to within one tick.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The source of "now" for a cache. Cheap to clone.
///
/// [`Clock::system`] is the default; [`ManualClock`] lets a test move time
/// forward without sleeping.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::system"),
            Some(ms) => write!(f, "Clock::manual({} ms)", ms.load(Ordering::Relaxed)),
        }
    }
}

impl Clock {
    /// The operating system's wall clock.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// The process's test clock (see [`advance_test_clock`]).
    pub fn test() -> Self {
        Self::from(test_clock().clone())
    }

    /// Whether this is the operating system's wall clock.
    pub fn is_system(&self) -> bool {
        self.manual.is_none()
    }

    /// Milliseconds since the Unix epoch.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        match &self.manual {
            None => system_now_ms(),
            Some(ms) => ms.load(Ordering::Acquire),
        }
    }
}

#[inline]
fn system_now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME_COARSE exists
    // on every Linux since 2.6.32 and cannot fail with a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    if rc == 0 {
        ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
    } else {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// The process's test clock: it starts at the wall-clock time of its first
/// use and then moves only when [`advance_test_clock`] moves it.
fn test_clock() -> &'static ManualClock {
    static TEST_CLOCK: OnceLock<ManualClock> = OnceLock::new();
    TEST_CLOCK.get_or_init(ManualClock::starting_now)
}

/// Test only: moves this process's test clock forward by `by`. Caches opened
/// with [`crate::Config::test_clock`] read their time from it; other caches
/// are not affected. Every host exposes it for its tests (C
/// `tierstack_advance_test_clock`, Python `tierstack.advance_test_clock`,
/// Node `advanceTestClock`), and the conformance vectors' `advance` step
/// calls it.
///
/// ```
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir().unwrap();
/// let mut config = tierstack::Config::default();
/// config.test_clock = true;
/// config.sqlite.path = Some(dir.path().join("cache.db"));
/// let cache = tierstack::blocking::Cache::open(config).unwrap();
/// cache.set_with("a", "1", tierstack::SetOptions::new().ttl(Duration::from_secs(5))).unwrap();
/// tierstack::advance_test_clock(Duration::from_secs(4));
/// assert!(cache.get("a").unwrap().is_some());
/// tierstack::advance_test_clock(Duration::from_secs(1));
/// assert!(cache.get("a").unwrap().is_none());
/// ```
pub fn advance_test_clock(by: Duration) {
    test_clock().advance(by);
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use tierstack::{Clock, ManualClock};
///
/// let manual = ManualClock::new(1_000);
/// let clock = Clock::from(manual.clone());
/// manual.advance(Duration::from_secs(2));
/// assert_eq!(clock.now_ms(), 3_000);
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at `start_ms` milliseconds since the Unix epoch.
    pub fn new(start_ms: u64) -> Self {
        Self {
            ms: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// A clock standing at the current wall-clock time.
    pub fn starting_now() -> Self {
        Self::new(system_now_ms())
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.ms.fetch_add(by.as_millis() as u64, Ordering::AcqRel);
    }

    /// Sets the time to `ms` milliseconds since the Unix epoch, earlier
    /// than now too: a wall clock can be stepped back (by NTP, by an
    /// administrator), and a cache must cope.
    pub fn set(&self, ms: u64) {
        self.ms.store(ms, Ordering::Release);
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.ms.load(Ordering::Acquire)
    }
}

impl From<ManualClock> for Clock {
    fn from(manual: ManualClock) -> Self {
        Self {
            manual: Some(manual.ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_tracks_wall_time_within_a_tick() {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let coarse = Clock::system().now_ms();
        assert!(wall.abs_diff(coarse) < 50, "wall {wall} coarse {coarse}");
    }

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let manual = ManualClock::new(10);
        let clock = Clock::from(manual.clone());
        assert_eq!(clock.now_ms(), 10);
        manual.advance(Duration::from_millis(1_500));
        assert_eq!(clock.now_ms(), 1_510);
    }
}
