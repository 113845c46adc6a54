//! Engine throughput on a deterministic corpus of realistic events.
//!
//!     cargo bench --bench engine            # 1,000,000 events
//!     BENCH_EVENTS=200000 cargo bench --bench engine
//!     BENCH_SUMMARY_ONLY=1 cargo bench --bench engine   # no criterion
//!     BENCH_PROFILE=realistic cargo bench --bench engine
//!
//! `BENCH_ONLY=engine_ingest,decode_line` (workload names): the summary
//! runs the baselines and those workloads only, e.g. under `perf record`.
//!
//! `BENCH_CORPUS_OUT=path`: write the corpus (of `BENCH_EVENTS` events,
//! the first profile) to `path` and exit, to time or profile the `report`
//! command itself on it.
//!
//! `BENCH_PROFILE`: `demo` (8 connectors), `realistic` (1,000 connectors ×
//! 6 clouds, 200k users, 50k connections: issue 8's profile) or `both`
//! (the default: the summary covers both, criterion the first).
//!
//! Groups (criterion, Throughput::Elements = events):
//! - `parse_only`: JSON syntax only, the baselines: `serde_json::Value` per
//!   line, a borrowed `#[derive(Deserialize)]` struct of the event's fields
//!   (what a hand-written single-threaded reader would do: `report`'s
//!   baseline in issue 8), and a borrowed `IgnoredAny` parse;
//! - `decode`: `event::decode_line` over every line (parse + validation),
//!   the same through the `serde_json` path alone (`serde_json_path`: the
//!   decoder before its sonic-rs fast path), and whole NDJSON payloads of
//!   100 lines (`decode_payload`: the daemon's path, lines split out of
//!   each message);
//! - `classify_aggregate`: decoded events ingested into one `Engine` (one
//!   single-writer task, or one of `report`'s workers), one event at a time
//!   (`engine_ingest`) and in batches of `GROUP_BATCH` events visited scope
//!   by scope (`engine_ingest_batch`, what the daemon and `report` do);
//! - `report_end_to_end`: `report::report_file_with` (what the `report`
//!   command runs: the criteria window measured) on the corpus file, with 1
//!   and with 2 worker threads.
//!
//! After criterion, a plain summary: events/s per workload (best of a few
//! timed runs in this process) and its ratio to the `parse_only`
//! baselines, by wall time and, in parentheses, per second of the
//! process's CPU time (steadier on a shared machine; for `threads_2` it
//! adds both threads' time).

/// The allocator the binary ships with (`src/main.rs`): the bench measures
/// what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/corpus.rs"]
mod corpus;

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use connector_ga_exporter::config::Config;
use connector_ga_exporter::engine::event::{self, Event};
use connector_ga_exporter::engine::state::{Admission, Digest, Engine, Params, SeriesBudget};
use connector_ga_exporter::engine::timeutil::{self, Micros};
use connector_ga_exporter::report;
use criterion::{Criterion, SamplingMode, Throughput};

struct Fixture {
    profile: corpus::Profile,
    n: u64,
    bytes: usize,
    lines: Vec<&'static [u8]>,
    /// The lines in NDJSON payloads of [`PAYLOAD_LINES`], as the daemon's
    /// messages carry them (`benches/daemon.rs`).
    payloads: Vec<Vec<u8>>,
    events: Vec<Event<'static>>,
    file: tempfile::NamedTempFile,
    cfg: Config,
    now: Micros,
}

fn fixture(profile: corpus::Profile) -> Fixture {
    let count: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let t = Instant::now();
    // Leaked: the corpus lives as long as the process, and decoded events
    // borrow from it.
    let data: &'static [u8] = Vec::leak(corpus::generate_of(profile, count, 42));
    let lines: Vec<&'static [u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write corpus");
    file.flush().expect("flush corpus");
    let mut events = Vec::with_capacity(lines.len());
    let mut rejected = 0u64;
    for l in &lines {
        event::decode_line(l, &mut |r| match r {
            Ok(e) => events.push(e),
            Err(_) => rejected += 1,
        });
    }
    assert_eq!(rejected, 0, "the corpus is all valid");
    eprintln!(
        "corpus {}: {} events, {} bytes ({:.0} bytes/event), generated in {:.1?}, file {}",
        profile.name(),
        lines.len(),
        data.len(),
        data.len() as f64 / lines.len() as f64,
        t.elapsed(),
        file.path().display()
    );
    let payloads = lines
        .chunks(PAYLOAD_LINES)
        .map(|c| c.join(&b'\n'))
        .collect();
    Fixture {
        profile,
        n: lines.len() as u64,
        bytes: data.len(),
        lines,
        payloads,
        events,
        file,
        cfg: Config::from_toml("").expect("default config"),
        now: timeutil::parse_rfc3339(corpus::NOW).expect("NOW"),
    }
}

