//! Deleting from a registry: what a registry deletion needs of the backend (manifest and blob
//! deletes, ACR's repository delete, the content of a repository found through the
//! distribution API) and removing one tag.

use acr_core::reference::{Digest, Repository};
use reqwest::StatusCode;
use serde::Deserialize;

use super::{read_limited, RegistryClient, Scopes};
use crate::error::OciError;
use crate::media::MANIFEST_ACCEPT;

impl RegistryClient {
    /// `DELETE /v2/<repo>/manifests/<digest>`; `false` when it was not there.
    pub async fn delete_manifest(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<bool, OciError> {
        let url = self.url(&format!("v2/{repo}/manifests/{digest}"))?;
        let resp = self
            .send(&Scopes::delete(repo), || {
                Ok(self
                    .http
                    .delete(url.clone())
                    .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self
                .error_from("DELETE", &format!("manifest {repo}@{digest}"), resp)
                .await),
        }
    }

    /// `DELETE /v2/<repo>/blobs/<digest>` (unlinks the blob from the repository); `false`
    /// when it was not there.
    pub async fn delete_blob(&self, repo: &Repository, digest: &Digest) -> Result<bool, OciError> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let resp = self
            .send(&Scopes::delete(repo), || Ok(self.http.delete(url.clone())))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self
                .error_from("DELETE", &format!("blob {repo}@{digest}"), resp)
                .await),
        }
    }

    /// ACR's `DELETE /acr/v1/<repo>`: the whole repository at once (the built-in registry
    /// serves it; the distribution API has no repository delete). Returns the manifests and
    /// tags deleted, or `None` when there was no such repository.
    pub async fn delete_repository(
        &self,
        repo: &Repository,
    ) -> Result<Option<(Vec<String>, Vec<String>)>, OciError> {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct Deleted {
            manifests_deleted: Vec<String>,
            tags_deleted: Vec<String>,
        }
        let url = self.url(&format!("acr/v1/{repo}"))?;
        let resp = self
            .send(&Scopes::delete(repo), || Ok(self.http.delete(url.clone())))
            .await?;
        match resp.status() {
            s if s.is_success() => {
                let body = read_limited(resp, 16 << 20)
                    .await
                    .map_err(|e| self.network(e))?;
                let d: Deleted = serde_json::from_slice(&body).unwrap_or_default();
                Ok(Some((d.manifests_deleted, d.tags_deleted)))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self
                .error_from("DELETE", &format!("repository {repo}"), resp)
                .await),
        }
    }

    /// Deletes what the distribution API lets us find of `repo` (a registry without a
    /// repository delete): every tagged manifest, every manifest of `known` (untagged ones a
    /// caller kept track of), their children, and the blobs they reference (unlinked from the
    /// repository; the registry's own garbage collection frees them). Returns the manifests
    /// and tags deleted.
    pub async fn delete_repository_content(
        &self,
        repo: &Repository,
        known: &[String],
    ) -> Result<(Vec<String>, Vec<String>), OciError> {
        use crate::media::{classify, ManifestKind, ManifestParts};
        use std::collections::BTreeSet;
        let tags = self.tags(repo).await?;
        let mut pending: Vec<String> = known.to_vec();
        pending.extend(tags.iter().cloned());
        let mut manifests: BTreeSet<Digest> = BTreeSet::new();
        let mut blobs: BTreeSet<Digest> = BTreeSet::new();
        while let Some(reference) = pending.pop() {
            let m = match self.get_manifest(repo, &reference).await {
                Ok(m) => m,
                Err(OciError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            if !manifests.insert(m.digest.clone()) {
                continue;
            }
            let Ok(parts) = serde_json::from_slice::<ManifestParts>(&m.bytes) else {
                continue;
            };
            match classify(m.content_type.as_deref(), &parts) {
                ManifestKind::Index => {
                    pending.extend(
                        parts
                            .manifests
                            .unwrap_or_default()
                            .into_iter()
                            .map(|c| c.digest),
                    );
                }
                _ => {
                    let descriptors = parts
                        .config
                        .into_iter()
                        .chain(parts.layers.unwrap_or_default())
                        .chain(parts.blobs.unwrap_or_default());
                    blobs.extend(descriptors.filter_map(|d| Digest::parse(&d.digest).ok()));
                }
            }
        }
        let mut deleted = Vec::new();
        for d in &manifests {
            if self.delete_manifest(repo, d).await? {
                deleted.push(d.to_string());
            }
        }
        for d in &blobs {
            self.delete_blob(repo, d).await?;
        }
        Ok((deleted, tags))
    }

    /// Removes one tag and nothing else. A registry that deletes tags answers
    /// `DELETE /v2/<repo>/manifests/<tag>`; on one that only deletes manifests (distribution
    /// 2.8), the manifest is deleted by digest (which removes its tags) and put back by digest
    /// and under its other tags. `false` when the tag did not exist.
    pub async fn untag(
        &self,
        repo: &Repository,
        tag: &str,
        deletes_tags: bool,
    ) -> Result<bool, OciError> {
        if deletes_tags {
            let url = self.url(&format!("v2/{repo}/manifests/{tag}"))?;
            let resp = self
                .send(&Scopes::delete(repo), || Ok(self.http.delete(url.clone())))
                .await?;
            return match resp.status() {
                s if s.is_success() => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(self
                    .error_from("DELETE", &format!("tag {repo}:{tag}"), resp)
                    .await),
            };
        }
        let m = match self.get_manifest(repo, tag).await {
            Ok(m) => m,
            Err(OciError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut others = Vec::new();
        for t in self.tags(repo).await? {
            if t == tag {
                continue;
            }
            if let Ok(Some(Some(d))) = self.head_manifest(repo, &t).await {
                if d == m.digest {
                    others.push(t);
                }
            }
        }
        let media_type = m
            .content_type
            .clone()
            .unwrap_or_else(|| crate::media::OCI_MANIFEST.to_owned());
        self.delete_manifest(repo, &m.digest).await?;
        self.put_manifest(repo, &m.digest.to_string(), &m.bytes, &media_type)
            .await?;
        for t in others {
            self.put_manifest(repo, &t, &m.bytes, &media_type).await?;
        }
        Ok(true)
    }
}
