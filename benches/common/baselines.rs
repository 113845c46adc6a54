//! The baselines of `benches/daemon.rs`, measured in the same run as the
//! daemon: a tuned bare rdkafka consume loop, and the engine alone (decode
//! and aggregate on one thread, no Kafka).

use std::time::{Duration, Instant};

use connector_ga_exporter::config::Config;
use connector_ga_exporter::engine::event;
use connector_ga_exporter::engine::state::{Admission, Digest};
use connector_ga_exporter::task::{Stage, Task, TaskId, TaskSet};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

use crate::feed::{process_cpu, MockKafka, TOPIC};

/// One timed consumption.
pub struct Run {
    pub events: u64,
    /// Events per second over the measured span.
    pub rate: f64,
    /// The measured span, seconds.
    pub secs: f64,
    /// CPU seconds of this process over that span.
    pub cpu: f64,
    /// CPU seconds of the broker process over that span.
    pub broker_cpu: f64,
}

impl Run {
    pub fn per_cpu(&self) -> f64 {
        self.rate * self.secs / self.cpu
    }
}

/// The tuned bare loop: poll, count each payload's events, nothing else.
pub fn bare_loop(mock: &MockKafka, expect_events: u64, expect_messages: u64, group: &str) -> Run {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &mock.brokers)
        .set("group.id", group)
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.queue.backoff.ms", "1")
        .set("queued.max.messages.kbytes", "1048576")
        .set("queued.min.messages", "1000000")
        .create()
        .expect("consumer");
    c.subscribe(&[TOPIC]).expect("subscribe");
    let (mut events, mut messages) = (0u64, 0u64);
    let mut start = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    while messages < expect_messages {
        assert!(
            Instant::now() < deadline,
            "bare loop read {messages} of {expect_messages} messages in 300 s: run invalid"
        );
        if let Some(r) = c.poll(Duration::from_millis(100)) {
            let m = r.expect("poll");
            // The clock starts at the first message: group join excluded.
            start.get_or_insert_with(|| (Instant::now(), process_cpu(), mock.cpu()));
            let p = m.payload().unwrap_or(&[]);
            events += p.iter().filter(|&&b| b == b'\n').count() as u64;
            messages += 1;
        }
    }
    let (t, cpu, bcpu) = start.expect("read something");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(
        events, expect_events,
        "bare loop read {events} events of {expect_events}: run invalid"
    );
    Run {
        events,
        rate: events as f64 / secs,
        secs,
        cpu: process_cpu() - cpu,
        broker_cpu: mock.cpu() - bcpu,
    }
}

/// The same payloads decoded and ingested on this thread alone into one
/// task per partition, no Kafka, no batches, no pool: the CPU the daemon
/// cannot avoid per event. `by_connector`: input not keyed by connector,
/// so each event goes to the task of its connector's re-keyed partition
/// (decoded once: the re-key stage's second decode and its round trip are
/// the daemon's own costs).
pub fn engine_only(
    msgs: &[(i32, Vec<u8>)],
    partitions: i32,
    expect: u64,
    by_connector: bool,
) -> Run {
    let cfg = Config::from_toml("[kafka]\ninput_keyed_by_connector = true").expect("config");
    let set = TaskSet::new(&cfg);
    let mut tasks: Vec<Task> = (0..partitions)
        .map(|p| Task::new(TaskId::new(TOPIC, p), Stage::Aggregate))
        .collect();
    let now = connector_ga_exporter::app::wall_clock();
    let adm = Admission::daemon_at(
        now,
        cfg.criteria.retention_days,
        cfg.criteria.max_future_skew_seconds,
    );
    let (t, cpu) = (Instant::now(), process_cpu());
    let (mut events, mut bad) = (0u64, 0u64);
    // Each message's events go to their tasks as one batch per task, as
    // the daemon's ingest phase does (`Task::ingest_batch`).
    let mut by_task: Vec<Vec<Digest>> = (0..partitions).map(|_| Vec::new()).collect();
    for (p, payload) in msgs {
        events += event::decode_payload_raw(payload, |r, _, _| match r {
            Ok(ev) => {
                let p = if by_connector {
                    // librdkafka's default partitioner, as the re-key stage's.
                    (crc32fast::hash(ev.connector.as_bytes()) % partitions as u32) as usize
                } else {
                    *p as usize
                };
                // Digested where decoded, as the daemon's decode phase does.
                by_task[p].push(Digest::of(&ev));
            }
            Err(_) => bad += 1,
        });
        for (task, evs) in tasks.iter_mut().zip(by_task.iter_mut()) {
            if evs.is_empty() {
                continue;
            }
            let refs: Vec<_> = evs.iter().collect();
            task.ingest_batch(&refs, &adm, set.params(), set.budget(), |_, _| bad += 1);
            drop(refs);
            evs.clear();
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = process_cpu() - cpu;
    assert_eq!((events, bad), (expect, 0), "engine-only pass");
    Run {
        events,
        rate: events as f64 / secs,
        secs,
        cpu,
        broker_cpu: 0.0,
    }
}

pub fn print_run(what: &str, r: &Run) {
    println!(
        "  {what:<34} {:>10.0} events/s over {:>5.2} s ({} events); {:>10.0} events per CPU-s \
         (this process {:.2} CPU-s, broker {:.2})",
        r.rate,
        r.secs,
        r.events,
        r.per_cpu(),
        r.cpu,
        r.broker_cpu
    );
}
