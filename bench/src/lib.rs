//! tierstack measured side by side with its peers, in one process.
//!
//! Each scenario runs tierstack and its peer in alternating rounds (after one
//! warm-up round each) and reports the median time per operation, so that
//! both see the same machine state. Every read is checked against the value
//! of its key and every write is read back; a scenario that got a miss or a
//! wrong value fails instead of reporting a figure.
//!
//! | scenario | tierstack | peer | target |
//! |---|---|---|---|
//! | [`l1_hit`] | `get`, L1 only | `quick_cache`, `moka` | ≤ 1.5× quick_cache, < 1.0× moka |
//! | [`l1_hit`] | `get_or_load`, L1 hit | tierstack's own `get` | ≤ 1.1× |
//! | [`hit_ratio`] | L1 hit ratio, Zipf(0.99) | `moka` | ≥ moka − 0.5 points |
//! | [`traces`] | L1 hit ratio at 0.1–25 % of the keys: Zipf(0.9), Zipf(0.99), Zipf(0.9) with scans | `quick_cache`; Bélády's optimum (`moka` and LRU shown beside them) | ≥ quick_cache at every size; ≥ optimum − 10 points at 1 % |
//! | [`l2_hit`] | `get`, L2 only | bare rusqlite | ≤ 1.3× |
//! | [`redis_hit`] | `get`, Redis only (blocking; async on tokio) | a bare redis-rs `GET` of the same Redis key (sync `Connection`; `aio::ConnectionManager`) | ≤ 1.2× |
//! | [`l2_write`] | `mset` of a batch, L2 only | bare rusqlite | ≤ 1.5×, ≥ 100,000 entries/s |
//! | [`write_strategies`] | single-key `set`, write-behind | bare rusqlite, one `synchronous = FULL` commit a write; tierstack write-through | reported, no target |
//! | [`hybrid`] | Zipf(0.9) reads over 100,000 keys, memory 10 %, 1 and 2 threads | `foyer` (memory + block engine on a file) | ≥ 2.0× foyer's ops/s on 1 thread, ≥ 1.4× on 2; 2-thread scaling ≥ 1.4× |
//! | [`hybrid`] | p50/p99 of reads served by the disk tier | foyer | reported |
//! | [`hybrid`] | single-key `set` of new keys, default and write-behind | foyer `insert`; a bare rusqlite `INSERT` per commit beside the default | ≥ 50,000/s; write-behind ≥ foyer's rate |
//! | [`hybrid`] | `close()` after the reads; reopen to the first read served | foyer | ≤ 100 ms; ≤ 5 ms |
//! | [`c_hit`] | `tierstack_cache_get` from C, L1 hit | the Rust `get` | ≤ 1.3× |
//!
//! [`run_all`] runs them all; [`report`] writes a run, with the hosts'
//! results, as BENCHMARKS.md and its SVG plots.

pub mod bare;
pub mod c_hit;
pub mod data;
pub mod hit_ratio;
pub mod hybrid;
pub mod l1_hit;
pub mod l2_hit;
pub mod l2_write;
pub mod measure;
pub mod redis_hit;
pub mod report;
pub mod table;
pub mod traces;
pub mod write_strategies;

use table::{Row, Verdict};

/// The error of a scenario: setup failed, or a read was wrong.
pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// An L1 hit of the TypeScript design, in nanoseconds, shown for reference.
pub const TS_L1_HIT_NS: f64 = 7_800.0;

/// An L2 hit of the TypeScript design, in nanoseconds, shown for reference.
pub const TS_L2_HIT_NS: f64 = 1_851_000.0;

/// Sizes and repetitions of every scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// Measured rounds per contender in the read scenarios.
    pub rounds: usize,
    /// Keys preloaded for the L1 hit.
    pub l1_keys: usize,
    /// Reads of every key per L1 round.
    pub l1_passes: usize,
    /// Distinct keys of the Zipf trace.
    pub zipf_keys: usize,
    /// Requests in the Zipf trace.
    pub zipf_requests: usize,
    /// Distinct keys of the traces of hit ratio against cache size.
    pub trace_keys: usize,
    /// Requests in each of those traces.
    pub trace_requests: usize,
    /// Keys preloaded for the L2 hit.
    pub l2_keys: usize,
    /// Reads of every key per L2 round.
    pub l2_passes: usize,
    /// Keys preloaded for the Redis hit.
    pub redis_keys: usize,
    /// Reads per round of the Redis hit (cycling through the keys).
    pub redis_reads: usize,
    /// Measured rounds per contender of the Redis hit.
    pub redis_rounds: usize,
    /// Entries written per L2 write round.
    pub write_entries: usize,
    /// Measured rounds per contender in the write scenario.
    pub write_rounds: usize,
    /// L1 hits per round of the C scenario.
    pub c_gets: usize,
    /// Single-key writes per round of the write-strategy scenario.
    pub strategy_writes: usize,
    /// Measured rounds per contender of the write-strategy scenario.
    pub strategy_rounds: usize,
    /// Sizes of the scenario against foyer.
    pub hybrid: hybrid::HybridScale,
}

