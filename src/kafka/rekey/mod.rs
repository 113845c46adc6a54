//! The re-key stage (SPEC §12), for input not keyed by connector: every
//! valid event read from the input is written to `<group_id>-by-connector`,
//! into the partition of its connector id, whose partitions are then
//! aggregated. A record packs the events of one batch that come from one
//! source partition and go to one partition (a JSON array, in source
//! order, at most [`PACK_EVENTS`] events or [`PACK_BYTES`] bytes); its
//! headers give their source positions, so the aggregating task drops an
//! event it has counted already. One record per event (the format before
//! packing) is still read.
//!
//! The partition of a connector is librdkafka's default for a record keyed
//! by it (`consistent_random`: CRC-32 of the key modulo the partition
//! count, the count pinned in the state store: see [`topic`]), whatever
//! `partitioner` says, so records written one event at a
//! time by earlier builds and packed ones agree. Packing by destination
//! partition, not by connector, keeps each source partition's events in
//! order within a re-keyed partition, which the drop of counted events
//! relies on (`Task::replayed`).
//!
//! Exactly once without Kafka transactions: the producer is idempotent
//! (no duplicates or reordering from its own retries), and a read task's
//! checkpoint, which holds its input offset and the rejections it decided,
//! is written only after every record it produced is acknowledged. A read
//! task that resumes from its checkpoint produces again what came after it;
//! the aggregating tasks recognise those records by source position.

mod topic;

pub use topic::ensure_topic;

use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use super::repeats::Quiet;
use super::{client_config, send_retrying, KafkaSetupError};
use crate::config::Config;

pub const H_TOPIC: &str = "cga-src-topic";
pub const H_PARTITION: &str = "cga-src-partition";
pub const H_OFFSET: &str = "cga-src-offset";
pub const H_INDEX: &str = "cga-src-index";
/// A packed record's source positions, in order: `offset:first-last`
/// runs (events `first..=last` of the record at `offset`), comma-separated.
pub const H_POSITIONS: &str = "cga-src-positions";

/// Most events in one re-keyed record.
pub const PACK_EVENTS: usize = 1000;
/// A record is closed once its payload holds this many bytes.
pub const PACK_BYTES: usize = 256 * 1024;

/// The re-keyed topic of a group.
pub fn topic(cfg: &Config) -> String {
    format!("{}-by-connector", cfg.kafka.group_id)
}

/// Where a re-keyed record came from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The event's position among the events of its source record.
    pub index: u32,
}

/// Where the events of a re-keyed record came from.
#[derive(Debug, Clone)]
pub struct Sources<'a> {
    topic: &'a str,
    partition: i32,
    /// (offset, index) of each event, in the record's order.
    positions: Vec<(i64, u32)>,
}

impl<'a> Sources<'a> {
    /// The source position of the record's `k`-th event.
    pub fn get(&self, k: usize) -> Option<Source<'a>> {
        self.positions.get(k).map(|&(offset, index)| Source {
            topic: self.topic,
            partition: self.partition,
            offset,
            index,
        })
    }

    pub fn len(&self) -> usize {
        self.positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }
}

/// The source positions in a re-keyed record's headers, `None` when they
/// are missing or malformed (a record not written by this stage).
pub fn sources_of(m: &OwnedMessage) -> Option<Sources<'_>> {
    use rdkafka::message::Message;
    let h = m.headers()?;
    let (mut t, mut p, mut o, mut i, mut runs) = (None, None, None, None, None);
    for k in 0..h.count() {
        let x = h.get(k);
        let v = x.value.and_then(|v| std::str::from_utf8(v).ok());
        match x.key {
            H_TOPIC => t = v,
            H_PARTITION => p = v.and_then(|v| v.parse().ok()),
            H_OFFSET => o = v.and_then(|v| v.parse().ok()),
            H_INDEX => i = v.and_then(|v| v.parse().ok()),
            H_POSITIONS => runs = v,
            _ => {}
        }
    }
    let positions = match runs {
        Some(r) => parse_positions(r)?,
        None => vec![(o?, i?)],
    };
    Some(Sources {
        topic: t?,
        partition: p?,
        positions,
    })
}

/// `offset:first-last,...` into (offset, index) pairs; `None` when malformed.
fn parse_positions(runs: &str) -> Option<Vec<(i64, u32)>> {
    let mut out = Vec::new();
    for run in runs.split(',') {
        let (offset, span) = run.split_once(':')?;
        let (first, last) = span.split_once('-')?;
        let (offset, first, last): (i64, u32, u32) = (
            offset.parse().ok()?,
            first.parse().ok()?,
            last.parse().ok()?,
        );
        if last < first || (last - first) as usize >= PACK_EVENTS {
            return None;
        }
        out.extend((first..=last).map(|i| (offset, i)));
    }
    Some(out)
}

