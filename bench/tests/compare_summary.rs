//! `bench/compare-summary.py`, run on result files written here: the
//! medians, now/before and the verdict of each row, and its refusals.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;

/// Writes `{host}-{side}-{run}.json` files whose one row per `(scenario,
/// lower_is_better)` has the given ratios, run by run.
fn write_runs(dir: &Path, host: &str, side: &str, rows: &[(&str, bool, &[f64])]) {
    let runs = rows
        .iter()
        .map(|(_, _, ratios)| ratios.len())
        .max()
        .unwrap();
    for run in 0..runs {
        let rows: Vec<_> = rows
            .iter()
            .filter_map(|(scenario, lower, ratios)| {
                ratios.get(run).map(|ratio| {
                    json!({"scenario": scenario, "unit": "ns", "tierstack": ratio, "peer": "peer",
                           "peer_value": 1.0, "ratio": ratio, "lower_is_better": lower})
                })
            })
            .collect();
        let path = dir.join(format!("{host}-{side}-{}.json", run + 1));
        std::fs::write(path, json!({"host": host, "rows": rows}).to_string()).unwrap();
    }
}

fn summarize(dir: &Path) -> Output {
    Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("compare-summary.py"))
        .arg(dir)
        .output()
        .expect("python3 runs")
}

/// The table row of `scenario`, split into its cells.
fn cells(stdout: &str, scenario: &str) -> Vec<String> {
    let line = stdout
        .lines()
        .find(|line| line.contains(&format!("| {scenario} |")))
        .unwrap_or_else(|| panic!("no row {scenario} in\n{stdout}"));
    line.trim_matches('|')
        .split('|')
        .map(|cell| cell.trim().to_string())
        .collect()
}

#[test]
fn each_row_gets_its_medians_and_a_verdict_only_where_the_runs_do_not_overlap() {
    let dir = tempfile::tempdir().unwrap();
    // Every row ran 1.0, 1.2, 1.1 before; (scenario, lower is better, now, verdict).
    let before = [1.0, 1.2, 1.1];
    let rows: [(&str, bool, [f64; 3], &str); 4] = [
        ("faster", true, [0.9, 0.7, 0.8], "better"),
        ("overlapping", true, [0.9, 1.05, 1.3], "within spread"),
        ("slower", true, [1.3, 1.5, 1.4], "worse"),
        ("rate up", false, [1.3, 1.5, 1.4], "better"),
    ];
    let before_rows: Vec<(&str, bool, &[f64])> = rows
        .iter()
        .map(|(name, lower, _, _)| (*name, *lower, &before[..]))
        .collect();
    let now_rows: Vec<(&str, bool, &[f64])> = rows
        .iter()
        .map(|(name, lower, now, _)| (*name, *lower, &now[..]))
        .collect();
    write_runs(dir.path(), "rust", "before", &before_rows);
    write_runs(dir.path(), "rust", "now", &now_rows);
    write_runs(dir.path(), "node", "before", &[("few", true, &[1.0, 1.1])]);
    write_runs(dir.path(), "node", "now", &[("few", true, &[0.5, 0.6])]);
    let out = summarize(dir.path());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // host, scenario, peer, before, now, now/before, ranges, verdict
    assert_eq!(
        cells(&stdout, "faster"),
        [
            "rust",
            "faster",
            "peer",
            "1.100",
            "0.800",
            "0.727",
            "1.000–1.200 (3)",
            "0.700–0.900 (3)",
            "better"
        ]
    );
    for (name, _, _, verdict) in rows {
        assert_eq!(cells(&stdout, name)[8], verdict, "{name}");
    }
    assert_eq!(cells(&stdout, "few")[8], "too few runs");
    // Rust rows come before the hosts'.
    assert!(stdout.find("| rust |").unwrap() < stdout.find("| node |").unwrap());
}

#[test]
fn a_row_measured_on_one_side_only_or_a_side_without_runs_fails() {
    let dir = tempfile::tempdir().unwrap();
    write_runs(
        dir.path(),
        "python",
        "before",
        &[("kept", true, &[1.0]), ("dropped", true, &[1.0])],
    );
    write_runs(dir.path(), "python", "now", &[("kept", true, &[1.0])]);
    assert_refused(dir.path(), "- python: dropped vs peer");

    let empty = tempfile::tempdir().unwrap();
    write_runs(empty.path(), "python", "before", &[("kept", true, &[1.0])]);
    assert_refused(empty.path(), "no now runs");
}

/// The summary exits 1 and says `says` (on stdout or stderr).
fn assert_refused(dir: &Path, says: &str) {
    let out = summarize(dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(says), "{text}");
}
