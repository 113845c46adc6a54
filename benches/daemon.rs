//! The daemon against a tuned bare rdkafka consume loop, both reading the
//! same topic of one `mock-kafka` process in the same run (issue 8), and the
//! daemon's ingest rate while a reader renders every scope in a loop.
//! Run: `cargo bench --bench daemon` (knobs: see `Knobs`).
//!
//! - Input: the `realistic` corpus profile (1,000 connectors × 6 clouds,
//!   200,000 users, 50,000 connections, power-law traffic), keyed by
//!   connector: each message holds up to 100 NDJSON events of one
//!   connector, and every connector's messages go to one partition
//!   (`[kafka] input_keyed_by_connector = true`). Partitions are assigned
//!   to connectors greedily by their share of traffic, so the busiest
//!   partition holds as little as the skew allows.
//! - librdkafka's mock cluster keeps only 5 MiB (and 100,000 messages) per
//!   partition and silently drops older data: the producer counts bytes per
//!   partition and refuses to run past 4.5 MiB, and both consumers must read
//!   every event produced (asserted), or the run is invalid.
//! - The bare loop: one `BaseConsumer`, `fetch.queue.backoff.ms=1`, a 1 GiB
//!   fetch queue, counts the events of each payload (its newlines).
//! - The daemon (`common/member.rs`): `kafka::Consumer::run` (the consumer
//!   thread, its tasks and its ingest pool, exactly as `run` starts them)
//!   with the background `/metrics` renderer of `run` beside it (which,
//!   as in `run`, renders only while reads come: nothing, here); only HTTP
//!   is left out. It is run in-process rather than as the binary so that
//!   its progress can be read from the views it publishes (every 500 ms)
//!   instead of a scrape, and its CPU time is the bench process's.
//! - Its rate is measured between the first and the last view published
//!   while it consumes (both steady), so the 500 ms publishing interval does
//!   not blur it; the wall time from assignment to the view that shows every
//!   event is printed too.
//! - `CGA_BENCH_REKEY=1`: the same comparison with the re-key stage. The
//!   input is not keyed by connector (`feed::produce_unkeyed`: 100 events
//!   of mixed connectors a message, messages round-robin over the
//!   partitions), the daemon runs with `input_keyed_by_connector = false`,
//!   and `<group>-by-connector` is created on the mock at start (its
//!   cluster has no CreateTopics handler). The daemon's count is that of
//!   its aggregating tasks (events handed to their engines), so its rate
//!   covers read, validate, produce, fetch again and aggregate. The
//!   re-keyed topic holds records of up to 1,000 events (one source
//!   partition's events of one batch bound for one partition): the run is
//!   invalid if the mock dropped any of it (a low watermark past 0).

/// The allocator the binary ships with (`src/main.rs`): the bench measures
/// what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

#[path = "common/baselines.rs"]
mod baselines;
#[path = "common/corpus.rs"]
mod corpus;
#[path = "common/feed.rs"]
mod feed;
#[path = "common/member.rs"]
mod member;

use baselines::{bare_loop, engine_only, print_run, Run};

use feed::{
    produce_realistic, produce_seed, produce_unkeyed, watermarks, MockKafka, Produced, SEED_TOPIC,
    TOPIC,
};
use member::daemon;

/// Environment knobs, with their defaults.
pub struct Knobs {
    /// `CGA_BENCH_EVENTS`: events of the `realistic` topic.
    pub events: usize,
    /// `CGA_BENCH_PARTITIONS`.
    pub partitions: i32,
    /// `CGA_BENCH_PER_MESSAGE`: events per message (most; a connector's
    /// last message holds the rest).
    pub per_message: usize,
    /// `CGA_BENCH_ROUNDS`: bare loop then daemon, this many times.
    pub rounds: usize,
    /// `CGA_BENCH_COMPRESSION`: the producer's `compression.type`.
    pub compression: String,
    /// `CGA_BENCH_ONLY`: `compare`, `reader` or `daemon` (one daemon run,
    /// for `perf`); both of the first two when unset.
    pub only: Option<String>,
    /// `CGA_BENCH_REKEY=1`: unkeyed input through the re-key stage
    /// (`compare` or `daemon` only).
    pub rekey: bool,
}

fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

impl Knobs {
    fn read() -> Knobs {
        Knobs {
            events: env("CGA_BENCH_EVENTS", 800_000),
            partitions: env("CGA_BENCH_PARTITIONS", 128),
            per_message: env("CGA_BENCH_PER_MESSAGE", 100),
            rounds: env("CGA_BENCH_ROUNDS", 3),
            compression: env("CGA_BENCH_COMPRESSION", "none".to_string()),
            only: std::env::var("CGA_BENCH_ONLY").ok(),
            rekey: env("CGA_BENCH_REKEY", 0u8) == 1,
        }
    }
}

