//! A distribution-API client for one registry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use acr_core::import::RegistryAddress;
use acr_core::reference::{Algorithm, Digest, Repository};
use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{
    HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest as _, Sha256, Sha512};
use tokio::sync::Semaphore;
use url::Url;

use crate::auth::{parse_challenge, Challenge, TokenResponse};
use crate::error::{describe_reqwest, OciError};
use crate::media::{MANIFEST_ACCEPT, MAX_MANIFEST_BYTES};
use crate::netguard::{check_url, find_refusal, AddressRefused, NetworkPolicy};

/// Settings shared by every registry client of a process.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` entries reached over plain HTTP (loopback always is).
    pub insecure_registries: Vec<String>,
    pub connect_timeout: Duration,
    /// No byte for this long on a response body aborts it (the stall detector).
    pub read_timeout: Duration,
    /// Attempts per request for transient failures (network, 408, 429, 5xx).
    pub max_attempts: u32,
    /// Blob transfers in flight per registry host, across all operations of the process.
    pub registry_concurrency: usize,
    pub user_agent: String,
    /// SSRF guard for source traffic (`None` for the operator-configured backend).
    pub network_guard: Option<NetworkPolicy>,
    /// Extra trusted CA certificates (PEM bundles) for HTTPS sources (`--source-ca-file`).
    pub extra_roots_pem: Vec<Vec<u8>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            max_attempts: 4,
            registry_concurrency: 4,
            user_agent: concat!("acr-import/", env!("CARGO_PKG_VERSION")).to_owned(),
            network_guard: None,
            extra_roots_pem: Vec::new(),
        }
    }
}

impl ClientConfig {
    /// The HTTP client all registry clients share: rustls, bounded redirects, never https→http,
    /// and `read_timeout`. (reqwest's read timeout also bounds everything before the response
    /// headers, request body included, so streaming uploads use [`Self::build_upload_http`].)
    pub fn build_http(&self) -> Result<reqwest::Client, OciError> {
        self.http_builder()?
            .read_timeout(self.read_timeout)
            .build()
            .map_err(build_error)
    }

    /// The same client without a read timeout, for uploads whose body is a source stream: the
    /// copy engine watches both sides of such an upload itself (see
    /// [`RegistryClient::put_upload`]).
    pub fn build_upload_http(&self) -> Result<reqwest::Client, OciError> {
        self.http_builder()?.build().map_err(build_error)
    }

    fn http_builder(&self) -> Result<reqwest::ClientBuilder, OciError> {
        let guard = self.network_guard;
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            let downgrade = attempt.previous().iter().any(|u| u.scheme() == "https")
                && attempt.url().scheme() != "https";
            if attempt.previous().len() >= 10 {
                attempt.error("too many redirects")
            } else if downgrade {
                attempt.error("refusing a redirect from https to http")
            } else if let Some(refused) = guard.and_then(|g| check_url(&g, attempt.url()).err()) {
                // Names are checked by the resolver when the hop connects.
                attempt.error(refused)
            } else {
                attempt.follow()
            }
        });
        let mut b = reqwest::Client::builder()
            .user_agent(self.user_agent.clone())
            .connect_timeout(self.connect_timeout)
            .redirect(policy);
        if let Some(g) = guard {
            b = b.dns_resolver(Arc::new(crate::netguard::GuardedResolver { policy: g }));
        }
        for pem in &self.extra_roots_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(build_error)?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        Ok(b)
    }

    /// Refuses a source URL whose host is an IP literal the SSRF guard refuses.
    pub fn check_source_url(&self, url: &Url) -> Result<(), AddressRefused> {
        match &self.network_guard {
            Some(g) => check_url(g, url),
            None => Ok(()),
        }
    }

    /// The base URL of a registry address: an explicit scheme wins; loopback and configured
    /// insecure registries are plain HTTP (as Docker allows); everything else is HTTPS.
    /// Docker Hub's names map to its API host.
    pub fn registry_url(&self, addr: &RegistryAddress) -> Result<Url, OciError> {
        let authority = if addr.is_docker_hub() && addr.port.is_none() {
            "registry-1.docker.io".to_owned()
        } else {
            addr.authority()
        };
        let https = addr.https.unwrap_or_else(|| {
            !(is_loopback_host(&addr.host)
                || self.insecure_registries.iter().any(|i| {
                    i.eq_ignore_ascii_case(&authority) || i.eq_ignore_ascii_case(&addr.host)
                }))
        });
        let scheme = if https { "https" } else { "http" };
        Url::parse(&format!("{scheme}://{authority}/")).map_err(|e| OciError::Invalid {
            registry: authority.clone(),
            detail: format!("invalid registry address: {e}"),
        })
    }
}

