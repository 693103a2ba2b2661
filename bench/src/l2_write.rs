//! Scenario 4: writing a batch of entries to L2.
//!
//! Each round opens a fresh file in a fresh directory, then times only the
//! write: tierstack's `mset` (L1 disabled, so all of it is the L2 write)
//! against the bare rusqlite table filled in one transaction with one
//! prepared `INSERT`. After the timing every entry is read back and checked.

use std::time::Instant;

use bytes::Bytes;

use crate::measure::{self, Contender, Round, Samples};
use crate::{BenchResult, bare};

/// The measurements of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct L2WriteReport {
    /// Entries written per round.
    pub entries: usize,
    /// tierstack's `mset`; one operation is one entry.
    pub tierstack: Samples,
    /// The bare transaction; one operation is one entry.
    pub rusqlite: Samples,
}

impl L2WriteReport {
    /// tierstack's median rate, in entries per second.
    pub fn tierstack_per_sec(&self) -> f64 {
        1e9 / self.tierstack.median_ns()
    }

    /// The bare table's median rate, in entries per second.
    pub fn rusqlite_per_sec(&self) -> f64 {
        1e9 / self.rusqlite.median_ns()
    }
}

/// Times the write of `entries` components into a fresh file, `rounds` times
/// per store.
pub fn run(entries: usize, rounds: usize) -> BenchResult<L2WriteReport> {
    let items = crate::data::components(entries);
    let items = &items;
    let contenders: Vec<Contender<'_>> = vec![
        ("tierstack", Box::new(move || tierstack_round(items))),
        ("rusqlite", Box::new(move || rusqlite_round(items))),
    ];
    let mut samples = measure::alternate(rounds, contenders)?.into_iter();
    let mut next = || samples.next().expect("one sample set per contender");
    let (tierstack, rusqlite) = (next(), next());
    Ok(L2WriteReport {
        entries,
        tierstack,
        rusqlite,
    })
}

fn tierstack_round(items: &[(String, Bytes)]) -> BenchResult<Round> {
    let dir = tempfile::tempdir()?;
    let cache = tierstack::blocking::Cache::builder()
        .memory(false)
        .sqlite_path(dir.path().join("tierstack.db"))
        .build_blocking()?;
    let batch = items.to_vec();
    let start = Instant::now();
    cache.mset(batch)?;
    let elapsed = start.elapsed();

    let mut verified = 0;
    if cache.len()? == items.len() as u64 {
        for (key, value) in items {
            verified += usize::from(cache.get(key)?.as_ref() == Some(value));
        }
    }
    cache.close()?;
    Ok(Round {
        elapsed,
        ops: items.len(),
        verified,
    })
}

fn rusqlite_round(items: &[(String, Bytes)]) -> BenchResult<Round> {
    let dir = tempfile::tempdir()?;
    let mut conn = bare::open(&dir.path().join("bare.db"))?;
    let start = Instant::now();
    bare::insert_all(&mut conn, items)?;
    let elapsed = start.elapsed();

    Ok(Round {
        elapsed,
        ops: items.len(),
        verified: bare::verify(&conn, items)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_written_entry_is_read_back() {
        let (entries, rounds) = (300, 2);
        let report = run(entries, rounds).unwrap();
        let total = entries * (rounds + 1);
        for s in [&report.tierstack, &report.rusqlite] {
            assert_eq!((s.ops, s.verified), (total, total), "{}", s.name);
            assert_eq!(s.per_op_ns.len(), rounds);
        }
        assert!(report.tierstack_per_sec() > 0.0);
        assert!(report.rusqlite_per_sec() > 0.0);
    }
}
