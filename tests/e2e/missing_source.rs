//! A source image that does not exist.

use acr_import_tests::image::Format;
use acr_import_tests::{TestEnv, TestImage};

use crate::common::{anonymous_source, assert_failed, target, uri_import, REG};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_source_image() {
    let image = TestImage::single(401, Format::Oci, &[100]);
    let (env, src) = tokio::join!(
        TestEnv::start(),
        anonymous_source("demo/present", "v1", &image)
    );
    env.create_registry(REG).await;

    // Unknown repository, unknown tag in a known repository, unknown digest.
    let unknown_digest = format!("demo/present@sha256:{}", "0".repeat(64));
    for source_image in [
        "demo/nothere:v1",
        "demo/present:nope",
        unknown_digest.as_str(),
    ] {
        let (accepted, status) = env
            .import_and_wait(
                REG,
                &uri_import(&src.host(), source_image, &["imported/x:v1"]),
            )
            .await;
        let message = assert_failed(&status, "SourceImageNotFound");
        let (repo, reference) = source_image
            .split_once('@')
            .or_else(|| source_image.split_once(':'))
            .unwrap();
        assert!(
            message.contains(repo) && message.contains(reference),
            "message does not name {source_image}: {message}"
        );
        let loc = env.arm.get(&accepted.location()).await;
        assert_eq!(loc.status.as_u16(), 404, "{loc}");
        assert_eq!(loc.assert_arm_error(), "SourceImageNotFound");
    }
    assert!(env
        .backend_client()
        .tags_list(&target("imported/x"))
        .await
        .unwrap()
        .is_empty());
}
