//! The criteria window slid forward k = 1 ..= N days with nothing added
//! (SPEC §11): what `recovers_on` and the budgets stand on.

use std::collections::HashMap;

use smallvec::SmallVec;

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
    let mut tally = Tally::new(n, lo, d, sla);
    let widen = |e: &(i32, u32, u32)| (e.0, e.1 as u64, e.2 as u64);
    if let [one] = states {
        let mut days: SmallVec<[(i32, u64, u64); 4]> = SmallVec::new();
        for c in one.conns.values() {
            days.clear();
            days.extend(c.day_entries().iter().map(widen));
            tally.add(&mut days);
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
        for mut days in by_conn.into_values() {
            tally.add(&mut days);
        }
    }
    tally.finish()
}

/// The slid windows' (meeting, active) counts, one connection at a time.
///
/// A connection's entry of day `e` is in the window at today + k for
/// every k <= e - lo, so its totals change only at its entries' days, and
/// it is active (and meeting or not) over whole runs of k. Each run is
/// added to a difference array: O(entries) per connection instead of one
/// step per k (N = 28 per connection and per scope, which was most of
/// `report`'s budget work with a million connections).
struct Tally {
    lo: i32,
    d: i32,
    sla: Threshold,
    /// Differences of (meeting, active) at index k - 1, one past the end.
    diff: Vec<(i64, i64)>,
}

impl Tally {
    fn new(n: usize, lo: i32, d: i32, sla: Threshold) -> Tally {
        Tally {
            lo,
            d,
            sla,
            diff: vec![(0, 0); n + 1],
        }
    }

    /// One connection's (day, availability denominator, connector
    /// failures) entries, in any order, a day possibly more than once.
    fn add(&mut self, days: &mut [(i32, u64, u64)]) {
        // Newest first: walking k down from N, the window at today + k
        // starts at day lo + k, so each run adds the entries of newer days.
        days.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        let (mut den, mut fail) = (0u64, 0u64);
        // Entries after `d` are in no window; those at or before `lo` in
        // none of k >= 1.
        let mut rest = days
            .iter()
            .filter(|e| e.0 <= self.d && e.0 > self.lo)
            .peekable();
        while let Some(e) = rest.next() {
            // This run: k from `top` (where this day enters) down to the
            // entry of the next older day, or to 1.
            let top = (e.0 - self.lo) as usize;
            den += e.1;
            fail += e.2;
            while let Some(same) = rest.next_if(|x| x.0 == e.0) {
                den += same.1;
                fail += same.2;
            }
            let bottom = rest.peek().map_or(1, |x| (x.0 - self.lo) as usize + 1);
            if den > 0 {
                let meets = (availability_meets(fail, den, self.sla) == Some(true)) as i64;
                self.diff[bottom - 1].0 += meets;
                self.diff[bottom - 1].1 += 1;
                self.diff[top].0 -= meets;
                self.diff[top].1 -= 1;
            }
        }
    }

    /// (meeting, active) at k = 1 ..= N.
    fn finish(self) -> Vec<(u64, u64)> {
        let n = self.diff.len() - 1;
        let (mut meeting, mut active) = (0i64, 0i64);
        self.diff[..n]
            .iter()
            .map(|&(m, a)| {
                meeting += m;
                active += a;
                (meeting as u64, active as u64)
            })
            .collect()
    }
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

    /// The slid counts one step per k, as written before the runs: every
    /// window at today + k sums the connection's entries of days
    /// `lo + k ..= d`.
    fn slid_by_steps(
        conns: &[Vec<(i32, u64, u64)>],
        lo: i32,
        d: i32,
        sla: Threshold,
    ) -> Vec<(u64, u64)> {
        let n = (d - lo + 1) as usize;
        let mut out = vec![(0u64, 0u64); n];
        for days in conns {
            for k in 1..=n {
                let (den, fail) = days
                    .iter()
                    .filter(|e| e.0 >= lo + k as i32 && e.0 <= d)
                    .fold((0, 0), |a, e| (a.0 + e.1, a.1 + e.2));
                if den > 0 {
                    out[k - 1].1 += 1;
                    if availability_meets(fail, den, sla) == Some(true) {
                        out[k - 1].0 += 1;
                    }
                }
            }
        }
        out
    }

    /// The runs give what one step per k gives, on generated connections:
    /// entries in any order, days repeated (a connection in several
    /// clouds), days before, inside and after the slid windows, zero
    /// denominators, every share of failures.
    #[test]
    fn runs_agree_with_one_step_per_k() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        let (lo, d) = (20_000 - 27, 20_000);
        for round in 0..300 {
            let sla = th([0.9995, 0.5, 1.0, 0.0][round % 4]);
            let conns: Vec<Vec<(i32, u64, u64)>> = (0..1 + next(20))
                .map(|_| {
                    (0..next(6))
                        .map(|_| {
                            let day = lo - 3 + next(34) as i32;
                            let den = next(4);
                            (day, den, next(den + 1))
                        })
                        .collect()
                })
                .collect();
            let mut tally = Tally::new((d - lo + 1) as usize, lo, d, sla);
            for c in &conns {
                tally.add(&mut c.clone());
            }
            assert_eq!(
                tally.finish(),
                slid_by_steps(&conns, lo, d, sla),
                "round {round}: {conns:?}"
            );
        }
    }
}
