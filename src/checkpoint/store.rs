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
//! Each segment is 1..=200 of `A-Z a-z 0-9 . _ - = @ + ,` and does not begin
//! with `.`: names beginning with a dot are the directory store's temporary
//! files, and the limited alphabet reads the same as a file name, an S3 key
//! and an Azure blob name, without escaping.

use std::fs::{self, File};
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload};

use crate::config::StateConfig;

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
    /// A file system error of the directory store. `config_key` is the key
    /// that named the directory (`state.dir`, or `state.url` for file://).
    #[error("state store `{config_key}` {path}: {error}")]
    Io {
        config_key: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    /// An error the object store answered (or its client gave up with).
    #[error("state store `state.url` {url}: {error}")]
    ObjectStore {
        url: String,
        error: object_store::Error,
    },
    /// `state.url` cannot be opened (bad scheme, no bucket, bad options).
    #[error("config key `state.url`: {url:?} {reason}")]
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
        None => Ok(Arc::new(DirStore::open_as(&state.dir, "state.dir")?)),
        Some(url) => {
            let parsed = parse_url(url)?;
            if parsed.scheme() == "file" {
                let dir = parsed.to_file_path().map_err(|()| StoreError::Url {
                    url: url.clone(),
                    reason: "is not an absolute local path (file:///var/lib/x)".into(),
                })?;
                Ok(Arc::new(DirStore::open_as(&dir, "state.url")?))
            } else {
                Ok(Arc::new(ObjectStoreBackend::open(url, env)?))
            }
        }
    }
}

fn parse_url(url: &str) -> Result<url::Url, StoreError> {
    crate::config::check_state_url(url).map_err(|reason| StoreError::Url {
        url: url.to_string(),
        reason,
    })
}

/// File names go up to 255 bytes; a temp file adds 22 (`.NAME.<16 hex>.tmp`).
const MAX_SEGMENT: usize = 200;

fn segment_ok(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("has an empty segment (a leading, trailing or double `/`)".into());
    }
    if s.len() > MAX_SEGMENT {
        return Err(format!("has a segment longer than {MAX_SEGMENT} bytes"));
    }
    if s.starts_with('.') {
        return Err(format!("segment {s:?} begins with `.`"));
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

// ---------------------------------------------------------------------------

/// A directory, possibly on a network volume shared by all members.
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
    config_key: &'static str,
}

impl DirStore {
    /// Opens (creating it when missing) the directory named by `state.dir`.
    pub fn open(root: &Path) -> Result<DirStore, StoreError> {
        Self::open_as(root, "state.dir")
    }

