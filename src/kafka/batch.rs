//! One polled batch, decoded and ingested on the worker pool in two
//! parallel phases: decode (the batch split by payload bytes), then ingest,
//! each worker writing only the tasks it is lent for that batch (one writer
//! per task, no lock between workers). The read stage's tasks hand each
//! valid event to the re-key producer instead of aggregating it.

use std::borrow::Cow;
use std::collections::HashMap;

use rdkafka::message::{Message, OwnedMessage};

use super::member::{Inner, Owned};
use super::rekey::{self, Packer, Source};
use crate::engine::event::{self, Reject};
use crate::engine::state::{Admission, Digest};
use crate::engine::timeutil::Micros;
use crate::task::{Stage, Task};
use crate::telemetry::wall_clock;

/// Payload bytes per decoding worker: a batch holding less is decoded on
/// the consumer thread alone (a hand-off costs more than it saves). Bytes,
/// not messages: one message may carry one event or a hundred.
const PARALLEL_MIN_BYTES: usize = 32 * 1024;

/// One chunk of a batch, decoded: valid events with their task, the
/// messages read (task, offset, events), and rejections by task.
struct Decoded<'a> {
    events: Vec<Valid<'a>>,
    /// Index of each event's task in the batch's task list.
    task_of: Vec<u32>,
    /// (message index in the batch, source bytes, index inside an array)
    sources: Vec<(usize, &'a [u8], Option<usize>)>,
    /// (task, offset, events read) per message.
    read: Vec<(u32, i64, u64)>,
    rejected: Vec<(u32, Reject)>,
}