impl Scale {
    /// The full run: the scenario against foyer alone takes about four and a
    /// half minutes on two cores, the others under a minute.
    pub fn full() -> Self {
        Self {
            rounds: 21,
            l1_keys: 10_000,
            l1_passes: 100,
            zipf_keys: 100_000,
            zipf_requests: 1_000_000,
            trace_keys: 100_000,
            trace_requests: 1_000_000,
            l2_keys: 10_000,
            l2_passes: 5,
            redis_keys: 10_000,
            redis_reads: 1_000,
            redis_rounds: 41,
            write_entries: 10_000,
            write_rounds: 15,
            c_gets: 2_000_000,
            strategy_writes: 1_000,
            strategy_rounds: 7,
            hybrid: hybrid::HybridScale {
                keys: 100_000,
                requests: 400_000,
                rounds: 5,
                writes: 10_000,
                write_rounds: 9,
                reopen_rounds: 5,
            },
        }
    }

    /// `--quick`: the same scenarios, fewer rounds and a shorter trace.
    pub fn quick() -> Self {
        Self {
            rounds: 9,
            l1_passes: 20,
            zipf_requests: 200_000,
            trace_requests: 200_000,
            l2_passes: 2,
            redis_reads: 500,
            redis_rounds: 11,
            write_rounds: 7,
            c_gets: 500_000,
            strategy_writes: 200,
            strategy_rounds: 3,
            hybrid: hybrid::HybridScale {
                keys: 10_000,
                requests: 40_000,
                rounds: 2,
                writes: 2_000,
                write_rounds: 1,
                reopen_rounds: 2,
            },
            ..Self::full()
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The table's rows.
    pub rows: Vec<Row>,
    /// Every contender's hit ratio at every cache size, per trace.
    pub traces: Vec<traces::TraceReport>,
    /// The timed scenarios' measurements, which the rows were made of.
    pub timed: Timed,
}

/// The measurements of every timed scenario of a run (the report's plots
/// draw them).
#[derive(Debug, Clone, PartialEq)]
pub struct Timed {
    /// The L1 hit against quick_cache and moka.
    pub l1: l1_hit::L1HitReport,
    /// The L2 hit against bare rusqlite.
    pub l2: l2_hit::L2HitReport,
    /// The Redis hit against bare redis-rs; `None` without a `redis-server`.
    pub redis: Option<redis_hit::RedisHitReport>,
    /// L2 batch writes against bare rusqlite.
    pub write: l2_write::L2WriteReport,
    /// Single-key writes, write-behind against its peers.
    pub strategies: write_strategies::WriteStrategiesReport,
    /// The scenario against foyer.
    pub hybrid: hybrid::HybridReport,
    /// The L1 hit from C; `None` when the C program is not built.
    pub c: Option<c_hit::CHitReport>,
}

/// Runs every scenario at `scale` and returns the table's rows and the hit
/// ratios against cache size; `progress` is told the name of each scenario
/// as it starts.
pub fn run_all(scale: Scale, mut progress: impl FnMut(&str)) -> BenchResult<Report> {
    let mut rows = Vec::new();

    progress("L1 hit");
    let l1 = l1_hit::run(scale.l1_keys, scale.l1_passes, scale.rounds)?;
    let l1_ns = l1.tierstack.median_ns();
    let l1_name = format!("L1 hit, {} keys", table::thousands(scale.l1_keys as u64));
    let vs_quick_cache = l1_ns / l1.quick_cache.median_ns();
    let vs_moka = l1_ns / l1.moka.median_ns();
    for (peer, ratio, target, met) in [
        (
            &l1.quick_cache,
            vs_quick_cache,
            "≤ 1.50×",
            vs_quick_cache <= 1.5,
        ),
        (&l1.moka, vs_moka, "< 1.00×", vs_moka < 1.0),
    ] {
        rows.push(Row {
            scenario: l1_name.clone(),
            ours: table::duration(l1_ns),
            peer: peer.name.to_owned(),
            peer_figure: table::duration(peer.median_ns()),
            ratio: Some(ratio),
            target: target.to_owned(),
            verdict: Verdict::of(met),
        });
    }

    let load_ns = l1.get_or_load.median_ns();
    let vs_get = load_ns / l1_ns;
    rows.push(Row {
        scenario: format!(
            "get_or_load, L1 hit, {} keys",
            table::thousands(scale.l1_keys as u64)
        ),
        ours: table::duration(load_ns),
        peer: "tierstack get".to_owned(),
        peer_figure: table::duration(l1_ns),
        ratio: Some(vs_get),
        target: "≤ 1.10×".to_owned(),
        verdict: Verdict::of(vs_get <= 1.1),
    });

    progress("L1 hit ratio");
    let zipf = hit_ratio::run(scale.zipf_keys, scale.zipf_requests)?;
    let (ours_pct, moka_pct) = (zipf.tierstack_percent(), zipf.moka_percent());
    rows.push(Row {
        scenario: format!(
            "L1 hit ratio, Zipf 0.99, {} req, {} of {} keys",
            table::thousands(zipf.requests as u64),
            table::thousands(zipf.capacity as u64),
            table::thousands(zipf.keys as u64),
        ),
        ours: table::percent(ours_pct),
        peer: "moka".to_owned(),
        peer_figure: table::percent(moka_pct),
        ratio: Some(ours_pct / moka_pct),
        target: "≥ moka − 0.5 pt".to_owned(),
        verdict: Verdict::of(ours_pct >= moka_pct - 0.5),
    });

    progress("hit ratio against cache size");
    let traces = traces::run(scale.trace_keys, scale.trace_requests)?;
    rows.extend(traces::rows(&traces));

    progress("L2 hit");
    let l2 = l2_hit::run(scale.l2_keys, scale.l2_passes, scale.rounds)?;
    let l2_ns = l2.tierstack.median_ns();
    let ratio = l2_ns / l2.rusqlite.median_ns();
    rows.push(Row {
        scenario: format!("L2 hit, {} keys", table::thousands(scale.l2_keys as u64)),
        ours: table::duration(l2_ns),
        peer: "rusqlite".to_owned(),
        peer_figure: table::duration(l2.rusqlite.median_ns()),
        ratio: Some(ratio),
        target: "≤ 1.30×".to_owned(),
        verdict: Verdict::of(ratio <= 1.3),
    });

    let mut redis_report = None;
    if redis_hit::server_available() {
        progress("Redis hit");
        let redis = redis_hit::run(scale.redis_keys, scale.redis_reads, scale.redis_rounds)?;
        let name = format!(
            "Redis hit, {} keys, {:.1} KB on the wire",
            table::thousands(scale.redis_keys as u64),
            redis.wire_bytes as f64 / 1000.0
        );
        for (how, ours, peer) in [
            ("blocking get", &redis.blocking, &redis.redis_sync),
            ("async get", &redis.tierstack_async, &redis.redis_async),
        ] {
            let ratio = ours.median_ns() / peer.median_ns();
            rows.push(Row {
                scenario: format!("{name}, {how}"),
                ours: table::duration(ours.median_ns()),
                peer: peer.name.to_owned(),
                peer_figure: table::duration(peer.median_ns()),
                ratio: Some(ratio),
                target: "≤ 1.20×".to_owned(),
                verdict: Verdict::of(ratio <= 1.2),
            });
        }
        redis_report = Some(redis);
    } else {
        rows.push(Row {
            scenario: "Redis hit".to_owned(),
            ours: "no redis-server".to_owned(),
            peer: "-".to_owned(),
            peer_figure: "-".to_owned(),
            ratio: None,
            target: "install redis-server first".to_owned(),
            verdict: Verdict::Info,
        });
    }

    progress("L2 write");
    let write = l2_write::run(scale.write_entries, scale.write_rounds)?;
    let batch = |s: &measure::Samples, per_sec: f64| {
        format!(
            "{} ({})",
            table::duration(s.median_ns() * write.entries as f64),
            table::rate(per_sec)
        )
    };
    let ratio = write.tierstack.median_ns() / write.rusqlite.median_ns();
    let write_name = format!(
        "L2 write, {} entries",
        table::thousands(write.entries as u64)
    );
    rows.push(Row {
        scenario: write_name.clone(),
        ours: batch(&write.tierstack, write.tierstack_per_sec()),
        peer: "rusqlite".to_owned(),
        peer_figure: batch(&write.rusqlite, write.rusqlite_per_sec()),
        ratio: Some(ratio),
        target: "≤ 1.50× time".to_owned(),
        verdict: Verdict::of(ratio <= 1.5),
    });
    rows.push(Row {
        scenario: write_name,
        ours: table::rate(write.tierstack_per_sec()),
        peer: "-".to_owned(),
        peer_figure: "-".to_owned(),
        ratio: None,
        target: "≥ 100,000/s".to_owned(),
        verdict: Verdict::of(write.tierstack_per_sec() >= 100_000.0),
    });

    progress("write strategies");
    let strategies = write_strategies::run(scale.strategy_writes, scale.strategy_rounds)?;
    let behind_ns = strategies.write_behind.median_ns();
    let per_sec = |s: &measure::Samples| table::rate(1e9 / s.median_ns());
    for peer in [&strategies.rusqlite_full, &strategies.write_through] {
        rows.push(Row {
            scenario: format!(
                "set, write-behind, {} single-key writes",
                table::thousands(strategies.entries as u64)
            ),
            ours: per_sec(&strategies.write_behind),
            peer: peer.name.to_owned(),
            peer_figure: per_sec(peer),
            ratio: Some(behind_ns / peer.median_ns()),
            target: "reported (time ratio)".to_owned(),
            verdict: Verdict::Info,
        });
    }

    progress("hybrid vs foyer");
    let hybrid = hybrid::run(scale.hybrid)?;
    rows.extend(hybrid.rows());

    let program = c_hit::program();
    let mut c_report = None;
    if program.exists() {
        progress("C L1 hit");
        let c = c_hit::run(&program, scale.c_gets, scale.rounds)?;
        let ratio = c.c.median_ns() / c.rust.median_ns();
        rows.push(Row {
            scenario: "L1 hit from C, 1.5 KB".to_owned(),
            ours: table::duration(c.c.median_ns()),
            peer: "Rust get".to_owned(),
            peer_figure: table::duration(c.rust.median_ns()),
            ratio: Some(ratio),
            target: "≤ 1.30×".to_owned(),
            verdict: Verdict::of(ratio <= 1.3),
        });
        c_report = Some(c);
    } else {
        rows.push(Row {
            scenario: "L1 hit from C".to_owned(),
            ours: "not built".to_owned(),
            peer: "-".to_owned(),
            peer_figure: "-".to_owned(),
            ratio: None,
            target: "run tests/run-c --bench first".to_owned(),
            verdict: Verdict::Info,
        });
    }

    for (name, ours, reference, shown) in [
        ("L1 hit, reference", l1_ns, TS_L1_HIT_NS, "7.8 µs"),
        ("L2 hit, reference", l2_ns, TS_L2_HIT_NS, "1,851 µs"),
    ] {
        rows.push(Row {
            scenario: name.to_owned(),
            ours: table::duration(ours),
            peer: "TypeScript design".to_owned(),
            peer_figure: shown.to_owned(),
            ratio: Some(ours / reference),
            target: format!("reference: {:.0}× faster", reference / ours),
            verdict: Verdict::Info,
        });
    }
    Ok(Report {
        rows,
        traces,
        timed: Timed {
            l1,
            l2,
            redis: redis_report,
            write,
            strategies,
            hybrid,
            c: c_report,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiny_run_fills_every_row() {
        let scale = Scale {
            rounds: 1,
            l1_keys: 100,
            l1_passes: 1,
            zipf_keys: 1000,
            zipf_requests: 2000,
            trace_keys: 10_000,
            trace_requests: 2000,
            l2_keys: 50,
            l2_passes: 1,
            redis_keys: 50,
            redis_reads: 20,
            redis_rounds: 1,
            write_entries: 100,
            write_rounds: 1,
            c_gets: 100,
            strategy_writes: 20,
            strategy_rounds: 1,
            hybrid: hybrid::HybridScale {
                keys: 300,
                requests: 2000,
                rounds: 1,
                writes: 50,
                write_rounds: 1,
                reopen_rounds: 1,
            },
        };
        let c_built = c_hit::program().exists();
        assert!(
            redis_hit::server_available(),
            "redis-server on PATH (tests/run-all installs it)"
        );
        let mut started = Vec::new();
        let report = run_all(scale, |s| started.push(s.to_owned())).unwrap();
        let rows = &report.rows;
        let mut scenarios = vec![
            "L1 hit",
            "L1 hit ratio",
            "hit ratio against cache size",
            "L2 hit",
            "Redis hit",
            "L2 write",
            "write strategies",
            "hybrid vs foyer",
        ];
        if c_built {
            scenarios.push("C L1 hit");
        }
        assert_eq!(started, scenarios);
        assert_eq!(rows.len(), 44);
        let peers: Vec<&str> = rows.iter().map(|r| r.peer.as_str()).collect();
        let per_trace = ["quick_cache"; 5].into_iter().chain(["Bélády (optimal)"]);
        assert_eq!(
            peers[4..22],
            per_trace
                .clone()
                .chain(per_trace.clone())
                .chain(per_trace)
                .collect::<Vec<_>>()
        );
        assert_eq!(
            [&peers[..4], &peers[22..]].concat(),
            [
                "quick_cache",
                "moka",
                "tierstack get",
                "moka",
                "rusqlite",
                "redis-rs GET",
                "redis-rs async GET",
                "rusqlite",
                "-",
                "rusqlite FULL",
                "write-through",
                "foyer",
                "foyer",
                "foyer",
                "foyer",
                "foyer",
                "foyer",
                "foyer insert",
                "rusqlite commit",
                "foyer insert",
                "foyer",
                "foyer",
                "foyer",
                if c_built { "Rust get" } else { "-" },
                "TypeScript design",
                "TypeScript design"
            ]
        );
        assert!(rows.iter().all(|r| r.ratio.is_none_or(f64::is_finite)));
        assert_eq!(rows[42].peer_figure, "7.8 µs");
        assert_eq!(rows[43].peer_figure, "1,851 µs");
        let traces: Vec<_> = report.traces.iter().map(|t| t.trace).collect();
        assert_eq!(traces, ["Zipf 0.9", "Zipf 0.99", "Zipf 0.9 + scans"]);
        for trace in &report.traces {
            let capacities: Vec<_> = trace.sizes.iter().map(|p| p.capacity).collect();
            assert_eq!(capacities, [10, 100, 500, 1_000, 2_500]);
            assert!(trace.sizes.iter().all(|p| p.hits.len() == 5));
        }

        // The report of the same run, with a host's file beside it.
        let run = report::Run {
            report: &report,
            scale,
            mode: "tiny",
            took: std::time::Duration::from_millis(1500),
            machine: report::Machine::detect(),
        };
        let hosts = [report::HostRun::parse(report::hosts::tests::SAMPLE).unwrap()];
        let dir = tempfile::tempdir().unwrap();
        let markdown = dir.path().join("BENCHMARKS.md");
        let plots = dir.path().join("bench/plots");
        let written = report::write(&run, &hosts, &markdown, &plots).unwrap();
        assert_eq!(written.markdown, markdown);
        report::tests::check_written(&written, &run, &hosts);
    }

    #[test]
    fn quick_is_smaller_than_full() {
        let (quick, full) = (Scale::quick(), Scale::full());
        assert!(quick.rounds < full.rounds && quick.zipf_requests == 200_000);
        assert_eq!(
            (
                full.trace_keys,
                full.trace_requests,
                quick.trace_keys,
                quick.trace_requests
            ),
            (100_000, 1_000_000, 100_000, 200_000)
        );
        assert_eq!((full.zipf_requests, full.zipf_keys), (1_000_000, 100_000));
        assert_eq!(
            (
                quick.write_entries,
                quick.l1_keys,
                quick.l2_keys,
                quick.redis_keys
            ),
            (10_000, 10_000, 10_000, 10_000)
        );
        assert!(quick.redis_reads < full.redis_reads && quick.redis_rounds < full.redis_rounds);
        assert_eq!((full.hybrid.keys, full.hybrid.writes), (100_000, 10_000));
        assert_eq!(quick.hybrid.keys, 10_000);
        assert!(quick.hybrid.requests < full.hybrid.requests);
    }

    /// `bench/compare` runs the read scenarios through the
    /// `tierstack-compare` binary, whose sizes are constants of its own (it
    /// cannot link this library into an older revision): they are the full
    /// report's.
    #[test]
    fn the_compare_binary_runs_the_full_reports_sizes() {
        let source = include_str!("../compare-scenarios/src/main.rs");
        let constant = |name: &str| -> usize {
            let line = source
                .lines()
                .find_map(|line| line.strip_prefix(&format!("const {name}: usize = ")))
                .unwrap_or_else(|| panic!("no const {name} in tierstack-compare"));
            line.trim_end_matches(';').replace('_', "").parse().unwrap()
        };
        let full = Scale::full();
        assert_eq!(
            [
                "ROUNDS",
                "L1_KEYS",
                "L1_PASSES",
                "L2_KEYS",
                "L2_PASSES",
                "C_GETS"
            ]
            .map(constant),
            [
                full.rounds,
                full.l1_keys,
                full.l1_passes,
                full.l2_keys,
                full.l2_passes,
                full.c_gets
            ]
        );
    }
}
