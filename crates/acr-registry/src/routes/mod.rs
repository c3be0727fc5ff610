//! Request handling: the `/v2` dispatcher (repository names hold `/`, so paths are split by hand
//! from the right), the request context (Host, login server, caller) and the auth checks. The
//! handlers live in the submodules.

mod blobs;
mod listing;
mod manifests;
mod repository;
mod token;

pub(crate) use repository::acr_v1;
pub(crate) use token::token;

use blobs::{
    blob_delete, blob_get, upload_cancel, upload_finish, upload_patch, upload_start, upload_status,
};
use listing::{catalog, referrers, tags_list};
use manifests::{manifest_delete, manifest_get, manifest_put};

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher as _};
use std::io::SeekFrom;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody as _};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::request::Parts;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use crate::access::{self, Action, Authenticator, Caller, Grant, Tokens};
use crate::digest::{Algorithm, Digest};
use crate::error::{ApiError, Code};
use crate::names;
use crate::storage::Disk;
use crate::upload::{self, AppendError, FinishError, Session, Uploads};

/// Manifests larger than this are refused (413); the spec asks registries to take at least 4 MiB.
pub(crate) const MANIFEST_MAX: usize = 4 << 20;
/// Read buffer of blob downloads.
const READ_BUF: usize = 256 << 10;
/// A body we answer without reading is read on (and dropped) up to this much, for this long, so
/// an HTTP/1 client gets its answer rather than a broken pipe.
const DRAIN_LIMIT: usize = 64 << 20;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_DOCKER_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";

static API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
static CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
static UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
static OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
static OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
static OCI_FILTERS: HeaderName = HeaderName::from_static("oci-filters-applied");

pub(crate) struct Inner {
    pub(crate) store: Disk,
    pub(crate) uploads: Uploads,
    /// Lowercase login-server suffix without a leading dot (`azurecr.io`).
    pub(crate) suffix: Option<String>,
    pub(crate) auth: Option<Arc<dyn Authenticator>>,
    pub(crate) tokens: Tokens,
    /// Serialises manifest and tag changes per repository (hashed into a few stripes).
    pub(crate) repo_locks: Vec<tokio::sync::Mutex<()>>,
    /// One garbage collection at a time.
    pub(crate) gc_lock: tokio::sync::Mutex<()>,
    /// This process's claim on the data directory, held while the registry is open.
    pub(crate) _dir_lock: acr_pidlock::PidLock,
}

/// A repository as the client names it (`visible`, relative to the login server of the Host)
/// and as it is stored (`full`).
pub(crate) struct Repo {
    pub(crate) full: String,
    pub(crate) visible: String,
}

/// What we know of a request before routing it.
pub(crate) struct RequestCtx {
    host: String,
    scheme: &'static str,
    namespace: Option<String>,
    caller: Caller,
    now: i64,
}

impl RequestCtx {
    fn new(inner: &Inner, parts: &Parts) -> RequestCtx {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .filter(|h| {
                !h.is_empty()
                    && h.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                    })
            })
            .unwrap_or("localhost")
            .to_ascii_lowercase();
        let forwarded = parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok());
        let scheme = match parts.uri.scheme_str().or(forwarded) {
            Some(s) if s.eq_ignore_ascii_case("https") => "https",
            _ => "http",
        };
        let namespace = inner
            .suffix
            .as_deref()
            .and_then(|suffix| login_server_name(&host, suffix));
        let now = access::now_unix();
        let caller = if inner.auth.is_some() {
            inner.tokens.caller(&parts.headers, now)
        } else {
            Caller::Anonymous
        };
        RequestCtx {
            host,
            scheme,
            namespace,
            caller,
            now,
        }
    }

    /// Resolves a name from the path (or a scope, or `from=`) to the stored repository.
    fn repo(&self, visible: &str) -> Result<Repo, ApiError> {
        if !names::valid_repository(visible) {
            return Err(ApiError::name_invalid(visible));
        }
        let full = match &self.namespace {
            Some(ns) => format!("{ns}/{visible}"),
            None => visible.to_owned(),
        };
        if full.len() > names::MAX_NAME_LEN {
            return Err(ApiError::name_invalid(visible));
        }
        Ok(Repo {
            full,
            visible: visible.to_owned(),
        })
    }

    /// The name a client of this Host sees for a stored repository (None: not under its login server).
    fn visible<'a>(&self, full: &'a str) -> Option<&'a str> {
        match &self.namespace {
            None => Some(full),
            Some(ns) => full
                .strip_prefix(ns.as_str())
                .and_then(|r| r.strip_prefix('/')),
        }
    }

    fn realm(&self) -> String {
        format!("{}://{}/oauth2/token", self.scheme, self.host)
    }
}

