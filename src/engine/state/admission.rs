//! Which valid events are admitted (SPEC §4): the retention boundary
//! (`too_old`), the future skew (`from_future`) and `report --now`.

use crate::engine::event::Reject;
use crate::engine::timeutil::{day_of, Micros};

/// Which valid events are admitted, besides field validation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Admission {
    /// Events on an earlier UTC day are `too_old`.
    pub min_day: Option<i32>,
    /// Events after this time are `from_future`.
    pub max_ts: Option<Micros>,
    /// Events after this time are valid but outside every window (report
    /// with `--now`).
    pub cutoff: Option<Micros>,
}

/// The first UTC day inside a retention of `days` days at `now` (SPEC §4):
/// events on earlier days are `too_old`.
pub fn retention_start(now: Micros, days: u32) -> i32 {
    day_of(now) - days as i32 + 1
}

impl Admission {
    /// `report --now`: `too_old` measured from `now`; events after `now`
    /// are valid but outside every window; no `from_future`.
    pub fn report_at(now: Micros, retention_days: u32) -> Admission {
        Admission {
            min_day: Some(retention_start(now, retention_days)),
            max_ts: None,
            cutoff: Some(now),
        }
    }

    /// SPEC §4: `too_old` before the retention boundary, `from_future`
    /// past the skew. Decided where events are first read (the daemon's
    /// re-key stage applies it before an event leaves for its connector's
    /// partition).
    pub fn admit(&self, ts: Micros) -> Result<(), Reject> {
        if self.min_day.is_some_and(|m| day_of(ts) < m) {
            return Err(Reject::TooOld);
        }
        if self.max_ts.is_some_and(|m| ts > m) {
            return Err(Reject::FromFuture);
        }
        Ok(())
    }

    /// The daemon at wall-clock `now`: `too_old` and `from_future`.
    pub fn daemon_at(now: Micros, retention_days: u32, max_future_skew_seconds: u64) -> Admission {
        Admission {
            min_day: Some(retention_start(now, retention_days)),
            max_ts: Some(now + max_future_skew_seconds as Micros * 1_000_000),
            cutoff: None,
        }
    }
}
