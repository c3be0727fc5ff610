//! NoForce (the default) refuses to overwrite an existing target tag and copies nothing;
//! Force moves the tag.

use acr_import_tests::image::Format;
use acr_import_tests::{TestEnv, TestImage, TestRegistry};
use serde_json::json;

use crate::common::{assert_failed, assert_succeeded, target, uri_import, REG};

/// An env where `myreg/imported/app:v1` already holds `old`, and a source holding `new`
/// (a 3-platform index) as `demo/app:v2`.
async fn conflict_setup() -> (TestEnv, TestRegistry, TestImage, TestImage) {
    let old = TestImage::single(201, Format::Docker, &[4000]);
    let new = TestImage::three_platform(202);
    let (env, src) = tokio::join!(TestEnv::start(), TestRegistry::anonymous());
    src.client()
        .push_image("demo/app", "v2", &new)
        .await
        .unwrap();
    env.create_registry(REG).await;
    env.backend_client()
        .push_image(&target("imported/app"), "v1", &old)
        .await
        .unwrap();
    (env, src, old, new)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noforce_conflict_copies_nothing() {
    let (env, src, old, new) = conflict_setup().await;

    // The conflicting tag is listed second: nothing may be copied for the first one either.
    let body = json!({
        "source": {"registryUri": src.host(), "sourceImage": "demo/app:v2"},
        "targetTags": ["imported/fresh:v1", "imported/app:v1"],
        "untaggedTargetRepositories": ["imported/untagged"],
    });
    let (accepted, status) = env.import_and_wait(REG, &body).await;
    let message = assert_failed(&status, "Conflict");
    assert!(
        message.contains("already exists in target registry"),
        "message: {message}"
    );

    // The Location URL answers 409 with the ARM error.
    let loc = env.arm.get(&accepted.location()).await;
    assert_eq!(loc.status.as_u16(), 409, "{loc}");
    assert_eq!(loc.assert_arm_error(), "Conflict");

    let backend = env.backend_client();
    // The tag still points at the old image, which is intact.
    backend
        .assert_has_image(&target("imported/app"), Some("v1"), &old)
        .await;
    // None of the new image's manifests or blobs reached any target repository.
    for repo in ["imported/app", "imported/fresh", "imported/untagged"] {
        backend.assert_has_none_of(&target(repo), &new).await;
    }
    assert!(backend
        .tags_list(&target("imported/fresh"))
        .await
        .unwrap()
        .is_empty());

    // Explicit "NoForce" behaves the same.
    let body = json!({
        "source": {"registryUri": src.host(), "sourceImage": "demo/app:v2"},
        "targetTags": ["imported/app:v1"],
        "mode": "NoForce",
    });
    let (_, status) = env.import_and_wait(REG, &body).await;
    assert_failed(&status, "Conflict");
    backend
        .assert_has_none_of(&target("imported/app"), &new)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_overwrites_the_tag() {
    let (env, src, old, new) = conflict_setup().await;

    let mut body = uri_import(&src.host(), "demo/app:v2", &["imported/app:v1"]);
    body["mode"] = json!("Force");
    let status = env.import_ok(REG, &body).await;
    assert_succeeded(&status);
    let backend = env.backend_client();
    backend
        .assert_has_image(&target("imported/app"), Some("v1"), &new)
        .await;
    let now = backend
        .resolve(&target("imported/app"), "v1")
        .await
        .unwrap();
    assert_ne!(now.as_deref(), Some(old.digest()));

    // Force again with the very same image is fine: nothing to copy, it succeeds.
    env.import_ok(REG, &body).await;
    backend
        .assert_has_image(&target("imported/app"), Some("v1"), &new)
        .await;
}