/// `<name>` when `host` (port dropped) is `<name>.<suffix>` and `<name>` is one valid component.
fn login_server_name(host: &str, suffix: &str) -> Option<String> {
    if host.starts_with('[') {
        return None;
    }
    let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let label = bare.strip_suffix(suffix)?.strip_suffix('.')?;
    (!label.contains('.') && names::valid_component(label)).then(|| label.to_owned())
}

/// What a request must be allowed to do.
enum Target<'a> {
    /// Just be someone (the `/v2/` ping).
    Login,
    Catalog,
    Repo(&'a Repo, &'a [Action]),
}

fn scope_of(repo: &Repo, actions: &[Action]) -> String {
    let a: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
    format!("repository:{}:{}", repo.visible, a.join(","))
}

impl Inner {
    fn challenge(
        &self,
        ctx: &RequestCtx,
        scopes: &[String],
        error: Option<&str>,
        msg: &str,
    ) -> ApiError {
        let mut v = format!("Bearer realm=\"{}\",service=\"{}\"", ctx.realm(), ctx.host);
        if !scopes.is_empty() {
            v.push_str(&format!(",scope=\"{}\"", scopes.join(" ")));
        }
        if let Some(e) = error {
            v.push_str(&format!(",error=\"{e}\""));
        }
        ApiError::unauthorized(msg).header(header::WWW_AUTHENTICATE, &v)
    }

    /// Checks the caller may do `target`; `extra` scopes are only added to a challenge (the
    /// `from` repository of a mount).
    async fn require(
        &self,
        ctx: &RequestCtx,
        target: Target<'_>,
        extra: &[String],
    ) -> Result<(), ApiError> {
        let Some(authn) = &self.auth else {
            return Ok(());
        };
        let mut scopes = Vec::new();
        match &target {
            Target::Login => {}
            Target::Catalog => scopes.push("registry:catalog:*".to_owned()),
            Target::Repo(r, actions) => scopes.push(scope_of(r, actions)),
        }
        scopes.extend_from_slice(extra);
        match &ctx.caller {
            Caller::Anonymous => Err(self.challenge(ctx, &scopes, None, "authentication required")),
            Caller::Malformed => {
                Err(self.challenge(ctx, &scopes, None, "unreadable Authorization header"))
            }
            Caller::Bearer(None) => Err(self.challenge(
                ctx,
                &scopes,
                Some("invalid_token"),
                "invalid or expired token",
            )),
            Caller::Bearer(Some(claims)) if !authn.still_valid(&claims.sub).await => Err(self
                .challenge(
                    ctx,
                    &scopes,
                    Some("invalid_token"),
                    "the token's access was withdrawn",
                )),
            Caller::Bearer(Some(claims)) => {
                let ok = match target {
                    Target::Login => true,
                    Target::Catalog => claims.allows("registry", "catalog", "*"),
                    Target::Repo(r, actions) => actions
                        .iter()
                        .all(|a| claims.allows("repository", &r.full, a.as_str())),
                };
                if ok {
                    Ok(())
                } else {
                    Err(self.challenge(
                        ctx,
                        &scopes,
                        Some("insufficient_scope"),
                        "authentication required: the token does not grant this access",
                    ))
                }
            }
            Caller::Basic { user, pass } => {
                if !authn.authorize(user, pass, None, &[]).await {
                    return Err(self.challenge(ctx, &scopes, None, "invalid username or password"));
                }
                let ok = match target {
                    Target::Login => true,
                    Target::Catalog => authn.authorize(user, pass, None, &[Action::Pull]).await,
                    Target::Repo(r, actions) => {
                        authn.authorize(user, pass, Some(&r.full), actions).await
                    }
                };
                if ok {
                    Ok(())
                } else {
                    Err(
                        ApiError::denied("requested access to the resource is denied")
                            .detail(json!({ "scopes": scopes })),
                    )
                }
            }
        }
    }

