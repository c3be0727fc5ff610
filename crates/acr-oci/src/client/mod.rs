//! A distribution-API client for one registry.
//!
//! Laid out like go-containerregistry's `remote` over `remote/transport`: this module holds the
//! client itself ([`RegistryClient`]: one registry's base URL, credentials, auth state and
//! transfer slots), its [`Credentials`] and the process-wide per-host transfer limits
//! ([`HostLimits`]). The rooms below it:
//!
//! - `config`: [`ClientConfig`], the shared HTTP clients (redirect policy, SSRF resolver,
//!   extra roots) and registry base URLs;
//! - `transport`: how one request goes out: the auth challenge, Basic and the Bearer token
//!   dance with its per-scope token cache, retries with backoff and `Retry-After`, error
//!   mapping, and the pass-through of the login servers (`forward`);
//! - `read`: GET/HEAD of manifests (exact bytes, digest computed, size cap) and blobs (streamed,
//!   `Range` resumes), small blobs, tags, the catalog;
//! - `upload`: manifest PUTs and blob uploads (mount, one streaming PUT under the upload watch,
//!   chunked PATCH with 416 recovery, cancel);
//! - `delete`: manifest, blob and repository deletes, untagging.

mod config;
mod delete;
mod read;
pub(crate) mod transport;
mod upload;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use acr_core::metrics::Side;
use acr_core::reference::{Algorithm, Digest, Repository};
use secrecy::SecretString;
use tokio::sync::Semaphore;
use url::Url;

use crate::error::OciError;
use transport::AuthState;

pub use config::ClientConfig;
pub use read::Manifest;
pub(crate) use transport::read_limited;
pub use transport::Scopes;
pub use upload::UploadStart;

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

/// Repositories a client remembers as existing before it starts over.
const MAX_KNOWN_REPOSITORIES: usize = 10_000;

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
    /// Set once the registry refused a mount that asked whether a repository has a blob (a
    /// mount from that repository itself): blobs get a HEAD from then on.
    no_presence_mounts: AtomicBool,
    /// Repositories the registry said it has (`repository_is_new`), at most
    /// `MAX_KNOWN_REPOSITORIES`.
    known_repositories: Mutex<HashSet<String>>,
    /// What the workers read (source) or write (target) through it, for the request metrics.
    role: Side,
}

/// Computes a digest of bytes with the given algorithm.
pub fn digest_of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
    algorithm.digest_of(bytes)
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
            no_presence_mounts: AtomicBool::new(false),
            known_repositories: Mutex::new(HashSet::new()),
            role: Side::Target,
        }
    }

    /// The same client counting its requests as `role` (new clients count as the target).
    pub fn with_role(mut self, role: Side) -> Self {
        self.role = role;
        self
    }

    /// Whether the workers read (source) or write (target) through this client.
    pub fn role(&self) -> Side {
        self.role
    }

    /// Counts one exchange with the registry (`acr_import_registry_requests_total`) and
    /// passes it on.
    pub(crate) fn observed<T>(
        &self,
        sent: Result<reqwest::Response, T>,
    ) -> Result<reqwest::Response, T> {
        acr_core::metrics::registry_request(
            self.role,
            sent.as_ref().ok().map(|r| r.status().as_u16()),
        );
        sent
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

    /// Whether a mount from the target repository itself may serve as a blob's presence check
    /// (until the registry refused one).
    pub fn presence_mounts(&self) -> bool {
        !self.no_presence_mounts.load(Ordering::Relaxed)
    }

    pub fn refuse_presence_mounts(&self) {
        if !self.no_presence_mounts.swap(true, Ordering::Relaxed) {
            tracing::info!(registry = %self.name, "the registry refused a mount as a presence check: using HEAD");
        }
    }

    pub(crate) fn known_repository(&self, repo: &Repository) -> bool {
        self.known_repositories
            .lock()
            .is_ok_and(|k| k.contains(repo.as_str()))
    }

    pub(crate) fn remember_repository(&self, repo: &Repository) {
        if let Ok(mut k) = self.known_repositories.lock() {
            if k.len() >= MAX_KNOWN_REPOSITORIES {
                k.clear();
            }
            k.insert(repo.as_str().to_owned());
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
}
