//! Snapshots of the whole state plus the Kafka offset of every partition
//! whose events it holds, written atomically under the state directory.
//!
//! File layout: `CGAS` magic, format version (u32 LE), payload length (u64
//! LE), CRC-32 of the payload (u32 LE), then the payload (bincode of
//! [`Snapshot`]). A write goes to `snapshot.tmp`, is fsynced, the current
//! `snapshot.bin` becomes `snapshot.prev`, the temp file is renamed into
//! place and the directory fsynced. Loading falls back to `snapshot.prev`
//! when `snapshot.bin` is missing or damaged, and fails (rather than
//! starting empty) when state exists but none of it can be read.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::event::RejectCounts;
use crate::engine::state::Engine;
use crate::engine::timeutil::Micros;

const MAGIC: &[u8; 4] = b"CGAS";
/// 3: SLO connection sample (`conn_shift`), HDR latencies up to 24 h, and
/// `undecodable_message` joined the rejection counters.
pub const VERSION: u32 = 3;
const HEADER: usize = 4 + 4 + 8 + 4;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("state directory {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("snapshot {path} is damaged: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error(
        "state directory {dir} holds snapshots but none can be read ({why}); \
         refusing to start empty over them (use --fresh to discard them)"
    )]
    Unreadable { dir: PathBuf, why: String },
    #[error("cannot encode snapshot: {0}")]
    Encode(String),
}

/// Everything needed to resume exactly where the snapshot was taken.
#[derive(Debug, Serialize, Deserialize, Default)]
pub struct Snapshot {
    pub created_at: Micros,
    /// topic → partition → next offset to read.
    pub offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// One engine per store shard.
    pub engines: Vec<Engine>,
    /// Events read per topic (the `connector_ga_events_total` counter).
    pub events_total: BTreeMap<String, u64>,
    pub rejected: RejectCounts,
}

/// A borrowed view of a snapshot to write (engines stay behind their locks).
#[derive(Serialize)]
pub struct SnapshotRef<'a> {
    pub created_at: Micros,
    pub offsets: &'a BTreeMap<String, BTreeMap<i32, i64>>,
    pub engines: Vec<&'a Engine>,
    pub events_total: &'a BTreeMap<String, u64>,
    pub rejected: &'a RejectCounts,
}

pub fn current_path(dir: &Path) -> PathBuf {
    dir.join("snapshot.bin")
}
pub fn previous_path(dir: &Path) -> PathBuf {
    dir.join("snapshot.prev")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |error| CheckpointError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Encodes a snapshot into its file bytes.
pub fn encode(s: &SnapshotRef<'_>) -> Result<Vec<u8>, CheckpointError> {
    let payload = bincode::serde::encode_to_vec(s, bincode::config::standard())
        .map_err(|e| CheckpointError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes file bytes, checking magic, version, length and checksum.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Snapshot, CheckpointError> {
    let bad = |why: &str| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return Err(bad("not a snapshot (bad magic or too short)"));
    }
    let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if version != VERSION {
        // Older formats are not migrated (version 2 lacks the SLO sample
        // and held latencies in a narrower HDR range): refuse, and say how
        // to start over.
        return Err(bad(&format!(
            "format version {version}, this build reads only {VERSION}: \
             start once with --fresh to discard it"
        )));
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER..];
    if payload.len() != len {
        return Err(bad(&format!(
            "truncated: {} of {len} payload bytes",
            payload.len()
        )));
    }
    if crc32fast::hash(payload) != crc {
        return Err(bad("checksum mismatch"));
    }
    let (snap, _) = bincode::serde::decode_from_slice(payload, bincode::config::standard())
        .map_err(|e| bad(&format!("cannot decode: {e}")))?;
    Ok(snap)
}

/// Writes a snapshot atomically; the previous one is kept as `snapshot.prev`.
pub fn save(dir: &Path, s: &SnapshotRef<'_>) -> Result<u64, CheckpointError> {
    let bytes = encode(s)?;
    save_bytes(dir, &bytes)?;
    Ok(bytes.len() as u64)
}

/// Writes encoded snapshot bytes atomically as `snapshot.bin`, keeping the
/// previous one as `snapshot.prev`.
pub fn save_bytes(dir: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = temp_path(dir);
    let r = write_and_rename(dir, &tmp, bytes);
    if r.is_err() {
        // A full disk would otherwise stay full of a half-written temp
        // file; a directory of that name (or none) is not ours to remove.
        if tmp.is_file() {
            let _ = fs::remove_file(&tmp);
        }
    }
    r
}

pub fn temp_path(dir: &Path) -> PathBuf {
    dir.join("snapshot.tmp")
}

fn write_and_rename(dir: &Path, tmp: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    {
        let mut f = File::create(tmp).map_err(io(tmp))?;
        f.write_all(bytes).map_err(io(tmp))?;
        f.sync_all().map_err(io(tmp))?;
    }
    let cur = current_path(dir);
    if cur.exists() {
        fs::rename(&cur, previous_path(dir)).map_err(io(&cur))?;
    }
    fs::rename(tmp, &cur).map_err(io(&cur))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

/// Loads the newest readable snapshot: `Ok(None)` when the directory holds
/// none, an error when it holds some but none can be read.
pub fn load(dir: &Path) -> Result<Option<(Snapshot, PathBuf)>, CheckpointError> {
    let mut why = Vec::new();
    let mut any = false;
    for p in [current_path(dir), previous_path(dir)] {
        let bytes = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&p)(e)),
        };
        any = true;
        match decode(&bytes, &p) {
            Ok(s) => {
                if !why.is_empty() {
                    tracing::warn!(fallback = %p.display(), problems = ?why, "newest snapshot unreadable, using the previous one");
                }
                return Ok(Some((s, p)));
            }
            Err(e) => why.push(e.to_string()),
        }
    }
    if any {
        return Err(CheckpointError::Unreadable {
            dir: dir.to_path_buf(),
            why: why.join("; "),
        });
    }
    Ok(None)
}

