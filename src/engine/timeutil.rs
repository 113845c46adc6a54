//! UTC time as integer microseconds, and the day / hour arithmetic of SPEC §4.
//!
//! Everything in the engine is an `i64` count of microseconds since the Unix
//! epoch: cheap to compare and bucket, and exact for RFC 3339 fractions down
//! to the microsecond. Nothing here reads the clock.

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};

/// Microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

pub const MICROS_PER_HOUR: i64 = 3_600_000_000;
pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The UTC day index (days since the epoch) of a time.
pub fn day_of(t: Micros) -> i32 {
    t.div_euclid(MICROS_PER_DAY) as i32
}

/// The UTC hour index (hours since the epoch) of a time.
pub fn hour_of(t: Micros) -> i32 {
    t.div_euclid(MICROS_PER_HOUR) as i32
}

/// Parses RFC 3339 with any offset; `None` for anything else (a date alone,
/// an impossible date, a time without offset).
pub fn parse_rfc3339(s: &str) -> Option<Micros> {
    let t = DateTime::parse_from_rfc3339(s).ok()?;
    Some(t.timestamp_micros())
}

/// Integer epoch milliseconds, `None` when out of chrono's range.
pub fn from_epoch_millis(ms: i64) -> Option<Micros> {
    let us = ms.checked_mul(1000)?;
    DateTime::<Utc>::from_timestamp_micros(us)?;
    Some(us)
}

/// `2026-11-20T12:00:00.000000Z`, the form of the report's `now`.
pub fn format_micros(t: Micros) -> String {
    match DateTime::<Utc>::from_timestamp_micros(t) {
        Some(d) => d.to_rfc3339_opts(SecondsFormat::Micros, true),
        None => t.to_string(),
    }
}

pub fn date_of_day(day: i32) -> NaiveDate {
    DateTime::<Utc>::from_timestamp(day as i64 * 86_400, 0)
        .map(|d| d.date_naive())
        .unwrap_or(NaiveDate::MIN)
}

/// `date + months` calendar months, the day clamped to the month's end
/// (Aug 31 + 6 months = Feb 28, or Feb 29 in a leap year).
pub fn add_months_clamped(date: NaiveDate, months: u32) -> Option<NaiveDate> {
    let total = date.year() as i64 * 12 + (date.month0() as i64) + months as i64;
    let year = i32::try_from(total.div_euclid(12)).ok()?;
    let month0 = total.rem_euclid(12) as u32;
    let first = NaiveDate::from_ymd_opt(year, month0 + 1, 1)?;
    let next_first = if month0 == 11 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month0 + 2, 1)?
    };
    let last_day = (next_first - first).num_days() as u32;
    NaiveDate::from_ymd_opt(year, month0 + 1, date.day().min(last_day))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, dd: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, dd).unwrap()
    }

    #[test]
    fn months_clamp_to_month_end() {
        assert_eq!(add_months_clamped(d(2026, 8, 31), 6), Some(d(2027, 2, 28)));
        assert_eq!(add_months_clamped(d(2027, 8, 31), 6), Some(d(2028, 2, 29)));
        assert_eq!(add_months_clamped(d(2026, 5, 20), 6), Some(d(2026, 11, 20)));
        assert_eq!(add_months_clamped(d(2026, 7, 31), 6), Some(d(2027, 1, 31)));
        assert_eq!(add_months_clamped(d(2026, 12, 31), 2), Some(d(2027, 2, 28)));
    }

    #[test]
    fn day_and_hour_floor_at_utc_midnight() {
        let midnight = parse_rfc3339("2026-11-14T00:00:00Z").unwrap();
        assert_eq!(day_of(midnight), day_of(midnight + MICROS_PER_DAY - 1));
        assert_eq!(day_of(midnight) - 1, day_of(midnight - 1));
        assert_eq!(hour_of(midnight) - 1, hour_of(midnight - 1));
        assert_eq!(day_of(-1), -1);
        assert_eq!(date_of_day(day_of(midnight)), d(2026, 11, 14));
    }

    #[test]
    fn format_has_microseconds() {
        let t = parse_rfc3339("2026-11-20T12:00:00Z").unwrap();
        assert_eq!(format_micros(t), "2026-11-20T12:00:00.000000Z");
    }
}
