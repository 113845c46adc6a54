//! The input side of `benches/daemon.rs`: a `mock-kafka` process, and the
//! topics it is fed (the realistic corpus keyed by connector or not, and
//! the seed scopes of the reader runs).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::corpus;
use crate::Knobs;

pub const TOPIC: &str = "bench";
/// 10,000 extra scopes (2,000 connectors × 5 clouds) for the reader runs.
pub const SEED_TOPIC: &str = "bench-seed";
pub const SEED_CONNECTORS: usize = 2_000;
pub const SEED_CLOUDS: [&str; 5] = ["public", "gcc", "gcc-high", "dod", "mooncake"];
/// Below librdkafka's mock partition limit (5 MiB), with room for headers.
const PARTITION_CAP: u64 = 4_718_592;

/// The `mock-kafka` subcommand of the binary, killed on drop.
pub struct MockKafka {
    child: Child,
    pub brokers: String,
}

impl MockKafka {
    pub fn start(topics: &[String]) -> MockKafka {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_connector-ga-exporter"));
        cmd.arg("mock-kafka");
        for t in topics {
            cmd.args(["--topic", t]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .expect("start mock-kafka");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("mock-kafka address");
        let brokers = line.trim().to_string();
        assert!(!brokers.is_empty(), "mock-kafka printed no address");
        MockKafka { child, brokers }
    }

    /// CPU seconds the broker process has used so far.
    pub fn cpu(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the `(comm)`: utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        f.get(11).zip(f.get(12)).map_or(0.0, |(u, s)| (u + s) / tck)
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds of this process (every thread).
pub fn process_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn producer(brokers: &str, compression: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "2097151")
        .set("compression.type", compression)
        .create()
        .expect("producer")
}

fn send(p: &BaseProducer, topic: &str, partition: i32, key: &[u8], payload: &[u8]) {
    let mut rec = BaseRecord::to(topic)
        .partition(partition)
        .key(key)
        .payload(payload);
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((_, r)) => {
                rec = r;
                p.poll(Duration::from_millis(10));
            }
        }
    }
}

/// What was produced to a topic.
#[derive(Default)]
pub struct Produced {
    /// (partition, payload) of every message, for the engine-only pass.
    pub messages_kept: Vec<(i32, Vec<u8>)>,
    pub events: u64,
    pub messages: u64,
    pub bytes: u64,
    pub max_partition_bytes: u64,
}

/// Produces `k.events` realistic events, keyed by connector, messages of
/// up to `k.per_message` events of one connector.
pub fn produce_realistic(brokers: &str, k: &Knobs, now_ms: i64) -> Produced {
    let p = producer(brokers, &k.compression);
    let parts = k.partitions as usize;
    // Connector i's share of traffic is sqrt((i+1)/n) - sqrt(i/n) (the
    // corpus draws n·u²); the busiest go first to the least loaded partition.
    let n = corpus::REALISTIC_CONNECTORS as usize;
    let share = |i: usize| ((i + 1) as f64 / n as f64).sqrt() - (i as f64 / n as f64).sqrt();
    let mut load = vec![0.0f64; parts];
    let partition_of: Vec<i32> = (0..n)
        .map(|i| {
            let (best, _) = load
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .expect("partitions");
            load[best] += share(i);
            best as i32
        })
        .collect();
    let mut rng = corpus::Rng::new(42);
    let mut bufs: Vec<(Vec<u8>, usize)> = (0..n).map(|_| (Vec::new(), 0)).collect();
    let mut per_partition = vec![0u64; parts];
    let mut out = Produced::default();
    let mut line = Vec::with_capacity(256);
    let uncompressed = k.compression == "none";
    let mut flush = |i: usize, buf: &mut Vec<u8>, out: &mut Produced| {
        let part = partition_of[i];
        let key = format!("shared_c{i:04}");
        send(&p, TOPIC, part, key.as_bytes(), buf);
        per_partition[part as usize] += buf.len() as u64;
        // Compressed batches are stored compressed: there the counts read
        // back are the check.
        assert!(
            !uncompressed || per_partition[part as usize] <= PARTITION_CAP,
            "partition {part} would pass {PARTITION_CAP} bytes, past which the mock cluster \
             drops data: lower CGA_BENCH_EVENTS or raise CGA_BENCH_PARTITIONS"
        );
        out.messages += 1;
        out.bytes += buf.len() as u64;
        out.messages_kept.push((part, std::mem::take(buf)));
    };
    for _ in 0..k.events {
        line.clear();
        let i =
            corpus::event_line_at(corpus::Profile::Realistic, now_ms, &mut rng, &mut line) as usize;
        let (buf, count) = &mut bufs[i];
        buf.extend_from_slice(&line);
        *count += 1;
        out.events += 1;
        if *count == k.per_message {
            *count = 0;
            flush(i, buf, &mut out);
        }
    }
    for (i, (buf, count)) in bufs.iter_mut().enumerate() {
        if *count > 0 {
            flush(i, buf, &mut out);
        }
    }
    p.flush(Duration::from_secs(300)).expect("flush");
    out.max_partition_bytes = per_partition.iter().copied().max().unwrap_or(0);
    out
}

/// Where the re-key stage will write the events of an unkeyed topic,
/// predicted from the corpus: per partition of `<group>-by-connector`.
pub struct Rekeyed {
    pub records: Vec<u64>,
    /// Record bytes before compression (event + key + headers).
    pub bytes: Vec<u64>,
    /// Events of the busiest connector.
    pub busiest_connector: u64,
}

/// A re-keyed record beyond its event's bytes, uncompressed: key
/// (`shared_c0000`, 12 B), the four source headers (~82 B with their
/// lengths) and the record's own varints (~16 B).
const REKEY_OVERHEAD: u64 = 110;

/// Produces `k.events` realistic events NOT keyed by connector, for the
/// re-key stage: consecutive corpus events, `k.per_message` to a message
/// (so a message mixes connectors), messages round-robin over the
/// partitions, keyed by their number.
pub fn produce_unkeyed(brokers: &str, k: &Knobs, now_ms: i64) -> (Produced, Rekeyed) {
    let p = producer(brokers, &k.compression);
    let parts = k.partitions as usize;
    // librdkafka's default partitioner (`consistent_random`), which the
    // daemon's re-key producer uses: CRC-32 of the key modulo the count.
    let n = corpus::REALISTIC_CONNECTORS as usize;
    let rekeyed_of: Vec<usize> = (0..n)
        .map(|i| (crc32fast::hash(format!("shared_c{i:04}").as_bytes()) % parts as u32) as usize)
        .collect();
    let mut per_connector = vec![0u64; n];
    let mut rk = Rekeyed {
        records: vec![0; parts],
        bytes: vec![0; parts],
        busiest_connector: 0,
    };
    let mut per_partition = vec![0u64; parts];
    let mut out = Produced::default();
    let mut rng = corpus::Rng::new(42);
    let (mut buf, mut count) = (Vec::new(), 0);
    let mut line = Vec::with_capacity(256);
    for e in 0..k.events {
        line.clear();
        let i =
            corpus::event_line_at(corpus::Profile::Realistic, now_ms, &mut rng, &mut line) as usize;
        per_connector[i] += 1;
        rk.records[rekeyed_of[i]] += 1;
        rk.bytes[rekeyed_of[i]] += line.len() as u64 + REKEY_OVERHEAD;
        buf.extend_from_slice(&line);
        count += 1;
        out.events += 1;
        if count == k.per_message || e + 1 == k.events {
            let part = (out.messages % parts as u64) as i32;
            send(&p, TOPIC, part, out.messages.to_string().as_bytes(), &buf);
            per_partition[part as usize] += buf.len() as u64;
            assert!(
                k.compression != "none" || per_partition[part as usize] <= PARTITION_CAP,
                "partition {part} would pass {PARTITION_CAP} bytes, past which the mock cluster \
                 drops data: lower CGA_BENCH_EVENTS or raise CGA_BENCH_PARTITIONS"
            );
            out.messages += 1;
            out.bytes += buf.len() as u64;
            out.messages_kept.push((part, std::mem::take(&mut buf)));
            count = 0;
        }
    }
    p.flush(Duration::from_secs(300)).expect("flush");
    out.max_partition_bytes = per_partition.iter().copied().max().unwrap_or(0);
    rk.busiest_connector = per_connector.iter().copied().max().unwrap_or(0);
    (out, rk)
}

/// (low, high) watermarks of each of `topic`'s first `partitions`
/// partitions. The mock cluster moves a partition's low watermark past 0
/// only when it drops data to stay under its size cap.
pub fn watermarks(brokers: &str, topic: &str, partitions: i32) -> Vec<(i64, i64)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("watermark client");
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks")
        })
        .collect()
}

/// 2,000 seed connectors × 5 clouds, one event each: 10,000 scopes for the
/// reader runs, on their own topic (8 partitions, keyed by connector).
pub fn produce_seed(brokers: &str, now_ms: i64) -> u64 {
    let p = producer(brokers, "none");
    let mut events = 0;
    for c in 0..SEED_CONNECTORS {
        let mut buf = String::new();
        for (k, cloud) in SEED_CLOUDS.iter().enumerate() {
            buf.push_str(&format!(
                "{{\"ts\":{},\"connector\":\"shared_s{c:04}\",\"cloud\":\"{cloud}\",\"status\":200,\
                 \"latency_ms\":{}.5,\"user\":\"u-{c:x}\",\"connection\":\"c-{k}\"}}\n",
                now_ms - 3_600_000 * (c as i64 % 48),
                10 + k
            ));
            events += 1;
        }
        let key = format!("shared_s{c:04}");
        send(
            &p,
            SEED_TOPIC,
            (c % 8) as i32,
            key.as_bytes(),
            buf.as_bytes(),
        );
    }
    p.flush(Duration::from_secs(60)).expect("flush");
    events
}
