//! Aggregated state per scope (SPEC §4–5): bucket rings of counters and
//! latencies, distinct users and connections, and per-connection counters
//! for the SLO. No per-event storage: memory is bounded by scopes × buckets ×
//! (distinct entries up to a cap, then fixed-size sketches).
//!
//! Design choices:
//! - Buckets are tagged with their absolute UTC day (or hour) index and kept
//!   in rings of `retention_days` days and `MAX(hour windows)` hours. A slot
//!   whose tag is older than a new event's day is reused; the events it held
//!   are counted as aged out. Windows are evaluated at query time against any
//!   `now`, so `report` can use "the latest event" as `now` without reading
//!   its input twice.
//! - Distinct values are stored as 64-bit xxh3 hashes (stable across
//!   versions, so snapshots stay valid) with a bitmask of the days each was
//!   seen on: one pass answers every window, exactly. Past
//!   `EXACT_DISTINCT_CAP` hashes in a scope the map turns into one set per
//!   day, exact up to 10,000 values, then a HyperLogLog
//!   (`cardinality-estimator`, 2^14 registers, ~0.8% standard error).
//! - Latencies are kept exactly (for nearest-rank quantiles) up to
//!   `EXACT_LATENCY_CAP` per bucket, then in an HDR histogram with two
//!   significant digits (< 1% relative error).
//! - Every structure merges, so shards and "cloud = all" combine exactly.
//!
//! Nothing here reads a clock: every call takes the time it needs.

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use cardinality_estimator::CardinalityEstimator;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::classify::{self, Class, Cloud, Fault, Outcome};
use crate::config::Window;
use crate::event::{Event, Reject};
use crate::timeutil::{day_of, hour_of, Micros};

/// Distinct counts keep one bit per day in a `u64`.
pub const MAX_RETENTION_DAYS: u32 = 60;
/// Longest hour window (one week): the hour ring's size.
pub const MAX_HOUR_WINDOW: u32 = 168;
/// Distinct values kept in the bitmask map per scope and kind before
/// switching to per-day sets.
pub const EXACT_DISTINCT_CAP: usize = 65_536;
/// Values one day's set keeps exactly before it becomes a sketch: a window
/// holding at most this many values is counted exactly (SPEC §5).
pub const DAY_EXACT_CAP: usize = 10_000;
/// Exact latencies kept per bucket before switching to an HDR histogram.
pub const EXACT_LATENCY_CAP: usize = 256;
/// Most exact latencies sorted for one window quantile before using HDR.
const EXACT_QUERY_CAP: usize = 8192;
/// HDR range in microseconds: 1 µs .. 1 hour; longer latencies saturate.
const HDR_MAX_US: u64 = 3_600_000_000;

type Sketch = CardinalityEstimator<u64, DefaultHasher, 14, 6>;

/// Maps keyed by xxh3 hashes use the key itself as the hash: the keys are
/// already uniformly distributed 64-bit values, so SipHash would only cost.
pub type IdHash = std::hash::BuildHasherDefault<nohash_hasher::NoHashHasher<u64>>;

/// Connector ids are looked up once per event: xxh3 is several times
/// faster than the default SipHash, and ids are not attacker-chosen keys
/// that could flood one bucket (`max_series` caps them anyway).
pub type ConnectorHash = xxhash_rust::xxh3::Xxh3DefaultBuilder;

/// Parameters the state needs, derived from the config.
#[derive(Debug, Clone)]
pub struct Params {
    pub retention_days: u32,
    pub hour_ring: u32,
    pub unattributed: Fault,
    pub max_connections_per_scope: usize,
}

impl Params {
    pub fn from_config(c: &crate::config::Config) -> Params {
        let hour_ring = c
            .windows()
            .iter()
            .filter_map(|w| match w {
                Window::Hours(n) => Some(*n),
                _ => None,
            })
            .max()
            .unwrap_or(1);
        Params {
            retention_days: c.criteria.retention_days,
            hour_ring,
            unattributed: c.criteria.unattributed_failure_origin,
            max_connections_per_scope: c.state.max_connections_per_scope,
        }
    }
}

