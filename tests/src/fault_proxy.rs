//! An HTTP fault-injection proxy in front of a registry (or a token server).
//!
//! [`FaultProxy::start`] listens on 127.0.0.1:0 and forwards every request to the upstream
//! (`http://127.0.0.1:PORT`), streaming request and response bodies both ways (uploads of
//! hundreds of MiB pass through it). Headers go through as they are (`Authorization`,
//! `Range`, `Content-Range`, `Content-Length`, `Content-Type`, …) except hop-by-hop ones and
//! `Host`; absolute upstream URLs in `Location` are rewritten to the proxy's address; redirects
//! from the upstream are handed to the client, never followed.
//!
//! It counts everything per request [`Kind`] (count, response body bytes sent to the client,
//! current and maximum in-flight requests) and logs every request ([`LogEntry`]). [`Rule`]s
//! inject faults; they can be added and cleared while the proxy runs. A rule matches by kind
//! and/or path substring, and fires on a window of its matching occurrences (`skip`, `first`).
//! Several rules may fire on one request: body shapers ([`Action::CutAfter`],
//! [`Action::Stall`], [`Action::StallUpload`], [`Action::Throttle`], [`Action::Corrupt`],
//! [`Action::StripRange`]) combine; the first answering action ([`Action::Status`], [`Action::ServeManifest`],
//! [`Action::RejectMonolithicPut`], [`Action::Redirect`]) answers without forwarding.
//!
//! A second server, [`FaultProxy::redirect_target`], serves the blobs [`Action::Redirect`]
//! sends clients to: it fetches them from the upstream with the proxy's own credentials and
//! records whether each request it got carried an `Authorization` header.
//!
//! Everything (both listeners and every connection, stalled ones included) stops on Drop.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::oci::{Credentials, OciClient};
use crate::util::sha256_digest;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ByteStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

/// What a request is, from its method and path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    ManifestGet,
    ManifestHead,
    ManifestPut,
    /// DELETE (or anything else) on `/v2/<name>/manifests/<ref>`.
    ManifestOther,
    BlobGet,
    BlobHead,
    /// DELETE (or anything else) on `/v2/<name>/blobs/<digest>`.
    BlobOther,
    UploadPost,
    UploadPatch,
    UploadPut,
    UploadGet,
    UploadDelete,
    /// Anything on a path ending in `/token`.
    Token,
    /// `/v2/`, tags lists, catalog, referrers, …
    Other,
}

impl Kind {
    pub const ALL: [Kind; 14] = [
        Kind::ManifestGet,
        Kind::ManifestHead,
        Kind::ManifestPut,
        Kind::ManifestOther,
        Kind::BlobGet,
        Kind::BlobHead,
        Kind::BlobOther,
        Kind::UploadPost,
        Kind::UploadPatch,
        Kind::UploadPut,
        Kind::UploadGet,
        Kind::UploadDelete,
        Kind::Token,
        Kind::Other,
    ];

    /// Classifies a request by method and path (without the query).
    pub fn classify(method: &Method, path: &str) -> Kind {
        let path = path.split('?').next().unwrap_or(path);
        if path.trim_end_matches('/').ends_with("/token") {
            return Kind::Token;
        }
        if !path.starts_with("/v2/") {
            return Kind::Other;
        }
        if path.contains("/blobs/uploads") {
            return match *method {
                Method::POST => Kind::UploadPost,
                Method::PATCH => Kind::UploadPatch,
                Method::PUT => Kind::UploadPut,
                Method::GET | Method::HEAD => Kind::UploadGet,
                Method::DELETE => Kind::UploadDelete,
                _ => Kind::Other,
            };
        }
        if path.contains("/manifests/") {
            return match *method {
                Method::GET => Kind::ManifestGet,
                Method::HEAD => Kind::ManifestHead,
                Method::PUT => Kind::ManifestPut,
                _ => Kind::ManifestOther,
            };
        }
        if path.contains("/blobs/") {
            return match *method {
                Method::GET => Kind::BlobGet,
                Method::HEAD => Kind::BlobHead,
                _ => Kind::BlobOther,
            };
        }
        Kind::Other
    }

    pub fn is_upload(self) -> bool {
        matches!(
            self,
            Kind::UploadPost
                | Kind::UploadPatch
                | Kind::UploadPut
                | Kind::UploadGet
                | Kind::UploadDelete
        )
    }
}

