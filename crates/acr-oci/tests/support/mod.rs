//! Harness of the copy engine's tests: the built-in registry (`acr-registry`) served in-process
//! on 127.0.0.1:0 behind a thin wrapper that logs every request, checks at each manifest PUT
//! that what the manifest references is already there, and injects faults (a blob body cut
//! once, a blob served with wrong bytes, a refused or declined mount); plus a small image
//! generator (configs, layers, image manifests, a multi-platform index).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acr_core::reference::{Repository, Tag};
use acr_oci::copy::copy_image;
use acr_oci::{
    ClientConfig, CopyError, CopyReport, CopyRequest, CopyTarget, Credentials, HostLimits,
    Progress, RegistryClient,
};
use acr_registry::{Registry, RegistryConfig};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};
use tower::ServiceExt;
use url::Url;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn repo(s: &str) -> Repository {
    Repository::parse(s).expect("repository")
}

pub fn tag(s: &str) -> Tag {
    Tag::parse(s).expect("tag")
}

// =============================================================================================
// images

/// Content with its digest.
#[derive(Debug, Clone)]
pub struct Blob {
    pub bytes: Bytes,
    pub digest: String,
    pub media_type: &'static str,
}

impl Blob {
    pub fn new(bytes: Vec<u8>, media_type: &'static str) -> Self {
        Self {
            digest: sha256(&bytes),
            bytes: Bytes::from(bytes),
            media_type,
        }
    }

    fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        })
    }
}

/// `len` deterministic pseudo-random bytes (xorshift), different for every `seed`.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn layer(len: usize, seed: u64) -> Blob {
    Blob::new(data(len, seed), OCI_LAYER)
}

/// An image manifest with its config and layers.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub architecture: String,
}

impl Image {
    pub fn new(architecture: &str, layers: Vec<Blob>) -> Self {
        let config = serde_json::json!({
            "architecture": architecture,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>()},
        });
        let config = Blob::new(serde_json::to_vec(&config).expect("json"), OCI_CONFIG);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        Self {
            manifest: Blob::new(serde_json::to_vec(&manifest).expect("json"), OCI_MANIFEST),
            config,
            layers,
            architecture: architecture.to_owned(),
        }
    }

    /// Config and layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }
}

/// A multi-platform index over its children.
#[derive(Debug, Clone)]
pub struct Index {
    pub manifest: Blob,
    pub children: Vec<Image>,
}

impl Index {
    pub fn new(children: Vec<Image>) -> Self {
        let entries: Vec<serde_json::Value> = children
            .iter()
            .map(|c| {
                let mut d = c.manifest.descriptor();
                d["platform"] = serde_json::json!({"architecture": c.architecture, "os": "linux"});
                d
            })
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        });
        Self {
            manifest: Blob::new(serde_json::to_vec(&index).expect("json"), OCI_INDEX),
            children,
        }
    }

    /// Every distinct blob of the image (children share some).
    pub fn unique_blobs(&self) -> Vec<&Blob> {
        let mut out: Vec<&Blob> = Vec::new();
        for b in self.children.iter().flat_map(Image::blobs) {
            if !out.iter().any(|o| o.digest == b.digest) {
                out.push(b);
            }
        }
        out
    }

    pub fn manifest_count(&self) -> u64 {
        1 + self.children.len() as u64
    }

    pub fn blob_bytes(&self) -> u64 {
        self.unique_blobs()
            .iter()
            .map(|b| b.bytes.len() as u64)
            .sum()
    }
}

