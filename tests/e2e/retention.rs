//! ACR's retention policy: `properties.policies` round-trips through PUT/PATCH/GET (validated,
//! `lastUpdatedTime` stamped, Premium only for an enabled retention policy), and the sweep
//! (`--retention-interval-seconds`) deletes exactly the untagged manifests the policy says
//! are due — not the children of a tagged index, not a referrer of a kept image, not a
//! `deleteEnabled: false` manifest, not a tagged one — on the built-in registry (PostgreSQL
//! and the zero-setup SQLite store) and on an external backend.

use std::time::Duration;

use acr_import_tests::util::poll_until;
use acr_import_tests::{Format, Manifest, OciClient, Platform, TestEnv, TestImage, TestRegistry};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::uri_import;

const REG: &str = "RetReg";
const HOST: &str = "retreg.azurecr.io";
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// The registry's login server on the plain listener (`Host: retreg.azurecr.io`).
struct LoginServer {
    http: reqwest::Client,
    base: String,
}

impl LoginServer {
    fn of(env: &TestEnv) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: env.service.login_url(),
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("Host", HOST)
    }

    /// `GET /v2/<repo>/manifests/<digest>`'s status.
    async fn manifest_status(&self, repo: &str, digest: &str) -> StatusCode {
        self.request(Method::GET, &format!("/v2/{repo}/manifests/{digest}"))
            .header("Accept", MANIFEST_ACCEPT)
            .send()
            .await
            .expect("GET manifest")
            .status()
    }

    /// The digests `/acr/v1/<repo>/_manifests` lists.
    async fn listed(&self, repo: &str) -> Vec<String> {
        let r = self
            .request(Method::GET, &format!("/acr/v1/{repo}/_manifests"))
            .send()
            .await
            .expect("list manifests");
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.expect("JSON");
        let mut out: Vec<String> = v["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .map(|m| m["digest"].as_str().expect("digest").to_owned())
            .collect();
        out.sort();
        out
    }

    async fn lock_delete(&self, repo: &str, digest: &str) {
        let r = self
            .request(
                Method::PATCH,
                &format!("/acr/v1/{repo}/_manifests/{digest}"),
            )
            .json(&json!({"deleteEnabled": false}))
            .send()
            .await
            .expect("PATCH attributes");
        assert_eq!(r.status(), StatusCode::OK);
    }
}

async fn put_registry(env: &TestEnv, body: &Value) -> acr_import_tests::ArmResponse {
    env.arm
        .send_json(
            Method::PUT,
            &env.arm.registry_url(&env.sub, &env.rg, REG),
            body,
        )
        .await
}

async fn patch_registry(env: &TestEnv, body: &Value) -> acr_import_tests::ArmResponse {
    env.arm
        .send_json(
            Method::PATCH,
            &env.arm.registry_url(&env.sub, &env.rg, REG),
            body,
        )
        .await
}

