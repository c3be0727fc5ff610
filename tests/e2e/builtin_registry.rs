//! The zero-setup default: no `--backend-registry` (the built-in registry serves the emulated
//! registries' content) and no DATABASE_URL (the embedded SQLite store). Imports land in the
//! built-in registry, real clients (skopeo) pull them back, an emulated registry is the source
//! of another import, the login-server Host maps names, and `--registry-auth` answers with the
//! Bearer token dance for each registry's admin user (`listCredentials`).

use std::process::Command;

use acr_import_tests::arm::registry_id;
use acr_import_tests::env::IMPORT_TIMEOUT;
use acr_import_tests::image::Format;
use acr_import_tests::{
    ArmClient, Credentials, OciClient, ServiceConfig, TestImage, TestService, API_VERSION,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{anonymous_source, assert_succeeded, target, uri_import, REG};

const RG: &str = "acr-tests-rg";

/// The service with nothing else: SQLite in a temp data dir, the built-in registry.
async fn zero_setup(auth: bool) -> (TestService, tempfile::TempDir) {
    let data = tempfile::Builder::new()
        .prefix("acr-zero-")
        .tempdir()
        .expect("temp dir");
    let config = ServiceConfig::sqlite(&data.path().join("data"), "unused").builtin_registry(auth);
    let svc = TestService::start(config).await;
    (svc, data)
}

async fn import_ok(arm: &ArmClient, sub: &str, reg: &str, body: &Value) -> Value {
    let accepted = arm.import(sub, RG, reg, body).await;
    assert!(
        matches!(accepted.status.as_u16(), 200 | 202),
        "import not accepted: {accepted}"
    );
    if accepted.status.as_u16() == 200 {
        return json!({"status": "Succeeded"});
    }
    let status = arm
        .poll_until_done(&accepted.async_operation(), IMPORT_TIMEOUT)
        .await;
    assert_succeeded(&status);
    status
}

fn skopeo() -> Command {
    let found = Command::new("skopeo").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "skopeo is needed by this test (scripts/test.sh installs it: apt-get install skopeo)"
    );
    let mut cmd = Command::new("skopeo");
    cmd.env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1");
    cmd
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_setup_imports_a_multi_arch_image_that_skopeo_pulls_back() {
    let image = TestImage::three_platform(6101);
    let (src, (svc, _data)) = tokio::join!(
        anonymous_source("library/multi", "v1", &image),
        zero_setup(false)
    );
    let log = svc.log();
    assert!(log.contains("store: SQLite"), "{log}");
    assert!(log.contains("built-in registry serving"), "{log}");

    let sub = uuid::Uuid::new_v4().to_string();
    let arm = ArmClient::new(&svc.base_url());
    arm.create_registry(&sub, RG, REG).await;
    import_ok(
        &arm,
        &sub,
        REG,
        &uri_import(&src.host(), "library/multi:v1", &["multi:v1"]),
    )
    .await;

    // Every manifest and blob, byte-identical, in the built-in registry.
    let builtin = OciClient::new(&svc.registry_url(), None);
    builtin
        .assert_has_image(&target("multi"), Some("v1"), &image)
        .await;

    // A real client pulls every platform back (a `dir:` copy keeps each manifest's bytes).
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().join("pulled");
    let registry_host = svc.registry_url().trim_start_matches("http://").to_string();
    run(skopeo().args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{registry_host}/{}:v1", target("multi")),
        &format!("dir:{}", dir.display()),
    ]));
    let top = std::fs::read(dir.join("manifest.json")).expect("the top manifest");
    assert_eq!(
        acr_import_tests::util::sha256_digest(&top),
        image.digest(),
        "skopeo pulled the index byte-identical"
    );
    for digest in image.blob_digests() {
        let hex = digest.trim_start_matches("sha256:");
        let bytes = std::fs::read(dir.join(hex))
            .unwrap_or_else(|e| panic!("skopeo did not pull blob {digest}: {e}"));
        assert_eq!(acr_import_tests::util::sha256_digest(&bytes), digest);
    }
    for child in image.child_digests() {
        let hex = child.trim_start_matches("sha256:");
        let bytes = std::fs::read(dir.join(format!("{hex}.manifest.json")))
            .unwrap_or_else(|e| panic!("skopeo did not pull manifest {child}: {e}"));
        assert_eq!(acr_import_tests::util::sha256_digest(&bytes), child);
    }

    // The login server name as Host: repositories relative to the registry.
    let http = reqwest::Client::new();
    let by_host = http
        .get(format!("{}/v2/multi/manifests/v1", svc.registry_url()))
        .header("Host", format!("{}.azurecr.io", REG.to_ascii_lowercase()))
        .header("Accept", image.media_type())
        .send()
        .await
        .expect("GET by login server");
    assert_eq!(by_host.status(), StatusCode::OK);
    assert_eq!(
        by_host
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok()),
        Some(image.digest())
    );
    let catalog: Value = http
        .get(format!("{}/v2/_catalog", svc.registry_url()))
        .header("Host", format!("{}.azurecr.io", REG.to_ascii_lowercase()))
        .send()
        .await
        .expect("catalog")
        .json()
        .await
        .expect("catalog JSON");
    assert_eq!(catalog["repositories"], json!(["multi"]), "{catalog}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emulated_registry_in_the_built_in_one_is_the_source_of_another_import() {
    let image = TestImage::single(6102, Format::Docker, &[300_000, 5_000]);
    let (src, (svc, _data)) =
        tokio::join!(anonymous_source("app", "v1", &image), zero_setup(false));
    let sub = uuid::Uuid::new_v4().to_string();
    let arm = ArmClient::new(&svc.base_url());
    arm.create_registry(&sub, RG, "SourceReg").await;
    arm.create_registry(&sub, RG, REG).await;
    import_ok(
        &arm,
        &sub,
        "SourceReg",
        &uri_import(&src.host(), "app:v1", &["app:v1"]),
    )
    .await;

    // By resource id (the same backend: blobs are mounted, not copied) ...
    let status = import_ok(
        &arm,
        &sub,
        REG,
        &json!({
            "source": {"resourceId": registry_id(&sub, RG, "SourceReg"), "sourceImage": "app:v1"},
            "targetTags": ["copied/app:v1"],
        }),
    )
    .await;
    let props = &status["properties"];
    if props.is_object() {
        assert_eq!(props["bytesCopied"], 0, "mounted, not copied: {status}");
    }
    // ... and by the login server name.
    import_ok(
        &arm,
        &sub,
        REG,
        &uri_import("sourcereg.azurecr.io", "app:v1", &["bylogin/app:v1"]),
    )
    .await;

    let builtin = OciClient::new(&svc.registry_url(), None);
    builtin
        .assert_has_image(&target("copied/app"), Some("v1"), &image)
        .await;
    builtin
        .assert_has_image(&target("bylogin/app"), Some("v1"), &image)
        .await;
}