/// The counters of SPEC §5 over some span of events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub requests: u64,
    pub throttled: u64,
    pub success: u64,
    pub connector_failures: u64,
    pub backend_failures: u64,
    pub client_failures: u64,
    /// Requests by [`Class::index`].
    pub class: [u64; 6],
}

impl Counts {
    pub fn record(&mut self, class: Class, outcome: Outcome) {
        self.requests += 1;
        self.class[class.index()] += 1;
        match outcome {
            Outcome::Throttled => self.throttled += 1,
            Outcome::Success => self.success += 1,
            Outcome::Failure(Fault::Connector) => self.connector_failures += 1,
            Outcome::Failure(Fault::Backend) => self.backend_failures += 1,
            Outcome::Failure(Fault::Client) => self.client_failures += 1,
        }
    }
    pub fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.throttled += o.throttled;
        self.success += o.success;
        self.connector_failures += o.connector_failures;
        self.backend_failures += o.backend_failures;
        self.client_failures += o.client_failures;
        for (a, b) in self.class.iter_mut().zip(o.class) {
            *a += b;
        }
    }
    /// Every event that is not throttled.
    pub fn eligible(&self) -> u64 {
        self.requests - self.throttled
    }
    pub fn failures(&self) -> u64 {
        self.connector_failures + self.backend_failures + self.client_failures
    }
}

/// Latencies of one bucket: exact while few, then an HDR histogram (µs).
#[derive(Debug, Clone, Default)]
pub struct Latency {
    exact: Vec<f64>,
    hist: Option<Box<Histogram<u64>>>,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HDR_MAX_US, 2).expect("static HDR bounds are valid")
}

fn to_us(ms: f64) -> u64 {
    // Saturating float → int conversion; NaN cannot reach here (validated).
    (ms * 1000.0).round() as u64
}

impl Latency {
    fn record(&mut self, ms: f64) {
        if let Some(h) = &mut self.hist {
            h.saturating_record(to_us(ms));
        } else {
            self.exact.push(ms);
            if self.exact.len() > EXACT_LATENCY_CAP {
                let mut h = new_hist();
                for v in self.exact.drain(..) {
                    h.saturating_record(to_us(v));
                }
                self.exact = Vec::new();
                self.hist = Some(Box::new(h));
            }
        }
    }
    fn merge(&mut self, o: &Latency) {
        for &v in &o.exact {
            self.record(v);
        }
        if let Some(oh) = &o.hist {
            let h = self.hist.get_or_insert_with(|| {
                let mut h = new_hist();
                for v in self.exact.drain(..) {
                    h.saturating_record(to_us(v));
                }
                Box::new(h)
            });
            h.add(oh.as_ref()).expect("same HDR bounds");
        }
        if let Some(h) = self.hist.as_mut() {
            for v in self.exact.drain(..) {
                h.saturating_record(to_us(v));
            }
        }
    }
    fn len(&self) -> u64 {
        self.exact.len() as u64 + self.hist.as_ref().map_or(0, |h| h.len())
    }
}

/// Nearest-rank quantiles (SPEC §8) of a set of latency buckets, in ms:
/// the smallest recorded v with at least ⌈p·n/100⌉ values ≤ v.
pub fn quantiles<'a>(
    parts: impl Iterator<Item = &'a Latency> + Clone,
    pcts: &[u32],
) -> Vec<Option<f64>> {
    let n: u64 = parts.clone().map(Latency::len).sum();
    if n == 0 {
        return vec![None; pcts.len()];
    }
    let any_hist = parts.clone().any(|l| l.hist.is_some());
    let rank = |p: u32| ((p as u64 * n).div_ceil(100)).max(1);
    if !any_hist && n as usize <= EXACT_QUERY_CAP {
        let mut v: Vec<f64> = parts.flat_map(|l| l.exact.iter().copied()).collect();
        v.sort_by(f64::total_cmp);
        return pcts
            .iter()
            .map(|&p| Some(v[(rank(p) - 1) as usize]))
            .collect();
    }
    let mut h = new_hist();
    for l in parts {
        for &v in &l.exact {
            h.saturating_record(to_us(v));
        }
        if let Some(oh) = &l.hist {
            h.add(oh.as_ref()).expect("same HDR bounds");
        }
    }
    pcts.iter()
        .map(|&p| Some(h.value_at_quantile(p as f64 / 100.0) as f64 / 1000.0))
        .collect()
}

