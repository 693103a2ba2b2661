//! `tierstack-bench [--quick]`: runs every scenario and prints the table.

use std::process::ExitCode;

use clap::Parser;
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (scale, mode) = if args.quick {
        (Scale::quick(), "quick")
    } else {
        (Scale::full(), "full")
    };
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; run with --release for meaningful figures");
    }
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "tierstack-bench, {mode} mode: median of {} rounds per contender ({} for writes), {cpus} CPUs",
        scale.rounds, scale.write_rounds
    );
    let started = std::time::Instant::now();
    let report = match tierstack_bench::run_all(scale, |name| eprintln!("running {name} ...")) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!();
    let rows = report.rows;
    print!("{}", table::render(&rows));
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
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
