//! The daemon's HTTP endpoints (SPEC §10): `/metrics`, `/api/v1/criteria`,
//! `/healthz`, `/readyz`, `/` (a page for people, `page`) and
//! `/connectors/<id>` (the evidence pack, `evidence`); and the server that
//! carries them, hardened against abusive clients.
//!
//! - `/metrics` and `/api/v1/criteria` are served from the background
//!   rendering (`serve::live::Serving::render_loop`, running while reads
//!   come): every reader gets a reference to the same immutable bytes, so
//!   40 readers of a 66 MB body cost one body, not 40, and no request
//!   measures the store.
//! - Pages rendered per request (`/`) run on the blocking pool, at most
//!   `http.max_concurrent_renders` at once; a request past that gets 503 with
//!   `Retry-After: 1` at once rather than queueing (a queue would hold its
//!   connection slot, and memory, for as long as the queue is long).
//! - `/healthz` and `/readyz` take no lock, no permit and no blocking thread:
//!   nothing the expensive endpoints hold can delay them.
//! - The server (see [`serve`]) bounds each connection's time to send a
//!   request head (`header_read_timeout_seconds`, which also closes idle
//!   keep-alive connections), closes connections that move no byte for
//!   `idle_timeout_seconds`, and keeps at most `max_connections` open: past
//!   it a new connection closes the oldest one that is not serving a
//!   request, so a flood of idle or slow connections can neither exhaust
//!   file descriptors (snapshots need theirs) nor lock out a health probe.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::report::Report;
use crate::serve::live::Serving;
use crate::serve::metrics::Format;
use crate::serve::page;

pub fn router(shared: Arc<Serving>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/criteria", get(criteria))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/", get(page))
        .route("/connectors/{connector}", get(connector_page))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: the endpoints are /, /metrics, /api/v1/criteria, /connectors/<id>, \
                 /healthz and /readyz\n",
            )
        })
        .with_state(shared)
}

async fn metrics(State(shared): State<Arc<Serving>>, headers: HeaderMap) -> Response {
    let fmt = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let r = shared.rendered().await;
    ([(header::CONTENT_TYPE, fmt.content_type())], r.text(fmt)).into_response()
}

/// The query of `/api/v1/criteria`: `?daily=true` adds the `daily` series.
#[derive(Debug, Default, serde::Deserialize)]
struct CriteriaQuery {
    #[serde(default)]
    daily: bool,
}

async fn criteria(
    State(shared): State<Arc<Serving>>,
    q: Result<Query<CriteriaQuery>, QueryRejection>,
) -> Response {
    // A JSON API answers a bad query in JSON, saying what it accepts.
    let Ok(Query(q)) = q else {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"bad query: `daily` is `true` or `false`, and no other parameter is read"}"#,
        )
            .into_response();
    };
    if !q.daily {
        let r = shared.rendered().await;
        return (
            [(header::CONTENT_TYPE, "application/json")],
            r.criteria.clone(),
        )
            .into_response();
    }
    // The daily series is not part of the background rendering: it is
    // measured per request, under the same cap as the pages.
    on_demand(&shared, |_, s| {
        let r = s.report_now_daily();
        (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&r.doc()).unwrap_or_default(),
        )
            .into_response()
    })
    .await
}

async fn readyz(State(shared): State<Arc<Serving>>) -> Response {
    if shared.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: restoring state or waiting for partitions\n",
        )
            .into_response()
    }
}

async fn page(State(shared): State<Arc<Serving>>) -> Response {
    // The page draws each scope's daily sparkline: it measures its own
    // report with the daily series, under the render cap.
    on_demand(&shared, |_, s| {
        Html(page::render(&s.report_now_daily(), s.cfg())).into_response()
    })
    .await
}

