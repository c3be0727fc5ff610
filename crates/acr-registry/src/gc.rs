//! Garbage collection: content files no repository references any more are deleted, online,
//! while pushes, mounts and imports go on.
//!
//! Mark and sweep. The roots are every repository's blob links and manifest revisions; each
//! stored manifest also marks what it references (config, layers, an index's children, a
//! subject), so a sparse index or a referrer keeps its content. Every file not marked is a
//! candidate, swept one by one under that blob's lock.
//!
//! Why nothing referenced is ever deleted: a blob gains a reference only through
//! `Disk::commit_blob` (rename + link), `Disk::mount_blob` (check + link) and
//! `Disk::put_manifest` (bytes + revision), each of which holds the blob's lock and, while a
//! collection runs, records the digest as *touched*. The collection turns the recording on
//! before it marks. So a reference made before the mark reached its repository is marked; one
//! made after is touched; and the sweep decides on a blob holding the same lock and skips it
//! when touched — the reference and the deletion cannot interleave. Upload sessions write to
//! `uploads/`, never to the content store, until their commit. On top of that, a file younger
//! than the grace period is kept, so a collection never races a writer that is not this
//! process (there is none: one process per data directory) or a clock step.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::storage::Disk;
use crate::{Registry, RegistryError};

/// How a collection runs.
#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Files modified more recently than this are kept.
    pub grace: Duration,
    /// Report what would be freed, delete nothing.
    pub dry_run: bool,
}

/// What a collection found and did.
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    /// Content files before the collection.
    pub blobs: u64,
    /// Bytes in them.
    pub bytes: u64,
    /// Files deleted (or, in a dry run, that would be).
    pub freed_blobs: u64,
    pub freed_bytes: u64,
    /// Unreferenced files kept because they are younger than the grace period or gained a
    /// reference while the collection ran.
    pub kept_recent: u64,
    /// The freed files' digests and sizes.
    pub freed: Vec<(String, u64)>,
}

impl Registry {
    /// Deletes the content no repository references (see the module doc). One collection runs
    /// at a time; a second caller waits for the first.
    pub async fn collect_garbage(&self, options: GcOptions) -> Result<GcReport, RegistryError> {
        let _one = self.inner.gc_lock.lock().await;
        let store = &self.inner.store;
        store.record_touches(true);
        let result = collect(self, options).await;
        store.record_touches(false);
        result
    }
}

async fn collect(registry: &Registry, options: GcOptions) -> Result<GcReport, RegistryError> {
    let inner = registry.inner.clone();
    let io = |what: &'static str| {
        move |e: std::io::Error| RegistryError::Io {
            path: what.into(),
            source: e,
        }
    };
    let (marked, blobs) = tokio::task::spawn_blocking(move || mark(&inner.store))
        .await
        .map_err(|e| RegistryError::Io {
            path: "garbage collection".into(),
            source: std::io::Error::other(e),
        })?
        .map_err(io("garbage collection: mark"))?;
    let mut report = GcReport {
        blobs: blobs.len() as u64,
        bytes: blobs.iter().map(|(_, _, n)| n).sum(),
        ..GcReport::default()
    };
    let store = &registry.inner.store;
    let now = SystemTime::now();
    for (digest, path, size) in blobs {
        if marked.contains(&digest) {
            continue;
        }
        let _held = store.blob_lock(&digest).lock().await;
        if store.was_touched(&digest) {
            report.kept_recent += 1;
            continue;
        }
        let modified = match tokio::fs::metadata(&path).await {
            Ok(m) => m.modified().unwrap_or(now),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io("garbage collection: stat")(e)),
        };
        if now.duration_since(modified).unwrap_or_default() < options.grace {
            report.kept_recent += 1;
            continue;
        }
        if !options.dry_run {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("garbage collection: delete")(e)),
            }
        }
        report.freed_blobs += 1;
        report.freed_bytes += size;
        report.freed.push((digest.to_string(), size));
    }
    Ok(report)
}

/// The referenced digests, and every stored content file.
#[allow(clippy::type_complexity)]
fn mark(
    store: &Disk,
) -> std::io::Result<(HashSet<Digest>, Vec<(Digest, std::path::PathBuf, u64)>)> {
    let mut marked = HashSet::new();
    for repo in store.catalog_blocking()? {
        let (links, revisions) = store.references_blocking(&repo)?;
        marked.extend(links);
        for m in revisions {
            if let Ok(bytes) = std::fs::read(store.blob_path(&m)) {
                marked.extend(referenced(&bytes));
            }
            marked.insert(m);
        }
    }
    let blobs = store.all_blobs_blocking()?;
    Ok((marked, blobs))
}

/// What a manifest references: config, layers, blobs, index children, subject.
fn referenced(bytes: &[u8]) -> Vec<Digest> {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut add = |v: &serde_json::Value| {
        if let Some(d) = v.get("digest").and_then(|d| d.as_str()) {
            if let Ok(d) = Digest::parse(d) {
                out.push(d);
            }
        }
    };
    for key in ["config", "subject"] {
        if let Some(v) = doc.get(key) {
            add(v);
        }
    }
    for key in ["layers", "manifests", "blobs"] {
        if let Some(list) = doc.get(key).and_then(|l| l.as_array()) {
            list.iter().for_each(&mut add);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::referenced;

    #[test]
    fn a_manifest_references_its_config_layers_children_and_subject() {
        let h = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let doc = serde_json::json!({
            "config": {"digest": h('a')},
            "layers": [{"digest": h('b')}, {"digest": "not a digest"}],
            "manifests": [{"digest": h('c')}],
            "subject": {"digest": h('d')},
        });
        let got: Vec<String> = referenced(doc.to_string().as_bytes())
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(got, vec![h('a'), h('d'), h('b'), h('c')]);
        assert!(referenced(b"not json").is_empty());
    }
}
