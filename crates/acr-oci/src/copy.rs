//! Graph copy: blobs → child manifests by digest → index → tags.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use acr_core::reference::{Algorithm, Digest, Repository, Tag};
use acr_core::wire::ImportProgress;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use sha2::{Digest as _, Sha256, Sha512};

use crate::client::{Manifest, RegistryClient, UploadStart};
use crate::error::OciError;
use crate::media::{classify, push_media_type, Descriptor, ManifestKind, ManifestParts};

/// Nested indexes deeper than this are refused.
const MAX_DEPTH: usize = 8;

/// A repository of the target and the tags to set there (none: untagged).
#[derive(Debug, Clone)]
pub struct CopyTarget {
    pub repository: Repository,
    pub tags: Vec<Tag>,
}

/// One import.
#[derive(Debug)]
pub struct CopyRequest<'a> {
    pub source: &'a RegistryClient,
    pub source_repository: Repository,
    /// Tag or digest at the source.
    pub reference: String,
    pub target: &'a RegistryClient,
    pub targets: Vec<CopyTarget>,
    /// Overwrite existing tags; when false, any existing tag fails the copy before it starts.
    pub force: bool,
    /// Blobs in flight at once.
    pub concurrency: usize,
    /// Manifests an image may have (an index and its children).
    pub max_manifests: usize,
    pub progress: Arc<Progress>,
}