// The workloads, each over the whole corpus; criterion and the summary time
// the same functions.

fn parse_value(f: &Fixture) -> u64 {
    let mut n = 0;
    for l in &f.lines {
        let v: serde_json::Value = serde_json::from_slice(l).expect("valid JSON");
        n += v.is_object() as u64;
    }
    n
}

/// The fields of SPEC §2, borrowed from the line: the plainest fast
/// reader serde_json offers (no validation beyond the types).
#[derive(serde::Deserialize)]
#[allow(dead_code)] // read, never used: the parse is what is measured
struct Ev<'a> {
    #[serde(borrow)]
    ts: &'a serde_json::value::RawValue,
    connector: &'a str,
    cloud: Option<&'a str>,
    status: Option<u16>,
    fault: Option<&'a str>,
    latency_ms: Option<f64>,
    user: Option<&'a str>,
    connection: Option<&'a str>,
    operation: Option<&'a str>,
}

fn parse_borrowed(f: &Fixture) -> u64 {
    let mut n = 0;
    for l in &f.lines {
        let e: Ev<'_> = serde_json::from_slice(l).expect("valid event");
        black_box(&e);
        n += 1;
    }
    n
}

fn parse_ignored(f: &Fixture) -> u64 {
    let mut n = 0;
    for l in &f.lines {
        let _: serde::de::IgnoredAny = serde_json::from_slice(l).expect("valid JSON");
        n += 1;
    }
    n
}

fn decode(f: &Fixture) -> u64 {
    let mut ok = 0u64;
    for l in &f.lines {
        event::decode_line(l, &mut |r| ok += r.is_ok() as u64);
    }
    ok
}

/// Lines per payload in `decode_payload`: the daemon bench's messages.
const PAYLOAD_LINES: usize = 100;

/// The daemon's decode path: whole NDJSON messages of 100 events, split
/// into lines, each line parsed (`decode_payload_raw`, as `kafka::batch`).
fn decode_payloads(f: &Fixture) -> u64 {
    let mut ok = 0u64;
    for p in &f.payloads {
        event::decode_payload_raw(p, |r, _, _| ok += r.is_ok() as u64);
    }
    ok
}

/// `decode` through the `serde_json` path alone (what `decode_line` was
/// before the sonic-rs fast path): before and after in the same run.
fn decode_reference(f: &Fixture) -> u64 {
    let mut ok = 0u64;
    for l in &f.lines {
        event::decode_payload_reference(l, |r| ok += r.is_ok() as u64);
    }
    ok
}

fn admission(f: &Fixture) -> Admission {
    Admission::report_at(f.now, f.cfg.criteria.retention_days)
}

fn aggregate_engine(f: &Fixture) -> u64 {
    // One Engine, one writer: what a per-partition task does.
    let p = Params::from_config(&f.cfg);
    let budget = SeriesBudget::new(usize::MAX);
    let adm = admission(f);
    let mut e = Engine::default();
    let mut accepted = 0;
    for ev in &f.events {
        accepted += e.ingest(ev, &adm, &p, &budget).is_ok() as u64;
    }
    black_box(&e);
    accepted
}

/// Events per `Engine::ingest_batch` call in `engine_ingest_batch`: about
/// what one of the daemon's polled batches holds (4,096 messages of up to
/// 100 events) for one of its busier tasks.
const GROUP_BATCH: usize = 32_768;

fn aggregate_engine_batch(f: &Fixture) -> u64 {
    let p = Params::from_config(&f.cfg);
    let budget = SeriesBudget::new(usize::MAX);
    let adm = admission(f);
    let mut e = Engine::default();
    let mut rejected = 0;
    for chunk in f.events.chunks(GROUP_BATCH) {
        // Digesting is timed too: the hashing it does was `Batch::of`'s.
        let digests: Vec<Digest> = chunk.iter().map(Digest::of).collect();
        let refs: Vec<&_> = digests.iter().collect();
        e.ingest_batch(&refs, &adm, &p, &budget, |_, _| rejected += 1);
    }
    black_box(&e);
    f.events.len() as u64 - rejected
}

fn end_to_end(f: &Fixture, threads: usize) -> u64 {
    let r = report::report_file_with(f.file.path(), &f.cfg, Some(f.now), f.now, threads, false)
        .expect("report");
    r.scopes.len() as u64
}

fn end_to_end_1(f: &Fixture) -> u64 {
    end_to_end(f, 1)
}

fn end_to_end_2(f: &Fixture) -> u64 {
    end_to_end(f, 2)
}

type Workload = (&'static str, &'static str, fn(&Fixture) -> u64);

