//! The written report of a run: BENCHMARKS.md ([`markdown`]) and its SVG
//! plots ([`plots`]), made of the run's [`Report`], the machine it ran on
//! ([`machine`]) and the hosts' JSON files ([`hosts`]).
//!
//! `tierstack-bench --report BENCHMARKS.md [--plots DIR] [--hosts FILE...]`
//! writes them; `bench/report` runs the host benches first and regenerates
//! all of it.

pub mod figures;
pub mod hosts;
pub mod machine;
pub mod markdown;
pub mod plots;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use hosts::HostRun;
pub use machine::Machine;

use crate::{BenchResult, Report, Scale};

/// A finished run, as the report describes it.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    /// What the run measured.
    pub report: &'a Report,
    /// The sizes it ran at.
    pub scale: Scale,
    /// `quick` or `full`.
    pub mode: &'a str,
    /// How long the scenarios took.
    pub took: Duration,
    /// Where and when it ran.
    pub machine: Machine,
}

/// The plots' addresses as the Markdown file links them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plots {
    /// Operations per second of every comparison.
    pub throughput: String,
    /// The latency percentiles.
    pub latency: String,
    /// Each trace's name and its hit-ratio plot.
    pub hit_ratio: Vec<(String, String)>,
}

/// The files [`write`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The Markdown report.
    pub markdown: PathBuf,
    /// The SVG plots, in the order the report shows them.
    pub plots: Vec<PathBuf>,
}

/// The file name of a trace's hit-ratio plot.
pub fn hit_ratio_file(trace: &str) -> String {
    format!("hit-ratio-{}.svg", plots::slug(trace))
}

/// `file` as a link from a document in `dir`: the path below `dir` when it
/// is there, else the absolute path.
fn link(dir: &Path, file: &Path) -> BenchResult<String> {
    let (dir, file) = (dir.canonicalize()?, file.canonicalize()?);
    Ok(file
        .strip_prefix(&dir)
        .unwrap_or(&file)
        .to_string_lossy()
        .into_owned())
}