async fn list_credentials(arm: &ArmClient, sub: &str, name: &str) -> acr_import_tests::ArmResponse {
    let url = arm.url(&format!(
        "{}/listCredentials?api-version={API_VERSION}",
        registry_id(sub, RG, name)
    ));
    arm.send_json(reqwest::Method::POST, &url, &json!({})).await
}

async fn set_admin(arm: &ArmClient, sub: &str, name: &str, enabled: bool) {
    let r = arm
        .send_json(
            reqwest::Method::PUT,
            &arm.registry_url(sub, RG, name),
            &json!({"location": "eastus", "sku": {"name": "Standard"},
                    "properties": {"adminUserEnabled": enabled}}),
        )
        .await;
    assert!(matches!(r.status.as_u16(), 200 | 201), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_auth_admin_users_get_tokens_for_their_registry_only() {
    let image = TestImage::single(6103, Format::Oci, &[40_000]);
    let (src, (svc, _data)) = tokio::join!(anonymous_source("app", "v1", &image), zero_setup(true));
    let sub = uuid::Uuid::new_v4().to_string();
    let arm = ArmClient::new(&svc.base_url());
    set_admin(&arm, &sub, REG, true).await;
    arm.create_registry(&sub, RG, "OtherReg").await;

    // The workers have their own credentials: the import works under --registry-auth.
    import_ok(
        &arm,
        &sub,
        REG,
        &uri_import(&src.host(), "app:v1", &["app:v1"]),
    )
    .await;

    // Anonymous: 401 with the Bearer challenge of the token dance.
    let http = reqwest::Client::new();
    let anon = http
        .get(format!(
            "{}/v2/{}/manifests/v1",
            svc.registry_url(),
            target("app")
        ))
        .send()
        .await
        .expect("anonymous GET");
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    let challenge = anon
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        challenge.starts_with("Bearer realm=") && challenge.contains("oauth2/token"),
        "{challenge}"
    );

    // listCredentials: ACR's shape, the registry's name as user.
    let creds = list_credentials(&arm, &sub, REG).await;
    assert_eq!(creds.status.as_u16(), 200, "{creds}");
    let creds = creds.json();
    assert_eq!(creds["username"], REG);
    assert_eq!(creds["passwords"][0]["name"], "password");
    assert_eq!(creds["passwords"][1]["name"], "password2");
    let password = creds["passwords"][0]["value"].as_str().expect("password");
    let password2 = creds["passwords"][1]["value"].as_str().expect("password2");
    assert_ne!(password, password2);
    assert!(
        !svc.log().contains(password),
        "admin passwords never reach the log"
    );

    // The admin user pulls through the token dance, with either password.
    for p in [password, password2] {
        let client = OciClient::new(&svc.registry_url(), Some(Credentials::new(REG, p)));
        client
            .assert_has_image(&target("app"), Some("v1"), &image)
            .await;
    }
    // skopeo too (a real client's token dance).
    let registry_host = svc.registry_url().trim_start_matches("http://").to_string();
    let inspect = run(skopeo().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &format!("{REG}:{password}"),
        &format!("docker://{registry_host}/{}:v1", target("app")),
    ]));
    assert_eq!(
        acr_import_tests::util::sha256_digest(&inspect.stdout),
        image.digest()
    );
    let refused = skopeo()
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &format!("{REG}:wrong-password"),
            &format!("docker://{registry_host}/{}:v1", target("app")),
        ])
        .output()
        .expect("skopeo");
    assert!(!refused.status.success(), "a wrong password is refused");

    // Another registry's repositories are out of reach for this admin user: the token
    // endpoint grants nothing there, so the registry answers 401 (not 404).
    let token = http
        .get(format!(
            "{}/oauth2/token?service=x&scope=repository:otherreg/app:pull",
            svc.registry_url()
        ))
        .basic_auth(REG, Some(password))
        .send()
        .await
        .expect("token");
    assert_eq!(token.status(), StatusCode::OK);
    let token: Value = token.json().await.expect("token JSON");
    let bearer = token["token"].as_str().expect("token");
    let denied = http
        .get(format!("{}/v2/otherreg/app/tags/list", svc.registry_url()))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("GET with a token for another registry");
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);

    // Admin user disabled: listCredentials is refused as in ACR, and the passwords stop working.
    let other_creds = list_credentials(&arm, &sub, "OtherReg").await;
    assert_eq!(other_creds.status.as_u16(), 400, "{other_creds}");
    assert_eq!(
        other_creds.error_code().as_deref(),
        Some("UnAuthorizedForCredentialOperations")
    );
    set_admin(&arm, &sub, REG, false).await;
    let after = OciClient::new(&svc.registry_url(), Some(Credentials::new(REG, password)));
    assert!(
        after.fetch_manifest(&target("app"), "v1").await.is_err(),
        "a disabled admin user gets no token"
    );
}