fn compare(mock: &MockKafka, k: &Knobs, realistic: &Produced) {
    let mut ratios = Vec::new();
    let label = if k.rekey {
        "daemon, re-key stage (aggregated)"
    } else {
        "daemon (consumer + tasks + pool)"
    };
    for round in 0..k.rounds {
        println!("round {}:", round + 1);
        let bare = bare_loop(
            mock,
            realistic.events,
            realistic.messages,
            &format!("bare-{round}"),
        );
        print_run("bare rdkafka loop", &bare);
        let group = group_of(k, "daemon", round);
        let d = daemon(mock, &[TOPIC], realistic.events, &group, false, k.rekey);
        print_run(label, &d.run);
        if k.rekey {
            rekeyed_intact(mock, k, &group, realistic.events, d.input_secs);
        }
        let whole = realistic.events as f64 / d.total_secs;
        println!(
            "  daemon: {:.2} s from assignment to the view of all {} events ({:.0} events/s, ratio {:.2}; the view lags up to 0.6 s); {} rejected; {} scopes",
            d.total_secs,
            realistic.events,
            whole,
            whole / bare.rate,
            d.rejected,
            d.scopes
        );
        assert_eq!(d.rejected, 0, "every corpus event is valid and recent");
        let eng = engine_only(
            &realistic.messages_kept,
            k.partitions,
            realistic.events,
            k.rekey,
        );
        print_run("engine only (decode+ingest, 1 thread)", &eng);
        // CPU per event: what the daemon spends beyond fetching (the bare
        // loop's) and decode + aggregate (the engine-only pass's).
        let us = |r: &Run| 1e6 / r.per_cpu();
        println!(
            "  CPU per event: daemon {:.2} µs = bare fetch {:.2} + decode+aggregate {:.2} + pipeline {:.2}",
            us(&d.run),
            us(&bare),
            us(&eng),
            us(&d.run) - us(&bare) - us(&eng)
        );
        let ratio = d.run.rate / bare.rate;
        let cpu_ratio = d.run.per_cpu() / bare.per_cpu();
        println!("  ratio daemon/bare: {ratio:.2} (per CPU-s {cpu_ratio:.2})");
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "ratio daemon/bare over {} rounds: min {:.2} median {:.2} max {:.2}",
        ratios.len(),
        ratios[0],
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1]
    );
}

/// A daemon run's consumer group (and so, with the re-key stage, its
/// re-keyed topic, created at start): one per round.
fn group_of(k: &Knobs, what: &str, round: usize) -> String {
    if k.rekey {
        format!("rekey-{what}-{round}")
    } else {
        format!("{what}-{round}")
    }
}

/// Asserts that the re-keyed topic of `group` lost nothing in the mock,
/// and prints what it holds.
fn rekeyed_intact(mock: &MockKafka, k: &Knobs, group: &str, events: u64, input_secs: f64) {
    let topic = format!("{group}-by-connector");
    let w = watermarks(&mock.brokers, &topic, k.partitions);
    let dropped: Vec<usize> = (0..w.len()).filter(|&p| w[p].0 > 0).collect();
    assert!(
        dropped.is_empty(),
        "the mock dropped re-keyed records of partitions {dropped:?} of {topic} (5 MiB cap): \
         run invalid, lower CGA_BENCH_EVENTS"
    );
    let records: i64 = w.iter().map(|x| x.1).sum();
    println!(
        "  re-key stage: input read in {input_secs:.2} s; {topic} holds {records} records \
         for {events} events (busiest partition {}), none dropped",
        w.iter().map(|x| x.1).max().unwrap_or(0)
    );
}

