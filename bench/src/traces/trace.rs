//! The request sequences of the hit-ratio-against-size scenario: seeded
//! Zipf draws, and Zipf draws interleaved with one-shot scans.

use std::fmt::Write as _;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Zipf};

use crate::BenchResult;
use crate::data::SEED;
use crate::hit_ratio::item_key;

/// Length of every key of a trace: `k0000042`.
pub const KEY_LEN: usize = 8;

/// Items whose keys keep the fixed width of [`item_key`] ([`KEY_LEN`]).
const MAX_ITEMS: usize = 10_000_000;

/// A request sequence and the keys of its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The trace's name in the table.
    pub name: &'static str,
    /// The item of each request, in order.
    pub requests: Vec<u32>,
    /// The keys of items `0..items`, back to back, each [`KEY_LEN`] bytes.
    keys: String,
}

impl Trace {
    /// A trace of the given requests; items are numbered from 0 up.
    pub fn new(name: &'static str, requests: Vec<u32>) -> BenchResult<Self> {
        let items = requests.iter().max().map_or(0, |&m| m as usize + 1);
        if items > MAX_ITEMS || requests.len() >= u32::MAX as usize {
            return Err(format!(
                "{name}: {items} items in {} requests is past this scenario's key width",
                requests.len()
            )
            .into());
        }
        let mut keys = String::with_capacity(items * KEY_LEN);
        for i in 0..items {
            write!(keys, "{}", item_key(i))?;
        }
        debug_assert_eq!(keys.len(), items * KEY_LEN);
        Ok(Self {
            name,
            requests,
            keys,
        })
    }

    /// `requests` draws from Zipf(`exponent`) over `keys` items (0 the most
    /// popular), seeded.
    pub fn zipf(
        name: &'static str,
        exponent: f64,
        keys: usize,
        requests: usize,
    ) -> BenchResult<Self> {
        let mut draw = zipf_draws(keys, exponent)?;
        Self::new(name, (0..requests).map(|_| draw()).collect())
    }

    /// The scan trace: runs of `hot_run` Zipf(0.9) draws over `keys` items,
    /// each followed by `scan_len` items never requested before, in
    /// ascending order from `keys` on; `requests` in all.
    pub fn with_scans(
        keys: usize,
        requests: usize,
        hot_run: usize,
        scan_len: usize,
    ) -> BenchResult<Self> {
        let mut draw = zipf_draws(keys, 0.9)?;
        let mut trace = Vec::with_capacity(requests);
        let mut next_new = keys as u32;
        while trace.len() < requests {
            let hot = hot_run.min(requests - trace.len());
            trace.extend((0..hot).map(|_| draw()));
            let scan = scan_len.min(requests - trace.len());
            trace.extend(next_new..next_new + scan as u32);
            next_new += scan as u32;
        }
        Self::new("Zipf 0.9 + scans", trace)
    }

    /// The key of `item`.
    #[inline]
    pub fn key(&self, item: u32) -> &str {
        let at = item as usize * KEY_LEN;
        &self.keys[at..at + KEY_LEN]
    }

    /// Distinct items the trace can request.
    pub fn items(&self) -> usize {
        self.keys.len() / KEY_LEN
    }
}

/// A seeded source of draws from Zipf(`exponent`) over `keys` items, as
/// indices from 0; the same sequence as [`hit_ratio::trace`](crate::hit_ratio::trace)
/// for its exponent.
fn zipf_draws(keys: usize, exponent: f64) -> BenchResult<impl FnMut() -> u32> {
    let zipf = Zipf::new(keys as f64, exponent)?;
    let mut rng = StdRng::seed_from_u64(SEED);
    Ok(move || (zipf.sample(&mut rng) as usize).clamp(1, keys) as u32 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_width() {
        let trace = Trace::new("hand-made", vec![0, 41, 2]).unwrap();
        assert_eq!(trace.items(), 42);
        assert_eq!((trace.key(0), trace.key(41)), ("k0000000", "k0000041"));
    }

    #[test]
    fn the_zipf_099_trace_is_the_hit_ratio_scenarios() {
        let trace = Trace::zipf("Zipf 0.99", 0.99, 1000, 20_000).unwrap();
        assert_eq!(
            trace.requests,
            crate::hit_ratio::trace(1000, 20_000).unwrap()
        );
        let flatter = Trace::zipf("Zipf 0.9", 0.9, 1000, 20_000).unwrap();
        assert!(flatter.requests.iter().all(|&i| i < 1000));
        let top = |t: &Trace| t.requests.iter().filter(|&&i| i == 0).count();
        assert!(top(&flatter) < top(&trace));
    }

    #[test]
    fn the_scan_trace_alternates_zipf_runs_and_scans_of_new_keys() {
        let trace = Trace::with_scans(100, 50, 10, 5).unwrap();
        let hot = Trace::zipf("Zipf 0.9", 0.9, 100, 40).unwrap();
        assert_eq!(trace.requests.len(), 50);
        // Runs at 0..10, 15..25, 30..40, 45..50; scans at 10..15, 25..30,
        // 40..45.
        let mut draws = hot.requests.iter();
        for (at, &item) in trace.requests.iter().enumerate() {
            match at % 15 {
                0..10 => assert_eq!(Some(&item), draws.next(), "at {at}"),
                k => assert_eq!(item as usize, 100 + 5 * (at / 15) + k - 10, "at {at}"),
            }
        }
        assert_eq!(trace.items(), 115);
    }
}
