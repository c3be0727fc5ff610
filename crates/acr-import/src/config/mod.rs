//! Command line and environment: parsed once, validated, secrets kept in `SecretString`.

use std::path::PathBuf;
use std::sync::Arc;
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
    /// Print the OpenAPI document of the ARM API (`openapi/acr-import.json`), or with
    /// `--registry` the login servers' (`openapi/registry.json`).
    Openapi(OpenapiArgs),
    /// Print /etc/hosts lines mapping every registry's login server to an address (asks a
    /// running service's ARM API), so that clients reach https://<name>.<suffix> without DNS.
    Hosts(HostsArgs),
    /// Import an image through a running service's ARM API (importImage), following the
    /// operation with a live progress bar; `--file` imports many at once.
    Import(Box<ImportArgs>),
    /// Collect the garbage of the built-in registry in a data directory no service is using:
    /// delete the content no repository references any more and print what was freed.
    Gc(GcArgs),
}

#[derive(Debug, Args)]
pub struct OpenapiArgs {
    /// The login servers' document (`/v2`, `/acr/v1`, `/oauth2`) instead of the ARM API's.
    #[arg(long)]
    pub registry: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// The service's data directory (the built-in registry is its `registry/`).
    #[arg(long, env = "ACR_IMPORT_DATA_DIR", default_value = ".acr-import")]
    pub data_dir: PathBuf,
    /// Print what would be freed; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep unreferenced content younger than this many seconds (nothing writes to a stopped
    /// data directory, so everything unreferenced may go).
    #[arg(long, default_value_t = 0)]
    pub grace_seconds: u64,
}

