//! Request handling: the `/v2` dispatcher (repository names hold `/`, so paths are split by hand
//! from the right), the handlers, auth checks and the token endpoint.

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

use crate::auth::{self, Action, Authenticator, Caller, Grant, Tokens};
use crate::digest::{Algorithm, Digest};
use crate::error::{ApiError, Code};
use crate::names;
use crate::storage::Store;
use crate::upload::{self, AppendError, Session, Uploads};

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
    pub(crate) store: Store,
    pub(crate) uploads: Uploads,
    /// Lowercase login-server suffix without a leading dot (`azurecr.io`).
    pub(crate) suffix: Option<String>,
    pub(crate) auth: Option<Arc<dyn Authenticator>>,
    pub(crate) tokens: Tokens,
    /// Serialises manifest and tag changes per repository (hashed into a few stripes).
    pub(crate) repo_locks: Vec<tokio::sync::Mutex<()>>,
}

/// A repository as the client names it (`visible`, relative to the login server of the Host)
/// and as it is stored (`full`).
pub(crate) struct Repo {
    pub(crate) full: String,
    pub(crate) visible: String,
}

/// What we know of a request before routing it.
pub(crate) struct Ctx {
    host: String,
    scheme: &'static str,
    namespace: Option<String>,
    caller: Caller,
    now: i64,
}

impl Ctx {
    fn new(inner: &Inner, parts: &Parts) -> Ctx {
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
        let now = auth::now_unix();
        let caller = if inner.auth.is_some() {
            inner.tokens.caller(&parts.headers, now)
        } else {
            Caller::Anonymous
        };
        Ctx {
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
    fn challenge(&self, ctx: &Ctx, scopes: &[String], error: Option<&str>, msg: &str) -> ApiError {
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
        ctx: &Ctx,
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
    async fn may(&self, ctx: &Ctx, repo: &Repo, action: Action) -> bool {
        let Some(authn) = &self.auth else {
            return true;
        };
        match &ctx.caller {
            Caller::Bearer(Some(c)) => c.allows("repository", &repo.full, action.as_str()),
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
    let ctx = Ctx::new(&inner, &parts);
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
    ctx: &Ctx,
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
                    upload_patch(&repo, &session, &parts.headers, b).await
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

// ---------------------------------------------------------------------------------------------
// listing

/// `n` / `last` pagination over a sorted list; `link` builds the next-page URL from the last entry.
fn paginate(
    all: Vec<String>,
    query: &Query,
    link: impl Fn(usize, &str) -> String,
) -> Result<(Vec<String>, Option<String>), ApiError> {
    let n = match query.get("n") {
        None | Some("") => None,
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                Code::Unsupported,
                "invalid pagination parameter n",
            )
            .detail(json!({ "n": v }))
        })?),
    };
    let mut items: Vec<String> = match query.get("last") {
        Some(last) if !last.is_empty() => all.into_iter().filter(|t| t.as_str() > last).collect(),
        _ => all,
    };
    let mut next = None;
    if let Some(n) = n {
        if items.len() > n {
            items.truncate(n);
            if let Some(last) = items.last() {
                next = Some(format!("<{}>; rel=\"next\"", link(n, last)));
            }
        }
    }
    Ok((items, next))
}

async fn tags_list(inner: &Inner, repo: &Repo, query: &Query) -> Result<Response, ApiError> {
    if !inner
        .store
        .repo_exists(&repo.full)
        .await
        .map_err(internal("read repository"))?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Code::NameUnknown,
            "repository name not known to registry",
        )
        .detail(json!({ "name": repo.visible })));
    }
    let all = inner
        .store
        .tags(&repo.full)
        .await
        .map_err(internal("list tags"))?;
    let (tags, next) = paginate(all, query, |n, last| {
        format!("/v2/{}/tags/list?n={n}&last={last}", repo.visible)
    })?;
    let mut r = json_response(
        StatusCode::OK,
        json!({ "name": repo.visible, "tags": tags }).to_string(),
    );
    if let Some(link) = next {
        set(r.headers_mut(), header::LINK, &link);
    }
    Ok(r)
}

