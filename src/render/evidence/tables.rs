//! The tables of the evidence pack: each criterion with its formula and
//! window, budgets, the daily series, adoption, attested facts, thresholds
//! and provenance, as cells both layouts print.

use chrono::NaiveDate;

use super::{date, pct_vs, result_cell, threshold, Cell, Pack, Provenance, Table};
use crate::config::SuccessRateFormula;
use crate::engine::criteria::MAC_DAYS;
use crate::engine::measure::ScopeReport;
use crate::engine::timeutil::{self, date_of_day, day_of};
use crate::render::numfmt::{self, Cmp};

impl Pack<'_> {
    /// Each criterion against its threshold, with its formula and window.
    pub fn criteria_table(&self, s: &ScopeReport) -> Table {
        let k = &self.cfg.criteria;
        let w = s.measures.criteria();
        let n = &w.counts;
        let c = &s.verdict.criteria;
        let win = self.window_text(self.window_days as i32);
        let attested = format!("attested in [connectors.{}]", self.connector);
        let yes_no = |b: bool| if b { "true" } else { "false" }.to_string();
        let success_formula = match k.success_rate_formula {
            SuccessRateFormula::Ga => format!(
                "success / eligible = {} / {}",
                numfmt::int(n.success),
                numfmt::int(n.eligible())
            ),
            SuccessRateFormula::Isv => format!(
                "(success − failures) / eligible = ({} − {}) / {}",
                numfmt::int(n.success),
                numfmt::int(n.failures()),
                numfmt::int(n.eligible())
            ),
        };
        let d = day_of(self.now);
        let weeks = format!(
            "weeks 0, 1, 2: {} – {}",
            date(date_of_day(d - 20)),
            date(date_of_day(d))
        );
        let wau = s.measures.weekly_active_users;
        let row = |name: &str,
                   kind: &str,
                   value: String,
                   thr: String,
                   res: Option<bool>,
                   f: String,
                   win: String| {
            vec![
                Cell::from(name),
                Cell::from(kind),
                Cell::from(value),
                Cell::from(thr),
                result_cell(res),
                Cell::from(f),
                Cell::from(win),
            ]
        };
        let opens = s
            .exception_opens_on
            .map_or("no preview_since".into(), |d| format!("opens {}", date(d)));
        Table {
            head: vec!["criterion", "kind", "value", "threshold", "result", "formula", "window"],
            rows: vec![
                row(
                    "backend in production",
                    "required",
                    yes_no(c.backend_in_production),
                    "true".into(),
                    Some(c.backend_in_production),
                    attested.clone(),
                    "–".into(),
                ),
                row(
                    "availability",
                    "required",
                    pct_vs(w.availability, k.availability, Cmp::AtLeast),
                    threshold(k.availability, Cmp::AtLeast),
                    c.availability,
                    format!(
                        "1 − connector_failures / (eligible − backend_failures) = 1 − {} / ({} − {})",
                        numfmt::int(n.connector_failures),
                        numfmt::int(n.eligible()),
                        numfmt::int(n.backend_failures)
                    ),
                    win.clone(),
                ),
                row(
                    "SLO",
                    "required",
                    pct_vs(w.slo, k.slo, Cmp::AtLeast),
                    threshold(k.slo, Cmp::AtLeast),
                    c.slo,
                    format!(
                        "connections meeting the SLA ({}) / active connections = {} / {}",
                        threshold(k.sla_availability, Cmp::AtLeast),
                        numfmt::int(w.connections_meeting_sla),
                        numfmt::int(w.active_connections)
                    ),
                    win.clone(),
                ),
                row(
                    "success rate",
                    "required",
                    pct_vs(w.success_rate, k.success_rate, Cmp::Above),
                    threshold(k.success_rate, Cmp::Above),
                    c.success_rate,
                    success_formula,
                    win.clone(),
                ),
                row(
                    "support model",
                    "required",
                    yes_no(c.support_model),
                    "true".into(),
                    Some(c.support_model),
                    attested,
                    "–".into(),
                ),
                row(
                    "weekly active users",
                    "recommended",
                    format!(
                        "{} / {} / {}",
                        numfmt::int(wau[0]),
                        numfmt::int(wau[1]),
                        numfmt::int(wau[2])
                    ),
                    format!("≥ {} each week", numfmt::int(k.weekly_active_users)),
                    Some(c.weekly_active_users),
                    "distinct users per week".into(),
                    weeks,
                ),
                row(
                    "monthly active connections",
                    "recommended",
                    numfmt::int(s.measures.monthly_active_connections),
                    format!("≥ {}", numfmt::int(k.monthly_active_connections)),
                    Some(c.monthly_active_connections),
                    "distinct connections".into(),
                    self.window_text(MAC_DAYS),
                ),
                row(
                    "exception",
                    "alternative",
                    opens,
                    format!(
                        "{} months in preview, success rate {}",
                        k.exception_preview_months,
                        threshold(k.exception_success_rate, Cmp::AtLeast)
                    ),
                    c.exception,
                    "every other required criterion passes".into(),
                    win,
                ),
            ],
        }
    }

    /// Budgets and recovery dates of the measured criteria.
    pub fn budget_table(&self, s: &ScopeReport) -> Table {
        let c = &s.verdict.criteria;
        let b = &s.budget;
        let left = |v: Option<u64>, what: &str| match v {
            Some(n) => format!("{} {what}", numfmt::int(n)),
            None => "–".into(),
        };
        let rec = |d: Option<NaiveDate>, pass: Option<bool>| match (d, pass) {
            (Some(d), _) => date(d),
            (None, Some(false)) => "not within the window, with no new event".into(),
            (None, _) => "–".into(),
        };
        let row = |name: &str, pass: Option<bool>, l: String, r: String| {
            vec![
                Cell::from(name),
                result_cell(pass),
                Cell::from(l),
                Cell::from(r),
            ]
        };
        Table {
            head: vec!["criterion", "now", "room left", "recovers on"],
            rows: vec![
                row(
                    "availability",
                    c.availability,
                    left(b.availability.left, "more connector failures"),
                    rec(b.availability.recovers_on, c.availability),
                ),
                row(
                    "SLO",
                    c.slo,
                    left(b.slo.left, "more connections below the SLA"),
                    rec(b.slo.recovers_on, c.slo),
                ),
                row(
                    "success rate",
                    c.success_rate,
                    left(b.success_rate.left, "more failures"),
                    rec(b.success_rate.recovers_on, c.success_rate),
                ),
            ],
        }
    }

    /// One row per day of the criteria window (needs `daily`).
    pub fn daily_table(&self, s: &ScopeReport) -> Table {
        let k = &self.cfg.criteria;
        let rows = s
            .daily
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                vec![
                    Cell::from(date(r.date)),
                    Cell::from(numfmt::int(r.counts.requests)),
                    Cell::from(numfmt::int(r.counts.eligible())),
                    Cell::from(numfmt::int(r.counts.connector_failures)),
                    Cell::from(pct_vs(r.availability, k.availability, Cmp::AtLeast)),
                    Cell::from(pct_vs(r.success_rate, k.success_rate, Cmp::Above)),
                ]
            })
            .collect();
        Table {
            head: vec![
                "date",
                "requests",
                "eligible",
                "connector failures",
                "availability",
                "success rate",
            ],
            rows,
        }
    }

    /// Weekly active users per week, and MAC.
    pub fn adoption_table(&self, s: &ScopeReport) -> Table {
        let k = &self.cfg.criteria;
        let d = day_of(self.now);
        let mut rows: Vec<Vec<Cell>> = (0..3)
            .map(|i: i32| {
                let u = s.measures.weekly_active_users[i as usize];
                vec![
                    Cell::from(format!("users, week {i}")),
                    Cell::from(format!(
                        "{} – {}",
                        date(date_of_day(d - 7 * i - 6)),
                        date(date_of_day(d - 7 * i))
                    )),
                    Cell::from(numfmt::int(u)),
                    Cell::from(format!("≥ {} users", numfmt::int(k.weekly_active_users))),
                    result_cell(Some(u >= k.weekly_active_users)),
                ]
            })
            .collect();
        let mac = s.measures.monthly_active_connections;
        rows.push(vec![
            Cell::from("connections (MAC)"),
            Cell::from(format!(
                "{} – {}",
                date(date_of_day(d - MAC_DAYS + 1)),
                date(date_of_day(d))
            )),
            Cell::from(numfmt::int(mac)),
            Cell::from(format!(
                "≥ {} connections",
                numfmt::int(k.monthly_active_connections)
            )),
            result_cell(Some(mac >= k.monthly_active_connections)),
        ]);
        Table {
            head: vec!["measure", "days", "distinct", "threshold", "result"],
            rows,
        }
    }

    /// The attested facts, and the config table they come from.
    pub fn attested_table(&self) -> Table {
        let a = self.cfg.connector(self.connector);
        let v = |b: Option<bool>| b.map_or("absent (fails)".to_string(), |b| b.to_string());
        Table {
            head: vec!["fact", "value"],
            rows: vec![
                vec![
                    Cell::from("backend_in_production"),
                    Cell::from(v(a.map(|a| a.backend_in_production))),
                ],
                vec![
                    Cell::from("support_model_attested"),
                    Cell::from(v(a.map(|a| a.support_model_attested))),
                ],
                vec![
                    Cell::from("preview_since"),
                    Cell::from(
                        a.and_then(|a| a.preview_since)
                            .map_or("absent".into(), date),
                    ),
                ],
            ],
        }
    }

    /// Where the attested facts come from.
    pub fn attested_source(&self, prov: &Provenance) -> String {
        let file = prov.config.as_deref().unwrap_or("no config file");
        match self.cfg.connector(self.connector) {
            Some(_) => format!("From the table [connectors.{}] of {file}.", self.connector),
            None => format!(
                "There is no table [connectors.{}] in {file}: every attested criterion fails.",
                self.connector
            ),
        }
    }

    /// The thresholds in force (`[criteria]`).
    pub fn thresholds_table(&self) -> Table {
        let k = &self.cfg.criteria;
        let formula = match k.success_rate_formula {
            SuccessRateFormula::Ga => "ga",
            SuccessRateFormula::Isv => "isv",
        };
        let rows: Vec<(&str, String)> = vec![
            ("window_days", k.window_days.to_string()),
            ("min_eligible_requests", k.min_eligible_requests.to_string()),
            ("availability", k.availability.to_string()),
            ("slo", k.slo.to_string()),
            ("sla_availability", k.sla_availability.to_string()),
            ("success_rate", k.success_rate.to_string()),
            ("success_rate_formula", formula.to_string()),
            (
                "exception_success_rate",
                k.exception_success_rate.to_string(),
            ),
            (
                "exception_preview_months",
                k.exception_preview_months.to_string(),
            ),
            ("weekly_active_users", k.weekly_active_users.to_string()),
            (
                "monthly_active_connections",
                k.monthly_active_connections.to_string(),
            ),
            (
                "unattributed_failure_origin",
                k.unattributed_failure_origin.as_str().to_string(),
            ),
        ];
        Table {
            head: vec!["[criteria] key", "value"],
            rows: rows
                .into_iter()
                .map(|(a, b)| vec![Cell::from(a), Cell::from(b)])
                .collect(),
        }
    }

    /// The input, config and time the pack was made from.
    pub fn provenance_table(&self, prov: &Provenance) -> Table {
        let rows = vec![
            ("input", prov.input.clone()),
            (
                "config",
                prov.config
                    .clone()
                    .unwrap_or("none (built-in defaults)".into()),
            ),
            ("evaluated at (now)", timeutil::format_micros(self.now)),
            ("made at", timeutil::format_micros(prov.made_at)),
            (
                "made by",
                format!("connector-ga-exporter {}", env!("CARGO_PKG_VERSION")),
            ),
        ];
        Table {
            head: vec!["what", "value"],
            rows: rows
                .into_iter()
                .map(|(a, b)| vec![Cell::from(a), Cell::from(b)])
                .collect(),
        }
    }
}