fn build_error(e: reqwest::Error) -> OciError {
    OciError::Network {
        registry: "-".into(),
        detail: describe_reqwest(e),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// How to authenticate to a registry.
#[derive(Clone)]
pub enum Credentials {
    Anonymous,
    Basic {
        username: String,
        password: SecretString,
    },
    /// A password without a username: sent as a bearer token.
    Token(SecretString),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, [redacted])"),
            Credentials::Token(_) => f.write_str("Token([redacted])"),
        }
    }
}

/// Access a request needs, e.g. `repository:a/b:pull`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scopes(Vec<String>);

impl Scopes {
    pub fn pull(repo: &Repository) -> Self {
        Self(vec![format!("repository:{repo}:pull")])
    }
    pub fn push(repo: &Repository) -> Self {
        Self(vec![format!("repository:{repo}:pull,push")])
    }
    /// Push to `repo` and pull from `from` (a cross-repository mount).
    pub fn mount(repo: &Repository, from: &Repository) -> Self {
        let mut v = vec![format!("repository:{repo}:pull,push")];
        if from != repo {
            v.push(format!("repository:{from}:pull"));
        }
        Self(v)
    }
    /// Delete in `repo` (tags, manifests, blobs).
    pub fn delete(repo: &Repository) -> Self {
        Self(vec![format!("repository:{repo}:pull,delete")])
    }
    /// List the catalog.
    pub fn catalog() -> Self {
        Self(vec!["registry:catalog:*".to_owned()])
    }
    /// Exactly these scope strings (e.g. from a request's route).
    pub fn of(scopes: Vec<String>) -> Self {
        Self(scopes)
    }
    pub(crate) fn key(&self) -> String {
        self.0.join(" ")
    }
}

#[derive(Debug, Clone)]
struct CachedToken {
    token: String,
    expires: Instant,
}

#[derive(Debug, Default)]
struct AuthState {
    challenge: Option<Challenge>,
    tokens: HashMap<String, CachedToken>,
}

/// A fetched manifest: exact bytes, the Content-Type it came with, its computed digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Bytes,
    pub content_type: Option<String>,
    pub digest: Digest,
}

/// Result of starting an upload.
#[derive(Debug)]
pub enum UploadStart {
    /// The blob was mounted from another repository: nothing to upload.
    Mounted,
    /// An upload session to PUT (or PATCH) to, with the registry's `OCI-Chunk-Min-Length`.
    Session { url: Url, min_chunk: Option<u64> },
}

/// Per-host semaphores bounding blob transfers, shared by every client of a process.
#[derive(Debug)]
pub struct HostLimits {
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostLimits {
    pub fn new(per_host: usize) -> Arc<Self> {
        Arc::new(Self {
            per_host: per_host.max(1),
            hosts: Mutex::new(HashMap::new()),
        })
    }

    fn for_host(&self, host: &str) -> Arc<Semaphore> {
        let mut map = match self.hosts.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.entry(host.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
            .clone()
    }
}

/// A client for one registry.
#[derive(Debug)]
pub struct RegistryClient {
    pub(crate) http: reqwest::Client,
    /// For streaming uploads (no read timeout); built on the first upload.
    upload_http: OnceLock<reqwest::Client>,
    config: ClientConfig,
    base: Url,
    name: String,
    credentials: Credentials,
    max_attempts: u32,
    stall_timeout: Duration,
    auth: Mutex<AuthState>,
    transfers: Arc<Semaphore>,
    /// Set once the registry refused a monolithic upload: chunked PATCH from then on.
    chunked_only: AtomicBool,
}

/// Computes a digest of bytes with the given algorithm.
pub fn digest_of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
    match algorithm {
        Algorithm::Sha256 => Digest::from_raw(algorithm, &Sha256::digest(bytes)),
        Algorithm::Sha512 => Digest::from_raw(algorithm, &Sha512::digest(bytes)),
    }
}

impl RegistryClient {
    pub fn new(
        http: reqwest::Client,
        base: Url,
        credentials: Credentials,
        config: &ClientConfig,
        limits: &HostLimits,
    ) -> Self {
        let name = match base.port() {
            Some(p) => format!("{}:{p}", base.host_str().unwrap_or_default()),
            None => base.host_str().unwrap_or_default().to_owned(),
        };
        Self {
            transfers: limits.for_host(&name),
            http,
            upload_http: OnceLock::new(),
            config: config.clone(),
            base,
            name,
            credentials,
            max_attempts: config.max_attempts.max(1),
            stall_timeout: config.read_timeout,
            auth: Mutex::new(AuthState::default()),
            chunked_only: AtomicBool::new(false),
        }
    }