async fn catalog(inner: &Inner, ctx: &Ctx, query: &Query) -> Result<Response, ApiError> {
    let all: Vec<String> = inner
        .store
        .catalog()
        .await
        .map_err(internal("list repositories"))?
        .iter()
        .filter_map(|full| ctx.visible(full).map(str::to_owned))
        .collect();
    let (repos, next) = paginate(all, query, |n, last| {
        format!("/v2/_catalog?n={n}&last={last}")
    })?;
    let mut r = json_response(StatusCode::OK, json!({ "repositories": repos }).to_string());
    if let Some(link) = next {
        set(r.headers_mut(), header::LINK, &link);
    }
    Ok(r)
}

async fn referrers(
    inner: &Inner,
    repo: &Repo,
    digest: &str,
    query: &Query,
) -> Result<Response, ApiError> {
    let subject = parse_digest(digest)?;
    let mut list = inner
        .store
        .referrers(&repo.full, &subject)
        .await
        .map_err(internal("list referrers"))?;
    let filter = query.get("artifactType").filter(|s| !s.is_empty());
    if let Some(at) = filter {
        list.retain(|d| d.get("artifactType").and_then(Value::as_str) == Some(at));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": list,
    });
    let mut r = Response::new(Body::from(index.to_string()));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(MT_OCI_INDEX));
    if filter.is_some() {
        r.headers_mut().insert(
            OCI_FILTERS.clone(),
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// manifests

enum Reference {
    Tag(String),
    Digest(Digest),
}

/// A reference with `:` is a digest (malformed: 400); otherwise a tag (`None` when invalid).
fn parse_reference(s: &str) -> Result<Option<Reference>, ApiError> {
    if s.contains(':') {
        return parse_digest(s).map(|d| Some(Reference::Digest(d)));
    }
    Ok(names::valid_tag(s).then(|| Reference::Tag(s.to_owned())))
}

async fn resolve(inner: &Inner, repo: &Repo, reference: &str) -> Result<Digest, ApiError> {
    match parse_reference(reference)? {
        None => Err(ApiError::manifest_unknown(reference)),
        Some(Reference::Digest(d)) => Ok(d),
        Some(Reference::Tag(t)) => inner
            .store
            .tag(&repo.full, &t)
            .await
            .map_err(internal("read tag"))?
            .ok_or_else(|| ApiError::manifest_unknown(reference)),
    }
}

async fn manifest_get(
    inner: &Inner,
    repo: &Repo,
    reference: &str,
    head: bool,
) -> Result<Response, ApiError> {
    let d = resolve(inner, repo, reference).await?;
    let media_type = inner
        .store
        .revision(&repo.full, &d)
        .await
        .map_err(internal("read manifest"))?
        .ok_or_else(|| ApiError::manifest_unknown(reference))?;
    let bytes = inner
        .store
        .read_blob(&d)
        .await
        .map_err(internal("read manifest"))?
        .ok_or_else(|| ApiError::manifest_unknown(reference))?;
    let len = bytes.len();
    let mut r = if head {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(bytes))
    };
    let h = r.headers_mut();
    set(h, header::CONTENT_TYPE, &media_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    set(h, CONTENT_DIGEST.clone(), &d.to_string());
    set(h, header::ETAG, &format!("\"{d}\""));
    Ok(r)
}

/// What a manifest says that the registry acts on.
struct ManifestFacts {
    /// Blobs that must already be in the repository.
    required: Vec<Digest>,
    subject: Option<Digest>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    annotations: Option<Value>,
}

fn descriptor_digest(v: &Value, field: &str) -> Result<Digest, ApiError> {
    let d = v
        .as_object()
        .and_then(|o| o.get("digest"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::manifest_invalid(format!("{field}: descriptor without a digest"))
        })?;
    Digest::parse(d).map_err(|e| {
        ApiError::manifest_invalid(format!("{field}: {}", e.message()))
            .detail(json!({ "digest": d }))
    })
}

/// Layers whose bytes live elsewhere: the registry must accept the manifest without them.
fn foreign_layer(v: &Value) -> bool {
    let mt = v.get("mediaType").and_then(Value::as_str).unwrap_or("");
    let has_urls = v
        .get("urls")
        .and_then(Value::as_array)
        .is_some_and(|u| !u.is_empty());
    has_urls
        || mt.starts_with("application/vnd.oci.image.layer.nondistributable.")
        || mt == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
}

fn inspect_manifest(doc: &Value) -> Result<ManifestFacts, ApiError> {
    let obj = doc
        .as_object()
        .ok_or_else(|| ApiError::manifest_invalid("manifest is not a JSON object"))?;
    let mut required = Vec::new();
    let mut config_media_type = None;
    if let Some(config) = obj.get("config") {
        required.push(descriptor_digest(config, "config")?);
        config_media_type = config.get("mediaType").and_then(Value::as_str);
    }
    for field in ["layers", "blobs"] {
        let Some(list) = obj.get(field) else {
            continue;
        };
        let list = list
            .as_array()
            .ok_or_else(|| ApiError::manifest_invalid(format!("{field} is not an array")))?;
        for layer in list {
            let d = descriptor_digest(layer, field)?;
            if !foreign_layer(layer) {
                required.push(d);
            }
        }
    }
    if let Some(list) = obj.get("manifests") {
        let list = list
            .as_array()
            .ok_or_else(|| ApiError::manifest_invalid("manifests is not an array"))?;
        // Children are not required to be present: sparse indexes (a platform subset) are allowed.
        for child in list {
            descriptor_digest(child, "manifests")?;
        }
    }
    let subject = match obj.get("subject") {
        Some(Value::Null) | None => None,
        Some(s) => Some(descriptor_digest(s, "subject")?),
    };
    let artifact_type = obj
        .get("artifactType")
        .and_then(Value::as_str)
        .or(config_media_type)
        .map(str::to_owned);
    Ok(ManifestFacts {
        required,
        subject,
        media_type: obj
            .get("mediaType")
            .and_then(Value::as_str)
            .map(str::to_owned),
        artifact_type,
        annotations: obj
            .get("annotations")
            .filter(|a| a.as_object().is_some_and(|o| !o.is_empty()))
            .cloned(),
    })
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

async fn manifest_put(
    inner: &Inner,
    repo: &Repo,
    reference: &str,
    headers: &HeaderMap,
    query: &Query,
    body: Body,
) -> Result<Response, ApiError> {
    let reference = match parse_reference(reference) {
        Ok(Some(r)) => r,
        Ok(None) => {
            drain(body).await;
            return Err(
                ApiError::manifest_invalid("invalid tag").detail(json!({ "tag": reference }))
            );
        }
        Err(e) => {
            drain(body).await;
            return Err(e);
        }
    };
    let mut tags: Vec<String> = Vec::new();
    if let Reference::Tag(t) = &reference {
        tags.push(t.clone());
    }
    for t in query.all("tag") {
        if !names::valid_tag(t) {
            drain(body).await;
            return Err(ApiError::manifest_invalid("invalid tag").detail(json!({ "tag": t })));
        }
        if !tags.iter().any(|x| x == t) {
            tags.push(t.to_owned());
        }
    }
    let bytes = match collect_limited(body, MANIFEST_MAX).await {
        Ok(b) => b,
        Err(CollectError::TooLarge) => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::ManifestInvalid,
                format!("manifest larger than {} bytes", MANIFEST_MAX),
            ))
        }
        Err(CollectError::Body) => {
            return Err(ApiError::manifest_invalid(
                "manifest body could not be read",
            ))
        }
    };
    let algorithm = match &reference {
        Reference::Digest(d) => d.algorithm,
        Reference::Tag(_) => Algorithm::Sha256,
    };
    let digest = algorithm.digest_of(&bytes);
    if let Reference::Digest(d) = &reference {
        if *d != digest {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                Code::DigestInvalid,
                "manifest digest does not match the content",
            )
            .detail(json!({ "expected": d.to_string(), "computed": digest.to_string() })));
        }
    }
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::manifest_invalid(format!("manifest is not valid JSON: {e}")))?;
    let facts = inspect_manifest(&doc)?;
    for d in &facts.required {
        let present = inner
            .store
            .linked_blob_size(&repo.full, d)
            .await
            .map_err(internal("check blob"))?
            .is_some();
        if !present {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                Code::ManifestBlobUnknown,
                "manifest references a blob unknown to the repository",
            )
            .detail(json!({ "digest": d.to_string() })));
        }
    }
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| v.contains('/'))
        .map(str::to_owned)
        .or_else(|| facts.media_type.clone())
        .unwrap_or_else(|| infer_media_type(&doc).to_owned());

    let _guard = inner.repo_lock(&repo.full).lock().await;
    let store = &inner.store;
    store
        .put_blob_bytes(&digest, &bytes)
        .await
        .map_err(internal("store manifest"))?;
    store
        .put_revision(&repo.full, &digest, &media_type)
        .await
        .map_err(internal("store manifest"))?;
    if let Some(subject) = &facts.subject {
        let mut desc = json!({
            "mediaType": facts.media_type.as_deref().unwrap_or(&media_type),
            "digest": digest.to_string(),
            "size": bytes.len(),
        });
        if let Some(at) = &facts.artifact_type {
            desc["artifactType"] = json!(at);
        }
        if let Some(a) = &facts.annotations {
            desc["annotations"] = a.clone();
        }
        store
            .put_referrer(&repo.full, subject, &digest, &desc)
            .await
            .map_err(internal("store referrer"))?;
    }
    for t in &tags {
        store
            .put_tag(&repo.full, t, &digest)
            .await
            .map_err(internal("store tag"))?;
    }
    let mut r = empty_response(StatusCode::CREATED);
    let h = r.headers_mut();
    set(
        h,
        header::LOCATION,
        &format!("/v2/{}/manifests/{digest}", repo.visible),
    );
    set(h, CONTENT_DIGEST.clone(), &digest.to_string());
    if let Some(subject) = &facts.subject {
        set(h, OCI_SUBJECT.clone(), &subject.to_string());
    }
    for t in query.all("tag") {
        if let Ok(v) = HeaderValue::from_str(t) {
            h.append(OCI_TAG.clone(), v);
        }
    }
    Ok(r)
}

