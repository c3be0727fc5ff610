//! Reading a registry's listings and deleting from it: what a registry deletion needs of the
//! backend (catalog, tags, manifest and blob deletes, ACR's repository delete), and small
//! reads (a config blob for its platform).

use acr_core::reference::{Digest, Repository};
use reqwest::header::LINK;
use reqwest::StatusCode;
use serde::Deserialize;

use crate::client::{read_limited, RegistryClient, Scopes};
use crate::error::OciError;
use crate::media::MANIFEST_ACCEPT;
use reqwest::header::HeaderMap;
use reqwest::{Method, Response};

/// Entries asked for per catalog or tag page.
const PAGE: usize = 1000;

#[derive(Deserialize)]
struct CatalogPage {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct TagsPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// The `last` of a `Link: <…?last=x&n=…>; rel="next"` header.
fn next_last(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get(LINK)?.to_str().ok()?;
    let target = link.split(';').next()?.trim().trim_start_matches('<');
    let target = target.trim_end_matches('>');
    let query = target.split_once('?')?.1;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "last")
        .map(|(_, v)| v.into_owned())
}

impl RegistryClient {
    /// One request passed through (the login servers' `/v2` and `/acr/v1`): `path_and_query`
    /// is relative to the registry root, `headers` are the ones to send (no `Authorization`,
    /// no hop-by-hop); the client's credentials authorize it for `scopes`. A request without a
    /// body is retried like any other (one 401 round trip, transient failures); one with a
    /// streamed body is sent once, after the authorization for `scopes` is ready. No read
    /// timeout: the caller streams the answer at its client's pace.
    pub async fn forward(
        &self,
        scopes: &Scopes,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: Option<reqwest::Body>,
    ) -> Result<Response, OciError> {
        let url = self.url(path_and_query.trim_start_matches('/'))?;
        let http = self.upload_http();
        match body {
            None => {
                self.send(scopes, || {
                    Ok(http
                        .request(method.clone(), url.clone())
                        .headers(headers.clone()))
                })
                .await
            }
            Some(body) => {
                if !self.auth_ready(scopes) {
                    // Learns the challenge and fetches the token for `scopes`.
                    let ping = self.url("v2/")?;
                    let _ = self.send(scopes, || Ok(http.get(ping.clone()))).await?;
                }
                let rb = http.request(method, url).headers(headers).body(body);
                self.authorize(rb, scopes)
                    .send()
                    .await
                    .map_err(|e| self.network(e))
            }
        }
    }

    /// Every repository of the catalog whose name starts with `prefix` (e.g. `myreg/`),
    /// following `Link` pages.
    pub async fn catalog_with_prefix(&self, prefix: &str) -> Result<Vec<String>, OciError> {
        let mut out = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let mut url = self.url("v2/_catalog")?;
            url.query_pairs_mut().append_pair("n", &PAGE.to_string());
            if let Some(l) = &last {
                url.query_pairs_mut().append_pair("last", l);
            }
            let resp = self
                .send(&Scopes::catalog(), || Ok(self.http.get(url.clone())))
                .await?;
            if !resp.status().is_success() {
                return Err(self.error_from("GET", "the catalog", resp).await);
            }
            let next = next_last(resp.headers());
            let body = read_limited(resp, 16 << 20)
                .await
                .map_err(|e| self.network(e))?;
            let page: CatalogPage =
                serde_json::from_slice(&body).map_err(|e| OciError::Invalid {
                    registry: self.name().to_owned(),
                    detail: format!("the catalog is not valid JSON: {e}"),
                })?;
            let repos = page.repositories.unwrap_or_default();
            let progressed = repos.last().cloned();
            out.extend(repos.into_iter().filter(|r| r.starts_with(prefix)));
            match (next, progressed) {
                (Some(n), Some(_)) if Some(&n) != last.as_ref() => last = Some(n),
                _ => break,
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The tags of `repo` (empty when the repository is unknown).
    pub async fn tags(&self, repo: &Repository) -> Result<Vec<String>, OciError> {
        let mut out = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let mut url = self.url(&format!("v2/{repo}/tags/list"))?;
            url.query_pairs_mut().append_pair("n", &PAGE.to_string());
            if let Some(l) = &last {
                url.query_pairs_mut().append_pair("last", l);
            }
            let resp = self
                .send(&Scopes::pull(repo), || Ok(self.http.get(url.clone())))
                .await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(out);
            }
            if !resp.status().is_success() {
                return Err(self
                    .error_from("GET", &format!("the tags of {repo}"), resp)
                    .await);
            }
            let next = next_last(resp.headers());
            let body = read_limited(resp, 16 << 20)
                .await
                .map_err(|e| self.network(e))?;
            let page: TagsPage = serde_json::from_slice(&body).map_err(|e| OciError::Invalid {
                registry: self.name().to_owned(),
                detail: format!("the tags of {repo} are not valid JSON: {e}"),
            })?;
            let tags = page.tags.unwrap_or_default();
            let progressed = tags.last().cloned();
            out.extend(tags);
            match (next, progressed) {
                (Some(n), Some(_)) if Some(&n) != last.as_ref() => last = Some(n),
                _ => break,
            }
        }
        Ok(out)
    }

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

    /// A small blob read whole (a config), at most `limit` bytes; `None` when it is missing
    /// or larger. The digest is verified.
    pub async fn small_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, OciError> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let resp = self
            .send(&Scopes::pull(repo), || Ok(self.http.get(url.clone())))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self
                .error_from("GET", &format!("blob {repo}@{digest}"), resp)
                .await);
        }
        if resp.content_length().is_some_and(|l| l > limit as u64) {
            return Ok(None);
        }
        let bytes = read_limited(resp, limit + 1)
            .await
            .map_err(|e| self.network(e))?;
        if bytes.len() > limit {
            return Ok(None);
        }
        let actual = crate::client::digest_of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(OciError::DigestMismatch {
                registry: self.name().to_owned(),
                what: format!("blob {repo}@{digest}"),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::next_last;
    use reqwest::header::{HeaderMap, HeaderValue, LINK};

    #[test]
    fn reads_the_next_page_from_link() {
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            HeaderValue::from_static("</v2/_catalog?last=a%2Fb&n=1000>; rel=\"next\""),
        );
        assert_eq!(next_last(&h).as_deref(), Some("a/b"));
        assert_eq!(next_last(&HeaderMap::new()), None);
    }
}