/// One day's or one hour's aggregates.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bucket {
    /// Absolute day or hour index; `EMPTY` when unused.
    pub tag: i32,
    pub counts: Counts,
    #[serde(with = "latency_serde")]
    pub latency: Latency,
}

const EMPTY: i32 = i32::MIN;

impl Bucket {
    fn empty() -> Bucket {
        Bucket {
            tag: EMPTY,
            counts: Counts::default(),
            latency: Latency::default(),
        }
    }
}

/// A ring of buckets indexed by tag modulo its length.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ring {
    slots: Vec<Bucket>,
}

impl Ring {
    fn new(n: u32) -> Ring {
        Ring {
            slots: (0..n.max(1)).map(|_| Bucket::empty()).collect(),
        }
    }
    /// The bucket for `tag`, reusing an older slot. `None` when the slot
    /// already holds a newer tag (the event is too old for this ring).
    /// `aged` receives the request count of a reused slot.
    fn slot(&mut self, tag: i32, aged: &mut u64) -> Option<&mut Bucket> {
        let n = self.slots.len() as i64;
        let b = &mut self.slots[(tag as i64).rem_euclid(n) as usize];
        if b.tag == tag {
            return Some(b);
        }
        if b.tag != EMPTY && b.tag > tag {
            return None;
        }
        *aged += b.counts.requests;
        *b = Bucket::empty();
        b.tag = tag;
        Some(b)
    }
    /// Buckets whose tag lies in `lo..=hi`.
    pub fn range(&self, lo: i32, hi: i32) -> impl Iterator<Item = &Bucket> + Clone {
        self.slots
            .iter()
            .filter(move |b| b.tag != EMPTY && b.tag >= lo && b.tag <= hi)
    }
    fn merge(&mut self, o: &Ring, aged: &mut u64) {
        for ob in o.slots.iter().filter(|b| b.tag != EMPTY) {
            match self.slot(ob.tag, aged) {
                Some(b) => {
                    b.counts.add(&ob.counts);
                    b.latency.merge(&ob.latency);
                }
                None => *aged += ob.counts.requests,
            }
        }
    }
}

/// One day's distinct values once a scope has left the bitmask map: exact
/// up to `DAY_EXACT_CAP` values, then a HyperLogLog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DaySet {
    Exact(HashSet<u64, IdHash>),
    Sketch(Box<Sketch>),
}

impl DaySet {
    fn insert(&mut self, h: u64) {
        match self {
            DaySet::Exact(set) => {
                set.insert(h);
                if set.len() > DAY_EXACT_CAP {
                    let mut sk = Sketch::new();
                    for v in set.iter() {
                        sk.insert_hash(*v);
                    }
                    *self = DaySet::Sketch(Box::new(sk));
                }
            }
            DaySet::Sketch(sk) => sk.insert_hash(h),
        }
    }
    fn merge(&mut self, o: &DaySet) {
        match o {
            DaySet::Exact(set) => set.iter().for_each(|h| self.insert(*h)),
            DaySet::Sketch(osk) => {
                if let DaySet::Exact(set) = self {
                    let mut sk = Sketch::new();
                    set.iter().for_each(|h| sk.insert_hash(*h));
                    *self = DaySet::Sketch(Box::new(sk));
                }
                if let DaySet::Sketch(sk) = self {
                    sk.merge(osk);
                }
            }
        }
    }
}

/// Distinct values (hashes) with the days each was seen on.
///
/// Two representations: while a scope's whole retention holds at most
/// `EXACT_DISTINCT_CAP` values, one map of hash → bitmask of days (one pass
/// answers any window); beyond, one [`DaySet`] per day, each exact up to
/// `DAY_EXACT_CAP` = 10,000 values. A window holding at most 10,000 values
/// has no day over that, so it is always counted exactly (SPEC §5); a bigger
/// one merges the days' sketches.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Distinct {
    /// Hash → bitmask of days (bit = day mod 64). `None` once over the cap.
    exact: Option<HashMap<u64, u64, IdHash>>,
    /// Per-day sets (ring by day), used once over the cap.
    days: Vec<Option<(i32, DaySet)>>,
    /// Highest day recorded; bits of days in (max - 64, max] are meaningful.
    max_day: i32,
}

