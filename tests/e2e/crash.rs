//! A worker killed mid-operation: its lease runs out and another instance finishes the job.

use std::time::Duration;

use acr_import_tests::env::IMPORT_TIMEOUT;
use acr_import_tests::image::{Format, Platform};
use acr_import_tests::util::poll_until;
use acr_import_tests::{
    ArmClient, ServiceConfig, TestDatabase, TestImage, TestRegistry, TestService, ThrottleProxy,
};

use crate::common::{assert_succeeded, target, uri_import, REG};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_operation_is_finished_by_another_instance() {
    // 3 platforms × 3 MiB layers through a 512 KiB/s proxy: a long copy.
    let image = TestImage::index(701, Format::Oci, &Platform::three(), &[1024, 3 << 20]);
    let (db, backend, src) = tokio::join!(
        TestDatabase::create(),
        TestRegistry::anonymous(),
        TestRegistry::anonymous()
    );
    src.client()
        .push_image("demo/big", "v1", &image)
        .await
        .unwrap();
    let proxy = ThrottleProxy::start(&src.host(), Some(512 << 10)).await;

    let mut a =
        TestService::start(ServiceConfig::new(db.url(), &backend.url()).lease_seconds(3)).await;
    let arm_a = ArmClient::new(&a.base_url());
    let sub = uuid::Uuid::new_v4().to_string();
    let rg = "crash-rg";
    arm_a.create_registry(&sub, rg, REG).await;
    let accepted = arm_a
        .import(
            &sub,
            rg,
            REG,
            &uri_import(&proxy.host(), "demo/big:v1", &["imported/big:v1"]),
        )
        .await;
    assert_eq!(accepted.status.as_u16(), 202, "{accepted}");

    // Wait until A is really copying: InProgress, and layer bytes flowing from the source.
    arm_a
        .poll_until(
            &accepted.async_operation(),
            Duration::from_secs(30),
            "InProgress",
            |v| v["status"] == "InProgress",
        )
        .await;
    poll_until(
        "layer bytes to flow through the proxy",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async { (proxy.bytes_to_client() > 600 << 10).then_some(()) },
    )
    .await;
    a.kill_9();
    assert!(!a.is_running());

    // B on the same database and backend; the source is fast now.
    proxy.set_rate(None);
    let b = TestService::start(ServiceConfig::new(db.url(), &backend.url()).lease_seconds(3)).await;
    let arm_b = ArmClient::new(&b.base_url());
    let status = arm_b
        .poll_until_done(&arm_b.rebase(&accepted.async_operation()), IMPORT_TIMEOUT)
        .await;
    assert_succeeded(&status);
    let loc = arm_b.get(&arm_b.rebase(&accepted.location())).await;
    assert_eq!(loc.status.as_u16(), 200, "{loc}");
    backend
        .client()
        .assert_has_image(&target("imported/big"), Some("v1"), &image)
        .await;
    drop(a);
}
