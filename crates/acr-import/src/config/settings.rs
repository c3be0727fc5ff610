//! `acr-import serve`'s arguments turned into each component's settings, one function per
//! component; every out-of-range value is refused with one line naming the flag.

use super::*;

/// Where the content lives: the external backend (URL and credentials) or the built-in
/// registry.
struct BackendSettings {
    url: Url,
    credentials: Credentials,
    builtin: Option<BuiltinRegistrySettings>,
}

/// `value` when it lies in `range`, else one line naming the flag.
fn within<T: PartialOrd + std::fmt::Display + Copy>(
    flag: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> anyhow::Result<T> {
    if range.contains(&value) {
        Ok(value)
    } else {
        anyhow::bail!(
            "{flag} must be between {} and {} (got {value})",
            range.start(),
            range.end()
        )
    }
}

fn guid(flag: &str, v: &str) -> anyhow::Result<String> {
    acr_core::arm::validate_subscription(v.trim())
        .map_err(|_| anyhow::anyhow!("{flag} '{v}' must be a GUID"))
}

/// The backend's password: read from the environment only (command lines are visible to
/// other users), in this one place.
fn backend_password() -> Option<SecretString> {
    std::env::var("ACR_IMPORT_BACKEND_PASSWORD")
        .ok()
        .map(SecretString::from)
}

impl ServeArgs {
    /// Every component's settings, or the first bad value.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let backend = self.backend_settings()?;
        let tls = self.tls_settings()?;
        let suffix = self.login_server_suffix()?;
        let login = self.login_settings(tls.as_ref(), &suffix)?;
        let client = self.client_config()?;
        let api = self.api_config(&suffix)?;
        let worker = self.worker_config(backend.url, backend.credentials, client, &suffix)?;
        Ok(Settings {
            builtin_registry: backend.builtin,
            login,
            api,
            credentials_key: self.credentials_key()?,
            tls,
            worker,
            retention_interval: (within(
                "--retention-interval-seconds",
                self.retention_interval_seconds,
                0..=31_536_000,
            )? > 0)
                .then(|| Duration::from_secs(self.retention_interval_seconds)),
            copy_nice: within("--copy-nice", self.copy_nice, 0..=19)?,
        })
    }

    fn backend_settings(&self) -> anyhow::Result<BackendSettings> {
        let password = backend_password();
        match &self.backend_registry {
            Some(b) => {
                let url = parse_http_url("--backend-registry", b)?;
                if url.path() != "/" {
                    anyhow::bail!("--backend-registry must be a registry root such as http://127.0.0.1:5000, without a path");
                }
                let credentials = match (&self.backend_username, password) {
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
                Ok(BackendSettings {
                    url,
                    credentials,
                    builtin: None,
                })
            }
            None => {
                if self.backend_username.is_some() || password.is_some() {
                    anyhow::bail!("ACR_IMPORT_BACKEND_USERNAME / ACR_IMPORT_BACKEND_PASSWORD need --backend-registry (the built-in registry uses its own credentials)");
                }
                // Replaced by the internal listener's address once it is bound.
                let url = Url::parse("http://127.0.0.1:0/")
                    .map_err(|e| anyhow::anyhow!("the built-in registry's URL: {e}"))?;
                Ok(BackendSettings {
                    url,
                    credentials: Credentials::Anonymous,
                    builtin: Some(BuiltinRegistrySettings {
                        data_dir: self.storage.data_dir.join(REGISTRY_DIR),
                        gc_interval: (self.gc_interval_seconds > 0)
                            .then(|| Duration::from_secs(self.gc_interval_seconds)),
                        gc_grace: Duration::from_secs(self.gc_grace_seconds),
                        durability: self.registry_durability.registry(),
                        upload_idle: Duration::from_secs(within(
                            "--upload-idle-seconds",
                            self.upload_idle_seconds,
                            1..=7 * 24 * 3600,
                        )?),
                    }),
                })
            }
        }
    }

    /// The registry client: network policy, trusted CAs, per-host concurrency, stalls.
    fn client_config(&self) -> anyhow::Result<ClientConfig> {
        within("--registry-concurrency", self.registry_concurrency, 1..=256)?;
        within(
            "--stall-timeout-seconds",
            self.stall_timeout_seconds,
            1..=86_400,
        )?;
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
        Ok(ClientConfig {
            network_guard: Some(self.network_policy()),
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
        })
    }

    fn network_policy(&self) -> acr_oci::NetworkPolicy {
        acr_oci::NetworkPolicy {
            deny_private: self.deny_private_networks,
        }
    }

    fn credentials_key(&self) -> anyhow::Result<Option<acr_store::CredentialsKey>> {
        let Some(path) = &self.credentials_key_file else {
            return Ok(None);
        };
        let bytes = std::fs::read(path).map_err(|e| {
            anyhow::anyhow!("cannot read --credentials-key-file {}: {e}", path.display())
        })?;
        acr_store::CredentialsKey::from_file_bytes(&bytes)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("--credentials-key-file {}: {e}", path.display()))
    }

    /// The key of the tokens the service mints: `--token-key-file`, or random per start.
    fn signing_key(&self) -> anyhow::Result<Vec<u8>> {
        match &self.token_key_file {
            Some(path) => {
                let k = std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("cannot read --token-key-file {}: {e}", path.display())
                })?;
                if k.len() < 16 {
                    anyhow::bail!("--token-key-file must hold at least 16 bytes");
                }
                Ok(k)
            }
            None => {
                use rand::RngCore as _;
                let mut k = vec![0u8; 32];
                rand::thread_rng().fill_bytes(&mut k);
                Ok(k)
            }
        }
    }

    fn auth_mode(&self) -> anyhow::Result<acr_api::caller::AuthMode> {
        Ok(match self.auth {
            AuthArg::None => acr_api::caller::AuthMode::Open,
            AuthArg::ArmRbac => {
                let path = self.rbac_config.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("--auth arm-rbac needs --rbac-config <file.json>")
                })?;
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("cannot read --rbac-config {}: {e}", path.display())
                })?;
                let rbac = acr_core::rbac::RbacConfig::from_json(&text).map_err(|e| {
                    anyhow::anyhow!(
                        "--rbac-config {}: {}",
                        path.display(),
                        acr_core::error_chain(&e)
                    )
                })?;
                acr_api::caller::AuthMode::ArmRbac {
                    rbac: Arc::new(rbac),
                    verify_signature: self.token_key_file.is_some(),
                }
            }
        })
    }

    fn api_config(&self, suffix: &str) -> anyhow::Result<acr_api::ApiConfig> {
        let public_url = self
            .public_url
            .as_deref()
            .map(|u| parse_http_url("--public-url", u))
            .transpose()?;
        let mut subscriptions = Vec::new();
        for s in &self.subscriptions {
            let s = guid("--subscription", s)?;
            if !subscriptions.contains(&s) {
                subscriptions.push(s);
            }
        }
        if self.token_lifetime_seconds < 600 {
            anyhow::bail!("--token-lifetime-seconds must be at least 600 (clients treat tokens about to expire as expired)");
        }
        Ok(acr_api::ApiConfig {
            retry_after: within("--retry-after", self.retry_after, 1..=3600)?,
            login_server_suffix: suffix.to_owned(),
            public_url,
            scheme: "http",
            tenant_id: guid("--tenant-id", &self.tenant_id)?,
            subscriptions,
            identity: acr_api::IdentityConfig {
                object_id: guid("--identity-object-id", &self.identity_object_id)?,
                signing_key: Arc::new(self.signing_key()?),
                token_lifetime: Duration::from_secs(self.token_lifetime_seconds),
            },
            auth: self.auth_mode()?,
            operation_retention: Duration::from_secs(within(
                "--operation-retention-seconds",
                self.operation_retention_seconds,
                1..=u64::from(u32::MAX),
            )?),
            sync_wait: Duration::from_millis(within(
                "--sync-wait-ms",
                self.sync_wait_ms,
                0..=10_000,
            )?),
            queue_limits: acr_store::QueueLimits {
                per_subscription: (self.max_operations_per_subscription > 0)
                    .then_some(self.max_operations_per_subscription),
                total: (self.max_queued_operations > 0).then_some(self.max_queued_operations),
            },
            source_network: self.network_policy(),
            admin_key: None,
            cors: acr_api::cors::CorsOrigins::parse(&self.cors_origins)
                .map_err(anyhow::Error::msg)?,
            portal: Default::default(),
            metrics: Default::default(),
        })
    }

    fn worker_config(
        &self,
        backend_url: Url,
        backend_credentials: Credentials,
        client: ClientConfig,
        suffix: &str,
    ) -> anyhow::Result<acr_worker::WorkerConfig> {
        within("--workers", self.workers, 1..=256)?;
        if self.lease_seconds < 3 {
            anyhow::bail!("--lease-seconds must be at least 3");
        }
        within(
            "--operation-timeout-seconds",
            self.operation_timeout_seconds,
            1..=u64::from(u32::MAX),
        )?;
        Ok(acr_worker::WorkerConfig {
            workers: self.workers,
            lease: Duration::from_secs(self.lease_seconds),
            poll_interval: Duration::from_secs(2),
            max_attempts: 20,
            max_transient_attempts: 3,
            backend_repository_delete: self.backend_registry.is_none(),
            backend_url,
            backend_credentials,
            client,
            copy_concurrency: within("--copy-concurrency", self.copy_concurrency, 1..=64)?,
            max_manifests: within("--max-manifests", self.max_manifests, 1..=10_000)?,
            max_layer_bytes: (self.max_layer_bytes > 0).then_some(self.max_layer_bytes),
            operation_timeout: Duration::from_secs(self.operation_timeout_seconds),
            login_server_suffix: suffix.to_owned(),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
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
        if suffix.len() > 200 || !acr_core::import::valid_dns_name(&suffix) {
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