impl Distinct {
    fn new() -> Distinct {
        Distinct {
            exact: Some(HashMap::default()),
            days: Vec::new(),
            max_day: EMPTY,
        }
    }

    /// Clears the bits of days (max_day, day] so they no longer alias days
    /// 64 earlier, and forgets values seen on no remaining day.
    fn advance(&mut self, day: i32) {
        if self.max_day == EMPTY {
            self.max_day = day;
            return;
        }
        if day <= self.max_day {
            return;
        }
        let gap = (day as i64 - self.max_day as i64).min(64);
        let mut clear = 0u64;
        for d in (day as i64 - gap + 1)..=(day as i64) {
            clear |= 1u64 << d.rem_euclid(64);
        }
        if let Some(m) = &mut self.exact {
            m.retain(|_, bits| {
                *bits &= !clear;
                *bits != 0
            });
        }
        self.max_day = day;
    }

    fn insert(&mut self, hash: u64, day: i32, retention: u32) {
        self.advance(day);
        if let Some(m) = &mut self.exact {
            *m.entry(hash).or_insert(0) |= 1u64 << (day as i64).rem_euclid(64);
            if m.len() > EXACT_DISTINCT_CAP {
                self.switch_to_days(retention);
            }
        } else if let Some(set) = self.day_set(day, retention) {
            set.insert(hash);
        }
    }

    /// The set of `day`, reusing an older day's slot; `None` when the slot
    /// holds a newer day (the value is older than the ring).
    fn day_set(&mut self, day: i32, retention: u32) -> Option<&mut DaySet> {
        if self.days.is_empty() {
            self.days = (0..retention.max(1)).map(|_| None).collect();
        }
        let n = self.days.len() as i64;
        let slot = &mut self.days[(day as i64).rem_euclid(n) as usize];
        match slot {
            Some((d, _)) if *d > day => return None,
            Some((d, _)) if *d == day => {}
            _ => *slot = Some((day, DaySet::Exact(HashSet::default()))),
        }
        slot.as_mut().map(|(_, s)| s)
    }

    fn switch_to_days(&mut self, retention: u32) {
        let Some(m) = self.exact.take() else { return };
        let max = self.max_day as i64;
        for (h, bits) in m {
            for back in 0..(retention as i64).min(64) {
                let d = max - back;
                if bits & (1u64 << d.rem_euclid(64)) != 0 {
                    if let Some(set) = self.day_set(d as i32, retention) {
                        set.insert(h);
                    }
                }
            }
        }
    }

    fn merge(&mut self, o: &Distinct, retention: u32) {
        if o.max_day == EMPTY {
            return;
        }
        let top = self.max_day.max(o.max_day);
        self.advance(top);
        let mut o = o.clone();
        o.advance(top);
        if self.exact.is_some() && o.exact.is_some() {
            let m = self.exact.as_mut().expect("checked");
            for (h, bits) in o.exact.take().expect("checked") {
                *m.entry(h).or_insert(0) |= bits;
            }
            if m.len() > EXACT_DISTINCT_CAP {
                self.switch_to_days(retention);
            }
            return;
        }
        self.switch_to_days(retention);
        o.switch_to_days(retention);
        for (d, set) in o.days.iter().flatten() {
            if *d > top - retention as i32 {
                if let Some(mine) = self.day_set(*d, retention) {
                    mine.merge(set);
                }
            }
        }
    }
}

