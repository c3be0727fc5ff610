//! The ARM HTTP surface of acr-import.
//!
//! Owns the axum router ([`router`]), the handlers for registries ([`registries`]) and imports
//! ([`imports`]), the extractors whose rejections are ARM errors ([`extract`]), the one
//! [`error::ApiError`] → `{"error":{…}}` mapping, and the OpenAPI document ([`openapi`]).
//!
//! Invariants: every response carries `x-ms-request-id`; every error body is an ARM error
//! envelope (including 404/405 from routing, oversize and malformed bodies, and panics); request
//! bodies are never logged (they may hold source credentials); handlers never wait on a copy —
//! they enqueue and return.

pub mod auth;
pub mod cloud;
pub mod error;
pub mod extract;
pub mod groups;
pub mod imports;
pub mod openapi;
pub mod registries;
pub mod rules;

use std::time::Duration;

use acr_store::Store;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
pub use cloud::IdentityConfig;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use url::Url;

pub use error::ApiError;

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
    pub auth: auth::AuthMode,
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
            get(imports::operation_result),
        )
        .route(
            "/subscriptions/{subscription_id}/providers/Microsoft.ContainerRegistry/locations/{location}/operationStatuses/{operation_id}",
            get(imports::operation_status),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), identify_arm))
        .layer(middleware::from_fn(read_body_first))
        .layer(middleware::from_fn(arm_headers))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
        }))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal().into_response()))
        .with_state(state)
}

/// Bodies above the request limit are still read (and dropped) up to this size, so that the
/// client, still sending, gets to read the 413 instead of a broken pipe.
const DRAIN_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// Reads every request body before routing: at most [`extract::MAX_BODY_BYTES`] are kept; a
/// larger body is read to its end (up to [`DRAIN_LIMIT_BYTES`]) and answered 413. An answer
/// never goes out while the client is still sending, so HTTP/1 connections stay usable
/// (hyper closes a connection whose request body was left unread, and a client still writing
/// to it would see `EPIPE`, not the answer). ARM bodies are small JSON documents.
async fn read_body_first(req: Request, next: Next) -> Response {
    use futures::StreamExt;
    let (parts, body) = req.into_parts();
    if http_body::Body::is_end_stream(&body) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return ApiError::bad_request(
                "InvalidRequestContent",
                "The request body could not be read.",
            )
            .into_response();
        };
        total += chunk.len();
        if total <= extract::MAX_BODY_BYTES {
            kept.extend_from_slice(&chunk);
        } else if total > DRAIN_LIMIT_BYTES {
            let mut resp = extract::too_large().into_response();
            if parts.version <= axum::http::Version::HTTP_11 {
                resp.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    HeaderValue::from_static("close"),
                );
            }
            return resp;
        }
    }
    if total > extract::MAX_BODY_BYTES {
        return extract::too_large().into_response();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(kept)))
        .await
}

/// ARM treats the fixed segments of a resource path case-insensitively; axum does not. This
/// rewrites them to their canonical spelling before routing.
pub fn normalize_arm_path<B>(req: axum::http::Request<B>) -> axum::http::Request<B> {
    const CANON: &[&str] = &[
        "subscriptions",
        "resourceGroups",
        "providers",
        "Microsoft.ContainerRegistry",
        "registries",
        "importImage",
        "listCredentials",
        "locations",
        "operationResults",
        "operationStatuses",
        "checkNameAvailability",
        "resources",
    ];
    let raw_owned = req.uri().path().to_owned();
    let raw = raw_owned.as_str();
    // `az cloud register --endpoint-resource-manager https://host/` asks for
    // `//metadata/endpoints`: empty segments are dropped everywhere.
    let collapsed;
    let path = if raw.contains("//") {
        let mut p = String::with_capacity(raw.len());
        for seg in raw.split('/').filter(|s| !s.is_empty()) {
            p.push('/');
            p.push_str(seg);
        }
        if p.is_empty() {
            p.push('/');
        }
        collapsed = p;
        collapsed.as_str()
    } else {
        raw
    };
    if !path.to_ascii_lowercase().starts_with("/subscriptions") {
        if path != raw {
            return with_path(req, path.to_owned());
        }
        return req;
    }
    let segments: Vec<&str> = path.split('/').collect();
    let mut out: Vec<String> = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        // Names (a value after a collection segment) keep their spelling.
        let is_name = i > 0
            && [
                "subscriptions",
                "resourceGroups",
                "registries",
                "locations",
                "operationResults",
                "operationStatuses",
            ]
            .iter()
            .any(|c| segments[i - 1].eq_ignore_ascii_case(c));
        let canon = (!is_name)
            .then(|| CANON.iter().find(|c| c.eq_ignore_ascii_case(seg)))
            .flatten();
        out.push(
            canon
                .map(|c| (*c).to_owned())
                .unwrap_or_else(|| (*seg).to_owned()),
        );
    }
    let mut new_path = out.join("/");
    // A trailing slash is tolerated by ARM.
    if new_path.len() > 1 && new_path.ends_with('/') {
        new_path.pop();
    }
    if new_path != raw {
        return with_path(req, new_path);
    }
    req
}

fn with_path<B>(mut req: axum::http::Request<B>, new_path: String) -> axum::http::Request<B> {
    let uri = req.uri();
    let pq = match uri.query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    };
    if let Ok(pq) = pq.parse::<axum::http::uri::PathAndQuery>() {
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = Some(pq);
        if let Ok(u) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = u;
        }
    }
    req
}

/// The caller of ARM requests (those under `/subscriptions`); other paths need no token.
async fn identify_arm(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/subscriptions") {
        auth::identify(State(state), req, next).await
    } else {
        next.run(req).await
    }
}

/// `x-ms-request-id` on every response; client and correlation ids echoed.
async fn arm_headers(mut req: Request, next: Next) -> Response {
    // HTTP/2 carries the host in `:authority`, not in a Host header: give handlers one place.
    if !req.headers().contains_key(axum::http::header::HOST) {
        if let Some(v) = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(axum::http::header::HOST, v);
        }
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_id = req.headers().get(CLIENT_REQUEST_ID).cloned();
    let correlation = req.headers().get(CORRELATION_ID).cloned();
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert(REQUEST_ID, v.clone());
        h.insert(CORRELATION_ID, correlation.unwrap_or(v));
    }
    if let Some(c) = client_id {
        h.insert(CLIENT_REQUEST_ID, c);
    }
    resp
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "No HTTP resource was found that matches the request URI '{}'.",
            acr_core::reference::truncate(req.uri().path())
        ),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!(
            "The requested resource does not support http method '{}'.",
            req.method()
        ),
    )
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