/// An index document over any manifests (images or indexes), each entry with a platform.
pub fn index_over(entries: &[(&Blob, &str)]) -> Blob {
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|(m, arch)| {
            let mut d = m.descriptor();
            d["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
            d
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    Blob::new(serde_json::to_vec(&index).expect("json"), OCI_INDEX)
}

/// Three platforms; every child has its own config and layer plus one shared base layer.
/// Layers are large enough to take several chunks of the registry's 256 KiB reads.
pub fn three_platforms(seed: u64) -> Index {
    let base = layer(700 * 1024, seed * 100);
    Index::new(
        ["amd64", "arm64", "s390x"]
            .iter()
            .enumerate()
            .map(|(i, arch)| {
                Image::new(
                    arch,
                    vec![
                        base.clone(),
                        layer(300 * 1024 + i * 1000, seed * 100 + 1 + i as u64),
                    ],
                )
            })
            .collect(),
    )
}

// =============================================================================================
// the served registry

/// One request as the wrapper saw it arrive.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub range: Option<String>,
    /// The wrapper's answer or the registry's.
    pub status: Option<u16>,
}

impl Seen {
    pub fn is(&self, method: &str, path_prefix: &str) -> bool {
        self.method == method && self.path.starts_with(path_prefix)
    }

    /// Whether the path or query names `digest` (as is, or form-encoded in a query).
    pub fn mentions(&self, digest: &str) -> bool {
        self.path.contains(digest) || self.path.contains(&digest.replace(':', "%3A"))
    }
}

/// What a mount request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountMode {
    /// Passed to the registry (which mounts: 201).
    Pass,
    /// Answered 403 DENIED by the wrapper.
    Refuse,
    /// Passed on without `mount`/`from`: the registry opens an ordinary session (202).
    Decline,
}

/// Faults the wrapper injects.
#[derive(Debug)]
pub struct Faults {
    /// `(digest, n)`: the next full GET of that blob breaks after `n` bytes (once).
    pub cut_once: Mutex<Option<(String, usize)>>,
    /// Every GET of this blob serves other bytes of the same length.
    pub corrupt: Mutex<Option<String>>,
    pub mount: Mutex<MountMode>,
    /// Every `tags/list` GET answers this status with a plain-text body.
    pub tags_list: Mutex<Option<u16>>,
}

struct Wrap {
    inner: Router,
    log: Mutex<Vec<Seen>>,
    faults: Arc<Faults>,
    /// Manifest PUTs that arrived before what they reference was there.
    violations: Mutex<Vec<String>>,
}

