//! Task checkpoints: one task's state and offsets as one atomic unit, in
//! the state store (a directory or an object store, see [`store`]).
//!
//! A task (one aggregated partition, see `crate::task`) is written under
//! `tasks/<topic>/<partition>/` in two slots, `a.ckpt` and `b.ckpt`,
//! alternately; each checkpoint carries a sequence number. Restoring reads
//! both and takes the newest one that decodes: a checkpoint damaged in the
//! store (bit rot, a torn write on a file system that does not rename
//! atomically) falls back to the previous one. Both are exact restart
//! points, because each holds the offset its state stops at: the task
//! resumes there and reads again what came after. That is why Kafka's
//! committed offsets never decide where an owned task resumes; they are
//! only stored for the tools that watch the group, and used for a
//! partition no checkpoint exists for.
//!
//! Object layout: `CGAT` magic, format version (u32 LE), payload length
//! (u64 LE), CRC-32 of the payload (u32 LE), then the payload (bincode of
//! [`TaskCheckpoint`]).

pub mod store;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::engine::event::RejectCounts;
use crate::engine::state::Engine;
use crate::engine::timeutil::Micros;
use store::{StateStore, StoreError};

const MAGIC: &[u8; 4] = b"CGAT";
/// 5: format 4 and a read task's `offset_base`. 4: one checkpoint per task
/// (formats 1–3 were one snapshot per process, `snapshot.bin`, and are not
/// migrated: see [`legacy_snapshot`]).
///
/// A checkpoint whose `offset_base` is 0 (all but those of a read task
/// whose partition was recreated) is written in format 4, so that members
/// of the earlier build read it during a rolling upgrade.
pub const VERSION: u32 = 5;
const VERSION_4: u32 = 4;
const HEADER: usize = 4 + 4 + 8 + 4;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("checkpoint {key} in {store} is damaged: {why}")]
    Corrupt {
        store: String,
        key: String,
        why: String,
    },
    #[error(
        "checkpoints of partition {partition} of {topic} in {store} exist but none can be \
         read ({why}); refusing to count that partition again from an empty state \
         (delete them, or start with --fresh, to start it over)"
    )]
    Unreadable {
        store: String,
        topic: String,
        partition: i32,
        why: String,
    },
    #[error(
        "checkpoints of partition {partition} of {topic} in {store}: {why}; the other holds no \
         offset to resume at (written by an earlier build before the partition's first read), \
         so the events of the unreadable one would be lost; refusing to guess (delete them, \
         or start with --fresh, to start the partition over)"
    )]
    NoRestartPoint {
        store: String,
        topic: String,
        partition: i32,
        why: String,
    },
    #[error("cannot encode a checkpoint: {0}")]
    Encode(String),
    #[error(
        "config key `state.dir`: {path} is a snapshot of an earlier version (one file per \
         process); this version keeps one checkpoint per partition under tasks/ and does not \
         migrate it. Start once with --fresh to discard it; the consumer group's committed \
         offsets are that snapshot's, so reset them to the earliest offset first \
         (kafka-consumer-groups --reset-offsets --to-earliest) to count the retained events again"
    )]
    Legacy { path: PathBuf },
}

/// Where a re-keyed record came from: the highest source position a task
/// has counted, per source partition, so a record read again is dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMark {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The event's index inside its source record (NDJSON line, array item).
    pub index: u32,
}

/// Everything needed to resume one task exactly where it was checkpointed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskCheckpoint {
    pub topic: String,
    pub partition: i32,
    /// Grows by one per checkpoint of this task, across members.
    pub seq: u64,
    pub created_at: Micros,
    /// The next offset of the partition whose events are not in `engine`;
    /// `None` when nothing was read yet.
    pub next_offset: Option<i64>,
    /// Events read from the partition (`connector_ga_events_total`).
    pub events_read: u64,
    /// Rejections decided in this task.
    pub rejected: RejectCounts,
    /// Re-keyed input only: the source positions already counted.
    pub sources: Vec<SourceMark>,
    pub engine: Engine,
    /// Read tasks: added to the offsets of the positions their records
    /// carry (see `Task::rebase`); 0 until the partition is recreated.
    pub offset_base: i64,
}