/// Counters of one request kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindStats {
    /// Requests received.
    pub count: u64,
    /// Response body bytes handed to the client.
    pub response_bytes: u64,
    /// Request body bytes received from the client.
    pub request_bytes: u64,
    /// Requests whose response has not finished (body sent or dropped) yet.
    pub in_flight: u64,
    /// The most requests of this kind in flight at once.
    pub max_in_flight: u64,
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// 0-based arrival order.
    pub seq: usize,
    /// Arrival time, since the proxy started.
    pub at: Duration,
    pub kind: Kind,
    pub method: String,
    /// Path and query as received.
    pub path: String,
    pub range: Option<String>,
    /// The `Authorization` header as received (test credentials only).
    pub authorization: Option<String>,
    pub content_length: Option<u64>,
    pub content_range: Option<String>,
    pub content_type: Option<String>,
    /// Status sent to the client (0 until the response starts; 502 when the upstream failed).
    pub status: u16,
    /// Request body bytes received.
    pub request_bytes: u64,
    /// Response body bytes handed to the client.
    pub response_bytes: u64,
    /// Names of the actions that fired on this request.
    pub faults: Vec<&'static str>,
}

impl LogEntry {
    pub fn has_authorization(&self) -> bool {
        self.authorization.is_some()
    }
    /// The path without the query.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }
    /// Offset N of a `Range: bytes=N-…` request header.
    pub fn range_start(&self) -> Option<u64> {
        let r = self.range.as_deref()?.trim().strip_prefix("bytes=")?;
        r.split('-').next()?.trim().parse().ok()
    }
}

impl std::fmt::Display for LogEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "#{} +{:.3}s {:?} {} {} → {} (req {} B, resp {} B)",
            self.seq,
            self.at.as_secs_f64(),
            self.kind,
            self.method,
            self.path,
            self.status,
            self.request_bytes,
            self.response_bytes
        )?;
        if let Some(r) = &self.range {
            write!(f, " [Range: {r}]")?;
        }
        if let Some(r) = &self.content_range {
            write!(f, " [Content-Range: {r}]")?;
        }
        if let Some(l) = self.content_length {
            write!(f, " [Content-Length: {l}]")?;
        }
        if let Some(a) = &self.authorization {
            let scheme = a.split(' ').next().unwrap_or("");
            write!(f, " [Authorization: {scheme} …]")?;
        }
        if !self.faults.is_empty() {
            write!(f, " faults={:?}", self.faults)?;
        }
        Ok(())
    }
}

/// A request the redirect target received.
#[derive(Clone, Debug)]
pub struct RedirectHit {
    pub method: String,
    pub path: String,
    pub had_authorization: bool,
    pub range: Option<String>,
    pub status: u16,
}

/// What a rule does when it fires.
#[derive(Clone, Debug)]
pub enum Action {
    /// Forward the response headers and the first `n` body bytes, then drop the connection.
    CutAfter(u64),
    /// Remove the `Range` header going upstream (the upstream answers 200 with everything).
    StripRange,
    /// Answer directly (the request body, if any, is read and discarded first).
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// Send the headers and `after_bytes` body bytes, then hold the connection open, silent.
    Stall { after_bytes: u64 },
    /// Forward `after_bytes` of the request body, then stop reading it and never answer: the
    /// client's upload stalls (once the socket buffers, a few MiB, are full).
    StallUpload { after_bytes: u64 },
    /// Limit each matching response body to this many bytes per second.
    Throttle(u64),
    /// Forward, but flip the first byte of the response body (same length, wrong digest).
    Corrupt,
    /// Answer a manifest GET/HEAD with this body (`Docker-Content-Digest` = its sha256).
    ServeManifest { content_type: String, body: Bytes },
    /// Answer a PUT with a non-empty body to an upload URL with `status` (413 + SIZE_INVALID
    /// body) without forwarding it. With `chunk_min_length`, upload POST responses also carry
    /// `OCI-Chunk-Min-Length`, and a PATCH that follows a PATCH smaller than that in the same
    /// session gets 416 (recorded in [`FaultProxy::chunk_violations`]).
    RejectMonolithicPut {
        status: u16,
        chunk_min_length: Option<u64>,
    },
    /// Answer a blob GET with `307 Location: <to or the redirect target>/<digest>?repo=<name>`.
    Redirect { to: Option<String> },
}

impl Action {
    /// `429` with `Retry-After: <secs>` and a `TOOMANYREQUESTS` error body.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Action::Status {
            status: 429,
            headers: vec![
                ("Retry-After".into(), retry_after_secs.to_string()),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: Bytes::from_static(
                br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
            ),
        }
    }

    /// A bare status with a distribution-style error body.
    pub fn status(status: u16, code: &str, message: &str) -> Self {
        let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
        Action::Status {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Bytes::from(serde_json::to_vec(&body).expect("serialize error body")),
        }
    }

    /// 413 SIZE_INVALID for monolithic PUTs, chunk minimum `chunk_min_length` when given.
    pub fn reject_monolithic_put(chunk_min_length: Option<u64>) -> Self {
        Action::RejectMonolithicPut {
            status: 413,
            chunk_min_length,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Action::CutAfter(_) => "CutAfter",
            Action::StripRange => "StripRange",
            Action::Status { .. } => "Status",
            Action::Stall { .. } => "Stall",
            Action::StallUpload { .. } => "StallUpload",
            Action::Throttle(_) => "Throttle",
            Action::Corrupt => "Corrupt",
            Action::ServeManifest { .. } => "ServeManifest",
            Action::RejectMonolithicPut { .. } => "RejectMonolithicPut",
            Action::Redirect { .. } => "Redirect",
        }
    }
}