/// Writes the plots of `run` and `hosts` into `plots_dir` and the report
/// to `markdown`, creating the directories; existing files of the same
/// names are replaced.
pub fn write(
    run: &Run<'_>,
    hosts: &[HostRun],
    markdown: &Path,
    plots_dir: &Path,
) -> BenchResult<Written> {
    let dir = match markdown.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    std::fs::create_dir_all(plots_dir)?;

    let mut throughput = figures::throughput(&run.report.timed);
    throughput.extend(figures::hosts(hosts));
    let throughput_svg = plots_dir.join("throughput.svg");
    plots::bars(
        &throughput_svg,
        "Operations per second: tierstack (blue) above its peer; at the right, tierstack / peer",
        "operations per second (log scale)",
        &throughput,
    )?;
    let latency_svg = plots_dir.join("latency.svg");
    plots::bars(
        &latency_svg,
        "Disk-tier read latency: tierstack (blue) above foyer; at the right, tierstack / foyer",
        "µs (log scale)",
        &figures::latency(&run.report.timed),
    )?;
    let mut written = vec![throughput_svg.clone(), latency_svg.clone()];
    let mut hit_ratio = Vec::new();
    for trace in &run.report.traces {
        let svg = plots_dir.join(hit_ratio_file(trace.trace));
        plots::hit_ratio(&svg, trace)?;
        hit_ratio.push((trace.trace.to_owned(), link(dir, &svg)?));
        written.push(svg);
    }
    let links = Plots {
        throughput: link(dir, &throughput_svg)?,
        latency: link(dir, &latency_svg)?,
        hit_ratio,
    };
    std::fs::write(markdown, markdown::render(run, hosts, &links))?;
    Ok(Written {
        markdown: markdown.to_owned(),
        plots: written,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::figures::Pair;
    use super::plots::{OURS, PEER, contender_color};
    use super::*;
    use crate::traces::CONTENDERS;

    /// The SVG at `path`, parsed: fails unless it is well-formed XML with an
    /// `<svg>` root.
    fn svg(path: &Path) -> String {
        let text = std::fs::read_to_string(path).unwrap();
        let doc =
            roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        text
    }

    /// Elements named `tag` whose attribute `attr` is `value`.
    fn count(text: &str, tag: &str, attr: &str, value: &str) -> usize {
        let doc = roxmltree::Document::parse(text).unwrap();
        doc.descendants()
            .filter(|n| n.has_tag_name(tag) && n.attribute(attr) == Some(value))
            .count()
    }

    fn hex(color: plotters::style::RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", color.0, color.1, color.2)
    }

    /// The `<text>` contents of an SVG.
    fn texts(text: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(text).unwrap();
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or_default().trim().to_owned())
            .collect()
    }

    /// A bar plot holds a bar of each colour per pair (and one in the
    /// legend), a label per pair and each ratio.
    fn check_bars(path: &Path, pairs: &[Pair]) {
        let text = svg(path);
        for color in [OURS, PEER] {
            assert_eq!(
                count(&text, "rect", "fill", &hex(color)),
                pairs.len() + 1,
                "{}",
                path.display()
            );
        }
        let texts = texts(&text);
        for p in pairs {
            let label = format!("{} vs {}", p.label, p.peer);
            assert!(texts.contains(&label), "{label} in {}", path.display());
            let ratio = crate::table::ratio(p.ratio());
            assert!(texts.contains(&ratio), "{ratio} in {}", path.display());
        }
    }

    /// Checks what [`write`] wrote for `run` and `hosts`: each plot is an
    /// SVG holding every data series, and the Markdown has every table
    /// row filled and links plots that exist.
    pub(crate) fn check_written(written: &Written, run: &Run<'_>, hosts: &[HostRun]) {
        let names: Vec<String> = written
            .plots
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let mut expected = vec!["throughput.svg".to_owned(), "latency.svg".to_owned()];
        expected.extend(run.report.traces.iter().map(|t| hit_ratio_file(t.trace)));
        assert_eq!(names, expected);

        let timed = &run.report.timed;
        let mut throughput = figures::throughput(timed);
        throughput.extend(figures::hosts(hosts));
        check_bars(&written.plots[0], &throughput);
        check_bars(&written.plots[1], &figures::latency(timed));
        for (trace, path) in run.report.traces.iter().zip(&written.plots[2..]) {
            let text = svg(path);
            for name in CONTENDERS {
                let color = hex(contender_color(name));
                // The line and its legend entry; a point per size.
                assert_eq!(count(&text, "polyline", "stroke", &color), 2, "{name}");
                assert_eq!(
                    count(&text, "circle", "fill", &color),
                    trace.sizes.len(),
                    "{name}"
                );
            }
        }

        let md = std::fs::read_to_string(&written.markdown).unwrap();
        assert!(md.starts_with("# tierstack benchmarks\n"));
        assert!(!md.ends_with("\n\n"));
        // The last host's table ends the report.
        assert_eq!(md.ends_with("|\n"), !hosts.is_empty());
        let mut table_lines = 0;
        for line in md.lines().filter(|l| l.starts_with('|')) {
            let cells: Vec<&str> = line.split('|').collect();
            let inner = &cells[1..cells.len() - 1];
            // The machine table's header has an empty second cell.
            if line != "| run | |" {
                assert!(inner.iter().all(|c| !c.trim().is_empty()), "{line}");
            }
            table_lines += 1;
        }
        let host_rows: usize = hosts.iter().map(|h| h.rows.len() + 2).sum();
        let trace_rows: usize = run.report.traces.iter().map(|t| t.sizes.len()).sum();
        assert_eq!(
            table_lines,
            11 + (run.report.rows.len() + 2) + (trace_rows + 2) + host_rows
        );
        for row in &run.report.rows {
            assert!(md.contains(&format!("| {}", row.scenario)), "{row:?}");
        }
        for host in hosts {
            assert!(md.contains(&format!("### {}\n", host.title())));
        }
        let dir = written.markdown.parent().unwrap();
        let links: Vec<&str> = md
            .lines()
            .filter_map(|l| l.strip_prefix("![")?.split_once("](")?.1.strip_suffix(')'))
            .collect();
        assert_eq!(links.len(), written.plots.len());
        for (link, plot) in links.iter().zip(&written.plots) {
            let linked = dir.join(link).canonicalize().unwrap();
            assert_eq!(linked, plot.canonicalize().unwrap());
        }
        for fact in [&run.machine.date, &run.machine.cpu, &run.machine.rustc] {
            assert!(md.contains(&format!(" {fact} |")), "{fact}");
        }
    }
}
