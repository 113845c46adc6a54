//! Budget, recovery and daily history of SPEC §11, and the exact threshold
//! comparisons the verdict of SPEC §6 uses: every formula of §11 lives here.
//!
//! Why integers: a threshold is a decimal in the config (0.9995), read as an
//! `f64`. Comparing a float ratio with it, or solving a budget inequality in
//! floats, can move an answer by one at an exact boundary (1 - 0.8 <
//! 0.2 in floats). So each threshold becomes the exact rational its shortest
//! decimal spelling denotes, p / q with q = 10^k, and every inequality is
//! solved by cross-multiplication in `u128` / `i128`. With k <= 18 (checked
//! when the config is read) and counts below 2^64, no product overflows.
//!
//! `slide` holds the criteria window slid forward day by day (the
//! projections `recovers_on` and `budget` stand on).

use chrono::NaiveDate;

use crate::engine::criteria::{Criteria, ScopeMeasures};
use crate::engine::params::{Attestation, CriteriaParams, Settings, SuccessRateFormula};
use crate::engine::state::{Counts, ScopeState};
use crate::engine::timeutil::{add_months_clamped, date_of_day, day_of, Micros};

mod slide;

use slide::{day_counts, Slide};

/// The most decimal places a threshold may have: 10^18 times a count below
/// 2^64 stays below 2^127.
pub const MAX_DECIMALS: usize = 18;

/// A threshold as the exact rational `p / q`, `q = 10^k`, `0 <= p <= q`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    p: u128,
    q: u128,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    #[error("{0} is not a ratio in [0, 1]")]
    Range(f64),
    #[error("{0} has more than {MAX_DECIMALS} decimal places")]
    Precision(f64),
}

impl Threshold {
    /// The rational the shortest decimal spelling of `v` denotes (Rust's
    /// `Display` of an `f64` is that spelling, never in exponent form).
    pub fn from_f64(v: f64) -> Result<Threshold, ThresholdError> {
        if !(0.0..=1.0).contains(&v) {
            return Err(ThresholdError::Range(v));
        }
        let s = v.to_string();
        let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
        if frac.len() > MAX_DECIMALS {
            return Err(ThresholdError::Precision(v));
        }
        let digits = format!("{int}{frac}");
        let p: u128 = digits.parse().map_err(|_| ThresholdError::Range(v))?;
        Ok(Threshold {
            p,
            q: 10u128.pow(frac.len() as u32),
        })
    }

    /// Thresholds are validated when the config is read; a value that
    /// slipped past (a hand-built `Config`) is clamped to [0, 1] and cut to
    /// [`MAX_DECIMALS`] places rather than panicking.
    pub fn of(v: f64) -> Threshold {
        Threshold::from_f64(v).unwrap_or_else(|_| {
            let c = v.clamp(0.0, 1.0);
            let q = 10u128.pow(MAX_DECIMALS as u32);
            Threshold {
                p: (c * q as f64) as u128,
                q,
            }
        })
    }

    pub fn numerator(&self) -> u128 {
        self.p
    }
    pub fn denominator(&self) -> u128 {
        self.q
    }
}

/// The thresholds of `[criteria]`, exact.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub availability: Threshold,
    pub slo: Threshold,
    pub sla_availability: Threshold,
    pub success_rate: Threshold,
    pub exception_success_rate: Threshold,
    pub formula: SuccessRateFormula,
    pub min_eligible: u64,
}

impl Thresholds {
    pub fn from_criteria(k: &CriteriaParams) -> Thresholds {
        Thresholds {
            availability: Threshold::of(k.availability),
            slo: Threshold::of(k.slo),
            sla_availability: Threshold::of(k.sla_availability),
            success_rate: Threshold::of(k.success_rate),
            exception_success_rate: Threshold::of(k.exception_success_rate),
            formula: k.success_rate_formula,
            min_eligible: k.min_eligible_requests,
        }
    }
}

// ---- exact comparisons (SPEC §5, §6) ----

/// 1 - cf / d >= t, i.e. q (d - cf) >= p d. `None` when d = 0 (undefined).
pub fn availability_meets(cf: u64, d: u64, t: Threshold) -> Option<bool> {
    if d == 0 {
        return None;
    }
    let good = d.saturating_sub(cf) as u128;
    Some(t.q * good >= t.p * d as u128)
}