/// A fault: an action, which requests it applies to, and on which of their occurrences.
#[derive(Clone, Debug)]
pub struct Rule {
    pub action: Action,
    /// Kinds it applies to (empty: every kind).
    pub kinds: Vec<Kind>,
    /// A substring the path (with query) must contain.
    pub path_contains: Option<String>,
    /// Matching requests to let through untouched before firing.
    pub skip: usize,
    /// How many matching requests it fires on after `skip` (None: all).
    pub times: Option<usize>,
    /// Only requests with a `Content-Range: start-end` whose start is at least this.
    pub content_range_from: Option<u64>,
    /// Only requests whose `Content-Length` is at least this.
    pub min_content_length: Option<u64>,
}

/// What rules match on, besides kind and path.
#[derive(Clone, Copy, Debug, Default)]
struct RequestFacts {
    nonempty_body: bool,
    content_range_start: Option<u64>,
    content_length: Option<u64>,
}

impl Rule {
    /// A rule firing on every request.
    pub fn new(action: Action) -> Self {
        Self {
            action,
            kinds: Vec::new(),
            path_contains: None,
            skip: 0,
            times: None,
            content_range_from: None,
            min_content_length: None,
        }
    }
    /// Also (or only) requests of `kind`.
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kinds.push(kind);
        self
    }
    /// Only requests whose path (with query) contains `s`.
    pub fn path(mut self, s: &str) -> Self {
        self.path_contains = Some(s.to_string());
        self
    }
    /// Fire on the first `n` matching requests (after `skip`) only.
    pub fn first(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }
    /// Let `n` matching requests through before firing.
    pub fn skip(mut self, n: usize) -> Self {
        self.skip = n;
        self
    }

    /// Only requests (PATCHes) whose `Content-Range` starts at `offset` or later.
    pub fn content_range_from(mut self, offset: u64) -> Self {
        self.content_range_from = Some(offset);
        self
    }
    /// Only requests whose `Content-Length` is at least `n`.
    pub fn min_content_length(mut self, n: u64) -> Self {
        self.min_content_length = Some(n);
        self
    }

    fn matches(&self, kind: Kind, path: &str, facts: RequestFacts) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&kind) {
            return false;
        }
        if let Some(from) = self.content_range_from {
            if facts.content_range_start.is_none_or(|s| s < from) {
                return false;
            }
        }
        if let Some(min) = self.min_content_length {
            if facts.content_length.is_none_or(|l| l < min) {
                return false;
            }
        }
        let nonempty_body = facts.nonempty_body;
        if let Some(p) = &self.path_contains {
            if !path.contains(p.as_str()) {
                return false;
            }
        }
        match self.action {
            Action::RejectMonolithicPut { .. } => kind == Kind::UploadPut && nonempty_body,
            Action::ServeManifest { .. } => {
                matches!(kind, Kind::ManifestGet | Kind::ManifestHead)
            }
            Action::Redirect { .. } => kind == Kind::BlobGet,
            _ => true,
        }
    }
}

/// Handle of an added rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleId(u64);

struct RuleSlot {
    id: RuleId,
    rule: Rule,
    seen: usize,
    fired: usize,
}

#[derive(Default)]
struct State {
    stats: HashMap<Kind, KindStats>,
    log: Vec<LogEntry>,
    rules: Vec<RuleSlot>,
    next_rule: u64,
    redirect_hits: Vec<RedirectHit>,
    /// Upload session path → sizes of the PATCHes forwarded so far.
    patch_sizes: HashMap<String, Vec<u64>>,
    chunk_violations: Vec<String>,
}

