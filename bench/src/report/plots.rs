//! The report's SVG plots, drawn with plotters' SVG backend: paired bars
//! (tierstack above its peer, on a log scale, the ratio at the right) for
//! rates and latencies, and lines of the hit ratio against the cache size,
//! one plot per trace.
//!
//! The SVGs carry their text as `<text>` elements for the viewer to set;
//! plotters only estimates its width (no font is read), so label areas are
//! sized from the labels' lengths.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::figures::Pair;
use crate::BenchResult;
use crate::traces::{CONTENDERS, LRU, MOKA, OPTIMAL, QUICK_CACHE, TIERSTACK, TraceReport};

/// tierstack's colour in every plot.
pub const OURS: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
/// The peer's bars.
pub const PEER: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const FONT: &str = "sans-serif";
/// Pixels per character of a 13-pixel label, rounded up from plotters'
/// estimate, so that long labels keep clear of the plot.
const LABEL_CHAR_PX: u32 = 7;
const ROW_PX: u32 = 34;

/// The colour of a contender's line in the hit-ratio plots.
pub fn contender_color(name: &str) -> RGBColor {
    match name {
        TIERSTACK => OURS,
        QUICK_CACHE => PEER,
        MOKA => RGBColor(0x2c, 0xa0, 0x2c),
        LRU => RGBColor(0x94, 0x67, 0xbd),
        _ => RGBColor(0x33, 0x33, 0x33),
    }
}

/// A figure in few characters: `1.23M`, `245k`, `8.98`, `0.012`.
pub fn compact(x: f64) -> String {
    let (value, suffix) = if x >= 1e9 {
        (x / 1e9, "G")
    } else if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    let decimals = match value {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        v if v >= 0.1 || v == 0.0 => 2,
        v => (-v.log10()).floor() as usize + 2,
    };
    format!("{value:.decimals$}{suffix}")
}

/// An axis mark: [`compact`] without trailing zeros (`1k`, `2.5M`, `0.1`).
pub fn axis(x: f64) -> String {
    let text = compact(x);
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &text[digits.len()..];
    let digits = if digits.contains('.') {
        digits.trim_end_matches('0').trim_end_matches('.')
    } else {
        digits
    };
    format!("{digits}{suffix}")
}

/// The powers of ten around `values`, with one more decade on the right
/// for the ratios.
fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || lo <= 0.0 {
        return (1.0, 10.0);
    }
    (
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().floor() + 2.0),
    )
}

/// Draws `pairs` as horizontal bars into the SVG at `path`: a row per
/// pair, labelled `<label> vs <peer>`, tierstack's bar above the peer's,
/// each with its figure, and the ratio at the right; `unit` names the x
/// axis. Fails on an empty `pairs`.
pub fn bars(path: &Path, title: &str, unit: &str, pairs: &[Pair]) -> BenchResult<()> {
    if pairs.is_empty() {
        return Err(format!("{title}: nothing to plot").into());
    }
    let labels: Vec<String> = pairs
        .iter()
        .map(|p| format!("{} vs {}", p.label, p.peer))
        .collect();
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let label_px = LABEL_CHAR_PX * longest as u32 + 24;
    let rows = pairs.len() as f64;
    let size = (label_px + 720, 110 + ROW_PX * (pairs.len() as u32 + 2));
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    let (lo, hi) = log_range(pairs.iter().flat_map(|p| [p.ours, p.peer_value]));
    // One empty row at the top for the legend.
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(label_px)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..rows + 1.0)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc(unit)
        .x_label_formatter(&|x| axis(*x))
        .label_style((FONT, 13))
        .draw()?;

    // Row i spans y = rows - i - 1 ..= rows - i, the first row on top.
    let top = |i: usize| rows - i as f64;
    let bar = |i: usize, value: f64, upper: f64, color: RGBColor| {
        Rectangle::new(
            [(lo, top(i) - upper), (value, top(i) - upper - 0.36)],
            color.filled(),
        )
    };
    let swatch = |color: RGBColor| {
        move |(x, y): (i32, i32)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
    };
    chart
        .draw_series(
            pairs
                .iter()
                .enumerate()
                .map(|(i, p)| bar(i, p.ours, 0.12, OURS)),
        )?
        .label("tierstack")
        .legend(swatch(OURS));
    chart
        .draw_series(
            pairs
                .iter()
                .enumerate()
                .map(|(i, p)| bar(i, p.peer_value, 0.5, PEER)),
        )?
        .label("peer")
        .legend(swatch(PEER));
    let left = TextStyle::from((FONT, 12)).pos(Pos::new(HPos::Left, VPos::Center));
    let right = TextStyle::from((FONT, 13)).pos(Pos::new(HPos::Right, VPos::Center));
    chart.draw_series(pairs.iter().enumerate().flat_map(|(i, p)| {
        [
            Text::new(compact(p.ours), (p.ours * 1.1, top(i) - 0.3), left.clone()),
            Text::new(
                compact(p.peer_value),
                (p.peer_value * 1.1, top(i) - 0.68),
                left.clone(),
            ),
            Text::new(
                crate::table::ratio(p.ratio()),
                (hi / 1.15, top(i) - 0.5),
                right.clone(),
            ),
        ]
    }))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 13))
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    // The labels, right-aligned left of the plot, centred on their pair.
    let label_style = TextStyle::from((FONT, 13)).pos(Pos::new(HPos::Right, VPos::Center));
    for (i, label) in labels.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(lo, top(i) - 0.5));
        root.draw(&Text::new(label.as_str(), (x - 8, y), label_style.clone()))?;
    }
    root.present()?;
    Ok(())
}