    fn open_as(root: &Path, config_key: &'static str) -> Result<DirStore, StoreError> {
        let s = DirStore {
            root: root.to_path_buf(),
            config_key,
        };
        // Fail at start-up, not at the first checkpoint, when the directory
        // cannot be made or is not one.
        fs::create_dir_all(root).map_err(|e| s.io(root, e))?;
        if !root.is_dir() {
            let e = io::Error::new(io::ErrorKind::NotADirectory, "not a directory");
            return Err(s.io(root, e));
        }
        Ok(s)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn io(&self, path: &Path, error: io::Error) -> StoreError {
        StoreError::Io {
            config_key: self.config_key,
            path: path.to_path_buf(),
            error,
        }
    }

    /// Makes `dir` (under the root) and fsyncs each new directory's parent,
    /// so that the entry of a fresh directory survives a power cut too.
    fn make_dirs(&self, dir: &Path) -> Result<(), StoreError> {
        if dir.is_dir() {
            return Ok(());
        }
        fs::create_dir_all(dir).map_err(|e| self.io(dir, e))?;
        let mut d = dir;
        while d != self.root {
            let Some(parent) = d.parent() else { break };
            sync_dir(parent).map_err(|e| self.io(parent, e))?;
            d = parent;
        }
        Ok(())
    }

    fn walk(&self, dir: &Path, key: &str, out: &mut Vec<String>) -> Result<(), StoreError> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io(dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| self.io(dir, e))?;
            let name = entry.file_name();
            // Temp files of an interrupted put (and anything else that is not
            // a key this store writes) are not keys.
            let Some(name) = name.to_str().filter(|n| segment_ok(n).is_ok()) else {
                continue;
            };
            let path = entry.path();
            let child = if key.is_empty() {
                name.to_string()
            } else {
                format!("{key}/{name}")
            };
            // Follows symbolic links, as a reader of the volume would.
            match fs::metadata(&path) {
                Ok(m) if m.is_dir() => self.walk(&path, &child, out)?,
                Ok(m) if m.is_file() => out.push(child),
                Ok(_) => {}
                // Deleted meanwhile by another member.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io(&path, e)),
            }
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl StateStore for DirStore {
    fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        check_key(key)?;
        let path = self.root.join(key);
        match fs::read(&path) {
            Ok(v) => Ok(Some(Bytes::from(v))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(&path, e)),
        }
    }

    fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        check_key(key)?;
        let path = self.root.join(key);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        self.make_dirs(&dir)?;
        let name = key.rsplit('/').next().unwrap_or(key);
        // A random suffix: members on different machines share the volume,
        // so a pid alone could collide.
        let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&value)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(self.io(&tmp, e));
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(self.io(&path, e));
        }
        sync_dir(&dir).map_err(|e| self.io(&dir, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = check_prefix(prefix)?;
        let mut out = Vec::new();
        self.walk(&self.root.join(prefix), prefix, &mut out)?;
        out.sort();
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let path = self.root.join(key);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io(&path, e)),
        }
        let dir = path.parent().unwrap_or(&self.root);
        sync_dir(dir).map_err(|e| self.io(dir, e))
    }

    fn describe(&self) -> String {
        format!("dir {}", self.root.display())
    }
}

// ---------------------------------------------------------------------------

/// Bounds of one object store call. A checkpoint on revocation runs inside
/// librdkafka's rebalance callback, which holds the whole group's rebalance
/// until it returns: a call must end, with an error if need be, well within
/// the rebalance timeout (`max.poll.interval.ms`, 300 s by default).
/// - one HTTP request (connect, send, answer): 30 s, the crate's default,
///   written out so that a change of default does not change ours;
/// - connecting: 5 s;
/// - retries of transient errors (5xx, timeouts, resets): at most 3, and none
///   started after 60 s (the crate's 10 retries over 3 minutes would hold a
///   rebalance for minutes against a store that is down);
/// - the whole call, token fetches and list pages included: [`CALL_DEADLINE`].
const REQUEST_TIMEOUT: &str = "30 seconds";
const CONNECT_TIMEOUT: &str = "5 seconds";
const MAX_RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(60);
pub const CALL_DEADLINE: Duration = Duration::from_secs(120);

fn retry_config() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig::default(),
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_TIMEOUT,
    }
}

