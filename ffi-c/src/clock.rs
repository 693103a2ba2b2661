//! The test clock for C tests: `tierstack_advance_test_clock`.

use std::time::Duration;

use tierstack::{Error, ErrorKind};

use crate::error::tierstack_result;
use crate::panic::guard;

/// Test only: moves this process's test clock forward by `seconds`
/// (fractions allowed). Caches opened with `"test_clock": true` in their
/// config read their time from that clock, which starts at the wall-clock
/// time of its first use and otherwise stands still, so a test can pass a
/// TTL, a stale window or a breaker timeout without sleeping. Other caches
/// are not affected. The clock is shared by every such cache in the
/// process and never moves back.
///
/// A negative, NaN or infinite `seconds`, or one too large for a duration,
/// is `TIERSTACK_RESULT_INVALID_ARGUMENT` and moves nothing. Any thread may
/// call this.
#[unsafe(no_mangle)]
pub extern "C" fn tierstack_advance_test_clock(seconds: f64) -> tierstack_result {
    guard(|| {
        let by = duration(seconds)?;
        tierstack::advance_test_clock(by);
        Ok(())
    })
}

fn duration(seconds: f64) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "tierstack_advance_test_clock: seconds must be a finite number >= 0, got {seconds}"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::last_error;

    #[test]
    fn unusable_seconds_are_an_invalid_argument() {
        for seconds in [
            -1.0,
            -1e-9,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
        ] {
            assert_eq!(
                tierstack_advance_test_clock(seconds),
                tierstack_result::InvalidArgument,
                "{seconds}"
            );
            assert!(
                last_error().contains("finite number >= 0"),
                "{}",
                last_error()
            );
        }
        assert_eq!(duration(0.0).unwrap(), Duration::ZERO);
        assert_eq!(duration(-0.0).unwrap(), Duration::ZERO);
        assert_eq!(duration(1.5).unwrap(), Duration::from_millis(1500));
    }
}