/// Decodes and ingests a batch in two parallel phases on the worker pool:
/// decode (the batch split by payload bytes), then ingest, each worker
/// writing only the tasks it is lent (`task index % workers`).
pub(super) fn process(inner: &Inner, batch: &[OwnedMessage], owned: &mut Owned) {
    let cfg = &inner.h.cfg;
    let now = wall_clock();
    let adm = Admission::daemon_at(
        now,
        cfg.criteria.retention_days,
        cfg.criteria.max_future_skew_seconds,
    );
    // The batch's tasks, each lent to one worker.
    let mut index: HashMap<(&str, i32), u32> = HashMap::new();
    for m in batch {
        let n = index.len() as u32;
        index.entry((m.topic(), m.partition())).or_insert(n);
    }
    let mut slots: Vec<Option<&mut Task>> = (0..index.len()).map(|_| None).collect();
    for (id, t) in owned.iter_mut() {
        if let Some(i) = index.get(&(&*id.topic, id.partition)) {
            slots[*i as usize] = Some(t);
        }
    }
    let task_index: Vec<Option<u32>> = batch
        .iter()
        .map(|m| {
            let i = index[&(m.topic(), m.partition())];
            slots[i as usize].is_some().then_some(i)
        })
        .collect();

    let chunks = split_by_bytes(batch, inner.workers);
    let task_index = &task_index;
    let decoded: Vec<Decoded<'_>> = if chunks.len() == 1 {
        vec![decode_chunk(inner, chunks[0], task_index)]
    } else {
        let mut out: Vec<Option<Decoded<'_>>> = (0..chunks.len()).map(|_| None).collect();
        inner.pool.scope(|s| {
            for (slot, &chunk) in out.iter_mut().zip(&chunks) {
                s.spawn(move |_| *slot = Some(decode_chunk(inner, chunk, task_index)));
            }
        });
        out.into_iter()
            .map(|d| d.expect("every chunk decoded"))
            .collect()
    };

    let owners = inner.workers.min(slots.len()).max(1);
    let mut lent: Vec<Vec<Option<&mut Task>>> = (0..owners).map(|_| Vec::new()).collect();
    for (i, t) in slots.into_iter().enumerate() {
        lent[i % owners].push(t);
    }
    let params = inner.h.tasks.params();
    let budget = inner.h.tasks.budget();
    let ingest = |w: usize, mine: &mut Vec<Option<&mut Task>>| {
        // Each lent task's events to aggregate, in batch order, with where
        // each came from (for the dead letter): they are ingested as one
        // batch per task, scope by scope (`Task::ingest_batch`).
        let mut pending: Vec<Pending<'_, '_>> =
            (0..mine.len()).map(|_| Pending::default()).collect();
        // The read stage's records of this batch, per lent read task.
        let mut packers: Vec<Option<Packer<'_>>> = (0..mine.len()).map(|_| None).collect();
        for d in &decoded {
            for &(i, reason) in &d.rejected {
                if let Some(t) = lent_task(mine, i, w, owners) {
                    t.reject(reason, 1);
                }
            }
            for (k, ev) in d.events.iter().enumerate() {
                let Some(t) = lent_task(mine, d.task_of[k], w, owners) else {
                    continue;
                };
                let (mi, raw, idx) = d.sources[k];
                let m = &batch[mi];
                let mut at = (m.topic(), m.partition(), m.offset());
                let ev = match ev {
                    Valid::Rekey {
                        ts,
                        connector,
                        index,
                    } => {
                        // Rejections up to `from_future` are decided here;
                        // the rest leaves for its connector's partition.
                        match adm.admit(*ts) {
                            Ok(()) => {
                                let packer = packers[d.task_of[k] as usize / owners]
                                    .get_or_insert_with(|| Packer::new(m.topic(), m.partition()));
                                // Offsets continue past those of a
                                // partition since recreated (`Task::rebase`).
                                inner.rekey.as_ref().expect("read stage").add(
                                    packer,
                                    connector,
                                    raw,
                                    m.offset() + t.offset_base(),
                                    *index,
                                );
                            }
                            Err(reason) => {
                                t.reject(reason, 1);
                                dead_letter(inner, at, raw, idx, reason);
                            }
                        }
                        continue;
                    }
                    Valid::Digest { ev, source } => {
                        if let Some(s) = source {
                            if t.replayed((s.topic, s.partition), s.offset, s.index) {
                                continue;
                            }
                            at = (s.topic, s.partition, s.offset);
                        }
                        ev
                    }
                };
                let p = &mut pending[d.task_of[k] as usize / owners];
                p.events.push(ev);
                if inner.dlq.is_some() {
                    p.from.push((at, raw, idx));
                }
            }
        }
        if let Some(r) = &inner.rekey {
            for p in packers.into_iter().flatten() {
                r.finish(p);
            }
        }
        for (slot, p) in mine.iter_mut().zip(&pending) {
            let Some(t) = slot.as_deref_mut() else {
                continue;
            };
            if p.events.is_empty() {
                continue;
            }
            t.ingest_batch(&p.events, &adm, params, budget, |j, reason| {
                // `from` is filled only when there is a dead-letter topic.
                if let Some(&(at, raw, idx)) = p.from.get(j) {
                    dead_letter(inner, at, raw, idx, reason);
                }
            });
        }
        for d in &decoded {
            for &(i, offset, n) in &d.read {
                if let Some(t) = lent_task(mine, i, w, owners) {
                    t.advance(offset + 1, n);
                }
            }
        }
    };
    if owners == 1 {
        ingest(0, &mut lent[0]);
    } else {
        inner.pool.scope(|s| {
            for (w, mine) in lent.iter_mut().enumerate() {
                let ingest = &ingest;
                s.spawn(move |_| ingest(w, mine));
            }
        });
    }
}

/// A run of consecutive messages of a batch, decoded by one worker.
#[derive(Clone, Copy)]
struct Chunk<'a> {
    /// Index of its first message in the batch.
    first: usize,
    msgs: &'a [OwnedMessage],
    /// Its payload bytes, summed once while splitting the batch.
    bytes: usize,
}

/// The batch in up to `workers` runs of consecutive messages holding about
/// the same payload bytes; one run when the batch is under
/// [`PARALLEL_MIN_BYTES`] per worker.
fn split_by_bytes(batch: &[OwnedMessage], workers: usize) -> Vec<Chunk<'_>> {
    let size = |m: &OwnedMessage| m.payload().map_or(0, <[u8]>::len);
    let total: usize = batch.iter().map(size).sum();
    let workers = workers.min(total / PARALLEL_MIN_BYTES).max(1);
    let share = total.div_ceil(workers);
    let mut chunks = Vec::with_capacity(workers);
    let (mut start, mut acc) = (0, 0);
    for (i, m) in batch.iter().enumerate() {
        acc += size(m);
        if acc >= share && chunks.len() + 1 < workers {
            chunks.push(Chunk {
                first: start,
                msgs: &batch[start..=i],
                bytes: acc,
            });
            start = i + 1;
            acc = 0;
        }
    }
    if start < batch.len() {
        chunks.push(Chunk {
            first: start,
            msgs: &batch[start..],
            bytes: acc,
        });
    }
    chunks
}

