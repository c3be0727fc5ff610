//! Graph copy: blobs → child manifests by digest → index → tags.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use acr_core::reference::{Algorithm, Digest, Repository, Tag};
use acr_core::wire::ImportProgress;
use bytes::Bytes;
use futures::future::BoxFuture;
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
pub struct CopyRequest {
    pub source: Arc<RegistryClient>,
    pub source_repository: Repository,
    /// Tag or digest at the source.
    pub reference: String,
    pub target: Arc<RegistryClient>,
    pub targets: Vec<CopyTarget>,
    /// Overwrite existing tags; when false, any existing tag fails the copy before it starts.
    pub force: bool,
    /// An earlier attempt of this same import may have run (and pushed its tags) before it
    /// was interrupted: with `force` false, an existing tag that already points at the
    /// source's digest is then the earlier attempt's work, not a conflict.
    pub resumed: bool,
    /// Blobs in flight at once for this copy.
    pub concurrency: usize,
    /// Manifests an image may have (an index, its children, nested indexes).
    pub max_manifests: usize,
    /// Largest layer accepted (for sources given by address); `None`: no limit.
    pub max_layer_bytes: Option<u64>,
    pub progress: Arc<Progress>,
    /// The digest an earlier attempt of this import resolved `reference` to: copied instead
    /// of whatever the reference points at now.
    pub pinned: Option<Digest>,
    /// The owner's say at the two points where an import's promises are kept.
    pub gate: Option<Arc<dyn CopyGate>>,
}

/// What the owner of a copy decides (the worker: it persists the resolved digest and confirms
/// its tag reservations in the store). A `CopyError` from either call stops the copy.
pub trait CopyGate: Send + Sync + std::fmt::Debug {
    /// The source reference resolved to `digest`; called once, before anything is copied.
    fn resolved<'a>(&'a self, digest: &'a Digest) -> BoxFuture<'a, Result<(), CopyError>>;
    /// Every manifest is in place at every target repository and the tags are next; an error
    /// means no tag may be written.
    fn before_tags(&self) -> BoxFuture<'_, Result<(), CopyError>>;
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
    #[error("layer {digest} is {size} bytes; at most {limit} are allowed")]
    LayerTooLarge {
        digest: String,
        size: u64,
        limit: u64,
    },
    /// A target tag (or its whole repository, `tag` `None`) is locked against writes
    /// (`changeableAttributes.writeEnabled: false`) and the copy would move it.
    #[error("{repository}{} is locked against writes", tag.as_ref().map(|t| format!(":{t}")).unwrap_or_default())]
    Locked {
        repository: Repository,
        tag: Option<Tag>,
    },
    /// The owner withdrew this copy (its attempt no longer owns the operation): nothing more
    /// may be written.
    #[error("the copy was withdrawn: {0}")]
    Withdrawn(String),
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
    /// What the source reference resolved to (set once per attempt).
    pub source_digest: OnceLock<Digest>,
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
            source_digest: self.source_digest.get().map(Digest::to_string),
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
    /// The index entries of an index (children with their platforms).
    entries: Vec<Descriptor>,
    /// An image manifest's config.
    config: Option<Descriptor>,
    blobs: Vec<Descriptor>,
}

/// A manifest the copy wrote (or found) at the target, for the owner's records.
#[derive(Debug, Clone)]
pub struct CopiedManifest {
    pub digest: Digest,
    pub media_type: String,
    /// The manifest's own size.
    pub size: u64,
    /// An image manifest's config descriptor.
    pub config: Option<Descriptor>,
    /// The sizes of its blobs (config and layers; foreign layers not counted).
    pub blob_bytes: u64,
    /// An index's entries (children with their platforms).
    pub entries: Vec<Descriptor>,
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
    /// Every manifest of the image, children before parents, the root last.
    pub manifests: Vec<CopiedManifest>,
}

