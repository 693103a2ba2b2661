//! Scenario 1: an L1 hit.
//!
//! tierstack with its L2 disabled and an L1 large enough for every key,
//! against a bare `quick_cache` and a bare `moka` holding the same
//! `String -> Bytes` entries. Each reads every key once per pass, in a fixed
//! random order, and checks every value it gets.

use bytes::Bytes;

use crate::BenchResult;
use crate::data;
use crate::measure::{self, Contender, Samples};

/// The measurements of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct L1HitReport {
    /// tierstack's blocking `Cache::get`.
    pub tierstack: Samples,
    /// tierstack's blocking `Cache::get_or_load` (every read a hit).
    pub get_or_load: Samples,
    /// `quick_cache::sync::Cache::get`.
    pub quick_cache: Samples,
    /// `moka::sync::Cache::get`.
    pub moka: Samples,
}

/// Preloads `keys` components into each cache, then times `passes` passes of
/// reads over them per round.
pub fn run(keys: usize, passes: usize, rounds: usize) -> BenchResult<L1HitReport> {
    let items = data::components(keys);
    let order: Vec<&str> = data::read_order(keys)
        .into_iter()
        .map(|i| items[i].0.as_str())
        .collect();
    let weight: u64 = items
        .iter()
        .map(|(k, v)| (k.len() + v.len()) as u64 + tierstack::tier::MEMORY_ENTRY_OVERHEAD)
        .sum();

    // Room for four times the data, so that no shard of the L1 overflows.
    let ours = tierstack::blocking::Cache::builder()
        .sqlite(false)
        .memory_max_bytes(weight * 4)
        .build_blocking()?;
    ours.mset(items.iter().map(|(k, v)| (k.as_str(), v.clone())))?;

    let quick = quick_cache::sync::Cache::<String, Bytes>::new(keys * 2);
    let moka = moka::sync::Cache::<String, Bytes>::new(keys as u64 * 2);
    for (k, v) in &items {
        quick.insert(k.clone(), v.clone());
        moka.insert(k.clone(), v.clone());
    }
    moka.run_pending_tasks();

    for (key, value) in &items {
        let held = [
            ours.get(key)?,
            quick.get(key.as_str()),
            moka.get(key.as_str()),
        ];
        if held.iter().any(|got| got.as_ref() != Some(value)) {
            return Err(format!("a cache lost {key} after preloading").into());
        }
    }

    let order = &order;
    let contenders: Vec<Contender<'_>> = vec![
        measure::reader("tierstack", order, passes, |key| Ok(ours.get(key)?)),
        measure::reader("tierstack get_or_load", order, passes, |key| {
            let never = |key: &str| -> tierstack::Result<tierstack::Fetched> {
                Err(tierstack::Error::new(
                    tierstack::ErrorKind::Source,
                    format!("{key} was preloaded: the loader must not run"),
                ))
            };
            Ok(ours.get_or_load(key, never, tierstack::GetOptions::new())?)
        }),
        measure::reader("quick_cache", order, passes, |key| Ok(quick.get(key))),
        measure::reader("moka", order, passes, |key| Ok(moka.get(key))),
    ];
    let mut samples = measure::alternate(rounds, contenders)?.into_iter();
    let mut next = || samples.next().expect("one sample set per contender");
    let (tierstack, get_or_load, quick_cache, moka) = (next(), next(), next(), next());
    Ok(L1HitReport {
        tierstack,
        get_or_load,
        quick_cache,
        moka,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_read_of_every_cache_is_a_verified_hit() {
        let (keys, passes, rounds) = (200, 2, 2);
        let report = run(keys, passes, rounds).unwrap();
        let total = keys * passes * (rounds + 1);
        for s in [
            &report.tierstack,
            &report.get_or_load,
            &report.quick_cache,
            &report.moka,
        ] {
            assert_eq!((s.ops, s.verified), (total, total), "{}", s.name);
            assert_eq!(s.per_op_ns.len(), rounds);
            assert!(s.median_ns() > 0.0, "{}", s.name);
        }
    }
}
