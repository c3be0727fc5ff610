//! The built-in dashboard: one static page (`/`), its script and style sheet, embedded in the
//! binary (`crates/acr-api/portal/`), and the page's configuration
//! (`/_acr-import/portal/config`: where the registries' data plane listens, the auth mode).
//!
//! The page is a frontend like any other: it calls the ARM routes, follows the real
//! Azure-AsyncOperation URLs, reads the operations feed and browses through the registries'
//! `/v2` API; it has no private entry point. It is served with a strict Content-Security-Policy:
//! scripts and styles only from this origin (no inline code), connections only to this origin
//! and the registries' listeners, nothing framed, nothing from elsewhere.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::caller::AuthMode;
use crate::AppState;

const INDEX_HTML: &str = include_str!("../portal/index.html");
const APP_JS: &str = include_str!("../portal/app.js");
const APP_CSS: &str = include_str!("../portal/app.css");

/// Where the login servers listen, for the page's data-plane calls (set once they are bound).
#[derive(Debug, Clone, Default)]
pub struct PortalConfig {
    /// The plain listener (`--registry-listen`).
    pub registry_listen: Option<SocketAddr>,
    /// The HTTPS listener (`--registry-listen-tls`).
    pub registry_listen_tls: Option<SocketAddr>,
}

/// What the page needs to know about this service.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortalSettings {
    /// `none` or `arm-rbac`: whether the page must ask for a bearer token.
    pub auth: String,
    /// `azurecr.io` in `<name>.azurecr.io`.
    pub login_server_suffix: String,
    /// Base URL of the registries' plain listener as this page can reach it
    /// (`http://host:port`; the root view: `/v2/<registry>/<repository>/…`).
    pub registry_endpoint: Option<String>,
    /// The same for the HTTPS listener.
    pub registry_tls_endpoint: Option<String>,
    /// The subscriptions the service lists first.
    pub subscriptions: Vec<String>,
    /// The api-version the page uses.
    pub api_version: String,
}

/// The asset routes (not in the OpenAPI document: they are not an API).
pub(crate) fn assets() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/_acr-import/portal/app.js", get(app_js))
        .route("/_acr-import/portal/app.css", get(app_css))
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(portal_config))
}

/// The host part of the request's `Host` (no port), for endpoints on unspecified addresses.
fn request_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next()?
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    (!host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b)))
    .then(|| host.to_owned())
}

/// `scheme://host:port` of a listener as a browser that reached us through `Host` sees it.
fn endpoint(scheme: &str, addr: SocketAddr, headers: &HeaderMap) -> String {
    let host = if addr.ip().is_unspecified() {
        request_host(headers).unwrap_or_else(|| "127.0.0.1".into())
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    format!("{scheme}://{host}:{}", addr.port())
}

fn settings(state: &AppState, headers: &HeaderMap) -> PortalSettings {
    let p = &state.config.portal;
    PortalSettings {
        auth: match state.config.auth {
            AuthMode::Open => "none",
            AuthMode::ArmRbac { .. } => "arm-rbac",
        }
        .to_owned(),
        login_server_suffix: state.config.login_server_suffix.clone(),
        registry_endpoint: p.registry_listen.map(|a| endpoint("http", a, headers)),
        registry_tls_endpoint: p.registry_listen_tls.map(|a| endpoint("https", a, headers)),
        subscriptions: state.config.subscriptions.clone(),
        api_version: acr_core::arm::LATEST_STABLE_API_VERSION.to_owned(),
    }
}

/// The dashboard's settings.
#[utoipa::path(get, path = "/_acr-import/portal/config", operation_id = "Portal_Config", tag = "portal",
    responses((status = 200, description = "What the built-in dashboard needs to know", body = PortalSettings)))]
pub async fn portal_config(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Json<PortalSettings> {
    Json(settings(&state, &headers))
}

/// The page's policy: everything from this origin only; connections also to the registries.
fn content_security_policy(state: &AppState, headers: &HeaderMap) -> String {
    let s = settings(state, headers);
    let mut connect = String::from("'self'");
    for e in [s.registry_endpoint, s.registry_tls_endpoint]
        .into_iter()
        .flatten()
    {
        connect.push(' ');
        connect.push_str(&e);
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut resp = asset("text/html; charset=utf-8", INDEX_HTML);
    if let Ok(v) = HeaderValue::from_str(&content_security_policy(&state, &headers)) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp.headers_mut()
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_request_host_on_unspecified_addresses() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("devbox:8080"));
        let any: SocketAddr = "0.0.0.0:5000".parse().expect("addr");
        let lo: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        assert_eq!(endpoint("http", any, &h), "http://devbox:5000");
        assert_eq!(endpoint("http", lo, &h), "http://127.0.0.1:5000");
        h.insert(header::HOST, HeaderValue::from_static("[::1]:8080"));
        assert_eq!(endpoint("http", any, &h), "http://[::1]:5000");
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for text in [INDEX_HTML, APP_CSS] {
            assert!(!text.contains("http:") && !text.contains("https:"));
            assert!(!text.contains("//fonts") && !text.contains("@import"));
        }
        assert!(!INDEX_HTML.contains("<script>"), "no inline script");
        assert!(!INDEX_HTML.contains("<style"), "no inline style");
        assert!(!INDEX_HTML.contains(" style="), "no inline style");
        assert!(
            !APP_JS.contains("innerHTML"),
            "text is never parsed as HTML"
        );
        assert!(!APP_JS.contains("eval("), "no eval");
    }
}