/// Why a copy failed, and on which side.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("source: {0}")]
    Source(#[source] OciError),
    #[error("target: {0}")]
    Target(#[source] OciError),
    #[error("tag {repository}:{tag} already exists in the target")]
    TagExists { repository: Repository, tag: Tag },
    #[error("{0}")]
    Unsupported(String),
    #[error("the image has {count} manifests; at most {limit} are allowed")]
    TooManyManifests { count: usize, limit: usize },
}

/// Live counters of a copy, read by the worker's heartbeat.
#[derive(Debug, Default)]
pub struct Progress {
    pub manifests_total: AtomicU64,
    pub manifests_done: AtomicU64,
    pub blobs_total: AtomicU64,
    pub blobs_done: AtomicU64,
    pub bytes_total: AtomicU64,
    pub bytes_copied: AtomicU64,
    pub bytes_skipped: AtomicU64,
}

impl Progress {
    pub fn snapshot(&self) -> ImportProgress {
        ImportProgress {
            manifests_total: self.manifests_total.load(Ordering::Relaxed),
            manifests_done: self.manifests_done.load(Ordering::Relaxed),
            blobs_total: self.blobs_total.load(Ordering::Relaxed),
            blobs_done: self.blobs_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            bytes_copied: self.bytes_copied.load(Ordering::Relaxed),
            bytes_skipped: self.bytes_skipped.load(Ordering::Relaxed),
        }
    }

    /// Percent done, by bytes (manifests count when there are no bytes to move).
    pub fn percent(&self) -> f64 {
        let s = self.snapshot();
        let (done, total) = if s.bytes_total > 0 {
            (s.bytes_copied + s.bytes_skipped, s.bytes_total)
        } else {
            (s.manifests_done, s.manifests_total)
        };
        if total == 0 {
            0.0
        } else {
            ((done as f64 / total as f64) * 100.0).clamp(0.0, 99.0)
        }
    }
}

/// A manifest of the graph.
#[derive(Debug, Clone)]
struct Node {
    digest: Digest,
    bytes: Bytes,
    media_type: String,
    children: Vec<Digest>,
    blobs: Vec<Descriptor>,
}

/// The manifests of an image in post-order (children first; the root last), deduplicated.
#[derive(Debug, Default)]
struct Graph {
    nodes: Vec<Node>,
    index: BTreeMap<Digest, usize>,
}

impl Graph {
    fn root(&self) -> Option<&Node> {
        self.nodes.last()
    }
    fn get(&self, d: &Digest) -> Option<&Node> {
        self.index.get(d).map(|i| &self.nodes[*i])
    }
}

/// What the copy did.
#[derive(Debug, Clone)]
pub struct CopyReport {
    pub root_digest: Digest,
    pub media_type: String,
    pub manifests: usize,
}

/// Runs the copy.
pub async fn copy_image(req: &CopyRequest<'_>) -> Result<CopyReport, CopyError> {
    // NoForce fails before anything is read or written beyond a HEAD per tag.
    if !req.force {
        for t in &req.targets {
            for tag in &t.tags {
                if req
                    .target
                    .head_manifest(&t.repository, tag.as_str())
                    .await
                    .map_err(CopyError::Target)?
                    .is_some()
                {
                    return Err(CopyError::TagExists {
                        repository: t.repository.clone(),
                        tag: tag.clone(),
                    });
                }
            }
        }
    }

    let root = req
        .source
        .get_manifest(&req.source_repository, &req.reference)
        .await
        .map_err(CopyError::Source)?;
    let mut graph = Graph::default();
    walk(req, root, 0, &mut graph).await?;
    let root = graph
        .root()
        .cloned()
        .ok_or_else(|| CopyError::Unsupported("the image has no manifest".into()))?;
    if graph.nodes.len() > req.max_manifests {
        return Err(CopyError::TooManyManifests {
            count: graph.nodes.len(),
            limit: req.max_manifests,
        });
    }

    let mut primary: Option<Repository> = None;
    for t in req.targets.iter() {
        copy_into(req, &graph, &t.repository, primary.as_ref()).await?;
        for tag in &t.tags {
            req.target
                .put_manifest(&t.repository, tag.as_str(), &root.bytes, &root.media_type)
                .await
                .map_err(CopyError::Target)?;
        }
        primary.get_or_insert_with(|| t.repository.clone());
    }
    Ok(CopyReport {
        root_digest: root.digest.clone(),
        media_type: root.media_type.clone(),
        manifests: graph.nodes.len(),
    })
}

/// Fetches the graph under `m` (children by digest), appending in post-order.
async fn walk(
    req: &CopyRequest<'_>,
    m: Manifest,
    depth: usize,
    graph: &mut Graph,
) -> Result<(), CopyError> {
    if graph.index.contains_key(&m.digest) {
        return Ok(());
    }
    if depth > MAX_DEPTH {
        return Err(CopyError::Unsupported(format!(
            "the image nests indexes more than {MAX_DEPTH} levels deep"
        )));
    }
    let parts: ManifestParts = serde_json::from_slice(&m.bytes).map_err(|e| {
        CopyError::Source(OciError::Invalid {
            registry: req.source.name().to_owned(),
            detail: format!("manifest {} is not valid JSON: {e}", m.digest),
        })
    })?;
    let kind = classify(m.content_type.as_deref(), &parts);
    let media_type = push_media_type(m.content_type.as_deref(), &parts, kind);
    let parse_digest = |d: &str| {
        Digest::parse(d).map_err(|e| {
            CopyError::Source(OciError::Invalid {
                registry: req.source.name().to_owned(),
                detail: format!("manifest {} references an invalid digest: {e}", m.digest),
            })
        })
    };
    let mut node = Node {
        digest: m.digest.clone(),
        bytes: m.bytes.clone(),
        media_type,
        children: Vec::new(),
        blobs: Vec::new(),
    };
    match kind {
        ManifestKind::Schema1 => {
            return Err(CopyError::Unsupported(format!(
                "the source image {}:{} uses the Docker image manifest v2 schema 1 format, which cannot be imported; push it again as Docker v2 schema 2 or OCI",
                req.source_repository, req.reference
            )))
        }
        ManifestKind::Index => {
            for child in parts.manifests.unwrap_or_default() {
                let d = parse_digest(&child.digest)?;
                if graph.nodes.len() + node.children.len() > req.max_manifests {
                    // Stop fetching early; the count check after the walk reports the total.
                    node.children.push(d);
                    continue;
                }
                if !graph.index.contains_key(&d) {
                    let cm = req
                        .source
                        .get_manifest(&req.source_repository, &d.to_string())
                        .await
                        .map_err(CopyError::Source)?;
                    Box::pin(walk(req, cm, depth + 1, graph)).await?;
                }
                node.children.push(d);
            }
            if node.children.len() + graph.nodes.len() > req.max_manifests {
                return Err(CopyError::TooManyManifests {
                    count: node.children.len() + 1,
                    limit: req.max_manifests,
                });
            }
        }
        ManifestKind::Image => {
            let mut all: Vec<Descriptor> = Vec::new();
            all.extend(parts.config);
            all.extend(parts.layers.unwrap_or_default());
            all.extend(parts.blobs.unwrap_or_default());
            for b in all {
                parse_digest(&b.digest)?;
                if b.size < 0 {
                    return Err(CopyError::Source(OciError::Invalid {
                        registry: req.source.name().to_owned(),
                        detail: format!("manifest {} has a blob with a negative size", m.digest),
                    }));
                }
                if !b.is_non_distributable() {
                    node.blobs.push(b);
                }
            }
        }
    }
    graph.index.insert(node.digest.clone(), graph.nodes.len());
    graph.nodes.push(node);
    Ok(())
}

/// Copies every manifest the target repository lacks (and their blobs), without tags.
/// Blobs come from the source, or by mount from `primary` (an earlier target repository).
async fn copy_into(
    req: &CopyRequest<'_>,
    graph: &Graph,
    repo: &Repository,
    primary: Option<&Repository>,
) -> Result<(), CopyError> {
    let root = graph
        .root()
        .ok_or_else(|| CopyError::Unsupported("empty graph".into()))?;
    // Top-down: a manifest the target has brings its whole sub-graph with it.
    let mut needed: Vec<&Node> = Vec::new();
    let mut seen: HashSet<&Digest> = HashSet::new();
    let mut stack = vec![root];
    let p = &req.progress;
    p.manifests_total
        .fetch_add(graph.nodes.len() as u64, Ordering::Relaxed);
    while let Some(n) = stack.pop() {
        if !seen.insert(&n.digest) {
            continue;
        }
        let present = req
            .target
            .head_manifest(repo, &n.digest.to_string())
            .await
            .map_err(CopyError::Target)?
            .is_some();
        if present {
            let sub = subgraph_size(graph, n);
            p.manifests_done.fetch_add(sub.0, Ordering::Relaxed);
            continue;
        }
        needed.push(n);
        stack.extend(n.children.iter().filter_map(|c| graph.get(c)));
    }
    // Post-order of the graph restricted to what is needed.
    let needed_set: HashSet<&Digest> = needed.iter().map(|n| &n.digest).collect();
    let ordered: Vec<&Node> = graph
        .nodes
        .iter()
        .filter(|n| needed_set.contains(&n.digest))
        .collect();

    let mut blobs: BTreeMap<String, Descriptor> = BTreeMap::new();
    for n in &ordered {
        for b in &n.blobs {
            blobs.entry(b.digest.clone()).or_insert_with(|| b.clone());
        }
    }
    p.blobs_total
        .fetch_add(blobs.len() as u64, Ordering::Relaxed);
    p.bytes_total.fetch_add(
        blobs.values().map(|b| b.size.max(0) as u64).sum(),
        Ordering::Relaxed,
    );

    let (from_client, from_repo) = match primary {
        Some(prim) => (req.target, prim),
        None => (req.source, &req.source_repository),
    };
    let jobs: Vec<_> = blobs
        .into_values()
        .map(|d| {
            let progress = req.progress.clone();
            let from_repo = from_repo.clone();
            let repo = repo.clone();
            async move { copy_blob(from_client, &from_repo, req.target, &repo, &d, &progress).await }
        })
        .collect();
    stream::iter(jobs)
        .buffer_unordered(req.concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;

    for n in ordered {
        req.target
            .put_manifest(repo, &n.digest.to_string(), &n.bytes, &n.media_type)
            .await
            .map_err(CopyError::Target)?;
        p.manifests_done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Manifest count of the sub-graph under `n` (for progress).
fn subgraph_size(graph: &Graph, n: &Node) -> (u64,) {
    let mut seen = HashSet::new();
    let mut stack = vec![n];
    while let Some(x) = stack.pop() {
        if seen.insert(&x.digest) {
            stack.extend(x.children.iter().filter_map(|c| graph.get(c)));
        }
    }
    (seen.len() as u64,)
}

enum Hasher {
    S256(Sha256),
    S512(Sha512),
}

impl Hasher {
    fn new(a: Algorithm) -> Self {
        match a {
            Algorithm::Sha256 => Hasher::S256(Sha256::new()),
            Algorithm::Sha512 => Hasher::S512(Sha512::new()),
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::S256(h) => h.update(b),
            Hasher::S512(h) => h.update(b),
        }
    }
    fn finish(self, a: Algorithm) -> Digest {
        match self {
            Hasher::S256(h) => Digest::from_raw(a, &h.finalize()),
            Hasher::S512(h) => Digest::from_raw(a, &h.finalize()),
        }
    }
}

/// Copies one blob: skip when present, mount when possible, else stream GET → PUT verifying
/// size and digest on the way (a mismatch aborts the PUT before the registry commits it).
async fn copy_blob(
    src: &RegistryClient,
    src_repo: &Repository,
    dst: &RegistryClient,
    dst_repo: &Repository,
    desc: &Descriptor,
    progress: &Arc<Progress>,
) -> Result<(), CopyError> {
    let size = desc.size.max(0) as u64;
    let digest = Digest::parse(&desc.digest).map_err(|e| {
        CopyError::Source(OciError::Invalid {
            registry: src.name().to_owned(),
            detail: e,
        })
    })?;
    let done = |skipped: bool| {
        if skipped {
            progress.bytes_skipped.fetch_add(size, Ordering::Relaxed);
        }
        progress.blobs_done.fetch_add(1, Ordering::Relaxed);
    };
    if dst
        .head_blob(dst_repo, &digest)
        .await
        .map_err(CopyError::Target)?
    {
        done(true);
        return Ok(());
    }
    let mount = src.same_registry(dst).then_some((&digest, src_repo));
    let session = match dst
        .start_upload(dst_repo, mount)
        .await
        .map_err(CopyError::Target)?
    {
        UploadStart::Mounted => {
            tracing::debug!(%digest, from = %src_repo, to = %dst_repo, "blob mounted");
            done(true);
            return Ok(());
        }
        UploadStart::Session(url) => url,
    };

    let resp = match src.get_blob(src_repo, &digest).await {
        Ok(r) => r,
        Err(e) => {
            dst.cancel_upload(dst_repo, &session).await;
            return Err(CopyError::Source(e));
        }
    };
    if let Some(len) = resp.content_length() {
        if len != size {
            dst.cancel_upload(dst_repo, &session).await;
            return Err(CopyError::Source(OciError::SizeMismatch {
                registry: src.name().to_owned(),
                what: format!("blob {digest}"),
                expected: size,
                actual: len,
            }));
        }
    }

    // The stream reports source-side failures here so they are not blamed on the target.
    let failure: Arc<Mutex<Option<OciError>>> = Arc::new(Mutex::new(None));
    let verifier = VerifyState {
        inner: resp.bytes_stream().boxed(),
        hasher: Some(Hasher::new(digest.algorithm())),
        seen: 0,
        size,
        digest: digest.clone(),
        registry: src.name().to_owned(),
        progress: progress.clone(),
        failure: failure.clone(),
    };
    let body = reqwest::Body::wrap_stream(stream::try_unfold(verifier, VerifyState::next));
    let put = dst
        .put_upload(dst_repo, &session, &digest, size, body)
        .await;
    let source_failure = match failure.lock() {
        Ok(mut f) => f.take(),
        Err(p) => p.into_inner().take(),
    };
    match (source_failure, put) {
        (Some(e), _) => {
            dst.cancel_upload(dst_repo, &session).await;
            Err(CopyError::Source(e))
        }
        (None, Err(e)) => {
            dst.cancel_upload(dst_repo, &session).await;
            Err(CopyError::Target(e))
        }
        (None, Ok(())) => {
            done(false);
            Ok(())
        }
    }
}

struct VerifyState {
    inner: futures::stream::BoxStream<'static, Result<Bytes, reqwest::Error>>,
    hasher: Option<Hasher>,
    seen: u64,
    size: u64,
    digest: Digest,
    registry: String,
    progress: Arc<Progress>,
    failure: Arc<Mutex<Option<OciError>>>,
}

impl VerifyState {
    fn fail(&self, e: OciError) -> io::Error {
        let msg = e.to_string();
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(e);
        }
        io::Error::other(msg)
    }

    async fn next(mut self) -> Result<Option<(Bytes, Self)>, io::Error> {
        match self.inner.next().await {
            Some(Ok(chunk)) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.size {
                    let e = OciError::SizeMismatch {
                        registry: self.registry.clone(),
                        what: format!("blob {}", self.digest),
                        expected: self.size,
                        actual: self.seen,
                    };
                    return Err(self.fail(e));
                }
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&chunk);
                }
                // Verify before the last byte leaves: the registry must never receive a complete
                // body for a blob whose digest is wrong.
                if self.seen == self.size {
                    if let Err(e) = self.verify_digest() {
                        return Err(self.fail(e));
                    }
                }
                self.progress
                    .bytes_copied
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                Ok(Some((chunk, self)))
            }
            Some(Err(e)) => {
                let e = OciError::Network {
                    registry: self.registry.clone(),
                    detail: format!(
                        "reading blob {}: {}",
                        self.digest,
                        crate::error::describe_reqwest(e)
                    ),
                };
                Err(self.fail(e))
            }
            None => {
                if self.seen != self.size {
                    let e = OciError::SizeMismatch {
                        registry: self.registry.clone(),
                        what: format!("blob {}", self.digest),
                        expected: self.size,
                        actual: self.seen,
                    };
                    return Err(self.fail(e));
                }
                if let Err(e) = self.verify_digest() {
                    return Err(self.fail(e));
                }
                Ok(None)
            }
        }
    }

    /// Compares the finished hash with the descriptor (once; later calls pass).
    fn verify_digest(&mut self) -> Result<(), OciError> {
        let Some(h) = self.hasher.take() else {
            return Ok(());
        };
        let actual = h.finish(self.digest.algorithm());
        if actual == self.digest {
            Ok(())
        } else {
            Err(OciError::DigestMismatch {
                registry: self.registry.clone(),
                what: "blob".into(),
                expected: self.digest.to_string(),
                actual: actual.to_string(),
            })
        }
    }
}
