//! Deleting a registry deletes its content: on the built-in registry (SQLite) and on an
//! external docker-registry (PostgreSQL), every old repository answers 404, the catalog no
//! longer lists it, a registry re-created with the name (same or another subscription) sees
//! nothing, the disk comes back, an import racing the delete is cancelled and leaves nothing,
//! and the admin user's password and tokens stop working at once.

use std::path::Path;
use std::time::{Duration, Instant};

use acr_import_tests::arm::registry_id;
use acr_import_tests::image::Format;
use acr_import_tests::oci::fetch_token;
use acr_import_tests::util::http_client;
use acr_import_tests::{
    ArmClient, Credentials, OciClient, ServiceConfig, TestEnv, TestImage, TestService,
    ThrottleProxy, API_VERSION,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{anonymous_source, uri_import};

const RG: &str = "deletion-rg";
const DELREG: &str = "delreg";

/// Bytes of the content files of a built-in registry's data directory.
fn blob_bytes(data: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let Ok(rd) = std::fs::read_dir(p) else {
            return 0;
        };
        rd.flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path()),
                Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => 0,
            })
            .sum()
    }
    walk(&data.join("registry").join("blobs"))
}

async fn import_ok(arm: &ArmClient, sub: &str, reg: &str, body: &Value) -> Value {
    let r = arm.import(sub, RG, reg, body).await;
    assert_eq!(r.status.as_u16(), 202, "{r}");
    let s = arm
        .poll_until_done(&r.async_operation(), Duration::from_secs(60))
        .await;
    assert_eq!(s["status"], "Succeeded", "{s}");
    s
}