struct Shared {
    started: std::time::Instant,
    upstream: String,
    base: String,
    redirect_base: String,
    http: reqwest::Client,
    redirect_client: OciClient,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    redirect_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy on 127.0.0.1:<random> in front of `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Self {
        Self::start_with_credentials(upstream, None).await
    }

    /// Like [`start`](Self::start); the redirect target authenticates to the upstream with
    /// `creds` (Basic or a token, whatever the upstream asks for).
    pub async fn start_with_credentials(upstream: &str, creds: Option<Credentials>) -> Self {
        let upstream = upstream.trim_end_matches('/').to_string();
        assert!(
            upstream.starts_with("http://"),
            "FaultProxy upstream must be http://HOST:PORT, got {upstream:?}"
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fault proxy");
        let addr = listener.local_addr().expect("fault proxy addr");
        let redirect_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind redirect target");
        let redirect_addr = redirect_listener.local_addr().expect("redirect addr");
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(16)
            .build()
            .expect("build proxy client");
        let shared = Arc::new(Shared {
            started: std::time::Instant::now(),
            redirect_client: OciClient::new(&upstream, creds),
            upstream,
            base: format!("http://{addr}"),
            redirect_base: format!("http://{redirect_addr}"),
            http,
            state: Mutex::new(State::default()),
        });
        let main = {
            let shared = shared.clone();
            serve(listener, move |req| handle(shared.clone(), req))
        };
        let redirect = {
            let shared = shared.clone();
            serve(redirect_listener, move |req| {
                handle_redirect_target(shared.clone(), req)
            })
        };
        Self {
            shared,
            addr,
            redirect_addr,
            tasks: vec![tokio::spawn(main), tokio::spawn(redirect)],
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `127.0.0.1:PORT`, usable as an import's `registryUri`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
    /// `http://127.0.0.1:PORT`, usable as `--backend-registry`.
    pub fn url(&self) -> String {
        self.shared.base.clone()
    }
    /// The upstream this proxy forwards to.
    pub fn upstream(&self) -> &str {
        &self.shared.upstream
    }
    /// `http://127.0.0.1:PORT` of the server [`Action::Redirect`] points blob GETs at.
    pub fn redirect_target(&self) -> String {
        self.shared.redirect_base.clone()
    }
    pub fn redirect_addr(&self) -> SocketAddr {
        self.redirect_addr
    }

    /// Adds a rule (applies to requests arriving from now on).
    pub fn add_rule(&self, rule: Rule) -> RuleId {
        let mut st = self.shared.lock();
        st.next_rule += 1;
        let id = RuleId(st.next_rule);
        st.rules.push(RuleSlot {
            id,
            rule,
            seen: 0,
            fired: 0,
        });
        id
    }
    pub fn remove_rule(&self, id: RuleId) {
        self.shared.lock().rules.retain(|r| r.id != id);
    }
    pub fn clear_rules(&self) {
        self.shared.lock().rules.clear();
    }
    /// How many times rule `id` fired (0 once removed).
    pub fn rule_hits(&self, id: RuleId) -> usize {
        self.shared
            .lock()
            .rules
            .iter()
            .find(|r| r.id == id)
            .map_or(0, |r| r.fired)
    }