/// The success-rate numerator: success, or with `isv` success - failures
/// (negative when failures outnumber successes).
pub fn success_numerator(c: &Counts, formula: SuccessRateFormula) -> i128 {
    match formula {
        SuccessRateFormula::Ga => c.success as i128,
        SuccessRateFormula::Isv => c.success as i128 - c.failures() as i128,
    }
}

/// num / eligible > t (strict) or >= t; `None` when eligible = 0.
pub fn success_meets(num: i128, eligible: u64, t: Threshold, strict: bool) -> Option<bool> {
    if eligible == 0 {
        return None;
    }
    let lhs = t.q as i128 * num;
    let rhs = t.p as i128 * eligible as i128;
    Some(if strict { lhs > rhs } else { lhs >= rhs })
}

/// meeting / active >= t; `None` when no connection is active.
pub fn slo_meets(meeting: u64, active: u64, t: Threshold) -> Option<bool> {
    if active == 0 {
        return None;
    }
    Some(t.q * meeting as u128 >= t.p * active as u128)
}

// ---- budgets (SPEC §11) ----

/// The largest n >= 0 with 1 - (cf + n) / (d + n) >= t, for a criterion
/// that holds now. `None` when no n fails it (t = 0) or n exceeds `u64`.
///
/// 1 - (cf + n) / (d + n) >= p / q  <=>  q (d - cf) >= p (d + n)
///                                  <=>  n <= (q (d - cf) - p d) / p.
pub fn availability_failures_left(cf: u64, d: u64, t: Threshold) -> Option<u64> {
    let good = d.checked_sub(cf)? as u128;
    let x = (t.q * good).checked_sub(t.p * d as u128)?;
    if t.p == 0 {
        return None;
    }
    let n = x / t.p;
    let holds = |n: u128| t.q * good >= t.p * (d as u128 + n);
    debug_assert!(holds(n) && !holds(n + 1));
    u64::try_from(n).ok()
}

/// The largest n >= 0 with num' / (eligible + n) > t, where num' = success
/// (ga) or success - failures - n (isv), for a criterion that holds now.
/// `None` when no n fails it (ga with t = 0) or n exceeds `u64`.
///
/// ga:  q s > p (e + n)            <=>  n < (q s - p e) / p
/// isv: q (s - f - n) > p (e + n)  <=>  n < (q (s - f) - p e) / (p + q)
/// and the largest integer below X / k, X > 0, is (X - 1) div k.
pub fn success_failures_left(
    num: i128,
    eligible: u64,
    t: Threshold,
    formula: SuccessRateFormula,
) -> Option<u64> {
    let (p, q, e) = (t.p as i128, t.q as i128, eligible as i128);
    let x = q * num - p * e;
    if x <= 0 {
        return None;
    }
    let (k, holds): (i128, &dyn Fn(i128) -> bool) = match formula {
        SuccessRateFormula::Ga => (p, &|n| q * num > p * (e + n)),
        SuccessRateFormula::Isv => (p + q, &|n| q * (num - n) > p * (e + n)),
    };
    if k == 0 {
        return None;
    }
    let n = (x - 1) / k;
    debug_assert!(holds(n) && !holds(n + 1));
    u64::try_from(n).ok()
}

/// The largest m >= 0 with (meeting - m) / active >= t, for a criterion
/// that holds now (0 when it does not).
///
/// q (M - m) >= p A  <=>  m <= (q M - p A) / q.
pub fn slo_connections_left(meeting: u64, active: u64, t: Threshold) -> u64 {
    let x = (t.q * meeting as u128).saturating_sub(t.p * active as u128);
    let m = x / t.q;
    debug_assert!(m <= meeting as u128);
    debug_assert!(t.q * (meeting as u128 - m) >= t.p * active as u128 || x == 0);
    m as u64
}

/// One measured criterion's room and recovery date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Allowance {
    /// Failures (availability, success rate) or connections (SLO) that can
    /// still go wrong with the criterion true; 0 while false; `None` while
    /// undecided (or unbounded: a threshold of 0 no failure can break).
    pub left: Option<u64>,
    /// While false: the first date after today on which the criterion is
    /// true and decided with no further event; `None` otherwise.
    pub recovers_on: Option<NaiveDate>,
}

