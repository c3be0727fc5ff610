//! The ARM HTTP surface of acr-import.
//!
//! Owns the axum router ([`router`]) and what wraps every route (`layers`: body read before
//! routing, request ids, ARM path normalisation, 404/405), the handlers — registries
//! ([`registries`]), imports ([`imports`]), the operation URLs ([`operations`]), resource groups
//! ([`groups`]), the cloud around them ([`cloud`]), the emulator's own operations feed
//! ([`feed`]) and dashboard ([`portal`]) — CORS for browser frontends ([`cors`]), the ARM caller and its permissions
//! ([`caller`]), the tokens we sign ([`tokens`]), the URLs we hand out (`urls`), the import
//! rules ([`rules`]), the extractors whose rejections are ARM errors ([`extract`]), the one
//! [`error::ApiError`] → `{"error":{…}}` mapping, `/metrics` and the HTTP request metrics
//! ([`metrics`]), and the OpenAPI document ([`openapi`]).
//!
//! Invariants: every response carries `x-ms-request-id`; every error body is an ARM error
//! envelope (including 404/405 from routing, oversize and malformed bodies, and panics); request
//! bodies are never logged (they may hold source credentials); handlers never wait on a copy —
//! they enqueue and return.

pub mod caller;
pub mod cloud;
pub mod cors;
pub mod error;
pub mod extract;
pub mod feed;
pub mod groups;
pub mod health;
pub mod imports;
mod layers;
pub mod metrics;
pub mod openapi;
pub mod operations;
pub mod portal;
pub mod registries;
pub mod registry_path;
pub mod rules;
pub mod tokens;
mod urls;

use std::time::Duration;

use acr_store::Store;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderName;
use axum::middleware;
use axum::response::IntoResponse;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use url::Url;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;
pub use layers::normalize_arm_path;
pub use tokens::IdentityConfig;

/// Settings of the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Seconds sent in `Retry-After` (never 0: clients then wait 30 s).
    pub retry_after: u32,
    /// `azurecr.io` in `<name>.azurecr.io`.
    pub login_server_suffix: String,
    /// Base of the URLs we hand out; when unset, built from the request's `Host`.
    pub public_url: Option<Url>,
    /// Scheme for URLs built from `Host` when the listener does not say ([`ListenerScheme`]).
    pub scheme: &'static str,
    /// `tid` of minted tokens and of the subscriptions.
    pub tenant_id: String,
    /// Subscriptions `GET /subscriptions` lists before those that hold registries.
    pub subscriptions: Vec<String>,
    pub identity: IdentityConfig,
    /// How long a finished operation stays readable.
    pub operation_retention: Duration,
    /// Who may do what.
    pub auth: caller::AuthMode,
    /// How long `importImage` waits for an import with nothing to copy, to answer 200 at once.
    pub sync_wait: Duration,
    /// Bounds on unfinished operations (429 when reached).
    pub queue_limits: acr_store::QueueLimits,
    /// Which source addresses are refused (SSRF); IP literals are refused at POST time.
    pub source_network: acr_core::netpolicy::NetworkPolicy,
    /// Derives the admin users' passwords (`listCredentials`); `None`: not available.
    pub admin_key: Option<acr_core::admin::AdminKey>,
    /// Which browser origins may call (`--cors-origin`).
    pub cors: cors::CorsOrigins,
    /// What the built-in dashboard is told (the login servers' listeners).
    pub portal: portal::PortalConfig,
    /// Renders `GET /metrics` (the binary's Prometheus exporter).
    pub metrics: metrics::MetricsRender,
}

/// The scheme of the listener a request came in on (a request extension set per listener), so
/// that URLs we hand out are `https://` on the TLS listener and `http://` on the plain one.
#[derive(Debug, Clone, Copy)]
pub struct ListenerScheme(pub &'static str);

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub config: ApiConfig,
    /// What `/health/ready` checks besides the store.
    pub readiness: health::Readiness,
}

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");
pub const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-client-request-id");
pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-ms-correlation-request-id");

/// Every route with its OpenAPI entry: each handler's `#[utoipa::path]` is both its route and
/// its operation in the document ([`openapi::ApiDoc`]). HEAD is answered by the GET handlers
/// (axum's rule; `az group exists` uses it).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health::health))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(metrics::metrics))
        .merge(cloud::routes())
        .merge(groups::routes())
        .merge(registries::routes())
        .merge(imports::routes())
        .merge(operations::routes())
        .merge(feed::routes())
        .merge(portal::routes())
}

/// Builds the whole application. Wrap it with [`normalize_arm_path`] before serving.
pub fn router(state: AppState) -> Router {
    let (routes, _) = routes().split_for_parts();
    let cors = cors::layer(&state.config.cors);
    routes
        .merge(portal::assets())
        .fallback(layers::not_found)
        .method_not_allowed_fallback(layers::method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            layers::identify_arm,
        ))
        .layer(middleware::from_fn(layers::read_body_first))
        .layer(middleware::from_fn(layers::arm_headers))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
        }))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal().into_response()))
        // A preflight is answered before anything asks for a token (its body, if any, read
        // and dropped first).
        .layer(cors)
        .layer(middleware::from_fn(layers::drain_options_body))
        // Outermost, so every answer is counted (preflights, 413s, panics); a layer of the
        // router runs after routing, where the route template is known.
        .layer(middleware::from_fn_with_state(
            acr_core::metrics::Listener::Arm,
            metrics::track_http,
        ))
        .with_state(state)
}