#[derive(Debug, Args)]
pub struct HostsArgs {
    /// The running service's ARM API.
    #[arg(
        long,
        env = "ACR_IMPORT_ENDPOINT",
        default_value = "http://127.0.0.1:8080"
    )]
    pub endpoint: String,
    /// The address the login servers are reached on (their HTTPS listener must be on port 443
    /// of it for https://<name>.<suffix> to work unchanged).
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthArg {
    /// Any token is accepted.
    None,
    /// The role assignments of --rbac-config decide.
    ArmRbac,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Log format.
    #[arg(long, env = "ACR_IMPORT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address the ARM API listens on.
    #[arg(long, env = "ACR_IMPORT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// External OCI registry that stores the emulated registries' content (e.g.
    /// http://registry:5000). Default: the built-in registry on --registry-listen.
    #[arg(long, env = "ACR_IMPORT_BACKEND_REGISTRY")]
    pub backend_registry: Option<String>,
    /// Address of the login servers' plain-HTTP listener (every emulated registry, whatever
    /// the backend): `Host: <name>.<suffix>` is registry <name>, any other host sees
    /// `<name>/<repo>` paths.
    #[arg(
        long,
        env = "ACR_IMPORT_REGISTRY_LISTEN",
        default_value = "127.0.0.1:5000"
    )]
    pub registry_listen: String,
    /// The plain listener asks for credentials too, as ACR does (the HTTPS one always does):
    /// admin users, refresh tokens, Entra tokens, through the Bearer token dance.
    #[arg(long, env = "ACR_IMPORT_REGISTRY_AUTH")]
    pub registry_auth: bool,
    /// Address of the login servers' HTTPS listener (default 127.0.0.1:5443 when the ARM API
    /// has TLS). Its certificate covers *.<suffix>, <suffix>, localhost, 127.0.0.1 and ::1,
    /// from the local CA of --tls-dir, unless --registry-tls-cert/--registry-tls-key are given.
    #[arg(long, env = "ACR_IMPORT_REGISTRY_LISTEN_TLS")]
    pub registry_listen_tls: Option<String>,
    /// PEM certificate chain of the login servers' HTTPS listener.
    #[arg(
        long,
        env = "ACR_IMPORT_REGISTRY_TLS_CERT",
        requires = "registry_tls_key"
    )]
    pub registry_tls_cert: Option<PathBuf>,
    /// PEM private key of the login servers' HTTPS listener.
    #[arg(
        long,
        env = "ACR_IMPORT_REGISTRY_TLS_KEY",
        requires = "registry_tls_cert"
    )]
    pub registry_tls_key: Option<PathBuf>,
    /// Address of a forward proxy that tunnels `CONNECT <name>.<suffix>:<port>` to the
    /// login servers' HTTPS listener (and refuses everything else): set
    /// HTTPS_PROXY=http://<this address> to reach login servers without DNS. Off by default.
    #[arg(long, env = "ACR_IMPORT_PROXY_LISTEN")]
    pub proxy_listen: Option<String>,
    /// Also serve `GET /metrics` (Prometheus text format) on this address, alone (it is
    /// always served on --listen as well). No token is asked for on either.
    #[arg(long, env = "ACR_IMPORT_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Seconds between garbage collections of the built-in registry (content no repository
    /// references any more is deleted); 0: never.
    #[arg(long, env = "ACR_IMPORT_GC_INTERVAL_SECONDS", default_value_t = 3600)]
    pub gc_interval_seconds: u64,
    /// Unreferenced content younger than this many seconds is kept by garbage collection.
    #[arg(long, env = "ACR_IMPORT_GC_GRACE_SECONDS", default_value_t = 600)]
    pub gc_grace_seconds: u64,
    /// When the built-in registry and the SQLite store acknowledge a write: `none` (the page
    /// cache has it: safe against a crashed or killed process, not against a power loss) or
    /// `fsync` (blobs, manifests, tags and their directories are fsynced before the answer,
    /// SQLite runs `synchronous=FULL`: an import that says Succeeded survives a power loss).
    #[arg(long, env = "ACR_IMPORT_REGISTRY_DURABILITY", value_enum, default_value_t = Durability::None)]
    pub registry_durability: Durability,
    /// Upload sessions of the built-in registry untouched for this many seconds are cancelled
    /// and their files removed (checked every minute, or every half of it when shorter).
    #[arg(long, env = "ACR_IMPORT_UPLOAD_IDLE_SECONDS", default_value_t = 3600)]
    pub upload_idle_seconds: u64,
    /// Seconds between sweeps of ACR's retention policy: untagged manifests older than a
    /// Premium registry's `policies.retentionPolicy.days` are deleted while it is enabled
    /// (whatever the backend); 0: never.
    #[arg(
        long,
        env = "ACR_IMPORT_RETENTION_INTERVAL_SECONDS",
        default_value_t = 3600
    )]
    pub retention_interval_seconds: u64,
    /// Username for the backend registry.
    #[arg(long, env = "ACR_IMPORT_BACKEND_USERNAME")]
    pub backend_username: Option<String>,
    /// Concurrent import operations per process.
    #[arg(long, env = "ACR_IMPORT_WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// Niceness of the workers' threads (0-19; Linux): how far below the API's the copies'
    /// CPU priority is, so that a request never waits for a core behind a copy. 0: the same.
    #[arg(long, env = "ACR_IMPORT_COPY_NICE", default_value_t = 10)]
    pub copy_nice: i32,
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
    /// Browser origins allowed to call the ARM API, the operations feed and the login servers
    /// (CORS), e.g. https://portal.example:8443; `*` or none: any origin (ARM authenticates
    /// with a bearer header, never a cookie).
    #[arg(
        long = "cors-origin",
        env = "ACR_IMPORT_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
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
    /// Log format.
    #[arg(long, env = "ACR_IMPORT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Address of the HTTPS listener (default 127.0.0.1:8443 when a certificate is configured).
    /// The Azure SDKs and CLI send bearer tokens only over HTTPS.
    #[arg(long, env = "ACR_IMPORT_LISTEN_TLS")]
    pub listen_tls: Option<String>,
    /// PEM certificate chain of the HTTPS listener (with --tls-key).
    #[arg(long, env = "ACR_IMPORT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the HTTPS listener (with --tls-cert).
    #[arg(long, env = "ACR_IMPORT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a certificate for the --tls-host names issued by a local CA kept in
    /// --tls-dir (created at the first start, reused afterwards: trust its ca.pem once).
    #[arg(long, env = "ACR_IMPORT_TLS_SELF_SIGNED", conflicts_with = "tls_cert")]
    pub tls_self_signed: bool,
    /// Where --tls-self-signed keeps its CA (ca.pem, ca-key.pem).
    #[arg(long, env = "ACR_IMPORT_TLS_DIR", default_value = ".acr-import/tls")]
    pub tls_dir: PathBuf,
    /// Also write the self-signed CA certificate here.
    #[arg(long, env = "ACR_IMPORT_TLS_CA_OUT")]
    pub tls_ca_out: Option<PathBuf>,
    /// Names and addresses the self-signed certificate is valid for.
    #[arg(
        long = "tls-host",
        env = "ACR_IMPORT_TLS_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    pub tls_hosts: Vec<String>,
    /// Subscriptions GET /subscriptions lists (besides those holding registries); the first is
    /// the default of `az login --identity`.
    #[arg(
        long = "subscription",
        env = "ACR_IMPORT_SUBSCRIPTIONS",
        value_delimiter = ',',
        default_value = DEFAULT_SUBSCRIPTION
    )]
    pub subscriptions: Vec<String>,
    /// Tenant id (`tid`) of minted tokens and of the subscriptions.
    #[arg(long, env = "ACR_IMPORT_TENANT_ID", default_value = DEFAULT_TENANT)]
    pub tenant_id: String,
    /// `oid` of the managed identity the token endpoint issues tokens for (a request may name
    /// another principal with `object_id`).
    #[arg(long, env = "ACR_IMPORT_IDENTITY_OBJECT_ID", default_value = DEFAULT_OBJECT_ID)]
    pub identity_object_id: String,
    /// File holding the HS256 key the token endpoint signs with (default: a random key per
    /// start). With --auth arm-rbac, setting it makes the service accept only tokens it signed.
    #[arg(long, env = "ACR_IMPORT_TOKEN_KEY_FILE")]
    pub token_key_file: Option<PathBuf>,
    /// Lifetime of minted tokens in seconds (clients treat under 5 minutes as expired).
    #[arg(
        long,
        env = "ACR_IMPORT_TOKEN_LIFETIME_SECONDS",
        default_value_t = 86_400
    )]
    pub token_lifetime_seconds: u64,
    /// Authorization: `none` accepts any token; `arm-rbac` requires the role assignments of
    /// --rbac-config.
    #[arg(long, env = "ACR_IMPORT_AUTH", value_enum, default_value_t = AuthArg::None)]
    pub auth: AuthArg,
    /// JSON file with roleAssignments (and custom roleDefinitions) for --auth arm-rbac.
    #[arg(long, env = "ACR_IMPORT_RBAC_CONFIG")]
    pub rbac_config: Option<PathBuf>,
    /// How long finished operations stay readable through their status URLs.
    #[arg(
        long,
        env = "ACR_IMPORT_OPERATION_RETENTION_SECONDS",
        default_value_t = 86_400
    )]
    pub operation_retention_seconds: u64,
    /// Opt-in: how long importImage may wait for an import that turns out to have nothing to
    /// copy, to answer 200 at once as ACR does. Default 0: a POST never waits for a copy and
    /// every accepted import answers 202 as soon as it is stored.
    #[arg(long, env = "ACR_IMPORT_SYNC_WAIT_MS", default_value_t = 0)]
    pub sync_wait_ms: u64,
    /// File holding a 32-byte key (raw, or 64 hex characters): source credentials are stored
    /// AES-256-GCM encrypted while their operation runs. Every process on the database needs it.
    #[arg(long, env = "ACR_IMPORT_CREDENTIALS_KEY_FILE")]
    pub credentials_key_file: Option<PathBuf>,
    /// Refuse sources, token realms and redirects that reach private ranges (RFC 1918,
    /// 100.64.0.0/10, fc00::/7) or loopback (link-local/metadata addresses always are refused).
    #[arg(long, env = "ACR_IMPORT_DENY_PRIVATE_NETWORKS")]
    pub deny_private_networks: bool,
    /// PEM file of CA certificates trusted for HTTPS sources, besides the built-in roots
    /// (repeatable).
    #[arg(
        long = "source-ca-file",
        env = "ACR_IMPORT_SOURCE_CA_FILES",
        value_delimiter = ','
    )]
    pub source_ca_files: Vec<PathBuf>,
    /// Most unfinished (queued or running) imports per subscription; more get 429 (0: no limit).
    #[arg(
        long,
        env = "ACR_IMPORT_MAX_OPERATIONS_PER_SUBSCRIPTION",
        default_value_t = 100
    )]
    pub max_operations_per_subscription: u64,
    /// Most unfinished imports in the whole queue; more get 429 (0: no limit).
    #[arg(
        long,
        env = "ACR_IMPORT_MAX_QUEUED_OPERATIONS",
        default_value_t = 10_000
    )]
    pub max_queued_operations: u64,
}