/// `budget` of SPEC §11. In JSON `left` is `failures_left` for availability
/// and success rate, `connections_left` for the SLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budget {
    pub availability: Allowance,
    pub success_rate: Allowance,
    pub slo: Allowance,
}

impl Budget {
    /// (criterion, allowance) in SPEC §11's order, for metrics and pages.
    pub fn named(&self) -> [(&'static str, &Allowance); 3] {
        [
            ("availability", &self.availability),
            ("success_rate", &self.success_rate),
            ("slo", &self.slo),
        ]
    }
}

/// One day of the criteria window (`daily` of SPEC §11).
#[derive(Debug, Clone, PartialEq)]
pub struct DailyRow {
    pub date: NaiveDate,
    pub counts: Counts,
    pub availability: Option<f64>,
    pub success_rate: Option<f64>,
}

/// The required criteria that are false, in SPEC §11's order.
pub fn failing(c: &Criteria) -> Vec<&'static str> {
    [
        ("backend_in_production", Some(c.backend_in_production)),
        ("availability", c.availability),
        ("slo", c.slo),
        ("success_rate", c.success_rate),
        ("support_model", Some(c.support_model)),
    ]
    .into_iter()
    .filter(|(_, v)| *v == Some(false))
    .map(|(n, _)| n)
    .collect()
}

/// `preview_since` + `exception_preview_months`, clamped (SPEC §6).
pub fn exception_opens_on(attested: Option<&Attestation>, cfg: &dyn Settings) -> Option<NaiveDate> {
    attested
        .and_then(|a| a.preview_since)
        .and_then(|s| add_months_clamped(s, cfg.criteria().exception_preview_months))
}

/// The budget of one scope at `now`, from its measures, its verdict's
/// criteria and its stored state (for the slid windows of `recovers_on`).
pub fn budget(
    m: &ScopeMeasures,
    c: &Criteria,
    states: &[&ScopeState],
    now: Micros,
    cfg: &dyn Settings,
) -> Budget {
    let k = cfg.criteria();
    let t = Thresholds::from_criteria(&k);
    let w = m.criteria();
    let n = &w.counts;
    let d = n.eligible() - n.backend_failures;
    // 0 while false, None while undecided, else the closed form.
    let left = |v: Option<bool>, f: &dyn Fn() -> Option<u64>| match v {
        None => None,
        Some(false) => Some(0),
        Some(true) => f(),
    };
    let falling = [c.availability, c.success_rate, c.slo].map(|v| v == Some(false));
    let slide = if falling.iter().any(|&f| f) {
        let sla = falling[2].then_some(t.sla_availability);
        Slide::new(states, now, k.window_days, sla)
    } else {
        Slide::default()
    };
    let today = date_of_day(day_of(now));
    let on = |k: Option<i32>| k.map(|k| today + chrono::Days::new(k as u64));
    Budget {
        availability: Allowance {
            left: left(c.availability, &|| {
                availability_failures_left(n.connector_failures, d, t.availability)
            }),
            recovers_on: on(falling[0]
                .then(|| slide.first(|c, _| decided(c, &t).and(availability_of(c, &t))))
                .flatten()),
        },
        success_rate: Allowance {
            left: left(c.success_rate, &|| {
                success_failures_left(
                    success_numerator(n, t.formula),
                    n.eligible(),
                    t.success_rate,
                    t.formula,
                )
            }),
            recovers_on: on(falling[1]
                .then(|| slide.first(|c, _| decided(c, &t).and(success_of(c, &t))))
                .flatten()),
        },
        slo: Allowance {
            left: left(c.slo, &|| {
                Some(slo_connections_left(
                    w.connections_meeting_sla,
                    w.active_connections,
                    t.slo,
                ))
            }),
            recovers_on: on(falling[2]
                .then(|| {
                    slide.first(|c, (meeting, active)| {
                        decided(c, &t).and(slo_meets(meeting, active, t.slo))
                    })
                })
                .flatten()),
        },
    }
}

/// `Some(())` when a window's counts decide a measured criterion
/// (eligible >= min_eligible_requests).
fn decided(c: &Counts, t: &Thresholds) -> Option<()> {
    (c.eligible() >= t.min_eligible).then_some(())
}

fn availability_of(c: &Counts, t: &Thresholds) -> Option<bool> {
    availability_meets(
        c.connector_failures,
        c.eligible() - c.backend_failures,
        t.availability,
    )
}