/// Runs the copy.
pub async fn copy_image(req: &CopyRequest) -> Result<CopyReport, CopyError> {
    // NoForce fails before anything is read or written beyond a HEAD per tag.
    let mut existing: Vec<(&CopyTarget, &Tag, Option<Digest>)> = Vec::new();
    if !req.force {
        for t in &req.targets {
            for tag in &t.tags {
                if let Some(digest) = req
                    .target
                    .head_manifest(&t.repository, tag.as_str())
                    .await
                    .map_err(CopyError::Target)?
                {
                    if !req.resumed {
                        return Err(CopyError::TagExists {
                            repository: t.repository.clone(),
                            tag: tag.clone(),
                        });
                    }
                    existing.push((t, tag, digest));
                }
            }
        }
    }

    // The reference is resolved once: children are fetched and tags written by digest, so a
    // source tag that moves meanwhile changes nothing here.
    let reference = match &req.pinned {
        Some(d) => d.to_string(),
        None => req.reference.clone(),
    };
    let root = req
        .source
        .get_manifest(&req.source_repository, &reference)
        .await
        .map_err(CopyError::Source)?;
    let _ = req.progress.source_digest.set(root.digest.clone());
    if let Some(gate) = &req.gate {
        gate.resolved(&root.digest).await?;
    }
    // A resumed copy: tags already at the source's digest were pushed by an earlier attempt
    // (tags move only after the whole graph is in place); any other existing tag conflicts.
    if let Some((t, tag, _)) = existing
        .iter()
        .find(|(_, _, d)| d.as_ref() != Some(&root.digest))
    {
        return Err(CopyError::TagExists {
            repository: t.repository.clone(),
            tag: (*tag).clone(),
        });
    }
    let started = std::time::Instant::now();
    let mut graph = Graph::default();
    walk(req, root, 0, &mut graph).await?;
    tracing::debug!(manifests = graph.nodes.len(), elapsed = ?started.elapsed(), "graph fetched");
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

    // Every repository gets the whole graph by digest before any tag moves.
    let mut primary: Option<Repository> = None;
    for t in req.targets.iter() {
        copy_into(req, &graph, &t.repository, primary.as_ref()).await?;
        primary.get_or_insert_with(|| t.repository.clone());
    }
    if let Some(gate) = &req.gate {
        gate.before_tags().await?;
    }
    for t in req.targets.iter() {
        for tag in &t.tags {
            req.target
                .put_manifest(&t.repository, tag.as_str(), &root.bytes, &root.media_type)
                .await
                .map_err(CopyError::Target)?;
        }
    }
    Ok(CopyReport {
        root_digest: root.digest.clone(),
        media_type: root.media_type.clone(),
        manifests: graph
            .nodes
            .iter()
            .map(|n| CopiedManifest {
                digest: n.digest.clone(),
                media_type: n.media_type.clone(),
                size: n.bytes.len() as u64,
                config: n.config.clone(),
                blob_bytes: n.blobs.iter().map(|b| b.size.max(0) as u64).sum(),
                entries: n.entries.clone(),
            })
            .collect(),
    })
}

fn invalid_source(req: &CopyRequest, detail: String) -> CopyError {
    CopyError::Source(OciError::Invalid {
        registry: req.source.name().to_owned(),
        detail,
    })
}

