//! SIGTERM: a clean exit with status 0, idle or with an import in flight (which another
//! instance then finishes).

use std::time::Duration;

use acr_import_tests::env::IMPORT_TIMEOUT;
use acr_import_tests::image::Format;
use acr_import_tests::{
    ArmClient, ServiceConfig, TestEnv, TestImage, TestRegistry, TestService, ThrottleProxy,
};

use crate::common::{anonymous_source, assert_succeeded, target, uri_import, REG};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero() {
    let mut env = TestEnv::start().await;
    env.create_registry(REG).await;
    let status = env.service.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_import_exits_zero_and_the_import_completes_later() {
    let image = TestImage::single(901, Format::Oci, &[4 << 20]);
    // The second process takes over on the same content: an external backend.
    let (mut env, src) = tokio::join!(
        async {
            TestEnv::start_with_backend(TestRegistry::anonymous().await, |c| c.lease_seconds(3))
                .await
        },
        anonymous_source("demo/term", "v1", &image)
    );
    let proxy = ThrottleProxy::start(&src.host(), Some(512 << 10)).await;
    env.create_registry(REG).await;
    let accepted = env
        .start_import(
            REG,
            &uri_import(&proxy.host(), "demo/term:v1", &["imported/term:v1"]),
        )
        .await;
    env.arm
        .poll_until(
            &accepted.async_operation(),
            Duration::from_secs(30),
            "InProgress",
            |v| v["status"] == "InProgress",
        )
        .await;

    let status = env.service.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status}");

    proxy.set_rate(None);
    let b = TestService::start(
        ServiceConfig::new(env.db.url(), &env.external_backend().url()).lease_seconds(3),
    )
    .await;
    let arm_b = ArmClient::new(&b.base_url());
    let status = arm_b
        .poll_until_done(&arm_b.rebase(&accepted.async_operation()), IMPORT_TIMEOUT)
        .await;
    assert_succeeded(&status);
    env.backend_client()
        .assert_has_image(&target("imported/term"), Some("v1"), &image)
        .await;
}