const WORKLOADS: [Workload; 10] = [
    ("parse_only", "serde_json_value", parse_value),
    ("parse_only", "borrowed_struct", parse_borrowed),
    ("parse_only", "ignored_any", parse_ignored),
    ("decode", "serde_json_path", decode_reference),
    ("decode", "decode_line", decode),
    ("decode", "decode_payload", decode_payloads),
    ("classify_aggregate", "engine_ingest", aggregate_engine),
    (
        "classify_aggregate",
        "engine_ingest_batch",
        aggregate_engine_batch,
    ),
    ("report_end_to_end", "threads_1", end_to_end_1),
    ("report_end_to_end", "threads_2", end_to_end_2),
];

fn run_criterion(c: &mut Criterion, f: &Fixture) {
    for g in [
        "parse_only",
        "decode",
        "classify_aggregate",
        "report_end_to_end",
    ] {
        let mut gr = c.benchmark_group(g);
        gr.throughput(Throughput::Elements(f.n))
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(5));
        for (_, name, work) in WORKLOADS.iter().filter(|w| w.0 == g) {
            gr.bench_function(*name, |b| b.iter(|| black_box(work(black_box(f)))));
        }
        gr.finish();
    }
}

/// CPU time of the whole process (all its threads), in seconds: on a
/// machine shared with other work, wall time also counts the time this
/// process waited for a core.
fn cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Best of `runs` timed runs: (wall seconds, CPU seconds), each the
/// minimum over the runs.
fn best_of(runs: usize, f: &Fixture, work: fn(&Fixture) -> u64) -> (f64, f64) {
    (0..runs)
        .map(|_| {
            let (t, c) = (Instant::now(), cpu_secs());
            black_box(work(f));
            (t.elapsed().as_secs_f64(), cpu_secs() - c)
        })
        .fold((f64::INFINITY, f64::INFINITY), |a, b| {
            (a.0.min(b.0), a.1.min(b.1))
        })
}

fn summary(f: &Fixture) {
    let runs: usize = std::env::var("BENCH_SUMMARY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!();
    println!(
        "summary: profile {}: {} events, {:.0} bytes/event, best of {runs} runs, {} CPU(s)",
        f.profile.name(),
        f.n,
        f.bytes as f64 / f.n as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut base_value = None;
    let mut base_borrowed = None;
    // BENCH_ONLY=a,b: the baselines and those workloads only (to profile them).
    let only = std::env::var("BENCH_ONLY").ok();
    for (g, name, work) in WORKLOADS {
        if only
            .as_ref()
            .is_some_and(|o| g != "parse_only" && !o.split(',').any(|o| o == name))
        {
            continue;
        }
        let (secs, cpu) = best_of(runs, f, work);
        let (eps, per_cpu) = (f.n as f64 / secs, f.n as f64 / cpu);
        match name {
            "serde_json_value" => base_value = Some((eps, per_cpu)),
            "borrowed_struct" => base_borrowed = Some((eps, per_cpu)),
            _ => {}
        }
        let ratio = |b: Option<(f64, f64)>| {
            b.map_or("-".to_string(), |b| {
                format!("{:.2} ({:.2})", eps / b.0, per_cpu / b.1)
            })
        };
        println!(
            "summary: {:<10} {:<32} {:>9.0} events/s ({:>9.0} per CPU-s) {:>6.1} MB/s  ratio_to(serde_json_value) {:>11}  ratio_to(borrowed_struct) {:>11}",
            f.profile.name(),
            format!("{g}/{name}"),
            eps,
            per_cpu,
            f.bytes as f64 / secs / 1e6,
            ratio(base_value),
            ratio(base_borrowed),
        );
    }
}

fn profiles() -> Vec<corpus::Profile> {
    use corpus::Profile;
    match std::env::var("BENCH_PROFILE").as_deref() {
        Ok("demo") => vec![Profile::Demo],
        Ok("realistic") => vec![Profile::Realistic],
        Ok("both") | Err(_) => vec![Profile::Demo, Profile::Realistic],
        Ok(other) => panic!("BENCH_PROFILE={other}: use demo, realistic or both"),
    }
}

fn main() {
    let profiles = profiles();
    if let Some(out) = std::env::var_os("BENCH_CORPUS_OUT") {
        let f = fixture(profiles[0]);
        std::fs::copy(f.file.path(), &out).expect("BENCH_CORPUS_OUT: copy the corpus");
        return;
    }
    // BENCH_SUMMARY_ONLY=1: skip criterion, print the plain summary only.
    if std::env::var_os("BENCH_SUMMARY_ONLY").is_some() {
        for p in profiles {
            // One corpus at a time: each holds ~300 MB.
            summary(&fixture(p));
        }
        return;
    }
    let f = fixture(profiles[0]);
    let mut c = Criterion::default().sample_size(10).configure_from_args();
    run_criterion(&mut c, &f);
    c.final_summary();
    // `cargo bench -- --list` or a filter: no summary for partial runs.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.is_empty() {
        summary(&f);
        for p in &profiles[1..] {
            summary(&fixture(*p));
        }
    }
}
