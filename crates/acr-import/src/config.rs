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
    /// Print the OpenAPI document.
    Openapi,
    /// Print /etc/hosts lines mapping every registry's login server to an address (asks a
    /// running service's ARM API), so that clients reach https://<name>.<suffix> without DNS.
    Hosts(HostsArgs),
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

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Log format: text or json.
    #[arg(long, env = "ACR_IMPORT_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
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
    /// Seconds between garbage collections of the built-in registry (content no repository
    /// references any more is deleted); 0: never.
    #[arg(long, env = "ACR_IMPORT_GC_INTERVAL_SECONDS", default_value_t = 3600)]
    pub gc_interval_seconds: u64,
    /// Unreferenced content younger than this many seconds is kept by garbage collection.
    #[arg(long, env = "ACR_IMPORT_GC_GRACE_SECONDS", default_value_t = 600)]
    pub gc_grace_seconds: u64,
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
    #[arg(long, env = "ACR_IMPORT_AUTH", default_value = "none", value_parser = ["none", "arm-rbac"])]
    pub auth: String,
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
    /// How long importImage waits for an import that has nothing to copy, to answer 200 at
    /// once as ACR does (0: always 202).
    #[arg(long, env = "ACR_IMPORT_SYNC_WAIT_MS", default_value_t = 300)]
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
}

impl ServeArgs {
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let (backend_url, builtin_registry) = match &self.backend_registry {
            Some(b) => {
                let url = parse_http_url("--backend-registry", b)?;
                if url.path() != "/" {
                    anyhow::bail!("--backend-registry must be a registry root such as http://127.0.0.1:5000, without a path");
                }
                (url, None)
            }
            None => {
                if self.backend_username.is_some()
                    || std::env::var_os("ACR_IMPORT_BACKEND_PASSWORD").is_some()
                {
                    anyhow::bail!("ACR_IMPORT_BACKEND_USERNAME / ACR_IMPORT_BACKEND_PASSWORD need --backend-registry (the built-in registry uses its own credentials)");
                }
                // Replaced by the internal listener's address once it is bound.
                let url = Url::parse("http://127.0.0.1:0/")
                    .map_err(|e| anyhow::anyhow!("the built-in registry's URL: {e}"))?;
                let builtin = BuiltinRegistrySettings {
                    data_dir: self.storage.data_dir.join(REGISTRY_DIR),
                    gc_interval: (self.gc_interval_seconds > 0)
                        .then(|| Duration::from_secs(self.gc_interval_seconds)),
                    gc_grace: Duration::from_secs(self.gc_grace_seconds),
                };
                (url, Some(builtin))
            }
        };
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
        let network = acr_oci::NetworkPolicy {
            deny_private: self.deny_private_networks,
        };
        let mut extra_roots_pem = Vec::new();
        for path in &self.source_ca_files {
            let pem = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("cannot read --source-ca-file {}: {e}", path.display())
            })?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                anyhow::bail!(
                    "--source-ca-file {} holds no PEM certificate",
                    path.display()
                );
            }
            extra_roots_pem.push(pem);
        }
        let credentials_key = match &self.credentials_key_file {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("cannot read --credentials-key-file {}: {e}", path.display())
                })?;
                Some(
                    acr_store::CredentialsKey::from_file_bytes(&bytes).map_err(|e| {
                        anyhow::anyhow!("--credentials-key-file {}: {e}", path.display())
                    })?,
                )
            }
            None => None,
        };
        let client = ClientConfig {
            network_guard: Some(network),
            extra_roots_pem,
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
        let tls = self.tls_settings()?;
        let uuid = |flag: &str, v: &str| -> anyhow::Result<String> {
            acr_core::arm::validate_subscription(v.trim())
                .map_err(|_| anyhow::anyhow!("{flag} '{v}' must be a GUID"))
        };
        let mut subscriptions = Vec::new();
        for s in &self.subscriptions {
            let s = uuid("--subscription", s)?;
            if !subscriptions.contains(&s) {
                subscriptions.push(s);
            }
        }
        let signing_key = match &self.token_key_file {
            Some(path) => {
                let k = std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("cannot read --token-key-file {}: {e}", path.display())
                })?;
                if k.len() < 16 {
                    anyhow::bail!("--token-key-file must hold at least 16 bytes");
                }
                k
            }
            None => {
                use rand::RngCore as _;
                let mut k = vec![0u8; 32];
                rand::thread_rng().fill_bytes(&mut k);
                k
            }
        };
        let auth = match self.auth.as_str() {
            "arm-rbac" => {
                let path = self.rbac_config.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("--auth arm-rbac needs --rbac-config <file.json>")
                })?;
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("cannot read --rbac-config {}: {e}", path.display())
                })?;
                let rbac = acr_core::rbac::RbacConfig::from_json(&text)
                    .map_err(|e| anyhow::anyhow!("--rbac-config {}: {e}", path.display()))?;
                acr_api::caller::AuthMode::ArmRbac {
                    rbac: Arc::new(rbac),
                    verify_signature: self.token_key_file.is_some(),
                }
            }
            _ => acr_api::caller::AuthMode::Open,
        };
        if self.token_lifetime_seconds < 600 {
            anyhow::bail!("--token-lifetime-seconds must be at least 600 (clients treat tokens about to expire as expired)");
        }
        let backend_repository_delete = builtin_registry.is_some();
        let suffix = self.login_server_suffix()?;
        let login = self.login_settings(tls.as_ref(), &suffix)?;
        Ok(Settings {
            builtin_registry,
            login,
            api: acr_api::ApiConfig {
                retry_after: self.retry_after.max(1),
                login_server_suffix: suffix.clone(),
                public_url,
                scheme: "http",
                tenant_id: uuid("--tenant-id", &self.tenant_id)?,
                subscriptions,
                identity: acr_api::IdentityConfig {
                    object_id: uuid("--identity-object-id", &self.identity_object_id)?,
                    signing_key: Arc::new(signing_key),
                    token_lifetime: Duration::from_secs(self.token_lifetime_seconds),
                },
                auth,
                operation_retention: Duration::from_secs(self.operation_retention_seconds.max(1)),
                sync_wait: Duration::from_millis(self.sync_wait_ms.min(10_000)),
                queue_limits: acr_store::QueueLimits {
                    per_subscription: (self.max_operations_per_subscription > 0)
                        .then_some(self.max_operations_per_subscription),
                    total: (self.max_queued_operations > 0).then_some(self.max_queued_operations),
                },
                source_network: network,
                admin_key: None,
            },
            credentials_key,
            tls,
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
                login_server_suffix: suffix,
                shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
                backend_repository_delete,
            },
        })
    }
}