fn reader_runs(mock: &MockKafka, k: &Knobs, realistic: &Produced, seed: u64) {
    let expect = realistic.events + seed;
    for round in 0..k.rounds {
        println!("reader round {}:", round + 1);
        let mut rates = [0.0; 2];
        for (j, with) in [false, true].into_iter().enumerate() {
            let d = daemon(
                mock,
                &[TOPIC, SEED_TOPIC],
                expect,
                &format!("reader-{round}-{with}"),
                with,
                false,
            );
            let what = if with {
                "daemon, reader rendering in a loop"
            } else {
                "daemon, no reader"
            };
            print_run(what, &d.run);
            assert_eq!(
                d.rejected, 0,
                "every event is valid, recent and within max_series"
            );
            if with {
                println!(
                    "  reader: {} renderings of /metrics + /api/v1/criteria ({:.1} MB text), {:.0} ms each on average; {} scopes at the end",
                    d.renders, d.render_bytes as f64 / 1e6, d.render_ms, d.scopes
                );
            }
            rates[j] = d.run.rate;
        }
        println!(
            "  ingest rate with the reader / without: {:.2}",
            rates[1] / rates[0]
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let k = Knobs::read();
    let mut topics = vec![
        format!("{TOPIC}:{}", k.partitions),
        format!("{SEED_TOPIC}:8"),
    ];
    if k.rekey {
        // The re-keyed topic of each round's group, with the input's
        // partition count, as the daemon would create it on a real broker.
        assert!(
            matches!(k.only.as_deref(), None | Some("compare") | Some("daemon")),
            "CGA_BENCH_REKEY=1 runs CGA_BENCH_ONLY=compare or daemon"
        );
        for round in 0..k.rounds {
            for what in ["daemon", "daemon-only"] {
                let g = group_of(&k, what, round);
                topics.push(format!("{g}-by-connector:{}", k.partitions));
            }
        }
    }
    let mock = MockKafka::start(&topics);
    let now_ms = connector_ga_exporter::app::wall_clock() / 1000;
    let t = Instant::now();
    let realistic = if k.rekey {
        let (p, r) = produce_unkeyed(&mock.brokers, &k, now_ms);
        let busiest = (0..r.bytes.len()).max_by_key(|&i| r.bytes[i]).unwrap_or(0);
        println!(
            "input NOT keyed by connector; the re-key stage packs events into records of up \
             to 1,000; busiest connector {} events; busiest re-keyed partition {} events, \
             {:.2} MiB before packing and the re-key producer's lz4 (stored compressed; the \
             5 MiB cap is checked after each run)",
            r.busiest_connector,
            r.records[busiest],
            r.bytes[busiest] as f64 / 1048576.0
        );
        p
    } else {
        produce_realistic(&mock.brokers, &k, now_ms)
    };
    println!(
        "produced {} realistic events in {} messages ({} B, {:.0} B/event, compression {}) to {} \
         partitions, busiest {:.2} MiB, in {:.1} s; mock-kafka at {}",
        realistic.events,
        realistic.messages,
        realistic.bytes,
        realistic.bytes as f64 / realistic.events as f64,
        k.compression,
        k.partitions,
        realistic.max_partition_bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64(),
        mock.brokers
    );
    match k.only.as_deref() {
        Some("daemon") => {
            // For `perf record -p`: rounds of the daemon alone.
            println!("daemon only, pid {}", std::process::id());
            // A/B: odd rounds run with the environment of variant B
            // (`CGA_BENCH_B=KEY=VALUE;...`), even rounds without it.
            let b: Vec<(String, String)> = std::env::var("CGA_BENCH_B")
                .unwrap_or_default()
                .split(';')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let a: Vec<(String, Option<String>)> = b
                .iter()
                .map(|(k, _)| (k.clone(), std::env::var(k).ok()))
                .collect();
            let mut per = [Vec::new(), Vec::new()];
            for round in 0..k.rounds {
                let variant = round % 2;
                for (key, v) in &a {
                    match (variant, v) {
                        (0, Some(v)) => std::env::set_var(key, v),
                        (0, None) => std::env::remove_var(key),
                        _ => {}
                    }
                }
                if variant == 1 {
                    for (key, v) in &b {
                        std::env::set_var(key, v);
                    }
                }
                let d = daemon(
                    &mock,
                    &[TOPIC],
                    realistic.events,
                    &group_of(&k, "daemon-only", round),
                    false,
                    k.rekey,
                );
                if k.rekey {
                    let g = group_of(&k, "daemon-only", round);
                    rekeyed_intact(&mock, &k, &g, realistic.events, d.input_secs);
                }
                print_run(
                    if variant == 0 {
                        "daemon, A"
                    } else {
                        "daemon, B"
                    },
                    &d.run,
                );
                let whole = realistic.events as f64 / d.total_cpu;
                println!(
                    "    assignment to all-read view: {:.2} s, {:.2} CPU-s, {:.0} events per CPU-s",
                    d.total_secs, d.total_cpu, whole
                );
                per[variant].push((d.run.rate, whole));
            }
            for (name, v) in ["A", "B"].iter().zip(&mut per) {
                if v.is_empty() {
                    continue;
                }
                v.sort_by(|x, y| x.1.total_cmp(&y.1));
                let mut rates: Vec<f64> = v.iter().map(|x| x.0).collect();
                rates.sort_by(f64::total_cmp);
                println!(
                    "{name}: median {:.0} events/s (steady span), median {:.0} events per CPU-s (assignment to all read) ({} rounds)",
                    rates[rates.len() / 2],
                    v[v.len() / 2].1,
                    v.len()
                );
            }
        }
        Some("compare") => compare(&mock, &k, &realistic),
        Some("reader") => {
            let seed = produce_seed(&mock.brokers, now_ms);
            reader_runs(&mock, &k, &realistic, seed);
        }
        _ if k.rekey => compare(&mock, &k, &realistic),
        _ => {
            compare(&mock, &k, &realistic);
            let seed = produce_seed(&mock.brokers, now_ms);
            reader_runs(&mock, &k, &realistic, seed);
        }
    }
}