fn infer_media_type(doc: &Value) -> &'static str {
    if doc.get("manifests").is_some() {
        MT_OCI_INDEX
    } else if doc.get("schemaVersion").and_then(Value::as_i64) == Some(1) {
        MT_DOCKER_V1
    } else {
        MT_OCI_MANIFEST
    }
}

async fn manifest_delete(
    inner: &Inner,
    repo: &Repo,
    reference: &str,
) -> Result<Response, ApiError> {
    let store = &inner.store;
    let _guard = inner.repo_lock(&repo.full).lock().await;
    match parse_reference(reference)? {
        None => Err(ApiError::manifest_unknown(reference)),
        Some(Reference::Tag(t)) => {
            if store
                .delete_tag(&repo.full, &t)
                .await
                .map_err(internal("delete tag"))?
            {
                Ok(empty_response(StatusCode::ACCEPTED))
            } else {
                Err(ApiError::manifest_unknown(reference))
            }
        }
        Some(Reference::Digest(d)) => {
            if store
                .revision(&repo.full, &d)
                .await
                .map_err(internal("read manifest"))?
                .is_none()
            {
                return Err(ApiError::manifest_unknown(reference));
            }
            // Its referrer entry first, then the tags pointing at it, then the manifest itself.
            let bytes = store
                .read_blob(&d)
                .await
                .map_err(internal("read manifest"))?;
            let subject = bytes
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|doc| doc.get("subject").map(|s| descriptor_digest(s, "subject")))
                .and_then(Result::ok);
            if let Some(subject) = subject {
                store
                    .delete_referrer(&repo.full, &subject, &d)
                    .await
                    .map_err(internal("delete referrer"))?;
            }
            for t in store
                .tags(&repo.full)
                .await
                .map_err(internal("list tags"))?
            {
                if store
                    .tag(&repo.full, &t)
                    .await
                    .map_err(internal("read tag"))?
                    .as_ref()
                    == Some(&d)
                {
                    store
                        .delete_tag(&repo.full, &t)
                        .await
                        .map_err(internal("delete tag"))?;
                }
            }
            store
                .delete_revision(&repo.full, &d)
                .await
                .map_err(internal("delete manifest"))?;
            Ok(empty_response(StatusCode::ACCEPTED))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// blobs

enum ByteRange {
    Full,
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range of a blob of `size` bytes. Anything we do not understand (several
/// ranges, other units) gets the whole blob, as HTTP allows.
fn byte_range(h: Option<&HeaderValue>, size: u64) -> ByteRange {
    let Some(spec) = h
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .and_then(|v| v.strip_prefix("bytes="))
    else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return ByteRange::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return ByteRange::Full;
        };
        if n == 0 || size == 0 {
            return ByteRange::Unsatisfiable;
        }
        return ByteRange::Part(size.saturating_sub(n), size - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return ByteRange::Full;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(e) => e,
            Err(_) => return ByteRange::Full,
        }
    };
    if start >= size || end < start {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Part(start, end.min(size - 1))
}

async fn blob_get(
    inner: &Inner,
    repo: &Repo,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let d = parse_digest(digest)?;
    let size = inner
        .store
        .linked_blob_size(&repo.full, &d)
        .await
        .map_err(internal("read blob"))?
        .ok_or_else(|| ApiError::blob_unknown(digest))?;
    let range = if head {
        ByteRange::Full
    } else {
        byte_range(headers.get(header::RANGE), size)
    };
    let (status, start, len) = match range {
        ByteRange::Full => (StatusCode::OK, 0, size),
        ByteRange::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        ByteRange::Unsatisfiable => {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                Code::BlobUnknown,
                "range not satisfiable",
            )
            .header(header::CONTENT_RANGE, &format!("bytes */{size}"))
            .bare());
        }
    };
    let body = if head || len == 0 {
        Body::empty()
    } else {
        let mut f = tokio::fs::File::open(inner.store.blob_path(&d))
            .await
            .map_err(internal("open blob"))?;
        if start > 0 {
            f.seek(SeekFrom::Start(start))
                .await
                .map_err(internal("seek blob"))?;
        }
        Body::from_stream(ReaderStream::with_capacity(f.take(len), READ_BUF))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    set(h, CONTENT_DIGEST.clone(), &d.to_string());
    set(h, header::ETAG, &format!("\"{d}\""));
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            h,
            header::CONTENT_RANGE,
            &format!("bytes {}-{}/{size}", start, start + len - 1),
        );
    }
    Ok(r)
}