/// Draws every contender's hit ratio against the cache size on `trace`
/// into the SVG at `path`: a line and a point per size for each, Bélády's
/// optimum as the ceiling.
pub fn hit_ratio(path: &Path, trace: &TraceReport) -> BenchResult<()> {
    let percents: Vec<f64> = trace.sizes.iter().map(|p| p.percent).collect();
    let (Some(&first), Some(&last)) = (percents.first(), percents.last()) else {
        return Err(format!("{}: no cache sizes to plot", trace.trace).into());
    };
    let best = trace
        .sizes
        .iter()
        .flat_map(|p| p.ratios())
        .fold(0.0_f64, |m, (_, r)| m.max(r));
    let ceiling = ((best / 10.0).ceil() * 10.0).clamp(10.0, 100.0);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "Hit ratio against cache size: {}, {} requests over {} keys",
        trace.trace,
        crate::table::thousands(trace.requests as u64),
        crate::table::thousands(trace.keys as u64)
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((first / 1.5..last * 1.5).log_scale(), 0.0..ceiling)?;
    chart
        .configure_mesh()
        .x_desc("cache size, % of the keys (log scale)")
        .y_desc("hit ratio, %")
        .x_label_formatter(&|x| format!("{} %", axis(*x)))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style((FONT, 13))
        .draw()?;
    for name in CONTENDERS {
        let color = contender_color(name);
        let points: Vec<(f64, f64)> = trace
            .sizes
            .iter()
            .map(|p| (p.percent, p.percent_of(name)))
            .collect();
        let width = if name == TIERSTACK { 3 } else { 2 };
        let label = if name == OPTIMAL {
            format!("{OPTIMAL} (optimal)")
        } else {
            name.to_owned()
        };
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(width)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 18, y)], color.stroke_width(width))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 13))
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A file name for `text`: lower case, letters, digits and dots, other
/// runs of characters as one `-` (`Zipf 0.9 + scans` → `zipf-0.9-scans`).
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_figures_and_slugs() {
        assert_eq!(compact(12_345_678.0), "12.3M");
        assert_eq!(compact(245_000.0), "245k");
        assert_eq!(compact(8.981), "8.98");
        assert_eq!(compact(0.0123), "0.012");
        assert_eq!(compact(1.5e9), "1.50G");
        assert_eq!(axis(1_000.0), "1k");
        assert_eq!(axis(2_500_000.0), "2.5M");
        assert_eq!(axis(0.1), "0.1");
        assert_eq!(axis(100.0), "100");
        assert_eq!(slug("Zipf 0.9 + scans"), "zipf-0.9-scans");
        assert_eq!(slug("Zipf 0.99"), "zipf-0.99");
        assert_eq!(log_range([3.0, 2_500.0].into_iter()), (1.0, 100_000.0));
    }
}
