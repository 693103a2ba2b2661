//! The hosts' results: the JSON file each host's bench writes
//! (`bindings-python/bench/bench.py --json FILE`,
//! `bindings-node/bench/table.mjs --json FILE`), read and checked, and
//! rendered as a Markdown table.
//!
//! ```json
//! {"host": "python", "quick": false, "peers": {"cachetools": "8.0.0"},
//!  "rows": [{"scenario": "get, memory hit", "unit": "µs",
//!            "tierstack": 0.58, "peer": "cachetools TTLCache", "peer_value": 1.57,
//!            "ratio": 0.37, "lower_is_better": true}]}
//! ```
//!
//! `ratio` is `tierstack / peer_value`, as the host computed it.

use std::collections::BTreeMap;
use std::path::Path;

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{CellAlignment, Table};
use serde::Deserialize;

use crate::BenchResult;
use crate::table;

/// The unit of a host row's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Unit {
    /// Microseconds per call.
    #[serde(rename = "µs")]
    Micros,
    /// Operations per second.
    #[serde(rename = "ops/s")]
    PerSec,
}

/// One comparison a host measured.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HostRow {
    /// What was measured.
    pub scenario: String,
    /// The unit of both figures.
    pub unit: Unit,
    /// tierstack's figure.
    pub tierstack: f64,
    /// The peer's name.
    pub peer: String,
    /// The peer's figure.
    pub peer_value: f64,
    /// `tierstack / peer_value`.
    pub ratio: f64,
    /// Whether a smaller figure is the better one (times are, rates not).
    pub lower_is_better: bool,
}

/// One host's run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HostRun {
    /// The host: `python`, `node`.
    pub host: String,
    /// Whether the host ran its quick mode.
    pub quick: bool,
    /// Each peer package and its version.
    pub peers: BTreeMap<String, String>,
    /// The comparisons, in the host's order.
    pub rows: Vec<HostRow>,
}

impl HostRun {
    /// Parses and checks one host's file: a host name, at least one row,
    /// and every figure a positive finite number.
    pub fn parse(json: &str) -> BenchResult<Self> {
        let run: Self = serde_json::from_str(json)?;
        if run.host.is_empty() {
            return Err("the host's name is empty".into());
        }
        if run.rows.is_empty() {
            return Err(format!("{}: no rows", run.host).into());
        }
        for row in &run.rows {
            for (what, x) in [
                ("tierstack", row.tierstack),
                ("peer_value", row.peer_value),
                ("ratio", row.ratio),
            ] {
                if !(x.is_finite() && x > 0.0) {
                    return Err(format!(
                        "{}, {:?}: {what} is {x}, not a positive number",
                        run.host, row.scenario
                    )
                    .into());
                }
            }
        }
        Ok(run)
    }

    /// Reads and parses the file at `path`; an error names the file.
    pub fn load(path: &Path) -> BenchResult<Self> {
        let json = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&json).map_err(|e| format!("{}: {e}", path.display()).into())
    }

    /// The host's name as a heading: `Python`, `Node`.
    pub fn title(&self) -> String {
        let mut chars = self.host.chars();
        chars.next().map_or_else(String::new, |first| {
            first.to_uppercase().chain(chars).collect()
        })
    }

    /// The peers and their versions: `cachetools 8.0.0, diskcache 5.6.3`.
    pub fn peer_versions(&self) -> String {
        let peers: Vec<String> = self
            .peers
            .iter()
            .map(|(name, version)| format!("{name} {version}"))
            .collect();
        peers.join(", ")
    }
}

/// A host's figure in its unit.
fn figure(unit: Unit, x: f64) -> String {
    match unit {
        Unit::Micros => table::duration(x * 1e3),
        Unit::PerSec => table::rate(x),
    }
}

/// How tierstack compares, in words: `2.70× faster`, `1.50× slower`.
pub fn verdict(row: &HostRow) -> String {
    let better = if row.lower_is_better {
        row.ratio < 1.0
    } else {
        row.ratio > 1.0
    };
    let times = if row.ratio >= 1.0 {
        row.ratio
    } else {
        1.0 / row.ratio
    };
    if row.ratio == 1.0 {
        "even".to_owned()
    } else if better {
        format!("{times:.2}× faster")
    } else {
        format!("{times:.2}× slower")
    }
}

