//! The scenario's measurements and the table rows made of them.

use std::time::Duration;

use super::HybridScale;
use crate::measure::{self, Samples};
use crate::table::{self, Row, Verdict};

/// p50 and p99 of the reads a cache's disk tier served.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskReads {
    /// Reads of the pass that the disk tier served.
    pub reads: usize,
    /// Median time of those reads, in nanoseconds.
    pub p50_ns: f64,
    /// 99th percentile, in nanoseconds.
    pub p99_ns: f64,
}

impl DiskReads {
    /// The count and percentiles of `ns`, one time per read.
    pub fn of(ns: &[f64]) -> Self {
        Self {
            reads: ns.len(),
            p50_ns: measure::percentile(ns, 0.5),
            p99_ns: measure::percentile(ns, 0.99),
        }
    }
}

/// Where foyer's inserts of new keys were once its flushers finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InsertsKept {
    /// Held by its disk tier.
    pub on_disk: usize,
    /// Held by its memory tier only.
    pub memory_only: usize,
    /// Held by neither tier: dropped.
    pub lost: usize,
}

/// The measurements of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct HybridReport {
    /// The sizes the run used.
    pub scale: HybridScale,
    /// Memory tier of each cache, in weighed bytes.
    pub memory_bytes: u64,
    /// Disk tier of each cache: foyer's device, tierstack's `sqlite_max_bytes`.
    pub disk_bytes: u64,
    /// Keys foyer's disk held after the preload's inserts and a wait for its
    /// flushers, before the missing ones were inserted again.
    pub foyer_preload_on_disk: usize,
    /// tierstack's reads by one thread; one operation is one `get`.
    pub tierstack_1t: Samples,
    /// foyer's reads by one task.
    pub foyer_1t: Samples,
    /// tierstack's reads by two threads; the time of an operation is the
    /// round's wall time over the reads of both.
    pub tierstack_2t: Samples,
    /// foyer's reads by two tasks.
    pub foyer_2t: Samples,
    /// tierstack's reads served by its SQLite file.
    pub tierstack_disk: DiskReads,
    /// foyer's reads served by its block engine.
    pub foyer_disk: DiskReads,
    /// tierstack's `close()` after the reads.
    pub tierstack_close: Duration,
    /// foyer's `close().await` after the reads.
    pub foyer_close: Duration,
    /// Opening the existing file and serving one read; one operation a round.
    pub tierstack_reopen: Samples,
    /// Opening foyer's device (with recovery) and serving one read.
    pub foyer_reopen: Samples,
    /// tierstack `set`, default strategy; one operation is one call.
    pub set: Samples,
    /// tierstack `set`, write-behind.
    pub set_behind: Samples,
    /// foyer `insert`.
    pub foyer_insert: Samples,
    /// A bare rusqlite `INSERT` committed on its own (WAL, `synchronous =
    /// NORMAL`): what one commit per write costs SQLite on this machine.
    pub bare_commit: Samples,
    /// Where foyer's inserts were after its flushers finished, over all
    /// write rounds (the warm-up included).
    pub foyer_inserts: InsertsKept,
}

impl HybridReport {
    /// Operations per second of `samples` (the inverse of its median).
    pub fn per_sec(samples: &Samples) -> f64 {
        1e9 / samples.median_ns()
    }

    /// tierstack's read rate on two threads over its rate on one.
    pub fn tierstack_scaling(&self) -> f64 {
        Self::per_sec(&self.tierstack_2t) / Self::per_sec(&self.tierstack_1t)
    }

    /// foyer's read rate on two tasks over its rate on one.
    pub fn foyer_scaling(&self) -> f64 {
        Self::per_sec(&self.foyer_2t) / Self::per_sec(&self.foyer_1t)
    }

