//! Per-connection counters for the SLO (SPEC §5): availability
//! denominator and connector failures of each connection, per day and hour,
//! and the deterministic hash sample that bounds them per scope.
//!
//! The sample (SPEC §5, last paragraph): a scope tracks every active
//! connection up to `max_connections_per_scope`; past it, only those whose
//! id hash falls in a share 2^-shift of the hash space, the shift growing by
//! one (the share halving) until the sample fits again. Membership depends on
//! the hash alone, and a sample at a smaller share is a subset of one at a
//! larger share, so the set held is a function of the connections seen, not
//! of their order, batching or sharding: as connections only ever join, the
//! final shift is the smallest one whose sample fits. Counts are scaled up by
//! 2^shift; the SLO, a ratio, needs no scaling.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::scope::ScopeState;
use super::IdHash;
use crate::engine::params::Window;
use crate::engine::timeutil::{day_of, hour_of, Micros};

/// (bucket tag, availability denominator, connector failures) per day or
/// hour of one connection, in tag order once merged.
///
/// The first entry is held inline, in the 24 bytes a `Vec` header takes:
/// in issue 8's `realistic` corpus, 95% of 901,949 (scope, connection)
/// pairs are seen on one day only, and a heap list for each was ~900,000
/// allocations per million events, and a cache miss per event and per
/// measured window to reach it. It serializes as a `Vec` does (a length,
/// then the entries), so checkpoints keep their format.
pub type Tagged = SmallVec<[(i32, u32, u32); 1]>;

/// Per-connection counters for the SLO, for days and for hours.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnCounts {
    pub(super) days: Tagged,
    pub(super) hours: Tagged,
}

impl ConnCounts {
    /// (day, availability denominator, connector failures) per stored day.
    pub fn day_entries(&self) -> &[(i32, u32, u32)] {
        &self.days
    }
}

pub(super) fn bump(v: &mut Tagged, tag: i32, fail: bool) {
    // From the newest entry back: the daemon's input is nearly in time
    // order, so the current day or hour is almost always the last pushed.
    match v.iter_mut().rev().find(|e| e.0 == tag) {
        Some(e) => {
            e.1 = e.1.saturating_add(1);
            e.2 = e.2.saturating_add(fail as u32);
        }
        None => v.push((tag, 1, fail as u32)),
    }
}