    /// The semaphore bounding blob transfers to and from this registry host.
    pub fn transfer_slots(&self) -> &Arc<Semaphore> {
        &self.transfers
    }

    /// How long a response body may go without a byte, and an upload without progress.
    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout
    }

    /// The client for streaming uploads. Should building it fail (it has the settings of the
    /// shared client, which was built), the shared client serves.
    pub(crate) fn upload_http(&self) -> &reqwest::Client {
        self.upload_http
            .get_or_init(|| match self.config.build_upload_http() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(registry = %self.name, error = %e, "no upload client: using the shared one");
                    self.http.clone()
                }
            })
    }

    pub fn chunked_only(&self) -> bool {
        self.chunked_only.load(Ordering::Relaxed)
    }

    pub fn set_chunked_only(&self) {
        if !self.chunked_only.swap(true, Ordering::Relaxed) {
            tracing::info!(registry = %self.name, "the registry refused a monolithic upload: using chunked uploads");
        }
    }

    /// `host[:port]`, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Whether both clients talk to the same registry (cross-repository mount is possible).
    pub fn same_registry(&self, other: &RegistryClient) -> bool {
        self.base == other.base
    }

    pub(crate) fn url(&self, path: &str) -> Result<Url, OciError> {
        self.base
            .join(path)
            .map_err(|e| self.invalid(format!("bad URL path: {e}")))
    }

    fn invalid(&self, detail: impl Into<String>) -> OciError {
        OciError::Invalid {
            registry: self.name.clone(),
            detail: detail.into(),
        }
    }

    pub(crate) fn network(&self, e: reqwest::Error) -> OciError {
        if let Some(r) = find_refusal(&e) {
            return OciError::Refused {
                registry: self.name.clone(),
                detail: r.to_string(),
            };
        }
        OciError::Network {
            registry: self.name.clone(),
            detail: describe_reqwest(e),
        }
    }

    pub(crate) fn authorize(&self, rb: RequestBuilder, scopes: &Scopes) -> RequestBuilder {
        let state = match self.auth.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        match (&state.challenge, &self.credentials) {
            (Some(Challenge::Bearer { .. }), _) => {
                if let Some(t) = state
                    .tokens
                    .get(&scopes.key())
                    .filter(|t| t.expires > Instant::now())
                {
                    return rb.bearer_auth(&t.token);
                }
                if let Credentials::Token(t) = &self.credentials {
                    return rb.bearer_auth(t.expose_secret());
                }
                rb
            }
            (Some(Challenge::Basic), Credentials::Basic { username, password }) => {
                rb.basic_auth(username, Some(password.expose_secret()))
            }
            (_, Credentials::Token(t)) => rb.bearer_auth(t.expose_secret()),
            _ => rb,
        }
    }

    /// Whether a request for `scopes` would go out authorized without a 401 round trip: the
    /// registry's challenge is known and, for a token registry, a live token is cached.
    pub(crate) fn auth_ready(&self, scopes: &Scopes) -> bool {
        let state = match self.auth.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        match &state.challenge {
            None => matches!(self.credentials, Credentials::Anonymous),
            Some(Challenge::Basic) => true,
            Some(Challenge::Bearer { .. }) => state
                .tokens
                .get(&scopes.key())
                .is_some_and(|t| t.expires > Instant::now()),
        }
    }

    /// Reacts to a 401: learns the challenge and fetches a token when needed.
    async fn on_unauthorized(&self, resp: &Response, scopes: &Scopes) -> Result<(), OciError> {
        let header = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let challenge = parse_challenge(header).ok_or_else(|| OciError::Unauthorized {
            registry: self.name.clone(),
            detail: "the registry answered 401 without a usable WWW-Authenticate challenge".into(),
        })?;
        match &challenge {
            Challenge::Basic => {
                if !matches!(self.credentials, Credentials::Basic { .. }) {
                    return Err(OciError::Unauthorized {
                        registry: self.name.clone(),
                        detail: "the registry requires a username and password".into(),
                    });
                }
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
                ..
            } => {
                let mut wanted: Vec<String> = Vec::new();
                if let Some(s) = scope {
                    wanted.extend(s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned));
                }
                for s in &scopes.0 {
                    if !wanted.contains(s) {
                        wanted.push(s.clone());
                    }
                }
                let token = self.fetch_token(realm, service.as_deref(), &wanted).await?;
                let mut state = match self.auth.lock() {
                    Ok(s) => s,
                    Err(p) => p.into_inner(),
                };
                state.tokens.insert(scopes.key(), token);
            }
        }
        let mut state = match self.auth.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        state.challenge = Some(challenge);
        Ok(())
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<CachedToken, OciError> {
        let url = Url::parse(realm)
            .map_err(|e| self.invalid(format!("the token realm '{realm}' is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.invalid("the token realm must be an http or https URL"));
        }
        if let Err(r) = self.config.check_source_url(&url) {
            return Err(OciError::Refused {
                registry: self.name.clone(),
                detail: format!(
                    "the token realm {} is refused: {r}",
                    url.origin().ascii_serialization()
                ),
            });
        }
        // An identity (refresh) token is exchanged with the OAuth2 POST; token servers without
        // that grant answer 404/405 and get the GET form with the token as bearer.
        if let Credentials::Token(t) = &self.credentials {
            let mut form: Vec<(&str, String)> = vec![
                ("grant_type", "refresh_token".into()),
                ("refresh_token", t.expose_secret().to_owned()),
                ("client_id", "acr-import".into()),
            ];
            if let Some(s) = service {
                form.push(("service", s.to_owned()));
            }
            if !scopes.is_empty() {
                form.push(("scope", scopes.join(" ")));
            }
            let resp = self
                .http
                .post(url.clone())
                .form(&form)
                .send()
                .await
                .map_err(|e| self.network(e))?;
            if !matches!(resp.status().as_u16(), 404 | 405) {
                return self.token_from(resp).await;
            }
        }
        let mut url = url;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
            if let Credentials::Basic { username, .. } = &self.credentials {
                q.append_pair("account", username);
            }
        }
        let mut rb = self.http.get(url);
        match &self.credentials {
            Credentials::Basic { username, password } => {
                rb = rb.basic_auth(username, Some(password.expose_secret()));
            }
            Credentials::Token(t) => {
                rb = rb.bearer_auth(t.expose_secret());
            }
            Credentials::Anonymous => {}
        }
        let resp = rb.send().await.map_err(|e| self.network(e))?;
        self.token_from(resp).await
    }

    async fn token_from(&self, resp: Response) -> Result<CachedToken, OciError> {
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN
            || status == StatusCode::BAD_REQUEST
        {
            return Err(OciError::Unauthorized {
                registry: self.name.clone(),
                detail: format!(
                    "the token server refused the credentials ({})",
                    status.as_u16()
                ),
            });
        }
        if !status.is_success() {
            return Err(OciError::Status {
                registry: self.name.clone(),
                method: "GET".into(),
                path: "token realm".into(),
                status: status.as_u16(),
                detail: "the token server failed".into(),
            });
        }
        let body = read_limited(resp, 64 * 1024)
            .await
            .map_err(|e| self.network(e))?;
        let tr: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            self.invalid(format!("the token server sent an unreadable answer: {e}"))
        })?;
        let token = tr
            .token()
            .ok_or_else(|| self.invalid("the token server answered without a token"))?
            .to_owned();
        // Honour short lifetimes; renew a little before expiry.
        let ttl = Duration::from_secs(tr.expires_in.unwrap_or(60).max(1));
        let margin = (ttl / 5).min(Duration::from_secs(10));
        Ok(CachedToken {
            token,
            expires: Instant::now() + ttl - margin,
        })
    }

    /// Sends a replayable request: authenticates on 401 (once), retries transient failures
    /// with jittered exponential backoff, honouring `Retry-After`.
    pub(crate) async fn send(
        &self,
        scopes: &Scopes,
        make: impl Fn() -> Result<RequestBuilder, OciError>,
    ) -> Result<Response, OciError> {
        let mut attempt = 0u32;
        let mut reauthed = false;
        loop {
            attempt += 1;
            let rb = self.authorize(make()?, scopes);
            match rb.send().await {
                Err(e) => {
                    if attempt < self.max_attempts
                        && (e.is_connect() || e.is_timeout() || e.is_request() || e.is_body())
                    {
                        tokio::time::sleep(backoff(attempt, None)).await;
                        continue;
                    }
                    return Err(self.network(e));
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !reauthed => {
                    reauthed = true;
                    self.on_unauthorized(&resp, scopes).await?;
                    attempt -= 1;
                }
                Ok(resp)
                    if attempt < self.max_attempts
                        && matches!(resp.status().as_u16(), 408 | 429 | 500 | 502 | 503 | 504) =>
                {
                    let wait = backoff(attempt, retry_after(resp.headers()));
                    tracing::debug!(registry = %self.name, status = resp.status().as_u16(), ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Ok(resp) => return Ok(resp),
            }
        }
    }

    /// Turns an unexpected response into an error, reading at most 4 KiB of its body.
    pub(crate) async fn error_from(&self, method: &str, what: &str, resp: Response) -> OciError {
        let status = resp.status().as_u16();
        let retry = retry_after(resp.headers());
        let body = tokio::time::timeout(Duration::from_secs(5), read_limited(resp, 4096))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let (code, message) = parse_registry_error(&body);
        let detail = match (&code, &message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.clone(),
            _ => String::from_utf8_lossy(&body[..body.len().min(300)])
                .trim()
                .to_owned(),
        };
        match status {
            404 => OciError::NotFound {
                registry: self.name.clone(),
                what: what.to_owned(),
                code: code.unwrap_or_else(|| "NOT_FOUND".into()),
            },
            401 | 403 => OciError::Unauthorized {
                registry: self.name.clone(),
                detail: if detail.is_empty() {
                    format!("{status}")
                } else {
                    detail
                },
            },
            429 => OciError::TooManyRequests {
                registry: self.name.clone(),
                retry_after: retry,
                detail,
            },
            _ => OciError::Status {
                registry: self.name.clone(),
                method: method.to_owned(),
                path: what.to_owned(),
                status,
                detail,
            },
        }
    }

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

    /// PUT a manifest's exact bytes under a tag or digest.
    pub async fn put_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        bytes: &Bytes,
        media_type: &str,
    ) -> Result<(), OciError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let scopes = Scopes::push(repo);
        let resp = self
            .send(&scopes, || {
                Ok(self
                    .http
                    .put(url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.clone()))
            })
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self
                .error_from("PUT", &format!("manifest {repo}:{reference}"), resp)
                .await)
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

    /// Starts an upload, trying a cross-repository mount first when `mount_from` is given.
    pub async fn start_upload(
        &self,
        repo: &Repository,
        mount_from: Option<(&Digest, &Repository)>,
    ) -> Result<UploadStart, OciError> {
        let mut url = self.url(&format!("v2/{repo}/blobs/uploads/"))?;
        let scopes = match mount_from {
            Some((digest, from)) => {
                url.query_pairs_mut()
                    .append_pair("mount", &digest.to_string())
                    .append_pair("from", from.as_str());
                Scopes::mount(repo, from)
            }
            None => Scopes::push(repo),
        };
        let resp = self
            .send(&scopes, || {
                Ok(self.http.post(url.clone()).header(CONTENT_LENGTH, "0"))
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount_from.is_some() => Ok(UploadStart::Mounted),
            StatusCode::ACCEPTED => {
                let loc = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        self.invalid("the registry started an upload without a Location header")
                    })?;
                let session = url
                    .join(loc)
                    .map_err(|e| self.invalid(format!("bad upload Location: {e}")))?;
                let min_chunk = resp
                    .headers()
                    .get("oci-chunk-min-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                Ok(UploadStart::Session {
                    url: session,
                    min_chunk,
                })
            }
            _ => Err(self
                .error_from("POST", &format!("upload to {repo}"), resp)
                .await),
        }
    }

    /// Completes an upload session with one streaming PUT of `size` bytes.
    ///
    /// The PUT has no read timeout: while `body` waits for its source, the registry is only
    /// waiting for the body. The stall timeout applies to the registry's side alone: taking
    /// no body byte (`body` has one ready) or giving no answer after the last one for that long
    /// is [`OciError::Stalled`]. A stall of the source is for `body` to detect and report.
    pub async fn put_upload<S>(
        &self,
        repo: &Repository,
        session: &Url,
        digest: &Digest,
        size: u64,
        body: S,
    ) -> Result<(), OciError>
    where
        S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let mut url = session.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let scopes = Scopes::push(repo);
        let watch = Arc::new(UploadWatch::new());
        let body = WatchedBody {
            inner: body.boxed(),
            watch: watch.clone(),
            remaining: size,
        };
        let rb = self
            .authorize(self.upload_http().put(url), &scopes)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(body));
        let send = rb.send();
        tokio::pin!(send);
        let resp = loop {
            tokio::select! {
                r = &mut send => break r.map_err(|e| self.network(e))?,
                () = tokio::time::sleep_until(watch.deadline(self.stall_timeout)) => {
                    if let Some((idle, sent)) = watch.target_stalled(self.stall_timeout) {
                        let doing = if sent {
                            "answer after the whole blob was sent"
                        } else {
                            "take any more of the blob"
                        };
                        return Err(OciError::Stalled {
                            registry: self.name.clone(),
                            detail: format!(
                                "the registry stalled: it did not {doing} for {} seconds while blob {repo}@{digest} was uploaded",
                                idle.as_secs()
                            ),
                        });
                    }
                }
            }
        };
        if resp.status().is_success() {
            return Ok(());
        }
        if resp.status() == StatusCode::UNAUTHORIZED {
            // The token expired during the upload: renew it so the caller's retry works.
            if let Err(e) = self.on_unauthorized(&resp, &scopes).await {
                tracing::debug!(error = %e, "re-authentication after a refused upload failed");
            }
        }
        Err(self
            .error_from("PUT", &format!("blob {repo}@{digest}"), resp)
            .await)
    }

    /// Uploads a stream in PATCH chunks of at least max(5 MiB, `OCI-Chunk-Min-Length`),
    /// following the newest `Location`, recovering from 416 by asking the session's status, then
    /// PUTs the digest. A failure of `body` is reported as `Invalid` (the caller knows why).
    pub async fn upload_chunked<S>(
        &self,
        repo: &Repository,
        session: &Url,
        min_chunk: Option<u64>,
        digest: &Digest,
        mut body: S,
    ) -> Result<(), OciError>
    where
        S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Unpin,
    {
        const MIN_CHUNK: u64 = 5 * 1024 * 1024;
        let chunk_size = min_chunk.unwrap_or(0).clamp(MIN_CHUNK, 64 * 1024 * 1024) as usize;
        let scopes = Scopes::push(repo);
        let mut location = session.clone();
        let mut offset: u64 = 0;
        let mut done = false;
        while !done {
            let mut buf = bytes::BytesMut::with_capacity(chunk_size);
            while buf.len() < chunk_size {
                match body.next().await {
                    Some(Ok(b)) => buf.extend_from_slice(&b),
                    Some(Err(e)) => {
                        return Err(self.invalid(format!("the source stream failed: {e}")))
                    }
                    None => {
                        done = true;
                        break;
                    }
                }
            }
            let mut chunk = buf.freeze();
            let mut recoveries = 0;
            while !chunk.is_empty() {
                let end = offset + chunk.len() as u64 - 1;
                let url = location.clone();
                let part = chunk.clone();
                let resp = self
                    .send(&scopes, || {
                        Ok(self
                            .http
                            .patch(url.clone())
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header("content-range", format!("{offset}-{end}"))
                            .header(CONTENT_LENGTH, part.len())
                            .body(part.clone()))
                    })
                    .await?;
                match resp.status() {
                    StatusCode::ACCEPTED | StatusCode::NO_CONTENT | StatusCode::CREATED => {
                        location = self.next_location(&location, resp.headers())?;
                        offset = end + 1;
                        chunk = Bytes::new();
                    }
                    StatusCode::RANGE_NOT_SATISFIABLE if recoveries < 3 => {
                        // distribution's 416 lies about its body length: never read it.
                        drop(resp);
                        recoveries += 1;
                        let (loc, committed) = self.upload_status(repo, &location).await?;
                        location = loc;
                        if committed < offset || committed > end + 1 {
                            return Err(self.invalid(format!(
                                "the upload session is at byte {committed}, outside the chunk {offset}-{end}"
                            )));
                        }
                        chunk = chunk.slice((committed - offset) as usize..);
                        offset = committed;
                    }
                    _ => {
                        return Err(self
                            .error_from("PATCH", &format!("blob {repo}@{digest}"), resp)
                            .await)
                    }
                }
            }
        }
        let mut url = location.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let resp = self
            .send(&scopes, || {
                Ok(self.http.put(url.clone()).header(CONTENT_LENGTH, "0"))
            })
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self
                .error_from("PUT", &format!("blob {repo}@{digest}"), resp)
                .await)
        }
    }

    fn next_location(&self, current: &Url, headers: &HeaderMap) -> Result<Url, OciError> {
        match headers.get(LOCATION).and_then(|v| v.to_str().ok()) {
            Some(loc) => current
                .join(loc)
                .map_err(|e| self.invalid(format!("bad upload Location: {e}"))),
            None => Ok(current.clone()),
        }
    }

    /// `GET <session>`: the newest Location and how many bytes the registry holds.
    async fn upload_status(
        &self,
        repo: &Repository,
        session: &Url,
    ) -> Result<(Url, u64), OciError> {
        let scopes = Scopes::push(repo);
        let resp = self
            .send(&scopes, || Ok(self.http.get(session.clone())))
            .await?;
        if !resp.status().is_success() {
            return Err(self
                .error_from("GET", &format!("upload status of {repo}"), resp)
                .await);
        }
        let committed = resp
            .headers()
            .get(reqwest::header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| {
                r.trim()
                    .trim_start_matches("bytes=")
                    .split_once('-')
                    .map(|(_, e)| e.trim().to_owned())
            })
            .and_then(|e| e.parse::<u64>().ok())
            // distribution reports an empty session as `0-0`, the same as one byte held; chunks
            // are at least 5 MiB, so `0-0` means nothing was committed.
            .map(|last| if last == 0 { 0 } else { last + 1 })
            .unwrap_or(0);
        let loc = self.next_location(session, resp.headers())?;
        Ok((loc, committed))
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

    /// Cancels an upload session; failures are ignored (the registry expires sessions anyway).
    pub async fn cancel_upload(&self, repo: &Repository, session: &Url) {
        let scopes = Scopes::push(repo);
        let rb = self.authorize(self.http.delete(session.clone()), &scopes);
        let _ = tokio::time::timeout(Duration::from_secs(10), rb.send()).await;
    }
}

