//! Scenario 2: the L1 hit ratio on a Zipf(0.99) trace.
//!
//! tierstack (L2 disabled) and `moka` each hold 1% of the keys and serve the
//! same seeded trace cache-aside: `get`, and on a miss `set`. Every hit is
//! checked against the value of its key.

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Zipf};

use crate::BenchResult;
use crate::data::SEED;

/// The Zipf exponent of the trace.
pub const ZIPF_EXPONENT: f64 = 0.99;

/// Length of every value in this scenario, in bytes.
pub const VALUE_LEN: usize = 100;

/// The result of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HitRatioReport {
    /// Distinct keys the trace draws from.
    pub keys: usize,
    /// Entries each cache holds.
    pub capacity: usize,
    /// Requests in the trace.
    pub requests: usize,
    /// tierstack's hits, each verified.
    pub tierstack_hits: usize,
    /// moka's hits, each verified.
    pub moka_hits: usize,
}

impl HitRatioReport {
    /// tierstack's hit ratio in percent.
    pub fn tierstack_percent(&self) -> f64 {
        percent(self.tierstack_hits, self.requests)
    }

    /// moka's hit ratio in percent.
    pub fn moka_percent(&self) -> f64 {
        percent(self.moka_hits, self.requests)
    }
}

fn percent(hits: usize, requests: usize) -> f64 {
    if requests == 0 {
        0.0
    } else {
        100.0 * hits as f64 / requests as f64
    }
}

/// The key of item `i`: fixed width, `k0000042`.
pub fn item_key(i: usize) -> String {
    format!("k{i:07}")
}

/// The value of `key`: the key, then filler up to [`VALUE_LEN`] bytes.
pub fn item_value(key: &str) -> Bytes {
    let mut value = format!("{key}:");
    value.extend(std::iter::repeat_n(
        'v',
        VALUE_LEN.saturating_sub(value.len()),
    ));
    Bytes::from(value)
}

/// `requests` draws from Zipf(0.99) over `keys` items, as indices (0 is the
/// most popular); seeded, so every run sees the same trace.
pub fn trace(keys: usize, requests: usize) -> BenchResult<Vec<u32>> {
    let zipf = Zipf::new(keys as f64, ZIPF_EXPONENT)?;
    let mut rng = StdRng::seed_from_u64(SEED);
    Ok((0..requests)
        .map(|_| (zipf.sample(&mut rng) as usize).clamp(1, keys) as u32 - 1)
        .collect())
}

/// Runs a trace of `requests` over `keys` keys through each cache, sized to
/// hold 1% of the keys.
pub fn run(keys: usize, requests: usize) -> BenchResult<HitRatioReport> {
    let capacity = (keys / 100).max(1);
    let names: Vec<String> = (0..keys).map(item_key).collect();
    let values: Vec<Bytes> = names.iter().map(|k| item_value(k)).collect();
    let trace = trace(keys, requests)?;

    let entry_weight = (names[0].len() + VALUE_LEN) as u64 + tierstack::tier::MEMORY_ENTRY_OVERHEAD;
    let ours = tierstack::blocking::Cache::builder()
        .sqlite(false)
        .memory_max_bytes(capacity as u64 * entry_weight)
        .build_blocking()?;
    let mut tierstack_hits = 0;
    for &i in &trace {
        let (key, value) = (&names[i as usize], &values[i as usize]);
        match ours.get(key)? {
            Some(got) if got == value => tierstack_hits += 1,
            Some(_) => return Err(format!("tierstack returned a wrong value for {key}").into()),
            None => ours.set(key.as_str(), value.clone())?,
        }
    }

    let moka = moka::sync::Cache::<String, Bytes>::new(capacity as u64);
    let mut moka_hits = 0;
    for &i in &trace {
        let (key, value) = (&names[i as usize], &values[i as usize]);
        match moka.get(key.as_str()) {
            Some(got) if got == value => moka_hits += 1,
            Some(_) => return Err(format!("moka returned a wrong value for {key}").into()),
            None => moka.insert(key.clone(), value.clone()),
        }
    }

    Ok(HitRatioReport {
        keys,
        capacity,
        requests,
        tierstack_hits,
        moka_hits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_have_fixed_widths() {
        assert_eq!(item_key(42), "k0000042");
        let value = item_value("k0000042");
        assert_eq!(value.len(), VALUE_LEN);
        assert!(value.starts_with(b"k0000042:vv"));
    }

    #[test]
    fn the_trace_is_seeded_skewed_and_in_range() {
        let t = trace(1000, 20_000).unwrap();
        assert_eq!(t, trace(1000, 20_000).unwrap());
        assert!(t.iter().all(|&i| i < 1000));
        let top = t.iter().filter(|&&i| i == 0).count();
        let tail = t.iter().filter(|&&i| i == 999).count();
        assert!(top > 50 * tail.max(1), "top {top}, tail {tail}");
    }

    #[test]
    fn hit_ratios_are_percentages_of_verified_hits() {
        let report = run(2000, 10_000).unwrap();
        assert_eq!((report.capacity, report.requests), (20, 10_000));
        for pct in [report.tierstack_percent(), report.moka_percent()] {
            assert!((0.0..=100.0).contains(&pct), "{pct}");
        }
        // The hottest key alone draws about 12% of a Zipf(0.99) trace over
        // 2,000 keys, so a working cache hits at least that often.
        assert!(report.tierstack_percent() > 10.0, "{report:?}");
        assert!(report.moka_percent() > 10.0, "{report:?}");
        assert!(report.tierstack_hits < report.requests);
    }
}