/// Format 4, written: [`TaskCheckpoint`] without `offset_base`.
#[derive(Serialize)]
struct V4Ref<'a> {
    topic: &'a str,
    partition: i32,
    seq: u64,
    created_at: Micros,
    next_offset: Option<i64>,
    events_read: u64,
    rejected: &'a RejectCounts,
    sources: &'a [SourceMark],
    engine: &'a Engine,
}

/// Format 4, read.
#[derive(Deserialize)]
struct V4 {
    topic: String,
    partition: i32,
    seq: u64,
    created_at: Micros,
    next_offset: Option<i64>,
    events_read: u64,
    rejected: RejectCounts,
    sources: Vec<SourceMark>,
    engine: Engine,
}

/// The two slots of a task.
pub fn keys(topic: &str, partition: i32) -> [String; 2] {
    ["a", "b"].map(|s| format!("tasks/{topic}/{partition}/{s}.ckpt"))
}

/// Encodes a checkpoint into its object bytes.
pub fn encode(c: &TaskCheckpoint) -> Result<Bytes, CheckpointError> {
    let cfg = bincode::config::standard();
    let (version, payload) = if c.offset_base == 0 {
        let v4 = V4Ref {
            topic: &c.topic,
            partition: c.partition,
            seq: c.seq,
            created_at: c.created_at,
            next_offset: c.next_offset,
            events_read: c.events_read,
            rejected: &c.rejected,
            sources: &c.sources,
            engine: &c.engine,
        };
        (VERSION_4, bincode::serde::encode_to_vec(&v4, cfg))
    } else {
        (VERSION, bincode::serde::encode_to_vec(c, cfg))
    };
    let payload = payload.map_err(|e| CheckpointError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(Bytes::from(out))
}

/// Decodes object bytes, checking magic, version, length and checksum; the
/// error says why, for the caller to name the object.
pub fn decode(bytes: &[u8]) -> Result<TaskCheckpoint, String> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return Err("not a checkpoint (bad magic or too short)".into());
    }
    let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if version != VERSION && version != VERSION_4 {
        return Err(format!(
            "format version {version}, this build reads {VERSION_4} and {VERSION}"
        ));
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER..];
    if payload.len() != len {
        return Err(format!(
            "truncated: {} of {len} payload bytes",
            payload.len()
        ));
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    let cfg = bincode::config::standard();
    let bad = |e: bincode::error::DecodeError| format!("cannot decode: {e}");
    if version == VERSION {
        return Ok(bincode::serde::decode_from_slice(payload, cfg)
            .map_err(bad)?
            .0);
    }
    let (c, _): (V4, usize) = bincode::serde::decode_from_slice(payload, cfg).map_err(bad)?;
    Ok(TaskCheckpoint {
        topic: c.topic,
        partition: c.partition,
        seq: c.seq,
        created_at: c.created_at,
        next_offset: c.next_offset,
        events_read: c.events_read,
        rejected: c.rejected,
        sources: c.sources,
        engine: c.engine,
        offset_base: 0,
    })
}

/// Writes a checkpoint into the slot its sequence number picks; the other
/// slot keeps the previous one.
pub fn save(store: &dyn StateStore, c: &TaskCheckpoint) -> Result<u64, CheckpointError> {
    let bytes = encode(c)?;
    let n = bytes.len() as u64;
    let key = &keys(&c.topic, c.partition)[(c.seq % 2) as usize];
    store.put(key, bytes)?;
    Ok(n)
}