/// A built-in registry over a temp dir, served on 127.0.0.1:0 behind the wrapper.
pub struct Remote {
    pub base: Url,
    pub faults: Arc<Faults>,
    wrap: Arc<Wrap>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start() -> Remote {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Registry::open(RegistryConfig {
        data_dir: dir.path().join("registry"),
        login_server_suffix: None,
        auth: None,
        token_lifetime: Duration::from_secs(300),
        durability: acr_registry::Durability::None,
        upload_idle_timeout: acr_registry::UPLOAD_IDLE_TIMEOUT,
    })
    .await
    .expect("open registry");
    let faults = Arc::new(Faults {
        cut_once: Mutex::new(None),
        corrupt: Mutex::new(None),
        mount: Mutex::new(MountMode::Pass),
        tags_list: Mutex::new(None),
    });
    let wrap = Arc::new(Wrap {
        inner: registry.router(),
        log: Mutex::new(Vec::new()),
        faults: faults.clone(),
        violations: Mutex::new(Vec::new()),
    });
    let app = Router::new().fallback(wrapped).with_state(wrap.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Remote {
        base: Url::parse(&format!("http://{addr}/")).expect("url"),
        faults,
        wrap,
        http: reqwest::Client::new(),
        _dir: dir,
        task,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

async fn wrapped(State(w): State<Arc<Wrap>>, req: Request) -> Response {
    let method = req.method().as_str().to_owned();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let at = {
        let mut log = lock(&w.log);
        log.push(Seen {
            method: method.clone(),
            path: path.clone(),
            range: range.clone(),
            status: None,
        });
        log.len() - 1
    };
    let resp = handle(&w, req, &method, &path, range.is_some()).await;
    lock(&w.log)[at].status = Some(resp.status().as_u16());
    resp
}

async fn handle(w: &Wrap, req: Request, method: &str, path: &str, ranged: bool) -> Response {
    let mut req = req;
    // Mounts.
    if method == "POST" && path.contains("/blobs/uploads/") && path.contains("mount=") {
        match *lock(&w.faults.mount) {
            MountMode::Pass => {}
            MountMode::Refuse => {
                return (
                    StatusCode::FORBIDDEN,
                    [("content-type", "application/json")],
                    r#"{"errors":[{"code":"DENIED","message":"mount refused by the test"}]}"#,
                )
                    .into_response();
            }
            MountMode::Decline => {
                let plain = path.split('?').next().unwrap_or_default().to_owned();
                *req.uri_mut() = plain.parse().expect("uri");
            }
        }
    }
    if method == "GET" && path.contains("/tags/list") {
        if let Some(status) = *lock(&w.faults.tags_list) {
            let status = StatusCode::from_u16(status).expect("a status");
            return (status, "not what a registry says").into_response();
        }
    }
    // Manifest PUTs: everything they reference must already be there.
    if method == "PUT" && path.contains("/manifests/") {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, 8 << 20).await.expect("body");
        check_references(w, path, &bytes).await;
        req = Request::from_parts(parts, Body::from(bytes));
    }
    let resp = w.inner.clone().oneshot(req).await.expect("infallible");

    // Blob GETs.
    let Some(digest) = blob_get_digest(method, path) else {
        return resp;
    };
    if resp.status() != StatusCode::OK {
        return resp;
    }
    if lock(&w.faults.corrupt).as_deref() == Some(digest) {
        let (parts, body) = resp.into_parts();
        let flipped = body.into_data_stream().enumerate().map(|(i, chunk)| {
            chunk.map(|b| {
                if i == 0 && !b.is_empty() {
                    let mut v = b.to_vec();
                    v[0] ^= 0xff;
                    Bytes::from(v)
                } else {
                    b
                }
            })
        });
        return Response::from_parts(parts, Body::from_stream(flipped));
    }
    let cut = {
        let mut c = lock(&w.faults.cut_once);
        match c.as_ref() {
            Some((d, n)) if d == digest && !ranged => {
                let n = *n;
                *c = None;
                Some(n)
            }
            _ => None,
        }
    };
    if let Some(n) = cut {
        let (parts, body) = resp.into_parts();
        return Response::from_parts(parts, Body::from_stream(cut_after(body, n)));
    }
    resp
}

/// The digest of `GET /v2/<name>/blobs/<digest>`.
fn blob_get_digest<'a>(method: &str, path: &'a str) -> Option<&'a str> {
    if method != "GET" {
        return None;
    }
    let (_, digest) = path.split_once("/blobs/")?;
    (!digest.starts_with("uploads")).then_some(digest)
}

/// The body's first `n` bytes, a pause (so they leave the server's buffer), then an error: the
/// server aborts the response, the client sees a broken body.
fn cut_after(
    body: Body,
    n: usize,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(
        (body.into_data_stream(), n, false),
        |(mut inner, left, done)| async move {
            if done {
                return None;
            }
            if left == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let cut = std::io::Error::other("cut by the test");
                return Some((Err(cut), (inner, 0, true)));
            }
            match inner.next().await {
                Some(Ok(mut b)) => {
                    b.truncate(left);
                    let left = left - b.len();
                    Some((Ok(b), (inner, left, false)))
                }
                Some(Err(e)) => Some((Err(std::io::Error::other(e)), (inner, left, true))),
                None => None,
            }
        },
    )
}

async fn check_references(w: &Wrap, path: &str, body: &[u8]) {
    let Some((name, _reference)) = path
        .split('?')
        .next()
        .and_then(|p| p.strip_prefix("/v2/"))
        .and_then(|p| p.rsplit_once("/manifests/"))
    else {
        return;
    };
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let mut wanted: Vec<String> = Vec::new();
    let digests = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["digest"].as_str().map(str::to_owned))
            .collect()
    };
    for d in digests(&doc["manifests"]) {
        wanted.push(format!("/v2/{name}/manifests/{d}"));
    }
    if let Some(d) = doc["config"]["digest"].as_str() {
        wanted.push(format!("/v2/{name}/blobs/{d}"));
    }
    for d in digests(&doc["layers"]) {
        wanted.push(format!("/v2/{name}/blobs/{d}"));
    }
    // A tag PUT may be the one that stores its manifest (the engine sends a tagged root once,
    // with its first tag): what it references must be there, which is checked above.
    for p in wanted {
        let head = Request::builder()
            .method("HEAD")
            .uri(&p)
            .body(Body::empty())
            .expect("request");
        let status = w
            .inner
            .clone()
            .oneshot(head)
            .await
            .expect("infallible")
            .status();
        if status != StatusCode::OK {
            lock(&w.violations).push(format!(
                "PUT {path} arrived while HEAD {p} answered {status}"
            ));
        }
    }
}

impl Remote {
    /// The requests seen since the last call.
    pub fn take_log(&self) -> Vec<Seen> {
        std::mem::take(&mut *lock(&self.wrap.log))
    }

