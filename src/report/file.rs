//! The `report` command: a file of events in, the verdict of every scope
//! out (SPEC §8).
//!
//! The file is streamed: NDJSON is cut into chunks at line ends, and memory
//! holds a few chunks, never the file. With one thread, each batch of 16
//! chunks is decoded, then ingested into one [`Task`] through the daemon's
//! ingest entry point ([`Task::ingest_batch`], scope by scope). With more, as the
//! daemon's consumer does with a batch, each batch of chunks (16 per
//! thread) goes through two parallel phases: decode (one chunk per job),
//! then ingest, where each connector's events go to
//! the one task that owns it (by the hash of its id, among a few tasks per
//! thread so that the threads can share them out evenly). A connector's
//! scopes therefore live in one task: no state is held twice, and nothing
//! is merged before measuring, which the same threads do. A file that is
//! one multi-line JSON document (a pretty-printed array) is read whole, as
//! it cannot be cut.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc;

use super::input;
use super::{Report, ReportError};
use crate::config::Config;
use crate::engine::event::{self, Event, Reject, RejectCounts};
use crate::engine::measure::{self, ScopeReport};
use crate::engine::params::{Attestation, CriteriaParams, Settings, Window};
use crate::engine::state::{self, Admission, ConnectorState, Digest, Engine, Params, SeriesBudget};
use crate::engine::timeutil::Micros;
use crate::task::{Stage, Task, TaskId};

/// Chunks per thread in one batch (of one thread or several): the ingest phase
/// visits a task's events scope by scope, which pays once a batch holds
/// several events of most scopes (a 1 MiB chunk holds ~6,000 events, about
/// one per scope of a 1,000-connector file).
const BATCH_CHUNKS_PER_THREAD: usize = 16;

/// Tasks per thread when `report` runs on several: the ingest phase hands
/// out whole tasks, largest first, so more tasks than threads keep the
/// threads evenly busy when a few connectors carry most of the traffic.
const TASKS_PER_THREAD: usize = 16;

/// One task of `report`, fed through the daemon's ingest entry point, and
/// the latest valid event time it saw.
struct Worker<'p> {
    task: Task,
    adm: Admission,
    params: &'p Params,
    budget: &'p SeriesBudget,
    max_ts: Option<Micros>,
}

impl<'p> Worker<'p> {
    fn new(i: usize, adm: Admission, params: &'p Params, budget: &'p SeriesBudget) -> Self {
        Worker {
            task: Task::new(TaskId::new("report", i as i32), Stage::Aggregate),
            adm,
            params,
            budget,
            max_ts: None,
        }
    }

    /// Decodes and ingests one payload (a file read whole: one thread).
    fn payload(&mut self, bytes: &[u8]) {
        let mut events: Vec<Digest> = Vec::with_capacity(digests_for(bytes.len(), 1));
        self.decode(bytes, false, &mut events);
        self.ingest(events.iter());
    }

    /// Decodes and ingests chunks of lines (one thread) as one batch: as
    /// in the pool's batches, a scope then gets several events per visit
    /// (a 1 MiB chunk holds about one event per scope of a 1,000-connector
    /// file, and each visit fetches the scope's structures into cache).
    fn chunks(&mut self, chunks: &[Vec<u8>]) {
        let bytes: usize = chunks.iter().map(Vec::len).sum();
        let mut events: Vec<Digest> = Vec::with_capacity(digests_for(bytes, 1));
        for c in chunks {
            self.decode(c, true, &mut events);
        }
        self.ingest(events.iter());
    }

    /// Decodes `bytes` (lines, or one payload) into `events`; a rejection
    /// is counted in the task.
    fn decode(&mut self, bytes: &[u8], lines: bool, events: &mut Vec<Digest>) {
        let task = &mut self.task;
        decode_into(
            bytes,
            lines,
            &mut self.max_ts,
            |dg| events.push(dg),
            |r| task.reject(r, 1),
        );
    }