    /// Counters of `kind`.
    pub fn stats(&self, kind: Kind) -> KindStats {
        self.shared
            .lock()
            .stats
            .get(&kind)
            .copied()
            .unwrap_or_default()
    }
    /// Counters of every kind seen.
    pub fn all_stats(&self) -> HashMap<Kind, KindStats> {
        self.shared.lock().stats.clone()
    }
    pub fn count(&self, kind: Kind) -> u64 {
        self.stats(kind).count
    }
    /// Response body bytes sent to the client for `kind`.
    pub fn bytes_sent(&self, kind: Kind) -> u64 {
        self.stats(kind).response_bytes
    }
    pub fn max_in_flight(&self, kind: Kind) -> u64 {
        self.stats(kind).max_in_flight
    }
    /// Every request so far, in arrival order.
    pub fn log(&self) -> Vec<LogEntry> {
        self.shared.lock().log.clone()
    }
    /// The requests of `kind`.
    pub fn log_of(&self, kind: Kind) -> Vec<LogEntry> {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|e| e.kind == kind)
            .cloned()
            .collect()
    }
    /// The log, one request per line (for assertion messages).
    pub fn log_text(&self) -> String {
        self.log()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
    /// Forgets counters, the log, PATCH sessions and redirect hits (rules stay).
    pub fn reset_stats(&self) {
        let mut st = self.shared.lock();
        st.stats.clear();
        st.log.clear();
        st.redirect_hits.clear();
        st.patch_sizes.clear();
        st.chunk_violations.clear();
    }
    /// Requests the redirect target received.
    pub fn redirect_hits(&self) -> Vec<RedirectHit> {
        self.shared.lock().redirect_hits.clone()
    }
    /// PATCHes that followed a PATCH smaller than `OCI-Chunk-Min-Length` in one session.
    pub fn chunk_violations(&self) -> Vec<String> {
        self.shared.lock().chunk_violations.clone()
    }
    /// Sizes of the PATCHes forwarded per upload session (path without query).
    pub fn patch_sizes(&self) -> HashMap<String, Vec<u64>> {
        self.shared.lock().patch_sizes.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Accept loop; connections live in a JoinSet so aborting the loop aborts them all.
async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Decrements in-flight on drop; counts bytes into the stats and the log entry.
struct Tracker {
    shared: Arc<Shared>,
    kind: Kind,
    seq: usize,
    finished: bool,
}

impl Tracker {
    fn add_response_bytes(&self, n: u64) {
        let mut st = self.shared.lock();
        st.stats.entry(self.kind).or_default().response_bytes += n;
        if let Some(e) = st.log.get_mut(self.seq) {
            e.response_bytes += n;
        }
    }
    fn add_request_bytes(shared: &Shared, kind: Kind, seq: usize, n: u64) {
        let mut st = shared.lock();
        st.stats.entry(kind).or_default().request_bytes += n;
        if let Some(e) = st.log.get_mut(seq) {
            e.request_bytes += n;
        }
    }
    /// The response is complete (its last byte handed over, or it was dropped): no longer
    /// in flight. Called before the last byte goes out, so a client that starts its next
    /// request as soon as it has the whole body is never counted twice.
    fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let mut st = self.shared.lock();
        let s = st.stats.entry(self.kind).or_default();
        s.in_flight = s.in_flight.saturating_sub(1);
    }
    fn set_status(&self, status: u16) {
        if let Some(e) = self.shared.lock().log.get_mut(self.seq) {
            e.status = status;
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.finish();
    }
}

/// What the rules decided for one request.
#[derive(Default)]
struct Plan {
    strip_range: bool,
    cut_after: Option<u64>,
    stall_after: Option<u64>,
    stall_upload_after: Option<u64>,
    throttle: Option<u64>,
    corrupt: bool,
    answer: Option<Action>,
    /// From a RejectMonolithicPut rule: OCI-Chunk-Min-Length.
    chunk_min: Option<u64>,
}

fn nonempty_body(headers: &HeaderMap) -> bool {
    match header_string(headers, "content-length") {
        Some(cl) => cl.trim().parse::<u64>().map_or(true, |n| n > 0),
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let (parts, incoming) = req.into_parts();
    let method = parts.method.clone();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let path_only = parts.uri.path().to_string();
    let kind = Kind::classify(&method, &path_only);
    let headers = parts.headers;
    let has_body = nonempty_body(&headers);
    let content_length = header_string(&headers, "content-length").and_then(|v| v.parse().ok());
    let facts = RequestFacts {
        nonempty_body: has_body,
        content_range_start: header_string(&headers, "content-range").and_then(|v| {
            v.trim()
                .trim_start_matches("bytes=")
                .trim_start_matches("bytes ")
                .split('-')
                .next()
                .and_then(|a| a.trim().parse().ok())
        }),
        content_length,
    };

    // Register the request and decide what to do with it.
    let (tracker, plan) = {
        let mut st = shared.lock();
        let seq = st.log.len();
        let mut entry = LogEntry {
            seq,
            at: shared.started.elapsed(),
            kind,
            method: method.to_string(),
            path: path.clone(),
            range: header_string(&headers, "range"),
            authorization: header_string(&headers, "authorization"),
            content_length,
            content_range: header_string(&headers, "content-range"),
            content_type: header_string(&headers, "content-type"),
            status: 0,
            request_bytes: 0,
            response_bytes: 0,
            faults: Vec::new(),
        };
        let s = st.stats.entry(kind).or_default();
        s.count += 1;
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);

        let mut plan = Plan::default();
        for slot in st.rules.iter_mut() {
            if let Action::RejectMonolithicPut {
                chunk_min_length: Some(n),
                ..
            } = slot.rule.action
            {
                plan.chunk_min = Some(plan.chunk_min.map_or(n, |m: u64| m.max(n)));
            }
            if !slot.rule.matches(kind, &path, facts) {
                continue;
            }
            let occurrence = slot.seen;
            slot.seen += 1;
            if occurrence < slot.rule.skip
                || slot
                    .rule
                    .times
                    .is_some_and(|t| occurrence >= slot.rule.skip + t)
            {
                continue;
            }
            if plan.answer.is_some() && is_answer(&slot.rule.action) {
                // Only the first answering rule fires.
                continue;
            }
            slot.fired += 1;
            entry.faults.push(slot.rule.action.name());
            match &slot.rule.action {
                Action::CutAfter(n) => {
                    plan.cut_after = Some(plan.cut_after.map_or(*n, |m| m.min(*n)))
                }
                Action::StripRange => plan.strip_range = true,
                Action::Stall { after_bytes } => {
                    plan.stall_after = Some(
                        plan.stall_after
                            .map_or(*after_bytes, |m| m.min(*after_bytes)),
                    )
                }
                Action::StallUpload { after_bytes } => {
                    plan.stall_upload_after = Some(
                        plan.stall_upload_after
                            .map_or(*after_bytes, |m| m.min(*after_bytes)),
                    )
                }
                Action::Throttle(bps) => {
                    plan.throttle = Some(plan.throttle.map_or(*bps, |m| m.min(*bps)))
                }
                Action::Corrupt => plan.corrupt = true,
                a => plan.answer = Some(a.clone()),
            }
        }
        // Chunk minimum: a PATCH after a too-small PATCH in the same session is refused.
        if kind == Kind::UploadPatch && plan.answer.is_none() {
            if let Some(min) = plan.chunk_min {
                if let Some(&last) = st.patch_sizes.get(&path_only).and_then(|v| v.last()) {
                    if last < min {
                        st.chunk_violations.push(format!(
                            "PATCH {path_only} after a non-final PATCH of {last} bytes (< {min})"
                        ));
                        entry.faults.push("ChunkTooSmall");
                        plan.answer = Some(Action::status(
                            416,
                            "SIZE_INVALID",
                            &format!("chunks must be at least {min} bytes, except the last"),
                        ));
                    }
                }
            }
        }
        st.log.push(entry);
        (
            Tracker {
                shared: shared.clone(),
                kind,
                seq,
                finished: false,
            },
            plan,
        )
    };

    if let Some(answer) = plan.answer.clone() {
        // Read (and count) the request body first so the client sees the answer, not a
        // connection reset in the middle of its upload.
        let mut body = Body::new(incoming).into_data_stream();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) => Tracker::add_request_bytes(&shared, kind, tracker.seq, c.len() as u64),
                Err(_) => break,
            }
        }
        return answer_directly(&shared, answer, &method, &path_only, tracker, &plan);
    }

    // Forward.
    let url = format!("{}{}", shared.upstream, path);
    let mut out = shared.http.request(method.clone(), &url);
    for (name, value) in &headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || (plan.strip_range && n == "range") {
            continue;
        }
        out = out.header(name.clone(), value.clone());
    }
    if has_body {
        let counter = shared.clone();
        let seq = tracker.seq;
        let stream = Body::new(incoming).into_data_stream().map(move |r| {
            if let Ok(c) = &r {
                Tracker::add_request_bytes(&counter, kind, seq, c.len() as u64);
            }
            r
        });
        out = match plan.stall_upload_after {
            // Pass chunks on until `n` bytes went through, then read nothing more, ever.
            Some(n) => {
                let mut passed = 0u64;
                let head = stream.take_while(move |r| {
                    let go = passed < n;
                    if let Ok(c) = r {
                        passed += c.len() as u64;
                    }
                    futures::future::ready(go)
                });
                out.body(reqwest::Body::wrap_stream(
                    head.chain(futures::stream::pending()),
                ))
            }
            None => out.body(reqwest::Body::wrap_stream(stream)),
        };
    } else {
        drop(incoming);
    }
    let upstream_resp = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            tracker.set_status(502);
            return Response::builder()
                .status(502)
                .body(Body::from(format!("fault proxy: upstream error: {e}")))
                .expect("502 response");
        }
    };
    let status = upstream_resp.status();
    tracker.set_status(status.as_u16());
    if kind == Kind::UploadPatch && status.is_success() {
        let size = tracker_request_bytes(&shared, tracker.seq).max(content_length.unwrap_or(0));
        shared
            .lock()
            .patch_sizes
            .entry(path_only.clone())
            .or_default()
            .push(size);
    }
    let mut builder = Response::builder().status(status.as_u16());
    for (name, value) in upstream_resp.headers() {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) {
            continue;
        }
        if n == "location" {
            if let Ok(v) = value.to_str() {
                let rewritten = match v.strip_prefix(shared.upstream.as_str()) {
                    Some(rest) => format!("{}{rest}", shared.base),
                    None => v.to_string(),
                };
                builder = builder.header(header::LOCATION, rewritten);
                continue;
            }
        }
        builder = builder.header(name.clone(), value.clone());
    }
    if kind == Kind::UploadPost {
        if let Some(min) = plan.chunk_min {
            builder = builder.header("OCI-Chunk-Min-Length", min.to_string());
        }
    }
    let expected = upstream_resp.content_length();
    let inner: ByteStream = Box::pin(
        upstream_resp
            .bytes_stream()
            .map(|r| r.map_err(|e| Box::new(e) as BoxError)),
    );
    let body = if method == Method::HEAD {
        drop(inner);
        drop(tracker);
        Body::empty()
    } else {
        Body::from_stream(shape(inner, &plan, tracker, expected))
    };
    builder.body(body).expect("proxied response")
}

