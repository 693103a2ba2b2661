//! The process's test clock, moved from Python: `advance_test_clock`.

use std::time::Duration;

use pyo3::prelude::*;
use tierstack::ErrorKind;
use tierstack::config::MAX_TTL;

use crate::error::new_err;

/// Test only: moves this process's test clock forward by `seconds`; caches
/// opened with `test_clock=True` read their time from it (see
/// [`tierstack::advance_test_clock`]). `seconds` may be 0; a negative, NaN
/// or infinite number, or one over 100 years (the longest TTL), raises
/// `InvalidArgumentError` and moves nothing.
#[pyfunction]
pub(crate) fn advance_test_clock(py: Python<'_>, seconds: f64) -> PyResult<()> {
    let refuse = |why: &str| {
        new_err(
            py,
            ErrorKind::InvalidArgument,
            format!("advance_test_clock: {seconds:?} seconds {why}"),
            None,
        )
    };
    if seconds.is_nan() || seconds.is_infinite() {
        return Err(refuse("is not a finite number"));
    }
    if seconds < 0.0 {
        return Err(refuse("is negative: the test clock only moves forward"));
    }
    if seconds > MAX_TTL.as_secs_f64() {
        return Err(refuse("is longer than 100 years"));
    }
    tierstack::advance_test_clock(Duration::from_secs_f64(seconds));
    Ok(())
}
