//! The web process: a router over [`AppState`], JSON errors everywhere, request
//! tracing, and graceful shutdown. Slow work is never done on the request path.

pub mod auth;
mod claim;
mod claim_input;
mod claim_original;
mod claim_wait;
mod dashboard;
pub mod error;
pub mod extract;
mod fleet;
mod health;
mod job_kinds;
mod jobs;
mod jobs_bulk;
pub mod openapi;
mod pool;
mod pool_actions;
mod reads;
mod respond;
mod serve;
pub mod wait;

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{Router, extract::MatchedPath, http::Request};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower_http::{
    LatencyUnit,
    classify::ServerErrorsFailureClass,
    limit::RequestBodyLimitLayer,
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};

use crate::config::Config;
pub use error::ApiError;

/// Largest accepted request body: `instructions` may be 64 KiB, plus the envelope.
const BODY_LIMIT: usize = 96 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<Config>,
    /// Wakes `Prefer: wait` requests when their job finishes.
    pub waiter: wait::JobWaiter,
    /// Expensive reads running at once ([`reads::ReadPermit`]).
    pub reads: Arc<tokio::sync::Semaphore>,
}

/// The API's routes and the OpenAPI document generated from them: a handler is
/// routed here only together with its `#[utoipa::path]` annotation.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, doc) = openapi::base()
        .merge(health::router())
        .merge(pool::router())
        .merge(jobs::router())
        .merge(jobs_bulk::router())
        .merge(job_kinds::router())
        .merge(fleet::router())
        .split_for_parts();
    (router, openapi::finish(doc))
}

/// The full router with its middleware.
pub fn router(state: AppState) -> Router {
    let (api, mut doc) = api();
    openapi::with_join_hosts(&mut doc, &state.config.join_hosts);
    // Not API operations, so not in the document.
    Router::new()
        .merge(api)
        .merge(dashboard::router())
        .merge(openapi::router(&doc))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        // Covers `Prefer: wait=60` plus slack; anything slower is a bug.
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::GATEWAY_TIMEOUT, Duration::from_secs(75)))
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::from_fn(record_request))
        // Layers run after routing, so the span can name the matched route.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
                    tracing::info_span!("http", method = %req.method(), route, path = %req.uri().path())
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO).latency_unit(LatencyUnit::Millis))
                .on_failure(log_failure),
        )
}

/// Counts every request by route and status, and times it (a claim with
/// `Prefer: wait` is timed to its answer: the claim latency clients see). Each
/// request is served by one process, so these sum across web replicas.
async fn record_request(req: Request<axum::body::Body>, next: axum::middleware::Next) -> axum::response::Response {
    // Labels come from closed sets (matched routes, standard methods), so no request
    // can grow the recorder or the metrics page.
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = method_label(req.method());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    crate::metrics::http_request(method, &route, response.status().as_u16(), started.elapsed());
    if method == "POST" && route == "/api/pool/claim" {
        crate::metrics::claim_answered(response.status().as_u16());
    }
    response
}

/// Server errors are logged as errors, but a 503 is Pool shedding load or saying the
/// pool is empty, as designed: logged at debug, so a flood does not flood the logs.
fn log_failure(class: ServerErrorsFailureClass, latency: Duration, _: &tracing::Span) {
    let latency_ms = latency.as_millis() as u64;
    match class {
        ServerErrorsFailureClass::StatusCode(code) if code == axum::http::StatusCode::SERVICE_UNAVAILABLE => {
            tracing::debug!(latency_ms, "answered 503");
        }
        class => tracing::error!(%class, latency_ms, "response failed"),
    }
}

/// Headers every answer carries: the dashboard runs only its own scripts and styles,
/// cannot be framed, and no content is sniffed into another type.
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                       frame-ancestors 'none'";
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// The method as a metric label: a standard one, or `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [Method; 7] =
        [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS];
    KNOWN.iter().find(|m| *m == method).map_or("other", Method::as_str)
}

/// A bound, ready-to-run web server; built separately so tests can learn the port.
pub struct Application {
    listener: TcpListener,
    router: Router,
    db: PgPool,
    header_timeout: Duration,
    metrics_flush: Duration,
}

impl Application {
    /// Binds `{host}:{port}` (port 0 picks a free one) and builds the router.
    pub async fn build(config: Config, db: PgPool) -> anyhow::Result<Self> {
        let addr = std::net::SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(&addr).await.with_context(|| format!("Failed to bind {addr}"))?;
        // Install the recorder before the first notification is recorded.
        let _ = crate::metrics::handle();
        let waiter = wait::JobWaiter::start(db.clone());
        let (header_timeout, metrics_flush) = (config.header_read_timeout, config.metrics_flush);
        let reads = reads::permits(config.database.max_connections);
        let state = AppState { db: db.clone(), config: Arc::new(config), waiter, reads };
        Ok(Self { listener, router: router(state), db, header_timeout, metrics_flush })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "web listening");
        // Claims answered are written to the charts' rows like the workers' metrics.
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let flush = tokio::spawn(crate::metrics::flush_loop(self.db, self.metrics_flush, None, stop));
        serve::serve(self.listener, self.router, self.header_timeout, shutdown).await;
        let _ = stop_tx.send(true);
        let _ = flush.await;
        Ok(())
    }
}
