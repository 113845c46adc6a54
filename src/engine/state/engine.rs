//! The state of a set of connectors (one shard of the daemon, or all of
//! `report`): admission of events into scopes, the shared series budget,
//! merging shards and pruning scopes past retention.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::admission::Admission;
use super::batch::{Batch, Digest, Recorded};
use super::scope::ScopeState;
use super::{ConnectorHash, Params, EMPTY};
use crate::engine::classify::Cloud;
use crate::engine::event::{Event, Reject};
use crate::engine::timeutil::{day_of, Micros};

/// All the clouds of one connector.
///
/// Each scope sits behind an `Arc` so that a reader's view of an engine (a
/// clone, see [`Engine::view`]) shares every scope with the writer's
/// engine; the writer copies a scope only when it next writes to it while a
/// view still holds it (`Arc::make_mut`). Publishing a view therefore costs
/// the scopes written since the last one, not the whole state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectorState {
    pub clouds: [Option<Arc<ScopeState>>; 6],
}

impl ConnectorState {
    pub fn scopes(&self) -> impl Iterator<Item = (Cloud, &ScopeState)> {
        Cloud::ALL
            .iter()
            .filter_map(|c| self.clouds[c.index()].as_deref().map(|s| (*c, s)))
    }

    /// Merges another state of the same connector; returns the requests
    /// aged out of reused slots.
    pub fn merge(&mut self, o: &ConnectorState, p: &Params, budget: &SeriesBudget) -> u64 {
        let mut aged = 0;
        for cloud in Cloud::ALL {
            let Some(os) = &o.clouds[cloud.index()] else {
                continue;
            };
            match &mut self.clouds[cloud.index()] {
                Some(s) => aged += Arc::make_mut(s).merge(os, p),
                slot @ None => {
                    // The scope exists now whatever the limit: count it, or
                    // a later prune releases what was never claimed.
                    budget.force_claim(1);
                    *slot = Some(Arc::clone(os));
                }
            }
        }
        aged
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
    pub(super) fn claim(&self) -> bool {
        if self.used.fetch_add(1, Ordering::Relaxed) >= self.limit {
            self.used.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }
    /// Counts `n` scopes that exist whatever the limit (restored or merged
    /// state: refusing them would lose counted events). `used` may then
    /// exceed the limit, and new scopes are refused until it is back under.
    pub fn force_claim(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }
    /// Returns `n` scopes. Saturates at zero: an unsigned wrap would refuse
    /// every new scope for the rest of the process.
    pub fn release(&self, n: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(n))
            });
    }
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
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
        let Engine {
            connectors,
            max_day,
            aged_out,
        } = self;
        let (day, after_now) = admit(*max_day, ev.ts, adm, p)?;
        let scope = scope_of(connectors, &ev.connector, ev.cloud, p, budget)?;
        record(
            scope,
            (max_day, aged_out),
            &Recorded::of(ev),
            day,
            after_now,
            p,
        );
        Ok(())
    }

    /// Admits and records a batch of valid events, digested where they
    /// were decoded ([`Digest`]), visiting them scope by scope: every event
    /// of the scope seen first, in batch order, then every event of the
    /// next, and so on. `rejected(i, reason)` hears of each event
    /// `events[i]` not admitted.
    ///
    /// Why: see the `batch` module. The final state is the one of batch
    /// order: each scope sees its own events in order, scopes are created
    /// (and claim the series budget) in the order of their first event,
    /// and what depends on other scopes' events (`max_day`, whence
    /// `too_old`) is settled the same at the end (`aged_out`, the settling
    /// of `report`).
    pub fn ingest_batch(
        &mut self,
        events: &[&Digest],
        adm: &Admission,
        p: &Params,
        budget: &SeriesBudget,
        mut rejected: impl FnMut(usize, Reject),
    ) {
        let Engine {
            connectors,
            max_day,
            aged_out,
        } = self;
        let batch = Batch::of(events);
        for group in batch.groups() {
            // Up to the group's first admitted event, whose scope exists
            // from then on (or every event is rejected).
            let mut rest = group.iter();
            let first = rest.by_ref().find_map(|(i, r)| {
                let d = events[*i as usize];
                let a = admit(*max_day, r.ts, adm, p).and_then(|a| {
                    ensure_scope(connectors, &d.connector, d.cloud, p, budget).map(|()| a)
                });
                match a {
                    Ok((day, after_now)) => Some((d, r, day, after_now)),
                    Err(reason) => {
                        rejected(*i as usize, reason);
                        None
                    }
                }
            });
            let Some((d, r, day, after_now)) = first else {
                continue;
            };
            let scope = scope_mut(connectors, &d.connector, d.cloud);
            record(scope, (max_day, aged_out), r, day, after_now, p);
            for (i, r) in rest {
                match admit(*max_day, r.ts, adm, p) {
                    Ok((day, after_now)) => {
                        record(scope, (max_day, aged_out), r, day, after_now, p)
                    }
                    Err(reason) => rejected(*i as usize, reason),
                }
            }
        }
    }

    /// Merges another engine (another shard or batch of the same events).
    pub fn merge(&mut self, o: &Engine, p: &Params, budget: &SeriesBudget) {
        self.aged_out += o.aged_out;
        self.max_day = self.max_day.max(o.max_day);
        for (id, oc) in &o.connectors {
            let c = self.connectors.entry(id.clone()).or_default();
            self.aged_out += c.merge(oc, p, budget);
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

    /// An immutable copy for readers, sharing every scope with `self` (see
    /// [`ConnectorState`]): O(connectors), whatever the scopes hold.
    pub fn view(&self) -> Engine {
        self.clone()
    }

    /// Number of (connector, cloud) scopes held.
    pub fn scope_count(&self) -> usize {
        self.connectors
            .values()
            .map(|c| c.clouds.iter().filter(|s| s.is_some()).count())
            .sum()
    }
}

/// The checks of one valid event before its scope: `too_old` against the
/// newest day recorded (`max_day`), then the admission. Returns its UTC
/// day and whether it comes after `now` (report with `--now`).
fn admit(max_day: i32, ts: Micros, adm: &Admission, p: &Params) -> Result<(i32, bool), Reject> {
    let day = day_of(ts);
    // Events too old for the newest day recorded (report without `--now`).
    let own_min = if max_day == EMPTY {
        i32::MIN
    } else {
        max_day - p.retention_days as i32 + 1
    };
    if day < own_min {
        return Err(Reject::TooOld);
    }
    adm.admit(ts)?;
    Ok((day, adm.cutoff.is_some_and(|c| ts > c)))
}

/// Records an admitted event into its scope, moving the engine's
/// `(max_day, aged_out)`.
fn record(
    scope: &mut ScopeState,
    (max_day, aged_out): (&mut i32, &mut u64),
    ev: &Recorded,
    day: i32,
    after_now: bool,
    p: &Params,
) {
    if after_now {
        scope.after_now += 1;
        return;
    }
    *aged_out += scope.record(ev, day, p);
    *max_day = (*max_day).max(day);
}

/// The scope of an event, created (and its series claimed) when new; a
/// copy of it when a reader's view still shares it (`Arc::make_mut`).
fn scope_of<'c>(
    connectors: &'c mut HashMap<String, ConnectorState, ConnectorHash>,
    connector: &str,
    cloud: Cloud,
    p: &Params,
    budget: &SeriesBudget,
) -> Result<&'c mut ScopeState, Reject> {
    ensure_scope(connectors, connector, cloud, p, budget)?;
    Ok(scope_mut(connectors, connector, cloud))
}

