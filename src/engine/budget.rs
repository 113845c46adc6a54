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

use std::collections::HashMap;

use chrono::NaiveDate;

use crate::engine::criteria::{Criteria, ScopeMeasures};
use crate::engine::params::{Attestation, CriteriaParams, Settings, SuccessRateFormula};
use crate::engine::state::{in_sample, Counts, IdHash, ScopeState};
use crate::engine::timeutil::{add_months_clamped, date_of_day, day_of, Micros};

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

/// The criteria window slid forward k = 1 ..= N days with nothing added:
/// at today + k it holds the stored days today - N + 1 + k ..= today.
#[derive(Default)]
struct Slide {
    /// `counts[k - 1]`: the scope's counts in the window at today + k.
    counts: Vec<Counts>,
    /// `conns[k - 1]`: (connections meeting the SLA bar, active
    /// connections) in that window; empty when the SLO is not asked for.
    conns: Vec<(u64, u64)>,
}

impl Slide {
    fn new(states: &[&ScopeState], now: Micros, window_days: u32, sla: Option<Threshold>) -> Slide {
        let n = window_days as i32;
        let (d, lo) = (day_of(now), day_of(now) - n + 1);
        // Suffix sums: the window at today + k starts at day lo + k.
        let mut counts = vec![Counts::default(); n as usize];
        let mut acc = Counts::default();
        for k in (1..=n).rev() {
            if lo + k <= d {
                acc.add(&day_counts(states, lo + k));
            }
            counts[k as usize - 1] = acc.clone();
        }
        let conns = sla.map_or_else(Vec::new, |sla| slide_connections(states, lo, d, sla));
        Slide { counts, conns }
    }

    /// The first k whose window passes `pass` (decided and true).
    fn first(&self, pass: impl Fn(&Counts, (u64, u64)) -> Option<bool>) -> Option<i32> {
        self.counts.iter().enumerate().find_map(|(i, c)| {
            let conns = self.conns.get(i).copied().unwrap_or((0, 0));
            (pass(c, conns) == Some(true)).then_some(i as i32 + 1)
        })
    }
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

/// (meeting, active) connections in the window at today + k, k = 1 ..= N,
/// from the stored per-connection days `lo + k ..= d` (one connection
/// across clouds is one connection, as in [`crate::engine::state::connection_totals`]).
fn slide_connections(states: &[&ScopeState], lo: i32, d: i32, sla: Threshold) -> Vec<(u64, u64)> {
    let n = (d - lo + 1) as usize;
    let mut out = vec![(0u64, 0u64); n];
    let mut tally = |mut days: Vec<(i32, u64, u64)>| {
        // Walk k downwards: the window at today + k starts at day lo + k,
        // so each k adds the connection's entries of that day.
        days.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        let (mut den, mut fail, mut i) = (0u64, 0u64, 0);
        for k in (1..=n).rev() {
            while i < days.len() && days[i].0 >= lo + k as i32 {
                if days[i].0 <= d {
                    den += days[i].1;
                    fail += days[i].2;
                }
                i += 1;
            }
            if den > 0 {
                out[k - 1].1 += 1;
                if availability_meets(fail, den, sla) == Some(true) {
                    out[k - 1].0 += 1;
                }
            }
        }
    };
    let widen = |e: &(i32, u32, u32)| (e.0, e.1 as u64, e.2 as u64);
    if let [one] = states {
        for c in one.conns.values() {
            tally(c.day_entries().iter().map(widen).collect());
        }
    } else {
        // The scopes' samples merge at the smallest share, as in
        // `connection_totals`: a connection outside it counts in no scope,
        // or the slid SLO would stand on another sample than the SLO.
        let shift = states.iter().map(|s| s.conn_shift).max().unwrap_or(0);
        let mut by_conn: HashMap<u64, Vec<(i32, u64, u64)>, IdHash> = HashMap::default();
        for s in states {
            for (h, c) in s.conns.iter().filter(|(h, _)| in_sample(**h, shift)) {
                by_conn
                    .entry(*h)
                    .or_default()
                    .extend(c.day_entries().iter().map(widen));
            }
        }
        for days in by_conn.into_values() {
            tally(days);
        }
    }
    out
}

/// The counts of one day, summed over the states of a scope.
fn day_counts(states: &[&ScopeState], day: i32) -> Counts {
    let mut c = Counts::default();
    for s in states {
        for b in s.days.range(day, day) {
            c.add(&b.counts);
        }
    }
    c
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
                    let mut n = 0;
                    while holds(n + 1) && n < 10_000 {
                        n += 1;
                    }
                    let want = (n < 10_000).then_some(n as u64);
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
                            let mut n = 0;
                            while holds(n + 1) && n < 10_000 {
                                n += 1;
                            }
                            let want = (n < 10_000).then_some(n as u64);
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

    /// Regression: for "cloud = all", `slide_connections` counted every
    /// connection of every cloud, where the SLO (`connection_totals`)
    /// counts only those in the sample of the largest shift. By hand: the
    /// public scope (shift 0, exact) holds `out` (one connector failure:
    /// availability 0/1, below the SLA) and `in` (one success: 1/1); the
    /// gcc scope is sampled at shift 1, and `out`'s hash is outside that
    /// sample, `in`'s inside. "All" therefore stands on `in` alone: 1
    /// active, 1 meeting, in every window that holds the day (k = 1..=29
    /// of 30), and nothing at k = 30. Before the fix: 2 active, 1 meeting.
    #[test]
    fn slid_connections_of_all_use_the_smallest_share() {
        use crate::engine::classify::{Cloud, Fault};
        use crate::engine::state::{testutil, Admission, Engine, SeriesBudget};
        use std::borrow::Cow;
        use xxhash_rust::xxh3::xxh3_64;
        let id = |inside: bool| {
            (0..)
                .map(|i| format!("k{i}"))
                .find(|k| in_sample(xxh3_64(k.as_bytes()), 1) == inside)
                .unwrap()
        };
        let (out, inn) = (id(false), id(true));
        let p = testutil::params();
        let b = SeriesBudget::new(10);
        let mut e = Engine::default();
        let ts = "2026-11-20T10:00:00Z";
        let mut fail = testutil::ev(ts, None);
        fail.status = Some(500);
        fail.fault = Some(Fault::Connector);
        fail.connection = Some(Cow::Owned(out));
        let mut ok = testutil::ev(ts, None);
        ok.connection = Some(Cow::Owned(inn));
        let mut gcc = testutil::ev(ts, None);
        gcc.cloud = Cloud::Gcc;
        for x in [&fail, &ok, &gcc] {
            e.ingest(x, &Admission::default(), &p, &b).unwrap();
        }
        let c = e.connectors.get_mut("c").unwrap();
        std::sync::Arc::make_mut(c.clouds[Cloud::Gcc.index()].as_mut().unwrap()).conn_shift = 1;
        let states: Vec<&ScopeState> = c.scopes().map(|(_, s)| s).collect();
        let d = day_of(fail.ts);
        let slid = slide_connections(&states, d - 29, d, th(0.9995));
        assert_eq!(slid.len(), 30);
        assert!(slid[..29].iter().all(|&x| x == (1, 1)), "{slid:?}");
        assert_eq!(slid[29], (0, 0));
    }
}