/// Where operations and registries are stored.
#[derive(Debug, Args)]
pub struct StorageArgs {
    /// PostgreSQL URL, for shared and multi-process deployments (default: the embedded SQLite
    /// store in --data-dir, for this process only). Migrations are applied at start.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,
    /// Directory of acr-import's own data (the SQLite store when DATABASE_URL is not set);
    /// created if missing.
    #[arg(long, env = "ACR_IMPORT_DATA_DIR", default_value = ".acr-import")]
    pub data_dir: PathBuf,
}

/// The SQLite store's file in the data directory.
pub const SQLITE_FILE: &str = "acr-import.db";

/// The store to open.
#[derive(Debug)]
pub enum StoreLocation {
    Postgres(SecretString),
    /// The database file.
    Sqlite(PathBuf),
}

impl StorageArgs {
    pub fn location(&self) -> anyhow::Result<StoreLocation> {
        use secrecy::ExposeSecret;
        let url = self
            .database_url
            .as_ref()
            .map(|u| u.expose_secret().trim())
            .filter(|u| !u.is_empty());
        let Some(url) = url else {
            return Ok(StoreLocation::Sqlite(self.data_dir.join(SQLITE_FILE)));
        };
        // `sqlite://PATH` or `sqlite:PATH`: a SQLite file named explicitly.
        let Some(rest) = url.strip_prefix("sqlite:") else {
            return Ok(StoreLocation::Postgres(SecretString::from(url.to_owned())));
        };
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() || path.contains('?') || path == ":memory:" {
            anyhow::bail!(
                "DATABASE_URL '{url}': a sqlite: URL names a database file (sqlite://PATH), without options"
            );
        }
        Ok(StoreLocation::Sqlite(PathBuf::from(path)))
    }
}

