//! The printed table and the formatting of its figures.

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{CellAlignment, Table};

/// Whether a row meets its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The target is met.
    Pass,
    /// The target is missed.
    Fail,
    /// The row is for reference and has no target.
    Info,
}

impl Verdict {
    /// [`Verdict::Pass`] if `met`, else [`Verdict::Fail`].
    pub fn of(met: bool) -> Self {
        if met { Self::Pass } else { Self::Fail }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Info => "-",
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What was measured.
    pub scenario: String,
    /// tierstack's figure.
    pub ours: String,
    /// The peer's name.
    pub peer: String,
    /// The peer's figure.
    pub peer_figure: String,
    /// tierstack's figure over the peer's, when the two are comparable.
    pub ratio: Option<f64>,
    /// The target, in words.
    pub target: String,
    /// Whether the target is met.
    pub verdict: Verdict,
}

const HEADERS: [&str; 7] = [
    "scenario",
    "tierstack",
    "peer",
    "peer figure",
    "ratio",
    "target",
    "result",
];

/// The rows as a Markdown table (so a run can be pasted into a README):
/// figures and ratios right-aligned, words left-aligned.
pub fn render(rows: &[Row]) -> String {
    let mut table = Table::new();
    table.load_style(ASCII_MARKDOWN).set_header(HEADERS);
    for r in rows {
        table.add_row([
            r.scenario.as_str(),
            &r.ours,
            &r.peer,
            &r.peer_figure,
            &r.ratio.map_or_else(|| "-".to_owned(), ratio),
            &r.target,
            r.verdict.label(),
        ]);
    }
    for i in [1, 3, 4] {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut text = table.to_string();
    text.push('\n');
    text
}

/// A duration given in nanoseconds, in ns, µs or ms as fits.
pub fn duration(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// A ratio: two decimals, or two significant digits below 0.1.
pub fn ratio(x: f64) -> String {
    let decimals = if x.is_finite() && x > 0.0 && x < 0.1 {
        (-x.log10()).floor() as usize + 2
    } else {
        2
    };
    format!("{x:.decimals$}×")
}

/// A whole number with thousands separators: `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() * 4 / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate of entries per second.
pub fn rate(per_sec: f64) -> String {
    format!("{}/s", thousands(per_sec.round() as u64))
}

/// A percentage with two decimals.
pub fn percent(pct: f64) -> String {
    format!("{pct:.2} %")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures() {
        assert_eq!(duration(48.26), "48.3 ns");
        assert_eq!(duration(3_214.0), "3.21 µs");
        assert_eq!(duration(31_200_000.0), "31.20 ms");
        assert_eq!(ratio(1.346), "1.35×");
        assert_eq!(ratio(0.0116), "0.012×");
        assert_eq!(ratio(0.00317), "0.0032×");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(rate(320_511.6), "320,512/s");
        assert_eq!(percent(12.3456), "12.35 %");
    }

    #[test]
    fn a_markdown_table_with_figures_right_aligned() {
        let rows = [
            Row {
                scenario: "L1 hit".into(),
                ours: "48.3 ns".into(),
                peer: "moka".into(),
                peer_figure: "120.0 ns".into(),
                ratio: Some(0.4025),
                target: "< 1.00×".into(),
                verdict: Verdict::of(true),
            },
            Row {
                scenario: "L2 write rate".into(),
                ours: "320,512/s".into(),
                peer: "-".into(),
                peer_figure: "-".into(),
                ratio: None,
                target: "≥ 100,000/s".into(),
                verdict: Verdict::Info,
            },
        ];
        assert_eq!(
            render(&rows),
            "\
| scenario      | tierstack | peer | peer figure | ratio | target      | result |
|---------------|-----------|------|-------------|-------|-------------|--------|
| L1 hit        |   48.3 ns | moka |    120.0 ns | 0.40× | < 1.00×     | PASS   |
| L2 write rate | 320,512/s | -    |           - |     - | ≥ 100,000/s | -      |
"
        );
    }
}
