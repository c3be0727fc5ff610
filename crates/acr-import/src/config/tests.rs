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

#[test]
fn out_of_range_values_are_refused_not_clamped() {
    for (flag, bad) in [
        ("--retry-after", "0"),
        ("--copy-concurrency", "0"),
        ("--copy-concurrency", "65"),
        ("--max-manifests", "0"),
        ("--sync-wait-ms", "10001"),
        ("--operation-retention-seconds", "0"),
        ("--workers", "0"),
        ("--registry-concurrency", "257"),
        ("--stall-timeout-seconds", "0"),
        ("--operation-timeout-seconds", "0"),
    ] {
        let err = serve_args(&[flag, bad])
            .settings()
            .expect_err(&format!("{flag} {bad}"));
        let msg = err.to_string();
        assert!(
            msg.starts_with(flag) && !msg.contains('\n'),
            "{flag} {bad}: {msg}"
        );
    }
    let ok = serve_args(&["--copy-concurrency", "64", "--sync-wait-ms", "0"])
        .settings()
        .expect("in range");
    assert_eq!(ok.worker.copy_concurrency, 64);
    // --auth and --log-format are enums clap parses (an unknown value never reaches us).
    let bad = Cli::try_parse_from(["acr-import", "serve", "--auth", "root"]);
    assert!(bad.is_err());
    let bad = Cli::try_parse_from(["acr-import", "serve", "--log-format", "xml"]);
    assert!(bad.is_err());
    assert_eq!(
        serve_args(&["--log-format", "json"]).log_format,
        LogFormat::Json
    );
}
