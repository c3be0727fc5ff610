//! The ARM long-running-operation surface: the 202's headers, the Location URL's answers
//! while running / after success / after failure, and idempotent POSTs.

use std::time::Duration;

use acr_import_tests::env::IMPORT_TIMEOUT;
use acr_import_tests::image::Format;
use acr_import_tests::{TestEnv, TestImage, ThrottleProxy};

use crate::common::{anonymous_source, assert_failed, assert_succeeded, target, uri_import, REG};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_url_while_running_after_success_and_after_failure() {
    // 6 MiB through a 1 MiB/s proxy keeps the operation running for several seconds.
    let image = TestImage::single(601, Format::Oci, &[6 << 20]);
    let (env, src) = tokio::join!(
        TestEnv::start(),
        anonymous_source("demo/slow", "v1", &image)
    );
    let proxy = ThrottleProxy::start(&src.host(), Some(1 << 20)).await;
    env.create_registry(REG).await;

    let accepted = env
        .start_import(
            REG,
            &uri_import(&proxy.host(), "demo/slow:v1", &["imported/slow:v1"]),
        )
        .await;
    // The 202: empty body, absolute Location / Azure-AsyncOperation, Retry-After: 1.
    assert!(
        accepted.body.is_empty() || accepted.text() == "null",
        "{accepted}"
    );
    assert!(accepted.header("x-ms-request-id").is_some(), "{accepted}");
    assert_eq!(accepted.header("retry-after"), Some("1"), "{accepted}");
    let location = accepted.location();
    let async_op = accepted.async_operation();
    let base = env.service.base_url();
    assert!(
        location.starts_with(&base),
        "Location not absolute: {location}"
    );
    assert!(
        async_op.starts_with(&base),
        "Azure-AsyncOperation not absolute: {async_op}"
    );
    assert!(
        location.contains(
            "/providers/Microsoft.ContainerRegistry/locations/eastus/operationResults/registries-"
        ) && location.contains("api-version="),
        "{location}"
    );
    assert!(
        async_op.contains(
            "/providers/Microsoft.ContainerRegistry/locations/eastus/operationStatuses/registries-"
        ) && async_op.contains("api-version="),
        "{async_op}"
    );
    assert!(
        location.contains(&format!("/subscriptions/{}/", env.sub)),
        "{location}"
    );

    // While running: Location → 202 + Retry-After; Azure-AsyncOperation → 200 InProgress.
    let running = env.arm.get(&location).await;
    assert_eq!(running.status.as_u16(), 202, "{running}");
    assert!(running.retry_after().is_some_and(|s| s >= 1), "{running}");
    assert!(running.header("x-ms-request-id").is_some(), "{running}");
    let st = env.arm.get(&async_op).await;
    assert_eq!(st.status.as_u16(), 200, "{st}");
    // azure-core sleeps the Retry-After of *this* answer (30 s without one).
    assert_eq!(st.header("retry-after"), Some("1"), "{st}");
    let st = st.json();
    assert_eq!(st["status"], "InProgress", "{st}");
    assert!(st["startTime"].is_string(), "{st}");
    assert!(st["endTime"].is_null(), "endTime while running: {st}");
    let pct = st["percentComplete"].as_f64().expect("percentComplete");
    assert!((0.0..100.0).contains(&pct), "{st}");

    // Let it finish: Location → 200, status Succeeded.
    proxy.set_rate(None);
    let done = env.arm.poll_location(&location, IMPORT_TIMEOUT).await;
    assert_eq!(done.status.as_u16(), 200, "{done}");
    let done_status = env.arm.get(&async_op).await;
    assert!(done_status.header("retry-after").is_none(), "{done_status}");
    let status = done_status.json();
    assert_succeeded(&status);
    assert_eq!(status["percentComplete"].as_f64(), Some(100.0), "{status}");
    // Asking again gives the same answers.
    assert_eq!(env.arm.get(&location).await.status.as_u16(), 200);
    env.backend_client()
        .assert_has_image(&target("imported/slow"), Some("v1"), &image)
        .await;

    // After a failure: Location → 4xx with the ARM error.
    let failed = env
        .start_import(
            REG,
            &uri_import(&src.host(), "demo/absent:v1", &["imported/absent:v1"]),
        )
        .await;
    let answer = env
        .arm
        .poll_location(&failed.location(), IMPORT_TIMEOUT)
        .await;
    assert_eq!(answer.status.as_u16(), 404, "{answer}");
    assert_eq!(answer.assert_arm_error(), "SourceImageNotFound");
    let status = env.arm.get(&failed.async_operation()).await.json();
    assert_failed(&status, "SourceImageNotFound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_client_request_id_returns_the_same_operation() {
    let image = TestImage::single(602, Format::Oci, &[1000]);
    let (env, src) = tokio::join!(
        TestEnv::start(),
        anonymous_source("demo/idem", "v1", &image)
    );
    env.create_registry(REG).await;
    let body = uri_import(&src.host(), "demo/idem:v1", &["imported/idem:v1"]);

    let request_id = uuid::Uuid::new_v4().to_string();
    let first = env
        .arm
        .import_with_request_id(&env.sub, &env.rg, REG, &body, Some(&request_id))
        .await;
    let second = env
        .arm
        .import_with_request_id(&env.sub, &env.rg, REG, &body, Some(&request_id))
        .await;
    assert_eq!(first.status.as_u16(), 202, "{first}");
    assert_eq!(second.status.as_u16(), 202, "{second}");
    assert!(
        first
            .location()
            .contains(&format!("registries-{request_id}")),
        "operation id is not registries-<client request id>: {}",
        first.location()
    );
    assert_eq!(first.location(), second.location());
    assert_eq!(first.async_operation(), second.async_operation());

    let status = env
        .arm
        .poll_until_done(&first.async_operation(), IMPORT_TIMEOUT)
        .await;
    assert_succeeded(&status);
    assert_eq!(
        status["name"],
        format!("registries-{request_id}"),
        "{status}"
    );

    // After completion the same id still names the same (finished) operation.
    let third = env
        .arm
        .import_with_request_id(&env.sub, &env.rg, REG, &body, Some(&request_id))
        .await;
    assert_eq!(third.status.as_u16(), 202, "{third}");
    assert_eq!(third.location(), first.location());
    assert_eq!(env.arm.get(&third.location()).await.status.as_u16(), 200);

    // A different id is a different operation.
    let other = env
        .arm
        .import_with_request_id(
            &env.sub,
            &env.rg,
            REG,
            &body,
            Some(&uuid::Uuid::new_v4().to_string()),
        )
        .await;
    assert_eq!(other.status.as_u16(), 202, "{other}");
    assert_ne!(other.location(), first.location());
    let status = env
        .arm
        .poll_until_done(&other.async_operation(), Duration::from_secs(60))
        .await;
    // Same tag and digest again under NoForce: the tag exists now.
    assert_failed(&status, "Conflict");
}
