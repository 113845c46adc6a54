//! The numbers the rules print, derived from `[criteria]`: each threshold
//! as an exact decimal, the error budgets, and the share of a budget a
//! burn-rate window spends.

use std::str::FromStr;

use bigdecimal::{BigDecimal, RoundingMode, Zero};

use super::{BurnAlert, RulesError};
use crate::config::{Config, SuccessRateFormula};

/// The exact decimal of a threshold: the shortest decimal that round-trips
/// to the same `f64` (Rust's `Display` never uses an exponent).
pub(super) fn exact(key: &'static str, value: f64) -> Result<BigDecimal, RulesError> {
    if !value.is_finite() {
        return Err(RulesError::NotADecimal { key, value });
    }
    BigDecimal::from_str(&value.to_string()).map_err(|_| RulesError::NotADecimal { key, value })
}

/// A decimal as PromQL and people read it: no exponent, no trailing zeros.
pub(super) fn plain(d: &BigDecimal) -> String {
    if d.is_zero() {
        return "0".into();
    }
    d.normalized().to_plain_string()
}

/// `d` as a percentage, exactly ("99.95").
pub(super) fn percent(d: &BigDecimal) -> String {
    plain(&(d * BigDecimal::from(100)))
}

pub(super) fn dec(s: &str) -> BigDecimal {
    // Only called on the literals of BURN_ALERTS; a test parses each of them.
    BigDecimal::from_str(s).unwrap_or_default()
}

/// One SLO objective, as the rules see it.
pub(super) struct Objective {
    /// `availability` or `success_rate`: the recording-rule infix and the
    /// `slo` label.
    pub(super) key: &'static str,
    /// `Availability` or `SuccessRate`: the alert-name infix.
    pub(super) camel: &'static str,
    /// What a bad event is, for people.
    pub(super) bad_what: &'static str,
    /// The criterion, for people ("availability >= 0.9995").
    pub(super) criterion: String,
    /// The error budget, 1 - threshold, exact.
    pub(super) budget: BigDecimal,
}

/// Everything derived from the config that the rules print.
pub(super) struct Numbers {
    pub(super) availability: BigDecimal,
    pub(super) success_rate: BigDecimal,
    pub(super) exception_success_rate: BigDecimal,
    pub(super) isv: bool,
    pub(super) window_days: u32,
    pub(super) objectives: [Objective; 2],
}

pub(super) fn numbers(cfg: &Config) -> Result<Numbers, RulesError> {
    let c = &cfg.criteria;
    let availability = exact("criteria.availability", c.availability)?;
    let success_rate = exact("criteria.success_rate", c.success_rate)?;
    let exception_success_rate =
        exact("criteria.exception_success_rate", c.exception_success_rate)?;
    let isv = c.success_rate_formula == SuccessRateFormula::Isv;
    let one = BigDecimal::from(1);
    let objectives = [
        Objective {
            key: "availability",
            camel: "Availability",
            bad_what: "Connector-caused failures",
            criterion: format!("availability >= {}", plain(&availability)),
            budget: &one - &availability,
        },
        Objective {
            key: "success_rate",
            camel: "SuccessRate",
            bad_what: if isv {
                "Failures (every origin, counted twice by the isv formula)"
            } else {
                "Failures (every origin)"
            },
            criterion: format!("success rate > {}", plain(&success_rate)),
            budget: &one - &success_rate,
        },
    ];
    Ok(Numbers {
        availability,
        success_rate,
        exception_success_rate,
        isv,
        window_days: c.window_days,
        objectives,
    })
}

/// The share of the budget a burn alert's long window spends at its factor,
/// as a percentage: exact when it terminates within two decimals, else
/// rounded and marked "about".
pub(super) fn budget_share(a: &BurnAlert, window_days: u32) -> String {
    let num = dec(a.factor) * BigDecimal::from(a.long_hours) * BigDecimal::from(100);
    let den = BigDecimal::from(u64::from(window_days) * 24);
    let share = num / den;
    let rounded = share.with_scale_round(2, RoundingMode::HalfEven);
    if rounded == share {
        format!("{} %", plain(&share))
    } else {
        format!("about {} %", plain(&rounded))
    }
}
