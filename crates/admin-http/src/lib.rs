//! The broker's admin HTTP listener: Prometheus metrics and health checks.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /metrics` | 200, [`runnel_metrics::Metrics::render`] as `text/plain; version=0.0.4` |
//! | `GET /health/live` | 200 while the process serves HTTP |
//! | `GET /health/ready` | 200 once [`Health::ready`] is true (the broker has loaded its data), else 503 |
//! | anything else | 404 (405 for another method on a known route) |
//!
//! HTTP/1.1 only (hyper, routed by axum). Every resource a client can hold is bounded by
//! [`Limits`]: connections, header size and read time (which is also the idle keep-alive
//! time), request body size, handler time, and connection lifetime.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use runnel_metrics::Metrics;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;
use tracing::{debug, info, warn};

/// What `/health/ready` asks. The broker answers `true` once it has opened its data
/// directory and loaded its groups.
pub trait Health: Send + Sync {
    fn ready(&self) -> bool;
}

impl<F> Health for F
where
    F: Fn() -> bool + Send + Sync,
{
    fn ready(&self) -> bool {
        self()
    }
}

/// A readiness flag to set once loading is done (and to clear when shutting down).
#[derive(Debug, Default)]
pub struct ReadyFlag(AtomicBool);

impl ReadyFlag {
    /// Not ready.
    pub fn new() -> ReadyFlag {
        ReadyFlag(AtomicBool::new(false))
    }

    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Health for ReadyFlag {
    fn ready(&self) -> bool {
        self.get()
    }
}

/// Bounds of the admin listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; further ones are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Time to receive a request's head, counted from when the server starts waiting for it
    /// (so it is also how long an idle keep-alive connection is kept).
    pub header_read_timeout: Duration,
    /// Bytes of a request head (hyper's read buffer; at least 8192).
    pub max_header_bytes: usize,
    /// Bytes of a request body: a larger declared `Content-Length` gets 413, and a body
    /// is never read past it.
    pub max_body_bytes: usize,
    /// Time to produce a response once the request head is read; then 503.
    pub request_timeout: Duration,
    /// A connection is asked to close (after its current response) once it is this old.
    pub connection_lifetime: Duration,
    /// Time connections get to finish their response after a shutdown or at the end of
    /// their lifetime before they are dropped.
    pub close_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_body_bytes: 4 * 1024,
            request_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(300),
            close_grace: Duration::from_secs(5),
        }
    }
}

/// Serves the admin routes on `listener` with the default [`Limits`] until `shutdown`
/// completes, then lets open connections finish their response (up to
/// [`Limits::close_grace`]) and returns.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<dyn Health>,
    shutdown: impl Future,
) -> io::Result<()> {
    serve_with_limits(listener, metrics, health, shutdown, Limits::default()).await
}

/// [`serve`] with explicit [`Limits`].
pub async fn serve_with_limits(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<dyn Health>,
    shutdown: impl Future,
    limits: Limits,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    info!(listen = %local, "admin HTTP listener (/metrics, /health/live, /health/ready)");
    let app = router(AppState {
        metrics,
        health,
        render: Arc::new(Semaphore::new(1)),
    });
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (close_tx, close_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Per-connection failures (reset, aborted) and descriptor
                        // exhaustion alike: wait a little rather than spin.
                        warn!(error = %e, "admin listener: accept failed");
                        tokio::select! {
                            _ = &mut shutdown => break,
                            _ = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => continue,
                        }
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    debug!(%peer, max = limits.max_connections, "admin listener: too many connections, closing");
                    drop(stream);
                    continue;
                };
                let app = app.clone();
                let close = close_rx.clone();
                connections.spawn(async move {
                    serve_connection(stream, app, limits, close).await;
                    drop(permit);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = close_tx.send(true);
    let drained = tokio::time::timeout(limits.close_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.shutdown().await;
    }
    info!(listen = %local, "admin HTTP listener stopped");
    Ok(())
}

const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<dyn Health>,
    /// One render at a time: a scrape that times out leaves its render running on the
    /// blocking pool, and a source stuck on a lock must not pile up blocked threads.
    render: Arc<Semaphore>,
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .fallback(not_found)
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response<Body> {
    // Rendering asks the broker's gauge sources, which take locks: keep it off the
    // runtime's worker threads. A panicking source answers 500, not a dropped connection.
    let Ok(permit) = state.render.clone().acquire_owned().await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    };
    let rendered = tokio::task::spawn_blocking(move || {
        let _one_at_a_time = permit;
        state.metrics.render()
    });
    match rendered.await {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(runnel_metrics::CONTENT_TYPE),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            warn!(error = %e, "rendering metrics failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n")
        }
    }
}

async fn live() -> Response<Body> {
    text(StatusCode::OK, "live\n")
}

async fn ready(State(state): State<AppState>) -> Response<Body> {
    if state.health.ready() {
        text(StatusCode::OK, "ready\n")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "not ready: loading\n")
    }
}

async fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "not found\n")
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    mut close: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(handle(app, req, limits).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let lifetime = tokio::time::sleep(limits.connection_lifetime);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(error = %e, "admin connection ended");
            }
            return;
        }
        _ = lifetime => {}
        _ = close.wait_for(|closing| *closing) => {}
    }
    // Finish the response in flight, if any, then close.
    conn.as_mut().graceful_shutdown();
    match tokio::time::timeout(limits.close_grace, conn).await {
        Ok(Err(e)) => debug!(error = %e, "admin connection ended"),
        Ok(Ok(())) => {}
        Err(_) => debug!("admin connection dropped after the close grace period"),
    }
}

async fn handle(app: Router, req: Request<Incoming>, limits: Limits) -> Response<Body> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        let mut r = text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
        // The body is not read: the connection cannot be reused.
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let req = req.map(|body| Body::new(Limited::new(body, limits.max_body_bytes)));
    match tokio::time::timeout(limits.request_timeout, app.oneshot(req)).await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "request timed out\n"),
    }
}
