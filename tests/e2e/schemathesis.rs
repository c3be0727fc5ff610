//! The OpenAPI documents as exact contracts (issue 18): schemathesis with every check
//! (`--checks all`), a fixed seed and a bounded number of examples per operation, against a
//! real service on each store — the zero-setup SQLite store and PostgreSQL — through
//! `tests/schemathesis/` (`setup.sh` installs the pinned version in a venv, `run.sh` runs it,
//! `schemathesis.toml` holds its settings).
//!
//! Each service is checked twice: `openapi/acr-import.json` on the ARM listener (auth: the
//! default `--auth none` mode, with `Authorization: Bearer x` on every request), and
//! `openapi/registry.json` on the login servers' plain listener (no `--registry-auth`, so no
//! credentials are needed) with `Host: <registry>.azurecr.io` naming a registry created first.
//!
//! Traffic stays on 127.0.0.1: schemathesis targets only the service, and the service's own
//! outgoing requests (the sources of the imports schemathesis invents) go through a proxy
//! address on loopback where nothing listens, so a generated `registryUri` never leaves the
//! machine (only 127.0.0.1 and localhost bypass it, and nothing listens there either).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use acr_import_tests::arm::ArmClient;
use acr_import_tests::postgres::TestDatabase;
use acr_import_tests::service::{ServiceConfig, TestService};

use crate::common::run;

/// The registry whose login server the registry document is checked on. Fifty characters, the
/// longest name: the document's repository-name limit (204) is the one every registry takes,
/// exact for this one (`<registry>/<name>` is at most 255), so a longer name is refused here.
const REGISTRY: &str = "schemathesisschemathesisschemathesisschemathesisab";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis")
}

/// Where the service's outgoing requests go: a loopback port nothing listens on.
fn no_way_out(config: ServiceConfig) -> ServiceConfig {
    let proxy = "http://127.0.0.1:9";
    config
        .env("HTTP_PROXY", proxy)
        .env("HTTPS_PROXY", proxy)
        .env("ALL_PROXY", proxy)
}

async fn check(store: &str, service: &TestService) {
    let arm = ArmClient::new(&service.base_url());
    let sub = uuid::Uuid::new_v4().to_string();
    arm.create_registry(&sub, "schemathesis-rg", REGISTRY).await;
    for (kind, url, host) in [
        ("arm", service.base_url(), String::new()),
        (
            "registry",
            service.login_url(),
            format!("{REGISTRY}.azurecr.io"),
        ),
    ] {
        let started = Instant::now();
        let mut cmd = Command::new("bash");
        cmd.arg(dir().join("run.sh")).arg(kind).arg(&url);
        if !host.is_empty() {
            cmd.arg(&host);
        }
        cmd.current_dir(std::env::temp_dir());
        let (ok, out) = run(cmd).await;
        println!(
            "--- schemathesis {kind} on {store} ({:.1} s) ---\n{out}",
            started.elapsed().as_secs_f64()
        );
        assert!(
            ok,
            "schemathesis found failures ({kind} document, {store} store):\n{out}\n--- service log (tail) ---\n{}",
            tail(&service.log(), 60)
        );
        assert!(
            !service.log().contains("panicked"),
            "the service panicked:\n{}",
            service.log()
        );
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_on_either_store() {
    let mut setup = Command::new("bash");
    setup.arg(dir().join("setup.sh"));
    let (ok, out) = run(setup).await;
    assert!(ok, "tests/schemathesis/setup.sh failed:\n{out}");

    let data = tempfile::Builder::new()
        .prefix("acr-schemathesis-")
        .tempdir()
        .expect("temp dir");
    let sqlite = TestService::start(no_way_out(
        ServiceConfig::sqlite(&data.path().join("data"), "").builtin_registry(false),
    ))
    .await;
    check("SQLite", &sqlite).await;
    drop(sqlite);

    let db = TestDatabase::create().await;
    let pg = TestService::start(no_way_out(
        ServiceConfig::new(db.url(), "").builtin_registry(false),
    ))
    .await;
    check("PostgreSQL", &pg).await;
}