fn tracker_request_bytes(shared: &Shared, seq: usize) -> u64 {
    shared.lock().log.get(seq).map_or(0, |e| e.request_bytes)
}

fn is_answer(a: &Action) -> bool {
    matches!(
        a,
        Action::Status { .. }
            | Action::ServeManifest { .. }
            | Action::RejectMonolithicPut { .. }
            | Action::Redirect { .. }
    )
}

fn answer_directly(
    shared: &Arc<Shared>,
    answer: Action,
    method: &Method,
    path: &str,
    tracker: Tracker,
    plan: &Plan,
) -> Response<Body> {
    let (status, headers, body): (u16, Vec<(String, String)>, Bytes) = match answer {
        Action::Status {
            status,
            headers,
            body,
        } => (status, headers, body),
        Action::ServeManifest { content_type, body } => (
            200,
            vec![
                ("Content-Type".into(), content_type),
                ("Docker-Content-Digest".into(), sha256_digest(&body)),
                ("Docker-Distribution-Api-Version".into(), "registry/2.0".into()),
            ],
            body,
        ),
        Action::RejectMonolithicPut { status, .. } => (
            status,
            vec![("Content-Type".into(), "application/json".into())],
            Bytes::from_static(
                br#"{"errors":[{"code":"SIZE_INVALID","message":"monolithic uploads are not accepted; use chunked PATCH"}]}"#,
            ),
        ),
        Action::Redirect { to } => {
            let (repo, digest) = split_blob_path(path).unwrap_or_default();
            let base = to.unwrap_or_else(|| shared.redirect_base.clone());
            let repo_q: String = url::form_urlencoded::byte_serialize(repo.as_bytes()).collect();
            (
                307,
                vec![(
                    "Location".into(),
                    format!("{}/{digest}?repo={repo_q}", base.trim_end_matches('/')),
                )],
                Bytes::new(),
            )
        }
        other => unreachable!("not an answering action: {other:?}"),
    };
    tracker.set_status(status);
    let mut builder = Response::builder().status(status);
    let mut has_len = false;
    for (k, v) in &headers {
        if k.eq_ignore_ascii_case("content-length") {
            has_len = true;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            builder = builder.header(name, value);
        }
    }
    if !has_len {
        builder = builder.header(header::CONTENT_LENGTH, body.len().to_string());
    }
    if *method == Method::HEAD {
        drop(tracker);
        return builder.body(Body::empty()).expect("HEAD answer");
    }
    let expected = Some(body.len() as u64);
    let inner: ByteStream = Box::pin(futures::stream::iter(vec![Ok::<_, BoxError>(body)]));
    builder
        .body(Body::from_stream(shape(inner, plan, tracker, expected)))
        .expect("answer")
}