async fn blob_delete(inner: &Inner, repo: &Repo, digest: &str) -> Result<Response, ApiError> {
    let d = parse_digest(digest)?;
    if inner
        .store
        .unlink_blob(&repo.full, &d)
        .await
        .map_err(internal("delete blob"))?
    {
        let mut r = empty_response(StatusCode::ACCEPTED);
        set(r.headers_mut(), CONTENT_DIGEST.clone(), &d.to_string());
        Ok(r)
    } else {
        Err(ApiError::blob_unknown(digest))
    }
}

fn blob_created(repo: &Repo, d: &Digest) -> Response {
    let mut r = empty_response(StatusCode::CREATED);
    let h = r.headers_mut();
    set(
        h,
        header::LOCATION,
        &format!("/v2/{}/blobs/{d}", repo.visible),
    );
    set(h, CONTENT_DIGEST.clone(), &d.to_string());
    r
}

/// `Range` of an upload: `0-<last byte>`, and `0-0` before the first byte, as distribution and
/// the other registries answer (the spec leaves the empty case open).
fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn upload_headers(h: &mut HeaderMap, repo: &Repo, session: &Session, size: u64) {
    set(
        h,
        header::LOCATION,
        &format!("/v2/{}/blobs/uploads/{}", repo.visible, session.id),
    );
    set(h, header::RANGE, &upload_range(size));
    set(h, UPLOAD_UUID.clone(), &session.id.to_string());
}

