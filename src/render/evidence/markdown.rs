//! The evidence pack as Markdown (GitHub-flavoured tables): for a GA
//! request's text, a ticket or a wiki.

use super::{packs, scope_name, EvidenceError, Pack, Provenance, Table};
use crate::report::Report;

/// `report --format markdown`: one section per connector.
pub fn markdown(
    r: &Report,
    cfg: &crate::config::Config,
    prov: &Provenance,
    only: Option<&str>,
) -> Result<String, EvidenceError> {
    let mut out = String::new();
    for (i, p) in packs(r, cfg, only)?.iter().enumerate() {
        if i > 0 {
            out.push_str("\n---\n\n");
        }
        pack(&mut out, p, prov);
    }
    Ok(out)
}

/// A cell's text: `|` would end the cell, a newline the row.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn table(out: &mut String, t: &Table) {
    let head: Vec<String> = t.head.iter().map(|h| cell(h)).collect();
    out.push_str(&format!("| {} |\n", head.join(" | ")));
    out.push_str(&format!("|{}\n", "---|".repeat(t.head.len())));
    for r in &t.rows {
        let cells: Vec<String> = r.iter().map(|c| cell(&c.text)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push('\n');
}

fn pack(out: &mut String, p: &Pack<'_>, prov: &Provenance) {
    let (from, to) = p.window();
    out.push_str(&format!("# GA evidence pack: {}\n\n", p.connector));
    out.push_str(&format!("**{}**\n\n", p.headline(p.all())));
    out.push_str(&format!(
        "Criteria window: {} days, {} – {} (UTC), evaluated at {}.\n\n",
        p.window_days,
        super::date(from),
        super::date(to),
        crate::engine::timeutil::format_micros(p.now)
    ));
    for s in &p.scopes {
        out.push_str(&format!("## {} ({})\n\n", p.connector, scope_name(s)));
        out.push_str(&format!(
            "Status: `{}`. {}\n\n",
            s.verdict.status.as_str(),
            p.headline(s)
        ));
        for line in p.why(s) {
            out.push_str(&format!("- {line}\n"));
        }
        out.push('\n');
        out.push_str("### Criteria\n\n");
        table(out, &p.criteria_table(s));
        out.push_str("### Budgets and recovery\n\n");
        out.push_str(
            "Room left before a passing criterion fails; for a failing one, the first day it \
             passes again if no further event arrives.\n\n",
        );
        table(out, &p.budget_table(s));
        out.push_str(&format!(
            "Exception opens on: {}.\n\n",
            s.exception_opens_on
                .map_or("never (no preview_since attested)".into(), super::date)
        ));
        out.push_str("### Daily availability and success rate\n\n");
        table(out, &p.daily_table(s));
        out.push_str("### Weekly active users and MAC\n\n");
        table(out, &p.adoption_table(s));
    }
    out.push_str("## Attested facts\n\n");
    out.push_str(&format!("{}\n\n", p.attested_source(prov)));
    table(out, &p.attested_table());
    out.push_str("## Thresholds in force\n\n");
    table(out, &p.thresholds_table());
    out.push_str("## Made from\n\n");
    table(out, &p.provenance_table(prov));
}
