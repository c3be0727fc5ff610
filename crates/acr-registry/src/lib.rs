//! The built-in OCI distribution registry of acr-import: the distribution spec v1.1 served with
//! axum, blobs as content-addressed files on disk.
//!
//! # Use
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use acr_registry::{Registry, RegistryConfig};
//! let registry = Registry::open(RegistryConfig {
//!     data_dir: "./.acr-import/registry".into(),
//!     login_server_suffix: Some("azurecr.io".into()),
//!     auth: None, // anonymous read/write
//!     token_lifetime: std::time::Duration::from_secs(3600),
//!     durability: acr_registry::Durability::None,
//!     upload_idle_timeout: acr_registry::UPLOAD_IDLE_TIMEOUT,
//! })
//! .await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! axum::serve(listener, registry.router()).await?;
//! # Ok(()) }
//! ```
//!
//! # What it serves
//!
//! `/v2/` ping; blob `GET`/`HEAD` (one `Range: bytes=` range → 206, unsatisfiable → 416) and
//! `DELETE`; uploads: `POST` (session, or single-POST `?digest=` with the body, or
//! `?mount=&from=` cross-repository mount, or an anonymous mount without `from` when auth is
//! off), `PATCH` chunked (`Content-Range`, out of order → 416 with the true `Range`) or
//! streamed, `PUT ?digest=` with an optional last chunk, `GET` status, `DELETE` cancel;
//! manifests `PUT` (by tag, by digest, with `?tag=` parameters answered by `OCI-Tag`),
//! `GET`/`HEAD`/`DELETE` by tag (removes only the tag) or digest; `tags/list` and `_catalog`
//! with `n`/`last` and a `Link` header; the referrers API with the `artifactType` filter.
//! Digests: sha256 and sha512. Failures are `{"errors":[{"code","message","detail"}]}` with the
//! spec's codes; no client input gets a 5xx.
//!
//! Manifests are kept as received (bytes and the `Content-Type` of the `PUT`, else the
//! document's `mediaType`), at most 4 MiB (413 beyond). A `PUT` needs the config and layers in
//! the repository (`MANIFEST_BLOB_UNKNOWN`) except non-distributable/foreign layers and layers
//! with `urls`; children of an index and a `subject` may be missing (sparse indexes, referrers
//! pushed before their subject). A manifest with a `subject` is answered with `OCI-Subject` and
//! listed by the referrers API (artifact type: `artifactType`, else the config's media type).
//!
//! # Names and the login server
//!
//! With [`RegistryConfig::login_server_suffix`] `Some("azurecr.io")`, a request whose `Host`
//! (port dropped) is `<name>.azurecr.io` sees the repositories stored under `<name>/`: path names,
//! token scopes, `Location`s and catalog entries are relative to it. Any other Host
//! (`127.0.0.1:5000`) sees full names (`<name>/<repo>`).
//!
//! # Auth
//!
//! [`RegistryConfig::auth`] `None`: anyone may read and write. `Some(authenticator)`: a request
//! without credentials is answered 401 with `WWW-Authenticate: Bearer realm="<scheme>://<host>/
//! oauth2/token",service="<host>",scope="repository:<name>:pull[,push]"`. `GET /oauth2/token`
//! (Basic credentials, `service`, any number of `scope`s) and `POST /oauth2/token`
//! (`grant_type=password` form) ask the [`Authenticator`] per repository and action and return
//! `{"token","access_token","expires_in","issued_at"}` granting only what it allowed; wrong
//! credentials are 401. Tokens are HMAC-SHA256-signed with a key drawn per process and carry the
//! granted access and expiry. A token lacking the needed action gets 401 with the challenge for
//! it and `error="insufficient_scope"`, as distribution answers. `Authorization: Basic` is also
//! accepted directly on `/v2` (valid but refused: 403 `DENIED`). The realm's scheme is the
//! request URI's, else `X-Forwarded-Proto`, else `http`. Refresh-token grants are not offered.
//! Passwords and tokens are never logged.
//!
//! # Storage (see `storage.rs` for the layout)
//!
//! Blobs are content-addressed files under `data_dir/blobs/<alg>/<xx>/<hex>`, shared by every
//! repository; a repository owns a blob through an empty link file. Upload bytes stream to
//! `data_dir/uploads/<uuid>` (a 1 MiB write buffer, never the whole blob in memory) while a
//! sha256 runs in memory (a sha512 too when a single POST announces one); finishing compares
//! the digest, then `rename`s the file into place, so a wrong digest commits nothing and two
//! concurrent pushes of one blob both end with the same bytes. Only a sha512 finish of a
//! session started without knowing the algorithm reads the file back once. Downloads stream
//! from the file in 256 KiB reads. Tags, manifest revisions (their media type) and referrer
//! entries are small files written to `data_dir/tmp/` and renamed into place, so a crash never
//! leaves half a tag. Manifest and tag changes of one repository are serialised in-process.
//! Upload sessions live in memory: a restart forgets them and [`Registry::open`] deletes
//! `uploads/` and `tmp/`; a session idle for longer than
//! [`RegistryConfig::upload_idle_timeout`] (an hour by default) is cancelled and its file removed. Deleting a blob or manifest
//! removes it from the repository; [`Registry::collect_garbage`] deletes the content files no
//! repository references any more (mark and sweep, safe while pushes run: see `gc.rs`).
//! `DELETE /acr/v1/<name>` (ACR's repository delete) removes a whole repository at once.
//!
//! # Durability: `none` (default) or `fsync`
//!
//! With [`Durability::None`] nothing is fsynced. Measured on this project's machines: `dd` of
//! 200 MiB took ~0.2 s without and ~0.9 s with an fsync before close; through this registry one
//! 256 MiB single-POST upload took 0.9–1.7 s without and 1.2–1.7 s with an fsync of the blob
//! before the rename (noisy: the network and hashing hide part of the flush), and BENCHMARKS.md
//! shows the external registry's per-blob fsync stalling every writer on the filesystem journal
//! during a multi-layer import. Temp file + rename already makes every change atomic against a
//! crashed or killed process (the page cache survives it); what is given up is durability
//! across a power loss or kernel crash, where the newest files may come back empty or short (a
//! blob damaged that way is caught by the digest check of any client that pulls it). That is
//! the default for an emulator. With [`Durability::Fsync`] every write is durable before it is
//! answered: a blob's file is fsynced before its rename, a metadata file (tag, revision,
//! referrer) before its rename, and after each rename, link, removal or directory creation the
//! directory holding the entry is fsynced, so an acknowledged blob, manifest or tag survives a
//! power loss. (For scale: the same machine moved 256 MiB through `docker-registry` in 2.6 s
//! up / 0.33 s down, through this registry, debug build, in ~1.2 s / ~0.18 s.)
//!
//! # A full disk
//!
//! An `ENOSPC`/`EDQUOT` anywhere in a write answers 507 with `UNKNOWN` and a message starting
//! "the registry is out of disk space" (never a 500): a chunked upload's session ends and its
//! file is removed, a single-POST or in-process upload's file is removed, a metadata write's
//! temp file is removed; since every content file is renamed into place whole, nothing
//! half-written is ever visible, and the same write succeeds once space is freed.
//!
//! One process per data directory: [`Registry::open`] empties `uploads/` and `tmp/`, which
//! would break a second process's uploads in flight, so it takes an exclusive lock on
//! `<data dir>/.lock` (held while the registry is open) and refuses a directory another
//! process holds, naming its pid.
//!
//! # Conformance notes
//!
//! Written against the checks of opencontainers/distribution-spec `conformance/` (v1.1 and the
//! `1.1+dev` options: upload cancel, digest headers, tag parameters); `tests/conformance.rs`
//! mirrors them. Two answers are choices the suite accepts either way: an upload with no byte
//! yet reports `Range: 0-0` (what distribution and the others send; the spec leaves it open),
//! and with auth on, a mount whose token lacks pull on `from` falls back to a 202 session rather
//! than a 401 asking for that scope (distribution asks), so a client holding a push-only token
//! uploads instead of failing; the suite counts that fallback as "mount unsupported", not failed.
//!
//! This crate knows nothing of ARM, the database or the importer.

