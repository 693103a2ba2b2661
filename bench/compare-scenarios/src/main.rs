//! `tierstack-compare [--quick] [--c-program PATH] --json PATH`: the Rust
//! and C read scenarios whose ratios `bench/compare` sets side by side for
//! two revisions of tierstack.
//!
//! The scenarios are the bench crate's own files (`bench/src/l1_hit.rs`,
//! `l2_hit.rs`, `c_hit.rs` and what they use), included by path, so that
//! both revisions are measured by the same code: `bench/compare` copies this
//! crate and those files into a worktree of the older revision, where they
//! build against that revision's core. The sizes are those of the full
//! report (`Scale::full()`), which a test of the bench crate holds them to.
//!
//! The JSON has the hosts' schema (`bench/src/report/hosts.rs`) with `ns`
//! as the unit: one row per ratio, `ratio` being tierstack's time over the
//! peer's.

// The scenario files are the bench library's modules; this binary calls a
// part of what they offer.
#[allow(dead_code)]
#[path = "../../src/bare.rs"]
mod bare;
#[allow(dead_code)]
#[path = "../../src/c_hit.rs"]
mod c_hit;
#[allow(dead_code)]
#[path = "../../src/data.rs"]
mod data;
#[allow(dead_code)]
#[path = "../../src/l1_hit.rs"]
mod l1_hit;
#[allow(dead_code)]
#[path = "../../src/l2_hit.rs"]
mod l2_hit;
#[allow(dead_code)]
#[path = "../../src/measure.rs"]
mod measure;

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{Value, json};

/// The error of a scenario, as the bench library names it.
type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Measured rounds per contender (`Scale::full().rounds`).
const ROUNDS: usize = 21;
/// Keys of the L1 hit (`Scale::full().l1_keys`).
const L1_KEYS: usize = 10_000;
/// Passes over them per round (`Scale::full().l1_passes`).
const L1_PASSES: usize = 100;
/// Keys of the L2 hit (`Scale::full().l2_keys`).
const L2_KEYS: usize = 10_000;
/// Passes over them per round (`Scale::full().l2_passes`).
const L2_PASSES: usize = 5;
/// L1 hits per round of the C scenario (`Scale::full().c_gets`).
const C_GETS: usize = 2_000_000;

/// `--quick` divides the passes and the C gets by this, and runs 3 rounds.
const QUICK_DIVISOR: usize = 50;

struct Args {
    quick: bool,
    json: PathBuf,
    c_program: Option<PathBuf>,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut quick, mut json, mut c_program) = (false, None, None);
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--json" => json = Some(argv.next().ok_or("--json needs a path")?.into()),
            "--c-program" => {
                c_program = Some(argv.next().ok_or("--c-program needs a path")?.into())
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let json = json.ok_or("--json PATH is required")?;
    Ok(Args {
        quick,
        json,
        c_program,
    })
}

/// One row of the JSON: tierstack's and the peer's median nanoseconds.
fn row(scenario: &str, peer: &str, ours: f64, theirs: f64) -> Value {
    json!({
        "scenario": scenario,
        "unit": "ns",
        "tierstack": ours,
        "peer": peer,
        "peer_value": theirs,
        "ratio": ours / theirs,
        "lower_is_better": true,
    })
}

fn run(args: &Args) -> BenchResult<Value> {
    let (rounds, divisor) = if args.quick {
        (3, QUICK_DIVISOR)
    } else {
        (ROUNDS, 1)
    };
    let mut rows = Vec::new();

    let l1 = l1_hit::run(L1_KEYS, L1_PASSES.div_ceil(divisor), rounds)?;
    let ours = l1.tierstack.median_ns();
    let scenario = "get, L1 hit, 10,000 × 1.5 KB";
    rows.push(row(
        scenario,
        "quick_cache",
        ours,
        l1.quick_cache.median_ns(),
    ));
    rows.push(row(scenario, "moka", ours, l1.moka.median_ns()));

    let l2 = l2_hit::run(L2_KEYS, L2_PASSES.div_ceil(divisor), rounds)?;
    rows.push(row(
        "get, L2 hit, 10,000 × 1.5 KB",
        "bare rusqlite",
        l2.tierstack.median_ns(),
        l2.rusqlite.median_ns(),
    ));

    if let Some(program) = &args.c_program {
        let c = c_hit::run(program, C_GETS / divisor, rounds)?;
        rows.push(row(
            "tierstack_cache_get from C, L1 hit",
            "the Rust get",
            c.c.median_ns(),
            c.rust.median_ns(),
        ));
    }
    Ok(json!({ "host": "rust", "quick": args.quick, "rows": rows }))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("error: {err}");
            eprintln!("usage: tierstack-compare [--quick] [--c-program PATH] --json PATH");
            return ExitCode::from(2);
        }
    };
    let written = run(&args).and_then(|report| {
        for row in report["rows"].as_array().into_iter().flatten() {
            println!(
                "{} vs {}: {:.1} / {:.1} ns = {:.3}",
                row["scenario"].as_str().unwrap_or_default(),
                row["peer"].as_str().unwrap_or_default(),
                row["tierstack"].as_f64().unwrap_or_default(),
                row["peer_value"].as_f64().unwrap_or_default(),
                row["ratio"].as_f64().unwrap_or_default(),
            );
        }
        std::fs::write(&args.json, serde_json::to_vec_pretty(&report)?)?;
        Ok(())
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
