//! The registry behind the login servers: an external OCI registry reached over HTTP with the
//! backend's own credentials, or the built-in registry, called in-process (the same router its
//! internal listener serves, without the loopback hop). Bodies stream through either way.

use std::sync::Arc;

use acr_oci::client::Scopes;
use acr_oci::{OciError, RegistryClient};
use axum::body::Body;
use axum::response::Response;
use futures::TryStreamExt;
use http::{HeaderMap, HeaderValue, Method, Request};
use tower::ServiceExt as _;

/// Where content lives.
#[derive(Clone)]
pub struct Backend {
    /// Listings, deletes and small reads, over HTTP (the built-in registry's internal
    /// listener, or the external registry).
    pub client: Arc<RegistryClient>,
    in_process: Option<InProcess>,
    /// The backend serves `DELETE /acr/v1/<repo>` (the built-in registry).
    pub repository_delete: bool,
    /// Disk usage per repository, when the backend can tell (the built-in registry).
    usage: Option<Arc<dyn RepositoryUsage>>,
}

/// A backend's disk usage per repository.
pub trait RepositoryUsage: Send + Sync {
    /// Bytes of the distinct content `repository` (its full name in the backend) references;
    /// `None` when unknown.
    fn repository_bytes<'a>(
        &'a self,
        repository: &'a str,
    ) -> futures::future::BoxFuture<'a, Option<u64>>;
}

#[derive(Clone)]
struct InProcess {
    router: axum::Router,
    authorization: HeaderValue,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("registry", &self.client.name())
            .field("in_process", &self.in_process.is_some())
            .finish()
    }
}

/// Headers that belong to one hop, never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `headers` without the hop-by-hop ones, `Host` and `Authorization`.
pub fn forwardable(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in headers {
        let name = k.as_str();
        if HOP_BY_HOP.contains(&name) || name == "host" || name == "authorization" {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    out
}

impl Backend {
    /// An external registry (or the built-in one reached over HTTP only).
    pub fn http(client: Arc<RegistryClient>, repository_delete: bool) -> Self {
        Self {
            client,
            in_process: None,
            repository_delete,
            usage: None,
        }
    }

    /// Reports disk usage per repository through `usage`.
    pub fn with_usage(mut self, usage: Arc<dyn RepositoryUsage>) -> Self {
        self.usage = Some(usage);
        self
    }

    /// The disk usage of repository `full` (its name in the backend), when known.
    pub(crate) async fn repository_bytes(&self, full: &str) -> Option<u64> {
        match &self.usage {
            Some(u) => u.repository_bytes(full).await,
            None => None,
        }
    }

    /// The built-in registry: `router` called in-process with `authorization` (its internal
    /// user), `client` for listings over its internal listener.
    pub fn in_process(
        client: Arc<RegistryClient>,
        router: axum::Router,
        authorization: HeaderValue,
    ) -> Self {
        Self {
            client,
            in_process: Some(InProcess {
                router,
                authorization,
            }),
            repository_delete: true,
            usage: None,
        }
    }

    /// Passes one request to the backend; `path_and_query` is the backend's (registry
    /// prefix included).
    pub async fn forward(
        &self,
        scopes: &Scopes,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: Option<Body>,
    ) -> Result<Response, OciError> {
        let headers = forwardable(&headers);
        if let Some(ip) = &self.in_process {
            let mut req = Request::builder()
                .method(method)
                .uri(path_and_query)
                .body(body.unwrap_or_else(Body::empty))
                .map_err(|e| OciError::Invalid {
                    registry: self.client.name().to_owned(),
                    detail: format!("bad request for the backend: {e}"),
                })?;
            *req.headers_mut() = headers;
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, ip.authorization.clone());
            req.headers_mut()
                .insert(http::header::HOST, HeaderValue::from_static("localhost"));
            return match ip.router.clone().oneshot(req).await {
                Ok(r) => Ok(r),
                Err(never) => match never {},
            };
        }
        let body = body.map(|b| reqwest::Body::wrap_stream(b.into_data_stream()));
        let resp = self
            .client
            .forward(scopes, method, path_and_query, headers, body)
            .await?;
        let mut out = Response::builder().status(resp.status());
        if let Some(h) = out.headers_mut() {
            for (k, v) in resp.headers() {
                if !HOP_BY_HOP.contains(&k.as_str()) {
                    h.append(k.clone(), v.clone());
                }
            }
        }
        let stream = resp.bytes_stream().map_err(std::io::Error::other);
        out.body(Body::from_stream(stream))
            .map_err(|e| OciError::Invalid {
                registry: self.client.name().to_owned(),
                detail: format!("bad answer from the backend: {e}"),
            })
    }
}
