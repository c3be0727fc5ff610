//! The real Azure clients against acr-import: the Python SDK (azure-mgmt-containerregistry +
//! azure-core polling), the JS SDK (@azure/arm-containerregistry + core-lro), the Python
//! data-plane SDK (azure-containerregistry, against `https://<name>.azurecr.io` through the
//! service's CONNECT proxy: suite `dataplane`) and, with
//! `ACR_TEST_AZ_CLI=1`, the Azure CLI (`az cloud register`, `az login --identity`,
//! `az acr create`, `az acr import`; `az acr login --expose-token`, `az acr repository` and
//! `az acr manifest` against the login server through the same proxy; imports from a login
//! server with admin or Entra credentials; `az group`). What each client needs from the
//! server, with references into the clients' source, is in `tests/clients/FINDINGS.md`.
//!
//! One test builds the world: a database, the backend registry, an htpasswd source and an
//! anonymous source holding the same two images, and the service with `--listen-tls` +
//! `--tls-self-signed` (the clients refuse bearer tokens over plain http; the login servers
//! get their HTTPS listener with it) and `--proxy-listen`. For the data-plane suite it creates
//! registry `dataplane<RUN>` and imports the 3-platform image into it through ARM (tags `v1`
//! then `v2` of one repository, a second repository, and an image with a 5 MiB layer). It
//! installs the clients with `tests/clients/setup.sh` (idempotent; ~25 s the first time for
//! the SDKs, ~70-150 s more for the CLI), runs `tests/clients/run.sh`, and then checks that the backend
//! holds every manifest and blob of what the suites imported (and, for the data plane, that
//! what the SDK deleted is gone).
//!
//! Needs python3 (venv), node 20 + npm, and PyPI/npm on the first run. Self-contained: it uses
//! only the `acr_import_tests` library, so it works as `mod clients;` in `e2e/main.rs` or as its
//! own `[[test]]` target.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use acr_import_tests::image::Format;
use acr_import_tests::util::free_port;
use acr_import_tests::{
    ArmClient, ServiceConfig, TestDatabase, TestImage, TestRegistry, TestService,
};
use serde_json::json;

use crate::common::run;

const SRC_USER: &str = "importer";
const SRC_PASS: &str = "Cl1ents-Pa55!";
const SINGLE: (&str, &str) = ("demo/single", "v1");
const MULTI: (&str, &str) = ("demo/multi", "v1");
const RESOURCE_GROUP: &str = "clients-rg";
/// Suffix of the registry names the suites create (`pytarget0`, `jstarget0`, `clitarget0`, …).
const RUN_ID: &str = "0";
/// The data-plane suite's repository: the 3-platform index as `v1`, then (later) as `v2`.
const DP_REPO: &str = "dp/multi";
/// Its tags, oldest first.
const DP_TAGS: [&str; 2] = ["v1", "v2"];
/// The data-plane suite's second repository (`v1`), which it deletes.
const DP_DELETE_REPO: &str = "dp/deleteme";
/// A single-platform image with a layer larger than the SDK's 4 MiB download chunk, in the
/// anonymous source and (as `v1`) in the data-plane registry.
const DP_BIG: &str = "dp/big";

/// `tests/clients` (`ACR_CLIENTS_DIR` overrides it, for running this file from elsewhere).
fn clients_dir() -> PathBuf {
    std::env::var_os("ACR_CLIENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("clients"))
}

fn cli_enabled() -> bool {
    std::env::var("ACR_TEST_AZ_CLI").as_deref() == Ok("1")
}

async fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} not ready within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The service with its HTTPS listener (the clients refuse bearer tokens over plain http).
struct Endpoint {
    url: String,
    ca: PathBuf,
    /// `http://127.0.0.1:PORT`: the CONNECT proxy to the login servers.
    proxy_url: String,
    service: TestService,
}