/// What `az acr config retention update --status S --days N --type UntaggedManifests` sends:
/// the registry's `policies` as read, with the retention policy changed, in a PATCH.
async fn az_retention_update(env: &TestEnv, status: &str, days: i64) -> Value {
    let got = env.arm.get_registry(&env.sub, &env.rg, REG).await.json();
    let mut policies = got["properties"]["policies"].clone();
    policies["retentionPolicy"]["status"] = json!(status);
    policies["retentionPolicy"]["days"] = json!(days);
    let r = patch_registry(env, &json!({"properties": {"policies": policies}})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    r.json()["properties"]["policies"]["retentionPolicy"].clone()
}

/// An untagged signature-like artifact whose `subject` is `subject`.
fn referrer(seed: u64, subject: &TestImage) -> TestImage {
    let mut a = TestImage::artifact(
        seed,
        "application/vnd.example.signature.v1",
        "application/vnd.example.signature.layer.v1",
    );
    let mut v: Value = serde_json::from_slice(&a.top.bytes).expect("artifact manifest");
    v["subject"] = subject.top.descriptor_json();
    a.top = Manifest::from_json(&a.top.media_type.clone(), &v, None);
    a
}

/// Pushes `image` untagged (by digest) through the login servers' root view.
async fn push_untagged(env: &TestEnv, repo: &str, image: &TestImage) {
    let c = OciClient::new(&env.service.login_url(), None);
    let repo = TestEnv::backend_repo(REG, repo);
    for blob in &image.blobs {
        c.push_blob(&repo, blob).await.expect("push blob");
    }
    c.push_manifest(
        &repo,
        &image.top.digest,
        &image.top.media_type,
        &image.top.bytes,
    )
    .await
    .expect("push manifest");
}

/// The images of the scenario, in a source registry.
struct Images {
    first: TestImage,
    second: TestImage,
    index: TestImage,
    locked: TestImage,
    plain: TestImage,
    src: TestRegistry,
}

async fn images(seed: u64) -> Images {
    let first = TestImage::single(seed, Format::Oci, &[3_000]);
    let second = TestImage::single(seed + 1, Format::Oci, &[3_000]);
    let index = TestImage::index(
        seed + 2,
        Format::Oci,
        &[Platform::amd64(), Platform::arm64()],
        &[2_000],
    );
    let locked = TestImage::single_for(seed + 3, Format::Docker, Platform::arm64(), &[2_000]);
    let plain = TestImage::single(seed + 4, Format::Oci, &[1_000]);
    let src = TestRegistry::anonymous().await;
    let c = src.client();
    for (repo, image) in [
        ("demo/app:v1", &first),
        ("demo/app:v2", &second),
        ("demo/multi:v1", &index),
        ("demo/locked:v1", &locked),
        ("demo/plain:v1", &plain),
    ] {
        let (repo, tag) = repo.split_once(':').expect("repo:tag");
        c.push_image(repo, tag, image).await.expect("push source");
    }
    Images {
        first,
        second,
        index,
        locked,
        plain,
        src,
    }
}

/// The whole scenario on `env` (whose sweep runs every second).
async fn retention_deletes_exactly_the_due_manifests(env: &TestEnv, seed: u64) {
    let img = images(seed).await;
    let r = put_registry(
        env,
        &json!({"location": "eastus", "sku": {"name": "Premium"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    let host = img.src.host();
    // Two imports into one tag with Force: the first manifest is left untagged.
    env.import_ok(REG, &uri_import(&host, "demo/app:v1", &["app:latest"]))
        .await;
    let mut force = uri_import(&host, "demo/app:v2", &["app:latest"]);
    force["mode"] = json!("Force");
    env.import_ok(REG, &force).await;
    // A tagged multi-arch index: its children are untagged but referenced.
    env.import_ok(REG, &uri_import(&host, "demo/multi:v1", &["multi:v1"]))
        .await;
    // Untagged manifests of their own: one locked for deletes, one not.
    for (source, repo) in [("demo/locked:v1", "locked"), ("demo/plain:v1", "plain")] {
        env.import_ok(
            REG,
            &json!({"source": {"registryUri": host, "sourceImage": source},
                    "untaggedTargetRepositories": [repo]}),
        )
        .await;
    }
    let ls = LoginServer::of(env);
    ls.lock_delete("locked", img.locked.digest()).await;
    // Untagged referrers: of the tagged image (kept with it) and of the untagged one (goes
    // with it).
    let kept_sig = referrer(seed + 10, &img.second);
    let orphan_sig = referrer(seed + 11, &img.first);
    push_untagged(env, "app", &kept_sig).await;
    push_untagged(env, "app", &orphan_sig).await;
    // An untagged image whose untagged referrer is locked: the referrer keeps its subject
    // (nothing is left pointing at a deleted manifest).
    let signed = TestImage::single(seed + 12, Format::Oci, &[1_500]);
    let locked_sig = referrer(seed + 13, &signed);
    push_untagged(env, "signed", &signed).await;
    push_untagged(env, "signed", &locked_sig).await;
    ls.lock_delete("signed", locked_sig.digest()).await;
    let mut app = vec![
        img.first.digest().to_owned(),
        img.second.digest().to_owned(),
        kept_sig.digest().to_owned(),
        orphan_sig.digest().to_owned(),
    ];
    app.sort();
    assert_eq!(ls.listed("app").await, app);

    // The default policy is ACR's: disabled, 7 days. Disabled, the sweep deletes nothing.
    let got = env.arm.get_registry(&env.sub, &env.rg, REG).await.json();
    let policy = &got["properties"]["policies"]["retentionPolicy"];
    assert_eq!(
        (&policy["status"], &policy["days"]),
        (&json!("disabled"), &json!(7)),
        "{got}"
    );
    // Proving an absence needs time to pass: three sweep intervals.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(
        ls.manifest_status("app", img.first.digest()).await,
        StatusCode::OK,
        "a disabled policy deleted an untagged manifest"
    );
    assert_eq!(
        ls.manifest_status("plain", img.plain.digest()).await,
        StatusCode::OK
    );

    // Enabled with 0 days, as az sets it: due at once.
    let policy = az_retention_update(env, "enabled", 0).await;
    assert_eq!(
        (&policy["status"], &policy["days"]),
        (&json!("enabled"), &json!(0)),
        "{policy}"
    );
    assert!(policy["lastUpdatedTime"].is_string(), "{policy}");
    poll_until(
        "the sweep to delete the untagged manifests",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let first = ls.manifest_status("app", img.first.digest()).await;
            let orphan = ls.manifest_status("app", orphan_sig.digest()).await;
            let plain = ls.manifest_status("plain", img.plain.digest()).await;
            [first, orphan, plain]
                .iter()
                .all(|s| *s == StatusCode::NOT_FOUND)
                .then_some(())
        },
    )
    .await;
    // Gone from the data plane's list as from /v2; everything else stays.
    let mut app = vec![img.second.digest().to_owned(), kept_sig.digest().to_owned()];
    app.sort();
    assert_eq!(
        ls.listed("app").await,
        app,
        "the tagged image and its referrer stay"
    );
    assert_eq!(
        ls.manifest_status("app", kept_sig.digest()).await,
        StatusCode::OK
    );
    assert!(ls.listed("plain").await.is_empty());
    assert_eq!(
        ls.manifest_status("app", img.second.digest()).await,
        StatusCode::OK
    );
    let mut multi = img.index.manifest_digests();
    multi.sort();
    assert_eq!(
        ls.listed("multi").await,
        multi,
        "the index and its children stay"
    );
    for d in &multi {
        assert_eq!(ls.manifest_status("multi", d).await, StatusCode::OK, "{d}");
    }
    assert_eq!(
        ls.listed("locked").await,
        vec![img.locked.digest().to_owned()]
    );
    assert_eq!(
        ls.manifest_status("locked", img.locked.digest()).await,
        StatusCode::OK,
        "deleteEnabled: false is kept"
    );
    for d in [signed.digest(), locked_sig.digest()] {
        assert_eq!(
            ls.manifest_status("signed", d).await,
            StatusCode::OK,
            "a locked referrer and the subject it keeps: {d}"
        );
    }
    // The tagged image still pulls whole.
    let got = env.arm.get_registry(&env.sub, &env.rg, REG).await.json();
    assert_eq!(
        got["properties"]["policies"]["retentionPolicy"]["status"], "enabled",
        "{got}"
    );
    env.backend_client()
        .assert_has_image(
            &TestEnv::backend_repo(REG, "app"),
            Some("latest"),
            &img.second,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_deletes_due_untagged_manifests_on_the_built_in_registry() {
    let env = TestEnv::start_with(|c| c.flag("--retention-interval-seconds", 1)).await;
    retention_deletes_exactly_the_due_manifests(&env, 17_100).await;
}

/// The zero-setup default: the embedded SQLite store and the built-in registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_deletes_due_untagged_manifests_on_sqlite() {
    let data = tempfile::tempdir().expect("data dir");
    let env = TestEnv::start_with(|mut c| {
        c.database_url = None;
        c.flag("--data-dir", data.path().display())
            .flag("--retention-interval-seconds", 1)
    })
    .await;
    retention_deletes_exactly_the_due_manifests(&env, 17_300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_deletes_due_untagged_manifests_on_an_external_backend() {
    let env = TestEnv::start_with_backend(TestRegistry::anonymous().await, |c| {
        c.flag("--retention-interval-seconds", 1)
    })
    .await;
    retention_deletes_exactly_the_due_manifests(&env, 17_200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_round_trip_and_are_validated() {
    let env = TestEnv::start().await;
    let premium = json!({"location": "eastus", "sku": {"name": "Premium"}});
    // Created with ACR's defaults, the retention policy stamped.
    let r = put_registry(&env, &premium).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    let created = r.json()["properties"]["policies"].clone();
    let stamp = created["retentionPolicy"]["lastUpdatedTime"].clone();
    assert!(stamp.is_string(), "{created}");
    let mut expected = json!({
        "quarantinePolicy": {"status": "disabled"},
        "trustPolicy": {"type": "Notary", "status": "disabled"},
        "retentionPolicy": {"days": 7, "status": "disabled", "lastUpdatedTime": stamp},
        "exportPolicy": {"status": "enabled"},
        "azureADAuthenticationAsArmPolicy": {"status": "enabled"},
    });
    assert_eq!(created, expected);

    // PATCH one field: the rest stays; the change is stamped; GET and list agree.
    let r = patch_registry(
        &env,
        &json!({"properties": {"policies": {"retentionPolicy": {"status": "Enabled", "days": 30}}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    let patched = r.json()["properties"]["policies"].clone();
    assert_ne!(patched["retentionPolicy"]["lastUpdatedTime"], stamp);
    expected["retentionPolicy"] = json!({"days": 30, "status": "enabled",
        "lastUpdatedTime": patched["retentionPolicy"]["lastUpdatedTime"].clone()});
    assert_eq!(patched, expected);
    let got = env.arm.get_registry(&env.sub, &env.rg, REG).await.json();
    assert_eq!(got["properties"]["policies"], expected);
    // The whole object sent back (az's way) changes nothing, not even the stamp; other
    // policies round-trip; a PUT without policies keeps them.
    let mut back = expected.clone();
    back["quarantinePolicy"]["status"] = json!("enabled");
    let r = patch_registry(&env, &json!({"properties": {"policies": back}})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    expected["quarantinePolicy"]["status"] = json!("enabled");
    assert_eq!(r.json()["properties"]["policies"], expected);
    let r = put_registry(&env, &premium).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(r.json()["properties"]["policies"], expected);

    // Refusals, each an ARM 400 naming its field; nothing changes.
    let bad = [
        (
            json!({"retentionPolicy": {"days": 366}}),
            "InvalidParameter",
            "properties.policies.retentionPolicy.days",
        ),
        (
            json!({"retentionPolicy": {"days": -1}}),
            "InvalidParameter",
            "properties.policies.retentionPolicy.days",
        ),
        (
            json!({"retentionPolicy": {"days": "7"}}),
            "InvalidRequestContent",
            "properties.policies.retentionPolicy.days",
        ),
        (
            json!({"retentionPolicy": {"status": "sometimes"}}),
            "InvalidParameter",
            "properties.policies.retentionPolicy.status",
        ),
        (
            json!({"retentionPolicy": []}),
            "InvalidRequestContent",
            "properties.policies.retentionPolicy",
        ),
        (
            json!("enabled"),
            "InvalidRequestContent",
            "properties.policies",
        ),
    ];
    for (policies, code, target) in bad {
        let r = patch_registry(&env, &json!({"properties": {"policies": policies}})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{policies}: {r}");
        assert_eq!(r.error_code().as_deref(), Some(code), "{r}");
        assert_eq!(r.json()["error"]["target"], target, "{r}");
    }
    // Premium only while enabled: no downgrade with it on, no enabling on Standard.
    let r = patch_registry(&env, &json!({"sku": {"name": "Standard"}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r}");
    assert_eq!(r.error_code().as_deref(), Some("PolicyNotSupported"), "{r}");
    let got = env.arm.get_registry(&env.sub, &env.rg, REG).await.json();
    assert_eq!(got["properties"]["policies"], expected, "nothing changed");
    assert_eq!(got["sku"]["name"], "Premium");
    let r = patch_registry(
        &env,
        &json!({"sku": {"name": "Standard"},
                "properties": {"policies": {"retentionPolicy": {"status": "disabled"}}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    let r = put_registry(
        &env,
        &json!({"location": "eastus", "sku": {"name": "Basic"},
                "properties": {"policies": {"retentionPolicy": {"status": "enabled"}}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r}");
    assert_eq!(r.error_code().as_deref(), Some("PolicyNotSupported"), "{r}");
}
