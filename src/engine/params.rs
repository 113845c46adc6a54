//! What the engine is told: the `[criteria]` parameters and the attested
//! facts of SPEC §1, §4, §6 as plain data, and the [`Settings`] trait the
//! engine reads them through. `config` (outside the engine) builds them from
//! the TOML and validates them against the engine's limits, so data flows one
//! way: config → engine, never back.

use chrono::NaiveDate;

use crate::engine::classify::Fault;

/// How the success rate is computed (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuccessRateFormula {
    /// success / eligible.
    Ga,
    /// (success - failures) / eligible, the vendor telemetry page's formula.
    Isv,
}

/// A ratio window: N hours or N days ending with `now`'s hour / day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    Hours(u32),
    Days(u32),
}

impl Window {
    pub fn parse(s: &str) -> Option<Window> {
        let (n, unit) = s.split_at(s.len().checked_sub(1)?);
        let n: u32 = n.parse().ok().filter(|&n| n > 0)?;
        match unit {
            "h" => Some(Window::Hours(n)),
            "d" => Some(Window::Days(n)),
            _ => None,
        }
    }
    pub fn label(&self) -> String {
        match self {
            Window::Hours(n) => format!("{n}h"),
            Window::Days(n) => format!("{n}d"),
        }
    }
}

/// What a connector's owner attests (`[connectors.<id>]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attestation {
    pub backend_in_production: bool,
    pub support_model_attested: bool,
    /// The date the connector entered preview (for the exception path).
    pub preview_since: Option<NaiveDate>,
}

/// The thresholds and windows of the criteria (SPEC §1, §4, §6), as
/// validated by `config`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CriteriaParams {
    pub window_days: u32,
    pub min_eligible_requests: u64,
    pub availability: f64,
    pub slo: f64,
    pub sla_availability: f64,
    pub success_rate: f64,
    pub exception_success_rate: f64,
    pub exception_preview_months: u32,
    pub weekly_active_users: u64,
    pub monthly_active_connections: u64,
    pub success_rate_formula: SuccessRateFormula,
    pub unattributed_failure_origin: Fault,
    pub retention_days: u32,
}

/// What the engine reads of the configuration; `config::Config` implements
/// it. A trait rather than a struct so that callers hand over their config
/// as it is, and the engine never names the TOML schema.
pub trait Settings {
    /// The criteria parameters.
    fn criteria(&self) -> CriteriaParams;
    /// The ratio windows measured, the criteria window among them, sorted
    /// and deduplicated.
    fn windows(&self) -> Vec<Window>;
    /// What `connector`'s owner attests, when the configuration names it.
    fn attestation(&self, connector: &str) -> Option<&Attestation>;
    /// Most connections tracked per scope for the SLO.
    fn max_connections_per_scope(&self) -> usize;
}
