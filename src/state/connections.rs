//! Per-connection counters for the SLO (SPEC §5): availability
//! denominator and connector failures of each connection, per day and hour.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::scope::ScopeState;
use super::IdHash;
use crate::config::Window;
use crate::timeutil::{day_of, hour_of, Micros};

/// Per-connection counters for the SLO: (bucket tag, availability
/// denominator, connector failures), for days and for hours.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnCounts {
    pub(super) days: Vec<(i32, u32, u32)>,
    pub(super) hours: Vec<(i32, u32, u32)>,
}

impl ConnCounts {
    /// (day, availability denominator, connector failures) per stored day:
    /// `budget` slides the SLO window over them.
    pub fn day_entries(&self) -> &[(i32, u32, u32)] {
        &self.days
    }
}

pub(super) fn bump(v: &mut Vec<(i32, u32, u32)>, tag: i32, fail: bool) {
    match v.iter_mut().find(|e| e.0 == tag) {
        Some(e) => {
            e.1 = e.1.saturating_add(1);
            e.2 = e.2.saturating_add(fail as u32);
        }
        None => v.push((tag, 1, fail as u32)),
    }
}

pub(super) fn merge_vec(v: &mut Vec<(i32, u32, u32)>, o: &[(i32, u32, u32)]) {
    for &(t, a, f) in o {
        match v.iter_mut().find(|e| e.0 == t) {
            Some(e) => {
                e.1 = e.1.saturating_add(a);
                e.2 = e.2.saturating_add(f);
            }
            None => v.push((t, a, f)),
        }
    }
}

/// Per-connection (availability denominator, connector failures) over a
/// window, summed across scopes ("cloud = all" sees one connection once).
pub fn connection_totals(states: &[&ScopeState], w: Window, now: Micros) -> Vec<(u64, u64)> {
    let (lo, hi, hours) = match w {
        Window::Days(n) => (day_of(now) - n as i32 + 1, day_of(now), false),
        Window::Hours(n) => (hour_of(now) - n as i32 + 1, hour_of(now), true),
    };
    let sum = |c: &ConnCounts| {
        let v = if hours { &c.hours } else { &c.days };
        v.iter()
            .filter(|e| e.0 >= lo && e.0 <= hi)
            .fold((0u64, 0u64), |acc, e| {
                (acc.0 + e.1 as u64, acc.1 + e.2 as u64)
            })
    };
    if let [one] = states {
        return one.conns.values().map(sum).filter(|t| t.0 > 0).collect();
    }
    let mut acc: HashMap<u64, (u64, u64), IdHash> = HashMap::default();
    for s in states {
        for (h, c) in &s.conns {
            let (a, f) = sum(c);
            if a > 0 {
                let e = acc.entry(*h).or_default();
                e.0 += a;
                e.1 += f;
            }
        }
    }
    acc.into_values().collect()
}
