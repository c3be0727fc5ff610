//! The login servers: the front door (`acr-frontdoor`) over the backend, served on the plain
//! listener (`--registry-listen`), the HTTPS listener (`--registry-listen-tls`) and, with
//! `--proxy-listen`, the CONNECT proxy that tunnels login-server names to the HTTPS listener.

use std::net::SocketAddr;
use std::time::Duration;

use acr_frontdoor::{Authority, Backend, EntraPolicy, FrontDoor, Listener};
use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::{LoginSettings, Settings};

/// Lifetime of refresh tokens (ACR's: three hours).
const REFRESH_LIFETIME: Duration = Duration::from_secs(3 * 3600);
/// Lifetime of access tokens.
const ACCESS_LIFETIME: Duration = Duration::from_secs(3600);
/// The shared secret that signs the login servers' tokens (one for every replica).
const TOKEN_KEY: &str = "login-server-token-key";

/// The running listeners.
pub struct LoginServers {
    pub plain: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub proxy: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LoginServers {
    /// Waits (bounded) for the listeners to finish after `stop`.
    pub async fn join(self) {
        for t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .is_err()
            {
                tracing::warn!("login server connections still open at exit");
            }
        }
    }
}

/// Builds the front door over `backend`.
pub async fn front_door(
    settings: &Settings,
    store: &acr_store::Store,
    admin_key: acr_core::admin::AdminKey,
    backend: Backend,
) -> anyhow::Result<FrontDoor> {
    use rand::RngCore as _;
    let mut candidate = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut candidate);
    let key = store
        .shared_secret(TOKEN_KEY, &candidate)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "reading the login servers' token key: {}",
                crate::error_chain(&e)
            )
        })?;
    let entra = match &settings.api.auth {
        acr_api::caller::AuthMode::Open => EntraPolicy::Open,
        acr_api::caller::AuthMode::ArmRbac {
            rbac,
            verify_signature,
        } => EntraPolicy::Rbac {
            rbac: rbac.clone(),
            verify_key: verify_signature.then(|| settings.api.identity.signing_key.clone()),
        },
    };
    let authority = Authority::new(
        store.clone(),
        admin_key,
        entra,
        acr_frontdoor::tokens::TokenKeys::new(&key, REFRESH_LIFETIME, ACCESS_LIFETIME),
        settings.api.tenant_id.clone(),
    );
    Ok(FrontDoor::new(
        settings.login.front.clone(),
        store.clone(),
        authority,
        backend,
    ))
}

/// The login servers' listeners, bound before anything else so that a bad address stops the
/// start with a clear message, and so that the ephemeral ports the process takes for itself
/// (the built-in registry's internal listener) can never take a configured one.
pub struct Bound {
    plain: tokio::net::TcpListener,
    plain_addr: std::net::SocketAddr,
    tls: Option<(
        std::net::TcpListener,
        std::net::SocketAddr,
        crate::tls::TlsMaterial,
    )>,
    proxy: Option<(tokio::net::TcpListener, std::net::SocketAddr)>,
}

/// Binds every listener of the login servers.
pub async fn bind(login: &LoginSettings) -> anyhow::Result<Bound> {
    let plain = tokio::net::TcpListener::bind(login.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the login servers (choose another --registry-listen)",
                login.listen
            )
        })?;
    let plain_addr = plain.local_addr().context("reading --registry-listen")?;
    let mut tls = None;
    if let Some((listen, source)) = &login.tls {
        let material = crate::tls::load(source)?;
        let l = std::net::TcpListener::bind(listen)
            .with_context(|| format!("cannot listen on {listen} (--registry-listen-tls)"))?;
        l.set_nonblocking(true)
            .context("login servers' TLS listener")?;
        let addr = l.local_addr().context("reading --registry-listen-tls")?;
        tls = Some((l, addr, material));
    }
    let mut proxy = None;
    if let (Some(listen), Some(_)) = (login.proxy, &tls) {
        let l = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (--proxy-listen)"))?;
        let addr = l.local_addr().context("reading --proxy-listen")?;
        proxy = Some((l, addr));
    }
    Ok(Bound {
        plain,
        plain_addr,
        tls,
        proxy,
    })
}

/// Serves the bound listeners until `stop`.
pub async fn start(
    bound: Bound,
    login: &LoginSettings,
    front: FrontDoor,
    store: acr_store::Store,
    cors_origins: acr_api::cors::CorsOrigins,
    stop: &CancellationToken,
) -> anyhow::Result<LoginServers> {
    let mut tasks = Vec::new();
    let Bound {
        plain,
        plain_addr,
        tls,
        proxy,
    } = bound;
    // Browser frontends call the login servers too (the dashboard's browse view).
    let cors = acr_api::cors::layer(&cors_origins);
    let router = front.router(Listener::Plain).layer(cors.clone());
    let s = stop.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(plain, router)
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await
        {
            tracing::warn!(error = %e, "login servers (HTTP) ended with an error");
        }
    }));

    let mut tls_addr = None;
    if let Some((l, addr, material)) = tls {
        tls_addr = Some(addr);
        let handle = axum_server::Handle::new();
        let h = handle.clone();
        let s = stop.clone();
        tokio::spawn(async move {
            s.cancelled().await;
            h.graceful_shutdown(Some(Duration::from_secs(10)));
        });
        let config = axum_server::tls_rustls::RustlsConfig::from_config(material.config);
        let app = front.router(Listener::Tls).layer(cors);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum_server::from_tcp_rustls(l, config)
                .handle(handle)
                .serve(app.into_make_service())
                .await
            {
                tracing::warn!(error = %e, "login servers (HTTPS) ended with an error");
            }
        }));
    }

    let mut proxy_addr = None;
    if let (Some((l, addr)), Some(tls)) = (proxy, tls_addr) {
        proxy_addr = Some(addr);
        let s = stop.clone();
        let suffix = login.front.login_server_suffix.clone();
        let target = crate::config::connect_addr(tls);
        tasks.push(tokio::spawn(acr_frontdoor::connect::serve(
            l,
            store,
            suffix,
            target,
            async move { s.cancelled().await },
        )));
    }
    Ok(LoginServers {
        plain: plain_addr,
        tls: tls_addr,
        proxy: proxy_addr,
        tasks,
    })
}

/// Lets the workers check the credentials given for an emulated source as its login server
/// would.
pub struct SourceCredentials(pub FrontDoor);

impl acr_worker::EmulatedSourceAuth for SourceCredentials {
    fn may_pull<'a>(
        &'a self,
        registry: &'a acr_store::RegistryRecord,
        username: Option<&'a str>,
        password: &'a str,
    ) -> futures::future::BoxFuture<'a, bool> {
        Box::pin(self.0.credentials_may_pull(registry, username, password))
    }
}
