//! `tierstack-bench [--quick] [--report FILE [--plots DIR] [--hosts FILE...]]`:
//! runs every scenario, prints the table, and writes the report if asked.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use tierstack_bench::report::{self, HostRun, Machine};
use tierstack_bench::{Scale, table, traces};

/// Runs tierstack side by side with quick_cache, moka, foyer, bare rusqlite and
/// bare redis-rs (against a redis-server it starts on loopback, if one is on
/// PATH) and prints the median of alternating rounds for each.
#[derive(Parser)]
#[command(name = "tierstack-bench")]
struct Args {
    /// Fewer rounds and a shorter trace (well under a minute).
    #[arg(long)]
    quick: bool,
    /// Also write the report, in Markdown, to FILE (BENCHMARKS.md), with
    /// its SVG plots in --plots.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Where the report's plots go [default: bench/plots beside the report].
    #[arg(long, value_name = "DIR", requires = "report")]
    plots: Option<PathBuf>,
    /// Host results to include in the report: the JSON files the Python and
    /// Node benches write with `--json`.
    #[arg(long, value_name = "FILE", num_args = 1.., requires = "report")]
    hosts: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Read the hosts' files first, so that a broken one fails before the run.
    let hosts = match args
        .hosts
        .iter()
        .map(|p| HostRun::load(p))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(hosts) => hosts,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let machine = Machine::detect();
    let (scale, mode) = if args.quick {
        (Scale::quick(), "quick")
    } else {
        (Scale::full(), "full")
    };
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; run with --release for meaningful figures");
    }
    println!(
        "tierstack-bench, {mode} mode: median of {} rounds per contender ({} for writes), {} CPUs",
        scale.rounds, scale.write_rounds, machine.cores
    );
    let started = std::time::Instant::now();
    let report = match tierstack_bench::run_all(scale, |name| eprintln!("running {name} ...")) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let took = started.elapsed();
    println!();
    let rows = &report.rows;
    print!("{}", table::render(rows));
    println!("\nL1 hit ratio against cache size (entries), every contender:\n");
    print!("{}", traces::render(&report.traces));
    let judged = rows
        .iter()
        .filter(|r| r.verdict != table::Verdict::Info)
        .count();
    let passed = rows
        .iter()
        .filter(|r| r.verdict == table::Verdict::Pass)
        .count();
    println!(
        "\n{passed} of {judged} targets met; ratio = tierstack / peer; took {:.1} s",
        took.as_secs_f64()
    );

    if let Some(markdown) = &args.report {
        let plots = args.plots.clone().unwrap_or_else(|| {
            markdown
                .parent()
                .unwrap_or(Path::new(""))
                .join("bench")
                .join("plots")
        });
        let run = report::Run {
            report: &report,
            scale,
            mode,
            took,
            machine,
        };
        match report::write(&run, &hosts, markdown, &plots) {
            Ok(written) => {
                println!("\nwrote {}", written.markdown.display());
                for plot in &written.plots {
                    println!("wrote {}", plot.display());
                }
            }
            Err(err) => {
                eprintln!("error: writing the report: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_report_flags() {
        Args::command().debug_assert();
        let args = Args::try_parse_from([
            "tierstack-bench",
            "--quick",
            "--report",
            "BENCHMARKS.md",
            "--hosts",
            "python.json",
            "node.json",
        ])
        .unwrap();
        assert!(args.quick);
        assert_eq!(args.report, Some(PathBuf::from("BENCHMARKS.md")));
        assert_eq!(args.plots, None);
        assert_eq!(
            args.hosts,
            [PathBuf::from("python.json"), PathBuf::from("node.json")]
        );
        for without_report in [["--hosts", "a.json"], ["--plots", "plots"]] {
            let err = Args::try_parse_from(["tierstack-bench"].into_iter().chain(without_report))
                .err()
                .unwrap();
            assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        }
    }
}