/// Renders a response from the latest report on the blocking pool, at most
/// `http.max_concurrent_renders` at once; past that, 503 with `Retry-After`.
/// For every endpoint whose body is not one of the background renderings.
pub async fn on_demand<F>(shared: &Arc<Serving>, render: F) -> Response
where
    F: FnOnce(&Report, &Serving) -> Response + Send + 'static,
{
    // The rendering first: waiting for it (after a quiet spell) must not
    // hold a permit that turns other pages away.
    let rendered = shared.rendered().await;
    let Ok(permit) = Arc::clone(shared.render_permits()).try_acquire_owned() else {
        shared.metrics().http_shed.inc();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "busy: too many pages being rendered at once; retry in a second\n",
        )
            .into_response();
    };
    let s = Arc::clone(shared);
    let job = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        render(&rendered.report, &s)
    });
    match job.await {
        Ok(r) => r,
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// One open connection, as the connection table sees it.
struct ConnState {
    /// Requests whose response (body included) is not fully written yet.
    busy: AtomicUsize,
    /// Notified to close the connection (eviction).
    close: Notify,
}

/// The open connections, oldest first (ids grow).
#[derive(Default)]
struct Table {
    next_id: u64,
    open: BTreeMap<u64, Arc<ConnState>>,
}

/// Serves `router` on `listener` until `stop` resolves; see the module
/// documentation for the limits.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shared: Arc<Serving>,
    stop: impl Future<Output = ()>,
) {
    let h = &shared.cfg().http;
    let cap = h.max_connections;
    let idle = Duration::from_secs(h.idle_timeout_seconds);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(h.header_read_timeout_seconds))
        .keep_alive(true);
    let table = Arc::new(Mutex::new(Table::default()));
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut stop => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and the like: the connection stays in the
                    // backlog; try again shortly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = {
            let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
            if t.open.len() >= cap {
                let victim = t
                    .open
                    .iter()
                    .find(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
                    .map(|(id, _)| *id);
                shared.metrics().http_evicted.inc();
                match victim.and_then(|id| t.open.remove(&id)) {
                    Some(c) => c.close.notify_one(),
                    // Every connection is serving a request: the new one
                    // waits its turn outside (closed; the client retries).
                    None => continue,
                }
            }
            let id = t.next_id;
            t.next_id += 1;
            let c = Arc::new(ConnState {
                busy: AtomicUsize::new(0),
                close: Notify::new(),
            });
            t.open.insert(id, Arc::clone(&c));
            shared.metrics().http_connections.set(t.open.len() as i64);
            (id, c)
        };
        let (id, state) = state;
        let table = Arc::clone(&table);
        let router = router.clone();
        let builder = builder.clone();
        let shared = Arc::clone(&shared);
        tasks.spawn(async move {
            connection(stream, router, builder, Arc::clone(&state), idle).await;
            let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
            t.open.remove(&id);
            shared.metrics().http_connections.set(t.open.len() as i64);
        });
    }
    // Shutdown: dropping the tasks closes every connection.
    tasks.shutdown().await;
}

/// Drives one connection until it ends, is evicted, or moves no byte for
/// `idle`.
async fn connection(
    stream: TcpStream,
    router: Router,
    builder: hyper::server::conn::http1::Builder,
    state: Arc<ConnState>,
    idle: Duration,
) {
    let started = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Tracked {
        inner: stream,
        started,
        last: Arc::clone(&last),
    });
    let st = Arc::clone(&state);
    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let mut router = router.clone();
        st.busy.fetch_add(1, Ordering::AcqRel);
        let guard = BusyGuard(Arc::clone(&st));
        async move {
            let resp = tower_service::Service::call(&mut router, req.map(Body::new))
                .await
                .unwrap_or_else(|e: Infallible| match e {});
            Ok::<_, Infallible>(resp.map(|b| {
                Body::new(Guarded {
                    inner: b,
                    _guard: guard,
                })
            }))
        }
    });
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    loop {
        let since = Duration::from_millis(last.load(Ordering::Relaxed));
        let deadline = tokio::time::Instant::from_std(started + since + idle);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = state.close.notified() => return,
            _ = tokio::time::sleep_until(deadline) => {
                let moved = Duration::from_millis(last.load(Ordering::Relaxed));
                if started + moved + idle <= Instant::now() {
                    tracing::debug!("closing a connection idle for {idle:?}");
                    return;
                }
            }
        }
    }
}

/// Marks a request done when its response body is dropped (fully written,
/// or the connection gone).
struct BusyGuard(Arc<ConnState>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that holds its connection's [`BusyGuard`].
struct Guarded {
    inner: Body,
    _guard: BusyGuard,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A TCP stream that notes when it last moved a byte (ms since `started`).
struct Tracked {
    inner: TcpStream,
    started: Instant,
    last: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        self.last
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The evidence pack of one connector (SPEC §11), live; 404 for a
/// connector the daemon holds no scope of.
async fn connector_page(
    State(shared): State<Arc<Serving>>,
    Path(connector): Path<String>,
) -> Response {
    on_demand(&shared, move |_, s| match s.evidence_html(&connector) {
        Some(body) => Html(body).into_response(),
        None => (StatusCode::NOT_FOUND, "no such connector\n").into_response(),
    })
    .await
}
