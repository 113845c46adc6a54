//! The measures of SPEC §5 and the verdict of SPEC §6: every formula of the
//! contract lives in this file, over state summed by [`crate::engine::state`].

use chrono::NaiveDate;
use serde::Serialize;

use crate::engine::budget;
use crate::engine::classify::Cloud;
use crate::engine::params::{Attestation, Settings, SuccessRateFormula, Window};
use crate::engine::state::{self, Counts, ScopeState};
use crate::engine::timeutil::{date_of_day, day_of, Micros};

/// Latency percentiles exported, in this order.
pub const PERCENTILES: [u32; 3] = [50, 95, 99];

/// availability = 1 - connector_failures / (eligible - backend_failures);
/// `None` when the denominator is zero.
pub fn availability(connector_failures: u64, eligible: u64, backend_failures: u64) -> Option<f64> {
    let den = eligible.checked_sub(backend_failures).filter(|&d| d > 0)?;
    Some(1.0 - connector_failures as f64 / den as f64)
}

/// success / eligible, or with `isv`: (success - failures) / eligible.
pub fn success_rate(c: &Counts, formula: SuccessRateFormula) -> Option<f64> {
    let eligible = c.eligible();
    if eligible == 0 {
        return None;
    }
    let num = match formula {
        SuccessRateFormula::Ga => c.success as f64,
        SuccessRateFormula::Isv => c.success as f64 - c.failures() as f64,
    };
    Some(num / eligible as f64)
}

/// The measures of one scope over one window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowMeasures {
    pub window: Window,
    pub counts: Counts,
    pub availability: Option<f64>,
    pub success_rate: Option<f64>,
    pub slo: Option<f64>,
    pub active_connections: u64,
    pub connections_meeting_sla: u64,
    /// p50, p95, p99 in milliseconds.
    pub latency_ms: [Option<f64>; 3],
}

/// Measures one window over the states of a scope (one cloud, or all).
pub fn measure_window(
    states: &[&ScopeState],
    w: Window,
    now: Micros,
    cfg: &dyn Settings,
) -> WindowMeasures {
    let mut counts = Counts::default();
    for s in states {
        for b in state::window_buckets(s, w, now) {
            counts.add(&b.counts);
        }
    }
    let lat = state::quantiles(
        states
            .iter()
            .flat_map(|s| state::window_buckets(s, w, now).map(|b| &b.latency)),
        &PERCENTILES,
    );
    let sla = budget::Threshold::of(cfg.criteria().sla_availability);
    let sample = state::connection_totals(states, w, now);
    let mut active = 0;
    let mut meeting = 0;
    for &(den, fail) in &sample.totals {
        active += 1;
        // Each connection's own availability, by the same formula
        // (its denominator already excludes throttled and backend failures).
        if budget::availability_meets(fail, den, sla) == Some(true) {
            meeting += 1;
        }
    }
    // Past `max_connections_per_scope` the totals are a hash sample
    // (SPEC §5): the counts are scaled up by it; the ratio is unchanged.
    let (active, meeting) = (active * sample.scale, meeting * sample.scale);
    WindowMeasures {
        window: w,
        availability: availability(
            counts.connector_failures,
            counts.eligible(),
            counts.backend_failures,
        ),
        success_rate: success_rate(&counts, cfg.criteria().success_rate_formula),
        slo: (active > 0).then(|| meeting as f64 / active as f64),
        counts,
        active_connections: active,
        connections_meeting_sla: meeting,
        latency_ms: [lat[0], lat[1], lat[2]],
    }
}

/// Everything measured for one scope at `now`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeMeasures {
    pub connector: String,
    /// `None` is the "all" scope.
    pub cloud: Option<Cloud>,
    /// One per exported window (see [`Settings::windows`]).
    pub windows: Vec<WindowMeasures>,
    /// Index into `windows` of the criteria window.
    pub criteria_window: usize,
    pub weekly_active_users: [u64; 3],
    pub monthly_active_connections: u64,
}

impl ScopeMeasures {
    pub fn criteria(&self) -> &WindowMeasures {
        &self.windows[self.criteria_window]
    }
    pub fn cloud_label(&self) -> &'static str {
        self.cloud.map_or("all", Cloud::as_str)
    }
}

/// The MAC window, fixed by SPEC §4.
pub const MAC_DAYS: i32 = 30;

pub fn measure_scope(
    connector: &str,
    cloud: Option<Cloud>,
    states: &[&ScopeState],
    now: Micros,
    cfg: &dyn Settings,
) -> ScopeMeasures {
    let windows = cfg.windows();
    let criteria_window = windows
        .iter()
        .position(|w| *w == Window::Days(cfg.criteria().window_days))
        .expect("Settings::windows includes the criteria window");
    let d = day_of(now);
    let users: Vec<_> = states.iter().map(|s| &s.users).collect();
    let conns: Vec<_> = states.iter().map(|s| &s.connections).collect();
    let week = |k: i32| state::distinct_count(&users, d - 7 * k - 6, d - 7 * k);
    ScopeMeasures {
        connector: connector.to_string(),
        cloud,
        windows: windows
            .iter()
            .map(|w| measure_window(states, *w, now, cfg))
            .collect(),
        criteria_window,
        weekly_active_users: [week(0), week(1), week(2)],
        monthly_active_connections: state::distinct_count(&conns, d - MAC_DAYS + 1, d),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    InsufficientData,
    GaEligible,
    GaEligibleByException,
    NotEligible,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::InsufficientData,
        Status::GaEligible,
        Status::GaEligibleByException,
        Status::NotEligible,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InsufficientData => "insufficient_data",
            Status::GaEligible => "ga_eligible",
            Status::GaEligibleByException => "ga_eligible_by_exception",
            Status::NotEligible => "not_eligible",
        }
    }
}

