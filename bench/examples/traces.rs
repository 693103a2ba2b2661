//! `cargo run -p tierstack-bench --release --example traces [-- --quick]`:
//! the hit-ratio traces alone, at the full scale (or the quick one),
//! printed as the bench's tables.

use std::process::ExitCode;

use tierstack_bench::{Scale, table, traces};

fn main() -> ExitCode {
    let quick = std::env::args().skip(1).any(|a| a == "--quick");
    let scale = if quick { Scale::quick() } else { Scale::full() };
    match traces::run(scale.trace_keys, scale.trace_requests) {
        Ok(reports) => {
            print!("{}", traces::render(&reports));
            print!("{}", table::render(&traces::rows(&reports)));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