/// Task `i` of the batch when worker `w` of `owners` is lent it.
fn lent_task<'x>(
    mine: &'x mut [Option<&mut Task>],
    i: u32,
    w: usize,
    owners: usize,
) -> Option<&'x mut Task> {
    let i = i as usize;
    if i % owners != w {
        return None;
    }
    mine[i / owners].as_deref_mut()
}

/// One lent task's events to aggregate in a batch, and, when there is a
/// dead-letter topic, where each came from: (topic, partition, offset), its
/// source bytes, its index inside an array.
#[derive(Default)]
struct Pending<'b, 'a> {
    events: Vec<&'b Digest>,
    from: Vec<(At<'b>, &'a [u8], Option<usize>)>,
}

/// (topic, partition, offset) of an event, for the dead letter.
type At<'b> = (&'b str, i32, i64);

/// A rejected event's copy to the dead-letter topic, when there is one.
fn dead_letter(inner: &Inner, at: At<'_>, raw: &[u8], idx: Option<usize>, reason: Reject) {
    if let Some(dlq) = &inner.dlq {
        dlq.send(at, Some(raw), idx, reason);
    }
}

/// A valid event as its task needs it, taken while its bytes are in cache.
enum Valid<'a> {
    /// To aggregate: digested (the input keyed by connector, or the
    /// re-keyed topic, whose records also say where each event came from).
    Digest {
        ev: Digest,
        source: Option<Source<'a>>,
    },
    /// For the read stage, which admits it by its time and sends its bytes
    /// on by its connector, with its position among its record's events:
    /// hashing its ids would be wasted.
    Rekey {
        ts: Micros,
        connector: Cow<'a, str>,
        index: u32,
    },
}