mod access;
mod digest;
mod error;
mod gc;
mod lock;
mod names;
mod routes;
mod storage;
mod upload;
mod usage;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::any;
use axum::Router;

pub use access::{Action, Authenticator};
pub use error::{is_out_of_space, RegistryError, OUT_OF_SPACE};
pub use gc::{GcOptions, GcReport};
pub use storage::Durability;
pub use upload::UPLOAD_IDLE_TIMEOUT;
pub use usage::DiskUsage;

use digest::Digest;
use routes::Inner;

/// Stripes of the per-repository lock of manifest and tag changes.
const REPO_LOCKS: usize = 64;

/// How to open a [`Registry`].
#[derive(Clone)]
pub struct RegistryConfig {
    /// Root of the registry's files (created if missing).
    pub data_dir: PathBuf,
    /// E.g. `azurecr.io`: Host `<name>.azurecr.io[:port]` makes every repository `<name>/<path repo>`.
    /// Lowercase, without a leading dot (the embedder normalises it; acr-import does so once,
    /// at configuration).
    pub login_server_suffix: Option<String>,
    /// `None`: anonymous read and write.
    pub auth: Option<Arc<dyn Authenticator>>,
    /// Lifetime of the Bearer tokens the token endpoint issues.
    pub token_lifetime: Duration,
    /// When a write is acknowledged (`fsync` or not).
    pub durability: Durability,
    /// An upload session nobody touched for this long is cancelled and its file removed.
    pub upload_idle_timeout: Duration,
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("data_dir", &self.data_dir)
            .field("login_server_suffix", &self.login_server_suffix)
            .field("auth", &self.auth.as_ref().map(|_| "Authenticator"))
            .field("token_lifetime", &self.token_lifetime)
            .field("durability", &self.durability)
            .field("upload_idle_timeout", &self.upload_idle_timeout)
            .finish()
    }
}