/// Fetches the graph under `m` (children by digest, concurrently), appending in post-order.
/// Counts and limits are checked before any child is fetched.
async fn walk(
    req: &CopyRequest,
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
        invalid_source(req, format!("manifest {} is not valid JSON: {e}", m.digest))
    })?;
    let kind = classify(m.content_type.as_deref(), &parts);
    let media_type = push_media_type(m.content_type.as_deref(), &parts, kind);
    let parse_digest = |d: &str| {
        Digest::parse(d).map_err(|e| {
            invalid_source(
                req,
                format!("manifest {} references an invalid digest: {e}", m.digest),
            )
        })
    };
    let mut node = Node {
        digest: m.digest.clone(),
        bytes: m.bytes.clone(),
        media_type,
        children: Vec::new(),
        entries: Vec::new(),
        config: parts.config.clone(),
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
            let children = parts.manifests.unwrap_or_default();
            let known = graph.nodes.len() + children.len() + 1;
            if known > req.max_manifests {
                return Err(CopyError::TooManyManifests {
                    count: known,
                    limit: req.max_manifests,
                });
            }
            let mut digests = Vec::with_capacity(children.len());
            for c in &children {
                digests.push(parse_digest(&c.digest)?);
            }
            let to_fetch: Vec<Digest> = {
                let mut seen = HashSet::new();
                digests
                    .iter()
                    .filter(|d| !graph.index.contains_key(*d) && seen.insert((*d).clone()))
                    .cloned()
                    .collect()
            };
            let fetches: Vec<_> = to_fetch
                .into_iter()
                .map(|d| {
                    let src = req.source.clone();
                    let repo = req.source_repository.clone();
                    async move { src.get_manifest(&repo, &d.to_string()).await }
                })
                .collect();
            let fetched: Vec<Manifest> = stream::iter(fetches)
                .buffered(req.concurrency.max(1))
                .try_collect()
                .await
                .map_err(CopyError::Source)?;
            for cm in fetched {
                Box::pin(walk(req, cm, depth + 1, graph)).await?;
            }
            node.children = digests;
            node.entries = children;
        }
        ManifestKind::Image => {
            let mut all: Vec<Descriptor> = Vec::new();
            all.extend(parts.config);
            all.extend(parts.layers.unwrap_or_default());
            all.extend(parts.blobs.unwrap_or_default());
            for b in all {
                parse_digest(&b.digest)?;
                if b.size < 0 {
                    return Err(invalid_source(
                        req,
                        format!("manifest {} has a blob with a negative size", m.digest),
                    ));
                }
                if b.is_non_distributable() {
                    continue;
                }
                if let Some(limit) = req.max_layer_bytes {
                    if b.size as u64 > limit {
                        return Err(CopyError::LayerTooLarge {
                            digest: b.digest.clone(),
                            size: b.size as u64,
                            limit,
                        });
                    }
                }
                node.blobs.push(b);
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
    req: &CopyRequest,
    graph: &Graph,
    repo: &Repository,
    primary: Option<&Repository>,
) -> Result<(), CopyError> {
    let root = graph
        .root()
        .ok_or_else(|| CopyError::Unsupported("empty graph".into()))?;
    // Top-down: a manifest the target has brings its whole sub-graph with it.
    let mut needed: HashSet<&Digest> = HashSet::new();
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
            p.manifests_done
                .fetch_add(subgraph_size(graph, n), Ordering::Relaxed);
            continue;
        }
        needed.insert(&n.digest);
        stack.extend(n.children.iter().filter_map(|c| graph.get(c)));
    }
    // Post-order of the graph restricted to what is needed.
    let ordered: Vec<&Node> = graph
        .nodes
        .iter()
        .filter(|n| needed.contains(&n.digest))
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
        Some(prim) => (&req.target, prim),
        None => (&req.source, &req.source_repository),
    };
    let op_slots = Arc::new(tokio::sync::Semaphore::new(req.concurrency.max(1)));
    let jobs: Vec<_> = blobs
        .into_values()
        .map(|d| {
            let blob = BlobCopy {
                src: from_client.clone(),
                src_repo: from_repo.clone(),
                dst: req.target.clone(),
                dst_repo: repo.clone(),
                progress: req.progress.clone(),
                op_slots: op_slots.clone(),
            };
            async move { blob.run(&d).await }
        })
        .collect();
    let started = std::time::Instant::now();
    // Twice the transfer bound: blobs whose bytes are all sent wait for the target's commit
    // without a transfer slot.
    stream::iter(jobs)
        .buffer_unordered(req.concurrency.max(1) * 2)
        .try_collect::<Vec<()>>()
        .await?;
    tracing::debug!(repository = %repo, elapsed = ?started.elapsed(), "blobs copied");

    for n in ordered {
        req.target
            .put_manifest(repo, &n.digest.to_string(), &n.bytes, &n.media_type)
            .await
            .map_err(CopyError::Target)?;
        p.manifests_done.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!(repository = %repo, elapsed = ?started.elapsed(), "manifests pushed");
    Ok(())
}

