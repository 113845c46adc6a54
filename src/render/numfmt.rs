//! How ratios and counts print for people (the table, the page `/`, the
//! evidence pack): percentages with enough digits that a value never reads
//! as being on the wrong side of its threshold.
//!
//! The rule: a ratio prints in percent with at least 3 decimals, and with
//! the fewest decimals beyond that which keep the printed number on the same
//! side of the threshold as the value itself. 0.999474 under ">= 99.95 %"
//! prints "99.947", never "99.95"; 0.99949999 prints "99.949990", not
//! "99.950". The printed decimal is compared with the threshold exactly (as
//! integers), so no float rounding can put it on the wrong side.

/// How a value is compared with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `value >= threshold` passes.
    AtLeast,
    /// `value > threshold` passes (strictly greater).
    Above,
}

impl Cmp {
    pub fn holds(self, v: f64, t: f64) -> bool {
        match self {
            Cmp::AtLeast => v >= t,
            Cmp::Above => v > t,
        }
    }
    /// `≥` or `>`.
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::AtLeast => "≥",
            Cmp::Above => ">",
        }
    }
    /// `>=` or `>`, for plain-ASCII output.
    pub fn ascii(self) -> &'static str {
        match self {
            Cmp::AtLeast => ">=",
            Cmp::Above => ">",
        }
    }
}

/// Fewest decimals of a percentage.
pub const MIN_DECIMALS: usize = 3;
/// Most decimals tried before printing the shortest exact form of the value.
const MAX_DECIMALS: usize = 15;

/// A decimal number as `mantissa / 10^scale`.
#[derive(Debug, Clone, Copy)]
struct Dec {
    m: i128,
    scale: u32,
}

impl Dec {
    /// Parses what Rust's `{}` / `{:.N}` print for a finite f64 (never an
    /// exponent). `None` for anything longer than i128 holds.
    fn parse(s: &str) -> Option<Dec> {
        let (neg, s) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s),
        };
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.len() + frac.len() > 36 {
            return None;
        }
        let digits = format!("{int}{frac}");
        let m: i128 = digits.parse().ok()?;
        Some(Dec {
            m: if neg { -m } else { m },
            scale: frac.len() as u32,
        })
    }
    /// Exact comparison of two decimals; `None` on overflow.
    fn cmp(self, o: Dec) -> Option<std::cmp::Ordering> {
        let s = self.scale.max(o.scale);
        let a = self.m.checked_mul(10i128.checked_pow(s - self.scale)?)?;
        let b = o.m.checked_mul(10i128.checked_pow(s - o.scale)?)?;
        Some(a.cmp(&b))
    }
}

/// Moves the decimal point of a plain decimal string two places right:
/// "0.9995" → "99.95", "0.8" → "80", "1" → "100". Exact, no float
/// arithmetic.
fn shift2(s: &str) -> String {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut frac = frac.to_string();
    while frac.len() < 2 {
        frac.push('0');
    }
    let (moved, rest) = frac.split_at(2);
    let int = format!("{int}{moved}");
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let rest = rest.trim_end_matches('0');
    if rest.is_empty() {
        format!("{neg}{int}")
    } else {
        format!("{neg}{int}.{rest}")
    }
}

/// A threshold in percent, as written in the config: 0.9995 → "99.95".
pub fn threshold_pct(t: f64) -> String {
    shift2(&format!("{t}"))
}

/// `value` in percent (without the `%` sign), by the rule of this module.
pub fn pct_vs(v: f64, t: f64, cmp: Cmp) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let truth = cmp.holds(v, t);
    let Some(td) = Dec::parse(&threshold_pct(t)) else {
        return pct(v);
    };
    for d in MIN_DECIMALS..=MAX_DECIMALS {
        let s = format!("{:.*}", d, v * 100.0);
        let Some(sd) = Dec::parse(&s) else { break };
        let shown = match (sd.cmp(td), cmp) {
            (Some(o), Cmp::AtLeast) => o.is_ge(),
            (Some(o), Cmp::Above) => o.is_gt(),
            (None, _) => break,
        };
        if shown == truth {
            return s;
        }
    }
    // The value's own shortest exact form, shifted: never rounded.
    shift2(&format!("{v}"))
}

/// `value` in percent with [`MIN_DECIMALS`] decimals, for values that have
/// no threshold.
pub fn pct(v: f64) -> String {
    format!("{:.*}", MIN_DECIMALS, v * 100.0)
}