/// What an upload's body is doing, to tell a stalled registry from a slow source.
#[derive(Debug)]
struct UploadWatch(Mutex<WatchState>);

#[derive(Debug, Clone, Copy)]
struct WatchState {
    /// The last time the request body was polled.
    polled: tokio::time::Instant,
    /// The body's last poll was pending: the source has the turn, not the registry.
    waiting_for_source: bool,
    /// The whole body has been handed over: the registry owes the answer.
    ended: bool,
}

impl UploadWatch {
    fn new() -> Self {
        Self(Mutex::new(WatchState {
            polled: tokio::time::Instant::now(),
            waiting_for_source: false,
            ended: false,
        }))
    }

    fn state(&self) -> WatchState {
        match self.0.lock() {
            Ok(s) => *s,
            Err(p) => *p.into_inner(),
        }
    }

    fn polled(&self, waiting_for_source: bool, ended: bool) {
        let mut s = match self.0.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        s.polled = tokio::time::Instant::now();
        s.waiting_for_source = waiting_for_source;
        s.ended = ended;
    }

    /// When the registry will have stalled if nothing happens meanwhile.
    fn deadline(&self, stall: Duration) -> tokio::time::Instant {
        let s = self.state();
        if s.waiting_for_source {
            tokio::time::Instant::now() + stall
        } else {
            s.polled + stall
        }
    }