/// Each criterion: `Some(pass)`, or `None` while undecided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Criteria {
    pub backend_in_production: bool,
    pub availability: Option<bool>,
    pub slo: Option<bool>,
    pub success_rate: Option<bool>,
    pub support_model: bool,
    pub weekly_active_users: bool,
    pub monthly_active_connections: bool,
    pub exception: Option<bool>,
}

impl Criteria {
    /// (name, value) in SPEC §1's order, for metrics and tables.
    pub fn named(&self) -> [(&'static str, Option<bool>); 8] {
        [
            ("backend_in_production", Some(self.backend_in_production)),
            ("availability", self.availability),
            ("slo", self.slo),
            ("success_rate", self.success_rate),
            ("support_model", Some(self.support_model)),
            ("weekly_active_users", Some(self.weekly_active_users)),
            (
                "monthly_active_connections",
                Some(self.monthly_active_connections),
            ),
            ("exception", self.exception),
        ]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub criteria: Criteria,
    pub status: Status,
    pub recommended_met: bool,
}

/// The verdict of SPEC §6 for one scope's measures at `now`.
pub fn verdict(
    m: &ScopeMeasures,
    attested: Option<&Attestation>,
    now: Micros,
    cfg: &dyn Settings,
) -> Verdict {
    let k = &cfg.criteria();
    let w = m.criteria();
    let n = &w.counts;
    let enough = n.eligible() >= k.min_eligible_requests;
    // Pass or fail in exact rationals (see `budget`): a float ratio can
    // land just below a threshold it reaches exactly (1 - 0.8 < 0.2).
    let t = budget::Thresholds::from_criteria(k);
    let decide = |v: Option<bool>| v.filter(|_| enough);
    let num = budget::success_numerator(n, t.formula);
    let availability = decide(budget::availability_meets(
        n.connector_failures,
        n.eligible() - n.backend_failures,
        t.availability,
    ));
    let slo = decide(budget::slo_meets(
        w.connections_meeting_sla,
        w.active_connections,
        t.slo,
    ));
    let success_rate = decide(budget::success_meets(
        num,
        n.eligible(),
        t.success_rate,
        true,
    ));
    let exception_success = decide(budget::success_meets(
        num,
        n.eligible(),
        t.exception_success_rate,
        false,
    ));
    let backend = attested.is_some_and(|a| a.backend_in_production);
    let support = attested.is_some_and(|a| a.support_model_attested);
    let wau = m
        .weekly_active_users
        .iter()
        .all(|&u| u >= k.weekly_active_users);
    let mac = m.monthly_active_connections >= k.monthly_active_connections;

    let in_preview_long_enough = attested
        .and_then(|a| a.preview_since)
        .and_then(|since| {
            crate::engine::timeutil::add_months_clamped(since, k.exception_preview_months)
        })
        .is_some_and(|due: NaiveDate| date_of_day(day_of(now)) >= due);
    let exception = match (availability, slo, exception_success) {
        (Some(a), Some(s), Some(sr)) => {
            Some(in_preview_long_enough && backend && support && a && s && sr)
        }
        _ => None,
    };
    let status = match (availability, slo, success_rate) {
        (Some(a), Some(s), Some(sr)) => {
            if backend && support && a && s && sr {
                Status::GaEligible
            } else if exception == Some(true) {
                Status::GaEligibleByException
            } else {
                Status::NotEligible
            }
        }
        _ => Status::InsufficientData,
    };
    Verdict {
        criteria: Criteria {
            backend_in_production: backend,
            availability,
            slo,
            success_rate,
            support_model: support,
            weekly_active_users: wau,
            monthly_active_connections: mac,
            exception,
        },
        status,
        recommended_met: wau && mac,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_formula_and_undefined() {
        assert_eq!(availability(2, 8, 1), Some(1.0 - 2.0 / 7.0));
        assert_eq!(availability(0, 0, 0), None);
        // Only backend failures: undefined, never 1.0.
        assert_eq!(availability(0, 3, 3), None);
    }

    #[test]
    fn success_rate_formulas() {
        let c = Counts {
            requests: 12,
            throttled: 2,
            success: 7,
            connector_failures: 1,
            backend_failures: 1,
            client_failures: 1,
            class: [0; 6],
        };
        assert_eq!(success_rate(&c, SuccessRateFormula::Ga), Some(0.7));
        assert_eq!(success_rate(&c, SuccessRateFormula::Isv), Some(0.4));
        assert_eq!(
            success_rate(&Counts::default(), SuccessRateFormula::Ga),
            None
        );
    }
}