/// After the deletion: nothing of `images` under `delreg/<repo>` for each repo, and the
/// tags lists answer 404 (or, for an external backend, are empty).
async fn assert_gone(
    backend: &OciClient,
    repos: &[&str],
    images: &[&TestImage],
    strict_tags: bool,
) {
    for repo in repos {
        let full = format!("{DELREG}/{repo}");
        for image in images {
            backend.assert_has_none_of(&full, image).await;
        }
        let status = backend.tags_list_status(&full).await.expect("tags list");
        if strict_tags {
            assert_eq!(status, StatusCode::NOT_FOUND, "tags list of {full}");
        } else {
            assert!(
                backend.tags_list(&full).await.expect("tags").is_empty(),
                "{full} still has tags"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_registry_deletes_its_content_on_the_builtin_registry() {
    let app = TestImage::three_platform(8101);
    let shared = TestImage::single(8102, Format::Oci, &[300_000, 20_000]);
    let src = anonymous_source("demo/app", "v1", &app).await;
    src.client()
        .push_image("demo/shared", "v1", &shared)
        .await
        .unwrap();
    let data = tempfile::tempdir().expect("temp dir");
    let svc = TestService::start(
        ServiceConfig::sqlite(&data.path().join("data"), "unused")
            .builtin_registry(false)
            .flag("--gc-interval-seconds", 1)
            .flag("--gc-grace-seconds", 0),
    )
    .await;
    let arm = ArmClient::new(&svc.base_url());
    let backend = OciClient::new(&svc.registry_url(), None);
    let (sub, other_sub) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    // Another registry holds the shared image: its blobs must survive the deletion.
    arm.create_registry(&sub, RG, "keepreg").await;
    import_ok(
        &arm,
        &sub,
        "keepreg",
        &uri_import(&src.host(), "demo/shared:v1", &["shared:v1"]),
    )
    .await;
    let baseline = blob_bytes(&data.path().join("data"));

    arm.create_registry(&sub, RG, DELREG).await;
    let mut body = uri_import(&src.host(), "demo/app:v1", &["secret/app:1"]);
    body["untaggedTargetRepositories"] = json!(["untagged/app"]);
    let imported = import_ok(&arm, &sub, DELREG, &body).await;
    import_ok(
        &arm,
        &sub,
        DELREG,
        &uri_import(&src.host(), "demo/shared:v1", &["shared:v1"]),
    )
    .await;
    backend
        .assert_has_image(&format!("{DELREG}/secret/app"), Some("1"), &app)
        .await;
    assert!(blob_bytes(&data.path().join("data")) > baseline);

    let done = arm.delete_registry_and_wait(&sub, RG, DELREG).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    let gone = arm.get_registry(&sub, RG, DELREG).await;
    assert_eq!(gone.status.as_u16(), 404, "{gone}");
    // The finished import's status stays readable.
    let url = imported["id"].as_str().expect("status id");
    let again = arm
        .get(&arm.url(&format!("{url}?api-version={API_VERSION}")))
        .await;
    assert_eq!(again.status.as_u16(), 200, "{again}");
    assert_eq!(again.json()["status"], "Succeeded");
    // Imports from the deleted registry are refused in the user's terms.
    let from_deleted = arm
        .import(
            &sub,
            RG,
            "keepreg",
            &json!({"source": {"resourceId": registry_id(&sub, RG, DELREG), "sourceImage": "secret/app:1"},
                    "targetTags": ["copy:v1"]}),
        )
        .await;
    assert_eq!(from_deleted.status.as_u16(), 404, "{from_deleted}");
    assert_eq!(from_deleted.assert_arm_error(), "ResourceNotFound");

    assert_gone(
        &backend,
        &["secret/app", "untagged/app", "shared"],
        &[&app, &shared],
        true,
    )
    .await;
    let catalog = backend.catalog().await.expect("catalog");
    assert!(
        !catalog.iter().any(|r| r.starts_with(&format!("{DELREG}/"))),
        "{catalog:?}"
    );
    assert!(
        catalog.contains(&"keepreg/shared".to_owned()),
        "{catalog:?}"
    );
    backend
        .assert_has_image("keepreg/shared", Some("v1"), &shared)
        .await;

    // The name is free again, in this and in another subscription; either way it starts empty.
    arm.create_registry(&other_sub, RG, DELREG).await;
    assert_gone(
        &backend,
        &["secret/app", "untagged/app", "shared"],
        &[&app, &shared],
        true,
    )
    .await;
    let done = arm.delete_registry_and_wait(&other_sub, RG, DELREG).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    arm.create_registry(&sub, RG, DELREG).await;
    assert_gone(&backend, &["secret/app"], &[&app], true).await;

    // Unreferenced content is freed by the garbage collection: back to the baseline.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = blob_bytes(&data.path().join("data"));
        if now == baseline {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "disk usage {now} never came back to {baseline}:\n{}",
            svc.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    backend
        .assert_has_image("keepreg/shared", Some("v1"), &shared)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_registry_deletes_its_content_on_an_external_backend() {
    let app = TestImage::three_platform(8201);
    let other = TestImage::single(8202, Format::Docker, &[50_000]);
    let src = anonymous_source("demo/app", "v1", &app).await;
    src.client()
        .push_image("demo/other", "v1", &other)
        .await
        .unwrap();
    let env = TestEnv::start().await;
    let (sub, rg) = (&env.sub, &env.rg);
    env.arm.create_registry(sub, rg, DELREG).await;
    let mut body = uri_import(&src.host(), "demo/app:v1", &["secret/app:1"]);
    body["untaggedTargetRepositories"] = json!(["untagged/app"]);
    env.import_ok(DELREG, &body).await;
    // A Force re-import leaves the first image untagged in the repository: found only
    // through the recorded metadata.
    let mut again = uri_import(&src.host(), "demo/other:v1", &["secret/app:1"]);
    again["mode"] = json!("Force");
    env.import_ok(DELREG, &again).await;
    let backend = env.backend_client();
    backend
        .assert_has_image(&format!("{DELREG}/secret/app"), None, &app)
        .await;

    let done = env.arm.delete_registry_and_wait(sub, rg, DELREG).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    assert_eq!(
        env.arm.get_registry(sub, rg, DELREG).await.status.as_u16(),
        404
    );
    assert_gone(
        &backend,
        &["secret/app", "untagged/app"],
        &[&app, &other],
        false,
    )
    .await;

    // Re-created in another subscription: it sees none of it.
    let other_sub = uuid::Uuid::new_v4().to_string();
    env.arm.create_registry(&other_sub, rg, DELREG).await;
    assert_gone(
        &backend,
        &["secret/app", "untagged/app"],
        &[&app, &other],
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_racing_the_delete_is_cancelled_and_leaves_nothing() {
    let big = TestImage::single(8301, Format::Oci, &[6 << 20, 2 << 20]);
    let src = anonymous_source("demo/big", "v1", &big).await;
    let proxy = ThrottleProxy::start(&src.host(), Some(1 << 20)).await;
    let data = tempfile::tempdir().expect("temp dir");
    let svc = TestService::start(
        ServiceConfig::sqlite(&data.path().join("data"), "unused").builtin_registry(false),
    )
    .await;
    let arm = ArmClient::new(&svc.base_url());
    let sub = uuid::Uuid::new_v4().to_string();
    arm.create_registry(&sub, RG, DELREG).await;
    let r = arm
        .import(
            &sub,
            RG,
            DELREG,
            &uri_import(&proxy.host(), "demo/big:v1", &["big:v1"]),
        )
        .await;
    assert_eq!(r.status.as_u16(), 202, "{r}");
    let import_url = r.async_operation();
    arm.poll_until(&import_url, Duration::from_secs(30), "bytes copied", |v| {
        v["properties"]["bytesCopied"].as_u64().unwrap_or(0) > 0
    })
    .await;

    let started = Instant::now();
    let del = arm.delete_registry(&sub, RG, DELREG).await;
    assert_eq!(del.status.as_u16(), 202, "{del}");
    // While it runs: the registry says Deleting, and nothing new is accepted into it.
    let during = arm.get_registry(&sub, RG, DELREG).await;
    if during.status.as_u16() == 200 {
        assert_eq!(
            during.json()["properties"]["provisioningState"],
            "Deleting",
            "{during}"
        );
        let refused = arm
            .import(
                &sub,
                RG,
                DELREG,
                &uri_import(&src.host(), "demo/big:v1", &["late:v1"]),
            )
            .await;
        assert!(matches!(refused.status.as_u16(), 409 | 404), "{refused}");
    }
    let done = arm
        .poll_until_done(&del.async_operation(), Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the deletion waited {:?} for the import",
        started.elapsed()
    );
    // The import ended Canceled, saying why; its status stays readable.
    let status = arm.get(&import_url).await;
    assert_eq!(status.status.as_u16(), 200, "{status}");
    let status = status.json();
    assert_eq!(status["status"], "Canceled", "{status}");
    let message = status["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("was deleted"), "{status}");
    let result = arm.get(&r.location()).await;
    assert_eq!(result.status.as_u16(), 409, "{result}");

    // Nothing it wrote survives, even after its copy would have finished.
    proxy.set_rate(None);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let backend = OciClient::new(&svc.registry_url(), None);
    backend
        .assert_has_none_of(&format!("{DELREG}/big"), &big)
        .await;
    assert!(
        !backend
            .catalog()
            .await
            .expect("catalog")
            .iter()
            .any(|r| r.starts_with(&format!("{DELREG}/"))),
        "the deleted registry is still in the catalog"
    );
    assert!(svc.log().contains("attempt abandoned") || svc.log().contains("lease lost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_credentials_and_tokens_die_with_the_registry() {
    let image = TestImage::single(8401, Format::Oci, &[30_000]);
    let src = anonymous_source("demo/app", "v1", &image).await;
    let data = tempfile::tempdir().expect("temp dir");
    let svc = TestService::start(
        ServiceConfig::sqlite(&data.path().join("data"), "unused").builtin_registry(true),
    )
    .await;
    let arm = ArmClient::new(&svc.base_url());
    let sub = uuid::Uuid::new_v4().to_string();
    let r = arm
        .send_json(
            reqwest::Method::PUT,
            &arm.registry_url(&sub, RG, DELREG),
            &json!({"location": "eastus", "sku": {"name": "Standard"},
                    "properties": {"adminUserEnabled": true}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{r}");
    import_ok(
        &arm,
        &sub,
        DELREG,
        &uri_import(&src.host(), "demo/app:v1", &["app:v1"]),
    )
    .await;
    let creds = arm
        .send_json(
            reqwest::Method::POST,
            &arm.url(&format!(
                "{}/listCredentials?api-version={API_VERSION}",
                registry_id(&sub, RG, DELREG)
            )),
            &json!({}),
        )
        .await;
    assert_eq!(creds.status.as_u16(), 200, "{creds}");
    let password = creds.json()["passwords"][0]["value"]
        .as_str()
        .expect("password")
        .to_owned();
    let client = OciClient::new(
        &svc.registry_url(),
        Some(Credentials::new(DELREG, &password)),
    );
    client
        .assert_has_image(&format!("{DELREG}/app"), Some("v1"), &image)
        .await;
    // A token taken before the deletion.
    let realm = format!("{}/oauth2/token", svc.registry_url());
    let service = svc.registry_url().trim_start_matches("http://").to_owned();
    let token = fetch_token(
        &http_client(),
        &realm,
        &service,
        &[format!("repository:{DELREG}/app:pull,push")],
        Some(&Credentials::new(DELREG, &password)),
    )
    .await
    .expect("token");
    let accept = image.media_type().to_owned();
    let with_token = |url: String| {
        let token = token.clone();
        let accept = accept.clone();
        async move {
            http_client()
                .get(url)
                .header("Authorization", format!("Bearer {token}"))
                .header("Accept", accept)
                .send()
                .await
                .expect("request")
                .status()
        }
    };
    let manifest_url = format!("{}/v2/{DELREG}/app/manifests/v1", svc.registry_url());
    assert_eq!(with_token(manifest_url.clone()).await, StatusCode::OK);

    let done = arm.delete_registry_and_wait(&sub, RG, DELREG).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    // The old token is refused at once, for reads and for writes into the old name.
    assert_eq!(with_token(manifest_url).await, StatusCode::UNAUTHORIZED);
    let upload = http_client()
        .post(format!(
            "{}/v2/{DELREG}/app/blobs/uploads/",
            svc.registry_url()
        ))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("request");
    assert_eq!(upload.status(), StatusCode::UNAUTHORIZED);
    // The password gets no token any more, even once the name is taken again.
    arm.create_registry(&sub, RG, DELREG).await;
    let err = fetch_token(
        &http_client(),
        &realm,
        &service,
        &[format!("repository:{DELREG}/app:pull")],
        Some(&Credentials::new(DELREG, &password)),
    )
    .await;
    assert!(
        err.is_err() || {
            let fresh = OciClient::new(
                &svc.registry_url(),
                Some(Credentials::new(DELREG, &password)),
            );
            fresh
                .fetch_manifest(&format!("{DELREG}/app"), "v1")
                .await
                .is_err()
        },
        "the old password still works"
    );
    // Nor does the old token, even once the new registry enables its admin user: the token
    // names the registry instance it was minted for.
    let r = arm
        .send_json(
            reqwest::Method::PATCH,
            &arm.registry_url(&sub, RG, DELREG),
            &json!({"properties": {"adminUserEnabled": true}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{r}");
    let upload = http_client()
        .post(format!(
            "{}/v2/{DELREG}/app/blobs/uploads/",
            svc.registry_url()
        ))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        upload.status(),
        StatusCode::UNAUTHORIZED,
        "a token of the deleted registry's admin user opens the new one"
    );
}
