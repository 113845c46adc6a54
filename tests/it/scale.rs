//! SPEC §12 with real processes: one `mock-kafka` process, several member
//! processes of one consumer group sharing one state directory, members
//! SIGKILLed, restarted with nothing of their own, joining and leaving.
//! After each scenario the union of the members' `/api/v1/criteria` must be
//! `report` over the same events: every scope on exactly one member, equal
//! key for key to `report` at that member's `now`; the `rejected` counts
//! summed over members equal to the corpus's; the members' `tasks` a
//! partition of all 16 partitions.
//!
//! Expected values come from `report` (the file path through the engine,
//! no Kafka, no checkpoint) and from the corpus generator's own tally of
//! what it wrote (valid events per connector, rejections per reason), never
//! from a member.
//!
//! Not covered here: `series_limit` (whether the 10,001st scope or another
//! is rejected depends on arrival order, so no corpus makes it
//! deterministic across members), and `from_future` (`report` has no such
//! reason: SPEC §4).
//!
//! Against a build without the `input_keyed_by_connector` key, run with
//! `CGA_TEST_OLD_CONFIG=1` to leave it out and see what the members export.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

use crate::common::{json_diff, report_cmd};
use crate::harness::{producer, samples, Daemon, DaemonCmd, MockKafka};

const TOPIC: &str = "ev";
const PARTITIONS: usize = 16;
const CONNECTORS: usize = 30;
const CLOUDS: [&str; 6] = [
    "public",
    "gcc",
    "gcc-high",
    "dod",
    "azure-government",
    "mooncake",
];

/// What one line of the corpus is, as the generator wrote it.
#[derive(Clone)]
enum Tag {
    Valid(String),
    Rejected(&'static str),
}

/// One Kafka message: NDJSON lines, keyed by its connector or not keyed.
struct Msg {
    key: Option<String>,
    lines: Vec<(String, Tag)>,
}

/// The generator's tally of some messages.
#[derive(Default, Debug, PartialEq)]
struct Tally {
    /// Valid events per connector (the `requests` of its `all` scope).
    requests: BTreeMap<String, u64>,
    /// Rejected lines per reason.
    rejected: BTreeMap<String, u64>,
    lines: u64,
}

impl Tally {
    fn of<'a>(msgs: impl IntoIterator<Item = &'a Msg>) -> Tally {
        let mut t = Tally::default();
        for (_, tag) in msgs.into_iter().flat_map(|m| &m.lines) {
            t.lines += 1;
            match tag {
                Tag::Valid(c) => *t.requests.entry(c.clone()).or_default() += 1,
                Tag::Rejected(r) => *t.rejected.entry(r.to_string()).or_default() += 1,
            }
        }
        t
    }
}

fn connector(i: usize) -> String {
    format!("sc_{i:02}")
}