/// The newest readable checkpoint of a task: `Ok(None)` when the store has
/// none, an error when it has some but none can be read (a task is never
/// silently restarted from empty over counted events).
pub fn load(
    store: &dyn StateStore,
    topic: &str,
    partition: i32,
) -> Result<Option<TaskCheckpoint>, CheckpointError> {
    let mut best: Option<TaskCheckpoint> = None;
    let mut why = Vec::new();
    for key in keys(topic, partition) {
        let Some(bytes) = store.get(&key)? else {
            continue;
        };
        match decode(&bytes) {
            Ok(c) if c.topic == topic && c.partition == partition => {
                if best.as_ref().is_none_or(|b| c.seq > b.seq) {
                    best = Some(c);
                }
            }
            Ok(c) => why.push(format!(
                "{key}: holds partition {} of {}",
                c.partition, c.topic
            )),
            Err(e) => why.push(format!("{key}: {e}")),
        }
    }
    match best {
        // One slot is unreadable and the other holds no offset (a build
        // before this check wrote a task that had read nothing): it is no
        // restart point. Resuming at Kafka's committed offset would skip
        // every event of the unreadable one, which is most likely the
        // newer. Conservative: an unreadable older one is refused too.
        Some(c) if !why.is_empty() && c.next_offset.is_none() => {
            Err(CheckpointError::NoRestartPoint {
                store: store.describe(),
                topic: topic.into(),
                partition,
                why: why.join("; "),
            })
        }
        Some(c) => {
            if !why.is_empty() {
                tracing::warn!(topic, partition, problems = ?why, store = %store.describe(),
                    "newest checkpoint unreadable, resuming from the previous one");
            }
            Ok(Some(c))
        }
        None if !why.is_empty() => Err(CheckpointError::Unreadable {
            store: store.describe(),
            topic: topic.into(),
            partition,
            why: why.join("; "),
        }),
        None => Ok(None),
    }
}

/// Removes every task checkpoint (`--fresh`).
pub fn discard(store: &dyn StateStore) -> Result<usize, CheckpointError> {
    let keys = store.list("tasks/")?;
    for k in &keys {
        store.delete(k)?;
    }
    Ok(keys.len())
}

