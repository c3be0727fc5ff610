//! `GET /metrics` (Prometheus text format) and the HTTP request metrics of the ARM listeners.
//!
//! The exporter is the binary's: it hands in a [`MetricsRender`] that renders what the
//! `metrics` facade recorded (names and labels: `acr_core::metrics`). Before rendering, the
//! handler counts the unfinished operations in the store, so every replica reports the
//! shared queue rather than its own view of it.
//!
//! No token is asked for, whatever `--auth` says: Prometheus scrapes without one, and the
//! document holds no secret and no identifier (labels are bounded: never an operation id,
//! subscription, registry, repository or host). `--metrics-listen` serves it on an address of
//! its own ([`listener_router`]) for deployments that keep it off the ARM listener's network.

use std::sync::Arc;
use std::time::{Duration, Instant};

use acr_core::metrics::{self as m, Listener};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::AppState;

/// The media type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a scrape waits for the store's queue count.
const QUEUE_COUNT_TIMEOUT: Duration = Duration::from_secs(2);

/// Renders the recorded metrics (the binary's exporter); none: `/metrics` answers 404.
#[derive(Clone, Default)]
pub struct MetricsRender(Option<Arc<dyn Fn() -> String + Send + Sync>>);

impl MetricsRender {
    pub fn new(render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(render)))
    }
}

impl std::fmt::Debug for MetricsRender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "MetricsRender(exporter)"
        } else {
            "MetricsRender(none)"
        })
    }
}

/// The service's metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text exposition format (version 0.0.4): queue, copy, HTTP and build metrics, all named acr_import_*. No token is required.", content_type = "text/plain; version=0.0.4", body = String),
              (status = 404, description = "This process has no metrics exporter", body = acr_core::wire::ErrorResponse)))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(render) = state.config.metrics.0.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "This process exports no metrics.",
        ));
    };
    match tokio::time::timeout(QUEUE_COUNT_TIMEOUT, state.store.queue_stats()).await {
        Ok(Ok(q)) => m::queue_gauges(q.queued, q.running, q.oldest_queued_age),
        Ok(Err(e)) => {
            tracing::warn!(error = %acr_core::error_chain(&e), "metrics: the queue could not be counted");
            m::queue_scrape_failed();
        }
        Err(_) => {
            tracing::warn!("metrics: the store did not count the queue in time");
            m::queue_scrape_failed();
        }
    }
    let body = render();
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        body,
    )
        .into_response())
}

/// The router of `--metrics-listen`: `/metrics` alone (anything else is an ARM 404).
pub fn listener_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(crate::layers::not_found)
        .layer(middleware::from_fn_with_state(
            Listener::Metrics,
            track_http,
        ))
        .with_state(state)
}

/// Counts a request (`acr_import_http_requests_total`) and the time to its response head
/// (`acr_import_http_request_duration_seconds`) by route template: the route that matched
/// (axum's [`MatchedPath`], one of the routes declared in this crate) or `unmatched`.
pub async fn track_http(State(listener): State<Listener>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| m::UNMATCHED_ROUTE.to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    let resp = next.run(req).await;
    m::http_request(
        listener,
        route,
        method.as_str(),
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}