/// `/v2/<name>/blobs/<digest>` → (name, digest).
fn split_blob_path(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/v2/")?;
    let i = rest.rfind("/blobs/")?;
    Some((
        rest[..i].to_string(),
        rest[i + "/blobs/".len()..].to_string(),
    ))
}

#[derive(Debug)]
struct CutError;

impl std::fmt::Display for CutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault proxy: connection cut")
    }
}

impl std::error::Error for CutError {}

struct ShapeState {
    inner: ByteStream,
    pending: Option<Bytes>,
    sent: u64,
    cut_after: Option<u64>,
    stall_after: Option<u64>,
    throttle: Option<u64>,
    next_free: Instant,
    corrupt: bool,
    done: bool,
    /// Body length announced to the client, if known.
    expected: Option<u64>,
    tracker: Tracker,
}

/// Applies cut / stall / throttle / corruption to a response body and counts what is sent.
fn shape(
    inner: ByteStream,
    plan: &Plan,
    tracker: Tracker,
    expected: Option<u64>,
) -> impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static {
    let st = ShapeState {
        inner,
        pending: None,
        sent: 0,
        cut_after: plan.cut_after,
        stall_after: plan.stall_after,
        throttle: plan.throttle.filter(|b| *b > 0),
        next_free: Instant::now(),
        corrupt: plan.corrupt,
        done: false,
        expected,
        tracker,
    };
    futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if st.stall_after.is_some_and(|n| st.sent >= n) {
                // Silent forever; the connection dies with the client or the proxy.
                futures::future::pending::<()>().await;
            }
            if st.cut_after.is_some_and(|n| st.sent >= n) {
                st.done = true;
                st.tracker.finish();
                return Some((Err(Box::new(CutError) as BoxError), st));
            }
            let chunk = match st.pending.take() {
                Some(c) => c,
                None => match st.inner.next().await {
                    Some(Ok(c)) => c,
                    Some(Err(e)) => {
                        st.done = true;
                        st.tracker.finish();
                        return Some((Err(e), st));
                    }
                    None => {
                        st.tracker.finish();
                        return None;
                    }
                },
            };
            if chunk.is_empty() {
                continue;
            }
            let mut max = chunk.len() as u64;
            for limit in [st.cut_after, st.stall_after].into_iter().flatten() {
                max = max.min(limit - st.sent);
            }
            if let Some(bps) = st.throttle {
                // ~20 slices per second keep the pacing smooth.
                max = max.min((bps / 20).clamp(512, 256 << 10));
            }
            let mut now = chunk;
            if (now.len() as u64) > max {
                let rest = now.split_off(max as usize);
                st.pending = Some(rest);
            }
            if let Some(bps) = st.throttle {
                let t = Instant::now();
                let start = st.next_free.max(t);
                st.next_free = start + Duration::from_secs_f64(now.len() as f64 / bps as f64);
                tokio::time::sleep_until(start).await;
            }
            if st.corrupt && st.sent == 0 {
                let mut v = now.to_vec();
                v[0] ^= 0xff;
                now = Bytes::from(v);
            }
            st.sent += now.len() as u64;
            st.tracker.add_response_bytes(now.len() as u64);
            if st.expected.is_some_and(|n| st.sent >= n) {
                st.tracker.finish();
            }
            return Some((Ok(now), st));
        }
    })
}

