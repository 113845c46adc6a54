//! Inline SVG charts for the HTML pages (the evidence pack and `/`): a
//! daily series of a ratio against its threshold line. Inline so a page is
//! one self-contained file.

use chrono::NaiveDate;

use crate::render::numfmt::{self, Cmp};

/// Escapes text for HTML and SVG content and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The vertical range shown: from below the lowest of values and threshold
/// up to 100 %, so the threshold line is always inside the chart.
fn range(values: &[Option<f64>], threshold: f64) -> (f64, f64) {
    let known = values.iter().flatten().copied();
    let lo = known.clone().fold(threshold, f64::min);
    let hi = known.fold(threshold.max(1.0), f64::max);
    let span = (hi - lo).max(1e-4);
    // Room under the lowest value, but no negative axis for ratios that
    // cannot be negative.
    let bottom = if lo >= 0.0 {
        (lo - span * 0.1).max(0.0)
    } else {
        lo - span * 0.1
    };
    (bottom, hi + span * 0.06)
}

/// Runs of consecutive known values, as SVG points: a day without a value
/// breaks the line rather than drawing across it.
fn runs(pts: &[Option<(f64, f64)>]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for p in pts {
        match p {
            Some((x, y)) => cur.push_str(&format!("{x:.1},{y:.1} ")),
            None if !cur.is_empty() => out.push(std::mem::take(&mut cur)),
            None => {}
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A chart of one ratio per day with its threshold line. Days on the wrong
/// side of the threshold are drawn in the failing colour; every point has
/// a tooltip with its date and value.
pub fn daily_chart(
    title: &str,
    days: &[(NaiveDate, Option<f64>)],
    threshold: f64,
    cmp: Cmp,
) -> String {
    let (w, h) = (760.0, 220.0);
    let (left, right, top, bottom) = (64.0, 92.0, 14.0, 30.0);
    let values: Vec<Option<f64>> = days.iter().map(|d| d.1).collect();
    let (lo, hi) = range(&values, threshold);
    let n = days.len().max(2) as f64;
    let x = |i: usize| left + (w - left - right) * i as f64 / (n - 1.0);
    let y = |v: f64| top + (h - top - bottom) * (hi - v) / (hi - lo);
    let pts: Vec<Option<(f64, f64)>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| v.map(|v| (x(i), y(v))))
        .collect();
    let mut s = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">\n",
        esc(title)
    );
    // Frame and the 100 % line.
    s.push_str(&format!(
        "<rect x=\"{left}\" y=\"{top}\" width=\"{}\" height=\"{}\" class=\"frame\"/>\n",
        w - left - right,
        h - top - bottom
    ));
    // The axis at 100 % and at the chart's bottom edge.
    for v in [1.0, lo] {
        let label = numfmt::pct(v);
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{} %</text>\n",
            left - 6.0,
            y(v) + 4.0,
            label.trim_end_matches('0').trim_end_matches('.')
        ));
    }
    // The threshold line.
    let ty = y(threshold);
    s.push_str(&format!(
        "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\" class=\"threshold\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" class=\"threshold-label\">{} {} %</text>\n",
        w - right,
        w - right + 6.0,
        ty + 4.0,
        cmp.symbol(),
        numfmt::threshold_pct(threshold)
    ));
    for r in runs(&pts) {
        s.push_str(&format!(
            "<polyline points=\"{}\" class=\"series\"/>\n",
            r.trim_end()
        ));
    }
    for (i, (d, v)) in days.iter().enumerate() {
        let Some(v) = v else { continue };
        let pass = cmp.holds(*v, threshold);
        s.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" class=\"{}\"><title>{}: {} %</title></circle>\n",
            x(i),
            y(*v),
            if pass { "pt" } else { "pt fail" },
            d.format("%Y-%m-%d"),
            numfmt::pct_vs(*v, threshold, cmp)
        ));
    }
    // Date labels: first, middle and last day.
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        let mid = days.len() / 2;
        for (i, d, anchor) in [
            (0, first.0, "start"),
            (mid, days[mid].0, "middle"),
            (days.len() - 1, last.0, "end"),
        ] {
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"{anchor}\">{}</text>\n",
                x(i),
                h - 10.0,
                d.format("%Y-%m-%d")
            ));
        }
    }
    s.push_str("</svg>\n");
    s
}

/// A small line of daily values with the threshold as a dashed line, for a
/// table cell. Failing days are marked with a dot.
pub fn sparkline(label: &str, values: &[Option<f64>], threshold: f64, cmp: Cmp) -> String {
    let (w, h) = (120.0, 26.0);
    let (lo, hi) = range(values, threshold);
    let n = values.len().max(2) as f64;
    let x = |i: usize| 2.0 + (w - 4.0) * i as f64 / (n - 1.0);
    let y = |v: f64| 2.0 + (h - 4.0) * (hi - v) / (hi - lo);
    let pts: Vec<Option<(f64, f64)>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| v.map(|v| (x(i), y(v))))
        .collect();
    let ty = y(threshold);
    let mut s = format!(
        "<svg class=\"spark\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">\
         <line x1=\"0\" x2=\"{w}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\" class=\"threshold\"/>",
        esc(label)
    );
    for r in runs(&pts) {
        s.push_str(&format!(
            "<polyline points=\"{}\" class=\"series\"/>",
            r.trim_end()
        ));
    }
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v.filter(|v| !cmp.holds(*v, threshold)) {
            s.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.8\" class=\"pt fail\"/>",
                x(i),
                y(v)
            ));
        }
    }
    s.push_str("</svg>");
    s
}