async fn start_endpoint(
    db: &TestDatabase,
    backend: &TestRegistry,
    dir: &Path,
    sub: &str,
) -> Endpoint {
    let tls_port = free_port();
    let proxy_port = free_port();
    let ca = dir.join("acr-import-ca.pem");
    // `az login --identity` can only select a subscription that GET /subscriptions lists, and it
    // runs before any registry exists: the service lists the test's subscription.
    let config = ServiceConfig::new(db.url(), &backend.url())
        .flag("--subscription", sub)
        .flag("--listen-tls", format!("127.0.0.1:{tls_port}"))
        .arg("--tls-self-signed")
        .flag("--tls-ca-out", ca.display())
        .flag("--proxy-listen", format!("127.0.0.1:{proxy_port}"))
        // The cli suite enables a retention policy and waits for the sweep.
        .flag("--retention-interval-seconds", 1);
    let service = TestService::start(config).await;
    let login_tls = service
        .login_tls_addr()
        .expect("the login servers' HTTPS listener");
    wait_for(
        "the HTTPS listeners, the proxy and the CA file",
        Duration::from_secs(20),
        || {
            ca.exists()
                && port_open(tls_port)
                && port_open(login_tls.port())
                && port_open(proxy_port)
        },
    )
    .await;
    Endpoint {
        url: format!("https://127.0.0.1:{tls_port}/"),
        ca,
        proxy_url: format!("http://127.0.0.1:{proxy_port}"),
        service,
    }
}

/// The data-plane suite's registry: created through ARM, with `multi` imported from `source`
/// as `DP_REPO:v1` and `DP_DELETE_REPO:v1`, `big` as `DP_BIG:v1` (pushed to `source` first),
/// then `multi` again as `DP_REPO:v2` (separate imports, so the tags' times differ). Returns
/// the registry's name and login server.
async fn prepare_data_plane(
    endpoint: &Endpoint,
    sub: &str,
    source: &TestRegistry,
    big: &TestImage,
) -> (String, String) {
    let arm = ArmClient::new(&endpoint.service.base_url());
    let name = format!("dataplane{RUN_ID}");
    let created = arm.create_registry(sub, RESOURCE_GROUP, &name).await;
    let login_server = created["properties"]["loginServer"]
        .as_str()
        .unwrap_or_else(|| panic!("no loginServer: {created}"))
        .to_string();
    assert_eq!(login_server, format!("{name}.azurecr.io"), "{created}");
    source
        .client()
        .push_image(DP_BIG, "v1", big)
        .await
        .expect("push big");
    let multi = format!("{}:{}", MULTI.0, MULTI.1);
    let imports = [
        (
            multi.clone(),
            vec![
                format!("{DP_REPO}:{}", DP_TAGS[0]),
                format!("{DP_DELETE_REPO}:v1"),
            ],
        ),
        (format!("{DP_BIG}:v1"), vec![format!("{DP_BIG}:v1")]),
        (multi, vec![format!("{DP_REPO}:{}", DP_TAGS[1])]),
    ];
    for (image, tags) in &imports {
        // Distinct lastUpdateTime values, whatever the clock's resolution.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let body = json!({
            "source": {"registryUri": source.host(), "sourceImage": image},
            "targetTags": tags,
            "mode": "Force",
        });
        let r = arm.import(sub, RESOURCE_GROUP, &name, &body).await;
        match r.status.as_u16() {
            // Nothing to copy: answered at once, as ACR does.
            200 => {}
            202 => {
                let status = arm
                    .poll_until_done(&r.async_operation(), Duration::from_secs(60))
                    .await;
                assert_eq!(status["status"], "Succeeded", "import {tags:?}: {status}");
            }
            _ => panic!("import {tags:?}: {r}"),
        }
    }
    (name, login_server)
}