impl ServeArgs {
    /// `--login-server-suffix`, normalised once for every component: lowercase, without
    /// surrounding spaces or a leading dot, and a valid DNS name.
    fn login_server_suffix(&self) -> anyhow::Result<String> {
        let suffix = self
            .login_server_suffix
            .trim()
            .trim_start_matches('.')
            .to_ascii_lowercase();
        let valid = !suffix.is_empty()
            && suffix.len() <= 200
            && suffix.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            anyhow::bail!(
                "--login-server-suffix '{}' must be a DNS name such as azurecr.io",
                self.login_server_suffix
            );
        }
        Ok(suffix)
    }

    fn login_settings(
        &self,
        arm_tls: Option<&TlsSettings>,
        suffix: &str,
    ) -> anyhow::Result<LoginSettings> {
        let addr = |flag: &str, v: &str| -> anyhow::Result<std::net::SocketAddr> {
            v.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{flag} '{v}' must be an IP address and port such as 127.0.0.1:5000"
                )
            })
        };
        let listen = addr("--registry-listen", &self.registry_listen)?;
        let suffix = suffix.to_owned();
        let tls_listen = match (&self.registry_listen_tls, arm_tls) {
            (Some(l), _) => Some(l.clone()),
            (None, Some(_)) => Some("127.0.0.1:5443".to_owned()),
            (None, None) => None,
        };
        let tls = match tls_listen {
            None => {
                if self.registry_tls_cert.is_some() {
                    anyhow::bail!(
                        "--registry-tls-cert needs --registry-listen-tls (or --listen-tls)"
                    );
                }
                None
            }
            Some(l) => {
                addr("--registry-listen-tls", &l)?;
                let source = match (&self.registry_tls_cert, &self.registry_tls_key) {
                    (Some(cert), Some(key)) => crate::tls::TlsSource::Files {
                        cert: cert.clone(),
                        key: key.clone(),
                    },
                    _ => crate::tls::TlsSource::SelfSigned {
                        dir: self.tls_dir.clone(),
                        hosts: vec![
                            format!("*.{suffix}"),
                            suffix.clone(),
                            "localhost".into(),
                            "127.0.0.1".into(),
                            "::1".into(),
                        ],
                    },
                };
                Some((l, source))
            }
        };
        let proxy = match &self.proxy_listen {
            Some(p) => {
                if tls.is_none() {
                    anyhow::bail!("--proxy-listen tunnels to the login servers' HTTPS listener: set --registry-listen-tls (or --listen-tls)");
                }
                Some(addr("--proxy-listen", p)?)
            }
            None => None,
        };
        Ok(LoginSettings {
            listen,
            tls,
            proxy,
            front: acr_frontdoor::FrontDoorConfig {
                login_server_suffix: suffix,
                plain_auth: self.registry_auth,
            },
        })
    }

    fn tls_settings(&self) -> anyhow::Result<Option<TlsSettings>> {
        let source = match (&self.tls_cert, &self.tls_key, self.tls_self_signed) {
            (Some(cert), Some(key), _) => crate::tls::TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            (None, None, true) => crate::tls::TlsSource::SelfSigned {
                dir: self.tls_dir.clone(),
                hosts: self
                    .tls_hosts
                    .iter()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .collect(),
            },
            (None, None, false) => {
                if self.listen_tls.is_some() {
                    anyhow::bail!("--listen-tls needs a certificate: --tls-cert and --tls-key, or --tls-self-signed");
                }
                return Ok(None);
            }
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        Ok(Some(TlsSettings {
            listen: self
                .listen_tls
                .clone()
                .unwrap_or_else(|| "127.0.0.1:8443".to_owned()),
            source,
            ca_out: self.tls_ca_out.clone(),
        }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    /// Every environment variable the serve command reads.
    fn serve_env_names() -> Vec<String> {
        let cli = Cli::command();
        let serve = cli
            .get_subcommands()
            .find(|c| c.get_name() == "serve")
            .expect("serve subcommand");
        let mut names: Vec<String> = serve
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        // Read from the environment only (secrets stay off command lines).
        names.push("ACR_IMPORT_BACKEND_PASSWORD".into());
        names.push("RUST_LOG".into());
        names
    }

    /// The environment docker-compose.yml and the Dockerfile set must be variables the
    /// binary reads: a typo there would silently fall back to a default.
    #[test]
    fn compose_and_dockerfile_set_only_known_variables() {
        let known = serve_env_names();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let compose = std::fs::read_to_string(root.join("docker-compose.yml")).expect("compose");
        let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
        let mut checked = 0;
        let set_in_compose = compose.lines().filter_map(|l| {
            let (k, _) = l.trim().split_once(':')?;
            (k.starts_with("ACR_IMPORT_") || k == "DATABASE_URL").then(|| k.to_string())
        });
        let set_in_dockerfile = dockerfile.split_whitespace().filter_map(|w| {
            let (k, _) = w.split_once('=')?;
            k.starts_with("ACR_IMPORT_").then(|| k.to_string())
        });
        for name in set_in_compose.chain(set_in_dockerfile) {
            assert!(
                known.contains(&name),
                "{name} is not read by acr-import serve"
            );
            checked += 1;
        }
        assert!(
            checked >= 7,
            "found only {checked} variables: the parser is broken"
        );
        // The production shape uses PostgreSQL and an external registry.
        assert!(compose.contains("DATABASE_URL: postgres://"));
        assert!(compose.contains("ACR_IMPORT_BACKEND_REGISTRY: http://registry:5000"));
        for service in ["postgres:", "registry:", "acr-import:"] {
            assert!(compose.contains(&format!("\n  {service}")), "{service}");
        }
        assert_eq!(compose.matches("healthcheck:").count(), 3);
        // Content is reached through the front door only: the login servers are published
        // (plain, HTTPS on 443 for network aliases, the proxy), the backend is not.
        for line in [
            "ACR_IMPORT_REGISTRY_LISTEN: 0.0.0.0:5000",
            "ACR_IMPORT_REGISTRY_LISTEN_TLS: 0.0.0.0:443",
            "ACR_IMPORT_PROXY_LISTEN: 0.0.0.0:3128",
            "- \"127.0.0.1:5443:443\"",
            "- myregistry.azurecr.io",
        ] {
            assert!(compose.contains(line), "{line}");
        }
        let registry = compose
            .split("\n  registry:")
            .nth(1)
            .and_then(|s| s.split("\n  acr-import:").next())
            .expect("registry service");
        assert!(!registry.contains("ports:"), "the backend is published");
    }

    #[test]
    fn unspecified_listen_addresses_are_reached_on_loopback() {
        let a: std::net::SocketAddr = "0.0.0.0:5000".parse().expect("addr");
        assert_eq!(connect_addr(a).to_string(), "127.0.0.1:5000");
        let a: std::net::SocketAddr = "[::]:5001".parse().expect("addr");
        assert_eq!(connect_addr(a).to_string(), "[::1]:5001");
        let a: std::net::SocketAddr = "10.1.2.3:5002".parse().expect("addr");
        assert_eq!(connect_addr(a), a);
    }

    #[test]
    fn admin_key_is_created_once_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("data");
        let k1 = load_or_create_admin_key(&sub).expect("create");
        let k2 = load_or_create_admin_key(&sub).expect("reuse");
        assert_eq!(k1.passwords("r", "g"), k2.passwords("r", "g"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(sub.join(ADMIN_KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key file is private");
        }
        std::fs::write(sub.join(ADMIN_KEY_FILE), b"short").expect("write");
        let err = load_or_create_admin_key(&sub).expect_err("a short key is refused");
        assert!(err.to_string().contains("must hold 32 bytes"), "{err}");
    }

    fn serve_args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["acr-import", "serve"];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        *args
    }

    #[test]
    fn login_servers_have_a_tls_listener_when_the_api_has_one() {
        let plain = serve_args(&[]).settings().expect("settings");
        assert!(plain.login.tls.is_none());
        assert_eq!(plain.login.listen.to_string(), "127.0.0.1:5000");
        let tls = serve_args(&[
            "--tls-self-signed",
            "--login-server-suffix",
            ".Example.TEST",
        ])
        .settings()
        .expect("settings");
        let (listen, source) = tls.login.tls.expect("a TLS listener");
        assert_eq!(listen, "127.0.0.1:5443");
        let crate::tls::TlsSource::SelfSigned { hosts, .. } = source else {
            panic!("self-signed")
        };
        assert_eq!(
            hosts[..2],
            ["*.example.test".to_owned(), "example.test".to_owned()]
        );
        // One normalised suffix for every component.
        assert_eq!(tls.api.login_server_suffix, "example.test");
        assert_eq!(tls.worker.login_server_suffix, "example.test");
        assert_eq!(tls.login.front.login_server_suffix, "example.test");
        for bad in ["", ".", "a..b", "bad suffix", "x-.io"] {
            let err = serve_args(&["--login-server-suffix", bad])
                .settings()
                .expect_err(bad);
            assert!(err.to_string().contains("--login-server-suffix"), "{err}");
        }
        // The proxy tunnels to the TLS listener: without one it is refused.
        let err = serve_args(&["--proxy-listen", "127.0.0.1:3128"])
            .settings()
            .expect_err("refused");
        assert!(err.to_string().contains("--proxy-listen"), "{err}");
        // --registry-auth works with an external backend too (the login servers check).
        serve_args(&[
            "--backend-registry",
            "http://127.0.0.1:5001",
            "--registry-auth",
        ])
        .settings()
        .expect("accepted");
    }

    fn location(url: Option<&str>) -> anyhow::Result<StoreLocation> {
        StorageArgs {
            database_url: url.map(|u| SecretString::from(u.to_owned())),
            data_dir: PathBuf::from("/data"),
        }
        .location()
    }

    fn sqlite_at(url: Option<&str>) -> Option<PathBuf> {
        match location(url) {
            Ok(StoreLocation::Sqlite(p)) => Some(p),
            _ => None,
        }
    }

    #[test]
    fn store_location() {
        let default = Some(PathBuf::from("/data/acr-import.db"));
        assert_eq!(sqlite_at(None), default);
        assert_eq!(sqlite_at(Some("  ")), default, "an empty DATABASE_URL");
        assert_eq!(sqlite_at(Some("sqlite:///x/y.db")), Some("/x/y.db".into()));
        assert_eq!(sqlite_at(Some("sqlite://rel.db")), Some("rel.db".into()));
        assert_eq!(sqlite_at(Some("sqlite:rel.db")), Some("rel.db".into()));
        for bad in ["sqlite::memory:", "sqlite://", "sqlite://x.db?mode=rwc"] {
            assert!(location(Some(bad)).is_err(), "{bad}");
        }
        assert!(matches!(
            location(Some("postgres://u:p@h/db")),
            Ok(StoreLocation::Postgres(_))
        ));
    }
}