/// Creates the scope of an event when new, if the series budget allows.
fn ensure_scope(
    connectors: &mut HashMap<String, ConnectorState, ConnectorHash>,
    connector: &str,
    cloud: Cloud,
    p: &Params,
    budget: &SeriesBudget,
) -> Result<(), Reject> {
    let conn = match connectors.get_mut(connector) {
        Some(c) => c,
        None => {
            // A new connector: one claim, for the scope created with it.
            if !budget.claim() {
                return Err(Reject::SeriesLimit);
            }
            let c = connectors.entry(connector.to_string()).or_default();
            c.clouds[cloud.index()] = Some(Arc::new(ScopeState::new(p)));
            return Ok(());
        }
    };
    let slot = &mut conn.clouds[cloud.index()];
    if slot.is_none() {
        if !budget.claim() {
            return Err(Reject::SeriesLimit);
        }
        *slot = Some(Arc::new(ScopeState::new(p)));
    }
    Ok(())
}

/// The existing scope of an event, for writing: a copy of it when a
/// reader's view still shares it (`Arc::make_mut`).
fn scope_mut<'c>(
    connectors: &'c mut HashMap<String, ConnectorState, ConnectorHash>,
    connector: &str,
    cloud: Cloud,
) -> &'c mut ScopeState {
    let slot = connectors
        .get_mut(connector)
        .and_then(|c| c.clouds[cloud.index()].as_mut())
        .expect("ensure_scope made it");
    Arc::make_mut(slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::distinct_count;
    use crate::engine::state::testutil::{ev, params};
    use crate::engine::timeutil::parse_rfc3339;
    use std::borrow::Cow;

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

    /// Issue 8 defect: `merge` ignored what `claim` said, so a restore past
    /// `max_series` followed by a prune released more than was claimed and
    /// the counter wrapped below zero: every new scope was then refused.
    #[test]
    fn merge_past_the_limit_then_prune_keeps_the_budget_sound() {
        let p = params();
        let b = SeriesBudget::new(1);
        let mut restored = Engine::default();
        let mut x = ev("2026-11-01T10:00:00Z", None);
        restored
            .ingest(&x, &Admission::default(), &p, &SeriesBudget::new(10))
            .unwrap();
        x.cloud = Cloud::Gcc;
        restored
            .ingest(&x, &Admission::default(), &p, &SeriesBudget::new(10))
            .unwrap();
        // Two scopes restored under a limit of one: both kept, both counted.
        let mut e = Engine::default();
        e.merge(&restored, &p, &b);
        assert_eq!(e.scope_count(), 2);
        assert_eq!(b.used(), 2);
        // Both leave retention: the budget is back to zero, not wrapped.
        let later = day_of(parse_rfc3339("2026-12-20T00:00:00Z").unwrap());
        assert_eq!(e.prune(later - 34, &b), 2);
        assert_eq!(b.used(), 0);
        let y = ev("2026-12-20T10:00:00Z", None);
        assert!(e.ingest(&y, &Admission::default(), &p, &b).is_ok());
        assert_eq!(b.used(), 1);
    }

    /// A batch is visited scope by scope, but scopes are created in the
    /// order of their first event: with room for two scopes, the batch
    /// (c, public) (other, public) (c, public) (c, gcc) (other, public)
    /// creates c/public then other/public, and c/gcc (4th event, index 3)
    /// is the one refused, as it is one event at a time.
    #[test]
    fn a_batch_claims_scopes_in_order_of_first_event() {
        let p = params();
        let b = SeriesBudget::new(2);
        let mut e = Engine::default();
        let mut evs = Vec::new();
        for (c, cloud) in [
            ("c", Cloud::Public),
            ("other", Cloud::Public),
            ("c", Cloud::Public),
            ("c", Cloud::Gcc),
            ("other", Cloud::Public),
        ] {
            let mut x = ev("2026-11-20T10:00:00Z", None);
            x.connector = Cow::Borrowed(c);
            x.cloud = cloud;
            evs.push(x);
        }
        let digests: Vec<Digest> = evs.iter().map(Digest::of).collect();
        let refs: Vec<&Digest> = digests.iter().collect();
        let mut rejected = Vec::new();
        e.ingest_batch(&refs, &Admission::default(), &p, &b, |i, r| {
            rejected.push((i, r))
        });
        assert_eq!(rejected, vec![(3, Reject::SeriesLimit)]);
        let requests = |c: &str, cloud: Cloud| {
            e.connectors[c].clouds[cloud.index()]
                .as_deref()
                .map(|s| s.total.requests)
        };
        assert_eq!(requests("c", Cloud::Public), Some(2));
        assert_eq!(requests("other", Cloud::Public), Some(2));
        assert_eq!(requests("c", Cloud::Gcc), None);
        assert_eq!(b.used(), 2);
    }

    /// Per-event and per-batch ingestion leave the same state: the same
    /// events (three scopes interleaved, two days, users, connections, a
    /// too old event and one after `now`) one at a time and as one batch
    /// serialize to the same bytes, with the same rejections.
    #[test]
    fn a_batch_leaves_the_state_of_one_event_at_a_time() {
        let p = params();
        let now = parse_rfc3339("2026-11-20T12:00:00Z").unwrap();
        let adm = Admission::report_at(now, p.retention_days);
        let mut evs = Vec::new();
        for (i, (c, ts)) in [
            ("a", "2026-11-20T10:00:00Z"),
            ("b", "2026-11-19T10:00:00Z"),
            ("a", "2026-11-19T11:00:00Z"),
            ("c", "2026-10-01T10:00:00Z"), // before retention: too_old
            ("b", "2026-11-20T13:00:00Z"), // after now
            ("a", "2026-11-20T11:30:00Z"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut x = ev(ts, Some(["u1", "u2"][i % 2]));
            x.connector = Cow::Borrowed(c);
            x.connection = Some(Cow::Owned(format!("k{}", i % 3)));
            x.latency_ms = Some(10.0 * i as f64);
            evs.push(x);
        }
        let (b1, b2) = (SeriesBudget::new(10), SeriesBudget::new(10));
        let mut one = Engine::default();
        let mut one_rejected = Vec::new();
        for (i, x) in evs.iter().enumerate() {
            if let Err(r) = one.ingest(x, &adm, &p, &b1) {
                one_rejected.push((i, r));
            }
        }
        let mut batch = Engine::default();
        let mut batch_rejected = Vec::new();
        let digests: Vec<Digest> = evs.iter().map(Digest::of).collect();
        let refs: Vec<&Digest> = digests.iter().collect();
        batch.ingest_batch(&refs, &adm, &p, &b2, |i, r| batch_rejected.push((i, r)));
        assert_eq!(one_rejected, vec![(3, Reject::TooOld)]);
        assert_eq!(batch_rejected, one_rejected);
        // As `serde_json::Value`: its maps are sorted, the hasher's order is not.
        let json = |e: &Engine| serde_json::to_value(e).unwrap().to_string();
        assert_eq!(json(&batch), json(&one));
        assert_eq!(batch.scope_count(), 2);
        assert_eq!(b2.used(), 2);
    }
}