/// Adds `o`'s counts into `v`, tag by tag, in O(n log n) at worst and
/// O(n) when both sides are in tag order (time-ordered input; the result
/// always is). Tags are unique on each side. The search per entry it
/// replaces was quadratic in the days (and hours) a connection was seen.
pub(super) fn merge_vec(v: &mut Tagged, o: &[(i32, u32, u32)]) {
    if o.is_empty() {
        return;
    }
    if v.is_empty() {
        v.extend_from_slice(o);
        v.sort_unstable_by_key(|e| e.0);
        return;
    }
    // Sorting an already sorted slice is one pass.
    v.sort_unstable_by_key(|e| e.0);
    let sorted_o;
    let o = if o.windows(2).all(|w| w[0].0 < w[1].0) {
        o
    } else {
        sorted_o = {
            let mut c = o.to_vec();
            c.sort_unstable_by_key(|e| e.0);
            c
        };
        &sorted_o[..]
    };
    let mut out = Tagged::with_capacity(v.len() + o.len());
    let (mut i, mut j) = (0, 0);
    while i < v.len() && j < o.len() {
        let (a, b) = (v[i], o[j]);
        match a.0.cmp(&b.0) {
            std::cmp::Ordering::Less => {
                out.push(a);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push((a.0, a.1.saturating_add(b.1), a.2.saturating_add(b.2)));
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&v[i..]);
    out.extend_from_slice(&o[j..]);
    *v = out;
}

/// Largest sample shift: a share of 2^-48 of the hash space.
pub const MAX_SAMPLE_SHIFT: u32 = 48;

/// Whether a connection (its xxh3 id hash) is in the sample at `shift`.
///
/// The sample bits are the hash's bits just below its top byte: the map
/// keyed by these hashes (`IdHash`) takes its bucket from the low bits and
/// its probe tag from the top 7, so a sample leaves both uniform.
pub fn in_sample(hash: u64, shift: u32) -> bool {
    shift == 0 || (hash << 8) >> (64 - shift.min(MAX_SAMPLE_SHIFT)) == 0
}

/// The per-connection totals of a window and the scale of their sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionSample {
    /// (availability denominator, connector failures) of each active
    /// connection in the sample.
    pub totals: Vec<(u64, u64)>,
    /// 2^shift: each sampled connection stands for this many (1 = exact).
    pub scale: u64,
}

/// Per-connection (availability denominator, connector failures) over a
/// window, summed across scopes ("cloud = all" sees one connection once).
/// Scopes sampled at different shares merge at the smallest share (largest
/// shift): a connection outside it is dropped from every scope, so the
/// result is again one hash sample of the union.
pub fn connection_totals(states: &[&ScopeState], w: Window, now: Micros) -> ConnectionSample {
    let shift = states.iter().map(|s| s.conn_shift).max().unwrap_or(0);
    let scale = 1u64 << shift.min(MAX_SAMPLE_SHIFT);
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
        let totals = one.conns.values().map(sum).filter(|t| t.0 > 0).collect();
        return ConnectionSample { totals, scale };
    }
    let mut acc: HashMap<u64, (u64, u64), IdHash> = HashMap::default();
    for s in states {
        for (h, c) in s.conns.iter().filter(|(h, _)| in_sample(**h, shift)) {
            let (a, f) = sum(c);
            if a > 0 {
                let e = acc.entry(*h).or_default();
                e.0 += a;
                e.1 += f;
            }
        }
    }
    ConnectionSample {
        totals: acc.into_values().collect(),
        scale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::classify::Cloud;
    use crate::engine::state::testutil::{ev, params};
    use crate::engine::state::{Admission, Engine, Params, SeriesBudget};
    use crate::engine::timeutil::parse_rfc3339;
    use std::borrow::Cow;
    use xxhash_rust::xxh3::xxh3_64;

    /// `merge_vec` adds counts tag by tag whatever the order of either
    /// side, and leaves the tags in order. By hand:
    /// v = day 3 (1 request, 0 failures), day 1 (2, 1), day 7 (4, 4);
    /// o = day 1 (5, 2), day 2 (1, 1), day 3 (0, 0), day 9 (3, 0).
    /// Day 1: 2 + 5 = 7, 1 + 2 = 3; day 2: o's (1, 1); day 3: 1 + 0, 0 + 0;
    /// day 7: v's (4, 4); day 9: o's (3, 0).
    #[test]
    fn merge_vec_adds_by_tag() {
        let want = vec![(1, 7, 3), (2, 1, 1), (3, 1, 0), (7, 4, 4), (9, 3, 0)];
        let mut v = Tagged::from_vec(vec![(3, 1, 0), (1, 2, 1), (7, 4, 4)]);
        merge_vec(&mut v, &[(1, 5, 2), (2, 1, 1), (3, 0, 0), (9, 3, 0)]);
        assert_eq!(v.to_vec(), want);
        // Both sides in order, and `o` unsorted: the same sums.
        let mut v = Tagged::from_vec(vec![(1, 2, 1), (3, 1, 0), (7, 4, 4)]);
        merge_vec(&mut v, &[(9, 3, 0), (3, 0, 0), (1, 5, 2), (2, 1, 1)]);
        assert_eq!(v.to_vec(), want);
        // Into an empty side: `o` itself, in order; from an empty side:
        // unchanged.
        let mut v = Tagged::new();
        merge_vec(&mut v, &[(2, 1, 1), (1, 5, 2)]);
        assert_eq!(v.to_vec(), vec![(1, 5, 2), (2, 1, 1)]);
        merge_vec(&mut v, &[]);
        assert_eq!(v.to_vec(), vec![(1, 5, 2), (2, 1, 1)]);
        // Saturating, as `bump` does: u32::MAX - 1 + 5 stays u32::MAX.
        let mut v = Tagged::from_vec(vec![(4, u32::MAX - 1, 0)]);
        merge_vec(&mut v, &[(4, 5, 1)]);
        assert_eq!(v.to_vec(), vec![(4, u32::MAX, 1)]);
    }

    /// Checkpoints written when these lists were `Vec`s read back: the
    /// inline list is encoded as a `Vec` (bincode, as `checkpoint` writes
    /// it), with one entry (inline) and with three (on the heap).
    #[test]
    fn tagged_lists_encode_as_vecs_did() {
        #[derive(Serialize)]
        struct Old {
            days: Vec<(i32, u32, u32)>,
            hours: Vec<(i32, u32, u32)>,
        }
        // And in the size of a `Vec` header.
        assert_eq!(
            std::mem::size_of::<Tagged>(),
            std::mem::size_of::<Vec<u8>>()
        );
        let cfg = bincode::config::standard();
        for days in [vec![(20_412, 3, 1)], vec![(1, 1, 0), (2, 5, 5), (-3, 0, 0)]] {
            let old = Old {
                days: days.clone(),
                hours: vec![],
            };
            let new = ConnCounts {
                days: Tagged::from_vec(days.clone()),
                hours: Tagged::new(),
            };
            let old_bytes = bincode::serde::encode_to_vec(&old, cfg).unwrap();
            assert_eq!(bincode::serde::encode_to_vec(&new, cfg).unwrap(), old_bytes);
            let (back, _): (ConnCounts, usize) =
                bincode::serde::decode_from_slice(&old_bytes, cfg).unwrap();
            assert_eq!(back.days.to_vec(), days);
            assert!(back.hours.is_empty());
        }
    }

    /// The sample rule written out on its own: the `shift` bits below the
    /// hash's top byte are all zero.
    fn sampled(id: &str, shift: u32) -> bool {
        let h = xxh3_64(id.as_bytes());
        shift == 0 || (h >> (56 - shift)) & ((1u64 << shift) - 1) == 0
    }

    fn feed(e: &mut Engine, p: &Params, cloud: Cloud, ids: impl Iterator<Item = String>) {
        let b = SeriesBudget::new(100);
        for id in ids {
            let mut x = ev("2026-11-20T10:00:00Z", None);
            x.cloud = cloud;
            x.connection = Some(Cow::Owned(id));
            e.ingest(&x, &Admission::default(), p, &b).unwrap();
        }
    }

    /// Memory stays at the cap with far more connections, the shift is the
    /// smallest whose sample fits, and the scaled count is within its error.
    /// 300,000 connections, cap 1,000: a share of 2^-8 keeps about 1,172
    /// (> 1,000), 2^-9 about 586: shift 9. The count of the sample is about
    /// Binomial(300,000, 2^-9): standard error sqrt(586) = 24.2, so the
    /// scaled estimate is within 4 × 24.2 × 512 = 49,600 of 300,000.
    #[test]
    fn sample_is_bounded_and_scaled() {
        let p = Params {
            max_connections_per_scope: 1_000,
            ..params()
        };
        let mut e = Engine::default();
        feed(
            &mut e,
            &p,
            Cloud::Public,
            (0..300_000).map(|i| format!("k{i}")),
        );
        let s = e.connectors["c"].clouds[0].as_deref().unwrap();
        assert_eq!(s.conn_shift, 9);
        assert!(s.conns.len() <= 1_000);
        let kept = (0..300_000)
            .filter(|i| sampled(&format!("k{i}"), 9))
            .count();
        assert_eq!(s.conns.len(), kept);
        let now = parse_rfc3339("2026-11-20T12:00:00Z").unwrap();
        let t = connection_totals(&[s], Window::Days(30), now);
        assert_eq!(t.scale, 512);
        let est = t.totals.len() as u64 * t.scale;
        assert!(est.abs_diff(300_000) <= 49_600, "{est}");
    }

    /// "cloud = all" merges a sampled cloud with an exact one at the
    /// smaller share: the exact cloud's connections outside that share drop
    /// out, and a connection in both clouds counts once.
    #[test]
    fn all_scope_uses_the_smaller_share() {
        let p = Params {
            max_connections_per_scope: 100,
            ..params()
        };
        let mut e = Engine::default();
        feed(
            &mut e,
            &p,
            Cloud::Public,
            (0..1_000).map(|i| format!("k{i}")),
        );
        // Gcc: 50 of public's ids and 50 of its own, exact.
        feed(
            &mut e,
            &p,
            Cloud::Gcc,
            (950..1_050).map(|i| format!("k{i}")),
        );
        let c = &e.connectors["c"];
        let (public, gcc) = (
            c.clouds[Cloud::Public.index()].as_deref().unwrap(),
            c.clouds[Cloud::Gcc.index()].as_deref().unwrap(),
        );
        assert_eq!(gcc.conn_shift, 0);
        let shift = public.conn_shift;
        assert!(shift >= 1);
        let now = parse_rfc3339("2026-11-20T12:00:00Z").unwrap();
        let all = connection_totals(&[public, gcc], Window::Days(30), now);
        assert_eq!(all.scale, 1 << shift);
        // The union k0..k1049, sampled at `shift`, each once.
        let want = (0..1_050)
            .filter(|i| sampled(&format!("k{i}"), shift))
            .count();
        assert_eq!(all.totals.len(), want);
        let exact = connection_totals(&[gcc], Window::Days(30), now);
        assert_eq!((exact.totals.len(), exact.scale), (100, 1));
    }
}