    /// Ingests decoded events, in file order, through the daemon's batch
    /// entry point (scope by scope: see [`Engine::ingest_batch`]).
    fn ingest<'e>(&mut self, events: impl Iterator<Item = &'e Digest>) {
        // The latest event time is taken where the events are decoded.
        let events: Vec<&Digest> = events.collect();
        // A rejection is counted in the task.
        self.task
            .ingest_batch(&events, &self.adm, self.params, self.budget, |_, _| {});
    }

    /// The task's engine and rejections, and the latest valid event time.
    fn finish(self) -> (Engine, RejectCounts, Option<Micros>) {
        let (engine, rejected) = self.task.into_state();
        (engine, rejected, self.max_ts)
    }
}

/// One chunk decoded (several threads): its valid events, digested while
/// their lines are in cache, by the task that owns their connector; its
/// decoding rejections; its latest event time.
struct Decoded {
    by_task: Vec<Vec<Digest>>,
    rejected: RejectCounts,
    max_ts: Option<Micros>,
}

/// Line bytes per event assumed when sizing lists of digests (SPEC §2
/// events with the optional fields run ~170 bytes).
const BYTES_PER_EVENT: usize = 160;

/// The capacity of each of `lists` lists sharing the digests of `bytes`
/// of events: a fair share and a quarter more, so that most lists never
/// grow. Each growth copied the list into fresh memory, most of it
/// touched for the first time (page faults were ~10% of `report`'s
/// profile).
fn digests_for(bytes: usize, lists: usize) -> usize {
    let share = bytes / BYTES_PER_EVENT / lists;
    share + share / 4 + 4
}

fn decode_chunk(bytes: &[u8], tasks: usize) -> Decoded {
    let mut by_task: Vec<Vec<Digest>> = (0..tasks)
        .map(|_| Vec::with_capacity(digests_for(bytes.len(), tasks)))
        .collect();
    let mut rejected = RejectCounts::default();
    let mut max_ts = None;
    decode_into(
        bytes,
        true,
        &mut max_ts,
        |dg| by_task[dg.shard_of(tasks)].push(dg),
        |r| rejected.add(r, 1),
    );
    Decoded {
        by_task,
        rejected,
        max_ts,
    }
}

/// Decodes `bytes` (lines, or one payload): each valid event digested
/// (while its line is in cache) to `valid`, its time raising `max_ts`;
/// each rejection to `rejected`.
fn decode_into(
    bytes: &[u8],
    lines: bool,
    max_ts: &mut Option<Micros>,
    mut valid: impl FnMut(Digest),
    mut rejected: impl FnMut(Reject),
) {
    let mut sink = |r: Result<Event<'_>, Reject>| match r {
        Ok(ev) => {
            *max_ts = later(*max_ts, Some(ev.ts));
            valid(Digest::of(&ev));
        }
        Err(r) => rejected(r),
    };
    if lines {
        for line in event::lines(bytes) {
            event::decode_line(line, &mut sink);
        }
    } else {
        event::decode_payload(bytes, &mut sink);
    }
}

/// Runs `report` over a file: decodes every event, settles `now` and
/// retention, and builds the report, measured over every window of the
/// configuration (as the daemon exports them). `now = None` means the
/// latest valid event time (or `fallback_now` when the file has no valid
/// event).
pub fn report_file(
    path: &Path,
    cfg: &Config,
    now: Option<Micros>,
    fallback_now: Micros,
    threads: usize,
) -> Result<Report, ReportError> {
    run(path, cfg, cfg, now, fallback_now, threads, false)
}

/// What the `report` command prints: [`report_file`] measured over the
/// criteria window only, with every scope's `daily` series when `daily`.
///
/// Why only that window: every document the command writes (SPEC §8's
/// JSON, the table, the §11 evidence pack) shows the criteria window and
/// no other, while the dashboards' extra windows (`[criteria] windows`,
/// four by default) made up most of the measuring, each walking every
/// connection of every scope.
pub fn report_file_with(
    path: &Path,
    cfg: &Config,
    now: Option<Micros>,
    fallback_now: Micros,
    threads: usize,
    daily: bool,
) -> Result<Report, ReportError> {
    run(
        path,
        cfg,
        &CriteriaWindowOnly(cfg),
        now,
        fallback_now,
        threads,
        daily,
    )
}

