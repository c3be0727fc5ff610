//! The login servers of acr-import: one ACR front door over any OCI backend.
//!
//! Every registry listener (plain HTTP and HTTPS) is this router. It owns:
//! - **login-server routing**: `Host: <name>.<suffix>` selects emulated registry `<name>`, whose
//!   repositories are stored in the backend as `<name>/<repo>`; any other host is the *root
//!   view*, where paths carry the registry as first component (`127.0.0.1:5000/myreg/app`);
//! - **the challenge and token service** ([`oauth`]): `POST /oauth2/exchange`, `POST` and
//!   `GET /oauth2/token`, tokens signed with a key every replica shares ([`tokens`]); who may do
//!   what is [`authority`]'s: admin users, refresh tokens, Entra tokens and RBAC data actions,
//!   anonymous pull;
//! - **the `/acr/v1` data plane** ([`dataplane`]) answered from the store's metadata, with
//!   `changeableAttributes` enforced on `/v2` too;
//! - **the `/v2` distribution API** ([`v2`]) passed through to the [`backend`]: streamed (blobs
//!   are never buffered), Range and chunked uploads intact, `Location` and `Link` rewritten to
//!   the login server's names; manifest pushes and deletes are recorded in the metadata.
//!
//! The TLS listener always challenges (`401` + `WWW-Authenticate: Bearer realm=…,service=…`,
//! as ACR); the plain one only with `--registry-auth` (otherwise anyone may read and write, the
//! zero-setup default for loopback tools). A [`connect`] proxy makes the login servers
//! reachable without DNS.
//!
//! Metadata is in the store, so every replica answers alike; content is in the backend, so
//! any OCI registry can hold it. What the front door cannot see — a client writing to the
//! backend directly — is adopted into the metadata the first time `/acr/v1` lists it.

pub mod authority;
pub mod backend;
pub mod connect;
pub mod dataplane;
pub mod error;
pub mod host;
pub mod oauth;
pub mod openapi;
mod record;
mod request;
pub mod retention;
pub mod tokens;
pub mod v2;

use std::sync::Arc;

use acr_store::Store;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;

pub use authority::{Action, Authority, EntraPolicy, TOKEN_USER};
pub use backend::{Backend, RepositoryUsage};
pub use error::RegistryError;
pub use retention::SweepReport;

/// Settings of the login servers.
#[derive(Debug, Clone)]
pub struct FrontDoorConfig {
    /// `azurecr.io` in `<name>.azurecr.io` (lowercase, no leading dot).
    pub login_server_suffix: String,
    /// The plain listener challenges too (`--registry-auth`).
    pub plain_auth: bool,
}

/// Which listener a router serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Plain,
    Tls,
}

/// Counts a request of a login server (`acr_import_http_requests_total` and
/// `acr_import_http_request_duration_seconds`, listener `registry`) by route template: the
/// route that matched, with `/v2` paths told apart by what they address (never a name).
async fn track_http(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use acr_core::metrics as m;
    let started = std::time::Instant::now();
    let route: &'static str = match req.extensions().get::<axum::extract::MatchedPath>() {
        None => m::UNMATCHED_ROUTE,
        Some(p) if p.as_str().starts_with("/v2") => v2::route_template(req.uri().path()),
        Some(p) if p.as_str() == "/oauth2/exchange" => "/oauth2/exchange",
        Some(p) if p.as_str() == "/oauth2/token" => "/oauth2/token",
        Some(_) => "/acr/v1/{*rest}",
    };
    let method = req.method().clone();
    let resp = next.run(req).await;
    m::http_request(
        m::Listener::Registry,
        route,
        method.as_str(),
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

/// A query parameter given twice is refused (400): every parameter of these routes is one
/// value, except `scope`, which a token request may repeat.
async fn refuse_repeated_parameters(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(q) = req.uri().query() {
        let mut seen: Vec<std::borrow::Cow<'_, str>> = Vec::new();
        for (k, _) in url::form_urlencoded::parse(q.as_bytes()) {
            if k != "scope" && seen.contains(&k) {
                return RegistryError::invalid(format!(
                    "the query parameter '{}' is given more than once",
                    acr_core::reference::truncate(&k)
                ))
                .into_response();
            }
            seen.push(k);
        }
    }
    next.run(req).await
}

/// Every 405 says which methods its path takes (`Allow`, RFC 9110), whichever handler refused.
async fn allow_on_405(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path().to_owned();
    let mut resp = next.run(req).await;
    if resp.status() == http::StatusCode::METHOD_NOT_ALLOWED
        && !resp.headers().contains_key(http::header::ALLOW)
    {
        let allowed = match path.as_str() {
            "/oauth2/exchange" => Some("POST"),
            "/oauth2/token" => Some("GET, POST"),
            p if p.starts_with("/acr/v1/") => dataplane::allowed_methods(p),
            p => v2::allowed_methods(p),
        };
        if let Some(v) = allowed {
            resp.headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static(v));
        }
    }
    resp
}

/// The login servers (cheap to clone).
#[derive(Clone, Debug)]
pub struct FrontDoor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: FrontDoorConfig,
    pub(crate) store: Store,
    pub(crate) authority: Authority,
    pub(crate) backend: Backend,
}

/// State of one listener's router.
#[derive(Clone, Debug)]
pub(crate) struct ListenerState {
    pub(crate) inner: Arc<Inner>,
    pub(crate) listener: Listener,
}

impl FrontDoor {
    pub fn new(
        config: FrontDoorConfig,
        store: Store,
        authority: Authority,
        backend: Backend,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                store,
                authority,
                backend,
            }),
        }
    }

    /// The router of one listener.
    pub fn router(&self, listener: Listener) -> Router {
        let state = ListenerState {
            inner: self.inner.clone(),
            listener,
        };
        Router::new()
            .route("/oauth2/exchange", any(oauth::exchange))
            .route("/oauth2/token", any(oauth::token))
            .route("/v2", any(v2::handle))
            .route("/v2/", any(v2::handle))
            .route("/v2/{*rest}", any(v2::handle))
            .route("/acr/v1/{*rest}", any(dataplane::handle))
            .fallback(request::not_found)
            .layer(axum::middleware::from_fn(refuse_repeated_parameters))
            .layer(axum::middleware::from_fn(allow_on_405))
            .layer(axum::middleware::from_fn(track_http))
            .with_state(state)
    }

    /// Whether `principal`… may pull `repository` of emulated registry `registry` with the
    /// credentials a client would present at its login server (imports from an emulated
    /// source by login server with explicit credentials). `Ok(false)`: refused.
    pub async fn credentials_may_pull(
        &self,
        registry: &acr_store::RegistryRecord,
        username: Option<&str>,
        password: &str,
    ) -> bool {
        let service = format!(
            "{}.{}",
            registry.name_lower, self.inner.config.login_server_suffix
        );
        let Some(principal) = self
            .inner
            .authority
            .password_principal(username, password, Some(&service))
            .await
        else {
            return false;
        };
        self.inner.authority.may(&principal, registry, Action::Pull)
    }

    /// The authority (token keys, credential checks).
    pub fn authority(&self) -> &Authority {
        &self.inner.authority
    }
}