    /// `Some((idle, body ended))` when the registry has had the turn for `stall` or longer.
    fn target_stalled(&self, stall: Duration) -> Option<(Duration, bool)> {
        let s = self.state();
        let idle = s.polled.elapsed();
        (!s.waiting_for_source && idle >= stall).then_some((idle, s.ended))
    }
}

/// A request body that reports its polls to an [`UploadWatch`].
struct WatchedBody {
    inner: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
    watch: Arc<UploadWatch>,
    /// Bytes of the Content-Length not handed over yet.
    remaining: u64,
}

impl futures::Stream for WatchedBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let next = self.inner.poll_next_unpin(cx);
        if let std::task::Poll::Ready(Some(Ok(b))) = &next {
            self.remaining = self.remaining.saturating_sub(b.len() as u64);
        }
        let ended = self.remaining == 0 || matches!(next, std::task::Poll::Ready(None));
        self.watch.polled(next.is_pending(), ended);
        next
    }
}

/// Jittered exponential backoff, or the server's `Retry-After` (capped at 60 s).
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(r) = retry_after {
        return r.min(Duration::from_secs(60));
    }
    let base = 200u64.saturating_mul(1 << attempt.min(6));
    let nanos = Instant::now().elapsed().subsec_nanos() as u64 ^ u64::from(std::process::id());
    let jitter = nanos % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(Duration::from_secs)
}