    pub fn violations(&self) -> Vec<String> {
        lock(&self.wrap.violations).clone()
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("url")
    }

    /// Single-POST upload.
    pub async fn push_blob(&self, repo: &str, b: &Blob) {
        let mut url = self.url(&format!("v2/{repo}/blobs/uploads/"));
        url.query_pairs_mut().append_pair("digest", &b.digest);
        let r = self
            .http
            .post(url)
            .header("content-type", "application/octet-stream")
            .body(b.bytes.clone())
            .send()
            .await
            .expect("POST blob");
        assert_eq!(r.status(), StatusCode::CREATED, "push blob {}", b.digest);
    }

    pub async fn push_manifest(&self, repo: &str, reference: &str, m: &Blob) {
        let r = self
            .http
            .put(self.url(&format!("v2/{repo}/manifests/{reference}")))
            .header("content-type", m.media_type)
            .body(m.bytes.clone())
            .send()
            .await
            .expect("PUT manifest");
        assert_eq!(r.status(), StatusCode::CREATED, "push manifest {reference}");
    }

    pub async fn push_image(&self, repo: &str, img: &Image) {
        for b in img.blobs() {
            self.push_blob(repo, b).await;
        }
        self.push_manifest(repo, &img.manifest.digest, &img.manifest)
            .await;
    }

    /// Every child, then the index under its digest and `tag`.
    pub async fn push_index(&self, repo: &str, index: &Index, tag: &str) {
        for c in &index.children {
            self.push_image(repo, c).await;
        }
        self.push_manifest(repo, &index.manifest.digest, &index.manifest)
            .await;
        self.push_manifest(repo, tag, &index.manifest).await;
    }

    pub async fn head(&self, path: &str) -> StatusCode {
        self.http
            .head(self.url(path))
            .send()
            .await
            .expect("HEAD")
            .status()
    }

    pub async fn has_blob(&self, repo: &str, digest: &str) -> bool {
        self.head(&format!("v2/{repo}/blobs/{digest}")).await == StatusCode::OK
    }

    pub async fn has_manifest(&self, repo: &str, reference: &str) -> bool {
        self.head(&format!("v2/{repo}/manifests/{reference}")).await == StatusCode::OK
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Option<String>, Bytes) {
        let r = self
            .http
            .get(self.url(path))
            .header("accept", format!("{OCI_INDEX}, {OCI_MANIFEST}"))
            .send()
            .await
            .expect("GET");
        let status = r.status();
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (status, ct, r.bytes().await.expect("body"))
    }

    /// A client of this registry as the worker builds one (stall timeout 5 s: a hang fails
    /// the test quickly instead of waiting the default minute).
    pub fn client(&self, limits: &HostLimits) -> Arc<RegistryClient> {
        let config = ClientConfig {
            read_timeout: Duration::from_secs(5),
            ..ClientConfig::default()
        };
        Arc::new(RegistryClient::new(
            config.build_http().expect("http client"),
            self.base.clone(),
            Credentials::Anonymous,
            &config,
            limits,
        ))
    }
}

// =============================================================================================
// the engine

/// A copy request with the worker's shape: `reference` of `src_repo` at `source` into
/// `dst_repo` at `target` with `tags`, Force, the worker's default limits.
pub fn request(
    source: &Remote,
    src_repo: &str,
    reference: &str,
    target: &Remote,
    dst_repo: &str,
    tags: &[&str],
) -> CopyRequest {
    let limits = HostLimits::new(4);
    CopyRequest {
        source: source.client(&limits),
        source_repository: repo(src_repo),
        reference: reference.to_owned(),
        target: target.client(&limits),
        targets: vec![CopyTarget {
            repository: repo(dst_repo),
            tags: tags.iter().map(|t| tag(t)).collect(),
        }],
        force: true,
        resumed: false,
        concurrency: 3,
        max_manifests: 50,
        max_layer_bytes: None,
        progress: Arc::new(Progress::default()),
        pinned: None,
        gate: None,
        sink: None,
    }
}

/// Runs the copy under a deadline (a hang fails the test rather than the whole run).
pub async fn copy(req: &CopyRequest) -> Result<CopyReport, CopyError> {
    tokio::time::timeout(Duration::from_secs(20), copy_image(req))
        .await
        .expect("the copy hung")
}