    /// The table's rows of this scenario, each against foyer.
    pub fn rows(&self) -> Vec<Row> {
        let s = &self.scale;
        let (keys, req) = (
            table::thousands(s.keys as u64),
            table::thousands(s.requests as u64),
        );
        let reads = format!("hybrid, Zipf 0.9 reads, {req} req over {keys} keys, memory 10 %");
        let per_sec = |x: &Samples| table::rate(Self::per_sec(x));
        // The peer's name without its reader count ("foyer, 1 task").
        let rate_row = |name: String, ours: &Samples, peer: &Samples, want: f64| {
            let ratio = Self::per_sec(ours) / Self::per_sec(peer);
            Row {
                scenario: name,
                ours: per_sec(ours),
                peer: peer.name.split(',').next().unwrap_or(peer.name).to_owned(),
                peer_figure: per_sec(peer),
                ratio: Some(ratio),
                target: format!("≥ {want:.2}× (ops/s)"),
                verdict: Verdict::of(ratio >= want),
            }
        };
        let time_row = |name: String, ours: f64, peer: f64, target: &str, verdict| Row {
            scenario: name,
            ours: table::duration(ours),
            peer: "foyer".to_owned(),
            peer_figure: table::duration(peer),
            ratio: Some(ours / peer),
            target: target.to_owned(),
            verdict,
        };
        let (ts_scale, foyer_scale) = (self.tierstack_scaling(), self.foyer_scaling());
        let ns = |d: Duration| d.as_nanos() as f64;
        let reopen = self.tierstack_reopen.median_ns();
        let writes = table::thousands(s.writes as u64);
        let set_rate = Self::per_sec(&self.set);
        let kept = self.foyer_inserts;
        let inserts = (kept.on_disk + kept.memory_only + kept.lost) as u64;
        vec![
            Row {
                scenario: format!("hybrid, preload of {keys} keys, on disk after one insert each"),
                ours: format!("{keys} of {keys}"),
                peer: "foyer".to_owned(),
                peer_figure: format!(
                    "{} of {keys}",
                    table::thousands(self.foyer_preload_on_disk as u64)
                ),
                ratio: None,
                target: "reported".to_owned(),
                verdict: Verdict::Info,
            },
            rate_row(
                format!("{reads}, 1 reader"),
                &self.tierstack_1t,
                &self.foyer_1t,
                2.0,
            ),
            rate_row(
                format!("{reads}, 2 readers"),
                &self.tierstack_2t,
                &self.foyer_2t,
                1.4,
            ),
            Row {
                scenario: format!("{reads}, 2 readers / 1"),
                ours: table::ratio(ts_scale),
                peer: "foyer".to_owned(),
                peer_figure: table::ratio(foyer_scale),
                ratio: Some(ts_scale / foyer_scale),
                target: "≥ 1.40× (tierstack)".to_owned(),
                verdict: Verdict::of(ts_scale >= 1.4),
            },
            time_row(
                format!(
                    "hybrid, disk-tier read p50 ({} and {} reads)",
                    table::thousands(self.tierstack_disk.reads as u64),
                    table::thousands(self.foyer_disk.reads as u64)
                ),
                self.tierstack_disk.p50_ns,
                self.foyer_disk.p50_ns,
                "reported (time ratio)",
                Verdict::Info,
            ),
            time_row(
                "hybrid, disk-tier read p99".to_owned(),
                self.tierstack_disk.p99_ns,
                self.foyer_disk.p99_ns,
                "reported (time ratio)",
                Verdict::Info,
            ),
            Row {
                scenario: format!("hybrid, set (default), {writes} single-key writes of new keys"),
                ours: table::rate(set_rate),
                peer: "foyer insert".to_owned(),
                peer_figure: per_sec(&self.foyer_insert),
                ratio: Some(set_rate / Self::per_sec(&self.foyer_insert)),
                target: "≥ 50,000/s (tierstack)".to_owned(),
                verdict: Verdict::of(set_rate >= 50_000.0),
            },
            Row {
                scenario: format!(
                    "hybrid, set (default), {writes} writes, against one bare INSERT per commit"
                ),
                ours: table::rate(set_rate),
                peer: "rusqlite commit".to_owned(),
                peer_figure: per_sec(&self.bare_commit),
                ratio: Some(set_rate / Self::per_sec(&self.bare_commit)),
                target: "reported (ops/s)".to_owned(),
                verdict: Verdict::Info,
            },
            rate_row(
                format!("hybrid, set write-behind, {writes} single-key writes of new keys"),
                &self.set_behind,
                &self.foyer_insert,
                1.0,
            ),
            Row {
                scenario: format!(
                    "hybrid, new keys on disk after the flushers finished (foyer: {} in memory only, {} lost)",
                    table::thousands(kept.memory_only as u64),
                    table::thousands(kept.lost as u64)
                ),
                ours: "every set".to_owned(),
                peer: "foyer".to_owned(),
                peer_figure: format!(
                    "{} of {}",
                    table::thousands(kept.on_disk as u64),
                    table::thousands(inserts)
                ),
                ratio: None,
                target: "reported".to_owned(),
                verdict: Verdict::Info,
            },
            time_row(
                "hybrid, close() right after the reads".to_owned(),
                ns(self.tierstack_close),
                ns(self.foyer_close),
                "≤ 100 ms (tierstack)",
                Verdict::of(self.tierstack_close <= Duration::from_millis(100)),
            ),
            time_row(
                format!("hybrid, reopen {keys} keys to first read served"),
                reopen,
                self.foyer_reopen.median_ns(),
                "≤ 5 ms (tierstack)",
                Verdict::of(reopen <= 5e6),
            ),
        ]
    }
}
