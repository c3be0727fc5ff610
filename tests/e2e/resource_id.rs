//! A `resourceId` source: import from one emulated registry into another.

use acr_import_tests::TestEnv;
use acr_import_tests::TestImage;
use serde_json::json;

use crate::common::{anonymous_source, assert_succeeded, uri_import};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_from_emulated_registry_by_resource_id() {
    let image = TestImage::three_platform(501);
    let (env, src) = tokio::join!(
        TestEnv::start(),
        anonymous_source("demo/multi", "v1", &image)
    );
    env.create_registry("RegAlpha1").await;
    env.create_registry("RegBeta02").await;

    // External source → A.
    env.import_ok(
        "RegAlpha1",
        &uri_import(&src.host(), "demo/multi:v1", &["app/multi:v1"]),
    )
    .await;
    let backend = env.backend_client();
    backend
        .assert_has_image("regalpha1/app/multi", Some("v1"), &image)
        .await;

    // A → B by resourceId; both live in the same backend registry.
    let body = json!({
        "source": {"resourceId": env.registry_id("RegAlpha1"), "sourceImage": "app/multi:v1"},
        "targetTags": ["copied/multi:v2"],
    });
    let status = env.import_ok("RegBeta02", &body).await;
    assert_succeeded(&status);
    backend
        .assert_has_image("regbeta02/copied/multi", Some("v2"), &image)
        .await;
    // The source is untouched.
    assert_eq!(
        backend.tags_list("regalpha1/app/multi").await.unwrap(),
        vec!["v1"]
    );

    // A missing image in the emulated source is SourceImageNotFound.
    let body = json!({
        "source": {"resourceId": env.registry_id("RegAlpha1"), "sourceImage": "app/multi:nope"},
        "targetTags": ["copied/multi:v3"],
    });
    let (_, status) = env.import_and_wait("RegBeta02", &body).await;
    crate::common::assert_failed(&status, "SourceImageNotFound");
}