/// Azure Blob Storage, S3 or Google Cloud Storage through `object_store`.
pub struct ObjectStoreBackend {
    store: Arc<dyn ObjectStore>,
    /// The prefix of `state.url` (its path), under which every key lives.
    base: ObjPath,
    url: String,
    /// `Option` only so that Drop can take it (see Drop).
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for ObjectStoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreBackend")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Applies the environment the way object_store's `from_env` builders do:
/// every variable with the builder's prefix whose lowercased name is one of
/// its config keys (AWS_ACCESS_KEY_ID -> aws_access_key_id).
macro_rules! with_env {
    ($builder:expr, $key:ty, $prefix:literal, $env:expr) => {{
        let mut b = $builder;
        for (k, v) in $env {
            if k.starts_with($prefix) {
                if let Ok(key) = k.to_ascii_lowercase().parse::<$key>() {
                    b = b.with_config(key, v.clone());
                }
            }
        }
        b
    }};
}

impl ObjectStoreBackend {
    /// Builds the client for `url` (az://, azure://, abfs(s)://, s3://,
    /// s3a://, gs://). Makes no request: a wrong credential shows at the
    /// first call.
    pub fn open(
        url: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ObjectStoreBackend, StoreError> {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
        use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
        use object_store::ClientConfigKey as C;

        let parsed = parse_url(url)?;
        let bad = |reason: String| StoreError::Url {
            url: url.to_string(),
            reason,
        };
        let env: Vec<(String, String)> = env.into_iter().collect();
        let (scheme, base) = ObjectStoreScheme::parse(&parsed).map_err(|e| bad(e.to_string()))?;
        // The prefix must itself be a valid key path, so that keys under it
        // map one to one onto object names.
        let base_str = base.as_ref().to_string();
        if !base_str.is_empty() {
            check_key(&base_str).map_err(|e| bad(format!("has a bad prefix: {e}")))?;
        }
        // Our bounds first, then the environment (which may override them,
        // e.g. AWS_TIMEOUT), then the URL, which names bucket/container.
        let store: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::MicrosoftAzure => {
                let mut b = MicrosoftAzureBuilder::default()
                    .with_retry(retry_config())
                    .with_config(AzureConfigKey::Client(C::Timeout), REQUEST_TIMEOUT)
                    .with_config(AzureConfigKey::Client(C::ConnectTimeout), CONNECT_TIMEOUT);
                b = with_env!(b, AzureConfigKey, "AZURE_", &env);
                if let Some((_, v)) = env.iter().find(|(k, _)| k == "IDENTITY_ENDPOINT") {
                    b = b.with_msi_endpoint(v.clone());
                }
                Arc::new(b.with_url(url).build().map_err(|e| bad(e.to_string()))?)
            }
            ObjectStoreScheme::AmazonS3 => {
                let mut b = AmazonS3Builder::default()
                    .with_retry(retry_config())
                    .with_config(AmazonS3ConfigKey::Client(C::Timeout), REQUEST_TIMEOUT)
                    .with_config(
                        AmazonS3ConfigKey::Client(C::ConnectTimeout),
                        CONNECT_TIMEOUT,
                    );
                b = with_env!(b, AmazonS3ConfigKey, "AWS_", &env);
                Arc::new(b.with_url(url).build().map_err(|e| bad(e.to_string()))?)
            }
            ObjectStoreScheme::GoogleCloudStorage => {
                let mut b = GoogleCloudStorageBuilder::default()
                    .with_retry(retry_config())
                    .with_client_options(
                        object_store::ClientOptions::new()
                            .with_timeout(Duration::from_secs(30))
                            .with_connect_timeout(Duration::from_secs(5)),
                    );
                if let Some((_, v)) = env.iter().find(|(k, _)| k == "SERVICE_ACCOUNT") {
                    b = b.with_service_account_path(v.clone());
                }
                b = with_env!(b, GoogleConfigKey, "GOOGLE_", &env);
                Arc::new(b.with_url(url).build().map_err(|e| bad(e.to_string()))?)
            }
            other => {
                return Err(bad(format!(
                    "names {other:?}, which is not an object store this daemon writes to"
                )))
            }
        };
        // One worker thread that drives every call of this store; callers
        // wait on a channel (see `run`). A current-thread runtime would need
        // `block_on`, which panics when the caller is itself an async task.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("state-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Runtime {
                url: url.to_string(),
                reason: format!("cannot start its I/O thread: {e}"),
            })?;
        Ok(ObjectStoreBackend {
            store,
            base,
            url: url.to_string(),
            rt: Some(rt),
        })
    }

    fn path(&self, key: &str) -> Result<ObjPath, StoreError> {
        check_key(key)?;
        let full = if self.base.as_ref().is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.base.as_ref())
        };
        ObjPath::parse(&full).map_err(|e| StoreError::Key {
            key: key.to_string(),
            reason: e.to_string(),
        })
    }

    /// Runs `fut` on the store's runtime and waits for it, at most
    /// [`CALL_DEADLINE`].
    fn run<T, F>(&self, op: &'static str, key: &str, fut: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let rt = self.rt.as_ref().expect("runtime present until drop");
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let r = tokio::time::timeout(CALL_DEADLINE, fut).await;
            let _ = tx.send(r);
        });
        match rx.recv() {
            Ok(Ok(r)) => r,
            Ok(Err(_elapsed)) => Err(StoreError::Timeout {
                url: self.url.clone(),
                op,
                key: key.to_string(),
                secs: CALL_DEADLINE.as_secs(),
            }),
            Err(_) => Err(StoreError::Runtime {
                url: self.url.clone(),
                reason: format!("{op} {key:?}: the I/O task ended without an answer"),
            }),
        }
    }
}

