//! `acr-import`: parses configuration, starts telemetry, wires the API and the workers, and
//! waits for shutdown. Nothing else lives here.

mod builtin;
mod client;
mod config;
mod copy_runtime;
mod login;
mod periodic;
mod ready;
mod retention;
mod telemetry;
mod tls;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use config::{Cli, Command, ServeArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Openapi(args) if args.registry => {
            print!("{}", acr_frontdoor::openapi::document_json());
        }
        Command::Openapi(_) => {
            print!("{}", acr_api::openapi::document_json());
        }
        Command::Migrate(args) => {
            init_tracing(args.log_format);
            let store = open_store(&args.storage, false).await?;
            store.migrate().await.context("applying migrations")?;
            store.close().await;
            tracing::info!("migrations applied");
        }
        Command::Serve(args) => serve(*args).await?,
        Command::Hosts(args) => hosts(&args).await?,
        Command::Gc(args) => builtin::collect_offline(&args).await?,
        // The client says how it went in its exit code (and its own messages).
        Command::Import(args) => return Ok(client::run(*args).await),
    }
    Ok(ExitCode::SUCCESS)
}

fn init_tracing(format: config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,hyper=warn,reqwest=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == config::LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Opens the store DATABASE_URL names, or the embedded SQLite store in the data directory.
async fn open_store(
    storage: &config::StorageArgs,
    durable: bool,
) -> anyhow::Result<acr_store::Store> {
    use secrecy::ExposeSecret;
    match storage.location()? {
        config::StoreLocation::Postgres(url) => {
            let shown = config::redact_url(url.expose_secret());
            let store = acr_store::Store::connect(url.expose_secret(), 16)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot connect to the database at {shown}: {}",
                        error_chain(&e)
                    )
                })?;
            tracing::info!(database = %shown, "store: PostgreSQL");
            Ok(store)
        }
        config::StoreLocation::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating the data directory {}", dir.display()))?;
            }
            let store = acr_store::Store::open_sqlite_with(&path, durable)
                .await
                .map_err(|e| match e {
                    // Says all there is to say, the remedy included.
                    acr_store::StoreError::Locked { .. } => anyhow::anyhow!("{e}"),
                    _ => anyhow::anyhow!(
                        "cannot open the SQLite store {}: {}",
                        path.display(),
                        error_chain(&e)
                    ),
                })?;
            tracing::info!(
                path = %path.display(),
                "store: SQLite (embedded, this process only; set DATABASE_URL to use PostgreSQL)"
            );
            Ok(store)
        }
    }
}