/// The redirect target: `GET /<digest>?repo=<name>` streams the blob from the upstream.
async fn handle_redirect_target(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().trim_start_matches('/').to_string();
    let repo = req
        .uri()
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "repo")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    let had_authorization = req.headers().contains_key(header::AUTHORIZATION);
    let range = header_string(req.headers(), "range");
    let method = req.method().clone();
    let uri = req.uri().to_string();
    drop(req);
    let record = |status: u16| {
        shared.lock().redirect_hits.push(RedirectHit {
            method: method.to_string(),
            path: uri.clone(),
            had_authorization,
            range: range.clone(),
            status,
        });
    };
    let resp = match shared
        .redirect_client
        .get_blob_response(&repo, &path, range.as_deref())
        .await
    {
        Ok(r) => r,
        Err(e) => {
            record(502);
            return Response::builder()
                .status(502)
                .body(Body::from(format!("redirect target: {e}")))
                .expect("502");
        }
    };
    record(resp.status().as_u16());
    let mut builder = Response::builder().status(resp.status().as_u16());
    for name in [
        "content-length",
        "content-range",
        "content-type",
        "docker-content-digest",
        "accept-ranges",
        "etag",
    ] {
        if let Some(v) = resp.headers().get(name) {
            builder = builder.header(name, v.clone());
        }
    }
    if method == Method::HEAD {
        return builder.body(Body::empty()).expect("HEAD");
    }
    builder
        .body(Body::from_stream(resp.bytes_stream()))
        .expect("redirected blob")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_requests() {
        let c = |m: &str, p: &str| Kind::classify(&Method::from_bytes(m.as_bytes()).unwrap(), p);
        assert_eq!(c("GET", "/v2/a/b/manifests/v1"), Kind::ManifestGet);
        assert_eq!(c("HEAD", "/v2/a/manifests/sha256:00"), Kind::ManifestHead);
        assert_eq!(c("PUT", "/v2/a/manifests/v1"), Kind::ManifestPut);
        assert_eq!(c("GET", "/v2/a/blobs/sha256:00"), Kind::BlobGet);
        assert_eq!(c("HEAD", "/v2/a/blobs/sha256:00"), Kind::BlobHead);
        assert_eq!(c("POST", "/v2/a/blobs/uploads/"), Kind::UploadPost);
        assert_eq!(c("PATCH", "/v2/a/blobs/uploads/u-1"), Kind::UploadPatch);
        assert_eq!(c("PUT", "/v2/a/blobs/uploads/u-1"), Kind::UploadPut);
        assert_eq!(c("GET", "/v2/a/blobs/uploads/u-1"), Kind::UploadGet);
        assert_eq!(c("DELETE", "/v2/a/blobs/uploads/u-1"), Kind::UploadDelete);
        assert_eq!(c("GET", "/token"), Kind::Token);
        assert_eq!(c("POST", "/token"), Kind::Token);
        assert_eq!(c("GET", "/v2/"), Kind::Other);
        assert_eq!(c("GET", "/v2/a/tags/list"), Kind::Other);
        // A repository named "manifests" or "blobs" is still classified by the last segment.
        assert_eq!(c("GET", "/v2/x/blobs/sha256:1"), Kind::BlobGet);
    }

    #[test]
    fn splits_blob_paths() {
        assert_eq!(
            split_blob_path("/v2/demo/app/blobs/sha256:ab"),
            Some(("demo/app".to_string(), "sha256:ab".to_string()))
        );
    }

    #[test]
    fn rules_fire_on_their_window() {
        let r = Rule::new(Action::StripRange)
            .kind(Kind::BlobGet)
            .skip(1)
            .first(2);
        let none = RequestFacts::default();
        let body = RequestFacts {
            nonempty_body: true,
            ..none
        };
        assert!(r.matches(Kind::BlobGet, "/v2/a/blobs/x", none));
        assert!(!r.matches(Kind::BlobHead, "/v2/a/blobs/x", none));
        let put = Rule::new(Action::reject_monolithic_put(None));
        assert!(put.matches(Kind::UploadPut, "/v2/a/blobs/uploads/u", body));
        assert!(!put.matches(Kind::UploadPut, "/v2/a/blobs/uploads/u", none));
        assert!(!put.matches(Kind::UploadPatch, "/v2/a/blobs/uploads/u", body));
        let mid = Rule::new(Action::StripRange).content_range_from(1);
        let at = |start| RequestFacts {
            content_range_start: Some(start),
            ..body
        };
        assert!(!mid.matches(Kind::UploadPatch, "/u", at(0)));
        assert!(mid.matches(Kind::UploadPatch, "/u", at(5)));
        assert!(!mid.matches(Kind::UploadPatch, "/u", none));
    }
}