pub const DEFAULT_SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";
pub const DEFAULT_TENANT: &str = "00000000-0000-0000-0000-00000000ac12";
pub const DEFAULT_OBJECT_ID: &str = "00000000-0000-0000-0000-0000000001d0";

/// The HTTPS listener.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub listen: String,
    pub source: crate::tls::TlsSource,
    pub ca_out: Option<PathBuf>,
}

/// The login servers' listeners.
#[derive(Debug, Clone)]
pub struct LoginSettings {
    pub listen: std::net::SocketAddr,
    /// The HTTPS listener and its certificate.
    pub tls: Option<(String, crate::tls::TlsSource)>,
    /// The CONNECT proxy.
    pub proxy: Option<std::net::SocketAddr>,
    pub front: acr_frontdoor::FrontDoorConfig,
}

/// The built-in registry (no --backend-registry): served to the workers on a loopback port of
/// its own with their credential, and to clients through the login servers.
#[derive(Debug, Clone)]
pub struct BuiltinRegistrySettings {
    pub data_dir: PathBuf,
    /// Between garbage collections; `None`: never.
    pub gc_interval: Option<Duration>,
    /// Unreferenced content younger than this is kept.
    pub gc_grace: Duration,
    pub durability: acr_registry::Durability,
    /// Idle upload sessions are cancelled after this long.
    pub upload_idle: Duration,
}

/// `--registry-durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    None,
    Fsync,
}

impl Durability {
    pub fn registry(self) -> acr_registry::Durability {
        match self {
            Durability::None => acr_registry::Durability::None,
            Durability::Fsync => acr_registry::Durability::Fsync,
        }
    }
}

/// The built-in registry's files in the data directory.
pub const REGISTRY_DIR: &str = "registry";
/// The key that derives the admin users' passwords, in the data directory.
pub const ADMIN_KEY_FILE: &str = "admin.key";

/// The address to reach a listener on: an unspecified address (0.0.0.0, ::) is reached on
/// loopback.
pub fn connect_addr(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// Reads the admin key from `dir`, creating it (32 random bytes, mode 0600) the first time.
pub fn load_or_create_admin_key(
    dir: &std::path::Path,
) -> anyhow::Result<acr_core::admin::AdminKey> {
    use acr_core::admin::{AdminKey, KEY_LEN};
    use std::io::Write as _;
    let path = dir.join(ADMIN_KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!(
                    "{} must hold {KEY_LEN} bytes (delete it to make a new one: admin passwords change)",
                    path.display()
                )
            })?;
            Ok(AdminKey::new(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use rand::RngCore as _;
            let mut key = [0u8; KEY_LEN];
            rand::thread_rng().fill_bytes(&mut key);
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts
                .open(&path)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?;
            f.write_all(&key)
                .and_then(|()| f.sync_all())
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            Ok(AdminKey::new(key))
        }
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    }
}

/// Validated settings for the pieces.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `Some` when the built-in registry is the backend.
    pub builtin_registry: Option<BuiltinRegistrySettings>,
    pub api: acr_api::ApiConfig,
    pub credentials_key: Option<acr_store::CredentialsKey>,
    pub worker: acr_worker::WorkerConfig,
    pub tls: Option<TlsSettings>,
    pub login: LoginSettings,
    /// Between retention sweeps; `None`: never.
    pub retention_interval: Option<Duration>,
    /// The workers' threads' niceness (`copy_runtime`).
    pub copy_nice: i32,
}

mod import;
pub use import::ImportArgs;
mod settings;
pub use settings::redact_url;

#[cfg(test)]
mod tests;