/// Distinct values over days `lo..=hi` across several [`Distinct`]s:
/// exact unless a day in the window is over `DAY_EXACT_CAP`.
pub fn distinct_count(parts: &[&Distinct], lo: i32, hi: i32) -> u64 {
    // Bits of days this structure can vouch for: (max-64, max] ∩ [lo, hi].
    let mask_for = |d: &Distinct| {
        let mut mask = 0u64;
        if d.max_day == EMPTY {
            return 0;
        }
        let from = (lo as i64).max(d.max_day as i64 - 63);
        let to = (hi as i64).min(d.max_day as i64);
        let mut day = from;
        while day <= to {
            mask |= 1u64 << day.rem_euclid(64);
            day += 1;
        }
        mask
    };
    if let [one] = parts {
        if let Some(m) = &one.exact {
            let mask = mask_for(one);
            return m.values().filter(|&&b| b & mask != 0).count() as u64;
        }
    }
    fn in_window(d: &Distinct, lo: i32, hi: i32) -> impl Iterator<Item = &DaySet> {
        d.days
            .iter()
            .flatten()
            .filter(move |(day, _)| *day >= lo && *day <= hi)
            .map(|(_, s)| s)
    }
    let any_sketch = parts
        .iter()
        .any(|d| in_window(d, lo, hi).any(|s| matches!(s, DaySet::Sketch(_))));
    if !any_sketch {
        let mut seen: HashSet<u64, IdHash> = HashSet::default();
        for d in parts {
            match &d.exact {
                Some(m) => {
                    let mask = mask_for(d);
                    seen.extend(m.iter().filter(|(_, b)| *b & mask != 0).map(|(h, _)| *h));
                }
                None => {
                    for s in in_window(d, lo, hi) {
                        if let DaySet::Exact(set) = s {
                            seen.extend(set.iter().copied());
                        }
                    }
                }
            }
        }
        return seen.len() as u64;
    }
    let mut acc = Sketch::new();
    for d in parts {
        match &d.exact {
            Some(m) => {
                let mask = mask_for(d);
                for (h, b) in m {
                    if b & mask != 0 {
                        acc.insert_hash(*h);
                    }
                }
            }
            None => {
                for s in in_window(d, lo, hi) {
                    match s {
                        DaySet::Exact(set) => set.iter().for_each(|h| acc.insert_hash(*h)),
                        DaySet::Sketch(sk) => acc.merge(sk),
                    }
                }
            }
        }
    }
    acc.estimate() as u64
}

/// Per-connection counters for the SLO: (bucket tag, availability
/// denominator, connector failures), for days and for hours.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnCounts {
    days: Vec<(i32, u32, u32)>,
    hours: Vec<(i32, u32, u32)>,
}

fn bump(v: &mut Vec<(i32, u32, u32)>, tag: i32, fail: bool) {
    match v.iter_mut().find(|e| e.0 == tag) {
        Some(e) => {
            e.1 = e.1.saturating_add(1);
            e.2 = e.2.saturating_add(fail as u32);
        }
        None => v.push((tag, 1, fail as u32)),
    }
}

fn merge_vec(v: &mut Vec<(i32, u32, u32)>, o: &[(i32, u32, u32)]) {
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
    /// Connections not tracked for the SLO because of the per-scope cap.
    pub conns_untracked: u64,
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
            conns_untracked: 0,
            after_now: 0,
            max_day: EMPTY,
            max_hour: EMPTY,
        }
    }

    /// Adds one valid event. Returns the requests aged out of reused slots.
    fn record(&mut self, ev: &Event<'_>, p: &Params) -> u64 {
        let class = Class::of(ev.status);
        let outcome = classify::outcome(ev.status, ev.fault, p.unattributed);
        let (day, hour) = (day_of(ev.ts), hour_of(ev.ts));
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
        if let Some(b) = self.hours.slot(hour, &mut hour_aged) {
            b.counts.record(class, outcome);
            if let Some(ms) = ev.latency_ms {
                b.latency.record(ms);
            }
        }
        if let Some(u) = &ev.user {
            self.users
                .insert(xxh3_64(u.as_bytes()), day, p.retention_days);
        }
        if day > self.max_day || hour > self.max_hour {
            self.prune_conns(day, hour, p);
        }
        if let Some(c) = &ev.connection {
            let h = xxh3_64(c.as_bytes());
            self.connections.insert(h, day, p.retention_days);
            // Only events that count for availability make a connection active.
            let counts = match outcome {
                Outcome::Success | Outcome::Failure(Fault::Client) => Some(false),
                Outcome::Failure(Fault::Connector) => Some(true),
                Outcome::Throttled | Outcome::Failure(Fault::Backend) => None,
            };
            if let Some(fail) = counts {
                let cap = p.max_connections_per_scope;
                let len = self.conns.len();
                match self.conns.entry(h) {
                    Entry::Occupied(mut e) => {
                        bump(&mut e.get_mut().days, day, fail);
                        bump(&mut e.get_mut().hours, hour, fail);
                    }
                    Entry::Vacant(e) if len < cap => {
                        let c = e.insert(ConnCounts::default());
                        bump(&mut c.days, day, fail);
                        bump(&mut c.hours, hour, fail);
                    }
                    Entry::Vacant(_) => self.conns_untracked += 1,
                }
            }
        }
        aged
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
        for (h, c) in &o.conns {
            let e = self.conns.entry(*h).or_default();
            merge_vec(&mut e.days, &c.days);
            merge_vec(&mut e.hours, &c.hours);
        }
        self.conns_untracked += o.conns_untracked;
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

/// All the clouds of one connector.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectorState {
    pub clouds: [Option<Box<ScopeState>>; 6],
}

