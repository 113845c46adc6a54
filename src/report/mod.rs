//! The report document of SPEC §8 (JSON and a table for people); the
//! `report` command that makes one from a file is in `file` (its input
//! side in `input`).

mod file;
mod input;
mod json;

pub use file::{report_file, report_file_with};
pub use json::Doc;

use std::path::PathBuf;

use serde_json::Value;

use crate::config::Config;
use crate::engine::event::{Reject, RejectCounts};
use crate::engine::measure::{self, ScopeReport};
use crate::engine::state::{Engine, Params};
use crate::engine::timeutil::{self, Micros};
use crate::render::numfmt::{self, Cmp};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read {path}: {error}")]
    Input {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// The whole report at one `now`.
#[derive(Debug, Clone)]
pub struct Report {
    pub now: Micros,
    pub criteria_window_days: u32,
    pub rejected: RejectCounts,
    pub scopes: Vec<ScopeReport>,
    /// The daemon's share of the consumer group (SPEC §12); `None` for
    /// the `report` command, which sees everything.
    pub membership: Option<Membership>,
}

/// Which tasks (aggregated partitions) a member's report covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// (topic, partition) of every owned task that aggregates, sorted.
    pub tasks: Vec<(String, i32)>,
    /// With a re-key stage: the input partitions this member reads and
    /// re-keys (where their rejections are counted), maybe none; `None`
    /// without a re-key stage.
    pub read_tasks: Option<Vec<(String, i32)>>,
    /// True when the member owns fewer than all the group's tasks.
    pub partial: bool,
}

impl Report {
    /// The report over some engines at `now` (a connector held by several
    /// is merged first, so each scope appears once).
    pub fn build(engines: &[&Engine], cfg: &Config, now: Micros, rejected: RejectCounts) -> Report {
        Report::build_with(engines, cfg, now, rejected, false)
    }

    /// [`Report::build`], with every scope's `daily` series when `daily`
    /// (`report --daily`, `?daily=true`).
    pub fn build_with(
        engines: &[&Engine],
        cfg: &Config,
        now: Micros,
        rejected: RejectCounts,
        daily: bool,
    ) -> Report {
        let params = Params::from_config(cfg);
        Report {
            now,
            criteria_window_days: cfg.criteria.window_days,
            rejected,
            scopes: measure::measure_engines(engines, cfg, now, daily, &params),
            membership: None,
        }
    }

    /// The JSON document of SPEC §8 and §11 (every key always present,
    /// `daily` when the report was built with it), to serialize.
    pub fn doc(&self) -> Doc<'_> {
        Doc::of(self)
    }

    /// [`Report::doc`] as a `serde_json::Value`, to read fields from.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.doc()).expect("the report document serializes")
    }

    /// One row per scope: status, and each criterion as value vs threshold,
    /// failures marked with `✗`, undecided with `?`.
    pub fn to_table(&self, cfg: &Config) -> String {
        let k = &cfg.criteria;
        let mut rows: Vec<Vec<String>> = vec![vec![
            "CONNECTOR".into(),
            "CLOUD".into(),
            "STATUS".into(),
            "ELIGIBLE".into(),
            format!("AVAIL(>={}%)", numfmt::threshold_pct(k.availability)),
            format!("SLO(>={}%)", numfmt::threshold_pct(k.slo)),
            format!("SUCCESS(>{}%)", numfmt::threshold_pct(k.success_rate)),
            format!("WAU(>={} x3)", k.weekly_active_users),
            format!("MAC(>={})", k.monthly_active_connections),
            "ATTESTED".into(),
            "EXCEPTION".into(),
        ]];
        for s in &self.scopes {
            let m = &s.measures;
            let w = m.criteria();
            let c = &s.verdict.criteria;
            let mark = |v: Option<bool>| match v {
                Some(true) => "✓",
                Some(false) => "✗",
                None => "?",
            };
            // Percent with enough digits that a failing value never reads
            // as its threshold (issue 10 item 10; see `numfmt`).
            let ratio = |r: Option<f64>, t: f64, cmp: Cmp, pass: Option<bool>| match r {
                Some(r) => format!("{}% {}", numfmt::pct_vs(r, t, cmp), mark(pass)),
                None => "- ?".into(),
            };
            rows.push(vec![
                m.connector.clone(),
                m.cloud_label().into(),
                s.verdict.status.as_str().into(),
                w.counts.eligible().to_string(),
                ratio(w.availability, k.availability, Cmp::AtLeast, c.availability),
                ratio(w.slo, k.slo, Cmp::AtLeast, c.slo),
                ratio(w.success_rate, k.success_rate, Cmp::Above, c.success_rate),
                format!(
                    "{}/{}/{} {}",
                    m.weekly_active_users[0],
                    m.weekly_active_users[1],
                    m.weekly_active_users[2],
                    mark(Some(c.weekly_active_users))
                ),
                format!(
                    "{} {}",
                    m.monthly_active_connections,
                    mark(Some(c.monthly_active_connections))
                ),
                format!(
                    "backend {} support {}",
                    mark(Some(c.backend_in_production)),
                    mark(Some(c.support_model))
                ),
                mark(c.exception).into(),
            ]);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = format!(
            "now {}  criteria window {} days\n",
            timeutil::format_micros(self.now),
            self.criteria_window_days
        );
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        if self.rejected.total() > 0 {
            let parts: Vec<String> = Reject::ALL
                .iter()
                .filter(|r| self.rejected.get(**r) > 0)
                .map(|r| format!("{} {}", r.as_str(), self.rejected.get(*r)))
                .collect();
            out.push_str(&format!("rejected: {}\n", parts.join(", ")));
        }
        out
    }
}
