//! The evidence pack of SPEC §11: per connector, the document its owner
//! attaches to a GA request. This module decides *what* the document says
//! (sentences, tables, series) from a [`Report`]; `markdown` and `html`
//! only lay it out, so the two formats can never disagree.

mod html;
mod markdown;
mod tables;

use chrono::NaiveDate;

use crate::config::Config;
use crate::engine::criteria::Status;
use crate::engine::measure::ScopeReport;
use crate::engine::timeutil::{date_of_day, day_of, Micros};
use crate::render::numfmt::{self, Cmp};
use crate::report::Report;

pub use html::html;
pub use markdown::markdown;

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("no connector {0:?} in the report (connectors: {1})")]
    UnknownConnector(String, String),
}

/// Where and when a pack was made: printed at its end.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// The events it was computed from: a file, or the daemon's topics.
    pub input: String,
    /// The config file, `None` for the built-in defaults.
    pub config: Option<String>,
    /// When the document was made (wall clock).
    pub made_at: Micros,
}

/// The connectors of a report, in its order.
pub fn connectors(r: &Report) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for s in &r.scopes {
        if out.last() != Some(&s.measures.connector.as_str()) {
            out.push(&s.measures.connector);
        }
    }
    out
}

/// The scopes of one connector (`all` first), or of every connector.
fn select<'r>(
    r: &'r Report,
    only: Option<&str>,
) -> Result<Vec<Vec<&'r ScopeReport>>, EvidenceError> {
    let mut groups: Vec<Vec<&ScopeReport>> = Vec::new();
    for s in &r.scopes {
        if only.is_some_and(|c| c != s.measures.connector) {
            continue;
        }
        match groups.last_mut() {
            Some(g) if g[0].measures.connector == s.measures.connector => g.push(s),
            _ => groups.push(vec![s]),
        }
    }
    match only {
        Some(c) if groups.is_empty() => Err(EvidenceError::UnknownConnector(
            c.to_string(),
            connectors(r).join(", "),
        )),
        _ => Ok(groups),
    }
}

/// How a table cell reads: the HTML colours it, Markdown shows the words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tone {
    Plain,
    Pass,
    Fail,
    Undecided,
}

#[derive(Debug, Clone)]
pub(crate) struct Cell {
    pub text: String,
    pub tone: Tone,
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell {
            text,
            tone: Tone::Plain,
        }
    }
}
impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::from(text.to_string())
    }
}

fn result_cell(v: Option<bool>) -> Cell {
    match v {
        Some(true) => Cell {
            text: "✓ pass".into(),
            tone: Tone::Pass,
        },
        Some(false) => Cell {
            text: "✗ fail".into(),
            tone: Tone::Fail,
        },
        None => Cell {
            text: "? undecided".into(),
            tone: Tone::Undecided,
        },
    }
}

pub(crate) struct Table {
    pub head: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

pub(crate) fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// A percentage by the digit rule of [`numfmt`], with its sign.
pub(crate) fn pct_vs(v: Option<f64>, t: f64, cmp: Cmp) -> String {
    v.map_or("–".into(), |v| format!("{} %", numfmt::pct_vs(v, t, cmp)))
}

pub(crate) fn threshold(t: f64, cmp: Cmp) -> String {
    format!("{} {} %", cmp.symbol(), numfmt::threshold_pct(t))
}

/// The pack of one connector, as data both layouts read.
pub(crate) struct Pack<'a> {
    pub connector: &'a str,
    pub scopes: Vec<&'a ScopeReport>,
    pub cfg: &'a Config,
    pub now: Micros,
    pub window_days: u32,
}

