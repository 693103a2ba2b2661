//! The panic boundary: every `extern "C"` body runs inside one of these, so
//! a panic never unwinds into C.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use tierstack::Error;

use crate::error::{set_last_error, tierstack_result};

/// Runs a fallible body: `Ok` becomes `TIERSTACK_RESULT_OK`; an error
/// becomes its kind's code and this thread's last error message; a panic
/// becomes `TIERSTACK_RESULT_INTERNAL`.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Error>) -> tierstack_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => tierstack_result::Ok,
        Ok(Err(err)) => {
            let result = tierstack_result::from(err.kind());
            set_last_error(err.to_string());
            result
        }
        Err(payload) => {
            set_last_error(panic_message(payload.as_ref()));
            tierstack_result::Internal
        }
    }
}

/// Runs an infallible body (an accessor); a panic gives `default`.
pub(crate) fn guard_or<T>(default: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        set_last_error(panic_message(payload.as_ref()));
        default
    })
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    let detail = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    format!("internal: a panic was caught at the C boundary: {detail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::last_error;

    #[test]
    fn a_panic_becomes_internal_with_its_message() {
        let result = guard(|| panic!("boom {}", 7));
        assert_eq!(result, tierstack_result::Internal);
        assert!(last_error().ends_with("boom 7"), "{}", last_error());
        assert_eq!(guard_or(5u8, || panic!("static")), 5);
        assert!(last_error().ends_with("static"), "{}", last_error());
    }
}
