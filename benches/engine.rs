//! Engine throughput on a deterministic corpus of realistic events.
//!
//!     cargo bench --bench engine            # 1,000,000 events
//!     BENCH_EVENTS=200000 cargo bench --bench engine
//!     BENCH_SUMMARY_ONLY=1 cargo bench --bench engine   # no criterion
//!
//! Groups (criterion, Throughput::Elements = events):
//! - `parse_only`: JSON syntax only, the baseline: `serde_json::Value` per
//!   line, and a borrowed `IgnoredAny` parse;
//! - `decode`: `event::decode_line` over every line (parse + validation);
//! - `classify_aggregate`: decoded events ingested into a `Store`;
//! - `report_end_to_end`: `report::report_file` on the corpus file, with 1
//!   and with 2 decode threads.
//!
//! After criterion, a plain summary: events/s per workload (best of a few
//! timed runs in this process) and its ratio to `parse_only`.

#[path = "common/corpus.rs"]
mod corpus;

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use connector_ga_exporter::config::Config;
use connector_ga_exporter::engine::event::{self, Event, RejectCounts};
use connector_ga_exporter::engine::state::Admission;
use connector_ga_exporter::engine::timeutil::{self, Micros};
use connector_ga_exporter::report;
use connector_ga_exporter::store::Store;
use criterion::{Criterion, SamplingMode, Throughput};

struct Fixture {
    n: u64,
    bytes: usize,
    lines: Vec<&'static [u8]>,
    events: Vec<Event<'static>>,
    file: tempfile::NamedTempFile,
    cfg: Config,
    now: Micros,
}

fn fixture() -> Fixture {
    let count: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let t = Instant::now();
    // Leaked: the corpus lives as long as the process, and decoded events
    // borrow from it.
    let data: &'static [u8] = Vec::leak(corpus::generate(count, 42));
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
        "corpus: {} events, {} bytes ({:.0} bytes/event), generated in {:.1?}, file {}",
        lines.len(),
        data.len(),
        data.len() as f64 / lines.len() as f64,
        t.elapsed(),
        file.path().display()
    );
    Fixture {
        n: lines.len() as u64,
        bytes: data.len(),
        lines,
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

fn admission(f: &Fixture) -> Admission {
    Admission::report_at(f.now, f.cfg.criteria.retention_days)
}

fn aggregate(f: &Fixture) -> u64 {
    // As `report` does: 64 shards, batches of 4096 events.
    let store = Store::from_config(&f.cfg, 64);
    let adm = admission(f);
    let mut rejected = RejectCounts::default();
    let mut accepted = 0;
    for chunk in f.events.chunks(4096) {
        accepted += store.ingest_batch(chunk.to_vec(), &adm, &mut rejected);
    }
    black_box(&store);
    accepted
}

fn end_to_end(f: &Fixture, threads: usize) -> u64 {
    let r =
        report::report_file(f.file.path(), &f.cfg, Some(f.now), f.now, threads).expect("report");
    r.scopes.len() as u64
}

fn end_to_end_1(f: &Fixture) -> u64 {
    end_to_end(f, 1)
}

fn end_to_end_2(f: &Fixture) -> u64 {
    end_to_end(f, 2)
}

type Workload = (&'static str, &'static str, fn(&Fixture) -> u64);

const WORKLOADS: [Workload; 6] = [
    ("parse_only", "serde_json_value", parse_value),
    ("parse_only", "ignored_any", parse_ignored),
    ("decode", "decode_line", decode),
    ("classify_aggregate", "store_ingest", aggregate),
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

/// Best of `runs` timed runs, in seconds.
fn best_of(runs: usize, f: &Fixture, work: fn(&Fixture) -> u64) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            black_box(work(f));
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn summary(f: &Fixture) {
    let runs: usize = std::env::var("BENCH_SUMMARY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!();
    println!(
        "summary: {} events, {:.0} bytes/event, best of {runs} runs, {} CPU(s)",
        f.n,
        f.bytes as f64 / f.n as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut base_value = None;
    let mut base_ignored = None;
    for (g, name, work) in WORKLOADS {
        let secs = best_of(runs, f, work);
        let eps = f.n as f64 / secs;
        match name {
            "serde_json_value" => base_value = Some(eps),
            "ignored_any" => base_ignored = Some(eps),
            _ => {}
        }
        let ratio = |b: Option<f64>| b.map_or("-".to_string(), |b| format!("{:.2}", eps / b));
        println!(
            "summary: {:<32} {:>12.0} events/s  {:>7.1} MB/s  ratio_to_parse_only(value) {}  ratio_to_parse_only(ignored_any) {}",
            format!("{g}/{name}"),
            eps,
            f.bytes as f64 / secs / 1e6,
            ratio(base_value),
            ratio(base_ignored),
        );
    }
}

fn main() {
    let f = fixture();
    // BENCH_SUMMARY_ONLY=1: skip criterion, print the plain summary only.
    if std::env::var_os("BENCH_SUMMARY_ONLY").is_some() {
        summary(&f);
        return;
    }
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
    }
}