impl ConnectorState {
    pub fn scopes(&self) -> impl Iterator<Item = (Cloud, &ScopeState)> {
        Cloud::ALL
            .iter()
            .filter_map(|c| self.clouds[c.index()].as_deref().map(|s| (*c, s)))
    }
}

/// The series budget shared by all shards (`max_series`).
#[derive(Debug)]
pub struct SeriesBudget {
    used: AtomicUsize,
    limit: usize,
}

impl SeriesBudget {
    pub fn new(limit: usize) -> SeriesBudget {
        SeriesBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }
    fn claim(&self) -> bool {
        if self.used.fetch_add(1, Ordering::Relaxed) >= self.limit {
            self.used.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }
    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

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

    /// The daemon at wall-clock `now`: `too_old` and `from_future`.
    pub fn daemon_at(now: Micros, retention_days: u32, max_future_skew_seconds: u64) -> Admission {
        Admission {
            min_day: Some(retention_start(now, retention_days)),
            max_ts: Some(now + max_future_skew_seconds as Micros * 1_000_000),
            cutoff: None,
        }
    }
}

/// The state of a set of connectors (one shard of the daemon, or all).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Engine {
    pub connectors: HashMap<String, ConnectorState, ConnectorHash>,
    /// Highest event day recorded; events older than its retention are `too_old`.
    pub max_day: i32,
    /// Requests dropped from reused buckets (`too_old` in hindsight).
    pub aged_out: u64,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            connectors: HashMap::default(),
            max_day: EMPTY,
            aged_out: 0,
        }
    }
}

impl Engine {
    /// Admits and records one valid event, or says why it is rejected
    /// (`too_old`, `from_future`, `series_limit`).
    pub fn ingest(
        &mut self,
        ev: &Event<'_>,
        adm: &Admission,
        p: &Params,
        budget: &SeriesBudget,
    ) -> Result<(), Reject> {
        let day = day_of(ev.ts);
        // Events too old for the newest day recorded (report without `--now`).
        let own_min = if self.max_day == EMPTY {
            i32::MIN
        } else {
            self.max_day - p.retention_days as i32 + 1
        };
        if adm.min_day.is_some_and(|m| day < m) || day < own_min {
            return Err(Reject::TooOld);
        }
        if adm.max_ts.is_some_and(|m| ev.ts > m) {
            return Err(Reject::FromFuture);
        }
        let after_now = adm.cutoff.is_some_and(|c| ev.ts > c);
        let conn = match self.connectors.get_mut(ev.connector.as_ref()) {
            Some(c) => c,
            None => {
                if !budget.claim() {
                    return Err(Reject::SeriesLimit);
                }
                let c = self.connectors.entry(ev.connector.to_string()).or_default();
                c.clouds[ev.cloud.index()] = Some(Box::new(ScopeState::new(p)));
                c
            }
        };
        let slot = &mut conn.clouds[ev.cloud.index()];
        if slot.is_none() {
            if !budget.claim() {
                return Err(Reject::SeriesLimit);
            }
            *slot = Some(Box::new(ScopeState::new(p)));
        }
        let scope = slot.as_mut().expect("just ensured");
        if after_now {
            scope.after_now += 1;
            return Ok(());
        }
        self.aged_out += scope.record(ev, p);
        self.max_day = self.max_day.max(day);
        Ok(())
    }

