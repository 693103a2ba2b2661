//! `cargo run -p tierstack-bench --release --example hybrid [-- --quick]`:
//! the scenario against foyer alone, at the full scale (or the quick one),
//! printed as the bench's table.

use std::process::ExitCode;

use tierstack_bench::{Scale, hybrid, table};

fn main() -> ExitCode {
    let quick = std::env::args().skip(1).any(|a| a == "--quick");
    let scale = if quick { Scale::quick() } else { Scale::full() }.hybrid;
    println!("{scale:?}");
    let started = std::time::Instant::now();
    match hybrid::run(scale) {
        Ok(report) => {
            print!("{}", table::render(&report.rows()));
            println!(
                "\nmemory tier {} bytes, disk tier {} bytes each; ratio = tierstack / foyer; took {:.1} s",
                table::thousands(report.memory_bytes),
                table::thousands(report.disk_bytes),
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
