//! Everything kept for one (connector, cloud) scope, and the buckets of a
//! window in it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::batch::Recorded;
use super::connections::{bump, in_sample, merge_vec, ConnCounts, MAX_SAMPLE_SHIFT};
use super::counts::Counts;
use super::distinct::Distinct;
use super::ring::{Bucket, Ring};
use super::{IdHash, Params, EMPTY};
use crate::engine::classify::{self, Class, Fault, Outcome};
use crate::engine::params::Window;
use crate::engine::timeutil::{day_of, hour_of, Micros};

/// Everything kept for one (connector, cloud) scope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScopeState {
    /// Lifetime totals, for the `_total` counters.
    pub total: Counts,
    pub days: Ring,
    pub hours: Ring,
    pub users: Distinct,
    pub connections: Distinct,
    pub conns: HashMap<u64, ConnCounts, IdHash>,
    /// The SLO sample's shift: `conns` holds the active connections whose
    /// hash is [`in_sample`] at this shift (0 = all of them, exact).
    pub conn_shift: u32,
    /// Valid events after `now` (report with `--now`): outside every window.
    pub after_now: u64,
    max_day: i32,
    max_hour: i32,
}

impl ScopeState {
    pub fn new(p: &Params) -> ScopeState {
        ScopeState {
            total: Counts::default(),
            days: Ring::new(p.retention_days),
            hours: Ring::new(p.hour_ring),
            users: Distinct::new(),
            connections: Distinct::new(),
            conns: HashMap::default(),
            conn_shift: 0,
            after_now: 0,
            max_day: EMPTY,
            max_hour: EMPTY,
        }
    }

    /// Adds one valid event of UTC day `day` (`day_of(ev.ts)`, which the
    /// caller has already computed). Returns the requests aged out of
    /// reused slots.
    pub(super) fn record(&mut self, ev: &Recorded, day: i32, p: &Params) -> u64 {
        debug_assert_eq!(day, day_of(ev.ts));
        let class = Class::of(ev.status);
        let outcome = classify::outcome(ev.status, ev.fault, p.unattributed);
        let hour = hour_of(ev.ts);
        let mut aged = 0;
        self.total.record(class, outcome);
        if let Some(b) = self.days.slot(day, &mut aged) {
            b.counts.record(class, outcome);
            if let Some(ms) = ev.latency_ms {
                b.latency.record(ms);
            }
        }
        // Hour buckets leave the ring long before they leave retention:
        // their reuse is not an event aging out.
        let mut hour_aged = 0;
        let in_hour_ring = match self.hours.slot(hour, &mut hour_aged) {
            Some(b) => {
                b.counts.record(class, outcome);
                if let Some(ms) = ev.latency_ms {
                    b.latency.record(ms);
                }
                true
            }
            None => false,
        };
        if let Some(u) = ev.user {
            self.users.insert(u, day, p.retention_days);
        }
        if day > self.max_day || hour > self.max_hour {
            self.prune_conns(day, hour, p);
        }
        if let Some(h) = ev.connection {
            self.connections.insert(h, day, p.retention_days);
            // Only events that count for availability make a connection active.
            let counts = match outcome {
                Outcome::Success | Outcome::Failure(Fault::Client) => Some(false),
                Outcome::Failure(Fault::Connector) => Some(true),
                Outcome::Throttled | Outcome::Failure(Fault::Backend) => None,
            };
            if let Some(fail) = counts {
                if in_sample(h, self.conn_shift) {
                    let c = self.conns.entry(h).or_default();
                    bump(&mut c.days, day, fail);
                    // Per-connection hours follow the hour ring: an hour
                    // the ring has already left is in no hour window's
                    // counts, so the SLO must not see it either. (Kept, it
                    // also made each busy connection's list grow to every
                    // hour of an unsorted file, scanned per event.)
                    if in_hour_ring {
                        bump(&mut c.hours, hour, fail);
                    }
                    self.fit_sample(p.max_connections_per_scope);
                }
            }
        }
        aged
    }

    /// Halves the SLO sample's share until it holds at most `cap`
    /// connections (SPEC §5).
    fn fit_sample(&mut self, cap: usize) {
        while self.conns.len() > cap && self.conn_shift < MAX_SAMPLE_SHIFT {
            self.conn_shift += 1;
            let shift = self.conn_shift;
            self.conns.retain(|h, _| in_sample(*h, shift));
        }
    }