/// A snapshot of formats 1–3 (`snapshot.bin` / `snapshot.prev` in the state
/// directory) refuses start-up with what to do ([`CheckpointError::Legacy`]);
/// `--fresh` removes it.
pub fn legacy_snapshot(dir: &Path, fresh: bool) -> Result<(), CheckpointError> {
    for name in ["snapshot.bin", "snapshot.prev"] {
        let p = dir.join(name);
        if p.is_file() {
            if fresh {
                std::fs::remove_file(&p).map_err(|error| {
                    CheckpointError::Store(StoreError::Io {
                        path: p.clone(),
                        error,
                    })
                })?;
            } else {
                return Err(CheckpointError::Legacy { path: p });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::store::DirStore;
    use super::*;

    fn ckpt(seq: u64, next: i64) -> TaskCheckpoint {
        TaskCheckpoint {
            topic: "t".into(),
            partition: 3,
            seq,
            created_at: 7,
            next_offset: Some(next),
            events_read: 5,
            rejected: RejectCounts::default(),
            sources: Vec::new(),
            engine: Engine::default(),
            offset_base: 0,
        }
    }

    #[test]
    fn roundtrip_newest_slot_and_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let s = DirStore::new(dir.path()).unwrap();
        assert!(load(&s, "t", 3).unwrap().is_none());
        save(&s, &ckpt(1, 42)).unwrap();
        save(&s, &ckpt(2, 50)).unwrap();
        let c = load(&s, "t", 3).unwrap().unwrap();
        assert_eq!((c.seq, c.next_offset), (2, Some(50)));
        // Another task's checkpoints are its own.
        assert!(load(&s, "t", 4).unwrap().is_none());

        // Truncate the newest (seq 2, slot a): the previous one is used.
        let newest = dir.path().join("tasks/t/3/a.ckpt");
        let b = std::fs::read(&newest).unwrap();
        std::fs::write(&newest, &b[..b.len() - 3]).unwrap();
        let c = load(&s, "t", 3).unwrap().unwrap();
        assert_eq!((c.seq, c.next_offset), (1, Some(42)));

        // Both damaged: a clear error, never an empty start.
        let prev = dir.path().join("tasks/t/3/b.ckpt");
        let mut b = std::fs::read(&prev).unwrap();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        std::fs::write(&prev, &b).unwrap();
        let err = load(&s, "t", 3).unwrap_err().to_string();
        assert!(err.contains("none can be read"), "{err}");
        assert!(
            err.contains("checksum mismatch") && err.contains("truncated"),
            "{err}"
        );

        assert_eq!(discard(&s).unwrap(), 2);
        assert!(load(&s, "t", 3).unwrap().is_none());
    }

    /// Regression: a checkpoint without an offset (an older build wrote a
    /// task that had read nothing) is no fallback for a damaged newer one:
    /// resuming at Kafka's committed offset would skip the damaged one's
    /// events. As the newest readable checkpoint it stands (the committed
    /// offset is then where the partition was when the task started).
    #[test]
    fn a_checkpoint_without_offset_is_no_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let s = DirStore::new(dir.path()).unwrap();
        let empty = TaskCheckpoint {
            next_offset: None,
            events_read: 0,
            ..ckpt(1, 0)
        };
        save(&s, &empty).unwrap();
        assert_eq!(load(&s, "t", 3).unwrap().unwrap().next_offset, None);
        save(&s, &ckpt(2, 50)).unwrap();
        assert_eq!(load(&s, "t", 3).unwrap().unwrap().next_offset, Some(50));
        // Damage the newest (sequence 2, slot a).
        let newest = dir.path().join("tasks/t/3/a.ckpt");
        let mut b = std::fs::read(&newest).unwrap();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        std::fs::write(&newest, &b).unwrap();
        let err = load(&s, "t", 3).unwrap_err().to_string();
        assert!(
            err.contains("partition 3 of t")
                && err.contains("a.ckpt: checksum mismatch")
                && err.contains("the other holds no offset to resume at"),
            "{err}"
        );
    }

    /// A checkpoint with no offset base is written in format 4 (read by
    /// the earlier build); one with a base in format 5; both read back.
    #[test]
    fn format_4_unless_an_offset_base_is_set() {
        let plain = ckpt(1, 9);
        let b = encode(&plain).unwrap();
        assert_eq!(&b[4..8], &4u32.to_le_bytes());
        let back = decode(&b).unwrap();
        assert_eq!(
            (back.seq, back.next_offset, back.offset_base),
            (1, Some(9), 0)
        );
        let based = TaskCheckpoint {
            offset_base: 40,
            ..ckpt(2, 3)
        };
        let b = encode(&based).unwrap();
        assert_eq!(&b[4..8], &5u32.to_le_bytes());
        let back = decode(&b).unwrap();
        assert_eq!(
            (back.seq, back.next_offset, back.offset_base),
            (2, Some(3), 40)
        );
        assert_eq!(back.topic, "t");
    }

    #[test]
    fn other_versions_are_named() {
        let mut b = encode(&ckpt(1, 1)).unwrap().to_vec();
        b[4..8].copy_from_slice(&3u32.to_le_bytes());
        assert!(decode(&b).unwrap_err().contains("format version 3"));
    }

    /// A snapshot of the one-file-per-process format refuses start-up and
    /// says what to do; `--fresh` removes it.
    #[test]
    fn legacy_snapshot_refuses_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("snapshot.bin"), b"CGAS").unwrap();
        let err = legacy_snapshot(dir.path(), false).unwrap_err().to_string();
        assert!(
            err.contains("state.dir") && err.contains("--fresh"),
            "{err}"
        );
        assert!(err.contains("--to-earliest"), "{err}");
        legacy_snapshot(dir.path(), true).unwrap();
        assert!(!dir.path().join("snapshot.bin").exists());
        legacy_snapshot(dir.path(), false).unwrap();
    }
}
