//! The page `/` of the daemon: every scope, its status, each criterion
//! against its threshold, a sparkline of daily availability, budgets and
//! recovery dates, with a link to each connector's evidence pack. One
//! self-contained HTML5 document that fits a 1400 px window.

use crate::config::Config;
use crate::engine::criteria::Status;
use crate::engine::measure::ScopeReport;
use crate::engine::timeutil;
use crate::render::evidence::threshold;
use crate::render::numfmt::{self, Cmp};
use crate::render::svg::{self, esc};
use crate::report::Report;

const STYLE: &str = "\
body { font: 13px/1.35 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 14px 16px; color: #1d1d1f; }
h1 { font-size: 1.5em; margin: 0 0 .3em; }
p.lead { margin: 0 0 1em; color: #444; max-width: 1100px; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: .3em .4em; border-bottom: 1px solid #e3e3e3; text-align: left; vertical-align: top; }
th { background: #f3f3f3; font-weight: 600; }
th small { font-weight: 400; }
td.conn { overflow-wrap: anywhere; min-width: 10em; }
td.num, td.ratio { font-variant-numeric: tabular-nums; white-space: nowrap; }
small { display: block; color: #666; font-size: .85em; font-weight: 400; }
.nw { white-space: nowrap; }
.pass { color: #137333; } .fail { color: #b3261e; font-weight: 600; } .undecided { color: #8a5a00; } .rec { color: #8a5a00; }
td.status { font-weight: 700; }
.ga { background: #e6f4ea; } .exc { background: #e8f0fe; } .no { background: #fce8e6; } .insuf { background: #fef7e0; }
svg.spark { display: block; }
svg .threshold { stroke: #c5221f; stroke-width: 1; stroke-dasharray: 3 2; }
svg .series { fill: none; stroke: #1a73e8; stroke-width: 1.4; }
svg .pt.fail { fill: #c5221f; }
a { color: #1a5fc8; }
";

fn mark(pass: Option<bool>) -> (&'static str, &'static str) {
    match pass {
        Some(true) => ("pass", "✓"),
        Some(false) => ("fail", "✗"),
        None => ("undecided", "?"),
    }
}

/// A ratio cell: the value by the digit rule of [`numfmt`] and its mark,
/// the threshold, and the budget line under it.
fn ratio_cell(v: Option<f64>, t: f64, cmp: Cmp, pass: Option<bool>, budget: String) -> String {
    let (class, m) = mark(pass);
    let value = v.map_or("–".to_string(), |v| {
        format!("{} %", numfmt::pct_vs(v, t, cmp))
    });
    format!(
        "<td class=\"ratio {class}\">{value} {m}<small>{}</small></td>",
        esc(&budget)
    )
}

/// "12 left", or the recovery date of a failing criterion.
fn budget_line(
    left: Option<u64>,
    recovers: Option<chrono::NaiveDate>,
    pass: Option<bool>,
    what: &str,
) -> String {
    match (pass, left, recovers) {
        (Some(false), _, Some(d)) => format!("recovers {}", d.format("%Y-%m-%d")),
        (Some(false), _, None) => "no recovery in window".into(),
        (None, _, _) => "undecided".into(),
        (Some(true), Some(n), _) => format!("{} {what} left", numfmt::int(n)),
        _ => "".into(),
    }
}

fn row(s: &ScopeReport, cfg: &Config) -> String {
    let k = &cfg.criteria;
    let m = &s.measures;
    let w = m.criteria();
    let c = &s.verdict.criteria;
    let b = &s.budget;
    let st = s.verdict.status;
    let st_class = match st {
        Status::GaEligible => "ga",
        Status::GaEligibleByException => "exc",
        Status::NotEligible => "no",
        Status::InsufficientData => "insuf",
    };
    let daily: Vec<Option<f64>> = s
        .daily
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|r| r.availability)
        .collect();
    let spark = svg::sparkline(
        &format!(
            "daily availability of {} ({})",
            m.connector,
            m.cloud_label()
        ),
        &daily,
        k.availability,
        Cmp::AtLeast,
    );
    // Recommended criteria: amber when missed, as they do not block GA.
    let rec = |b: bool| if b { "pass" } else { "rec" };
    let (wau_c, mac_c) = (
        rec(c.weekly_active_users),
        rec(c.monthly_active_connections),
    );
    let (exc_c, exc_m) = mark(c.exception);
    let yes = |b: bool| {
        if b {
            "<span class=\"pass\">✓</span>"
        } else {
            "<span class=\"fail\">✗</span>"
        }
    };
    // A break opportunity keeps the status column narrow.
    let status_text = st.as_str().replace("_by_", "_<wbr>by_");
    let opens = s
        .exception_opens_on
        .map_or(String::new(), |d| format!("opens {}", d.format("%Y-%m-%d")));
    format!(
        "<tr data-connector=\"{conn}\" data-cloud=\"{cloud}\" data-status=\"{status}\">\
         <td class=\"conn\"><a href=\"/connectors/{conn}\">{conn}</a></td><td>{cloud}</td>\
         <td class=\"status {st_class}\">{status_text}</td><td class=\"num\">{elig}</td>{avail}<td>{spark}</td>{slo}{succ}\
         <td class=\"num {wau_c}\">{w0} / {w1} / {w2}</td>\
         <td class=\"num {mac_c}\">{mac}</td>\
         <td><span class=\"nw\">backend {bip}</span> <span class=\"nw\">support {sup}</span></td>\
         <td class=\"{exc_c}\">{exc_m}<small class=\"nw\">{opens}</small></td></tr>\n",
        conn = esc(&m.connector),
        cloud = m.cloud_label(),
        status = st.as_str(),
        elig = numfmt::int(w.counts.eligible()),
        avail = ratio_cell(
            w.availability,
            k.availability,
            Cmp::AtLeast,
            c.availability,
            budget_line(b.availability.left, b.availability.recovers_on, c.availability, "failures"),
        ),
        slo = ratio_cell(
            w.slo,
            k.slo,
            Cmp::AtLeast,
            c.slo,
            budget_line(b.slo.left, b.slo.recovers_on, c.slo, "connections"),
        ),
        succ = ratio_cell(
            w.success_rate,
            k.success_rate,
            Cmp::Above,
            c.success_rate,
            budget_line(b.success_rate.left, b.success_rate.recovers_on, c.success_rate, "failures"),
        ),
        w0 = numfmt::int(m.weekly_active_users[0]),
        w1 = numfmt::int(m.weekly_active_users[1]),
        w2 = numfmt::int(m.weekly_active_users[2]),
        mac = numfmt::int(m.monthly_active_connections),
        bip = yes(c.backend_in_production),
        sup = yes(c.support_model),
    )
}

/// The page `/` for a report built with the `daily` series.
pub fn render(r: &Report, cfg: &Config) -> String {
    let k = &cfg.criteria;
    let rows: String = r.scopes.iter().map(|s| row(s, cfg)).collect();
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>connector-ga-exporter</title>
<style>
{STYLE}</style></head><body>
<h1>Connector GA criteria</h1>
<p class="lead">At {now} over the last {days} days. Required: availability, SLO, success rate, backend in production, support model;
recommended: weekly active users (3 weeks) and monthly active connections. {nscopes} scopes, {rejected} events rejected.
Under each measured value: the room left before it fails, or the day it recovers with no new event.
Click a connector for its evidence pack. Refreshes every 10 s. <a href="/metrics">metrics</a> · <a href="/api/v1/criteria">JSON</a></p>
<table><thead><tr><th scope="col">connector</th><th scope="col">cloud</th><th scope="col">status</th><th scope="col">eligible</th>
<th scope="col">availability<small>{t_avail}</small></th><th scope="col">daily availability<small>{days} days</small></th>
<th scope="col">SLO<small>{t_slo}</small></th><th scope="col">success rate<small>{t_succ}</small></th>
<th scope="col">weekly users<small>w0 / w1 / w2, ≥ {t_wau} each</small></th><th scope="col">MAC<small>≥ {t_mac}</small></th>
<th scope="col">attested</th><th scope="col">exception</th></tr></thead>
<tbody>
{rows}</tbody></table></body></html>
"#,
        now = timeutil::format_micros(r.now),
        days = r.criteria_window_days,
        nscopes = r.scopes.len(),
        rejected = numfmt::int(r.rejected.total()),
        t_avail = esc(&threshold(k.availability, Cmp::AtLeast)),
        t_slo = esc(&threshold(k.slo, Cmp::AtLeast)),
        t_succ = esc(&threshold(k.success_rate, Cmp::Above)),
        t_wau = numfmt::int(k.weekly_active_users),
        t_mac = numfmt::int(k.monthly_active_connections),
    )
}
