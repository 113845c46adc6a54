//! The evidence pack as one self-contained HTML5 document: inline CSS and
//! SVG charts, no script, no external asset, so it can be mailed or
//! attached as a single file and printed.

use super::{packs, scope_name, EvidenceError, Pack, Provenance, Table, Tone};
use crate::config::Config;
use crate::render::numfmt::Cmp;
use crate::render::svg::{self, esc};
use crate::report::Report;

/// The page style: a document, readable on screen and on paper.
pub(crate) const STYLE: &str = "\
body { font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #1d1d1f; margin: 0; background: #fafafa; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 1.7em; margin: .2em 0 .4em; }
h2 { font-size: 1.3em; margin: 1.8em 0 .4em; padding-top: .6em; border-top: 1px solid #ddd; }
h3 { font-size: 1.05em; margin: 1.4em 0 .4em; color: #444; }
p.verdict { font-size: 1.15em; padding: .7em 1em; border-radius: 6px; border-left: 6px solid; }
.v-ga_eligible { background: #e6f4ea; border-color: #1e8e3e; }
.v-ga_eligible_by_exception { background: #e8f0fe; border-color: #1a73e8; }
.v-not_eligible { background: #fce8e6; border-color: #c5221f; }
.v-insufficient_data { background: #fef7e0; border-color: #e37400; }
table { border-collapse: collapse; margin: .4em 0 1em; font-size: .92em; }
th, td { padding: .3em .7em; border-bottom: 1px solid #e3e3e3; text-align: left; vertical-align: top; }
th { background: #f3f3f3; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.pass, td.fail, td.undecided { white-space: nowrap; }
.pass { color: #137333; } .fail { color: #b3261e; font-weight: 600; } .undecided { color: #8a5a00; }
ul.why { margin: .3em 0 1em; padding-left: 1.3em; }
code { font-size: .95em; }
nav ul { columns: 3; }
svg.chart { width: 100%; max-width: 760px; height: auto; display: block; margin: .3em 0 1em; }
svg .frame { fill: #fcfcfc; stroke: #ccc; }
svg .axis { font-size: 11px; fill: #555; }
svg .threshold { stroke: #c5221f; stroke-width: 1.2; stroke-dasharray: 5 3; }
svg .threshold-label { font-size: 11px; fill: #c5221f; }
svg .series { fill: none; stroke: #1a73e8; stroke-width: 1.6; }
svg .pt { fill: #1a73e8; } svg .pt.fail { fill: #c5221f; }
p.chart-title { margin: .8em 0 0; font-weight: 600; color: #444; }
details { margin: .2em 0 1em; } summary { cursor: pointer; color: #1a73e8; }
footer { margin-top: 2em; color: #666; font-size: .9em; }
@media print { body { background: #fff; } main { padding: 0; } details { display: block; } }
";

fn table(out: &mut String, t: &Table) {
    out.push_str("<table>\n<thead><tr>");
    for h in &t.head {
        out.push_str(&format!("<th scope=\"col\">{}</th>", esc(h)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for r in &t.rows {
        out.push_str("<tr>");
        for c in r {
            let class = match c.tone {
                Tone::Plain => "",
                Tone::Pass => " class=\"pass\"",
                Tone::Fail => " class=\"fail\"",
                Tone::Undecided => " class=\"undecided\"",
            };
            out.push_str(&format!("<td{class}>{}</td>", esc(&c.text)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

/// `report --format html` and `/connectors/<id>`: one document.
pub fn html(
    r: &Report,
    cfg: &Config,
    prov: &Provenance,
    only: Option<&str>,
) -> Result<String, EvidenceError> {
    let packs = packs(r, cfg, only)?;
    let title = match packs.as_slice() {
        [one] => format!("GA evidence pack: {}", one.connector),
        _ => "GA evidence packs".to_string(),
    };
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n",
        esc(&title)
    );
    if packs.len() > 1 {
        out.push_str("<h1>GA evidence packs</h1>\n<nav><ul>\n");
        for p in &packs {
            out.push_str(&format!(
                "<li><a href=\"#{id}\">{id}</a> ({})</li>\n",
                p.all().verdict.status.as_str(),
                id = esc(p.connector)
            ));
        }
        out.push_str("</ul></nav>\n");
    }
    if packs.is_empty() {
        out.push_str("<h1>GA evidence packs</h1>\n<p>No connector has events in retention.</p>\n");
    }
    for p in &packs {
        pack(&mut out, p, prov, packs.len() > 1);
    }
    out.push_str("</main>\n</body>\n</html>\n");
    Ok(out)
}

fn pack(out: &mut String, p: &Pack<'_>, prov: &Provenance, several: bool) {
    let (from, to) = p.window();
    let all = p.all();
    let (h1, h2, h3) = if several {
        ("h2", "h3", "h4")
    } else {
        ("h1", "h2", "h3")
    };
    out.push_str(&format!(
        "<section id=\"{id}\">\n<{h1}>GA evidence pack: {id}</{h1}>\n\
         <p class=\"verdict v-{st}\"><strong>{}</strong></p>\n\
         <p>Criteria window: {} days, {} – {} (UTC), evaluated at {}.</p>\n",
        esc(&p.headline(all)),
        p.window_days,
        super::date(from),
        super::date(to),
        crate::engine::timeutil::format_micros(p.now),
        id = esc(p.connector),
        st = all.verdict.status.as_str(),
    ));
    if p.scopes.len() > 1 {
        out.push_str(
            "<table>\n<thead><tr><th scope=\"col\">scope</th><th scope=\"col\">status</th>\
             <th scope=\"col\">failing</th></tr></thead>\n<tbody>\n",
        );
        for s in &p.scopes {
            out.push_str(&format!(
                "<tr><td><a href=\"#{id}-{c}\">{}</a></td><td>{}</td><td>{}</td></tr>\n",
                esc(&scope_name(s)),
                s.verdict.status.as_str(),
                if s.failing.is_empty() {
                    "–".to_string()
                } else {
                    s.failing.join(", ")
                },
                id = esc(p.connector),
                c = s.measures.cloud_label()
            ));
        }
        out.push_str("</tbody></table>\n");
    }
    let k = &p.cfg.criteria;
    for s in &p.scopes {
        out.push_str(&format!(
            "<{h2} id=\"{id}-{c}\">{id} ({})</{h2}>\n<p class=\"verdict v-{st}\">Status \
             <code>{st}</code>. {}</p>\n<ul class=\"why\">\n",
            esc(&scope_name(s)),
            // The `all` scope's headline is the document's first line.
            if s.measures.cloud.is_none() {
                String::new()
            } else {
                esc(&p.headline(s))
            },
            id = esc(p.connector),
            c = s.measures.cloud_label(),
            st = s.verdict.status.as_str(),
        ));
        for line in p.why(s) {
            out.push_str(&format!("<li>{}</li>\n", esc(&line)));
        }
        out.push_str("</ul>\n");
        out.push_str(&format!("<{h3}>Criteria</{h3}>\n"));
        table(out, &p.criteria_table(s));
        out.push_str(&format!(
            "<{h3}>Budgets and recovery</{h3}>\n<p>Room left before a passing criterion \
             fails; for a failing one, the first day it passes again if no further event \
             arrives. The exception opens on <strong>{}</strong>.</p>\n",
            s.exception_opens_on
                .map_or("no date (no preview_since attested)".into(), super::date)
        ));
        table(out, &p.budget_table(s));
        out.push_str(&format!(
            "<{h3}>Daily availability and success rate</{h3}>\n"
        ));
        let rows = s.daily.as_deref().unwrap_or_default();
        let avail: Vec<_> = rows.iter().map(|r| (r.date, r.availability)).collect();
        let succ: Vec<_> = rows.iter().map(|r| (r.date, r.success_rate)).collect();
        out.push_str(&format!(
            "<p class=\"chart-title\">Availability per day, threshold {}</p>\n",
            esc(&super::threshold(k.availability, Cmp::AtLeast))
        ));
        out.push_str(&svg::daily_chart(
            &format!("daily availability of {} ({})", p.connector, scope_name(s)),
            &avail,
            k.availability,
            Cmp::AtLeast,
        ));
        out.push_str(&format!(
            "<p class=\"chart-title\">Success rate per day, threshold {}</p>\n",
            esc(&super::threshold(k.success_rate, Cmp::Above))
        ));
        out.push_str(&svg::daily_chart(
            &format!("daily success rate of {} ({})", p.connector, scope_name(s)),
            &succ,
            k.success_rate,
            Cmp::Above,
        ));
        out.push_str("<details><summary>The numbers, day by day</summary>\n");
        table(out, &p.daily_table(s));
        out.push_str("</details>\n");
        out.push_str(&format!("<{h3}>Weekly active users and MAC</{h3}>\n"));
        table(out, &p.adoption_table(s));
    }
    out.push_str(&format!(
        "<{h2}>Attested facts</{h2}>\n<p>{}</p>\n",
        esc(&p.attested_source(prov))
    ));
    table(out, &p.attested_table());
    out.push_str(&format!("<{h2}>Thresholds in force</{h2}>\n"));
    table(out, &p.thresholds_table());
    out.push_str(&format!("<{h2}>Made from</{h2}>\n"));
    table(out, &p.provenance_table(prov));
    out.push_str("</section>\n");
}