impl<'a> Pack<'a> {
    pub fn all(&self) -> &'a ScopeReport {
        self.scopes[0]
    }

    /// First and last day of the criteria window.
    pub fn window(&self) -> (NaiveDate, NaiveDate) {
        let d = day_of(self.now);
        (date_of_day(d - self.window_days as i32 + 1), date_of_day(d))
    }

    fn window_text(&self, days: i32) -> String {
        let d = day_of(self.now);
        format!(
            "{days} days, {} – {}",
            date(date_of_day(d - days + 1)),
            date(date_of_day(d))
        )
    }

    /// The verdict in one sentence.
    pub fn headline(&self, s: &ScopeReport) -> String {
        let who = format!("{} ({})", self.connector, scope_name(s));
        match s.verdict.status {
            Status::GaEligible => format!("{who} is GA-eligible: every required criterion passes."),
            Status::GaEligibleByException => format!(
                "{who} is GA-eligible by exception: it has been in preview long enough and meets \
                 every required criterion, with the exception's lower success-rate bar."
            ),
            Status::NotEligible => format!(
                "{who} is not GA-eligible: {} {}.",
                names(&s.failing),
                if s.failing.len() == 1 {
                    "fails"
                } else {
                    "fail"
                }
            ),
            Status::InsufficientData => {
                format!("{who} cannot be judged yet: there is not enough traffic in the window.")
            }
        }
    }

    /// Why: the facts behind the headline, one sentence each.
    pub fn why(&self, s: &ScopeReport) -> Vec<String> {
        let k = &self.cfg.criteria;
        let w = s.measures.criteria();
        let c = &s.verdict.criteria;
        let mut out = Vec::new();
        let eligible = w.counts.eligible();
        if eligible < k.min_eligible_requests {
            out.push(format!(
                "Only {} eligible requests in the {}-day window; the measured criteria are \
                 decided from {}.",
                numfmt::int(eligible),
                self.window_days,
                numfmt::int(k.min_eligible_requests)
            ));
        }
        for (name, v, val, t, cmp) in [
            (
                "availability",
                c.availability,
                w.availability,
                k.availability,
                Cmp::AtLeast,
            ),
            ("SLO", c.slo, w.slo, k.slo, Cmp::AtLeast),
            (
                "success rate",
                c.success_rate,
                w.success_rate,
                k.success_rate,
                Cmp::Above,
            ),
        ] {
            match (v, val) {
                (Some(false), _) => out.push(format!(
                    "The {name} is {}, and must be {}.",
                    pct_vs(val, t, cmp),
                    threshold(t, cmp)
                )),
                (_, None) if eligible >= k.min_eligible_requests => {
                    out.push(format!("The {name} is undefined: nothing to divide by."))
                }
                _ => {}
            }
        }
        if !c.backend_in_production {
            out.push(format!(
                "The backend is not attested as in production in [connectors.{}].",
                self.connector
            ));
        }
        if !c.support_model {
            out.push(format!(
                "The support model is not attested in [connectors.{}].",
                self.connector
            ));
        }
        out.push(self.exception_sentence(s));
        out
    }

    fn exception_sentence(&self, s: &ScopeReport) -> String {
        let k = &self.cfg.criteria;
        let w = s.measures.criteria();
        let today = date_of_day(day_of(self.now));
        let opens = match s.exception_opens_on {
            None => format!(
                "no preview_since is attested, so the exception ({} months in preview) cannot open",
                k.exception_preview_months
            ),
            Some(d) if d <= today => format!("the exception opened on {}", date(d)),
            Some(d) => format!("the exception opens on {}", date(d)),
        };
        let rule = format!(
            "it needs every other required criterion and a success rate {} (now {})",
            threshold(k.exception_success_rate, Cmp::AtLeast),
            pct_vs(w.success_rate, k.exception_success_rate, Cmp::AtLeast)
        );
        match s.verdict.criteria.exception {
            Some(true) => format!("Exception: {opens}, and it passes: {rule}."),
            Some(false) => format!("Exception: {opens}; it does not pass: {rule}."),
            None => format!("Exception: {opens}; undecided while a measured criterion is."),
        }
    }
}

/// "all clouds", or the cloud's name.
pub(crate) fn scope_name(s: &ScopeReport) -> String {
    match s.measures.cloud {
        None => "all clouds".into(),
        Some(c) => format!("cloud {}", c.as_str()),
    }
}

/// Criterion keys as words: "availability and success rate".
fn names(keys: &[&str]) -> String {
    let words: Vec<&str> = keys
        .iter()
        .map(|k| match *k {
            "backend_in_production" => "backend in production",
            "success_rate" => "success rate",
            "slo" => "SLO",
            "support_model" => "support model",
            other => other,
        })
        .collect();
    match words.as_slice() {
        [] => "no required criterion".into(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The packs of a report: one connector, or all of them.
pub(crate) fn packs<'r>(
    r: &'r Report,
    cfg: &'r Config,
    only: Option<&str>,
) -> Result<Vec<Pack<'r>>, EvidenceError> {
    Ok(select(r, only)?
        .into_iter()
        .map(|scopes| Pack {
            connector: &scopes[0].measures.connector,
            scopes,
            cfg,
            now: r.now,
            window_days: r.criteria_window_days,
        })
        .collect())
}