    /// Merges another engine (another shard or batch of the same events).
    pub fn merge(&mut self, o: &Engine, p: &Params, budget: &SeriesBudget) {
        self.aged_out += o.aged_out;
        self.max_day = self.max_day.max(o.max_day);
        for (id, oc) in &o.connectors {
            let c = self.connectors.entry(id.clone()).or_default();
            for cloud in Cloud::ALL {
                let Some(os) = &oc.clouds[cloud.index()] else {
                    continue;
                };
                match &mut c.clouds[cloud.index()] {
                    Some(s) => self.aged_out += s.merge(os, p),
                    slot @ None => {
                        budget.claim();
                        *slot = Some(os.clone());
                    }
                }
            }
        }
    }

    /// Forgets scopes with no events left in `min_day..` (daemon: scopes
    /// whose traffic stopped more than `retention_days` ago; report: also
    /// scopes whose only events come after `--now`, which do not exist yet
    /// at `now`, SPEC §5), releasing their series budget. Returns how many
    /// were dropped.
    pub fn prune(&mut self, min_day: i32, budget: &SeriesBudget) -> usize {
        let mut dropped = 0;
        self.connectors.retain(|_, c| {
            for slot in c.clouds.iter_mut() {
                if slot
                    .as_ref()
                    .is_some_and(|s| s.requests_in_days(min_day, i32::MAX) == 0)
                {
                    *slot = None;
                    dropped += 1;
                }
            }
            c.clouds.iter().any(Option::is_some)
        });
        budget.release(dropped);
        dropped
    }

    /// Number of (connector, cloud) scopes held.
    pub fn scope_count(&self) -> usize {
        self.connectors
            .values()
            .map(|c| c.clouds.iter().filter(|s| s.is_some()).count())
            .sum()
    }
}

/// The shard of a connector id among `n` shards.
pub fn shard_of(connector: &str, n: usize) -> usize {
    (xxh3_64(connector.as_bytes()) % n as u64) as usize
}

mod latency_serde {
    //! HDR histograms serialize in their own V2 format inside the snapshot.
    use super::Latency;
    use hdrhistogram::serialization::{Deserializer as HDe, Serializer as _, V2Serializer};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Repr {
        exact: Vec<f64>,
        hist: Option<Vec<u8>>,
    }

