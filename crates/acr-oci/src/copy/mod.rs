//! Graph copy: blobs → child manifests by digest → index (by digest, or with its first tag)
//! → tags.
//!
//! - `request`: what the owner asks ([`CopyRequest`], [`CopyTarget`], [`CopyGate`]) and gets
//!   back ([`CopyReport`], [`CopyError`], the live [`Progress`]);
//! - `graph`: the source graph fetched once, children by digest, limits checked while walking;
//! - this module: [`copy_image`] (NoForce check, resolve once, walk, copy into every target
//!   repository by digest, then tags; the root of a repository that gets a tag is stored by
//!   that tag's PUT) and the per-repository copy (a repository the target does not know gets
//!   no HEADs; otherwise skip present sub-graphs, HEADs level by level; dedupe blobs;
//!   manifests by height with children first);
//! - `blob`: one blob source → target (presence check, mount, session, upload; restarts;
//!   transfer slots);
//! - `verify`: the upload's body stream (hash and size checked before the last byte leaves,
//!   `Range` resumes after a broken or stalled download).

mod blob;
mod graph;
mod request;
mod verify;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use acr_core::reference::{Digest, Repository, Tag};
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::media::Descriptor;
use blob::BlobCopy;
use graph::{subgraph, walk, Graph, Node};

pub use request::{
    BlobBody, BlobSink, CopiedManifest, CopyError, CopyGate, CopyReport, CopyRequest, CopyTarget,
    Progress,
};

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

    // Every repository gets the whole graph by digest before any tag moves; the root of a
    // repository that gets a tag comes with its first tag (one PUT, not two).
    let mut primary: Option<Repository> = None;
    let mut deferred = Vec::with_capacity(req.targets.len());
    for t in req.targets.iter() {
        let tagged = !t.tags.is_empty();
        deferred.push(copy_into(req, &graph, &t.repository, primary.as_ref(), tagged).await?);
        primary.get_or_insert_with(|| t.repository.clone());
    }
    if let Some(gate) = &req.gate {
        gate.before_tags().await?;
    }
    for (t, root_deferred) in req.targets.iter().zip(deferred) {
        for tag in &t.tags {
            req.target
                .put_manifest(&t.repository, tag.as_str(), &root.bytes, &root.media_type)
                .await
                .map_err(CopyError::Target)?;
        }
        if root_deferred {
            req.progress.manifests_done.fetch_add(1, Ordering::Relaxed);
            acr_core::metrics::manifests(true, 1);
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

/// Copies every manifest the target repository lacks (and their blobs), without tags.
/// Blobs come from the source, or by mount from `primary` (an earlier target repository).
/// With `tagged` (the repository gets a tag next), a missing root is left for its first tag's
/// PUT, which stores it; the answer says whether it was (to be counted done then).
async fn copy_into(
    req: &CopyRequest,
    graph: &Graph,
    repo: &Repository,
    primary: Option<&Repository>,
    tagged: bool,
) -> Result<bool, CopyError> {
    let root = graph
        .root()
        .ok_or_else(|| CopyError::Unsupported("empty graph".into()))?;
    // Top-down: a manifest the target has brings its whole sub-graph with it.
    let mut needed: HashSet<&Digest> = HashSet::new();
    let mut seen: HashSet<&Digest> = HashSet::new();
    // Manifests the target has, with everything under them: each counted done once, however
    // many present manifests share it.
    let mut present_below: HashSet<&Digest> = HashSet::new();
    let p = &req.progress;
    p.manifests_total
        .fetch_add(graph.nodes.len() as u64, Ordering::Relaxed);
    // A repository the target does not know holds no manifest: one request instead of a HEAD
    // per manifest.
    let fresh = req.target.repository_is_new(repo).await;
    if fresh {
        needed.extend(graph.nodes.iter().map(|n| &n.digest));
    }
    // Level by level, each level's HEADs at once: an index's children cost one round trip.
    let mut level = if fresh { Vec::new() } else { vec![root] };
    while !level.is_empty() {
        level.retain(|n| seen.insert(&n.digest));
        // Collected first: a lazy `Map` of closures inside the stream makes the future not
        // provably `Send` for the worker's `spawn` (a higher-ranked lifetime).
        let heads: Vec<_> = level
            .iter()
            .map(|&n| async move {
                let present = req
                    .target
                    .head_manifest(repo, &n.digest.to_string())
                    .await
                    .map_err(CopyError::Target)?
                    .is_some();
                Ok::<_, CopyError>((n, present))
            })
            .collect();
        let answers = stream::iter(heads)
            .buffered(req.concurrency.max(1))
            .try_collect::<Vec<_>>()
            .await?;
        let mut next = Vec::new();
        for (n, present) in answers {
            if present {
                subgraph(graph, n, &mut present_below);
            } else {
                needed.insert(&n.digest);
                next.extend(n.children.iter().filter_map(|c| graph.get(c)));
            }
        }
        level = next;
    }
    let already = present_below
        .iter()
        .filter(|d| !needed.contains(*d))
        .count();
    p.manifests_done
        .fetch_add(already as u64, Ordering::Relaxed);
    acr_core::metrics::manifests(false, already as u64);
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
    // Into the in-process sink only what comes from another registry (a mount stays a mount).
    let sink = req
        .sink
        .clone()
        .filter(|_| !from_client.same_registry(&req.target));
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
                sink: sink.clone(),
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

    // Children before parents: manifests of one height (0 = images, an index one more than
    // its highest child) go up together, each height after the one below it.
    let mut heights: BTreeMap<&Digest, usize> = BTreeMap::new();
    for n in &ordered {
        let h = n
            .children
            .iter()
            .filter_map(|c| heights.get(c).map(|h| h + 1))
            .max()
            .unwrap_or(0);
        heights.insert(&n.digest, h);
    }
    let top = heights.values().copied().max().unwrap_or(0);
    let root_deferred = tagged && needed.contains(&root.digest);
    for h in 0..=top {
        let puts: Vec<_> = ordered
            .iter()
            .filter(|n| heights.get(&n.digest) == Some(&h))
            .filter(|n| !(root_deferred && n.digest == root.digest))
            .map(|&n| async move {
                req.target
                    .put_manifest(repo, &n.digest.to_string(), &n.bytes, &n.media_type)
                    .await
                    .map_err(CopyError::Target)?;
                p.manifests_done.fetch_add(1, Ordering::Relaxed);
                acr_core::metrics::manifests(true, 1);
                Ok::<_, CopyError>(())
            })
            .collect();
        stream::iter(puts)
            .buffer_unordered(req.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
    }
    tracing::debug!(repository = %repo, elapsed = ?started.elapsed(), "manifests pushed");
    Ok(root_deferred)
}