/// A valid event of connector `c`, with a time in the five whole UTC days
/// before today: whatever the clock does during the test, it stays inside
/// week 0 (days D-6..=D), the MAC window and the 30-day criteria window
/// (SPEC §4), so no window moves under the comparison.
fn valid_event(rng: &mut StdRng, c: &str, ci: usize, midnight_ms: i64) -> String {
    let ts_ms = midnight_ms - rng.random_range(1..=5 * 86_400_000i64);
    let mut f = vec![if rng.random_bool(0.5) {
        format!(r#""ts":{ts_ms}"#)
    } else {
        let t = chrono::DateTime::from_timestamp_millis(ts_ms).unwrap();
        format!(
            r#""ts":"{}""#,
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )
    }];
    f.push(format!(r#""connector":"{c}""#));
    // Connector i serves 1 + i % 4 clouds; `public` often left implicit.
    let cloud = CLOUDS[rng.random_range(0..=ci % 4)];
    if cloud != "public" || rng.random_bool(0.5) {
        f.push(format!(r#""cloud":"{cloud}""#));
    }
    let r = rng.random_range(0..100);
    let status = match r {
        0..70 => Some(200),
        70..75 => Some(204),
        75..78 => Some(302),
        78..84 => Some(429),
        84..88 => Some(500),
        88..91 => Some(503),
        91..94 => Some(404),
        94..96 => Some(401),
        96..97 => Some(0),
        97..98 => None,
        _ => Some(502),
    };
    if let Some(s) = status {
        f.push(format!(r#""status":{s}"#));
    }
    // A fault on failures, sometimes absent (then derived), and now and then
    // on a success, where it is ignored.
    let failed = !matches!(status, Some(200 | 204 | 302 | 429));
    if (failed && rng.random_bool(0.6)) || rng.random_bool(0.02) {
        let fault = ["connector", "backend", "client"][rng.random_range(0..3)];
        f.push(format!(r#""fault":"{fault}""#));
    }
    if rng.random_bool(0.7) {
        f.push(format!(
            r#""latency_ms":{}"#,
            rng.random_range(1..4000) as f64 / 2.0
        ));
    }
    if rng.random_bool(0.8) {
        f.push(format!(r#""user":"u{}""#, rng.random_range(0..300)));
    }
    if rng.random_bool(0.85) {
        f.push(format!(
            r#""connection":"k{ci}-{}""#,
            rng.random_range(0..40)
        ));
    }
    if rng.random_bool(0.3) {
        f.push(r#""operation":"ListItems""#.to_string());
    }
    format!("{{{}}}", f.join(","))
}

/// A line rejected for exactly one reason (the first that applies, SPEC §2).
fn invalid_line(rng: &mut StdRng, c: &str, midnight_ms: i64) -> (String, &'static str) {
    let ts = midnight_ms - 86_400_000;
    match rng.random_range(0..13) {
        0 => ("{not json".into(), "malformed_json"),
        1 => (
            format!(r#"{{"ts":{ts},"connector":"{c}","status":2"#),
            "malformed_json",
        ),
        2 => ("42".into(), "malformed_json"),
        // A duplicate key (SPEC §2, pinned edges).
        3 => (
            format!(r#"{{"ts":{ts},"ts":{ts},"connector":"{c}","status":200}}"#),
            "malformed_json",
        ),
        4 => (
            format!(r#"{{"connector":"{c}","status":200}}"#),
            "missing_field",
        ),
        5 => (
            format!(r#"{{"ts":1.5,"connector":"{c}"}}"#),
            "invalid_timestamp",
        ),
        6 => (
            format!(r#"{{"ts":{ts},"connector":"bad connector!"}}"#),
            "invalid_connector",
        ),
        7 => (
            format!(r#"{{"ts":{ts},"connector":"{c}","cloud":"mars"}}"#),
            "unknown_cloud",
        ),
        8 => (
            format!(r#"{{"ts":{ts},"connector":"{c}","status":"200"}}"#),
            "invalid_status",
        ),
        9 => (
            format!(r#"{{"ts":{ts},"connector":"{c}","status":500,"fault":"martians"}}"#),
            "invalid_fault",
        ),
        10 => (
            format!(r#"{{"ts":{ts},"connector":"{c}","status":200,"latency_ms":-1}}"#),
            "invalid_latency",
        ),
        11 => (
            format!(r#"{{"ts":{ts},"connector":"{c}","user":""}}"#),
            "invalid_id",
        ),
        // 1970: outside the 35-day retention for any `now`.
        _ => (
            format!(r#"{{"ts":1000,"connector":"{c}","status":200}}"#),
            "too_old",
        ),
    }
}

/// The corpus, as messages in production order, split in `rounds` rounds.
/// Keyed: each message holds lines of one connector and is keyed by it.
/// Not keyed: lines of all connectors mixed, no key.
fn corpus(keyed: bool, rounds: usize) -> Vec<Vec<Msg>> {
    let mut rng = StdRng::seed_from_u64(if keyed { 12 } else { 21 });
    let today = chrono::Utc::now().date_naive();
    let midnight_ms = today
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    let mut per_connector: Vec<Vec<(String, Tag)>> = (0..CONNECTORS)
        .map(|ci| {
            let c = connector(ci);
            let n = rng.random_range(150..300);
            (0..n)
                .map(|_| {
                    if rng.random_bool(0.04) {
                        let (l, why) = invalid_line(&mut rng, &c, midnight_ms);
                        (l, Tag::Rejected(why))
                    } else {
                        (
                            valid_event(&mut rng, &c, ci, midnight_ms),
                            Tag::Valid(c.clone()),
                        )
                    }
                })
                .collect()
        })
        .collect();
    let chunk = |rng: &mut StdRng, lines: Vec<(String, Tag)>, key: Option<String>| {
        let mut out = Vec::new();
        let mut it = lines.into_iter().peekable();
        while it.peek().is_some() {
            let n = rng.random_range(1..=5);
            out.push(Msg {
                key: key.clone(),
                lines: it.by_ref().take(n).collect(),
            });
        }
        out
    };
    let mut msgs: Vec<Msg> = if keyed {
        let mut all = Vec::new();
        for (ci, lines) in per_connector.into_iter().enumerate() {
            all.extend(chunk(&mut rng, lines, Some(connector(ci))));
        }
        all
    } else {
        let mut lines: Vec<_> = per_connector.drain(..).flatten().collect();
        lines.shuffle(&mut rng);
        chunk(&mut rng, lines, None)
    };
    // Interleave the connectors, as producers would.
    msgs.shuffle(&mut rng);
    let per_round = msgs.len().div_ceil(rounds);
    let mut out: Vec<Vec<Msg>> = (0..rounds).map(|_| Vec::new()).collect();
    for (i, m) in msgs.into_iter().enumerate() {
        out[i / per_round].push(m);
    }
    out
}

fn send(p: &BaseProducer, msgs: &[Msg]) {
    for m in msgs {
        let payload = m
            .lines
            .iter()
            .map(|(l, _)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let rec = BaseRecord::<str, str>::to(TOPIC).payload(&payload);
        let rec = match &m.key {
            Some(k) => rec.key(k.as_str()),
            None => rec,
        };
        p.send(rec).map_err(|(e, _)| e).unwrap();
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60)).expect("producer flush");
}

/// The events of `msgs`, one line each, as `report` reads them.
fn write_events(path: &Path, msgs: &[&Msg]) {
    let mut s = String::new();
    for (l, _) in msgs.iter().flat_map(|m| &m.lines) {
        s.push_str(l);
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

/// One consumer group on one `mock-kafka`: members by instance id, one
/// shared state directory, the events produced so far.
/// Fields drop in order: the members are killed before the broker stops
/// and before their state directory is removed.
struct Group {
    members: BTreeMap<String, Daemon>,
    producer: BaseProducer,
    mock: MockKafka,
    dir: tempfile::TempDir,
    cfg: PathBuf,
    state: PathBuf,
    group: String,
    keyed: bool,
    produced: Vec<Msg>,
}

impl Group {
    fn new(group: &str, keyed: bool) -> Group {
        // The re-keyed topic too (SPEC §12): the mock cannot create it on request.
        let mock = MockKafka::start(&[
            &format!("{TOPIC}:{PARTITIONS}"),
            &format!("{group}-by-connector:{PARTITIONS}"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        // The mock cluster completes a rebalance only after a session
        // timeout, and does not hand a restarted static member its
        // partitions before its old session times out: keep it short.
        std::fs::write(
            &cfg,
            "[criteria]\nmin_eligible_requests = 20\n\n\
             [connectors.sc_00]\nbackend_in_production = true\nsupport_model_attested = true\npreview_since = 2026-03-01\n\n\
             [connectors.sc_01]\nbackend_in_production = true\n\n\
             [state]\ncheckpoint_interval_seconds = 1\n\n\
             [kafka.properties]\n\"session.timeout.ms\" = \"3000\"\n\"heartbeat.interval.ms\" = \"300\"\n",
        )
        .unwrap();
        let state = dir.path().join("shared-state");
        std::fs::create_dir(&state).unwrap();
        let producer = producer(&mock.brokers);
        Group {
            mock,
            dir,
            cfg,
            state,
            group: group.into(),
            keyed,
            members: BTreeMap::new(),
            producer,
            produced: Vec::new(),
        }
    }

    /// Starts member `id` (its `group_instance_id`) as a new process whose
    /// working directory is new and empty: all it has is the shared store.
    fn spawn(&mut self, id: &str) {
        let home = self
            .dir
            .path()
            .join(format!("home-{id}-{}", self.members.len()));
        let home = unique_dir(home);
        let mut cmd = DaemonCmd::new(&self.mock.brokers)
            .topic(TOPIC)
            .group(&self.group)
            .config(&self.cfg)
            .state_dir(&self.state)
            .cwd(&home)
            .env("CONNECTOR_GA__KAFKA__GROUP_INSTANCE_ID", id);
        if std::env::var_os("CGA_TEST_OLD_CONFIG").is_none() {
            cmd = cmd.env(
                "CONNECTOR_GA__KAFKA__INPUT_KEYED_BY_CONNECTOR",
                if self.keyed { "true" } else { "false" },
            );
        }
        assert!(
            self.members.insert(id.into(), cmd.spawn()).is_none(),
            "{id} already runs"
        );
    }

    /// Starts every member of `ids` at once, then waits until each is ready.
    fn start(&mut self, ids: &[&str]) {
        for id in ids {
            self.spawn(id);
        }
        for id in ids {
            self.members.get_mut(*id).unwrap().wait_ready();
        }
    }

    fn produce(&mut self, msgs: Vec<Msg>) {
        send(&self.producer, &msgs);
        self.produced.extend(msgs);
    }

    fn remove(&mut self, id: &str) -> Daemon {
        self.members.remove(id).expect("a running member")
    }

    /// Each member's `/api/v1/criteria`, `None` while it does not answer.
    fn docs(&self) -> BTreeMap<String, Option<Value>> {
        self.members
            .iter()
            .map(|(id, d)| {
                let doc = d
                    .http
                    .get(d.url("/api/v1/criteria"))
                    .send()
                    .ok()
                    .and_then(|r| r.json::<Value>().ok());
                (id.clone(), doc)
            })
            .collect()
    }

    /// Waits until the members together have read at least every line
    /// produced (or 60 s): a pause between rounds, asserting nothing.
    fn wait_read(&self) {
        let want = Tally::of(&self.produced).lines;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            let seen: u64 = self
                .docs()
                .values()
                .flatten()
                .map(|d| {
                    let t = tally_of_doc(d);
                    t.lines
                })
                .sum();
            if seen >= want {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("scale: members read fewer than the {want} lines produced after 60 s");
    }

    /// Waits (at most 60 s) until the members' summed counts equal the
    /// tally of everything produced, their tasks cover every partition
    /// once, and all of it is unchanged one second later. It asserts
    /// nothing: [`Group::check`] says what differs.
    fn settle(&self) {
        let want = Tally::of(&self.produced);
        let start = Instant::now();
        let mut prev = None;
        while start.elapsed() < Duration::from_secs(60) {
            let docs = self.docs();
            let now = if docs.values().all(Option::is_some) {
                let docs: Vec<&Value> = docs.values().flatten().collect();
                let mut t = Tally::default();
                for d in &docs {
                    let x = tally_of_doc(d);
                    t.lines += x.lines;
                    for (k, v) in x.requests {
                        *t.requests.entry(k).or_default() += v;
                    }
                    for (k, v) in x.rejected {
                        *t.rejected.entry(k).or_default() += v;
                    }
                }
                let mut tasks: Vec<u64> = docs.iter().flat_map(|d| tasks_of(d)).collect();
                tasks.sort();
                Some((t, tasks))
            } else {
                None
            };
            if let Some((t, tasks)) = &now {
                let all: Vec<u64> = (0..PARTITIONS as u64).collect();
                if *t == want && *tasks == all && prev.as_ref() == now.as_ref() {
                    return;
                }
            }
            prev = now;
            std::thread::sleep(Duration::from_secs(1));
        }
        eprintln!("scale: the members did not settle on the produced tally within 60 s");
    }

    /// Every guarantee of SPEC §12 over the members running now and the
    /// events produced so far; panics with every difference found.
    fn check(&self, label: &str) {
        let want = Tally::of(&self.produced);
        let events = self.dir.path().join(format!("events-{label}.ndjson"));
        write_events(&events, &self.produced.iter().collect::<Vec<_>>());
        // The background renderings may trail the counts by an interval:
        // a few tries before the differences count.
        let mut failures = Vec::new();
        for _ in 0..5 {
            failures = self.differences(&events, &want);
            if failures.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        panic!(
            "{label}: {} members, {} lines produced ({} valid, rejected {:?}):\n{}",
            self.members.len(),
            want.lines,
            want.requests.values().sum::<u64>(),
            want.rejected,
            failures.join("\n")
        );
    }

    fn differences(&self, events: &Path, want: &Tally) -> Vec<String> {
        let mut out = Vec::new();
        let mut docs = BTreeMap::new();
        for (id, doc) in self.docs() {
            match doc {
                Some(d) => {
                    docs.insert(id, d);
                }
                None => out.push(format!("{id}: /api/v1/criteria does not answer")),
            }
        }
        if !out.is_empty() {
            return out;
        }

        // The report over the same events at each member's `now`.
        let report_at = |now: &str| -> Value {
            let o = report_cmd(&[
                "--format",
                "json",
                "--now",
                now,
                "--input",
                events.to_str().unwrap(),
                "--config",
                self.cfg.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            serde_json::from_slice(&o.stdout).unwrap()
        };
        let reports: BTreeMap<&String, Value> = docs
            .iter()
            .map(|(id, d)| (id, report_at(d["now"].as_str().expect("`now`"))))
            .collect();

        // The corpus and `report` agree (a check of the reference itself):
        // the generator's count of valid events per connector is the
        // `requests` of the connector's `all` scope; its rejections by
        // reason are report's `rejected`.
        let any_report = reports.values().next().unwrap();
        let report_tally = tally_of_doc(any_report);
        if report_tally.requests != want.requests || report_tally.rejected != want.rejected {
            out.push(format!(
                "report disagrees with the generator: requests {:?} rejected {:?}, want {:?} {:?}",
                report_tally.requests, report_tally.rejected, want.requests, want.rejected
            ));
        }

        // Tasks: disjoint, every partition owned, `members_partial` and the
        // gauge consistent with them.
        let mut owner: BTreeMap<u64, Vec<&String>> = BTreeMap::new();
        for (id, d) in &docs {
            let tasks = match d.get("tasks").and_then(Value::as_array) {
                Some(t) => t.iter().map(|p| p.as_u64().expect("a partition")).collect(),
                None => {
                    out.push(format!("{id}: no `tasks` array"));
                    Vec::new()
                }
            };
            let mut sorted = tasks.clone();
            sorted.sort();
            if sorted != tasks {
                out.push(format!("{id}: tasks {tasks:?} not sorted"));
            }
            for p in &tasks {
                owner.entry(*p).or_default().push(id);
            }
            let partial = tasks.len() < PARTITIONS;
            if d.get("members_partial") != Some(&Value::Bool(partial)) {
                out.push(format!(
                    "{id}: members_partial {:?} with {} of {PARTITIONS} tasks",
                    d.get("members_partial"),
                    tasks.len()
                ));
            }
            let m = self.members[id].metrics();
            let gauge = samples(&m, "connector_ga_tasks_owned");
            if gauge.len() != 1 || gauge[0].1 != tasks.len() as f64 {
                out.push(format!(
                    "{id}: connector_ga_tasks_owned {gauge:?}, want {}",
                    tasks.len()
                ));
            }
            if self.members[id].status("/readyz") != Some(200) {
                out.push(format!("{id}: /readyz is not 200"));
            }
        }
        for (p, ids) in &owner {
            if ids.len() > 1 {
                out.push(format!("partition {p} owned by {ids:?}"));
            }
        }
        let unowned: Vec<u64> = (0..PARTITIONS as u64)
            .filter(|p| !owner.contains_key(p))
            .collect();
        if !unowned.is_empty() {
            out.push(format!("partitions owned by no member: {unowned:?}"));
        }
        if owner.keys().any(|p| *p >= PARTITIONS as u64) {
            out.push(format!(
                "tasks beyond the {PARTITIONS} partitions: {owner:?}"
            ));
        }

        // Scopes: each on exactly one member, a connector's all on one,
        // together exactly report's, each equal to report's at the same now.
        let mut shown: BTreeMap<(String, String), Vec<&String>> = BTreeMap::new();
        let mut homes: BTreeMap<String, BTreeSet<&String>> = BTreeMap::new();
        for (id, d) in &docs {
            let report = &reports[id];
            let rscopes: BTreeMap<(String, String), &Value> = scopes(report).collect();
            for (key, s) in scopes(d) {
                shown.entry(key.clone()).or_default().push(id);
                homes.entry(key.0.clone()).or_default().insert(id);
                match rscopes.get(&key) {
                    Some(r) => {
                        let mut diffs = Vec::new();
                        json_diff(&format!("{id} {}/{}", key.0, key.1), s, r, &mut diffs);
                        out.extend(diffs.into_iter().take(20));
                    }
                    None => out.push(format!("{id}: scope {key:?} is not in report")),
                }
            }
            if d["criteria_window_days"] != report["criteria_window_days"] {
                out.push(format!("{id}: criteria_window_days differs from report"));
            }
        }
        let twice: Vec<_> = shown.iter().filter(|(_, ids)| ids.len() > 1).collect();
        if !twice.is_empty() {
            out.push(format!(
                "{} scopes shown by more than one member, e.g. {:?}",
                twice.len(),
                &twice[..twice.len().min(5)]
            ));
        }
        let split: Vec<_> = homes.iter().filter(|(_, ids)| ids.len() > 1).collect();
        if !split.is_empty() {
            out.push(format!(
                "{} connectors with scopes on several members, e.g. {:?}",
                split.len(),
                &split[..split.len().min(5)]
            ));
        }
        let union: BTreeSet<&(String, String)> = shown.keys().collect();
        let all: BTreeSet<(String, String)> = scopes(any_report).map(|(k, _)| k).collect();
        let missing: Vec<_> = all.iter().filter(|k| !union.contains(k)).collect();
        if !missing.is_empty() {
            out.push(format!(
                "{} of report's {} scopes shown by no member, e.g. {:?}",
                missing.len(),
                all.len(),
                &missing[..missing.len().min(5)]
            ));
        }

        // Rejections: per member, summed over members, the corpus's.
        let mut summed: BTreeMap<String, u64> = BTreeMap::new();
        for d in docs.values() {
            for (k, v) in tally_of_doc(d).rejected {
                *summed.entry(k).or_default() += v;
            }
        }
        if summed != want.rejected {
            out.push(format!(
                "rejected summed over members {summed:?}, want {:?}",
                want.rejected
            ));
        }

        // /metrics: the same through Prometheus. A connector's request
        // series on exactly one member, summing to its valid events; the
        // rejection counters summed over members (PromQL `sum by (reason)`).
        let mut series_on: BTreeMap<String, BTreeSet<&String>> = BTreeMap::new();
        let mut requests: BTreeMap<String, f64> = BTreeMap::new();
        let mut rejected: BTreeMap<String, f64> = BTreeMap::new();
        for id in docs.keys() {
            let m = self.members[id].metrics();
            for (l, v) in samples(&m, "connector_requests_total") {
                series_on
                    .entry(l["connector"].clone())
                    .or_default()
                    .insert(id);
                *requests.entry(l["connector"].clone()).or_default() += v;
            }
            for (l, v) in samples(&m, "connector_ga_events_rejected_total") {
                if v > 0.0 {
                    *rejected.entry(l["reason"].clone()).or_default() += v;
                }
            }
        }
        for (c, ids) in &series_on {
            if ids.len() > 1 {
                out.push(format!("/metrics: {c} exported by {ids:?}"));
            }
        }
        let want_f = |m: &BTreeMap<String, u64>| -> BTreeMap<String, f64> {
            m.iter().map(|(k, v)| (k.clone(), *v as f64)).collect()
        };
        if requests != want_f(&want.requests) {
            out.push(format!(
                "/metrics: connector_requests_total summed over members {requests:?}, want {:?}",
                want.requests
            ));
        }
        if rejected != want_f(&want.rejected) {
            out.push(format!(
                "/metrics: connector_ga_events_rejected_total summed over members {rejected:?}, want {:?}",
                want.rejected
            ));
        }
        out
    }
}

/// `path`, or `path-N` for the first N not taken; created empty.
fn unique_dir(path: PathBuf) -> PathBuf {
    let mut p = path.clone();
    let mut n = 0;
    while p.exists() {
        n += 1;
        p = PathBuf::from(format!("{}-{n}", path.display()));
    }
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// (connector, cloud) → scope, of a criteria or report document.
fn scopes(doc: &Value) -> impl Iterator<Item = ((String, String), &Value)> {
    doc["scopes"].as_array().into_iter().flatten().map(|s| {
        (
            (
                s["connector"].as_str().unwrap().to_string(),
                s["cloud"].as_str().unwrap().to_string(),
            ),
            s,
        )
    })
}

fn tasks_of(doc: &Value) -> Vec<u64> {
    doc.get("tasks")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// The counts a document shows, as a tally: `requests` of each `all`
/// scope, the nonzero `rejected`, and their sum as lines.
fn tally_of_doc(doc: &Value) -> Tally {
    let mut t = Tally::default();
    for ((c, cloud), s) in scopes(doc) {
        if cloud == "all" {
            let n = s["requests"].as_u64().unwrap_or(0);
            *t.requests.entry(c).or_default() += n;
            t.lines += n;
        }
    }
    for (k, v) in doc["rejected"].as_object().into_iter().flatten() {
        let n = v.as_u64().unwrap_or(0);
        if n > 0 {
            t.rejected.insert(k.clone(), n);
            t.lines += n;
        }
    }
    t
}

/// One scenario at a time: each runs five processes, and the test binary
/// runs tests in parallel on a machine that may have two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Three members; member m1 is SIGKILLed between two halves of a round
/// and restarted (same instance id, a new process with an empty working
/// directory) while the stream goes on.
fn sigkill_and_empty_disk_restart(keyed: bool) {
    let _one = one_at_a_time();
    let mut rounds = corpus(keyed, 4).into_iter();
    let mut g = Group::new(
        if keyed {
            "scale-kill-k"
        } else {
            "scale-kill-u"
        },
        keyed,
    );
    g.start(&["m0", "m1", "m2"]);

    g.produce(rounds.next().unwrap());
    g.wait_read();
    // Past a checkpoint interval (1 s), so that m1's tasks have a
    // checkpoint to restore from, behind the events still to come.
    std::thread::sleep(Duration::from_millis(1500));

    let mut r2 = rounds.next().unwrap();
    let tail = r2.split_off(r2.len() / 2);
    g.produce(r2);
    g.remove("m1").sigkill();
    g.produce(tail);
    g.produce(rounds.next().unwrap());
    g.start(&["m1"]);
    g.produce(rounds.next().unwrap());

    g.settle();
    g.check("after SIGKILL and restart");
}

/// Three members; a fourth joins mid-stream (checked exact with four), then
/// leaves with SIGTERM mid-round (checked exact with three).
fn fourth_member_joins_and_leaves(keyed: bool) {
    let _one = one_at_a_time();
    let mut rounds = corpus(keyed, 4).into_iter();
    let mut g = Group::new(
        if keyed {
            "scale-join-k"
        } else {
            "scale-join-u"
        },
        keyed,
    );
    g.start(&["m0", "m1", "m2"]);
    g.produce(rounds.next().unwrap());
    g.wait_read();

    g.start(&["m3"]);
    g.produce(rounds.next().unwrap());
    g.settle();
    g.check("four members");
    let m3 = g.docs()["m3"].clone().unwrap_or_default();
    // With the re-key stage the assignor balances the partitions of both
    // topics together: the fourth member may get only read tasks.
    let read = m3
        .get("read_tasks")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    assert!(
        tasks_of(&m3).len() + read > 0,
        "the fourth member owns no task after joining: {:?}",
        m3.get("tasks")
    );

    let mut r3 = rounds.next().unwrap();
    let tail = r3.split_off(r3.len() / 2);
    g.produce(r3);
    let st = g.remove("m3").terminate();
    assert!(st.success(), "m3 exit status after SIGTERM: {st:?}");
    g.produce(tail);
    g.produce(rounds.next().unwrap());

    g.settle();
    g.check("after the fourth member left");
}

#[test]
fn three_members_keyed_sigkill_and_empty_disk_restart() {
    sigkill_and_empty_disk_restart(true);
}

#[test]
fn fourth_member_joins_and_leaves_keyed() {
    fourth_member_joins_and_leaves(true);
}

#[test]
fn three_members_rekeyed_sigkill_and_empty_disk_restart() {
    sigkill_and_empty_disk_restart(false);
}

#[test]
fn fourth_member_joins_and_leaves_rekeyed() {
    fourth_member_joins_and_leaves(false);
}

/// The corpus generator's tally is what it says (a test of the test): every
/// line tagged once, connectors' events only in their own keyed messages,
/// and every rejection reason of SPEC §2 up to `too_old` present.
#[test]
fn scale_corpus_is_what_it_says() {
    let keyed = corpus(true, 4);
    let all: Vec<&Msg> = keyed.iter().flatten().collect();
    let t = Tally::of(all.iter().copied());
    for m in &all {
        let k = m.key.as_deref().unwrap();
        for (line, tag) in &m.lines {
            if let Tag::Valid(c) = tag {
                assert_eq!(c, k);
                assert!(line.contains(&format!(r#""connector":"{k}""#)));
            }
        }
    }
    assert_eq!(t.requests.len(), CONNECTORS);
    let reasons: BTreeSet<&str> = t.rejected.keys().map(String::as_str).collect();
    assert_eq!(
        reasons,
        BTreeSet::from([
            "malformed_json",
            "missing_field",
            "invalid_timestamp",
            "invalid_connector",
            "unknown_cloud",
            "invalid_status",
            "invalid_fault",
            "invalid_latency",
            "invalid_id",
            "too_old",
        ])
    );
    // 30 connectors x 150..300 lines each.
    assert!((4500..9000).contains(&t.lines), "{}", t.lines);
    let mixed = corpus(false, 4);
    assert!(mixed.iter().flatten().all(|m| m.key.is_none()));
    assert!(
        mixed.iter().flatten().any(|m| {
            let cs: BTreeSet<&String> = m
                .lines
                .iter()
                .filter_map(|(_, t)| match t {
                    Tag::Valid(c) => Some(c),
                    Tag::Rejected(_) => None,
                })
                .collect();
            cs.len() > 1
        }),
        "unkeyed messages mix connectors"
    );
}
