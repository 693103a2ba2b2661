//! The one rule every host follows for a TTL given in seconds.

use std::time::Duration;

use super::MAX_TTL;
use crate::error::{Error, ErrorKind, Result};

/// Turns a TTL given in seconds by a host (C, Python, Node, the CLI) into a
/// [`Duration`]. Every host passes its TTL argument through this function,
/// so one rule holds everywhere (in Rust too: [`crate::SetOptions::ttl`]
/// with [`Duration::ZERO`] takes the tier defaults):
///
/// | seconds | meaning |
/// |---|---|
/// | absent (the host does not call this) or `0` | the tier defaults (`Ok(None)`): `sqlite.ttl`, and `memory.ttl` in L1 |
/// | more than 0, at most [`MAX_TTL`] (100 years); fractions allowed | that TTL (`Ok(Some(..))`); L1 still keeps an entry at most `memory.ttl` |
/// | negative, NaN, infinite, or more than 100 years | an [`ErrorKind::InvalidArgument`] error |
///
/// A positive TTL shorter than a nanosecond counts as one nanosecond (the
/// entry is stored already expired). This function never panics.
pub fn ttl_from_seconds(secs: f64) -> Result<Option<Duration>> {
    let refuse = |why: &str| {
        Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("ttl {secs:?} {why}"),
        ))
    };
    if secs == 0.0 {
        return Ok(None);
    }
    if secs.is_nan() {
        return refuse("is not a number of seconds");
    }
    if secs.is_infinite() {
        return refuse("is not a finite number of seconds");
    }
    if secs < 0.0 {
        return refuse("is negative: give 0 (or no ttl) for the tier default");
    }
    if secs > MAX_TTL.as_secs_f64() {
        return refuse("seconds is longer than 100 years (3153600000 seconds)");
    }
    // In range, so the conversion cannot overflow.
    Ok(Some(
        Duration::from_secs_f64(secs).max(Duration::from_nanos(1)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ttl_seconds_follow_one_rule() {
        assert_eq!(ttl_from_seconds(0.0).unwrap(), None);
        assert_eq!(ttl_from_seconds(-0.0).unwrap(), None);
        assert_eq!(
            ttl_from_seconds(1.5).unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            ttl_from_seconds(MAX_TTL.as_secs_f64()).unwrap(),
            Some(MAX_TTL)
        );
        assert_eq!(
            ttl_from_seconds(1e-300).unwrap(),
            Some(Duration::from_nanos(1))
        );
        let refused = [
            (-3.0, "ttl -3.0 is negative"),
            (-1e-300, "is negative"),
            (f64::NAN, "ttl NaN is not a number"),
            (f64::INFINITY, "ttl inf is not a finite number"),
            (f64::NEG_INFINITY, "ttl -inf is not a finite number"),
            (1e12, "ttl 1000000000000.0 seconds is longer than 100 years"),
            (1e20, "ttl 1e20 seconds is longer than 100 years"),
            (MAX_TTL.as_secs_f64() + 1.0, "longer than 100 years"),
            (f64::MAX, "longer than 100 years"),
        ];
        for (secs, needle) in refused {
            let err = ttl_from_seconds(secs).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{secs}");
            assert!(err.message().contains(needle), "{secs}: {}", err.message());
        }
    }

    #[test]
    fn host_ttl_seconds_never_panic() {
        // Every sign and exponent, with a few mantissas each: no input panics.
        for sign in [0u64, 1] {
            for exponent in 0u64..=0x7ff {
                for mantissa in [0u64, 1, 0x8_0000_0000_0000, 0xf_ffff_ffff_ffff] {
                    let secs = f64::from_bits(sign << 63 | exponent << 52 | mantissa);
                    let outcome = std::panic::catch_unwind(|| ttl_from_seconds(secs));
                    let outcome = outcome.unwrap_or_else(|_| panic!("ttl {secs:?} panicked"));
                    if let Ok(Some(ttl)) = outcome {
                        assert!(!ttl.is_zero() && ttl <= MAX_TTL, "{secs:?}");
                    }
                }
            }
        }
    }
}
