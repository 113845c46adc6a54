//! The state store (SPEC §12): where task checkpoints live, a directory
//! shared by all members or an object store (Azure Blob, S3, GCS), behind
//! one small synchronous key/value API.
//!
//! Synchronous on purpose: it is called from the Kafka consumer thread and
//! from librdkafka's rebalance callback, which are plain threads. The object
//! store backend runs each call on a one-worker tokio runtime it owns and
//! waits for the answer on a channel, so it works from any thread: a plain
//! one, a blocking thread of another runtime, even (blocking it) an async task.
//!
//! Keys are relative paths with `/` separators ("tasks/connector-events/3.ckpt").
//! Each segment is 1..=200 of `A-Z a-z 0-9 . _ - = @ + ,`, is not `.` or
//! `..`, and is not a temporary file name of the directory store (`.NAME.tmp`:
//! begins with `.` and ends with `.tmp`). The limited alphabet reads the same
//! as a file name, an S3 key and an Azure blob name, without escaping.

mod dir;
mod object;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::StateConfig;

pub use dir::DirStore;
pub use object::{ObjectStoreBackend, CALL_DEADLINE};

/// Where task checkpoints live: a directory (shared by all members, e.g. a
/// network volume) or an object store. Keys are relative paths with `/`
/// separators, e.g. "tasks/connector-events/3.ckpt".
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// The object at `key`, or None when there is none.
    fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;
    /// Writes `value` at `key` atomically: a reader sees the whole old
    /// object or the whole new one, never a part (dir: write a temp file,
    /// fsync, rename, fsync the directory; object stores: one PUT).
    fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError>;
    /// Writes `value` at `key` only when nothing is there, as atomically as
    /// [`put`](Self::put); `Ok(false)` (and the object left as it was) when
    /// something is. Of two members racing to write the same key, exactly
    /// one gets `Ok(true)` (dir: a hard link of the temp file, which fails
    /// when the name exists; object stores: a PUT with `If-None-Match: *`).
    fn put_new(&self, key: &str, value: Bytes) -> Result<bool, StoreError>;
    /// Keys under `prefix` (recursive), sorted. `prefix` is whole segments:
    /// "tasks" lists "tasks/a/1.ckpt" but not "tasks2/x"; "" lists every key.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Removes `key`; absent is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// For logs and errors: "dir /var/lib/x" or "s3://bucket/prefix".
    fn describe(&self) -> String;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system error of the directory `state.dir`.
    #[error("config key `state.dir`: {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    /// A file system error of the directory named by a `file://` `state.url`.
    #[error("config key `state.url`: {path}: {error}")]
    UrlDirIo { path: PathBuf, error: io::Error },
    /// An error the object store answered (or its client gave up with),
    /// on one line (a store's error body can hold an XML document).
    #[error("state store `state.url` {url}: {}", one_line(.error))]
    ObjectStore {
        url: String,
        error: object_store::Error,
    },
    /// A write answered "not found": the bucket or container is missing.
    #[error(
        "config key `state.url`: {url}: the bucket or container does not exist (or these \
         credentials cannot see it); create it before starting: the daemon does not create it"
    )]
    NoContainer { url: String },
    /// `state.url` cannot be opened (bad scheme, no bucket, bad options);
    /// `reason` begins with the URL.
    #[error("config key `state.url`: {reason}")]
    Url { url: String, reason: String },
    /// A call took longer than [`CALL_DEADLINE`], retries included.
    #[error("state store `state.url` {url}: {op} {key:?} gave no answer within {secs} s")]
    Timeout {
        url: String,
        op: &'static str,
        key: String,
        secs: u64,
    },
    /// The store's own I/O thread could not be started or died.
    #[error("state store `state.url` {url}: {reason}")]
    Runtime { url: String, reason: String },
    /// A key the caller built is not one this module accepts (a bug of the caller).
    #[error("state store key {key:?}: {reason}")]
    Key { key: String, reason: String },
}

/// Opens the store named by `[state] url` when set (az://, s3://, gs://,
/// and file:// for a directory), else the directory `[state] dir`.
/// Object store credentials and endpoints come from the environment, read
/// as object_store's `from_env` builders read them.
pub fn open(state: &StateConfig) -> Result<Arc<dyn StateStore>, StoreError> {
    open_with_env(state, std::env::vars())
}

/// As [`open`], with the environment given (tests: a process-wide
/// `set_var` would race with the other tests).
pub fn open_with_env(
    state: &StateConfig,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Arc<dyn StateStore>, StoreError> {
    match &state.url {
        None => Ok(Arc::new(DirStore::open_as(&state.dir, false)?)),
        Some(url) => {
            let parsed = parse_url(url)?;
            if parsed.scheme() == "file" {
                let dir = parsed.to_file_path().map_err(|()| StoreError::Url {
                    url: url.clone(),
                    reason: format!("{url:?} is not an absolute local path (file:///var/lib/x)"),
                })?;
                Ok(Arc::new(DirStore::open_as(&dir, true)?))
            } else {
                Ok(Arc::new(ObjectStoreBackend::open(url, env)?))
            }
        }
    }
}

/// Whether the state store is the directory `state.dir` (no `url`), where
/// snapshots of earlier versions may lie.
pub fn is_dir(state: &StateConfig) -> bool {
    state.url.is_none()
}

fn parse_url(url: &str) -> Result<url::Url, StoreError> {
    crate::config::check_state_url(url).map_err(|reason| StoreError::Url {
        url: url.to_string(),
        reason,
    })
}

/// File names go up to 255 bytes; a temp file adds 22 (`.NAME.<16 hex>.tmp`).
const MAX_SEGMENT: usize = 200;

/// The directory store's temporary files: `.NAME.<16 hex>.tmp`.
fn is_temp_name(s: &str) -> bool {
    s.starts_with('.') && s.ends_with(".tmp")
}

fn segment_ok(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("has an empty segment (a leading, trailing or double `/`)".into());
    }
    if s.len() > MAX_SEGMENT {
        return Err(format!("has a segment longer than {MAX_SEGMENT} bytes"));
    }
    if s == "." || s == ".." {
        return Err(format!("has a segment {s:?}"));
    }
    if is_temp_name(s) {
        return Err(format!(
            "segment {s:?} is a temporary file name (begins with `.`, ends with `.tmp`)"
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-=@+,".contains(*c)))
    {
        return Err(format!(
            "has {c:?}: segments are made of A-Z a-z 0-9 . _ - = @ + ,"
        ));
    }
    Ok(())
}

/// Checks a key: `/`-separated segments, see the module doc.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    key.split('/')
        .try_for_each(segment_ok)
        .map_err(|reason| StoreError::Key {
            key: key.to_string(),
            reason,
        })
}

/// A list prefix: "" (everything) or a key, a trailing `/` allowed.
fn check_prefix(prefix: &str) -> Result<&str, StoreError> {
    let p = prefix.strip_suffix('/').unwrap_or(prefix);
    if !p.is_empty() {
        check_key(p)?;
    }
    Ok(p)
}

/// An error's text on one line: newlines and runs of spaces become one
/// space, so that start-up's error stays the one line it promises.
fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
