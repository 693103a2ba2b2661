//! Timing: alternating rounds of each contender, reduced to a median.

use std::time::{Duration, Instant};

use crate::BenchResult;
use crate::data;

/// One timed round of one contender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Time of the measured operations only.
    pub elapsed: Duration,
    /// Operations in the round.
    pub ops: usize,
    /// Operations whose result was checked and found right.
    pub verified: usize,
}

/// Times `ops` operations run by `run`, which returns how many of them it
/// verified.
pub fn timed(ops: usize, run: impl FnOnce() -> BenchResult<usize>) -> BenchResult<Round> {
    let start = Instant::now();
    let verified = run()?;
    Ok(Round {
        elapsed: start.elapsed(),
        ops,
        verified,
    })
}

/// A contender that reads every key of `order`, `passes` times per round,
/// through `get`, and verifies each value it gets.
pub fn reader<'a, V, G>(
    name: &'static str,
    order: &'a [&'a str],
    passes: usize,
    mut get: G,
) -> Contender<'a>
where
    V: AsRef<[u8]>,
    G: FnMut(&str) -> BenchResult<Option<V>> + 'a,
{
    let ops = order.len() * passes;
    let round = move || {
        timed(ops, || {
            let mut verified = 0;
            for _ in 0..passes {
                for &key in order {
                    if let Some(v) = std::hint::black_box(get(std::hint::black_box(key))?) {
                        verified += usize::from(data::value_matches(key, v.as_ref()));
                    }
                }
            }
            Ok(verified)
        })
    };
    (name, Box::new(round))
}

/// Everything measured of one contender.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    /// The contender.
    pub name: &'static str,
    /// Nanoseconds per operation, one figure per measured round.
    pub per_op_ns: Vec<f64>,
    /// Operations run, the warm-up round included.
    pub ops: usize,
    /// Operations verified, the warm-up round included; equals `ops`.
    pub verified: usize,
}

impl Samples {
    /// The median time per operation, in nanoseconds.
    pub fn median_ns(&self) -> f64 {
        median(&self.per_op_ns)
    }
}

/// A contender: its name and a function running one round.
pub type Contender<'a> = (&'static str, Box<dyn FnMut() -> BenchResult<Round> + 'a>);

/// Runs one warm-up round of each contender, then `rounds` rounds in turn
/// (A, B, A, B, ...), so that drift in the machine's speed touches all alike.
///
/// Fails if a round verified fewer operations than it ran.
pub fn alternate(rounds: usize, mut contenders: Vec<Contender<'_>>) -> BenchResult<Vec<Samples>> {
    let mut samples: Vec<Samples> = contenders
        .iter()
        .map(|(name, _)| Samples {
            name,
            per_op_ns: Vec::with_capacity(rounds),
            ops: 0,
            verified: 0,
        })
        .collect();
    for round in 0..=rounds {
        for ((name, run), samples) in contenders.iter_mut().zip(&mut samples) {
            let r = run()?;
            if r.verified != r.ops || r.ops == 0 {
                return Err(format!(
                    "{name}: {} of {} operations returned the expected result",
                    r.verified, r.ops
                )
                .into());
            }
            samples.ops += r.ops;
            samples.verified += r.verified;
            if round > 0 {
                samples
                    .per_op_ns
                    .push(r.elapsed.as_nanos() as f64 / r.ops as f64);
            }
        }
    }
    Ok(samples)
}

/// The median of `xs` (the mean of the middle two for an even count); NaN
/// for none.
pub fn median(xs: &[f64]) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// The `q` quantile of `xs` by nearest rank (0.5 the median, 0.99 the 99th
/// percentile); NaN for none.
pub fn percentile(xs: &[f64], q: f64) -> f64 {
    debug_assert!((0.0..=1.0).contains(&q), "a quantile is within 0..=1");
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    if xs.is_empty() {
        return f64::NAN;
    }
    let rank = (q * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_none() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let xs: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&xs, 0.5), 50.0);
        assert_eq!(percentile(&xs, 0.99), 99.0);
        assert_eq!(percentile(&xs, 1.0), 100.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn rounds_alternate_after_a_warm_up() {
        let log = std::cell::RefCell::new(Vec::new());
        let contender = |name: &'static str| -> Contender<'_> {
            let log = &log;
            (
                name,
                Box::new(move || {
                    log.borrow_mut().push(name);
                    timed(10, || Ok(10))
                }),
            )
        };
        let samples = alternate(2, vec![contender("a"), contender("b")]).unwrap();
        assert_eq!(*log.borrow(), ["a", "b", "a", "b", "a", "b"]);
        assert_eq!(samples[0].per_op_ns.len(), 2);
        assert_eq!((samples[1].ops, samples[1].verified), (30, 30));
    }

    #[test]
    fn an_unverified_round_is_an_error() {
        let wrong: Contender<'_> = ("wrong", Box::new(|| timed(10, || Ok(9))));
        let err = alternate(1, vec![wrong]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "wrong: 9 of 10 operations returned the expected result"
        );
    }
}
