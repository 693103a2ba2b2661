//! Scenario: an L1 hit through the C ABI, against the same hit in Rust.
//!
//! The C side is `tests/c/bench_get` (built with `-O2` against the release
//! `libtierstack.a` by `tests/run-c --bench`): it times
//! `tierstack_cache_get` + `tierstack_value_free` of one 1,536-byte value and
//! checks every read. The Rust side times `blocking::Cache::get` of the same
//! value on the same config, checking every read. Rounds alternate between a
//! run of the C program and a Rust round.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::BenchResult;
use crate::measure::{self, Round, Samples};

/// The C program, where `tests/run-c --bench` builds it.
pub fn program() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/c/build/bench_get")
}

/// The measurements of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct CHitReport {
    /// `tierstack_cache_get` from C.
    pub c: Samples,
    /// `tierstack::blocking::Cache::get`.
    pub rust: Samples,
}

const KEY: &str = "component:button";
const VALUE_LEN: usize = 1536;

fn value() -> Vec<u8> {
    (0..VALUE_LEN).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Runs `rounds` alternating rounds of `gets` L1 hits each.
pub fn run(program: &Path, gets: usize, rounds: usize) -> BenchResult<CHitReport> {
    let dir = tempfile::tempdir()?;
    let cache = tierstack::blocking::Cache::builder()
        .sqlite_path(dir.path().join("bench.db"))
        .build_blocking()?;
    let expected = value();
    cache.set(KEY, expected.clone())?;

    let mut c_round = || -> BenchResult<Round> {
        let out = Command::new(program).arg(gets.to_string()).output()?;
        if !out.status.success() {
            return Err(format!(
                "{} failed: {}",
                program.display(),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let text = String::from_utf8(out.stdout)?;
        let ns: f64 = text
            .trim()
            .strip_prefix("ns_per_get ")
            .ok_or_else(|| format!("unexpected output {text:?}"))?
            .parse()?;
        // The program exits non-zero unless every timed read was a hit of
        // the full value.
        Ok(Round {
            elapsed: Duration::from_nanos((ns * gets as f64) as u64),
            ops: gets,
            verified: gets,
        })
    };
    let mut rust_round = || -> BenchResult<Round> {
        measure::timed(gets, || {
            let mut verified = 0;
            for _ in 0..gets {
                let value = cache.get(KEY)?;
                verified += usize::from(value.is_some_and(|v| v.len() == VALUE_LEN));
            }
            Ok(verified)
        })
    };
    if cache.get(KEY)?.as_deref() != Some(&expected[..]) {
        return Err("the Rust cache lost its value".into());
    }
    let mut samples = measure::alternate(
        rounds,
        vec![
            ("C tierstack_cache_get", Box::new(&mut c_round)),
            ("Rust blocking get", Box::new(&mut rust_round)),
        ],
    )?;
    let rust = samples.pop().expect("two contenders");
    let c = samples.pop().expect("two contenders");
    Ok(CHitReport { c, rust })
}
