//! The built-in registry: opened in the data directory, served on a loopback port of its own
//! to the workers (who present a per-process credential), reached by the login servers
//! in-process, and collected of its garbage every `--gc-interval-seconds`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::periodic::{self, First};

/// The user the workers and the login servers present to the built-in registry.
pub const INTERNAL_USER: &str = "acr-import-internal";

/// Lets exactly the internal user in (clients reach the registry through the login servers,
/// which decide their rights).
struct InternalOnly {
    password: SecretString,
}

impl acr_registry::Authenticator for InternalOnly {
    fn authorize<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
        _repository: Option<&'a str>,
        _actions: &'a [acr_registry::Action],
    ) -> BoxFuture<'a, bool> {
        let ok = username == INTERNAL_USER
            && acr_core::admin::constant_time_eq(
                self.password.expose_secret().as_bytes(),
                password.as_bytes(),
            );
        Box::pin(async move { ok })
    }
}

/// What the rest of the process needs of the running built-in registry.
pub struct Builtin {
    pub registry: acr_registry::Registry,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    pub addr: std::net::SocketAddr,
    /// `Authorization` of the internal user.
    pub authorization: axum::http::HeaderValue,
}

/// Opens the registry, binds its internal listener, points the workers at it with the
/// internal credential, and serves it until `stop` on `copies`, the workers' runtime
/// (`copy_runtime`): only the workers connect to that listener, and their requests are part of
/// the copies, which an `importImage` POST must not queue behind on the API's runtime.
pub async fn start(
    b: &config::BuiltinRegistrySettings,
    settings: &mut config::Settings,
    stop: &CancellationToken,
    copies: &tokio::runtime::Handle,
) -> anyhow::Result<Builtin> {
    use rand::RngCore as _;
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let password: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{INTERNAL_USER}:{password}"));
    let authorization = axum::http::HeaderValue::from_str(&format!("Basic {basic}"))
        .context("the internal credential")?;
    let password = SecretString::from(password);
    settings.worker.backend_credentials = acr_oci::Credentials::Basic {
        username: INTERNAL_USER.to_string(),
        password: password.clone(),
    };
    let registry = acr_registry::Registry::open(acr_registry::RegistryConfig {
        data_dir: b.data_dir.clone(),
        login_server_suffix: None,
        auth: Some(Arc::new(InternalOnly { password })),
        token_lifetime: Duration::from_secs(3600),
        durability: b.durability,
        upload_idle_timeout: b.upload_idle,
    })
    .await
    .map_err(|e| anyhow::anyhow!("opening the built-in registry: {}", crate::error_chain(&e)))?;
    // Bound here, registered with the reactor of the runtime that serves it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .context("binding the built-in registry's internal listener")?;
    let addr = listener
        .local_addr()
        .context("reading the registry's address")?;
    settings.worker.backend_url =
        url::Url::parse(&format!("http://{addr}/")).context("the built-in registry's URL")?;
    if let Some(interval) = b.gc_interval {
        let (registry, grace) = (registry.clone(), b.gc_grace);
        tokio::spawn(periodic::every(
            interval,
            First::AfterInterval,
            stop.clone(),
            move || collect_garbage(registry.clone(), grace),
        ));
    }
    let measured = registry.clone();
    tokio::spawn(periodic::every(
        Duration::from_secs(10),
        First::Now,
        stop.clone(),
        move || measure_disk(measured.clone()),
    ));
    let swept = registry.clone();
    tokio::spawn(periodic::every(
        (b.upload_idle / 2).min(Duration::from_secs(60)),
        First::AfterInterval,
        stop.clone(),
        move || sweep_uploads(swept.clone()),
    ));
    let stop = stop.clone();
    let router = registry.router();
    let server = copies.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    Ok(Builtin {
        registry,
        server,
        addr,
        authorization,
    })
}

/// Sets the disk usage gauges (at once, then every 10 s).
async fn measure_disk(registry: acr_registry::Registry) {
    match registry.disk_usage().await {
        Ok(u) => acr_core::metrics::builtin_disk(u.content_bytes, u.content_files, u.upload_bytes),
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "measuring the built-in registry's disk usage")
        }
    }
}

/// Cancels idle upload sessions.
async fn sweep_uploads(registry: acr_registry::Registry) {
    let n = registry.sweep_uploads().await;
    if n > 0 {
        tracing::info!(cancelled = n, "idle upload sessions cancelled");
    }
}

