//! Reads: manifests (exact bytes under the 4 MiB cap, digest computed and checked against the
//! reference or `Docker-Content-Digest`), blob existence, blob streams and `Range` resumes,
//! small blobs read whole, tags and the catalog (following `Link` pages).

use acr_core::reference::{Algorithm, Digest, Repository};
use bytes::Bytes;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, LINK};
use reqwest::{Response, StatusCode};
use serde::Deserialize;

use super::{digest_of, read_limited, RegistryClient, Scopes};
use crate::error::OciError;
use crate::media::{MANIFEST_ACCEPT, MAX_MANIFEST_BYTES};

/// A fetched manifest: exact bytes, the Content-Type it came with, its computed digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Bytes,
    pub content_type: Option<String>,
    pub digest: Digest,
}

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
    /// GET a manifest (by tag or digest), verify it, keep its exact bytes.
    pub async fn get_manifest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<Manifest, OciError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let scopes = Scopes::pull(repo);
        let resp = self
            .send(&scopes, || {
                Ok(self.http.get(url.clone()).header(ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        let what = format!("manifest {repo}:{reference}");
        if !resp.status().is_success() {
            return Err(self.error_from("GET", &what, resp).await);
        }
        if resp
            .content_length()
            .is_some_and(|l| l > MAX_MANIFEST_BYTES as u64)
        {
            return Err(OciError::ManifestTooLarge {
                registry: self.name.clone(),
                what,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let header_digest = header_digest(resp.headers());
        let bytes = read_limited(resp, MAX_MANIFEST_BYTES + 1)
            .await
            .map_err(|e| self.network(e))?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(OciError::ManifestTooLarge {
                registry: self.name.clone(),
                what,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let wanted = Digest::parse(reference).ok();
        let algorithm = wanted
            .as_ref()
            .map(Digest::algorithm)
            .unwrap_or(Algorithm::Sha256);
        let digest = digest_of(algorithm, &bytes);
        if let Some(w) = wanted {
            if w != digest {
                return Err(OciError::DigestMismatch {
                    registry: self.name.clone(),
                    what,
                    expected: w.to_string(),
                    actual: digest.to_string(),
                });
            }
        } else if let Some(h) = header_digest.filter(|h| h.algorithm() == Algorithm::Sha256) {
            if h != digest {
                return Err(OciError::DigestMismatch {
                    registry: self.name.clone(),
                    what: format!("{what} (Docker-Content-Digest header)"),
                    expected: h.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        Ok(Manifest {
            bytes: Bytes::from(bytes),
            content_type,
            digest,
        })
    }

    /// Whether a manifest exists; returns its digest when the registry says it.
    pub async fn head_manifest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<Option<Option<Digest>>, OciError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let scopes = Scopes::pull(repo);
        let resp = self
            .send(&scopes, || {
                Ok(self.http.head(url.clone()).header(ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(header_digest(resp.headers()))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self
                .error_from("HEAD", &format!("manifest {repo}:{reference}"), resp)
                .await),
        }
    }

    /// Whether a blob exists.
    pub async fn head_blob(&self, repo: &Repository, digest: &Digest) -> Result<bool, OciError> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let scopes = Scopes::pull(repo);
        let resp = self
            .send(&scopes, || Ok(self.http.head(url.clone())))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self
                .error_from("HEAD", &format!("blob {repo}@{digest}"), resp)
                .await),
        }
    }

    /// GET a blob; the caller streams the body.
    pub async fn get_blob(&self, repo: &Repository, digest: &Digest) -> Result<Response, OciError> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let scopes = Scopes::pull(repo);
        let resp = self
            .send(&scopes, || Ok(self.http.get(url.clone())))
            .await?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self
                .error_from("GET", &format!("blob {repo}@{digest}"), resp)
                .await)
        }
    }

    /// GET `bytes=offset-` of a blob. `Ok(None)` when the registry ignored the Range (200).
    pub async fn get_blob_range(
        &self,
        repo: &Repository,
        digest: &Digest,
        offset: u64,
        size: u64,
    ) -> Result<Option<Response>, OciError> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let scopes = Scopes::pull(repo);
        let resp = self
            .send(&scopes, || {
                Ok(self
                    .http
                    .get(url.clone())
                    .header(reqwest::header::RANGE, format!("bytes={offset}-")))
            })
            .await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                let expected = format!("bytes {offset}-{}/{size}", size.saturating_sub(1));
                let got = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                if got != expected {
                    return Err(self.invalid(format!(
                        "the source answered a Range request for blob {digest} with Content-Range '{got}', expected '{expected}': the remote server may not be RFC 7233 compliant"
                    )));
                }
                Ok(Some(resp))
            }
            StatusCode::OK => Ok(None),
            StatusCode::RANGE_NOT_SATISFIABLE => Err(self.invalid(format!(
                "the source refused the range {offset}- of blob {digest} (416): the remote server may not be RFC 7233 compliant"
            ))),
            _ => Err(self
                .error_from("GET", &format!("blob {repo}@{digest}"), resp)
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

    /// Whether the registry says it does not know `repo` at all (its tag list answers 404
    /// `NAME_UNKNOWN`): such a repository holds no manifest and no tag. A repository found
    /// once is remembered (until the client's memory of them fills up and starts over), so
    /// asking costs one small request per repository, not one per copy. Any other answer,
    /// including a bare 404 or an error (the requests that follow meet it again if it
    /// matters), means "it may hold something".
    pub async fn repository_is_new(&self, repo: &Repository) -> bool {
        if self.known_repository(repo) {
            return false;
        }
        let sent = async {
            let mut url = self.url(&format!("v2/{repo}/tags/list"))?;
            url.query_pairs_mut().append_pair("n", "1");
            self.send(&Scopes::pull(repo), || Ok(self.http.get(url.clone())))
                .await
        };
        let resp = match sent.await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(registry = %self.name(), repository = %repo, error = %e, "no answer to whether the repository exists: its manifests get HEADs");
                return false;
            }
        };
        if resp.status().is_success() {
            self.remember_repository(repo);
            return false;
        }
        if resp.status() != StatusCode::NOT_FOUND {
            return false;
        }
        matches!(
            self.error_from("GET", &format!("the tags of {repo}"), resp).await,
            OciError::NotFound { code, .. } if code == "NAME_UNKNOWN"
        )
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
}

fn header_digest(h: &HeaderMap) -> Option<Digest> {
    h.get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| Digest::parse(s.trim()).ok())
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