fn decode_chunk<'a>(inner: &Inner, chunk: Chunk<'a>, task_index: &[Option<u32>]) -> Decoded<'a> {
    let Chunk { first, msgs, bytes } = chunk;
    // Sized for the events, not the messages: a message often carries many
    // (NDJSON), and growing these by doubling copied every event several
    // times (memcpy and fresh pages were 18% of decoding in
    // `benches/daemon.rs`). Events are rarely under ~100 bytes.
    let events = msgs.len().max(bytes / 100);
    let mut d = Decoded {
        events: Vec::with_capacity(events),
        task_of: Vec::with_capacity(events),
        sources: Vec::with_capacity(events),
        read: Vec::with_capacity(msgs.len()),
        rejected: Vec::new(),
    };
    for (k, m) in msgs.iter().enumerate() {
        let Some(ti) = task_index[first + k] else {
            continue;
        };
        let stage = inner.stage(m.topic());
        let rekeyed = stage == Stage::Rekeyed;
        let src = if rekeyed { rekey::sources_of(m) } else { None };
        if rekeyed && src.is_none() {
            // Not written by the re-key stage: nothing says where it came
            // from, so it cannot be counted exactly once.
            tracing::warn!(
                topic = m.topic(),
                partition = m.partition(),
                offset = m.offset(),
                "record without source headers in the re-keyed topic: skipped"
            );
            d.read.push((ti, m.offset(), 0));
            continue;
        }
        let payload = m.payload().unwrap_or(&[]);
        let mut seq = 0u32;
        let n = event::decode_payload_raw(payload, |r, raw, idx| {
            let index = seq;
            seq += 1;
            let source = match &src {
                Some(s) => {
                    // More events than positions: not this stage's
                    // record; warned about below, never counted.
                    let Some(x) = s.get(index as usize) else {
                        return;
                    };
                    Some(x)
                }
                None => None,
            };
            match r {
                Ok(ev) => {
                    d.events.push(if stage == Stage::Read {
                        Valid::Rekey {
                            ts: ev.ts,
                            connector: ev.connector,
                            index,
                        }
                    } else {
                        Valid::Digest {
                            ev: Digest::of(&ev),
                            source,
                        }
                    });
                    d.task_of.push(ti);
                    d.sources.push((first + k, raw, idx));
                }
                Err(reason) => {
                    d.rejected.push((ti, reason));
                    dead_letter(
                        inner,
                        (m.topic(), m.partition(), m.offset()),
                        raw,
                        idx,
                        reason,
                    );
                }
            }
        });
        if let Some(s) = src.as_ref().filter(|s| s.len() != seq as usize) {
            tracing::warn!(
                topic = m.topic(),
                partition = m.partition(),
                offset = m.offset(),
                events = seq,
                positions = s.len(),
                "re-keyed record whose events and source positions differ in number: \
                 only events with a position were counted"
            );
        }
        // Events are counted where they are first read.
        d.read.push((ti, m.offset(), if rekeyed { 0 } else { n }));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    /// Messages with these payload sizes (None: no payload, 0 bytes).
    fn batch(sizes: &[Option<usize>]) -> Vec<OwnedMessage> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                OwnedMessage::new(
                    n.map(|n| vec![b'x'; n]),
                    None,
                    "t".to_string(),
                    Timestamp::NotAvailable,
                    0,
                    i as i64,
                    None,
                )
            })
            .collect()
    }

    /// (first, messages, bytes) per chunk, and each chunk's slice really is
    /// the batch from `first` on.
    fn shape(batch: &[OwnedMessage], workers: usize) -> Vec<(usize, usize, usize)> {
        split_by_bytes(batch, workers)
            .iter()
            .map(|c| {
                assert!(std::ptr::eq(&c.msgs[0], &batch[c.first]));
                (c.first, c.msgs.len(), c.bytes)
            })
            .collect()
    }

    #[test]
    fn a_batch_under_the_parallel_minimum_is_one_chunk() {
        // 3 x 10 000 = 30 000 bytes < 32 768: workers = min(4, 0).max(1) = 1.
        let b = batch(&[Some(10_000); 3]);
        assert_eq!(shape(&b, 4), vec![(0, 3, 30_000)]);
    }

    #[test]
    fn even_messages_split_into_even_chunks() {
        // 8 x 16 384 = 131 072 = 4 x 32 768: workers = min(4, 4) = 4, share
        // 32 768 = 2 messages a chunk.
        let b = batch(&[Some(16_384); 8]);
        assert_eq!(
            shape(&b, 4),
            vec![
                (0, 2, 32_768),
                (2, 2, 32_768),
                (4, 2, 32_768),
                (6, 2, 32_768)
            ]
        );
    }

    #[test]
    fn the_last_chunk_takes_the_rest_and_a_missing_payload_counts_zero() {
        // 40 000 + 1 000 + 1 000 + 30 000 + 0 + 28 000 = 100 000 bytes;
        // 100 000 / 32 768 = 3, workers = min(2, 3) = 2, share 50 000.
        // Running sum 40 000, 41 000, 42 000, 72 000 >= 50 000: messages
        // 0..=3 (72 000); the rest, 4..=5, is 0 + 28 000 = 28 000.
        let b = batch(&[
            Some(40_000),
            Some(1_000),
            Some(1_000),
            Some(30_000),
            None,
            Some(28_000),
        ]);
        assert_eq!(shape(&b, 2), vec![(0, 4, 72_000), (4, 2, 28_000)]);
    }

    #[test]
    fn workers_are_capped_by_the_bytes() {
        // 5 x 20 000 = 100 000 bytes; 100 000 / 32 768 = 3, workers =
        // min(8, 3) = 3, share = ceil(100 000 / 3) = 33 334. Running sum
        // 20 000, 40 000 >= share: 0..=1; again 2..=3; the third chunk is
        // the rest, message 4 (20 000).
        let b = batch(&[Some(20_000); 5]);
        assert_eq!(
            shape(&b, 8),
            vec![(0, 2, 40_000), (2, 2, 40_000), (4, 1, 20_000)]
        );
    }

    #[test]
    fn a_chunk_closed_by_the_last_message_leaves_no_empty_one() {
        // 10 000 + 60 000 = 70 000; 70 000 / 32 768 = 2, workers 2, share
        // 35 000: the sum reaches it only at the last message, so one chunk
        // of both (70 000) and nothing after it.
        let b = batch(&[Some(10_000), Some(60_000)]);
        assert_eq!(shape(&b, 2), vec![(0, 2, 70_000)]);
    }

    #[test]
    fn an_empty_batch_has_no_chunks() {
        assert_eq!(shape(&[], 4), vec![]);
    }
}