/// Removes every snapshot (`--fresh`).
pub fn discard(dir: &Path) -> Result<(), CheckpointError> {
    for p in [current_path(dir), previous_path(dir)] {
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap_ref<'a>(
        offsets: &'a BTreeMap<String, BTreeMap<i32, i64>>,
        engines: Vec<&'a Engine>,
        totals: &'a BTreeMap<String, u64>,
        rejected: &'a RejectCounts,
    ) -> SnapshotRef<'a> {
        SnapshotRef {
            created_at: 7,
            offsets,
            engines,
            events_total: totals,
            rejected,
        }
    }

    #[test]
    fn roundtrip_and_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let mut offsets = BTreeMap::new();
        offsets.insert("t".to_string(), BTreeMap::from([(0, 42i64)]));
        let e = Engine::default();
        let totals = BTreeMap::from([("t".to_string(), 5u64)]);
        let rej = RejectCounts::default();
        save(dir.path(), &snap_ref(&offsets, vec![&e], &totals, &rej)).unwrap();
        offsets.get_mut("t").unwrap().insert(0, 50);
        save(dir.path(), &snap_ref(&offsets, vec![&e], &totals, &rej)).unwrap();
        let (s, p) = load(dir.path()).unwrap().unwrap();
        assert_eq!(s.offsets["t"][&0], 50);
        assert_eq!(p, current_path(dir.path()));

        // Truncate the newest: the previous one is used.
        let cur = current_path(dir.path());
        let b = fs::read(&cur).unwrap();
        fs::write(&cur, &b[..b.len() - 3]).unwrap();
        let (s, p) = load(dir.path()).unwrap().unwrap();
        assert_eq!(s.offsets["t"][&0], 42);
        assert_eq!(p, previous_path(dir.path()));

        // Corrupt both: a clear error, never an empty start.
        let prev = previous_path(dir.path());
        let mut b = fs::read(&prev).unwrap();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        fs::write(&prev, &b).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("refusing to start empty"), "{err}");
        assert!(
            err.contains("checksum mismatch") && err.contains("truncated"),
            "{err}"
        );

        discard(dir.path()).unwrap();
        assert!(load(dir.path()).unwrap().is_none());
    }

    /// A snapshot of an older format refuses start-up, saying what to do.
    #[test]
    fn old_format_version_refuses_with_fresh_hint() {
        let dir = tempfile::tempdir().unwrap();
        let e = Engine::default();
        let (offsets, totals, rej) = (BTreeMap::new(), BTreeMap::new(), RejectCounts::default());
        let mut b = encode(&snap_ref(&offsets, vec![&e], &totals, &rej)).unwrap();
        // Bytes 4..8 hold the format version: make it the previous one, 2.
        b[4..8].copy_from_slice(&2u32.to_le_bytes());
        fs::write(current_path(dir.path()), &b).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("format version 2"), "{err}");
        assert!(err.contains("reads only 3"), "{err}");
        assert!(err.contains("--fresh"), "{err}");
        assert!(err.contains("refusing to start empty"), "{err}");
    }

    /// Issue 10 item 2: a failed write leaves no `snapshot.tmp` behind.
    /// (Tests run as root, so a read-only directory would not fail: the
    /// rename of `snapshot.bin` over a non-empty directory does.)
    #[test]
    fn failed_write_removes_its_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(current_path(dir.path()), b"old").unwrap();
        fs::create_dir(previous_path(dir.path())).unwrap();
        fs::write(previous_path(dir.path()).join("x"), b"x").unwrap();
        let err = save_bytes(dir.path(), b"new snapshot").unwrap_err();
        assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
        assert!(!temp_path(dir.path()).exists(), "snapshot.tmp left behind");
        assert_eq!(fs::read(current_path(dir.path())).unwrap(), b"old");
    }

    #[test]
    fn empty_dir_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
    }
}