/// `os/architecture[/variant]` of each child of an index, in the index's order.
fn platforms(image: &TestImage) -> Vec<String> {
    image
        .children
        .iter()
        .map(|m| {
            let p = m.platform.as_ref().expect("a child's platform");
            match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_azure_clients_import_through_the_arm_api() {
    let clients = clients_dir();

    // 1. The clients (fast when already installed).
    let mut setup = Command::new("bash");
    setup.arg(clients.join("setup.sh"));
    if cli_enabled() {
        setup.arg("--cli");
    }
    let (ok, out) = run(setup).await;
    assert!(ok, "tests/clients/setup.sh failed:\n{out}");

    // 2. The world.
    let single = TestImage::single(9101, Format::Oci, &[3000, 70_000]);
    let multi = TestImage::three_platform(9102);
    let (db, backend, src, anon) = tokio::join!(
        TestDatabase::create(),
        TestRegistry::anonymous(),
        TestRegistry::htpasswd(SRC_USER, SRC_PASS),
        TestRegistry::anonymous(),
    );
    for reg in [&src, &anon] {
        let c = reg.client();
        c.push_image(SINGLE.0, SINGLE.1, &single)
            .await
            .expect("push single");
        c.push_image(MULTI.0, MULTI.1, &multi)
            .await
            .expect("push multi");
    }
    let dir = tempfile::Builder::new()
        .prefix("acr-clients-")
        .tempdir()
        .expect("temp dir");
    let sub = uuid::Uuid::new_v4().to_string();
    let endpoint = start_endpoint(&db, &backend, dir.path(), &sub).await;
    // One layer of 5 MiB + 1 byte: download_blob reads it in two ranged chunks.
    let big = TestImage::single(9103, Format::Oci, &[(5 << 20) + 1]);
    let (dp_registry, dp_login_server) = prepare_data_plane(&endpoint, &sub, &anon, &big).await;

    // 3. The suites.
    let mut cmd = Command::new("bash");
    cmd.arg(clients.join("run.sh"))
        .env("ARM_ENDPOINT", &endpoint.url)
        .env("ARM_CA", &endpoint.ca)
        .env("AZ_SUBSCRIPTION", &sub)
        .env("AZ_RESOURCE_GROUP", RESOURCE_GROUP)
        .env("SRC_HOST", src.host())
        .env("SRC_USER", SRC_USER)
        .env("SRC_PASS", SRC_PASS)
        .env("SRC_ANON_HOST", anon.host())
        .env("SRC_SINGLE", format!("{}:{}", SINGLE.0, SINGLE.1))
        .env("SRC_SINGLE_DIGEST", single.digest())
        .env("SRC_MULTI", format!("{}:{}", MULTI.0, MULTI.1))
        .env("SRC_MULTI_DIGEST", multi.digest())
        .env("BACKEND_URL", backend.url())
        .env("PROXY_URL", &endpoint.proxy_url)
        .env("DP_REGISTRY", &dp_registry)
        .env("LOGIN_SERVER", &dp_login_server)
        .env("DP_REPO", DP_REPO)
        .env("DP_TAGS", DP_TAGS.join(","))
        .env("DP_INDEX_DIGEST", multi.digest())
        .env("DP_CHILD_DIGESTS", multi.child_digests().join(","))
        .env("DP_PLATFORMS", platforms(&multi).join(","))
        .env("DP_BLOB_DIGESTS", multi.blob_digests().join(","))
        .env("DP_DELETE_REPO", DP_DELETE_REPO)
        .env("DP_BIG_REPO", DP_BIG)
        .env("DP_BIG_DIGEST", big.digest())
        .env("ACR_CLIENTS_RUN", RUN_ID)
        .env("ACR_CLIENTS_LOG_DIR", dir.path().join("logs"));
    let started = Instant::now();
    let (ok, out) = run(cmd).await;
    println!("{out}");
    println!("client suites took {:?}", started.elapsed());
    if !ok {
        // (TestService prints its own log when the test panics.)
        let kept = dir.keep();
        panic!(
            "real-client suites failed; full logs kept in {}",
            kept.join("logs").display()
        );
    }

    // 4. What they imported, checked in the backend (every manifest and blob).
    let b = backend.client();
    let repo = |registry: &str, r: &str| format!("{registry}{RUN_ID}/{r}");
    let suites =
        std::env::var("ACR_CLIENTS_SUITES").unwrap_or_else(|_| "python js dataplane cli".into());
    if suites.contains("python") {
        b.assert_has_image(&repo("pytarget", "py/multi"), Some("v1"), &multi)
            .await;
        b.assert_has_image(&repo("pytarget", "py/multi-untagged"), None, &multi)
            .await;
        b.assert_has_image(&repo("pysecond", "copied/multi"), Some("v1"), &multi)
            .await;
        b.assert_has_image(&repo("pysecond", "py/untagged-only"), None, &single)
            .await;
        b.assert_has_image(&repo("pytarget", "py/force"), Some("v1"), &multi)
            .await;
        b.assert_has_image(&repo("pytarget", "py/conflict"), Some("v1"), &single)
            .await;
    }
    if suites.contains("js") {
        b.assert_has_image(&repo("jstarget", "js/multi"), Some("v1"), &multi)
            .await;
        b.assert_has_image(&repo("jssecond", "copied/multi"), Some("v1"), &multi)
            .await;
        b.assert_has_image(&repo("jstarget", "js/single"), Some("v1"), &single)
            .await;
    }
    if suites.contains("dataplane") {
        // The SDK untagged v2 and deleted the second repository; v1 is whole.
        let dp = |r: &str| format!("{dp_registry}/{r}");
        b.assert_has_image(&dp(DP_REPO), Some(DP_TAGS[0]), &multi)
            .await;
        b.assert_has_image(&dp(DP_BIG), Some("v1"), &big).await;
        let tags = b.tags_list(&dp(DP_REPO)).await.expect("tags of the repo");
        assert!(
            !tags.iter().any(|t| t == DP_TAGS[1]),
            "{} still has tag {} in the backend: {tags:?}",
            dp(DP_REPO),
            DP_TAGS[1]
        );
        let left = b.tags_list(&dp(DP_DELETE_REPO)).await.unwrap_or_default();
        assert!(
            left.is_empty(),
            "{} still has tags in the backend: {left:?}",
            dp(DP_DELETE_REPO)
        );
        for d in multi.manifest_digests() {
            assert!(
                !b.manifest_exists(&dp(DP_DELETE_REPO), &d)
                    .await
                    .expect("HEAD manifest"),
                "{} still holds manifest {d}",
                dp(DP_DELETE_REPO)
            );
        }
    }
    if cli_enabled() && suites.contains("cli") {
        b.assert_has_image(&repo("clitarget", "cli/multi"), Some("v1"), &single)
            .await;
        b.assert_has_image(&repo("clisecond", "copied/multi"), Some("v1"), &multi)
            .await;
        b.assert_has_image(&repo("clitarget", "demo/single"), Some("v1"), &single)
            .await;
        b.assert_has_image(&repo("clitarget", "cli/untagged"), None, &single)
            .await;
        b.assert_has_image(&repo("clitarget", "cli/nowait"), Some("v1"), &multi)
            .await;
        // Imported from clitarget's login server with its admin user, then with an Entra token.
        b.assert_has_image(&repo("clisecond", "cred/ok"), Some("v1"), &multi)
            .await;
        b.assert_has_image(&repo("clisecond", "cred/token"), Some("v1"), &multi)
            .await;
        // The refused imports copied nothing; the CLI untagged v2 and deleted the index of
        // cli/dp, then the repository; deleting resource group clirg deleted registry cligroup.
        let gone = [
            (repo("clisecond", "cred/bad"), &multi),
            (repo("clisecond", "cred/badtoken"), &multi),
            (repo("clitarget", "cli/dp"), &multi),
            (repo("cligroup", "grp/single"), &single),
        ];
        for (r, image) in gone {
            let left = b.tags_list(&r).await.unwrap_or_default();
            assert!(
                left.is_empty(),
                "{r} still has tags in the backend: {left:?}"
            );
            for d in image.manifest_digests() {
                assert!(
                    !b.manifest_exists(&r, &d).await.expect("HEAD manifest"),
                    "{r} still holds manifest {d}"
                );
            }
        }
    }
    assert!(
        !endpoint.service.log().contains(SRC_PASS),
        "the source password appears in the service log"
    );
}