    /// Whether the caller may do `action` on `repo`, without answering a challenge.
    async fn may(&self, ctx: &RequestCtx, repo: &Repo, action: Action) -> bool {
        let Some(authn) = &self.auth else {
            return true;
        };
        match &ctx.caller {
            Caller::Bearer(Some(c)) => {
                c.allows("repository", &repo.full, action.as_str())
                    && authn.still_valid(&c.sub).await
            }
            Caller::Basic { user, pass } => {
                authn
                    .authorize(user, pass, Some(&repo.full), &[action])
                    .await
            }
            _ => false,
        }
    }

    fn repo_lock(&self, full: &str) -> &tokio::sync::Mutex<()> {
        let mut h = DefaultHasher::new();
        full.hash(&mut h);
        let i = usize::try_from(h.finish() % self.repo_locks.len() as u64).unwrap_or(0);
        &self.repo_locks[i]
    }
}

// ---------------------------------------------------------------------------------------------
// dispatch

enum Route<'a> {
    Ping,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    UploadStart(&'a str),
    Upload(&'a str, &'a str),
    Referrers(&'a str, &'a str),
    Unknown,
}

/// Splits `/v2/<name>/<kind>/…` from the right: `<name>` may itself contain slashes.
fn parse_route(path: &str) -> Route<'_> {
    let Some(rest) = path.strip_prefix("/v2") else {
        return Route::Unknown;
    };
    if rest.is_empty() || rest == "/" {
        return Route::Ping;
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Route::Unknown;
    };
    if rest == "_catalog" {
        return Route::Catalog;
    }
    // name/kind/last   or   name/blobs/uploads/id
    let Some((head, last)) = rest.rsplit_once('/') else {
        return Route::Unknown;
    };
    if let Some((name, kind)) = head.rsplit_once('/') {
        match kind {
            "tags" if last == "list" => return Route::Tags(name),
            "manifests" => return Route::Manifest(name, last),
            "blobs" if last == "uploads" => return Route::UploadStart(name),
            "blobs" => return Route::Blob(name, last),
            "referrers" => return Route::Referrers(name, last),
            "uploads" => {
                if let Some(name) = name.strip_suffix("/blobs") {
                    return if last.is_empty() {
                        Route::UploadStart(name)
                    } else {
                        Route::Upload(name, last)
                    };
                }
            }
            _ => {}
        }
    }
    Route::Unknown
}