fn out_of_order(repo: &Repo, session: &Session, size: u64) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        Code::BlobUploadInvalid,
        "chunk out of order",
    )
    .bare();
    upload_headers(e.headers_mut(), repo, session, size);
    e
}

fn append_error(e: AppendError) -> ApiError {
    match e {
        AppendError::Body(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::BlobUploadInvalid,
            "the request body could not be read",
        ),
        AppendError::Length { expected, got } => ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::SizeInvalid,
            "body length does not match the declared length",
        )
        .detail(json!({ "expected": expected, "received": got })),
        AppendError::Io(e) => ApiError::internal("write upload", &e),
    }
}

/// `Content-Range: <start>-<end>` of a chunk (also `bytes <start>-<end>/…`): `Ok(None)` when absent.
fn chunk_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::BlobUploadInvalid,
            "invalid Content-Range",
        )
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a = a.trim().parse::<u64>().map_err(|_| bad())?;
    let b = b.trim().parse::<u64>().map_err(|_| bad())?;
    Ok(Some((a, b)))
}

/// Checks a chunk's `Content-Range` against the session's size: the expected body length, or 416.
fn check_chunk(
    headers: &HeaderMap,
    repo: &Repo,
    session: &Session,
    size: u64,
) -> Result<Option<u64>, ApiError> {
    let declared = content_length(headers);
    let Some((start, end)) = chunk_range(headers)? else {
        return Ok(declared);
    };
    if start != size || end < start {
        return Err(out_of_order(repo, session, size));
    }
    let len = end - start + 1;
    if declared.is_some_and(|d| d != len) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::SizeInvalid,
            "Content-Length does not match Content-Range",
        ));
    }
    Ok(Some(len))
}

