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
    /// serves it; the distribution API has no repository delete). `false` when it was not
    /// there.
    pub async fn delete_repository(&self, repo: &Repository) -> Result<bool, OciError> {
        let url = self.url(&format!("acr/v1/{repo}"))?;
        let resp = self
            .send(&Scopes::delete(repo), || Ok(self.http.delete(url.clone())))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self
                .error_from("DELETE", &format!("repository {repo}"), resp)
                .await),
        }
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
