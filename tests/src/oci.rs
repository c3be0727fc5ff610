//! A small distribution-API client for pushing test images and checking what arrived.
//!
//! Auth is discovered from `GET /v2/`: anonymous, Basic (credentials sent on every
//! request) or Bearer (a token is fetched from the challenge's realm for
//! `repository:<repo>:pull[,push]` with the credentials as Basic, and cached per scope).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{
    HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};
use tokio::sync::Mutex;

use crate::image::{Blob, TestImage, ALL_MANIFEST_TYPES};
use crate::util::{http_client, sha256_digest, Sha256};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: &str, password: &str) -> Self {
        Self {
            username: username.to_string(),
            password: password.to_string(),
        }
    }
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Clone, Debug)]
enum Scheme {
    Anonymous,
    Basic,
    Bearer { realm: String, service: String },
}

/// A manifest as read back from a registry.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    /// sha256 of the bytes as received (never the header).
    pub digest: String,
    pub media_type: String,
    pub bytes: Bytes,
    /// The registry's `Docker-Content-Digest` header, if any.
    pub header_digest: Option<String>,
}

impl FetchedManifest {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes).expect("manifest is JSON")
    }
}

/// Client for one registry at `http://127.0.0.1:PORT`.
pub struct OciClient {
    http: reqwest::Client,
    base: String,
    creds: Option<Credentials>,
    scheme: Mutex<Option<Scheme>>,
    tokens: Mutex<HashMap<String, String>>,
}

/// Parses `Bearer realm="…",service="…",scope="…"` (or `Basic realm="…"`) into (scheme, params).
pub fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_string());
        rest = remaining.trim_start_matches(',').trim();
    }
    (scheme.to_ascii_lowercase(), params)
}

/// Fetches a token from a Docker token server: `GET realm?service=…&scope=…` with optional
/// Basic credentials. Returns the `token` (or `access_token`) field.
pub async fn fetch_token(
    http: &reqwest::Client,
    realm: &str,
    service: &str,
    scopes: &[String],
    creds: Option<&Credentials>,
) -> Result<String> {
    let mut url = url::Url::parse(realm).context("token realm is a URL")?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("service", service);
        for s in scopes {
            q.append_pair("scope", s);
        }
        if let Some(c) = creds {
            q.append_pair("account", &c.username);
        }
    }
    let mut req = http.get(url);
    if let Some(c) = creds {
        req = req.header(AUTHORIZATION, c.basic_header());
    }
    let resp = req.send().await.context("token request")?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("token server answered {status}: {body}");
    }
    body.get("token")
        .or_else(|| body.get("access_token"))
        .and_then(|t| t.as_str())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("token response without token: {body}"))
}

