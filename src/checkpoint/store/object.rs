//! The object store state store: Azure Blob, S3 or GCS through the
//! `object_store` crate, driven by a one-worker tokio runtime of its own.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{
    ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutMode, PutOptions, PutPayload,
};

use super::{check_key, check_prefix, parse_url, StateStore, StoreError};

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
            reason: format!("{url:?} {reason}"),
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
                // Bounds set key by key, as for the other stores: replacing
                // the builder's client options would also drop its other
                // defaults (plain HTTP allowed, which an emulator needs).
                let mut b = GoogleCloudStorageBuilder::default()
                    .with_retry(retry_config())
                    .with_config(GoogleConfigKey::Client(C::Timeout), REQUEST_TIMEOUT)
                    .with_config(GoogleConfigKey::Client(C::ConnectTimeout), CONNECT_TIMEOUT);
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

    /// One PUT (not a multipart upload), so the object appears whole or not
    /// at all: `Overwrite` replaces an old one whole, `Create` (If-None-Match:
    /// *) leaves it and answers `false`.
    fn put_with(
        &self,
        op: &'static str,
        key: &str,
        value: Bytes,
        mode: PutMode,
    ) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        let store = Arc::clone(&self.store);
        let url = self.url.clone();
        self.run(op, key, async move {
            let opts = PutOptions::from(mode);
            match store
                .put_opts(&path, PutPayload::from_bytes(value), opts)
                .await
            {
                Ok(_) => Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                // S3's NoSuchBucket, Azure's ContainerNotFound: the raw
                // text said "Object ... not found", which sent one to
                // look for an object (an outside audit).
                Err(object_store::Error::NotFound { .. }) => Err(StoreError::NoContainer { url }),
                Err(error) => Err(StoreError::ObjectStore { url, error }),
            }
        })
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
        self.put_with("put", key, value, PutMode::Overwrite)
            .map(|_| ())
    }

    fn put_new(&self, key: &str, value: Bytes) -> Result<bool, StoreError> {
        self.put_with("put_new", key, value, PutMode::Create)
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