    /// Drops per-connection buckets that left the rings.
    fn prune_conns(&mut self, day: i32, hour: i32, p: &Params) {
        let new_day = day > self.max_day;
        self.max_day = self.max_day.max(day);
        self.max_hour = self.max_hour.max(hour);
        let min_day = self.max_day - p.retention_days as i32 + 1;
        let min_hour = self.max_hour - p.hour_ring as i32 + 1;
        self.conns.retain(|_, c| {
            if new_day {
                c.days.retain(|e| e.0 >= min_day);
            }
            c.hours.retain(|e| e.0 >= min_hour);
            !c.days.is_empty()
        });
    }

    /// Merges another scope's state into this one.
    pub fn merge(&mut self, o: &ScopeState, p: &Params) -> u64 {
        let mut aged = 0;
        self.total.add(&o.total);
        self.days.merge(&o.days, &mut aged);
        self.hours.merge(&o.hours, &mut 0);
        self.users.merge(&o.users, p.retention_days);
        self.connections.merge(&o.connections, p.retention_days);
        // Both sides are hash samples: their union at the smaller share is
        // the sample the merged events would have given.
        if o.conn_shift > self.conn_shift {
            self.conn_shift = o.conn_shift;
            let shift = self.conn_shift;
            self.conns.retain(|h, _| in_sample(*h, shift));
        }
        let shift = self.conn_shift;
        for (h, c) in o.conns.iter().filter(|(h, _)| in_sample(**h, shift)) {
            let e = self.conns.entry(*h).or_default();
            merge_vec(&mut e.days, &c.days);
            merge_vec(&mut e.hours, &c.hours);
        }
        self.fit_sample(p.max_connections_per_scope);
        self.after_now += o.after_now;
        if o.max_day != EMPTY {
            self.prune_conns(o.max_day, o.max_hour, p);
        }
        aged
    }

    /// Requests in the day buckets of `lo..=hi`.
    pub fn requests_in_days(&self, lo: i32, hi: i32) -> u64 {
        self.days.range(lo, hi).map(|b| b.counts.requests).sum()
    }
}

/// The buckets of a window at `now`: day buckets for day windows, hour
/// buckets for hour windows.
pub fn window_buckets(
    s: &ScopeState,
    w: Window,
    now: Micros,
) -> impl Iterator<Item = &Bucket> + Clone {
    let (ring, lo, hi) = match w {
        Window::Days(n) => {
            let d = day_of(now);
            (&s.days, d - n as i32 + 1, d)
        }
        Window::Hours(n) => {
            let h = hour_of(now);
            (&s.hours, h - n as i32 + 1, h)
        }
    };
    ring.range(lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::connections::connection_totals;
    use crate::engine::state::testutil::{ev, params};
    use crate::engine::timeutil::parse_rfc3339;
    use std::borrow::Cow;

    /// The daemon admits events up to `max_future_skew_seconds` ahead, so
    /// the hour ring (1 hour by default) can move past the hour of `now`.
    /// A later event of `now`'s hour is then in no hour bucket, and the
    /// SLO of the 1h window must not count its connection either.
    #[test]
    fn connection_hours_follow_the_hour_ring() {
        let p = params(); // hour_ring 1
        let mut s = ScopeState::new(&p);
        let mut ahead = ev("2026-11-20T11:00:30Z", None);
        ahead.connection = Some(Cow::Borrowed("k1"));
        s.record(&Recorded::of(&ahead), day_of(ahead.ts), &p);
        let mut late = ev("2026-11-20T10:59:00Z", None);
        late.connection = Some(Cow::Borrowed("k2"));
        s.record(&Recorded::of(&late), day_of(late.ts), &p);
        let now = parse_rfc3339("2026-11-20T10:59:59Z").unwrap();
        // By hand: the ring holds hour 11 only, so the 1h window at 10:59:59
        // (hour 10) has no bucket: 0 requests; and so 0 active connections.
        let requests: u64 = window_buckets(&s, Window::Hours(1), now)
            .map(|b| b.counts.requests)
            .sum();
        assert_eq!(requests, 0);
        let sample = connection_totals(&[&s], Window::Hours(1), now);
        assert_eq!(sample.totals.len(), 0, "{:?}", sample.totals);
        // The day window still has both events and both connections.
        assert_eq!(
            connection_totals(&[&s], Window::Days(1), now).totals.len(),
            2
        );
    }
}