async fn upload_start(
    inner: &Inner,
    ctx: &Ctx,
    repo: &Repo,
    query: &Query,
    headers: &HeaderMap,
    body: &mut Option<Body>,
) -> Result<Response, ApiError> {
    let store = &inner.store;
    if let Some(mount) = query.get("mount") {
        let d = parse_digest(mount)?;
        let source = match query.get("from") {
            Some(from) => match ctx.repo(from) {
                Ok(from) if inner.may(ctx, &from, Action::Pull).await => store
                    .linked_blob_size(&from.full, &d)
                    .await
                    .map_err(internal("check blob"))?,
                _ => None,
            },
            // Without `from`, any stored copy will do, but only on an open registry: with auth we
            // could not tell whether the caller may read a repository that holds it.
            None if inner.auth.is_none() => {
                store.blob_size(&d).await.map_err(internal("check blob"))?
            }
            None => None,
        };
        if source.is_some() {
            store
                .link_blob(&repo.full, &d)
                .await
                .map_err(internal("link blob"))?;
            return Ok(blob_created(repo, &d));
        }
        // Not mountable: an ordinary upload session (202), as the spec asks.
    } else if let Some(digest) = query.get("digest") {
        let d = parse_digest(digest)?;
        let b = body.take().unwrap_or_default();
        // `?digest=` without a body is a client starting a session with a hint, unless the
        // digest is that of empty content: then the empty blob is what it uploads.
        if !b.is_end_stream() || d == d.algorithm.digest_of(b"") {
            return upload_single_post(inner, repo, &d, headers, b).await;
        }
    }
    inner.uploads.sweep().await;
    let session = inner
        .uploads
        .create(&store.uploads_dir(), &repo.full, None, true);
    let mut r = empty_response(StatusCode::ACCEPTED);
    upload_headers(r.headers_mut(), repo, &session, 0);
    Ok(r)
}

async fn upload_single_post(
    inner: &Inner,
    repo: &Repo,
    d: &Digest,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let session = inner.uploads.create(
        &inner.store.uploads_dir(),
        &repo.full,
        Some(d.algorithm),
        false,
    );
    let _cleanup = upload::RemoveOnDrop(session.path.clone());
    let mut st = session.state.lock().await;
    st.closed = true;
    upload::append(&session, &mut st, body, content_length(headers))
        .await
        .map_err(append_error)?;
    commit(inner, repo, &session, &mut st, d).await
}

/// Verifies the uploaded bytes against `d`, moves them into the store and links the blob to the
/// repository. On a mismatch nothing is committed.
async fn commit(
    inner: &Inner,
    repo: &Repo,
    session: &Session,
    st: &mut upload::State,
    d: &Digest,
) -> Result<Response, ApiError> {
    let computed = upload::digest(session, st, d.algorithm)
        .await
        .map_err(internal("hash upload"))?;
    if computed != *d {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::DigestInvalid,
            "provided digest did not match uploaded content",
        )
        .detail(json!({ "expected": d.to_string(), "computed": computed.to_string() })));
    }
    upload::seal(session, st)
        .await
        .map_err(internal("finish upload"))?;
    inner
        .store
        .commit_blob(&session.path, d)
        .await
        .map_err(internal("commit blob"))?;
    inner
        .store
        .link_blob(&repo.full, d)
        .await
        .map_err(internal("link blob"))?;
    Ok(blob_created(repo, d))
}

async fn upload_status(repo: &Repo, session: &Session) -> Result<Response, ApiError> {
    let mut r = empty_response(StatusCode::NO_CONTENT);
    upload_headers(r.headers_mut(), repo, session, session.size());
    Ok(r)
}

async fn upload_patch(
    repo: &Repo,
    session: &Session,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut st = session.state.lock().await;
    if st.closed {
        drain(body).await;
        return Err(ApiError::upload_unknown());
    }
    let expected = match check_chunk(headers, repo, session, st.size) {
        Ok(e) => e,
        Err(e) => {
            drop(st);
            drain(body).await;
            return Err(e);
        }
    };
    upload::append(session, &mut st, body, expected)
        .await
        .map_err(append_error)?;
    let mut r = empty_response(StatusCode::ACCEPTED);
    upload_headers(r.headers_mut(), repo, session, st.size);
    Ok(r)
}

