//! `tierstack-bench [--quick]`: runs every scenario and prints the table.

use std::process::ExitCode;

use tierstack_bench::{Scale, table};

const USAGE: &str = "usage: tierstack-bench [--quick]

Runs tierstack side by side with quick_cache, moka, bare rusqlite and bare
redis-rs (against a redis-server it starts on loopback, if one is on PATH)
and prints the median of alternating rounds for each.

  --quick   fewer rounds and a shorter trace (well under a minute)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (scale, mode) = match args.as_slice() {
        [] => (Scale::full(), "full"),
        [flag] if flag == "--quick" => (Scale::quick(), "quick"),
        [flag] if flag == "-h" || flag == "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
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
    let rows = match tierstack_bench::run_all(scale, |name| eprintln!("running {name} ...")) {
        Ok(rows) => rows,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!();
    print!("{}", table::render(&rows));
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
