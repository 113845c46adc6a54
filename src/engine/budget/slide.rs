//! The criteria window slid forward k = 1 ..= N days with nothing added
//! (SPEC §11): what `recovers_on` and the budgets stand on.

use std::collections::HashMap;

use super::{availability_meets, Threshold};
use crate::engine::state::{in_sample, Counts, IdHash, ScopeState};
use crate::engine::timeutil::{day_of, Micros};

/// The criteria window slid forward k = 1 ..= N days with nothing added:
/// at today + k it holds the stored days today - N + 1 + k ..= today.
#[derive(Default)]
pub(super) struct Slide {
    /// `counts[k - 1]`: the scope's counts in the window at today + k.
    counts: Vec<Counts>,
    /// `conns[k - 1]`: (connections meeting the SLA bar, active
    /// connections) in that window; empty when the SLO is not asked for.
    conns: Vec<(u64, u64)>,
}

impl Slide {
    pub(super) fn new(
        states: &[&ScopeState],
        now: Micros,
        window_days: u32,
        sla: Option<Threshold>,
    ) -> Slide {
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
    pub(super) fn first(&self, pass: impl Fn(&Counts, (u64, u64)) -> Option<bool>) -> Option<i32> {
        self.counts.iter().enumerate().find_map(|(i, c)| {
            let conns = self.conns.get(i).copied().unwrap_or((0, 0));
            (pass(c, conns) == Some(true)).then_some(i as i32 + 1)
        })
    }
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
pub(super) fn day_counts(states: &[&ScopeState], day: i32) -> Counts {
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