async fn upload_finish(
    inner: &Inner,
    repo: &Repo,
    session: &Session,
    query: &Query,
    headers: &HeaderMap,
    body: &mut Option<Body>,
) -> Result<Response, ApiError> {
    let digest = query.get("digest").ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::DigestInvalid,
            "digest parameter missing",
        )
    })?;
    let d = parse_digest(digest)?;
    let mut st = session.state.lock().await;
    if st.closed {
        return Err(ApiError::upload_unknown());
    }
    let expected = check_chunk(headers, repo, session, st.size)?;
    let b = body.take().unwrap_or_default();
    upload::append(session, &mut st, b, expected)
        .await
        .map_err(append_error)?;
    // Whatever the outcome the session is over: a wrong digest cancels it.
    st.closed = true;
    inner.uploads.remove(&session.id);
    let _cleanup = upload::RemoveOnDrop(session.path.clone());
    commit(inner, repo, session, &mut st, &d).await
}

async fn upload_cancel(inner: &Inner, session: &Session) -> Result<Response, ApiError> {
    let mut st = session.state.lock().await;
    if st.closed {
        return Err(ApiError::upload_unknown());
    }
    st.closed = true;
    inner.uploads.remove(&session.id);
    let _ = tokio::fs::remove_file(&session.path).await;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

// ---------------------------------------------------------------------------------------------
// token endpoint

/// `GET /oauth2/token?service=…&scope=…` with Basic credentials, and `POST` with a form
/// (`grant_type=password`), as distribution's token servers answer.
pub(crate) async fn token(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ctx = Ctx::new(&inner, &parts);
    let result = if parts.method == Method::POST {
        match collect_limited(body, 64 << 10).await {
            Ok(b) => {
                let form = Query::parse(std::str::from_utf8(&b).ok());
                token_post(&inner, &ctx, &form).await
            }
            Err(_) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                Code::Unsupported,
                "unreadable form",
            )),
        }
    } else if is_read(&parts.method) {
        let query = Query::parse(parts.uri.query());
        let creds = match &ctx.caller {
            Caller::Basic { user, pass } => Some((user.as_str(), pass.as_str())),
            _ => None,
        };
        let scopes: Vec<&str> = query.all("scope").collect();
        issue(&inner, &ctx, creds, &scopes, false).await
    } else {
        Err(method_not_allowed())
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn token_post(inner: &Inner, ctx: &Ctx, form: &Query) -> Result<Response, ApiError> {
    match form.get("grant_type") {
        Some("password") => {
            let user = form.get("username").unwrap_or("");
            let pass = form.get("password").unwrap_or("");
            let scopes: Vec<&str> = form.all("scope").collect();
            issue(inner, ctx, Some((user, pass)), &scopes, true).await
        }
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::Unsupported,
            "unsupported grant_type (password is)",
        )
        .detail(json!({ "grant_type": other }))),
        None => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::Unsupported,
            "grant_type missing",
        )),
    }
}

