//! The numbers the plots draw: each timed comparison of a run (and of the
//! hosts' runs) as tierstack's figure beside its peer's, in one unit.

use super::hosts::{HostRun, Unit};
use crate::Timed;
use crate::measure::Samples;

/// tierstack's figure beside its peer's from the same run.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// What was compared, short enough for a plot's label.
    pub label: String,
    /// tierstack's figure.
    pub ours: f64,
    /// The peer's name.
    pub peer: String,
    /// The peer's figure.
    pub peer_value: f64,
}

impl Pair {
    fn new(label: &str, ours: f64, peer: &str, peer_value: f64) -> Self {
        Self {
            label: label.to_owned(),
            ours,
            peer: peer.to_owned(),
            peer_value,
        }
    }

    /// tierstack's figure over the peer's.
    pub fn ratio(&self) -> f64 {
        self.ours / self.peer_value
    }
}

/// Operations per second of `samples`: the inverse of its median time per
/// operation.
fn per_sec(samples: &Samples) -> f64 {
    1e9 / samples.median_ns()
}

/// Operations per second of every timed comparison of a run, in the order
/// of the table's rows: an operation is one read or one write (one entry of
/// a batch for the L2 write).
pub fn throughput(timed: &Timed) -> Vec<Pair> {
    let pair = |label: &str, ours: &Samples, peer: &str, theirs: &Samples| {
        Pair::new(label, per_sec(ours), peer, per_sec(theirs))
    };
    let (l1, h) = (&timed.l1, &timed.hybrid);
    let mut pairs = vec![
        pair("L1 hit", &l1.tierstack, "quick_cache", &l1.quick_cache),
        pair("L1 hit", &l1.tierstack, "moka", &l1.moka),
        pair(
            "L1 hit, get_or_load",
            &l1.get_or_load,
            "tierstack get",
            &l1.tierstack,
        ),
        pair(
            "L2 hit",
            &timed.l2.tierstack,
            "rusqlite",
            &timed.l2.rusqlite,
        ),
    ];
    if let Some(r) = &timed.redis {
        pairs.push(pair(
            "Redis hit, blocking",
            &r.blocking,
            "redis-rs GET",
            &r.redis_sync,
        ));
        pairs.push(pair(
            "Redis hit, async",
            &r.tierstack_async,
            "redis-rs async GET",
            &r.redis_async,
        ));
    }
    let (w, s) = (&timed.write, &timed.strategies);
    pairs.push(pair("L2 write", &w.tierstack, "rusqlite", &w.rusqlite));
    pairs.push(pair(
        "set, write-behind",
        &s.write_behind,
        "rusqlite FULL",
        &s.rusqlite_full,
    ));
    pairs.push(pair(
        "set, write-behind",
        &s.write_behind,
        "write-through",
        &s.write_through,
    ));
    pairs.extend([
        pair(
            "hybrid reads, 1 reader",
            &h.tierstack_1t,
            "foyer",
            &h.foyer_1t,
        ),
        pair(
            "hybrid reads, 2 readers",
            &h.tierstack_2t,
            "foyer",
            &h.foyer_2t,
        ),
        pair("hybrid set", &h.set, "foyer insert", &h.foyer_insert),
        pair(
            "hybrid set, write-behind",
            &h.set_behind,
            "foyer insert",
            &h.foyer_insert,
        ),
    ]);
    if let Some(c) = &timed.c {
        pairs.push(pair("L1 hit from C", &c.c, "Rust get", &c.rust));
    }
    pairs
}

/// The percentiles of a run, in microseconds: the hybrid scenario's reads
/// served by each cache's disk tier.
pub fn latency(timed: &Timed) -> Vec<Pair> {
    let (ours, foyer) = (&timed.hybrid.tierstack_disk, &timed.hybrid.foyer_disk);
    vec![
        Pair::new(
            "hybrid disk-tier read p50",
            ours.p50_ns / 1e3,
            "foyer",
            foyer.p50_ns / 1e3,
        ),
        Pair::new(
            "hybrid disk-tier read p99",
            ours.p99_ns / 1e3,
            "foyer",
            foyer.p99_ns / 1e3,
        ),
    ]
}

/// Operations per second of every row of the hosts' runs: a row in µs is
/// one call of that many microseconds, so `1e6 / µs` calls a second.
pub fn hosts(runs: &[HostRun]) -> Vec<Pair> {
    let rate = |unit: Unit, x: f64| match unit {
        Unit::Micros => 1e6 / x,
        Unit::PerSec => x,
    };
    runs.iter()
        .flat_map(|run| {
            run.rows.iter().map(|row| {
                Pair::new(
                    &format!("{}: {}", run.host, row.scenario),
                    rate(row.unit, row.tierstack),
                    &row.peer,
                    rate(row.unit, row.peer_value),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::hosts::HostRow;

    #[test]
    fn host_rows_in_microseconds_become_calls_a_second() {
        let row = |unit, tierstack, peer_value| HostRow {
            scenario: "get".into(),
            unit,
            tierstack,
            peer: "cachetools".into(),
            peer_value,
            ratio: tierstack / peer_value,
            lower_is_better: unit == Unit::Micros,
        };
        let run = HostRun {
            host: "python".into(),
            quick: true,
            peers: Default::default(),
            rows: vec![row(Unit::Micros, 0.5, 2.0), row(Unit::PerSec, 300.0, 100.0)],
        };
        let pairs = hosts(&[run]);
        assert_eq!(
            pairs,
            [
                Pair::new("python: get", 2e6, "cachetools", 5e5),
                Pair::new("python: get", 300.0, "cachetools", 100.0),
            ]
        );
        assert_eq!(pairs[0].ratio(), 4.0);
    }
}