/// `cfg` as the engine reads it, with the criteria window as the only
/// window measured.
struct CriteriaWindowOnly<'a>(&'a Config);

impl Settings for CriteriaWindowOnly<'_> {
    fn criteria(&self) -> CriteriaParams {
        self.0.criteria()
    }
    fn windows(&self) -> Vec<Window> {
        vec![Window::Days(self.0.criteria.window_days)]
    }
    fn attestation(&self, connector: &str) -> Option<&Attestation> {
        self.0.attestation(connector)
    }
    fn max_connections_per_scope(&self) -> usize {
        self.0.max_connections_per_scope()
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    path: &Path,
    cfg: &Config,
    measured: &(dyn Settings + Sync),
    now: Option<Micros>,
    fallback_now: Micros,
    threads: usize,
    daily: bool,
) -> Result<Report, ReportError> {
    let io = |e| ReportError::Input {
        path: path.to_path_buf(),
        error: e,
    };
    let mut file = File::open(path).map_err(io)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let params = Params::from_config(cfg);
    // SPEC §4: in `report` only `too_old` applies; `max_series` bounds the
    // daemon's memory over time, not a one-off file, so no series limit.
    let budget = SeriesBudget::new(usize::MAX);
    let adm = match now {
        Some(n) => Admission::report_at(n, cfg.criteria.retention_days),
        None => Admission::default(),
    };
    let threads = threads.max(1);
    let bar = input::progress_bar(size);
    let (first, streaming) = input::peek(&mut file).map_err(io)?;

    let pool = (threads > 1).then(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("report-{i}"))
            .build()
            .expect("report thread pool")
    });
    let mut rejected = RejectCounts::default();
    let mut max_ts: Option<Micros> = None;
    let mut results: Vec<(Engine, RejectCounts, Option<Micros>)> = Vec::new();
    if !streaming {
        // A small file, or one multi-line document that cannot be cut:
        // read it whole.
        let mut all = first;
        file.read_to_end(&mut all).map_err(io)?;
        let mut w = Worker::new(0, adm, &params, &budget);
        w.payload(&all);
        results.push(w.finish());
    } else {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(threads * 2);
        let read_result = std::thread::scope(|sc| {
            let reader = sc.spawn(|| {
                let r = input::feed_chunks(&mut file, first, &tx, bar.as_ref());
                drop(tx);
                r
            });
            match &pool {
                None => {
                    let mut w = Worker::new(0, adm, &params, &budget);
                    while let Some(batch) = input::next_batch(&rx, BATCH_CHUNKS_PER_THREAD) {
                        w.chunks(&batch);
                    }
                    results.push(w.finish());
                }
                Some(pool) => {
                    let mut workers: Vec<Worker<'_>> = (0..threads * TASKS_PER_THREAD)
                        .map(|i| Worker::new(i, adm, &params, &budget))
                        .collect();
                    while let Some(batch) =
                        input::next_batch(&rx, threads * BATCH_CHUNKS_PER_THREAD)
                    {
                        let (r, m) = routed_batch(pool, &batch, &mut workers);
                        rejected.merge(&r);
                        max_ts = later(max_ts, m);
                    }
                    results.extend(workers.into_iter().map(Worker::finish));
                }
            }
            reader.join().expect("reader thread panicked")
        });
        read_result.map_err(io)?;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut engines = Vec::with_capacity(results.len());
    for (e, r, m) in results {
        rejected.merge(&r);
        max_ts = later(max_ts, m);
        engines.push(e);
    }
    let now = now.or(max_ts).unwrap_or(fallback_now);
    rejected.add(
        Reject::TooOld,
        settle_retention(&mut engines, now, &params, &budget),
    );
    Ok(Report {
        now,
        criteria_window_days: cfg.criteria.window_days,
        rejected,
        scopes: measure_all(engines, measured, now, daily, &params, threads),
        membership: None,
    })
}

