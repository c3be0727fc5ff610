//! The source graph: manifests fetched by digest (an index's children concurrently), kept in
//! post-order and deduplicated, with the limits (depth, manifest count, layer size) checked
//! before anything is copied.

use std::collections::{BTreeMap, HashSet};

use acr_core::reference::Digest;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};

use super::{CopyError, CopyRequest};
use crate::client::Manifest;
use crate::error::OciError;
use crate::media::{classify, push_media_type, Descriptor, ManifestKind, ManifestParts};

/// Nested indexes deeper than this are refused.
const MAX_DEPTH: usize = 8;

/// A manifest of the graph.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) digest: Digest,
    pub(super) bytes: Bytes,
    pub(super) media_type: String,
    pub(super) children: Vec<Digest>,
    /// The index entries of an index (children with their platforms).
    pub(super) entries: Vec<Descriptor>,
    /// An image manifest's config.
    pub(super) config: Option<Descriptor>,
    pub(super) blobs: Vec<Descriptor>,
}

/// The manifests of an image in post-order (children first; the root last), deduplicated.
#[derive(Debug, Default)]
pub(super) struct Graph {
    pub(super) nodes: Vec<Node>,
    pub(super) index: BTreeMap<Digest, usize>,
}

impl Graph {
    pub(super) fn root(&self) -> Option<&Node> {
        self.nodes.last()
    }
    pub(super) fn get(&self, d: &Digest) -> Option<&Node> {
        self.index.get(d).map(|i| &self.nodes[*i])
    }
}

fn invalid_source(req: &CopyRequest, detail: String) -> CopyError {
    CopyError::Source(OciError::Invalid {
        registry: req.source.name().to_owned(),
        detail,
    })
}

/// Fetches the graph under `m` (children by digest, concurrently), appending in post-order.
/// Counts and limits are checked before any child is fetched.
pub(super) async fn walk(
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
            let mut digests = Vec::with_capacity(children.len());
            for c in &children {
                digests.push(parse_digest(&c.digest)?);
            }
            // Distinct manifests only: an index may list one child twice, and a child may
            // already be in the graph (under another index).
            let to_fetch: Vec<Digest> = {
                let mut seen = HashSet::new();
                digests
                    .iter()
                    .filter(|d| !graph.index.contains_key(*d) && seen.insert((*d).clone()))
                    .cloned()
                    .collect()
            };
            let known = graph.nodes.len() + to_fetch.len() + 1;
            if known > req.max_manifests {
                return Err(CopyError::TooManyManifests {
                    count: known,
                    limit: req.max_manifests,
                });
            }
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

/// Adds the digests of the sub-graph under `n` (itself included) to `into`.
pub(super) fn subgraph<'a>(graph: &'a Graph, n: &'a Node, into: &mut HashSet<&'a Digest>) {
    let mut stack = vec![n];
    while let Some(x) = stack.pop() {
        if into.insert(&x.digest) {
            stack.extend(x.children.iter().filter_map(|c| graph.get(c)));
        }
    }
}
