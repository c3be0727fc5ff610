//! Disk usage: in total (content files and upload files in progress) and per repository (the
//! distinct content it references: blobs linked to it and its manifests). Computed from the
//! files on each call (a directory walk; nothing to keep consistent).

use std::collections::BTreeSet;

use crate::digest::Digest;
use crate::{Registry, RegistryError};

/// The registry's disk usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Content files (blobs and manifests, each stored once).
    pub content_files: u64,
    pub content_bytes: u64,
    /// Upload sessions in progress.
    pub upload_bytes: u64,
}

impl Registry {
    /// What the registry holds on disk.
    pub async fn disk_usage(&self) -> Result<DiskUsage, RegistryError> {
        let inner = self.inner.clone();
        blocking(move || {
            let blobs = inner.store.all_blobs_blocking()?;
            let mut usage = DiskUsage {
                content_files: blobs.len() as u64,
                content_bytes: blobs.iter().map(|(_, _, n)| n).sum(),
                upload_bytes: 0,
            };
            match std::fs::read_dir(inner.store.uploads_dir()) {
                Ok(rd) => {
                    for e in rd.flatten() {
                        usage.upload_bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            Ok(usage)
        })
        .await
    }

    /// Bytes of the distinct content repository `repo` (its full name) references: its linked
    /// blobs and its manifests; `None` when there is no such repository.
    pub async fn repository_bytes(&self, repo: &str) -> Result<Option<u64>, RegistryError> {
        if !crate::names::valid_repository(repo) {
            return Ok(None);
        }
        let inner = self.inner.clone();
        let repo = repo.to_owned();
        blocking(move || {
            let (layers, manifests) = inner.store.references_blocking(&repo)?;
            if layers.is_empty() && manifests.is_empty() {
                return Ok(None);
            }
            let distinct: BTreeSet<Digest> = layers.into_iter().chain(manifests).collect();
            let mut bytes = 0;
            for d in &distinct {
                match std::fs::metadata(inner.store.blob_path(d)) {
                    Ok(m) => bytes += m.len(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(Some(bytes))
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, RegistryError> {
    let io = |source| RegistryError::Io {
        path: "disk usage".into(),
        source,
    };
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io(std::io::Error::other(e)))?
        .map_err(io)
}
