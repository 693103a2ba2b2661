//! Scenario 3: an L2 hit.
//!
//! tierstack with its L1 disabled, so that every `get` reads the SQLite file,
//! against a point read on the bare rusqlite table ([`crate::bare`]) in the
//! same directory. Both hold the same components and check every value.

use tierstack::Tier;

use crate::measure::{self, Contender, Samples};
use crate::{BenchResult, bare, data};

/// The measurements of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct L2HitReport {
    /// tierstack's blocking `Cache::get`, answered by L2.
    pub tierstack: Samples,
    /// A prepared `SELECT value FROM kv WHERE key = ?1` copying the blob out.
    pub rusqlite: Samples,
}

/// Loads `keys` components into each store, then times `passes` passes of
/// reads over them per round.
pub fn run(keys: usize, passes: usize, rounds: usize) -> BenchResult<L2HitReport> {
    let dir = tempfile::tempdir()?;
    let items = data::components(keys);
    let order: Vec<&str> = data::read_order(keys)
        .into_iter()
        .map(|i| items[i].0.as_str())
        .collect();

    let ours = tierstack::blocking::Cache::builder()
        .memory(false)
        .sqlite_path(dir.path().join("tierstack.db"))
        .build_blocking()?;
    ours.mset(items.iter().map(|(k, v)| (k.as_str(), v.clone())))?;
    let mut conn = bare::open(&dir.path().join("bare.db"))?;
    bare::insert_all(&mut conn, &items)?;

    for (key, value) in &items {
        let lookup = ours.lookup(key)?;
        if lookup.as_ref().map(|l| (&l.value, l.tier)) != Some((value, Tier::Sqlite)) {
            return Err(format!("tierstack's L2 does not hold {key}").into());
        }
        if bare::get(&conn, key)?.as_deref() != Some(&value[..]) {
            return Err(format!("the bare table does not hold {key}").into());
        }
    }

    let (order, ours_ref, conn) = (&order, &ours, &conn);
    let contenders: Vec<Contender<'_>> = vec![
        measure::reader("tierstack", order, passes, |key| Ok(ours_ref.get(key)?)),
        measure::reader("rusqlite", order, passes, |key| Ok(bare::get(conn, key)?)),
    ];
    let mut samples = measure::alternate(rounds, contenders)?.into_iter();
    let mut next = || samples.next().expect("one sample set per contender");
    let (tierstack, rusqlite) = (next(), next());
    ours.close()?;
    Ok(L2HitReport {
        tierstack,
        rusqlite,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_read_of_both_stores_is_a_verified_hit() {
        let (keys, passes, rounds) = (100, 2, 2);
        let report = run(keys, passes, rounds).unwrap();
        let total = keys * passes * (rounds + 1);
        for s in [&report.tierstack, &report.rusqlite] {
            assert_eq!((s.ops, s.verified), (total, total), "{}", s.name);
            assert_eq!(s.per_op_ns.len(), rounds);
            assert!(s.median_ns() > 0.0, "{}", s.name);
        }
    }
}