impl Drop for ObjectStoreBackend {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its worker stops, which panics
        // inside an async context; the last handle may well be dropped there.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl StateStore for ObjectStoreBackend {
    fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.path(key)?;
        let store = Arc::clone(&self.store);
        let url = self.url.clone();
        self.run("get", key, async move {
            let err = |error| StoreError::ObjectStore {
                url: url.clone(),
                error,
            };
            match store.get(&path).await {
                Ok(r) => r.bytes().await.map(Some).map_err(err),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(err(e)),
            }
        })
    }

    fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let store = Arc::clone(&self.store);
        let url = self.url.clone();
        // One PUT (not a multipart upload): the object appears whole or not
        // at all, and replaces the old one whole.
        self.run("put", key, async move {
            store
                .put(&path, PutPayload::from_bytes(value))
                .await
                .map(|_| ())
                .map_err(|error| StoreError::ObjectStore { url, error })
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = check_prefix(prefix)?;
        let path = if prefix.is_empty() {
            self.base.clone()
        } else {
            self.path(prefix)?
        };
        let store = Arc::clone(&self.store);
        let base = self.base.clone();
        let url = self.url.clone();
        let mut keys = self.run("list", prefix, async move {
            let prefix = (!path.as_ref().is_empty()).then_some(path);
            let metas: Vec<_> = store
                .list(prefix.as_ref())
                .try_collect()
                .await
                .map_err(|error| StoreError::ObjectStore { url, error })?;
            Ok(metas
                .into_iter()
                .filter_map(|m| {
                    let key = m
                        .location
                        .prefix_match(&base)?
                        .map(|p| p.as_ref().to_string())
                        .collect::<Vec<_>>()
                        .join("/");
                    // Objects written by something else under the prefix
                    // are not keys of this store.
                    check_key(&key).is_ok().then_some(key)
                })
                .collect::<Vec<String>>())
        })?;
        keys.sort();
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let store = Arc::clone(&self.store);
        let url = self.url.clone();
        self.run("delete", key, async move {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(error) => Err(StoreError::ObjectStore { url, error }),
            }
        })
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, DirStore) {
        let d = tempfile::tempdir().unwrap();
        let s = DirStore::open(&d.path().join("state")).unwrap();
        (d, s)
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn put_get_list_delete() {
        let (_d, s) = store();
        assert_eq!(s.get("tasks/t/0.ckpt").unwrap(), None);
        assert_eq!(s.list("").unwrap(), Vec::<String>::new());
        s.put("tasks/t/1.ckpt", b("one")).unwrap();
        s.put("tasks/t/0.ckpt", b("zero")).unwrap();
        s.put("tasks2/x", b("x")).unwrap();
        s.put("top", b("t")).unwrap();
        assert_eq!(s.get("tasks/t/0.ckpt").unwrap(), Some(b("zero")));
        assert_eq!(s.get("tasks/t/1.ckpt").unwrap(), Some(b("one")));
        // Sorted, recursive, whole segments: "tasks" is not a prefix of "tasks2".
        assert_eq!(
            s.list("").unwrap(),
            ["tasks/t/0.ckpt", "tasks/t/1.ckpt", "tasks2/x", "top"]
        );
        assert_eq!(
            s.list("tasks").unwrap(),
            ["tasks/t/0.ckpt", "tasks/t/1.ckpt"]
        );
        assert_eq!(s.list("tasks/").unwrap(), s.list("tasks").unwrap());
        assert_eq!(s.list("nothing").unwrap(), Vec::<String>::new());
        s.delete("tasks/t/0.ckpt").unwrap();
        s.delete("tasks/t/0.ckpt").unwrap(); // absent: not an error
        s.delete("never/was").unwrap();
        assert_eq!(s.get("tasks/t/0.ckpt").unwrap(), None);
        assert_eq!(s.list("tasks").unwrap(), ["tasks/t/1.ckpt"]);
        assert_eq!(s.describe(), format!("dir {}", s.root().display()));
    }

    #[test]
    fn nested_keys_create_directories() {
        let (_d, s) = store();
        s.put("a/b/c/d.ckpt", b("deep")).unwrap();
        assert!(s.root().join("a/b/c").is_dir());
        assert_eq!(
            fs::read(s.root().join("a/b/c/d.ckpt")).unwrap(),
            b"deep".to_vec()
        );
    }

    #[test]
    fn overwrite_replaces_whole_and_leaves_no_temp_file() {
        let (_d, s) = store();
        s.put("k/v", Bytes::from(vec![1u8; 100_000])).unwrap();
        s.put("k/v", b("short")).unwrap();
        assert_eq!(s.get("k/v").unwrap(), Some(b("short")));
        let names: Vec<_> = fs::read_dir(s.root().join("k"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["v"]);
    }

    #[test]
    fn temp_file_of_a_crashed_put_is_ignored() {
        let (_d, s) = store();
        s.put("tasks/t/3.ckpt", b("old")).unwrap();
        // What a put that died between write and rename leaves behind: a
        // half-written temp file beside the old object, and (first put of a
        // key) a temp file with no object.
        let dir = s.root().join("tasks/t");
        fs::write(dir.join(".3.ckpt.00000000deadbeef.tmp"), b"new but ha").unwrap();
        fs::write(dir.join(".4.ckpt.0000000000000001.tmp"), b"x").unwrap();
        assert_eq!(s.get("tasks/t/3.ckpt").unwrap(), Some(b("old")));
        assert_eq!(s.get("tasks/t/4.ckpt").unwrap(), None);
        assert_eq!(s.list("").unwrap(), ["tasks/t/3.ckpt"]);
        // The next put of the key still lands.
        s.put("tasks/t/3.ckpt", b("new")).unwrap();
        assert_eq!(s.get("tasks/t/3.ckpt").unwrap(), Some(b("new")));
    }

    #[test]
    fn bad_keys_are_refused() {
        let (_d, s) = store();
        for k in [
            "",
            "/abs",
            "a//b",
            "a/",
            "../up",
            "a/../b",
            ".hidden",
            "a/.b.tmp",
            "sp ace",
            "back\\slash",
            "é",
        ] {
            let e = s.put(k, b("x")).unwrap_err();
            assert!(matches!(e, StoreError::Key { .. }), "{k:?}: {e}");
            assert!(s.get(k).is_err(), "{k:?}");
        }
        assert!(s.list("../x").is_err());
        let long = "x".repeat(201);
        assert!(s.put(&long, b("x")).is_err());
        s.put(&"x".repeat(200), b("x")).unwrap();
        s.put("Aa0._-=@+,", b("x")).unwrap();
    }

    #[test]
    fn io_errors_name_the_config_key() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        fs::write(&file, b"x").unwrap();
        let e = DirStore::open(&file).unwrap_err().to_string();
        assert!(
            e.contains("`state.dir`") && e.contains(&*file.to_string_lossy()),
            "{e}"
        );
    }
}