impl OciClient {
    /// `base` like `http://127.0.0.1:5000` (no trailing slash needed).
    pub fn new(base: &str, creds: Option<Credentials>) -> Self {
        Self {
            http: http_client(),
            base: base.trim_end_matches('/').to_string(),
            creds,
            scheme: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn scheme(&self) -> Result<Scheme> {
        let mut guard = self.scheme.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let resp = self
            .http
            .get(format!("{}/v2/", self.base))
            .send()
            .await
            .context("GET /v2/")?;
        let scheme = if resp.status() == StatusCode::UNAUTHORIZED {
            let header = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let (name, params) = parse_challenge(&header);
            match name.as_str() {
                "basic" => Scheme::Basic,
                "bearer" => Scheme::Bearer {
                    realm: params.get("realm").cloned().unwrap_or_default(),
                    service: params.get("service").cloned().unwrap_or_default(),
                },
                _ => bail!("unknown challenge {header:?}"),
            }
        } else {
            Scheme::Anonymous
        };
        *guard = Some(scheme.clone());
        Ok(scheme)
    }

    /// The Authorization header value for `repo`, if any.
    async fn auth(&self, repo: &str, push: bool) -> Result<Option<String>> {
        match self.scheme().await? {
            Scheme::Anonymous => Ok(None),
            Scheme::Basic => Ok(self.creds.as_ref().map(Credentials::basic_header)),
            Scheme::Bearer { realm, service } => {
                let scope = format!(
                    "repository:{repo}:{}",
                    if push { "pull,push" } else { "pull" }
                );
                let mut tokens = self.tokens.lock().await;
                if let Some(t) = tokens.get(&scope) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let token = fetch_token(
                    &self.http,
                    &realm,
                    &service,
                    std::slice::from_ref(&scope),
                    self.creds.as_ref(),
                )
                .await?;
                tokens.insert(scope, token.clone());
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Forgets cached tokens (e.g. after the token server's expiry changed).
    pub async fn clear_tokens(&self) {
        self.tokens.lock().await.clear();
    }

    async fn request(
        &self,
        method: Method,
        url: &str,
        repo: &str,
        push: bool,
    ) -> Result<reqwest::RequestBuilder> {
        let mut req = self.http.request(method, url);
        if let Some(a) = self.auth(repo, push).await? {
            req = req.header(AUTHORIZATION, a);
        }
        Ok(req)
    }

    fn v2(&self, path: &str) -> String {
        format!("{}/v2/{}", self.base, path)
    }

    /// A request for `/v2/<repo>/<path>`, authorized to pull (or push to) `repo`.
    async fn repo_request(
        &self,
        method: Method,
        repo: &str,
        path: &str,
        push: bool,
    ) -> Result<reqwest::RequestBuilder> {
        self.request(method, &self.v2(&format!("{repo}/{path}")), repo, push)
            .await
    }

    /// `HEAD /v2/<repo>/<path>`: true on 200, false on 404, an error otherwise.
    async fn exists(&self, repo: &str, path: &str, accept: Option<&str>) -> Result<bool> {
        let mut req = self.repo_request(Method::HEAD, repo, path, false).await?;
        if let Some(a) = accept {
            req = req.header(ACCEPT, a);
        }
        let resp = req.send().await?;
        match resp.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => bail!("HEAD {repo}/{path}: {s}"),
        }
    }

    /// Uploads one blob unless the repository already has it (monolithic PUT, streamed).
    pub async fn push_blob(&self, repo: &str, blob: &Blob) -> Result<()> {
        if self.blob_exists(repo, &blob.digest).await? {
            return Ok(());
        }
        let resp = self
            .repo_request(Method::POST, repo, "blobs/uploads/", true)
            .await?
            .header(CONTENT_LENGTH, "0")
            .send()
            .await
            .context("start upload")?;
        if resp.status() != StatusCode::ACCEPTED {
            bail!(
                "start upload in {repo}: {} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("upload without Location"))?
            .to_string();
        let mut url = url::Url::parse(&format!("{}/", self.base))?
            .join(&location)
            .context("resolve upload Location")?;
        url.query_pairs_mut().append_pair("digest", &blob.digest);
        let body = match blob.bytes() {
            Some(b) => reqwest::Body::from(b.clone()),
            None => reqwest::Body::wrap_stream(blob.stream()),
        };
        let resp = self
            .request(Method::PUT, url.as_str(), repo, true)
            .await?
            .header(CONTENT_LENGTH, blob.size.to_string())
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await
            .with_context(|| format!("upload {}", blob.digest))?;
        if resp.status() != StatusCode::CREATED {
            bail!(
                "finish upload of {} to {repo}: {} {}",
                blob.digest,
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// PUTs manifest bytes under `reference` (tag or digest); returns the computed digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &Bytes,
    ) -> Result<String> {
        let resp = self
            .repo_request(Method::PUT, repo, &format!("manifests/{reference}"), true)
            .await?
            .header(CONTENT_TYPE, media_type)
            .body(bytes.clone())
            .send()
            .await
            .context("put manifest")?;
        if resp.status() != StatusCode::CREATED {
            bail!(
                "put manifest {repo}:{reference}: {} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(sha256_digest(bytes))
    }

    /// Pushes every blob, every child manifest (by digest) and the top manifest under `tag`.
    /// Returns the top digest.
    pub async fn push_image(&self, repo: &str, tag: &str, image: &TestImage) -> Result<String> {
        for blob in &image.blobs {
            self.push_blob(repo, blob).await?;
        }
        for child in &image.children {
            self.push_manifest(repo, &child.digest, &child.media_type, &child.bytes)
                .await?;
        }
        let digest = self
            .push_manifest(repo, tag, &image.top.media_type, &image.top.bytes)
            .await?;
        if digest != image.top.digest {
            bail!("pushed digest {digest} differs from {}", image.top.digest);
        }
        Ok(digest)
    }

    /// GETs a manifest by tag or digest. `None` on 404.
    pub async fn fetch_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<FetchedManifest>> {
        let resp = self
            .repo_request(Method::GET, repo, &format!("manifests/{reference}"), false)
            .await?
            .header(ACCEPT, ALL_MANIFEST_TYPES)
            .send()
            .await
            .context("get manifest")?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if resp.status() != StatusCode::OK {
            bail!(
                "get manifest {repo}:{reference}: {} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        Ok(Some(FetchedManifest {
            digest: sha256_digest(&bytes),
            media_type: header_str(&headers, CONTENT_TYPE.as_str()).unwrap_or_default(),
            header_digest: header_str(&headers, "docker-content-digest"),
            bytes,
        }))
    }

    /// The digest `repo:reference` resolves to, or `None`.
    pub async fn resolve(&self, repo: &str, reference: &str) -> Result<Option<String>> {
        Ok(self
            .fetch_manifest(repo, reference)
            .await?
            .map(|m| m.digest))
    }

    /// HEAD of a manifest by tag or digest.
    pub async fn manifest_exists(&self, repo: &str, reference: &str) -> Result<bool> {
        self.exists(
            repo,
            &format!("manifests/{reference}"),
            Some(ALL_MANIFEST_TYPES),
        )
        .await
    }

    /// HEAD of a blob in `repo` (docker-registry answers per repository).
    pub async fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool> {
        self.exists(repo, &format!("blobs/{digest}"), None).await
    }

    /// Streams a blob and returns (sha256 of the bytes received, length).
    pub async fn blob_digest(&self, repo: &str, digest: &str) -> Result<(String, u64)> {
        let resp = self
            .repo_request(Method::GET, repo, &format!("blobs/{digest}"), false)
            .await?
            .timeout(Duration::from_secs(300))
            .send()
            .await?;
        if resp.status() != StatusCode::OK {
            bail!("GET blob {repo}@{digest}: {}", resp.status());
        }
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            len += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok((hasher.finish(), len))
    }

    /// `GET` of a blob, with `Range` when given; the response as the registry sent it
    /// (redirects followed by the client's default policy).
    pub async fn get_blob_response(
        &self,
        repo: &str,
        digest: &str,
        range: Option<&str>,
    ) -> Result<reqwest::Response> {
        let mut req = self
            .repo_request(Method::GET, repo, &format!("blobs/{digest}"), false)
            .await?;
        if let Some(r) = range {
            req = req.header(reqwest::header::RANGE, r);
        }
        Ok(req.send().await?)
    }

    /// The repositories of the catalog (anonymous; every page), sorted.
    pub async fn catalog(&self) -> Result<Vec<String>> {
        let resp = self
            .http
            .get(format!("{}/v2/_catalog?n=100000", self.base))
            .send()
            .await?;
        if resp.status() != StatusCode::OK {
            bail!("_catalog: {}", resp.status());
        }
        let v: serde_json::Value = resp.json().await?;
        let mut repos: Vec<String> = v["repositories"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        repos.sort();
        Ok(repos)
    }

    /// The status of `GET /v2/<repo>/tags/list`.
    pub async fn tags_list_status(&self, repo: &str) -> Result<StatusCode> {
        Ok(self
            .repo_request(Method::GET, repo, "tags/list", false)
            .await?
            .send()
            .await?
            .status())
    }

    /// Tags of `repo` (empty when the repository does not exist).
    pub async fn tags_list(&self, repo: &str) -> Result<Vec<String>> {
        let resp = self
            .repo_request(Method::GET, repo, "tags/list", false)
            .await?
            .send()
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if resp.status() != StatusCode::OK {
            bail!("tags/list {repo}: {}", resp.status());
        }
        let v: serde_json::Value = resp.json().await?;
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        Ok(tags)
    }

    /// Checks that `repo` holds every manifest and blob of `image`, with identical digests,
    /// and (when given) that `tag` resolves to the top digest.
    pub async fn assert_has_image(&self, repo: &str, tag: Option<&str>, image: &TestImage) {
        if let Some(tag) = tag {
            let m = self
                .fetch_manifest(repo, tag)
                .await
                .expect("fetch manifest by tag")
                .unwrap_or_else(|| panic!("{repo}:{tag} not found in {}", self.base));
            assert_eq!(m.digest, image.digest(), "{repo}:{tag} digest");
            assert_eq!(m.media_type, image.media_type(), "{repo}:{tag} media type");
        }
        for want in std::iter::once(&image.top).chain(image.children.iter()) {
            let got = self
                .fetch_manifest(repo, &want.digest)
                .await
                .expect("fetch manifest by digest")
                .unwrap_or_else(|| panic!("{repo}@{} not found in {}", want.digest, self.base));
            assert_eq!(got.digest, want.digest, "{repo}@{} digest", want.digest);
            assert_eq!(got.bytes, want.bytes, "{repo}@{} bytes", want.digest);
            assert_eq!(
                got.media_type, want.media_type,
                "{repo}@{} media type",
                want.digest
            );
        }
        for blob in &image.blobs {
            assert!(
                self.blob_exists(repo, &blob.digest)
                    .await
                    .expect("HEAD blob"),
                "blob {} missing from {repo} in {}",
                blob.digest,
                self.base
            );
        }
    }

    /// Checks that `repo` holds no manifest and no blob of `image`.
    pub async fn assert_has_none_of(&self, repo: &str, image: &TestImage) {
        for d in image.manifest_digests() {
            assert!(
                !self.manifest_exists(repo, &d).await.expect("HEAD manifest"),
                "manifest {d} unexpectedly present in {repo}"
            );
        }
        for d in image.blob_digests() {
            assert!(
                !self.blob_exists(repo, &d).await.expect("HEAD blob"),
                "blob {d} unexpectedly present in {repo}"
            );
        }
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::parse_challenge;

    #[test]
    fn parses_bearer_challenge() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:1/token",service="svc",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "http://127.0.0.1:1/token");
        assert_eq!(p["service"], "svc");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
    }
}