async fn issue(
    inner: &Inner,
    ctx: &Ctx,
    creds: Option<(&str, &str)>,
    scopes: &[&str],
    post: bool,
) -> Result<Response, ApiError> {
    let mut grants: Vec<Grant> = Vec::new();
    let sub = match (&inner.auth, creds) {
        (None, c) => {
            // Open registry: whatever is asked is granted (tokens are then never checked).
            for scope in scopes.iter().flat_map(|s| s.split_whitespace()) {
                if let Some((kind, name, actions)) = auth::parse_scope(scope) {
                    grants.push(Grant {
                        kind: kind.to_owned(),
                        name: name.to_owned(),
                        actions: actions.split(',').map(str::to_owned).collect(),
                    });
                }
            }
            c.map(|(u, _)| u).unwrap_or("anonymous").to_owned()
        }
        (Some(_), None) => {
            return Err(ApiError::unauthorized("credentials required").header(
                header::WWW_AUTHENTICATE,
                &format!("Basic realm=\"{}\"", ctx.realm()),
            ))
        }
        (Some(authn), Some((user, pass))) => {
            if !authn.authorize(user, pass, None, &[]).await {
                return Err(
                    ApiError::unauthorized("invalid username or password").header(
                        header::WWW_AUTHENTICATE,
                        &format!("Basic realm=\"{}\"", ctx.realm()),
                    ),
                );
            }
            for scope in scopes.iter().flat_map(|s| s.split_whitespace()) {
                if let Some(g) = grant(authn.as_ref(), ctx, user, pass, scope).await {
                    grants.push(g);
                }
            }
            user.to_owned()
        }
    };
    let granted_scope: Vec<String> = grants
        .iter()
        .map(|g| {
            let name = if g.kind == "repository" {
                ctx.visible(&g.name).unwrap_or(&g.name)
            } else {
                &g.name
            };
            format!("{}:{}:{}", g.kind, name, g.actions.join(","))
        })
        .collect();
    let token = inner.tokens.mint(&sub, grants, ctx.now);
    let issued_at = chrono::DateTime::from_timestamp(ctx.now, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut body = json!({
        "token": token,
        "access_token": token,
        "expires_in": inner.tokens.lifetime().as_secs(),
        "issued_at": issued_at,
    });
    if post {
        body["scope"] = json!(granted_scope.join(" "));
    }
    Ok(json_response(StatusCode::OK, body.to_string()))
}

/// What of one requested scope the Authenticator allows (`None`: nothing).
async fn grant(
    authn: &dyn Authenticator,
    ctx: &Ctx,
    user: &str,
    pass: &str,
    scope: &str,
) -> Option<Grant> {
    let (kind, name, actions) = auth::parse_scope(scope)?;
    match kind {
        "repository" => {
            let repo = ctx.repo(name).ok()?;
            let wanted = Action::parse_list(actions);
            if wanted.is_empty() {
                return None;
            }
            let allowed: Vec<Action> =
                if authn.authorize(user, pass, Some(&repo.full), &wanted).await {
                    wanted
                } else {
                    let mut some = Vec::new();
                    for a in wanted {
                        if authn.authorize(user, pass, Some(&repo.full), &[a]).await {
                            some.push(a);
                        }
                    }
                    some
                };
            (!allowed.is_empty()).then(|| Grant {
                kind: "repository".to_owned(),
                name: repo.full,
                actions: allowed.iter().map(|a| a.as_str().to_owned()).collect(),
            })
        }
        "registry" if name == "catalog" => authn
            .authorize(user, pass, None, &[Action::Pull])
            .await
            .then(|| Grant {
                kind: "registry".to_owned(),
                name: "catalog".to_owned(),
                actions: vec!["*".to_owned()],
            }),
        _ => None,
    }
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
    fn ranges() {
        let r = |s: &str, size| match byte_range(HeaderValue::from_str(s).ok().as_ref(), size) {
            ByteRange::Full => "full".to_owned(),
            ByteRange::Part(a, b) => format!("{a}-{b}"),
            ByteRange::Unsatisfiable => "416".to_owned(),
        };
        assert_eq!(r("bytes=500-1499", 2048), "500-1499");
        assert_eq!(r("bytes=500-", 2048), "500-2047");
        assert_eq!(r("bytes=-500", 2048), "1548-2047");
        assert_eq!(r("bytes=-5000", 2048), "0-2047");
        assert_eq!(r("bytes=2000-5000", 2048), "2000-2047");
        assert_eq!(r("bytes=500-0", 2048), "416");
        assert_eq!(r("bytes=5000-10000", 2048), "416");
        assert_eq!(r("bytes=-0", 2048), "416");
        assert_eq!(r("bytes=0-", 0), "416");
        assert_eq!(r("bytes=0-1,4-5", 2048), "full");
        assert_eq!(r("items=0-1", 2048), "full");
        assert_eq!(r("bytes=x-1", 2048), "full");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("sha256%3Aab"), "sha256:ab");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("end%3"), "end%3");
    }

    #[test]
    fn manifests_are_inspected() {
        let ok = json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", "a".repeat(64)), "size": 1},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": format!("sha256:{}", "b".repeat(64)), "size": 1},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{}", "c".repeat(64)), "size": 1, "urls": ["https://example.com/x"]},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha512:{}", "d".repeat(128)), "size": 1}
            ],
            "subject": {"mediaType": MT_OCI_MANIFEST, "digest": format!("sha256:{}", "e".repeat(64)), "size": 1}
        });
        let f = inspect_manifest(&ok)
            .map_err(|e| e.status())
            .expect("valid");
        assert_eq!(f.required.len(), 2, "config and the distributable layer");
        assert_eq!(
            f.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert!(f.subject.is_some());
        for bad in [
            json!([]),
            json!({"layers": {}}),
            json!({"layers": [{"digest": "sha256:nope"}]}),
            json!({"manifests": [{"size": 1}]}),
            json!({"subject": {"digest": 5}}),
        ] {
            assert!(inspect_manifest(&bad).is_err(), "{bad}");
        }
    }
}
