//! BENCHMARKS.md: the machine and the date, then every table of the run and
//! of the hosts, with the plots beside them.

use super::hosts::{self, HostRun};
use super::{Plots, Run};
use crate::table::{self, Verdict};
use crate::traces;

/// The command that regenerates the report, as the document names it.
pub const COMMAND: &str = "bench/report";

/// The Markdown of the report of `run` and the hosts' runs, with `plots`
/// linked as given.
pub fn render(run: &Run<'_>, hosts: &[HostRun], plots: &Plots) -> String {
    let rows = &run.report.rows;
    let judged = rows.iter().filter(|r| r.verdict != Verdict::Info).count();
    let passed = rows.iter().filter(|r| r.verdict == Verdict::Pass).count();
    let m = &run.machine;
    let mut md = String::new();
    let line = |md: &mut String, text: &str| {
        md.push_str(text);
        md.push('\n');
    };
    line(&mut md, "# tierstack benchmarks");
    line(&mut md, "");
    line(
        &mut md,
        &format!(
            "Written by `{COMMAND}` (`tierstack-bench --report`); regenerate it \
         rather than editing it. Every scenario runs tierstack and its peer \
         side by side in one process, in alternating rounds; each figure is \
         shown beside its peer's from the same run, with the ratio \
         tierstack / peer in the row's unit."
        ),
    );
    line(&mut md, "");
    line(&mut md, "| run | |");
    line(&mut md, "|---|---|");
    let mode = format!(
        "{} (median of {} rounds per contender, {} for writes)",
        run.mode, run.scale.rounds, run.scale.write_rounds
    );
    for (what, value) in [
        ("date (UTC)", m.date.as_str()),
        ("mode", &mode),
        ("CPU", &m.cpu),
        ("cores", &m.cores.to_string()),
        ("memory", &m.memory()),
        ("kernel", &m.kernel),
        ("rustc", &m.rustc),
        ("commit", m.commit.as_deref().unwrap_or("unknown")),
        ("took", &format!("{:.1} s", run.took.as_secs_f64())),
    ] {
        line(&mut md, &format!("| {what} | {value} |"));
    }
    line(&mut md, "");
    line(
        &mut md,
        &format!(
            "{passed} of {judged} targets met. Absolute figures move with the \
         machine's load; the ratios are what a run compares."
        ),
    );
    line(&mut md, "");
    line(&mut md, "## Operations per second");
    line(&mut md, "");
    line(
        &mut md,
        &format!(
            "Every timed comparison of the run{}, as operations per second (the \
         inverse of the median time per operation; a host row in µs is one \
         call of that many microseconds).",
            if hosts.is_empty() {
                ""
            } else {
                " and of the hosts"
            }
        ),
    );
    line(&mut md, "");
    line(
        &mut md,
        &format!("![Operations per second]({})", plots.throughput),
    );
    line(&mut md, "");
    line(&mut md, "## Every scenario");
    line(&mut md, "");
    md.push_str(&table::render(rows));
    line(&mut md, "");
    line(&mut md, "## Latency");
    line(&mut md, "");
    line(
        &mut md,
        "p50 and p99 of the hybrid scenario's reads that each cache's disk \
         tier served (the rows `hybrid, disk-tier read` above).",
    );
    line(&mut md, "");
    line(
        &mut md,
        &format!("![Latency percentiles]({})", plots.latency),
    );
    line(&mut md, "");
    line(&mut md, "## Hit ratio against cache size");
    line(&mut md, "");
    line(
        &mut md,
        "Each contender serves the same seeded trace cache-aside at each \
         size; Bélády's offline optimum is the ceiling. tierstack's L1 and \
         quick_cache hash keys with one fixed seed (tierstack's \
         `memory.hash_seed`), so that their columns compare the two \
         policies, not two draws of a random seed.",
    );
    line(&mut md, "");
    for (trace, link) in &plots.hit_ratio {
        line(&mut md, &format!("![Hit ratio, {trace}]({link})"));
        line(&mut md, "");
    }
    md.push_str(&traces::render(&run.report.traces));
    line(&mut md, "");
    line(&mut md, "## Hosts");
    line(&mut md, "");
    if hosts.is_empty() {
        line(
            &mut md,
            &format!(
                "No host results in this run: `{COMMAND}` runs the Python and Node \
             benches and hands their JSON to `tierstack-bench --hosts`."
            ),
        );
        line(&mut md, "");
    }
    for host in hosts {
        line(&mut md, &format!("### {}", host.title()));
        line(&mut md, "");
        line(
            &mut md,
            &format!(
                "{} mode; peers: {}.",
                if host.quick { "quick" } else { "full" },
                if host.peers.is_empty() {
                    "none named".to_owned()
                } else {
                    host.peer_versions()
                }
            ),
        );
        line(&mut md, "");
        md.push_str(&hosts::render(host));
        line(&mut md, "");
    }
    // One trailing newline.
    while md.ends_with("\n\n") {
        md.pop();
    }
    md
}