/// `acr-import hosts`: one `/etc/hosts` line per registry of every subscription the service
/// lists.
async fn hosts(args: &config::HostsArgs) -> anyhow::Result<()> {
    let address: std::net::IpAddr = args
        .address
        .parse()
        .map_err(|_| anyhow::anyhow!("--address '{}' is not an IP address", args.address))?;
    let base = args.endpoint.trim_end_matches('/');
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("HTTP client")?;
    let get = |url: String| {
        let http = http.clone();
        async move {
            let resp = http
                .get(&url)
                .bearer_auth("acr-import-hosts")
                .send()
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            if !resp.status().is_success() {
                anyhow::bail!("{url} answered {}", resp.status());
            }
            resp.json::<serde_json::Value>()
                .await
                .with_context(|| format!("{url}: not JSON"))
        }
    };
    let subs = get(format!("{base}/subscriptions?api-version=2022-12-01")).await?;
    let mut lines = std::collections::BTreeSet::new();
    for s in subs["value"].as_array().into_iter().flatten() {
        let Some(id) = s["subscriptionId"].as_str() else {
            continue;
        };
        let regs = get(format!(
            "{base}/subscriptions/{id}/providers/Microsoft.ContainerRegistry/registries?api-version=2025-11-01"
        ))
        .await?;
        for r in regs["value"].as_array().into_iter().flatten() {
            if let Some(ls) = r["properties"]["loginServer"].as_str() {
                lines.insert(format!("{address} {ls}"));
            }
        }
    }
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

pub(crate) use acr_core::error_chain;

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format);
    let mut settings = args.settings()?;
    let durable = args.registry_durability == config::Durability::Fsync;
    let store = open_store(&args.storage, durable)
        .await?
        .with_credentials_key(settings.credentials_key.clone());
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("applying migrations: {}", error_chain(&e)))?;
    let admin_key = config::load_or_create_admin_key(&args.storage.data_dir)?;
    settings.api.admin_key = Some(admin_key.clone());
    settings.api.metrics = telemetry::install()?;

    // Every configured listener is bound first: a bad address stops the start with a clear
    // message, and the ephemeral port the built-in registry takes for itself can never be
    // one of them.
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener
        .local_addr()
        .context("reading the listening address")?;

    // The HTTPS listener: bound (and its certificate made) before anything is served, so a
    // bad address or certificate stops the start with a clear message.
    let tls = match &settings.tls {
        None => None,
        Some(t) => {
            let material = tls::load(&t.source)?;
            if let (Some(out), Some(pem)) = (&t.ca_out, &material.ca_pem) {
                if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                std::fs::write(out, pem)
                    .with_context(|| format!("writing --tls-ca-out {}", out.display()))?;
            }
            let l = std::net::TcpListener::bind(&t.listen)
                .with_context(|| format!("cannot listen on {} (--listen-tls)", t.listen))?;
            l.set_nonblocking(true).context("TLS listener")?;
            let addr = l.local_addr().context("reading the TLS address")?;
            Some((l, addr, material))
        }
    };

    let login_bound = login::bind(&settings.login).await?;
    let metrics_listener = match &args.metrics_listen {
        None => None,
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--metrics-listen)"))?,
        ),
    };

    // The copies run on a runtime of their own (`copy_runtime`), and so do the built-in
    // registry's answers to them.
    let copy_runtime = copy_runtime::CopyRuntime::new(settings.copy_nice)
        .context("starting the workers' runtime")?;

    // The built-in registry and the login servers: served before the workers start (they
    // write into the registry) and stopped only after they have (a copy in its shutdown grace
    // still writes).
    let registry_stop = CancellationToken::new();
    let builtin = match settings.builtin_registry.clone() {
        None => None,
        Some(b) => {
            let started =
                builtin::start(&b, &mut settings, &registry_stop, copy_runtime.handle()).await?;
            tracing::info!(
                internal = %started.addr,
                data_dir = %b.data_dir.display(),
                "built-in registry serving the workers on http://{}",
                started.addr
            );
            Some(started)
        }
    };

    // The workers' PostgreSQL connections are opened on their runtime (`Store::for_workers`).
    let worker_store = store
        .for_workers(copy_runtime.handle())
        .await
        .map_err(|e| anyhow::anyhow!("the workers' store connections: {}", error_chain(&e)))?;
    let pool = acr_worker::WorkerPool::new(worker_store, settings.worker.clone())
        .map_err(|e| anyhow::anyhow!("building the registry client: {e}"))?;
    check_backend(&settings.worker).await?;
    let heartbeat = pool.heartbeat();
    let backend = match &builtin {
        Some(b) => acr_frontdoor::Backend::in_process(
            pool.backend().clone(),
            b.registry.router(),
            b.authorization.clone(),
        )
        .with_usage(std::sync::Arc::new(builtin::Usage(b.registry.clone()))),
        None => acr_frontdoor::Backend::http(pool.backend().clone(), false),
    };
    let front = login::front_door(&settings, &store, admin_key, backend).await?;
    let sweeper = front.clone();
    let mut pool =
        pool.with_source_auth(std::sync::Arc::new(login::SourceCredentials(front.clone())));
    if let Some(b) = &builtin {
        pool = pool.with_blob_sink(std::sync::Arc::new(builtin::Sink(b.registry.clone())));
    }
    let login_servers = login::start(
        login_bound,
        &settings.login,
        front,
        store.clone(),
        settings.api.cors.clone(),
        &registry_stop,
    )
    .await?;
    tracing::info!(
        listen = %login_servers.plain,
        auth = settings.login.front.plain_auth,
        "login servers on http://{} (Host <name>.{} is registry <name>; other hosts see <name>/<repo>)",
        login_servers.plain,
        settings.login.front.login_server_suffix
    );
    if let Some(addr) = login_servers.tls {
        tracing::info!(listen_tls = %addr, "login servers on https://{addr}");
    }
    if let Some(addr) = login_servers.proxy {
        tracing::info!(proxy = %addr, "login-server proxy on http://{addr} (HTTPS_PROXY=http://{addr})");
    }

    // The dashboard browses through the login servers' listeners.
    settings.api.portal = acr_api::portal::PortalConfig {
        registry_listen: Some(login_servers.plain),
        registry_listen_tls: login_servers.tls,
    };
    let readiness = ready::readiness(
        heartbeat,
        settings
            .worker
            .client
            .build_http()
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        &settings.worker.backend_url,
        builtin.is_some(),
        login_servers.plain,
    )?;
    let state = acr_api::AppState {
        store: store.clone(),
        config: settings.api.clone(),
        readiness,
    };
    let app_for = |scheme: &'static str| {
        tower::ServiceExt::<axum::extract::Request>::map_request(
            acr_api::router(state.clone()).layer(axum::Extension(acr_api::ListenerScheme(scheme))),
            acr_api::normalize_arm_path,
        )
    };

    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    if let Some(every) = settings.retention_interval {
        tokio::spawn(retention::sweep_every(sweeper, every, shutdown.clone()));
    }

    tracing::info!(
        listen = %local,
        backend = %settings.worker.backend_url,
        workers = settings.worker.workers,
        "acr-import serving ARM on http://{local}"
    );
    let workers = copy_runtime.handle().spawn(pool.run(shutdown.clone()));
    let mut listeners = ready::Listeners {
        arm: Some(local),
        registry: Some(login_servers.plain),
        registry_tls: login_servers.tls,
        proxy: login_servers.proxy,
        ..ready::Listeners::default()
    };
    let metrics_server = match metrics_listener {
        None => None,
        Some(l) => {
            let addr = l.local_addr().context("reading the metrics address")?;
            listeners.metrics = Some(addr);
            tracing::info!(metrics_listen = %addr, "metrics on http://{addr}/metrics");
            Some(tokio::spawn(telemetry::serve(
                l,
                state.clone(),
                shutdown.clone(),
            )))
        }
    };
    let tls_server = match tls {
        None => None,
        Some((listener, addr, material)) => {
            listeners.arm_tls = Some(addr);
            tracing::info!(
                listen_tls = %addr,
                ca = ?material.ca_path,
                "acr-import serving ARM on https://{addr}"
            );
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                stop.cancelled().await;
                h.graceful_shutdown(Some(Duration::from_secs(10)));
            });
            let config = axum_server::tls_rustls::RustlsConfig::from_config(material.config);
            // axum-server hands the service hyper's own request bodies.
            type Incoming = axum::http::Request<hyper::body::Incoming>;
            let app = tower::ServiceExt::<Incoming>::map_request(
                acr_api::router(state.clone())
                    .layer(axum::Extension(acr_api::ListenerScheme("https"))),
                acr_api::normalize_arm_path::<hyper::body::Incoming>,
            );
            let server = axum_server::from_tcp_rustls(listener, config)
                .handle(handle)
                .serve(axum::ServiceExt::<Incoming>::into_make_service(app));
            Some(tokio::spawn(server))
        }
    };
    let http_shutdown = shutdown.clone();
    // Every listener is bound (connections wait in its backlog until accepted), every server
    // task spawned: say so once.
    listeners.announce();
    axum::serve(
        listener,
        axum::ServiceExt::<axum::extract::Request>::into_make_service(app_for("http")),
    )
    .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
    .await
    .context("serving HTTP")?;
    if let Some(t) = tls_server {
        shutdown.cancel();
        match t.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTPS listener ended with an error"),
            Err(e) => tracing::warn!(error = %e, "HTTPS listener task failed"),
            Ok(Ok(())) => {}
        }
    }
    shutdown.cancel();
    if let Some(m) = metrics_server {
        match tokio::time::timeout(Duration::from_secs(5), m).await {
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "the metrics listener ended with an error")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "the metrics listener task failed"),
            Err(_) => tracing::warn!("the metrics listener did not stop in time"),
            Ok(Ok(Ok(()))) => {}
        }
    }
    let grace = settings.worker.shutdown_grace + Duration::from_secs(5);
    if tokio::time::timeout(grace, workers).await.is_err() {
        tracing::warn!("workers did not stop in time; their leases will expire");
    }
    registry_stop.cancel();
    login_servers.join().await;
    if let Some(b) = builtin {
        // Open pulls get a moment to finish; the process does not wait on a slow client.
        match tokio::time::timeout(Duration::from_secs(10), b.server).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "built-in registry ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "built-in registry task failed"),
            Err(_) => tracing::warn!("built-in registry connections still open at exit"),
            Ok(Ok(Ok(()))) => {}
        }
    }
    // Lets SQLite checkpoint its journal into the database file (bounded: a connection still
    // checked out by a worker that did not stop is waited for, not forever).
    if tokio::time::timeout(Duration::from_secs(5), store.close())
        .await
        .is_err()
    {
        tracing::warn!("the store did not close in time");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The backend must answer the distribution API; a wrong URL is a configuration error.
async fn check_backend(w: &acr_worker::WorkerConfig) -> anyhow::Result<()> {
    let http = w.client.build_http().map_err(|e| anyhow::anyhow!("{e}"))?;
    let url = w.backend_url.join("v2/").context("backend URL")?;
    let resp = http
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "the backend registry {} is unreachable: {}",
                w.backend_url,
                acr_oci::error::describe_reqwest(e)
            )
        })?;
    if !(resp.status().is_success() || resp.status().as_u16() == 401) {
        anyhow::bail!(
            "the backend registry {} does not speak the OCI distribution API (GET /v2/ answered {})",
            w.backend_url,
            resp.status()
        );
    }
    Ok(())
}

async fn wait_for_signal(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
    token.cancel();
}