/// The events of one record being packed: one source partition's, bound
/// for one re-keyed partition.
#[derive(Default)]
struct Pack {
    payload: Vec<u8>,
    positions: String,
    /// The open run: (offset, first, last).
    run: Option<(i64, u32, u32)>,
    events: usize,
}

impl Pack {
    fn push(&mut self, raw: &[u8], offset: i64, index: u32) {
        self.payload
            .push(if self.events == 0 { b'[' } else { b',' });
        self.payload.extend_from_slice(raw);
        self.events += 1;
        match &mut self.run {
            Some((o, _, last)) if *o == offset && *last + 1 == index => *last = index,
            _ => {
                self.close_run();
                self.run = Some((offset, index, index));
            }
        }
    }

    fn close_run(&mut self) {
        use std::fmt::Write as _;
        if let Some((o, first, last)) = self.run.take() {
            if !self.positions.is_empty() {
                self.positions.push(',');
            }
            let _ = write!(self.positions, "{o}:{first}-{last}");
        }
    }

    fn full(&self) -> bool {
        self.events >= PACK_EVENTS || self.payload.len() >= PACK_BYTES
    }
}

/// One read task's records of one batch, by re-keyed partition: sent by
/// [`Rekeyer::finish`] (or as each fills up).
pub struct Packer<'a> {
    topic: &'a str,
    partition: i32,
    open: std::collections::HashMap<i32, Pack>,
}

impl<'a> Packer<'a> {
    /// For the events of source partition `partition` of `topic`.
    pub fn new(topic: &'a str, partition: i32) -> Packer<'a> {
        Packer {
            topic,
            partition,
            open: std::collections::HashMap::new(),
        }
    }
}

/// The producer of the re-keyed topic.
pub struct Rekeyer {
    producer: ThreadedProducer<Quiet>,
    topic: String,
    /// The re-keyed topic's partition count, known once
    /// [`ensure_topic`] ran (0 before: nothing is read before it).
    partitions: std::sync::atomic::AtomicU32,
}

impl Rekeyer {
    pub fn new(cfg: &Config) -> Result<Rekeyer, KafkaSetupError> {
        let mut c = client_config(cfg, false);
        c.set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576");
        Ok(Rekeyer {
            producer: c
                .create_with_context(Quiet::new("re-key producer"))
                .map_err(KafkaSetupError::Client)?,
            topic: topic(cfg),
            partitions: std::sync::atomic::AtomicU32::new(0),
        })
    }

    pub fn set_partitions(&self, n: u32) {
        self.partitions.store(n, Ordering::Release);
    }

    /// The re-keyed partition of a connector: librdkafka's
    /// `consistent_random` for a record keyed by it (see the module docs).
    pub fn partition_of(&self, connector: &str) -> i32 {
        let n = self.partitions.load(Ordering::Acquire).max(1);
        (crc32fast::hash(connector.as_bytes()) % n) as i32
    }

    /// Adds a valid event, read at `offset` (its `index`-th event) of the
    /// packer's source partition, to its record; a record that fills up is
    /// sent.
    pub fn add(
        &self,
        packer: &mut Packer<'_>,
        connector: &str,
        raw: &[u8],
        offset: i64,
        index: u32,
    ) {
        let dest = self.partition_of(connector);
        let pack = packer.open.entry(dest).or_default();
        pack.push(raw, offset, index);
        if pack.full() {
            let pack = std::mem::take(pack);
            self.send_pack(packer.topic, packer.partition, dest, pack);
        }
    }

    /// Sends the records still open.
    pub fn finish(&self, packer: Packer<'_>) {
        for (dest, pack) in packer.open {
            if pack.events > 0 {
                self.send_pack(packer.topic, packer.partition, dest, pack);
            }
        }
    }