/// Collects the built-in registry's garbage (every `--gc-interval-seconds`).
async fn collect_garbage(registry: acr_registry::Registry, grace: Duration) {
    let options = acr_registry::GcOptions {
        grace,
        dry_run: false,
    };
    match registry.collect_garbage(options).await {
        Ok(r) if r.freed_blobs > 0 => tracing::info!(
            freed_blobs = r.freed_blobs,
            freed_bytes = r.freed_bytes,
            kept_recent = r.kept_recent,
            blobs = r.blobs,
            "garbage collection freed unreferenced content"
        ),
        Ok(r) => tracing::debug!(
            blobs = r.blobs,
            kept_recent = r.kept_recent,
            "garbage collection: nothing to free"
        ),
        Err(e) => tracing::warn!(error = %crate::error_chain(&e), "garbage collection failed"),
    }
}

/// The built-in registry's disk usage per repository, for the data plane's repository
/// properties.
pub struct Usage(pub acr_registry::Registry);

impl acr_frontdoor::RepositoryUsage for Usage {
    fn repository_bytes<'a>(&'a self, repository: &'a str) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async move {
            match self.0.repository_bytes(repository).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain(&e), "disk usage of a repository");
                    None
                }
            }
        })
    }
}

/// The built-in registry as the copy engine's in-process blob sink: the workers' blobs from
/// other registries go to its upload path directly (one hash instead of two, no loopback HTTP).
pub struct Sink(pub acr_registry::Registry);

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("built-in registry sink")
    }
}

impl acr_oci::BlobSink for Sink {
    fn put_blob<'a>(
        &'a self,
        repository: &'a acr_core::reference::Repository,
        digest: &'a acr_core::reference::Digest,
        size: u64,
        body: acr_oci::BlobBody,
    ) -> BoxFuture<'a, Result<(), acr_oci::OciError>> {
        use acr_oci::OciError;
        use acr_registry::PutBlobError;
        Box::pin(async move {
            let registry = "built-in registry".to_owned();
            let what = format!("blob {digest}");
            self.0
                .put_blob(repository.as_str(), digest, size, body)
                .await
                .map_err(|e| match e {
                    PutBlobError::Digest { expected, computed } => OciError::DigestMismatch {
                        registry,
                        what,
                        expected: expected.to_string(),
                        actual: computed.to_string(),
                    },
                    PutBlobError::Length { expected, got } => OciError::SizeMismatch {
                        registry,
                        what,
                        expected,
                        actual: got,
                    },
                    // The body is the source's stream: its failures are recorded (and judged)
                    // by the copy engine; this only says the write stopped.
                    PutBlobError::Body(detail) => OciError::Network { registry, detail },
                    other => OciError::Invalid {
                        registry,
                        detail: crate::error_chain(&other),
                    },
                })
        })
    }
}

/// `acr-import gc`: one collection of the built-in registry of a stopped data directory (its
/// lock refuses a directory a service is using), printing every blob freed and a summary.
pub async fn collect_offline(args: &config::GcArgs) -> anyhow::Result<()> {
    let dir = args.data_dir.join(config::REGISTRY_DIR);
    if !dir.join("blobs").is_dir() {
        anyhow::bail!(
            "{} holds no built-in registry (no blobs/ directory)",
            dir.display()
        );
    }
    let registry = acr_registry::Registry::open(acr_registry::RegistryConfig {
        data_dir: dir.clone(),
        login_server_suffix: None,
        auth: None,
        token_lifetime: Duration::from_secs(60),
        durability: acr_registry::Durability::None,
        upload_idle_timeout: acr_registry::UPLOAD_IDLE_TIMEOUT,
    })
    .await
    .map_err(|e| anyhow::anyhow!("{}", crate::error_chain(&e)))?;
    let report = registry
        .collect_garbage(acr_registry::GcOptions {
            grace: Duration::from_secs(args.grace_seconds),
            dry_run: args.dry_run,
        })
        .await
        .map_err(|e| anyhow::anyhow!("garbage collection: {}", crate::error_chain(&e)))?;
    let verb = if args.dry_run { "would free" } else { "freed" };
    for (digest, size) in &report.freed {
        println!("{verb} {digest} {size} bytes");
    }
    println!(
        "{}: {} of {} blobs, {} of {} bytes{}{}",
        dir.display(),
        report.freed_blobs,
        report.blobs,
        report.freed_bytes,
        report.bytes,
        if args.dry_run {
            " would be freed (dry run: nothing deleted)"
        } else {
            " freed"
        },
        if report.kept_recent > 0 {
            format!(
                "; {} unreferenced kept (younger than --grace-seconds)",
                report.kept_recent
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
