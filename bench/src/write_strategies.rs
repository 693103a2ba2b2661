//! Scenario 5: single-key `set`, one write per call, by write strategy.
//!
//! Each round opens a fresh file and times `entries` calls of `set`, each
//! on its own (no batching by the caller), into a cache with both tiers and
//! a writable source that answers at once (so that what is measured is the
//! cache's side of a write):
//!
//! - write-behind: `set` returns once the write is in the process's
//!   journal (it survives a crash of the process); the worker commits it to
//!   L2 and the outbox with `synchronous = FULL` a moment later (then it
//!   survives a power loss), and the source gets it after;
//! - write-through: `set` returns once the source answered and the L2 row
//!   is committed (`synchronous = NORMAL`);
//! - the peer: bare rusqlite, one `INSERT OR REPLACE` per transaction with
//!   `synchronous = FULL`: what a write durable against a power loss when
//!   it returns costs.
//!
//! After the timing, write-behind's outbox is flushed and every entry is
//! checked: read back from the file, and (for the strategies) delivered to
//! the source exactly once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tierstack::source::{self, Fetched};
use tierstack::{OutboxConfig, Strategy};

use crate::measure::{self, Contender, Round, Samples};
use crate::{BenchResult, bare};

/// The measurements of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteStrategiesReport {
    /// Writes per round.
    pub entries: usize,
    /// write-behind `set`; one operation is one call.
    pub write_behind: Samples,
    /// write-through `set`.
    pub write_through: Samples,
    /// One bare insert per `synchronous = FULL` commit.
    pub rusqlite_full: Samples,
}

/// Times `entries` single-key writes per round, `rounds` rounds per contender.
pub fn run(entries: usize, rounds: usize) -> BenchResult<WriteStrategiesReport> {
    let items = crate::data::components(entries);
    let items = &items;
    let contenders: Vec<Contender<'_>> = vec![
        (
            "write-behind",
            Box::new(move || strategy_round(items, Strategy::WriteBehind)),
        ),
        (
            "write-through",
            Box::new(move || strategy_round(items, Strategy::WriteThrough)),
        ),
        ("rusqlite FULL", Box::new(move || rusqlite_round(items))),
    ];
    let mut samples = measure::alternate(rounds, contenders)?.into_iter();
    let mut next = || samples.next().expect("one sample set per contender");
    let (write_behind, write_through, rusqlite_full) = (next(), next(), next());
    Ok(WriteStrategiesReport {
        entries,
        write_behind,
        write_through,
        rusqlite_full,
    })
}

/// What a recording source received: key -> (value, deliveries).
pub type Received = Arc<Mutex<HashMap<String, (Bytes, usize)>>>;

/// A source that finds nothing and records every write it is given.
pub fn recording_source() -> (impl tierstack::Source, Received) {
    let received: Received = Arc::default();
    let store = received.clone();
    let source = source::from_blocking_fn(|_: &str| Ok(Fetched::NotFound)).with_writes(
        move |key, value, _id| {
            let mut received = store.lock().expect("not poisoned");
            let entry = received.entry(key.to_owned()).or_default();
            *entry = (Bytes::copy_from_slice(value), entry.1 + 1);
            Ok(())
        },
        |_, _| Ok(()),
    );
    (source, received)
}

fn strategy_round(items: &[(String, Bytes)], strategy: Strategy) -> BenchResult<Round> {
    let dir = tempfile::tempdir()?;
    let (source, received) = recording_source();
    let cache = tierstack::blocking::Cache::builder()
        .sqlite_path(dir.path().join("strategy.db"))
        .source(source)
        .strategy(strategy)
        .outbox(OutboxConfig::default())
        .build_blocking()?;
    let start = Instant::now();
    for (key, value) in items {
        cache.set(key.as_str(), value.clone())?;
    }
    let elapsed = start.elapsed();

    cache.flush()?;
    let received = received.lock().expect("not poisoned");
    let mut verified = 0;
    for (key, value) in items {
        let delivered = received
            .get(key)
            .is_some_and(|(v, n)| v == value && *n == 1);
        verified += usize::from(delivered && cache.get(key)?.as_ref() == Some(value));
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
    let conn = bare::open(&dir.path().join("bare.db"))?;
    conn.execute_batch("PRAGMA synchronous = FULL")?;
    let start = Instant::now();
    {
        let mut insert =
            conn.prepare_cached("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)")?;
        for (key, value) in items {
            insert.execute(rusqlite::params![key, &value[..]])?;
        }
    }
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
    fn every_write_is_read_back_and_delivered_once() {
        let (entries, rounds) = (50, 1);
        let report = run(entries, rounds).unwrap();
        let total = entries * (rounds + 1);
        for s in [
            &report.write_behind,
            &report.write_through,
            &report.rusqlite_full,
        ] {
            assert_eq!((s.ops, s.verified), (total, total), "{}", s.name);
            assert_eq!(s.per_op_ns.len(), rounds);
        }
    }
}
