//! `cargo run -p tierstack-bench --release --example c_hit`: the L1 hit
//! from C against the same hit in Rust alone, at the full scale, after
//! `tests/run-c --bench` built the C program.

use std::process::ExitCode;

use tierstack_bench::{Scale, c_hit};

fn main() -> ExitCode {
    let scale = Scale::full();
    let program = c_hit::program();
    match c_hit::run(&program, scale.c_gets, scale.rounds) {
        Ok(report) => {
            let (c, rust) = (report.c.median_ns(), report.rust.median_ns());
            println!(
                "C {c:.1} ns, Rust {rust:.1} ns per L1 hit (medians of {} rounds of {} gets): {:.2}×",
                scale.rounds,
                scale.c_gets,
                c / rust
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