/// `/v2/…` entry point.
pub(crate) async fn v2(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ctx = RequestCtx::new(&inner, &parts);
    let mut body = Some(body);
    let result = handle(&inner, &ctx, &parts, &mut body).await;
    // Answer only once the client has sent its body (bounded), so it reads our answer.
    if let Some(b) = body.take() {
        drain(b).await;
    }
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    resp.headers_mut().insert(
        API_VERSION.clone(),
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

/// Unknown paths outside `/v2`.
pub(crate) async fn not_found() -> Response {
    ApiError::unsupported(StatusCode::NOT_FOUND, "unknown endpoint").into_response()
}

async fn drain(body: Body) {
    if body.is_end_stream() {
        return;
    }
    let mut stream = body.into_data_stream();
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let mut n = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            n += chunk.len();
            if n > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

fn method_not_allowed() -> ApiError {
    ApiError::unsupported(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
}

fn is_read(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
}

const PULL: &[Action] = &[Action::Pull];
const PUSH: &[Action] = &[Action::Pull, Action::Push];
const DELETE: &[Action] = &[Action::Delete];

async fn handle(
    inner: &Inner,
    ctx: &RequestCtx,
    parts: &Parts,
    body: &mut Option<Body>,
) -> Result<Response, ApiError> {
    let m = &parts.method;
    let query = Query::parse(parts.uri.query());
    match parse_route(parts.uri.path()) {
        Route::Unknown => Err(ApiError::unsupported(
            StatusCode::NOT_FOUND,
            "unknown endpoint",
        )),
        Route::Ping => {
            if !is_read(m) {
                return Err(method_not_allowed());
            }
            inner.require(ctx, Target::Login, &[]).await?;
            Ok(json_response(StatusCode::OK, "{}".into()))
        }
        Route::Catalog => {
            if !is_read(m) {
                return Err(method_not_allowed());
            }
            inner.require(ctx, Target::Catalog, &[]).await?;
            catalog(inner, ctx, &query).await
        }
        Route::Tags(name) => {
            let repo = ctx.repo(name)?;
            if !is_read(m) {
                return Err(method_not_allowed());
            }
            inner.require(ctx, Target::Repo(&repo, PULL), &[]).await?;
            tags_list(inner, &repo, &query).await
        }
        Route::Manifest(name, reference) => {
            let repo = ctx.repo(name)?;
            let reference = percent_decode(reference);
            if is_read(m) {
                inner.require(ctx, Target::Repo(&repo, PULL), &[]).await?;
                manifest_get(inner, &repo, &reference, m == Method::HEAD).await
            } else if m == Method::PUT {
                inner.require(ctx, Target::Repo(&repo, PUSH), &[]).await?;
                let b = body.take().unwrap_or_default();
                manifest_put(inner, &repo, &reference, &parts.headers, &query, b).await
            } else if m == Method::DELETE {
                inner.require(ctx, Target::Repo(&repo, DELETE), &[]).await?;
                manifest_delete(inner, &repo, &reference).await
            } else {
                Err(method_not_allowed())
            }
        }
        Route::Blob(name, digest) => {
            let repo = ctx.repo(name)?;
            let digest = percent_decode(digest);
            if is_read(m) {
                inner.require(ctx, Target::Repo(&repo, PULL), &[]).await?;
                blob_get(inner, &repo, &digest, &parts.headers, m == Method::HEAD).await
            } else if m == Method::DELETE {
                inner.require(ctx, Target::Repo(&repo, DELETE), &[]).await?;
                blob_delete(inner, &repo, &digest).await
            } else {
                Err(method_not_allowed())
            }
        }
        Route::UploadStart(name) => {
            let repo = ctx.repo(name)?;
            if m != Method::POST {
                return Err(method_not_allowed());
            }
            let mut extra = Vec::new();
            if query.get("mount").is_some() {
                if let Some(from) = query.get("from").and_then(|f| ctx.repo(f).ok()) {
                    extra.push(scope_of(&from, PULL));
                }
            }
            inner
                .require(ctx, Target::Repo(&repo, PUSH), &extra)
                .await?;
            upload_start(inner, ctx, &repo, &query, &parts.headers, body).await
        }
        Route::Upload(name, id) => {
            let repo = ctx.repo(name)?;
            inner.require(ctx, Target::Repo(&repo, PUSH), &[]).await?;
            let session = Uuid::parse_str(id)
                .ok()
                .and_then(|id| inner.uploads.get(&id))
                .filter(|s| s.repo == repo.full)
                .ok_or_else(ApiError::upload_unknown)?;
            match *m {
                Method::GET | Method::HEAD => upload_status(&repo, &session).await,
                Method::PATCH => {
                    let b = body.take().unwrap_or_default();
                    upload_patch(inner, &repo, &session, &parts.headers, b).await
                }
                Method::PUT => {
                    upload_finish(inner, &repo, &session, &query, &parts.headers, body).await
                }
                Method::DELETE => upload_cancel(inner, &session).await,
                _ => Err(method_not_allowed()),
            }
        }
        Route::Referrers(name, digest) => {
            let repo = ctx.repo(name)?;
            if !is_read(m) {
                return Err(method_not_allowed());
            }
            let digest = percent_decode(digest);
            inner.require(ctx, Target::Repo(&repo, PULL), &[]).await?;
            referrers(inner, &repo, &digest, &query).await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// small helpers

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        Query(
            url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Decodes `%XX` in a path segment (some clients send `sha256%3A…`).
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

fn empty_response(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    if status != StatusCode::NO_CONTENT {
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    r
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn internal(what: &str) -> impl FnOnce(std::io::Error) -> ApiError + '_ {
    move |e| ApiError::internal(what, &e)
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).map_err(|e| ApiError::digest_invalid(&e, s))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

enum CollectError {
    TooLarge,
    Body,
}

/// Reads a body of at most `limit` bytes; a longer one is drained and refused.
async fn collect_limited(body: Body, limit: usize) -> Result<Bytes, CollectError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| CollectError::Body)?;
        if buf.len() + chunk.len() > limit {
            let rest = Body::from_stream(stream);
            drain(rest).await;
            return Err(CollectError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_from_the_right() {
        assert!(matches!(parse_route("/v2/"), Route::Ping));
        assert!(matches!(parse_route("/v2"), Route::Ping));
        assert!(matches!(parse_route("/v2/_catalog"), Route::Catalog));
        assert!(matches!(
            parse_route("/v2/a/b/tags/list"),
            Route::Tags("a/b")
        ));
        assert!(matches!(
            parse_route("/v2/a/b/manifests/latest"),
            Route::Manifest("a/b", "latest")
        ));
        assert!(matches!(
            parse_route("/v2/a/blobs/sha256:x"),
            Route::Blob("a", "sha256:x")
        ));
        assert!(matches!(
            parse_route("/v2/a/b/blobs/uploads/"),
            Route::UploadStart("a/b")
        ));
        assert!(matches!(
            parse_route("/v2/a/b/blobs/uploads"),
            Route::UploadStart("a/b")
        ));
        assert!(matches!(
            parse_route("/v2/a/b/blobs/uploads/123"),
            Route::Upload("a/b", "123")
        ));
        assert!(matches!(
            parse_route("/v2/a/referrers/sha256:x"),
            Route::Referrers("a", "sha256:x")
        ));
        assert!(matches!(parse_route("/v2/a"), Route::Unknown));
        assert!(matches!(parse_route("/v2/a/other/x"), Route::Unknown));
        assert!(matches!(parse_route("/v3/a/tags/list"), Route::Unknown));
    }

    #[test]
    fn login_server_names() {
        assert_eq!(
            login_server_name("myreg.azurecr.io", "azurecr.io").as_deref(),
            Some("myreg")
        );
        assert_eq!(
            login_server_name("myreg.azurecr.io:5000", "azurecr.io").as_deref(),
            Some("myreg")
        );
        assert_eq!(login_server_name("a.b.azurecr.io", "azurecr.io"), None);
        assert_eq!(login_server_name("azurecr.io", "azurecr.io"), None);
        assert_eq!(login_server_name("127.0.0.1:5000", "azurecr.io"), None);
        assert_eq!(login_server_name("[::1]:5000", "azurecr.io"), None);
        assert_eq!(login_server_name("evilazurecr.io", "azurecr.io"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("sha256%3Aab"), "sha256:ab");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("end%3"), "end%3");
    }
}
