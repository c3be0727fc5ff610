//! The ARM HTTP surface of acr-import.
//!
//! Owns the axum router ([`router`]) and what wraps every route (`layers`: body read before
//! routing, request ids, ARM path normalisation, 404/405), the handlers — registries
//! ([`registries`]), imports ([`imports`]), the operation URLs ([`operations`]), resource groups
//! ([`groups`]), the cloud around them ([`cloud`]) — the ARM caller and its permissions
//! ([`caller`]), the tokens we sign ([`tokens`]), the URLs we hand out (`urls`), the import
//! rules ([`rules`]), the extractors whose rejections are ARM errors ([`extract`]), the one
//! [`error::ApiError`] → `{"error":{…}}` mapping, and the OpenAPI document ([`openapi`]).
//!
//! Invariants: every response carries `x-ms-request-id`; every error body is an ARM error
//! envelope (including 404/405 from routing, oversize and malformed bodies, and panics); request
//! bodies are never logged (they may hold source credentials); handlers never wait on a copy —
//! they enqueue and return.

pub mod caller;
pub mod cloud;
pub mod error;
pub mod extract;
pub mod groups;
pub mod imports;
mod layers;
pub mod openapi;
pub mod operations;
pub mod registries;
pub mod rules;
pub mod tokens;
mod urls;

use std::time::Duration;

use acr_store::Store;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use url::Url;

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
}

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");
pub const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-client-request-id");
pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-ms-correlation-request-id");

const BASE: &str = "/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.ContainerRegistry/registries/{registry_name}";

/// Builds the whole application. Wrap it with [`normalize_arm_path`] before serving.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metadata/endpoints", get(cloud::metadata_endpoints))
        .route("/metadata/identity/oauth2/token", get(cloud::identity_token))
        .route("/subscriptions", get(cloud::list_subscriptions))
        .route("/subscriptions/{subscription_id}", get(cloud::get_subscription))
        .route(
            "/subscriptions/{subscription_id}/resources",
            get(cloud::list_resources),
        )
        .route(
            "/subscriptions/{subscription_id}/resourceGroups/{resource_group}",
            get(groups::get_group)
                .head(groups::get_group)
                .put(groups::put_group)
                .delete(groups::delete_group),
        )
        .route(
            "/subscriptions/{subscription_id}/resourceGroups",
            get(groups::list_groups),
        )
        .route(
            "/subscriptions/{subscription_id}/providers/Microsoft.ContainerRegistry/checkNameAvailability",
            post(registries::check_name_availability),
        )
        .route(
            BASE,
            get(registries::get_registry)
                .put(registries::put_registry)
                .patch(registries::update_registry)
                .delete(registries::delete_registry),
        )
        .route(&format!("{BASE}/importImage"), post(imports::import_image))
        .route(
            &format!("{BASE}/listCredentials"),
            post(registries::list_credentials),
        )
        .route(
            "/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.ContainerRegistry/registries",
            get(registries::list_by_group),
        )
        .route(
            "/subscriptions/{subscription_id}/providers/Microsoft.ContainerRegistry/registries",
            get(registries::list_by_subscription),
        )
        .route(
            "/subscriptions/{subscription_id}/providers/Microsoft.ContainerRegistry/locations/{location}/operationResults/{operation_id}",
            get(operations::operation_result),
        )
        .route(
            "/subscriptions/{subscription_id}/providers/Microsoft.ContainerRegistry/locations/{location}/operationStatuses/{operation_id}",
            get(operations::operation_status),
        )
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
        .with_state(state)
}

/// Liveness and database reachability.
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, description = "The service and its database are up"),
              (status = 503, description = "The database is unreachable", body = acr_core::wire::ErrorResponse)))]
pub async fn health(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    tokio::time::timeout(Duration::from_secs(3), state.store.ping())
        .await
        .map_err(|_| {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The database did not answer in time.",
            );
            e.retry_after = Some(5);
            e
        })??;
    Ok(Json(serde_json::json!({"status": "ok"})))
}
