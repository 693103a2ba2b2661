//! Test only: `advanceTestClock`, which moves the process's test clock that
//! every storage opened with `testClock: true` reads its time from.

use std::time::Duration;

use napi_derive::napi;
use tierstack::ErrorKind;

/// Test only: moves this process's test clock forward by `seconds`
/// (fractions allowed). Every storage opened with `testClock: true` reads
/// its time from that clock, which stands still until this moves it, so a
/// test passes a TTL, a negative TTL, a stale window or a breaker timeout
/// without sleeping. Other storages are not affected. Throws with
/// `code === 'invalid_argument'` for a negative, NaN or infinite number.
#[napi(catch_unwind)]
pub fn advance_test_clock(seconds: f64) -> napi::Result<(), &'static str> {
    let by = Duration::try_from_secs_f64(seconds).map_err(|_| {
        napi::Error::new(
            ErrorKind::InvalidArgument.as_str(),
            format!(
                "advanceTestClock: seconds must be a finite number of at least 0, got {seconds}"
            ),
        )
    })?;
    tierstack::advance_test_clock(by);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_nan_or_infinite_step_is_an_invalid_argument() {
        for seconds in [-1.0, -1e-9, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = advance_test_clock(seconds).unwrap_err();
            assert_eq!(err.status, "invalid_argument", "{seconds}");
            assert_eq!(
                err.reason,
                format!(
                    "advanceTestClock: seconds must be a finite number of at least 0, got {seconds}"
                )
            );
        }
        assert!(advance_test_clock(0.0).is_ok());
    }
}
