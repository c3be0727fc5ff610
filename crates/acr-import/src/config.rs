//! Command line and environment: parsed once, validated, secrets kept in `SecretString`.

use std::time::Duration;

use acr_oci::{ClientConfig, Credentials};
use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;
use url::Url;

#[derive(Debug, Parser)]
#[command(
    name = "acr-import",
    version,
    about = "Azure Container Registry importImage emulator that really copies images"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the ARM API and run the import workers.
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(MigrateArgs),
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: SecretString,
    /// Log format: text or json.
    #[arg(long, env = "ACR_IMPORT_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address the ARM API listens on.
    #[arg(long, env = "ACR_IMPORT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// PostgreSQL URL; migrations are applied at start.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: SecretString,
    /// OCI registry that stores the emulated registries' content (e.g. http://127.0.0.1:5000).
    #[arg(long, env = "ACR_IMPORT_BACKEND_REGISTRY")]
    pub backend_registry: String,
    /// Username for the backend registry.
    #[arg(long, env = "ACR_IMPORT_BACKEND_USERNAME")]
    pub backend_username: Option<String>,
    /// Password for the backend registry (environment only: command lines are visible to others).
    #[arg(skip)]
    pub backend_password: Option<SecretString>,
    /// Concurrent import operations per process.
    #[arg(long, env = "ACR_IMPORT_WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// Seconds clients are told to wait between polls (Retry-After); 0 is raised to 1.
    #[arg(long, env = "ACR_IMPORT_RETRY_AFTER", default_value_t = 1)]
    pub retry_after: u32,
    /// Registries reached over plain HTTP (HOST:PORT); loopback addresses always are.
    #[arg(
        long = "insecure-registry",
        env = "ACR_IMPORT_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// Suffix of login servers: <name>.<suffix>.
    #[arg(
        long,
        env = "ACR_IMPORT_LOGIN_SERVER_SUFFIX",
        default_value = "azurecr.io"
    )]
    pub login_server_suffix: String,
    /// Base URL for the Location / Azure-AsyncOperation URLs (default: from the Host header).
    #[arg(long, env = "ACR_IMPORT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds a worker's lease lasts without a heartbeat before another worker takes over.
    #[arg(long, env = "ACR_IMPORT_LEASE_SECONDS", default_value_t = 30)]
    pub lease_seconds: u64,
    /// Seconds running imports may continue after SIGTERM before their leases are released.
    #[arg(long, env = "ACR_IMPORT_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,
    /// Blobs copied at once per import.
    #[arg(long, env = "ACR_IMPORT_COPY_CONCURRENCY", default_value_t = 4)]
    pub copy_concurrency: usize,
    /// Most manifests an imported image may have (an index and its children).
    #[arg(long, env = "ACR_IMPORT_MAX_MANIFESTS", default_value_t = 50)]
    pub max_manifests: usize,
    /// Blob transfers in flight per registry host, across all imports of this process.
    #[arg(long, env = "ACR_IMPORT_REGISTRY_CONCURRENCY", default_value_t = 4)]
    pub registry_concurrency: usize,
    /// Largest layer imported from a source given by registryUri (0: no limit).
    #[arg(long, env = "ACR_IMPORT_MAX_LAYER_BYTES", default_value_t = 2 * 1024 * 1024 * 1024)]
    pub max_layer_bytes: u64,
    /// A registry response that sends no byte for this long is abandoned (and resumed).
    #[arg(long, env = "ACR_IMPORT_STALL_TIMEOUT_SECONDS", default_value_t = 60)]
    pub stall_timeout_seconds: u64,
    /// An import still running after this long fails with ImportTimedOut.
    #[arg(
        long,
        env = "ACR_IMPORT_OPERATION_TIMEOUT_SECONDS",
        default_value_t = 3600
    )]
    pub operation_timeout_seconds: u64,
    /// Log format: text or json.
    #[arg(long, env = "ACR_IMPORT_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

/// Validated settings for the pieces.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api: acr_api::ApiConfig,
    pub worker: acr_worker::WorkerConfig,
}

impl ServeArgs {
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let backend_url = parse_http_url("--backend-registry", &self.backend_registry)?;
        if backend_url.path() != "/" {
            anyhow::bail!("--backend-registry must be a registry root such as http://127.0.0.1:5000, without a path");
        }
        let public_url = self
            .public_url
            .as_deref()
            .map(|u| parse_http_url("--public-url", u))
            .transpose()?;
        if self.workers == 0 || self.workers > 256 {
            anyhow::bail!("--workers must be between 1 and 256");
        }
        if self.lease_seconds < 3 {
            anyhow::bail!("--lease-seconds must be at least 3");
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            anyhow::bail!("--log-format must be 'text' or 'json'");
        }
        let password = std::env::var("ACR_IMPORT_BACKEND_PASSWORD")
            .ok()
            .map(SecretString::from);
        let backend_credentials = match (
            &self.backend_username,
            password.or(self.backend_password.clone()),
        ) {
            (Some(u), Some(p)) => Credentials::Basic {
                username: u.clone(),
                password: p,
            },
            (None, Some(p)) => Credentials::Token(p),
            (Some(_), None) => anyhow::bail!(
                "ACR_IMPORT_BACKEND_USERNAME is set but ACR_IMPORT_BACKEND_PASSWORD is not"
            ),
            (None, None) => Credentials::Anonymous,
        };
        if self.registry_concurrency == 0 || self.registry_concurrency > 256 {
            anyhow::bail!("--registry-concurrency must be between 1 and 256");
        }
        if self.stall_timeout_seconds == 0 || self.operation_timeout_seconds == 0 {
            anyhow::bail!(
                "--stall-timeout-seconds and --operation-timeout-seconds must be at least 1"
            );
        }
        let client = ClientConfig {
            registry_concurrency: self.registry_concurrency,
            read_timeout: Duration::from_secs(self.stall_timeout_seconds),
            insecure_registries: self
                .insecure_registries
                .iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
            ..ClientConfig::default()
        };
        Ok(Settings {
            api: acr_api::ApiConfig {
                retry_after: self.retry_after.max(1),
                login_server_suffix: self.login_server_suffix.to_ascii_lowercase(),
                public_url,
                scheme: "http",
            },
            worker: acr_worker::WorkerConfig {
                workers: self.workers,
                lease: Duration::from_secs(self.lease_seconds),
                poll_interval: Duration::from_secs(2),
                max_attempts: 20,
                max_transient_attempts: 3,
                backend_url,
                backend_credentials,
                client,
                copy_concurrency: self.copy_concurrency.clamp(1, 64),
                max_manifests: self.max_manifests.max(1),
                max_layer_bytes: (self.max_layer_bytes > 0).then_some(self.max_layer_bytes),
                operation_timeout: Duration::from_secs(self.operation_timeout_seconds),
                login_server_suffix: self.login_server_suffix.to_ascii_lowercase(),
                shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            },
        })
    }
}

fn parse_http_url(flag: &str, s: &str) -> anyhow::Result<Url> {
    let u = Url::parse(s).map_err(|e| anyhow::anyhow!("{flag} '{s}' is not a valid URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        anyhow::bail!("{flag} '{s}' must be an http:// or https:// URL with a host");
    }
    Ok(u)
}

/// A database URL with its password replaced, for messages.
pub fn redact_url(s: &str) -> String {
    match Url::parse(s) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparseable URL)".to_owned(),
    }
}