fn later(a: Option<Micros>, b: Option<Micros>) -> Option<Micros> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// One batch on several threads, in two phases as the daemon's consumer
/// does: every chunk decoded (one job each), then every task lent to one
/// job that ingests its events of the whole batch, in file order. Returns
/// the decoding rejections and the latest valid event time.
fn routed_batch(
    pool: &rayon::ThreadPool,
    batch: &[Vec<u8>],
    workers: &mut [Worker<'_>],
) -> (RejectCounts, Option<Micros>) {
    let tasks = workers.len();
    let mut decoded: Vec<Option<Decoded>> = (0..batch.len()).map(|_| None).collect();
    pool.scope(|s| {
        for (slot, chunk) in decoded.iter_mut().zip(batch) {
            s.spawn(move |_| *slot = Some(decode_chunk(chunk, tasks)));
        }
    });
    let decoded: Vec<Decoded> = decoded
        .into_iter()
        .map(|d| d.expect("every chunk decoded"))
        .collect();
    // Largest first, so that the last jobs taken are the short ones.
    let mut jobs: Vec<(usize, usize, &mut Worker<'_>)> = workers
        .iter_mut()
        .enumerate()
        .map(|(k, w)| (decoded.iter().map(|d| d.by_task[k].len()).sum(), k, w))
        .filter(|j| j.0 > 0)
        .collect();
    jobs.sort_unstable_by_key(|j| std::cmp::Reverse(j.0));
    let decoded = &decoded;
    pool.scope_fifo(|s| {
        for (_, k, w) in jobs {
            s.spawn_fifo(move |_| w.ingest(decoded.iter().flat_map(|d| &d.by_task[k])));
        }
    });
    let mut rejected = RejectCounts::default();
    let mut max_ts = None;
    for d in decoded {
        rejected.merge(&d.rejected);
        max_ts = later(max_ts, d.max_ts);
    }
    (rejected, max_ts)
}

/// Events held that `now` puts outside retention (`too_old` in hindsight,
/// for `report` without `--now`), and drops the scopes left with nothing
/// else. Each event is in exactly one engine, so the sum over engines is
/// the count of the events; merging cannot bring an older day back.
fn settle_retention(
    engines: &mut [Engine],
    now: Micros,
    params: &Params,
    budget: &SeriesBudget,
) -> u64 {
    let min_day = state::retention_start(now, params.retention_days);
    let mut n = 0;
    for e in engines {
        n += std::mem::take(&mut e.aged_out);
        for c in e.connectors.values() {
            for (_, s) in c.scopes() {
                n += s.requests_in_days(i32::MIN + 1, min_day - 1);
            }
        }
        e.prune(min_day, budget);
    }
    n
}

/// Every scope of the tasks' engines, sorted (SPEC §8): each connector's
/// state is moved out of its engine, grouped by connector onto `threads`
/// threads and measured there. Each connector is in one engine (one
/// thread, or routed by connector), so [`measure::measure_held`] has
/// nothing to merge; it would merge exactly if one were held twice.
fn measure_all(
    engines: Vec<Engine>,
    cfg: &(dyn Settings + Sync),
    now: Micros,
    daily: bool,
    params: &Params,
    threads: usize,
) -> Vec<ScopeReport> {
    type Held = BTreeMap<String, Vec<ConnectorState>>;
    let mut groups: Vec<Held> = (0..threads).map(|_| Held::new()).collect();
    for e in engines {
        for (id, c) in e.connectors {
            let g = state::shard_of(&id, threads);
            groups[g].entry(id).or_default().push(c);
        }
    }
    let measure = |held: Held| {
        let mut out = Vec::new();
        for (id, states) in held {
            out.extend(measure::measure_held(&id, states, cfg, now, daily, params));
        }
        out
    };
    let mut out: Vec<ScopeReport> = if threads == 1 {
        groups.into_iter().flat_map(measure).collect()
    } else {
        std::thread::scope(|sc| {
            let handles: Vec<_> = groups
                .into_iter()
                .map(|g| {
                    let measure = &measure;
                    sc.spawn(move || measure(g))
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("measure thread panicked"))
                .collect()
        })
    };
    measure::sort_scopes(&mut out);
    out
}