/// The rows of one host's run as a Markdown table, tierstack beside its
/// peer with the ratio.
pub fn render(run: &HostRun) -> String {
    let mut t = Table::new();
    t.load_style(ASCII_MARKDOWN).set_header([
        "scenario",
        "tierstack",
        "peer",
        "peer figure",
        "ratio",
        "tierstack is",
    ]);
    for row in &run.rows {
        t.add_row([
            row.scenario.clone(),
            figure(row.unit, row.tierstack),
            row.peer.clone(),
            figure(row.unit, row.peer_value),
            table::ratio(row.ratio),
            verdict(row),
        ]);
    }
    for i in [1, 3, 4, 5] {
        if let Some(column) = t.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut text = t.to_string();
    text.push('\n');
    text
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A host file of the schema, as `bench.py --json` writes it.
    pub(crate) const SAMPLE: &str = r#"{
      "host": "python",
      "quick": true,
      "peers": {"diskcache": "5.6.3", "cachetools": "8.0.0"},
      "rows": [
        {"scenario": "get, memory hit, 1,000 × 1.4 KB dicts", "unit": "µs",
         "tierstack": 0.161, "peer": "cachetools TTLCache", "peer_value": 0.31,
         "ratio": 0.52, "lower_is_better": true},
        {"scenario": "get, file hit, memory off", "unit": "ops/s",
         "tierstack": 278000, "peer": "diskcache", "peer_value": 126600,
         "ratio": 2.196, "lower_is_better": false}
      ]
    }"#;

    #[test]
    fn a_host_file_is_read_into_rows() {
        let run = HostRun::parse(SAMPLE).unwrap();
        assert_eq!((run.host.as_str(), run.quick), ("python", true));
        assert_eq!(run.title(), "Python");
        assert_eq!(run.peer_versions(), "cachetools 8.0.0, diskcache 5.6.3");
        assert_eq!(run.rows.len(), 2);
        assert_eq!(
            run.rows[0],
            HostRow {
                scenario: "get, memory hit, 1,000 × 1.4 KB dicts".into(),
                unit: Unit::Micros,
                tierstack: 0.161,
                peer: "cachetools TTLCache".into(),
                peer_value: 0.31,
                ratio: 0.52,
                lower_is_better: true,
            }
        );
        assert_eq!(run.rows[1].unit, Unit::PerSec);
        assert_eq!(
            render(&run),
            "\
| scenario                              | tierstack | peer                | peer figure | ratio | tierstack is |
|---------------------------------------|-----------|---------------------|-------------|-------|--------------|
| get, memory hit, 1,000 × 1.4 KB dicts |  161.0 ns | cachetools TTLCache |    310.0 ns | 0.52× | 1.92× faster |
| get, file hit, memory off             | 278,000/s | diskcache           |   126,600/s | 2.20× | 2.20× faster |
"
        );
    }

    #[test]
    fn slower_faster_and_even() {
        let row = |ratio, lower_is_better| HostRow {
            scenario: "set".into(),
            unit: Unit::Micros,
            tierstack: 1.0,
            peer: "p".into(),
            peer_value: 1.0,
            ratio,
            lower_is_better,
        };
        assert_eq!(verdict(&row(2.6, true)), "2.60× slower");
        assert_eq!(verdict(&row(0.25, false)), "4.00× slower");
        assert_eq!(verdict(&row(0.25, true)), "4.00× faster");
        assert_eq!(verdict(&row(1.0, true)), "even");
    }

    #[test]
    fn a_broken_file_is_refused_with_its_reason() {
        let err = |json: &str| HostRun::parse(json).unwrap_err().to_string();
        assert_eq!(
            err(&SAMPLE.replace("\"µs\"", "\"ms\"")),
            "unknown variant `ms`, expected `µs` or `ops/s` at line 6 column 75"
        );
        assert_eq!(
            err(&SAMPLE.replace("0.161", "0")),
            "python, \"get, memory hit, 1,000 × 1.4 KB dicts\": tierstack is 0, not a positive number"
        );
        assert_eq!(
            err(r#"{"host": "node", "quick": false, "peers": {}, "rows": []}"#),
            "node: no rows"
        );
        assert_eq!(
            err(r#"{"host": "node"}"#),
            "missing field `quick` at line 1 column 16"
        );
        let missing = HostRun::load(Path::new("/nonexistent/python.json")).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("cannot read /nonexistent/python.json: "),
            "{missing}"
        );
    }
}