    pub fn serialize<S: Serializer>(l: &Latency, s: S) -> Result<S::Ok, S::Error> {
        let hist = match &l.hist {
            Some(h) => {
                let mut buf = Vec::new();
                V2Serializer::new()
                    .serialize(h.as_ref(), &mut buf)
                    .map_err(serde::ser::Error::custom)?;
                Some(buf)
            }
            None => None,
        };
        Repr {
            exact: l.exact.clone(),
            hist,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Latency, D::Error> {
        let r = Repr::deserialize(d)?;
        let hist = match r.hist {
            Some(b) => Some(Box::new(
                HDe::new()
                    .deserialize(&mut &b[..])
                    .map_err(serde::de::Error::custom)?,
            )),
            None => None,
        };
        Ok(Latency {
            exact: r.exact,
            hist,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeutil::parse_rfc3339;
    use std::borrow::Cow;

    fn params() -> Params {
        Params {
            retention_days: 35,
            hour_ring: 1,
            unattributed: Fault::Connector,
            max_connections_per_scope: 1000,
        }
    }

    fn ev(ts: &str, user: Option<&str>) -> Event<'static> {
        Event {
            ts: parse_rfc3339(ts).unwrap(),
            connector: Cow::Borrowed("c"),
            cloud: Cloud::Public,
            status: Some(200),
            fault: None,
            latency_ms: None,
            user: user.map(|u| Cow::Owned(u.to_string())),
            connection: None,
        }
    }

    #[test]
    fn distinct_exact_with_day_windows() {
        let p = params();
        let b = SeriesBudget::new(10);
        let mut e = Engine::default();
        for (ts, u) in [
            ("2026-11-20T10:00:00Z", "a"),
            ("2026-11-20T11:00:00Z", "a"),
            ("2026-11-19T10:00:00Z", "b"),
            ("2026-11-13T23:59:59Z", "c"),
            ("2026-11-14T00:00:00Z", "c"),
        ] {
            e.ingest(&ev(ts, Some(u)), &Admission::default(), &p, &b)
                .unwrap();
        }
        let s = e.connectors["c"].clouds[0].as_deref().unwrap();
        let d = day_of(parse_rfc3339("2026-11-20T00:00:00Z").unwrap());
        assert_eq!(distinct_count(&[&s.users], d - 6, d), 3); // a, b, c (Nov 14)
        assert_eq!(distinct_count(&[&s.users], d - 13, d - 7), 1); // c (Nov 13)
        assert_eq!(distinct_count(&[&s.users], d, d), 1);
    }

    #[test]
    fn distinct_bits_do_not_alias_after_64_days() {
        let mut dd = Distinct::new();
        dd.insert(1, 100, 35);
        dd.insert(2, 164, 35); // same bit as day 100
        assert_eq!(distinct_count(&[&dd], 164, 164), 1);
        assert_eq!(distinct_count(&[&dd], 130, 164), 1);
    }

    #[test]
    fn distinct_sketch_within_two_percent() {
        let mut dd = Distinct::new();
        let n = 200_000u64;
        for i in 0..n {
            dd.insert(xxh3_64(&i.to_le_bytes()), 1000 + (i % 7) as i32, 35);
        }
        assert!(dd.exact.is_none());
        let est = distinct_count(&[&dd], 1000, 1006) as f64;
        assert!((est - n as f64).abs() / (n as f64) < 0.02, "{est}");
    }

    #[test]
    fn ring_rejects_older_than_its_slot() {
        let mut r = Ring::new(3);
        let mut aged = 0;
        r.slot(10, &mut aged).unwrap().counts.requests = 5;
        assert!(r.slot(7, &mut aged).is_none());
        r.slot(13, &mut aged).unwrap();
        assert_eq!(aged, 5);
    }

    #[test]
    fn nearest_rank_exact() {
        let mut l = Latency::default();
        for v in [20.0, 3000.0, 100.0] {
            l.record(v);
        }
        let q = quantiles([&l].into_iter(), &[50, 95, 99]);
        assert_eq!(q, vec![Some(100.0), Some(3000.0), Some(3000.0)]);
        let mut l = Latency::default();
        for v in 1..=100 {
            l.record(v as f64);
        }
        let q = quantiles([&l].into_iter(), &[50, 95, 99]);
        assert_eq!(q, vec![Some(50.0), Some(95.0), Some(99.0)]);
    }

    #[test]
    fn hdr_quantiles_within_one_percent() {
        let mut l = Latency::default();
        for v in 1..=10_000 {
            l.record(v as f64 / 10.0);
        }
        assert!(l.hist.is_some());
        let q = quantiles([&l].into_iter(), &[50, 95, 99]);
        for (got, want) in q.iter().zip([500.0, 950.0, 990.0]) {
            let g = got.unwrap();
            assert!((g - want).abs() / want <= 0.01, "{g} vs {want}");
        }
    }

    #[test]
    fn series_limit_counts_scopes() {
        let p = params();
        let b = SeriesBudget::new(2);
        let mut e = Engine::default();
        let mut x = ev("2026-11-20T10:00:00Z", None);
        e.ingest(&x, &Admission::default(), &p, &b).unwrap();
        x.cloud = Cloud::Gcc;
        e.ingest(&x, &Admission::default(), &p, &b).unwrap();
        x.cloud = Cloud::Dod;
        assert_eq!(
            e.ingest(&x, &Admission::default(), &p, &b),
            Err(Reject::SeriesLimit)
        );
        x.connector = Cow::Borrowed("other");
        assert_eq!(
            e.ingest(&x, &Admission::default(), &p, &b),
            Err(Reject::SeriesLimit)
        );
        x.connector = Cow::Borrowed("c");
        x.cloud = Cloud::Public;
        assert!(e.ingest(&x, &Admission::default(), &p, &b).is_ok());
        assert_eq!(b.used(), 2);
    }
}