/// Manifest count of the sub-graph under `n` (for progress).
fn subgraph_size(graph: &Graph, n: &Node) -> u64 {
    let mut seen = HashSet::new();
    let mut stack = vec![n];
    while let Some(x) = stack.pop() {
        if seen.insert(&x.digest) {
            stack.extend(x.children.iter().filter_map(|c| graph.get(c)));
        }
    }
    seen.len() as u64
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

/// Attempts per blob when an attempt must start over (target refused the upload mode, token
/// expired mid-upload, source ignored Range after a broken connection, transient target error).
const BLOB_ATTEMPTS: u32 = 3;
/// Reconnections (Range resumes) per blob attempt.
const MAX_RESUMES: u32 = 8;
/// Stalls per blob attempt: the last one fails the blob (a source that keeps going silent is
/// not waited for `MAX_RESUMES` times the stall timeout).
const MAX_STALLS: u32 = 3;

/// How one attempt at a blob ended badly.
enum BlobFailure {
    /// Start the blob over (a fresh upload session).
    Restart(CopyError),
    Fatal(CopyError),
}

/// One blob: source → target.
struct BlobCopy {
    src: Arc<RegistryClient>,
    src_repo: Repository,
    dst: Arc<RegistryClient>,
    dst_repo: Repository,
    progress: Arc<Progress>,
    /// The operation's own bound on concurrent transfers.
    op_slots: Arc<tokio::sync::Semaphore>,
}

impl BlobCopy {
    async fn run(&self, desc: &Descriptor) -> Result<(), CopyError> {
        let size = desc.size.max(0) as u64;
        let digest = Digest::parse(&desc.digest).map_err(|e| {
            CopyError::Source(OciError::Invalid {
                registry: self.src.name().to_owned(),
                detail: e,
            })
        })?;
        let started = std::time::Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let counted = Arc::new(AtomicU64::new(0));
            let slots = self.acquire_slots().await?;
            match self.attempt(&digest, size, counted.clone(), slots).await {
                Ok(skipped) => {
                    if skipped {
                        self.progress
                            .bytes_skipped
                            .fetch_add(size, Ordering::Relaxed);
                    }
                    self.progress.blobs_done.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%digest, size, skipped, elapsed = ?started.elapsed(), "blob done");
                    return Ok(());
                }
                Err(BlobFailure::Restart(e)) if attempt < BLOB_ATTEMPTS => {
                    tracing::info!(%digest, attempt, error = %e, "blob copy starts over");
                    // This attempt's bytes will be copied again: do not count them twice.
                    self.progress
                        .bytes_copied
                        .fetch_sub(counted.load(Ordering::Relaxed), Ordering::Relaxed);
                }
                Err(BlobFailure::Restart(e)) | Err(BlobFailure::Fatal(e)) => {
                    self.progress
                        .bytes_copied
                        .fetch_sub(counted.load(Ordering::Relaxed), Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
    }

    /// The transfer slots of one attempt: the operation's own, then one per registry host
    /// (bounded across operations), always in name order so two copies in opposite
    /// directions cannot hold one slot each and wait for the other.
    async fn acquire_slots(&self) -> Result<Slots, CopyError> {
        let closed = |_| CopyError::Unsupported("the transfer limiter was closed".into());
        let (first, second) = if self.src.same_registry(&self.dst) {
            (self.src.transfer_slots().clone(), None)
        } else if self.src.name() <= self.dst.name() {
            (
                self.src.transfer_slots().clone(),
                Some(self.dst.transfer_slots().clone()),
            )
        } else {
            (
                self.dst.transfer_slots().clone(),
                Some(self.src.transfer_slots().clone()),
            )
        };
        let op = self
            .op_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(closed)?;
        let p1 = first.acquire_owned().await.map_err(closed)?;
        let p2 = match second {
            Some(s) => Some(s.acquire_owned().await.map_err(closed)?),
            None => None,
        };
        Ok(Slots(
            vec![Some(op), Some(p1), p2].into_iter().flatten().collect(),
        ))
    }

    /// One attempt. `Ok(true)`: nothing was transferred (present or mounted). `slots` are
    /// held until the source's last byte has gone into the upload: the target's commit
    /// (which may wait for its disk) does not keep another blob from starting.
    async fn attempt(
        &self,
        digest: &Digest,
        size: u64,
        counted: Arc<AtomicU64>,
        slots: Slots,
    ) -> Result<bool, BlobFailure> {
        let target_err = |e: OciError| {
            if e.is_transient() || matches!(e, OciError::Unauthorized { .. }) {
                BlobFailure::Restart(CopyError::Target(e))
            } else {
                BlobFailure::Fatal(CopyError::Target(e))
            }
        };
        if self
            .dst
            .head_blob(&self.dst_repo, digest)
            .await
            .map_err(target_err)?
        {
            return Ok(true);
        }
        let mut session = None;
        if self.src.same_registry(&self.dst) {
            match self
                .dst
                .start_upload(&self.dst_repo, Some((digest, &self.src_repo)))
                .await
            {
                Ok(UploadStart::Mounted) => {
                    tracing::debug!(%digest, from = %self.src_repo, to = %self.dst_repo, "blob mounted");
                    return Ok(true);
                }
                Ok(UploadStart::Session { url, min_chunk }) => session = Some((url, min_chunk)),
                Err(e) => tracing::debug!(%digest, error = %e, "mount failed: uploading instead"),
            }
        }
        let (url, min_chunk) = match session {
            Some(s) => s,
            None => match self
                .dst
                .start_upload(&self.dst_repo, None)
                .await
                .map_err(target_err)?
            {
                UploadStart::Session { url, min_chunk } => (url, min_chunk),
                UploadStart::Mounted => return Ok(true),
            },
        };

        let resp = match self.src.get_blob(&self.src_repo, digest).await {
            Ok(r) => r,
            Err(e) => {
                self.dst.cancel_upload(&self.dst_repo, &url).await;
                let restart = e.is_transient();
                let e = CopyError::Source(e);
                return Err(if restart {
                    BlobFailure::Restart(e)
                } else {
                    BlobFailure::Fatal(e)
                });
            }
        };
        if let Some(len) = resp.content_length() {
            if len != size {
                self.dst.cancel_upload(&self.dst_repo, &url).await;
                return Err(BlobFailure::Fatal(CopyError::Source(
                    OciError::SizeMismatch {
                        registry: self.src.name().to_owned(),
                        what: format!("blob {digest}"),
                        expected: size,
                        actual: len,
                    },
                )));
            }
        }

        // Source-side failures are recorded here so they are not blamed on the target.
        let failure: Arc<Mutex<Option<SourceFailure>>> = Arc::new(Mutex::new(None));
        let verifier = VerifyState {
            src: self.src.clone(),
            repo: self.src_repo.clone(),
            inner: resp.bytes_stream().boxed(),
            hasher: Some(Hasher::new(digest.algorithm())),
            seen: 0,
            since_connect: 0,
            resumes: 0,
            stalls: 0,
            size,
            digest: digest.clone(),
            progress: self.progress.clone(),
            counted,
            failure: failure.clone(),
            slots: Some(slots),
        };
        let body = stream::try_unfold(verifier, VerifyState::next);
        let put = if self.dst.chunked_only() {
            self.dst
                .upload_chunked(&self.dst_repo, &url, min_chunk, digest, Box::pin(body))
                .await
        } else {
            self.dst
                .put_upload(&self.dst_repo, &url, digest, size, body)
                .await
        };
        let source_failure = match failure.lock() {
            Ok(mut f) => f.take(),
            Err(p) => p.into_inner().take(),
        };
        match (source_failure, put) {
            (Some(f), _) => {
                self.dst.cancel_upload(&self.dst_repo, &url).await;
                let e = CopyError::Source(f.error);
                Err(if f.restart {
                    BlobFailure::Restart(e)
                } else {
                    BlobFailure::Fatal(e)
                })
            }
            (None, Err(e)) => {
                self.dst.cancel_upload(&self.dst_repo, &url).await;
                if let OciError::Status {
                    status: 411 | 413, ..
                } = e
                {
                    self.dst.set_chunked_only();
                    return Err(BlobFailure::Restart(CopyError::Target(e)));
                }
                Err(target_err(e))
            }
            (None, Ok(())) => Ok(false),
        }
    }
}

/// A source failure seen inside the body stream.
struct SourceFailure {
    error: OciError,
    /// Starting the blob over may help (the source ignored Range after a broken connection).
    restart: bool,
}

/// The body stream of an upload: source bytes, hashed and counted, resumed with Range after a
/// broken or stalled connection, verified before the last byte is forwarded.
struct VerifyState {
    src: Arc<RegistryClient>,
    repo: Repository,
    inner: futures::stream::BoxStream<'static, Result<Bytes, reqwest::Error>>,
    hasher: Option<Hasher>,
    seen: u64,
    /// Bytes since the current connection started (a reconnect that yields none is not retried).
    since_connect: u64,
    resumes: u32,
    /// Times the source sent nothing for the stall timeout.
    stalls: u32,
    size: u64,
    digest: Digest,
    progress: Arc<Progress>,
    /// Bytes this attempt added to `progress.bytes_copied`.
    counted: Arc<AtomicU64>,
    failure: Arc<Mutex<Option<SourceFailure>>>,
    /// Released when the stream ends (see [`BlobCopy::attempt`]).
    slots: Option<Slots>,
}

/// Transfer slots held by one blob attempt.
struct Slots(#[allow(dead_code)] Vec<tokio::sync::OwnedSemaphorePermit>);

impl VerifyState {
    fn fail(&self, error: OciError, restart: bool) -> io::Error {
        let msg = error.to_string();
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(SourceFailure { error, restart });
        }
        io::Error::other(msg)
    }

    fn network(&self, detail: String) -> OciError {
        OciError::Network {
            registry: self.src.name().to_owned(),
            detail,
        }
    }

    async fn next(mut self) -> Result<Option<(Bytes, Self)>, io::Error> {
        let stall = self.src.stall_timeout();
        loop {
            // The stall detector of the source side, per chunk (the client's read timeout may
            // fire first; both are stalls). The upload's own watch ignores this wait.
            let next = tokio::time::timeout(stall, self.inner.next()).await;
            let (broken, stalled) = match next {
                Ok(Some(Ok(chunk))) => return self.accept(chunk).map(|c| Some((c, self))),
                Err(_) => (self.stalled_message(stall), true),
                Ok(Some(Err(e))) if e.is_timeout() => (self.stalled_message(stall), true),
                Ok(Some(Err(e))) => (
                    format!(
                        "the connection broke while reading blob {} after {} of {} bytes: {}",
                        self.digest,
                        self.seen,
                        self.size,
                        crate::error::describe_reqwest(e)
                    ),
                    false,
                ),
                Ok(None) if self.seen < self.size => (
                    format!(
                        "the source ended blob {} after {} of {} bytes: unexpected length of body in response",
                        self.digest, self.seen, self.size
                    ),
                    false,
                ),
                Ok(None) => {
                    if let Err(e) = self.verify_digest() {
                        return Err(self.fail(e, false));
                    }
                    self.slots = None;
                    return Ok(None);
                }
            };
            if stalled {
                self.stalls += 1;
            }
            // Resume with Range, unless the last connection brought nothing new or the source
            // stalled too often.
            let exhausted =
                self.resumes >= MAX_RESUMES || (self.resumes > 0 && self.since_connect == 0);
            if stalled && (exhausted || self.stalls >= MAX_STALLS) {
                let e = OciError::Stalled {
                    registry: self.src.name().to_owned(),
                    detail: format!("{broken}; {}, so the copy gives up", self.why_not_resumed()),
                };
                return Err(self.fail(e, false));
            }
            if exhausted {
                return Err(self.fail(self.network(broken), false));
            }
            self.resumes += 1;
            self.since_connect = 0;
            tracing::info!(digest = %self.digest, offset = self.seen, resume = self.resumes, reason = %broken, "resuming blob download");
            match self
                .src
                .get_blob_range(&self.repo, &self.digest, self.seen, self.size)
                .await
            {
                Ok(Some(resp)) => self.inner = resp.bytes_stream().boxed(),
                Ok(None) => {
                    let e = self.network(format!(
                        "{broken}; the source ignored the Range request (the remote server may not be RFC 7233 compliant), so the blob starts over"
                    ));
                    return Err(self.fail(e, true));
                }
                Err(e) => return Err(self.fail(e, false)),
            }
        }
    }

    /// Why a stalled download is not resumed again.
    fn why_not_resumed(&self) -> String {
        if self.stalls >= MAX_STALLS {
            format!(
                "it stalled {} times on this blob (resumed with Range in between)",
                self.stalls
            )
        } else if self.resumes > 0 && self.since_connect == 0 {
            "the last resume brought no data".to_owned()
        } else {
            format!("it was resumed {} times already", self.resumes)
        }
    }

    fn stalled_message(&self, stall: std::time::Duration) -> String {
        format!(
            "the source stalled: no data for {} seconds while reading blob {} (after {} of {} bytes)",
            stall.as_secs(),
            self.digest,
            self.seen,
            self.size
        )
    }

    fn accept(&mut self, chunk: Bytes) -> Result<Bytes, io::Error> {
        self.seen += chunk.len() as u64;
        self.since_connect += chunk.len() as u64;
        if self.seen > self.size {
            let e = OciError::SizeMismatch {
                registry: self.src.name().to_owned(),
                what: format!("blob {}", self.digest),
                expected: self.size,
                actual: self.seen,
            };
            return Err(self.fail(e, false));
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&chunk);
        }
        // Verify before the last byte leaves: the registry must never receive a complete body
        // for a blob whose digest is wrong.
        if self.seen == self.size {
            if let Err(e) = self.verify_digest() {
                return Err(self.fail(e, false));
            }
            // The last chunk: hyper may not poll a body of known length again, so the
            // transfer slots go now, while the target commits.
            self.slots = None;
        }
        let n = chunk.len() as u64;
        self.progress.bytes_copied.fetch_add(n, Ordering::Relaxed);
        self.counted.fetch_add(n, Ordering::Relaxed);
        Ok(chunk)
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
                registry: self.src.name().to_owned(),
                what: "blob".into(),
                expected: self.digest.to_string(),
                actual: actual.to_string(),
            })
        }
    }
}