fn header_digest(h: &HeaderMap) -> Option<Digest> {
    h.get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| Digest::parse(s.trim()).ok())
}

fn parse_registry_error(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Errs {
        errors: Vec<E>,
    }
    #[derive(serde::Deserialize)]
    struct E {
        code: Option<String>,
        message: Option<String>,
    }
    match serde_json::from_slice::<Errs>(body) {
        Ok(e) => match e.errors.into_iter().next() {
            Some(first) => (first.code, first.message),
            None => (None, None),
        },
        Err(_) => (None, None),
    }
}

/// Reads a body up to `limit` bytes (one more byte tells the caller it was too long).
pub(crate) async fn read_limited(resp: Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = ClientConfig {
            insecure_registries: vec!["reg.local:5000".into()],
            ..ClientConfig::default()
        };
        let u = |s: &str| {
            c.registry_url(&RegistryAddress::parse(s).expect("addr"))
                .expect("url")
                .to_string()
        };
        assert_eq!(u("127.0.0.1:5000"), "http://127.0.0.1:5000/");
        assert_eq!(u("localhost:5000"), "http://localhost:5000/");
        assert_eq!(u("[::1]:5000"), "http://[::1]:5000/");
        assert_eq!(u("reg.local:5000"), "http://reg.local:5000/");
        assert_eq!(u("mcr.microsoft.com"), "https://mcr.microsoft.com/");
        assert_eq!(u("docker.io"), "https://registry-1.docker.io/");
        assert_eq!(u("https://127.0.0.1:5000"), "https://127.0.0.1:5000/");
    }

    #[test]
    fn upload_watch_blames_only_the_registry() {
        let stall = Duration::from_millis(30);
        let pause = || std::thread::sleep(Duration::from_millis(45));
        let w = UploadWatch::new();
        assert!(w.target_stalled(stall).is_none());
        // The body waits for its source: however long, not the registry's stall.
        w.polled(true, false);
        pause();
        assert!(w.target_stalled(stall).is_none());
        assert!(w.deadline(stall) > tokio::time::Instant::now());
        // The body had a chunk ready and the registry took nothing more.
        w.polled(false, false);
        pause();
        assert_eq!(w.target_stalled(stall).map(|(_, ended)| ended), Some(false));
        // The whole body went and no answer came.
        w.polled(false, true);
        assert!(w.target_stalled(stall).is_none());
        pause();
        assert_eq!(w.target_stalled(stall).map(|(_, ended)| ended), Some(true));
    }

    #[test]
    fn backoff_is_bounded() {
        for a in 1..20 {
            assert!(backoff(a, None) <= Duration::from_millis(200 * 64 + 1));
        }
        assert_eq!(
            backoff(1, Some(Duration::from_secs(500))),
            Duration::from_secs(60)
        );
    }
}