    fn send_pack(&self, src_topic: &str, src_partition: i32, dest: i32, mut pack: Pack) {
        pack.close_run();
        pack.payload.push(b']');
        let p = src_partition.to_string();
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: H_TOPIC,
                value: Some(src_topic),
            })
            .insert(Header {
                key: H_PARTITION,
                value: Some(p.as_str()),
            })
            .insert(Header {
                key: H_POSITIONS,
                value: Some(pack.positions.as_str()),
            });
        let record = BaseRecord::<(), _>::to(&self.topic)
            .partition(dest)
            .payload(&pack.payload)
            .headers(headers);
        // Retried forever: dropping the record would lose its events.
        if let Err(e) = send_retrying(&self.producer, record, None, Duration::from_millis(1)) {
            // The read task's next checkpoint fails on the flush, so its
            // offset does not move past these events.
            tracing::error!(error = %e, "re-key send failed");
        }
    }

    /// Waits until every record sent is acknowledged; a read task's
    /// checkpoint is written only after this succeeds.
    pub fn flush(&self) -> Result<(), String> {
        self.producer
            .flush(Duration::from_secs(30))
            .map_err(|e| format!("re-key flush: {e}"))?;
        if self.producer.in_flight_count() > 0 {
            return Err("re-key flush: records still in flight".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A pack's positions, as the aggregating side reads them back.
    #[test]
    fn positions_are_runs_of_one_offset_and_read_back_in_order() {
        let mut p = Pack::default();
        let events = [
            (10, 0),
            (10, 1),
            (10, 2),
            (11, 0),
            (13, 5),
            (13, 6),
            (13, 8),
        ];
        for &(o, i) in &events {
            p.push(b"{}", o, i);
        }
        p.close_run();
        assert_eq!(p.positions, "10:0-2,11:0-0,13:5-6,13:8-8");
        assert_eq!(p.payload, b"[{},{},{},{},{},{},{}".to_vec());
        assert_eq!(
            parse_positions(&p.positions).unwrap(),
            events
                .iter()
                .map(|&(o, i)| (o, i))
                .collect::<Vec<(i64, u32)>>()
        );
        for bad in ["", "10", "10:0", "10:2-1", "x:0-1", "10:0-1,", "10:0-5000"] {
            assert_eq!(parse_positions(bad), None, "{bad:?}");
        }
    }

    fn record(headers: &[(&str, &str)]) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        OwnedMessage::new(
            Some(b"[]".to_vec()),
            None,
            "g-by-connector".into(),
            rdkafka::Timestamp::NotAvailable,
            0,
            7,
            Some(h),
        )
    }

    /// Packed records, records of one event (earlier builds), and records
    /// this stage did not write.
    #[test]
    fn source_positions_of_both_formats() {
        let packed = record(&[
            (H_TOPIC, "in"),
            (H_PARTITION, "3"),
            (H_POSITIONS, "40:2-3,41:0-0"),
        ]);
        let s = sources_of(&packed).unwrap();
        let got: Vec<(&str, i32, i64, u32)> = (0..s.len())
            .map(|k| s.get(k).unwrap())
            .map(|x| (x.topic, x.partition, x.offset, x.index))
            .collect();
        assert_eq!(got, [("in", 3, 40, 2), ("in", 3, 40, 3), ("in", 3, 41, 0)]);
        assert!(s.get(3).is_none());

        let one = record(&[
            (H_TOPIC, "in"),
            (H_PARTITION, "3"),
            (H_OFFSET, "40"),
            (H_INDEX, "5"),
        ]);
        let s = sources_of(&one).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.get(0).map(|x| (x.offset, x.index)), Some((40, 5)));

        assert!(sources_of(&record(&[(H_TOPIC, "in"), (H_PARTITION, "3")])).is_none());
        assert!(sources_of(&record(&[
            (H_TOPIC, "in"),
            (H_PARTITION, "3"),
            (H_POSITIONS, "40:3-2"),
        ]))
        .is_none());
    }

    /// CRC-32 of the connector id modulo the partition count (worked out
    /// with Python's `zlib.crc32`): librdkafka's `consistent_random`.
    #[test]
    fn a_connector_goes_where_librdkafka_puts_its_key() {
        let cfg = Config::default();
        let r = Rekeyer::new(&cfg).unwrap();
        r.set_partitions(16);
        assert_eq!(r.partition_of("it_alpha"), 4);
        assert_eq!(r.partition_of("shared_c0549"), 8);
        assert_eq!(r.partition_of("conn_7"), 5);
        r.set_partitions(3);
        assert_eq!(r.partition_of("it_alpha"), 1);
        assert_eq!(r.partition_of("shared_c0549"), 0);

        // And librdkafka's own partitioner agrees, key by key.
        use rdkafka::producer::{BaseProducer, Producer as _};
        let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
        mock.create_topic("keys", 16, 1).unwrap();
        let p: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .create()
            .unwrap();
        r.set_partitions(16);
        let keys: Vec<String> = (0..200).map(|i| format!("connector_{i}")).collect();
        for k in &keys {
            p.send(BaseRecord::<_, ()>::to("keys").key(k.as_str()))
                .unwrap();
        }
        p.flush(Duration::from_secs(10)).unwrap();
        // The partitions librdkafka chose, read back by key.
        let c: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("group.id", "keys")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        use rdkafka::consumer::Consumer as _;
        use rdkafka::message::Message as _;
        c.subscribe(&["keys"]).unwrap();
        let mut seen = 0;
        let until = Instant::now() + Duration::from_secs(30);
        while seen < keys.len() && Instant::now() < until {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                let k = std::str::from_utf8(m.key().unwrap()).unwrap();
                assert_eq!(m.partition(), r.partition_of(k), "{k}");
                seen += 1;
            }
        }
        assert_eq!(seen, keys.len());
    }
}
