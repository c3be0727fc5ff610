//! What the owner of a copy asks for and gets back: the request, the gate it keeps its
//! promises at, the error (by side), the live progress counters, the report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use acr_core::reference::{Digest, Repository, Tag};
use acr_core::wire::ImportProgress;
use futures::future::BoxFuture;

use crate::client::RegistryClient;
use crate::error::OciError;
use crate::media::Descriptor;

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
    /// `target`'s blob store in this process (the built-in registry): blobs read from the
    /// source are written there directly instead of through an HTTP upload. Manifests, tags,
    /// HEADs and mounts still go through `target`.
    pub sink: Option<Arc<dyn BlobSink>>,
}

/// A target's blob store reached without HTTP: the same write path and checks as an upload
/// (the digest verified, nothing stored on any error), without the loopback hop and the
/// second hash.
pub trait BlobSink: Send + Sync + std::fmt::Debug {
    /// Stores `body`, exactly `size` bytes, as blob `digest` of `repository`. A body that is
    /// not `digest` fails with [`OciError::DigestMismatch`]; a body that fails fails the put.
    fn put_blob<'a>(
        &'a self,
        repository: &'a Repository,
        digest: &'a Digest,
        size: u64,
        body: BlobBody,
    ) -> BoxFuture<'a, Result<(), OciError>>;
}

/// A blob's bytes as a target reads them (from the source, size checked, resumed after breaks).
pub type BlobBody = futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>;

/// What the owner of a copy decides (the worker: it persists the resolved digest and confirms
/// its tag reservations in the store). A `CopyError` from either call stops the copy.
pub trait CopyGate: Send + Sync + std::fmt::Debug {
    /// The source reference resolved to `digest`; called once, before anything is copied.
    fn resolved<'a>(&'a self, digest: &'a Digest) -> BoxFuture<'a, Result<(), CopyError>>;
    /// Every manifest is in place at every target repository (a missing root of a repository
    /// that gets a tag comes with that tag) and the tags are next; an error means no tag, nor
    /// such a root, may be written.
    fn before_tags(&self) -> BoxFuture<'_, Result<(), CopyError>>;
}

/// Why a copy failed, and on which side.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("source registry")]
    Source(#[source] OciError),
    #[error("target registry")]
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

/// What the copy did.
#[derive(Debug, Clone)]
pub struct CopyReport {
    pub root_digest: Digest,
    pub media_type: String,
    /// Every manifest of the image, children before parents, the root last.
    pub manifests: Vec<CopiedManifest>,
}