/// A count with thousands separators: 1234567 → "1,234,567".
pub fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_shift_exactly() {
        assert_eq!(threshold_pct(0.9995), "99.95");
        assert_eq!(threshold_pct(0.995), "99.5");
        assert_eq!(threshold_pct(0.8), "80");
        assert_eq!(threshold_pct(0.5), "50");
        assert_eq!(threshold_pct(1.0), "100");
        assert_eq!(threshold_pct(0.0), "0");
        assert_eq!(threshold_pct(0.00001), "0.001");
        assert_eq!(threshold_pct(0.123456), "12.3456");
    }

    #[test]
    fn failing_value_never_prints_as_its_threshold() {
        // Issue 10 item 10: 0.999474 under >= 0.9995 printed "0.9995".
        let s = pct_vs(0.999474, 0.9995, Cmp::AtLeast);
        assert_eq!(s, "99.947");
        // 1 - 1/1900 = 0.99947368...: 3 decimals already fall below 99.950.
        assert_eq!(pct_vs(1.0 - 1.0 / 1900.0, 0.9995, Cmp::AtLeast), "99.947");
    }

    #[test]
    fn more_digits_only_when_3_would_cross_the_threshold() {
        // 99.94999 % rounds to 99.950 at 3 decimals, which would pass:
        // 4 decimals give 99.9500 (still passes), 5 give 99.94999.
        assert_eq!(pct_vs(0.9994999, 0.9995, Cmp::AtLeast), "99.94999");
        // 0.99949999999 → 99.949999999 needs 9 decimals.
        assert_eq!(pct_vs(0.99949999999, 0.9995, Cmp::AtLeast), "99.949999999");
        // Just above a strict threshold: 80.0000001 % is above 80, but
        // 80.000 reads as not above it.
        assert_eq!(pct_vs(0.800000001, 0.8, Cmp::Above), "80.0000001");
        // Just below a >= threshold from below, close to 100 %.
        assert_eq!(pct_vs(0.99999999, 1.0, Cmp::AtLeast), "99.999999");
    }

    #[test]
    fn exact_threshold_prints_at_it_and_keeps_its_verdict() {
        // >= : equal passes, and 99.950 is >= 99.95.
        assert_eq!(pct_vs(0.9995, 0.9995, Cmp::AtLeast), "99.950");
        // > : equal fails, and 80.000 is not > 80: correct side at once.
        assert_eq!(pct_vs(0.8, 0.8, Cmp::Above), "80.000");
    }

    #[test]
    fn clear_values_keep_3_decimals() {
        assert_eq!(pct_vs(1.0, 0.9995, Cmp::AtLeast), "100.000");
        assert_eq!(pct_vs(0.5, 0.9995, Cmp::AtLeast), "50.000");
        assert_eq!(pct_vs(0.9, 0.8, Cmp::Above), "90.000");
        assert_eq!(pct_vs(2.0 / 3.0, 0.9995, Cmp::AtLeast), "66.667");
        // isv success rates can be negative.
        assert_eq!(pct_vs(-0.5, 0.8, Cmp::Above), "-50.000");
        assert_eq!(pct_vs(0.0, 0.0, Cmp::Above), "0.000");
    }

    #[test]
    fn printed_value_is_always_on_the_side_of_the_value() {
        // A sweep of values around three thresholds, by parsing the output
        // back and comparing it exactly with the threshold.
        for (t, cmp) in [
            (0.9995, Cmp::AtLeast),
            (0.995, Cmp::AtLeast),
            (0.8, Cmp::Above),
        ] {
            for k in -2000i64..=2000 {
                let v = t + k as f64 * 1e-9;
                let s = pct_vs(v, t, cmp);
                let sd = Dec::parse(&s).unwrap();
                let td = Dec::parse(&threshold_pct(t)).unwrap();
                let o = sd.cmp(td).unwrap();
                let shown = match cmp {
                    Cmp::AtLeast => o.is_ge(),
                    Cmp::Above => o.is_gt(),
                };
                assert_eq!(shown, cmp.holds(v, t), "{v} vs {t}: printed {s}");
                assert!(s.split('.').nth(1).unwrap().len() >= MIN_DECIMALS, "{s}");
            }
        }
    }

    #[test]
    fn counts_group_thousands() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1,000");
        assert_eq!(int(1_234_567), "1,234,567");
    }
}