fn success_of(c: &Counts, t: &Thresholds) -> Option<bool> {
    success_meets(
        success_numerator(c, t.formula),
        c.eligible(),
        t.success_rate,
        true,
    )
}

/// `daily`: one row per day of the criteria window, oldest first.
pub fn daily(states: &[&ScopeState], now: Micros, cfg: &dyn Settings) -> Vec<DailyRow> {
    let d = day_of(now);
    let k = cfg.criteria();
    let n = k.window_days as i32;
    (d - n + 1..=d)
        .map(|day| {
            let counts = day_counts(states, day);
            DailyRow {
                date: date_of_day(day),
                availability: crate::engine::criteria::availability(
                    counts.connector_failures,
                    counts.eligible(),
                    counts.backend_failures,
                ),
                success_rate: crate::engine::criteria::success_rate(
                    &counts,
                    k.success_rate_formula,
                ),
                counts,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn th(v: f64) -> Threshold {
        Threshold::from_f64(v).unwrap()
    }

    #[test]
    fn thresholds_are_their_decimal_spelling() {
        assert_eq!((th(0.9995).p, th(0.9995).q), (9995, 10000));
        assert_eq!((th(0.8).p, th(0.8).q), (8, 10));
        assert_eq!((th(1.0).p, th(1.0).q), (1, 1));
        assert_eq!((th(0.0).p, th(0.0).q), (0, 1));
        assert_eq!(
            Threshold::from_f64(1e-19),
            Err(ThresholdError::Precision(1e-19))
        );
        assert_eq!(Threshold::from_f64(1.5), Err(ThresholdError::Range(1.5)));
    }

    /// The closed forms against a search that adds failures one by one and
    /// tests the inequality in integers, over every small case.
    /// The largest `n` with `holds(n)`, searched one by one (`holds(0)` is
    /// true); `None` past 10,000 (no limit).
    fn most_failures(holds: &dyn Fn(i128) -> bool) -> Option<u64> {
        let mut n = 0;
        while holds(n + 1) && n < 10_000 {
            n += 1;
        }
        (n < 10_000).then_some(n as u64)
    }

    #[test]
    fn closed_forms_equal_the_search() {
        for t in [th(0.5), th(0.8), th(0.9), th(0.99), th(1.0)] {
            let (p, q) = (t.p as i128, t.q as i128);
            for d in 1..60u64 {
                for cf in 0..=d {
                    let holds = |n: i128| q * (d - cf) as i128 >= p * (d as i128 + n);
                    if !holds(0) {
                        continue;
                    }
                    let want = most_failures(&holds);
                    assert_eq!(availability_failures_left(cf, d, t), want, "{cf}/{d}");
                }
                for s in 0..=d as i128 {
                    for f in [0, d as i128 - s] {
                        let num = s - f; // isv numerator, negative when f > s
                        let e = d as i128;
                        for (formula, holds) in [
                            (
                                SuccessRateFormula::Ga,
                                &(|n: i128| q * s > p * (e + n)) as &dyn Fn(i128) -> bool,
                            ),
                            (SuccessRateFormula::Isv, &|n: i128| {
                                q * (num - n) > p * (e + n)
                            }),
                        ] {
                            let x = if formula == SuccessRateFormula::Ga {
                                s
                            } else {
                                num
                            };
                            if !holds(0) {
                                continue;
                            }
                            let want = most_failures(holds);
                            assert_eq!(success_failures_left(x, d, t, formula), want);
                        }
                    }
                }
                for m in 0..=d {
                    if q * m as i128 >= p * d as i128 {
                        let mut k = 0;
                        while k < m && q * (m - k - 1) as i128 >= p * d as i128 {
                            k += 1;
                        }
                        assert_eq!(slo_connections_left(m, d, t), k);
                    }
                }
            }
        }
    }

    #[test]
    fn failing_lists_false_required_criteria_in_order() {
        let c = Criteria {
            backend_in_production: false,
            availability: None,
            slo: Some(false),
            success_rate: Some(true),
            support_model: false,
            weekly_active_users: false,
            monthly_active_connections: false,
            exception: None,
        };
        assert_eq!(
            failing(&c),
            vec!["backend_in_production", "slo", "support_model"]
        );
    }
}
