//! Sources behind Basic auth (htpasswd) and token auth.

use acr_import_tests::image::Format;
use acr_import_tests::{TestEnv, TestImage, TestRegistry};
use serde_json::{json, Value};

use crate::common::{assert_failed, assert_succeeded, target, REG};

fn body(host: &str, creds: Option<(&str, &str)>) -> Value {
    let mut source = json!({"registryUri": host, "sourceImage": "private/app:v1"});
    if let Some((u, p)) = creds {
        source["credentials"] = json!({"username": u, "password": p});
    }
    json!({"source": source, "targetTags": ["imported/app:v1"]})
}

async fn setup(src: TestRegistry, image: &TestImage) -> (TestEnv, TestRegistry) {
    src.client()
        .push_image("private/app", "v1", image)
        .await
        .unwrap();
    let env = TestEnv::start().await;
    env.create_registry(REG).await;
    (env, src)
}

/// Imports without and with wrong credentials fail with SourceRegistryUnauthorized (also on
/// the Location URL, as a 400) and leave nothing behind.
async fn assert_unauthorized(env: &TestEnv, host: &str, image: &TestImage, wrong: (&str, &str)) {
    for creds in [None, Some(wrong)] {
        let (accepted, status) = env.import_and_wait(REG, &body(host, creds)).await;
        assert_failed(&status, "SourceRegistryUnauthorized");
        let loc = env.arm.get(&accepted.location()).await;
        assert_eq!(loc.status.as_u16(), 400, "{loc}");
        assert_eq!(loc.assert_arm_error(), "SourceRegistryUnauthorized");
    }
    env.backend_client()
        .assert_has_none_of(&target("imported/app"), image)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_source_with_credentials() {
    let image = TestImage::three_platform(301);
    let (env, src) = setup(
        TestRegistry::htpasswd("importer", "Pa55-word!").await,
        &image,
    )
    .await;

    let status = env
        .import_ok(REG, &body(&src.host(), Some(("importer", "Pa55-word!"))))
        .await;
    assert_succeeded(&status);
    env.backend_client()
        .assert_has_image(&target("imported/app"), Some("v1"), &image)
        .await;
    assert!(
        !env.service.log().contains("Pa55-word!"),
        "the source password appears in the service log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_source_without_credentials() {
    let image = TestImage::single(302, Format::Oci, &[2000]);
    let (env, src) = setup(
        TestRegistry::htpasswd("importer", "Pa55-word!").await,
        &image,
    )
    .await;
    assert_unauthorized(&env, &src.host(), &image, ("importer", "not-the-password")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_source_with_credentials() {
    let image = TestImage::three_platform(303);
    let (env, src) = setup(TestRegistry::token().await, &image).await;
    let ts = src.token_server().unwrap();
    let before = ts.authorized_requests();

    let status = env
        .import_ok(
            REG,
            &body(&src.host(), Some((ts.username(), ts.password()))),
        )
        .await;
    assert_succeeded(&status);
    env.backend_client()
        .assert_has_image(&target("imported/app"), Some("v1"), &image)
        .await;
    assert!(
        ts.authorized_requests() > before,
        "the service never fetched a token"
    );
    let log = ts.request_log();
    assert!(
        log[before..].iter().any(|r| r.authorized
            && r.scopes
                .iter()
                .any(|s| s.starts_with("repository:private/app:") && s.contains("pull"))),
        "no authorized pull token for private/app: {log:?}"
    );
    assert!(
        !env.service.log().contains(ts.password()),
        "the source password appears in the service log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_source_without_credentials() {
    let image = TestImage::single(304, Format::Docker, &[2000]);
    let (env, src) = setup(TestRegistry::token().await, &image).await;
    let ts = src.token_server().unwrap();
    let before = ts.requests();
    assert_unauthorized(&env, &src.host(), &image, ("tokenuser", "wrong-password")).await;
    assert!(
        ts.requests() > before,
        "the service never asked the token server"
    );
}
