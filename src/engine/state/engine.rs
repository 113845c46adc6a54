//! The state of a set of connectors (one shard of the daemon, or all of
//! `report`): admission of events into scopes, the shared series budget,
//! merging shards and pruning scopes past retention.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::admission::Admission;
use super::scope::ScopeState;
use super::{ConnectorHash, Params, EMPTY};
use crate::engine::classify::Cloud;
use crate::engine::event::{Event, Reject};
use crate::engine::timeutil::day_of;

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
        let day = day_of(ev.ts);
        // Events too old for the newest day recorded (report without `--now`).
        let own_min = if self.max_day == EMPTY {
            i32::MIN
        } else {
            self.max_day - p.retention_days as i32 + 1
        };
        if day < own_min {
            return Err(Reject::TooOld);
        }
        adm.admit(ev.ts)?;
        let after_now = adm.cutoff.is_some_and(|c| ev.ts > c);
        let conn = match self.connectors.get_mut(ev.connector.as_ref()) {
            Some(c) => c,
            None => {
                if !budget.claim() {
                    return Err(Reject::SeriesLimit);
                }
                let c = self.connectors.entry(ev.connector.to_string()).or_default();
                c.clouds[ev.cloud.index()] = Some(Arc::new(ScopeState::new(p)));
                c
            }
        };
        let slot = &mut conn.clouds[ev.cloud.index()];
        if slot.is_none() {
            if !budget.claim() {
                return Err(Reject::SeriesLimit);
            }
            *slot = Some(Arc::new(ScopeState::new(p)));
        }
        let scope = Arc::make_mut(slot.as_mut().expect("just ensured"));
        if after_now {
            scope.after_now += 1;
            return Ok(());
        }
        self.aged_out += scope.record(ev, day, p);
        self.max_day = self.max_day.max(day);
        Ok(())
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
}
