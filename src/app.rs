//! The `run` command: opens the state store, joins the consumer group
//! (every assigned partition becomes a task, restored from its checkpoint),
//! serves HTTP, and on shutdown drains (finishes the batch in flight,
//! checkpoints every owned task, commits offsets) before returning.
//!
//! This module owns the shared handles and hands each part the narrow one
//! it needs: the Kafka side a [`KafkaHandle`] (it writes tasks and
//! publishes their views), the HTTP side a [`Serving`] (it reads views).
//! Neither imports the other, nor this module.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::store::{self as state_store, StoreError};
use crate::checkpoint::{self, CheckpointError};
use crate::config::Config;
use crate::kafka::{self, KafkaHandle};
use crate::serve::live::Serving;
use crate::task::TaskSet;
use crate::telemetry::SelfMetrics;

pub use crate::telemetry::wall_clock;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("config key `http.listen`: cannot listen on {addr}: {error}")]
    Listen { addr: String, error: std::io::Error },
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaSetupError),
    #[error("the Kafka consumer thread failed: {0}")]
    Consumer(String),
    #[error(transparent)]
    Run(kafka::ConsumerError),
    #[error("config key `http.max_connections`: {0}")]
    FileLimit(String),
}

/// Options of `run` that are not configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Discard every task checkpoint in the state store and start empty.
    pub fresh: bool,
}

/// Runs the daemon until `shutdown` resolves, then drains and returns.
pub async fn run(
    cfg: Config,
    opts: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    check_fd_limit(cfg.http.max_connections)?;
    let store = state_store::open(&cfg.state)?;
    if cfg_uses_dir(&cfg) {
        checkpoint::legacy_snapshot(&cfg.state.dir, opts.fresh)?;
    }
    if opts.fresh {
        let n = checkpoint::discard(&*store)?;
        if n > 0 {
            tracing::warn!(store = %store.describe(), checkpoints = n, "--fresh: discarded every task checkpoint");
        } else {
            tracing::info!(store = %store.describe(), "--fresh: no task checkpoint to discard");
        }
    }
    // Fail fast: a daemon that can never checkpoint would consume without
    // ever committing.
    store.put(
        &format!("members/{}.probe", probe_name(&cfg)),
        bytes::Bytes::from_static(b"ok\n"),
    )?;
    let cfg = Arc::new(cfg);
    let stop = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(SelfMetrics::new());
    let tasks = Arc::new(TaskSet::new(&cfg));
    let serving = Arc::new(Serving::new(
        Arc::clone(&cfg),
        Arc::clone(&tasks),
        Arc::clone(&metrics),
        Arc::clone(&stop),
    ));
    tracing::info!(store = %store.describe(), "state store open; tasks are restored as partitions are assigned");

    let addr: SocketAddr = cfg.http.listen.parse().expect("validated by Config");
    let listener =
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|error| DaemonError::Listen {
                addr: addr.to_string(),
                error,
            })?;
    tracing::info!(%addr, "serving /metrics, /api/v1/criteria, /healthz, /readyz and /");

    let consumer = kafka::Consumer::new(KafkaHandle {
        cfg: Arc::clone(&cfg),
        tasks: Arc::clone(&tasks),
        metrics: Arc::clone(&metrics),
        store,
        stop: Arc::clone(&stop),
    })?;
    // Tells the runtime when the consumer thread ends on its own (a task
    // could not be restored): the daemon then exits instead of serving a
    // frozen state while consuming nothing.
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
    let consumer_thread = std::thread::Builder::new()
        .name("kafka-consumer".into())
        .spawn(move || {
            let r = consumer.run();
            let _ = ended_tx.send(());
            r
        })
        .map_err(|e| DaemonError::Consumer(e.to_string()))?;

    let renderer = {
        let s = Arc::clone(&serving);
        std::thread::Builder::new()
            .name("metrics-render".into())
            .spawn(move || s.render_loop())
            .map_err(|e| DaemonError::Consumer(e.to_string()))?
    };

    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::serve::http::serve(
        listener,
        crate::serve::http::router(Arc::clone(&serving)),
        Arc::clone(&serving),
        async {
            let _ = http_stop_rx.await;
        },
    ));

    let ended_early = tokio::select! {
        _ = shutdown => false,
        _ = ended_rx => true,
    };
    if ended_early {
        stop.store(true, Ordering::Release);
        let _ = http_stop_tx.send(());
        let _ = renderer.join();
        let r = match consumer_thread.join() {
            Ok(Ok(())) => Err(DaemonError::Consumer("stopped on its own".into())),
            Ok(Err(e)) => Err(DaemonError::Run(e)),
            Err(_) => Err(DaemonError::Consumer("panicked".into())),
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
        return r;
    }
    tracing::info!("shutting down: draining the batch in flight and checkpointing every task");
    stop.store(true, Ordering::Release);
    let joined = tokio::task::spawn_blocking(move || consumer_thread.join());
    let result = match tokio::time::timeout(Duration::from_secs(9), joined).await {
        Ok(Ok(Ok(r))) => r.map_err(DaemonError::Run),
        Ok(Ok(Err(_))) => Err(DaemonError::Consumer("panicked".into())),
        Ok(Err(e)) => Err(DaemonError::Consumer(e.to_string())),
        Err(_) => Err(DaemonError::Consumer("did not stop within 9 s".into())),
    };
    let _ = http_stop_tx.send(());
    let _ = renderer.join();
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    result
}

/// File descriptors kept for everything but HTTP clients: snapshots, the
/// state directory, librdkafka's broker sockets and pipes, the listener,
/// stdio, epoll.
pub const FD_RESERVE: u64 = 128;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, then checks that
/// `max_connections` client sockets leave [`FD_RESERVE`] descriptors free, so
/// a connection flood can never starve a snapshot of its file.
fn check_fd_limit(max_connections: usize) -> Result<(), DaemonError> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Ok(());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim = raised;
            }
        }
        // rlim_t is u64 on Linux, not on every unix.
        #[allow(clippy::unnecessary_cast)]
        let soft = lim.rlim_cur as u64;
        let need = max_connections as u64 + FD_RESERVE;
        if soft < need {
            return Err(DaemonError::FileLimit(format!(
                "{max_connections} connections need a file-descriptor limit of at least {need} \
                 ({FD_RESERVE} kept for snapshots and Kafka), but RLIMIT_NOFILE is {soft}: \
                 lower it to at most {} or raise the limit",
                soft.saturating_sub(FD_RESERVE)
            )));
        }
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Whether the state store is the directory `state.dir` (where snapshots
/// of earlier versions may lie).
fn cfg_uses_dir(cfg: &Config) -> bool {
    state_store::is_dir(&cfg.state)
}

/// The member's name in the store's `members/` probes.
fn probe_name(cfg: &Config) -> String {
    let name = cfg
        .kafka
        .group_instance_id
        .clone()
        .unwrap_or_else(|| format!("pid-{}", std::process::id()));
    // Store keys allow a narrow character set (see `check_key`).
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-=@+,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect()
}