/// An open registry; cheap to clone (all clones share state).
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl Registry {
    /// Creates the data directories and deletes what an earlier process left half-done
    /// (upload files and temp files).
    pub async fn open(config: RegistryConfig) -> Result<Self, RegistryError> {
        let io = |path: PathBuf| move |source| RegistryError::Io { path, source };
        tokio::fs::create_dir_all(&config.data_dir)
            .await
            .map_err(io(config.data_dir.clone()))?;
        let lock = lock::acquire(&config.data_dir)?;
        let store = storage::Disk::new(config.data_dir, config.durability);
        for dir in [store.uploads_dir(), store.tmp_dir()] {
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(dir)(e)),
            }
        }
        for dir in [
            store.root().join("blobs"),
            store.root().join("repositories"),
            store.uploads_dir(),
            store.tmp_dir(),
        ] {
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(io(dir.clone()))?;
        }
        let suffix = config.login_server_suffix.filter(|s| !s.is_empty());
        Ok(Registry {
            inner: Arc::new(Inner {
                store,
                uploads: upload::Uploads::new(config.upload_idle_timeout),
                suffix,
                auth: config.auth,
                tokens: access::Tokens::new(config.token_lifetime),
                repo_locks: (0..REPO_LOCKS)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
                gc_lock: tokio::sync::Mutex::new(()),
                _dir_lock: lock,
            }),
        })
    }

    /// Stores `body`, exactly `size` bytes, as blob `digest` of repository `repo` (its full
    /// name): what a single-POST upload does, in-process (the same session file, running hash,
    /// digest check and commit), for an embedder that copies blobs into this registry without
    /// the HTTP hop. On any error nothing is stored and the upload file is removed.
    pub async fn put_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>,
    ) -> Result<(), PutBlobError> {
        if !names::valid_repository(repo) || repo.len() > names::MAX_NAME_LEN {
            return Err(PutBlobError::Name(repo.to_owned()));
        }
        let inner = &self.inner;
        let session = inner.uploads.create(
            &inner.store.uploads_dir(),
            repo,
            Some(digest.algorithm()),
            false,
        );
        let _cleanup = upload::RemoveOnDrop(session.path.clone());
        let mut st = session.state.lock().await;
        st.closed = true;
        upload::append(
            &session,
            &mut st,
            axum::body::Body::from_stream(body),
            Some(size),
        )
        .await
        .map_err(|e| match e {
            upload::AppendError::Body(e) => PutBlobError::Body(e.to_string()),
            upload::AppendError::Length { expected, got } => PutBlobError::Length { expected, got },
            upload::AppendError::Io(e) => PutBlobError::io("write upload", e),
        })?;
        upload::finish(&inner.store, &session, &mut st, digest, repo)
            .await
            .map_err(|e| match e {
                upload::FinishError::Mismatch { computed } => PutBlobError::Digest {
                    expected: digest.clone(),
                    computed,
                },
                upload::FinishError::Io(what, source) => PutBlobError::io(what, source),
            })
    }

    /// Cancels upload sessions idle for longer than the configured timeout and removes their
    /// files (also done at every session start); returns how many.
    pub async fn sweep_uploads(&self) -> usize {
        self.inner.uploads.sweep().await
    }

    /// `fsync` calls made so far (none with [`Durability::None`]).
    pub fn syncs(&self) -> u64 {
        self.inner.store.syncs()
    }

    /// `/v2/…` and the token endpoint `/oauth2/token`; anything else is 404.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/oauth2/token", any(routes::token))
            .route("/v2", any(routes::v2))
            .route("/v2/", any(routes::v2))
            .route("/v2/{*rest}", any(routes::v2))
            .route("/acr/v1/{*rest}", any(routes::acr_v1))
            .fallback(routes::not_found)
            .with_state(self.inner.clone())
    }
}

/// Why [`Registry::put_blob`] stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum PutBlobError {
    #[error("invalid repository name {0:?}")]
    Name(String),
    #[error("reading the blob: {0}")]
    Body(String),
    #[error("the blob is {got} bytes or more, expected {expected}")]
    Length { expected: u64, got: u64 },
    #[error("the blob has digest {computed}, expected {expected}")]
    Digest { expected: Digest, computed: Digest },
    /// The file system is full (or a quota exhausted): the blob was not stored and its upload
    /// file is gone; the same write succeeds once space is freed.
    #[error("{} ({what}: {error}); free space and retry", error::OUT_OF_SPACE)]
    OutOfSpace {
        what: &'static str,
        error: std::io::Error,
    },
    #[error("{what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl PutBlobError {
    fn io(what: &'static str, source: std::io::Error) -> Self {
        if error::is_out_of_space(&source) {
            PutBlobError::OutOfSpace {
                what,
                error: source,
            }
        } else {
            PutBlobError::Io { what, source }
        }
    }
}
