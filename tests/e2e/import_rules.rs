//! The service rules of importImage: source resolution, the target's SKU, network rules,
//! synchronous completion when there is nothing to copy, and the retention of operations.

use std::time::Duration;

use acr_import_tests::{TestEnv, TestImage};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{anonymous_source, assert_succeeded, uri_import};

/// A world with registry `SrcReg01` holding `app/multi:v1` (imported from an external source).
async fn with_emulated_source(
    configure: impl FnOnce(acr_import_tests::ServiceConfig) -> acr_import_tests::ServiceConfig,
) -> (TestEnv, TestImage) {
    let image = TestImage::three_platform(7301);
    let (env, src) = tokio::join!(
        TestEnv::start_with(configure),
        anonymous_source("demo/multi", "v1", &image)
    );
    env.create_registry("SrcReg01").await;
    env.import_ok(
        "SrcReg01",
        &uri_import(&src.host(), "demo/multi:v1", &["app/multi:v1"]),
    )
    .await;
    (env, image)
}

async fn patch(env: &TestEnv, name: &str, properties: Value) {
    let r = env
        .arm
        .send_json(
            Method::PATCH,
            &env.arm.registry_url(&env.sub, &env.rg, name),
            &json!({ "properties": properties }),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{r}");
}

fn by_id(env: &TestEnv, name: &str, image: &str, tag: &str) -> Value {
    json!({"source": {"resourceId": env.registry_id(name), "sourceImage": image}, "targetTags": [tag]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_resolution_and_target_sku() {
    let (env, image) = with_emulated_source(|c| c).await;
    env.create_registry("DstReg01").await;

    // The login server of an emulated registry is that registry.
    let status = env
        .import_ok(
            "DstReg01",
            &uri_import("srcreg01.azurecr.io", "app/multi:v1", &["by/login:v1"]),
        )
        .await;
    assert_succeeded(&status);
    env.backend_client()
        .assert_has_image("dstreg01/by/login", Some("v1"), &image)
        .await;

    let refuse = |body: Value, status: u16, code: &'static str| {
        let env = &env;
        async move {
            let r = env.arm.import(&env.sub, &env.rg, "DstReg01", &body).await;
            assert_eq!(r.status.as_u16(), status, "{body}: {r}");
            assert_eq!(r.assert_arm_error(), code, "{r}");
            r.error_message().unwrap_or_default()
        }
    };
    // A resourceId that names no registry: ARM's not-found wording.
    let missing = refuse(
        by_id(&env, "NoSuchReg9", "app/multi:v1", "x:v1"),
        404,
        "ResourceNotFound",
    )
    .await;
    assert!(
        missing.contains("Microsoft.ContainerRegistry/registries/NoSuchReg9")
            && missing.contains("was not found"),
        "{missing}"
    );
    // resourceId and registryUri together.
    refuse(
        json!({"source": {"resourceId": env.registry_id("SrcReg01"), "registryUri": "srcreg01.azurecr.io", "sourceImage": "app/multi:v1"}}),
        400,
        "InvalidParameters",
    )
    .await;
    // A login server in front of sourceImage with a resourceId.
    let m = refuse(
        by_id(&env, "SrcReg01", "srcreg01.azurecr.io/app/multi:v1", "x:v1"),
        400,
        "InvalidParameters",
    )
    .await;
    assert!(m.contains("login server"), "{m}");

    // A Classic target is refused (`az acr import` says "only supported for managed registries").
    let classic = env
        .arm
        .send_json(
            Method::PUT,
            &env.arm.registry_url(&env.sub, &env.rg, "OldClassic1"),
            &json!({"location": "eastus", "sku": {"name": "Classic"}}),
        )
        .await;
    assert_eq!(classic.status.as_u16(), 201, "{classic}");
    let r = env
        .arm
        .import(
            &env.sub,
            &env.rg,
            "OldClassic1",
            &by_id(&env, "SrcReg01", "app/multi:v1", "x:v1"),
        )
        .await;
    assert_eq!(r.status.as_u16(), 400, "{r}");
    assert_eq!(r.assert_arm_error(), "UnsupportedSku");
    assert!(
        r.error_message()
            .unwrap_or_default()
            .contains("managed registries"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_rules_of_source_and_target() {
    let (env, image) = with_emulated_source(|c| c).await;
    env.create_registry("DstReg02").await;
    patch(&env, "SrcReg01", json!({"publicNetworkAccess": "Disabled"})).await;

    let expect = |body: Value, code: &'static str| {
        let env = &env;
        async move {
            let r = env.arm.import(&env.sub, &env.rg, "DstReg02", &body).await;
            assert_eq!(r.status.as_u16(), 403, "{body}: {r}");
            assert_eq!(r.assert_arm_error(), code, "{r}");
            r.error_message().unwrap_or_default()
        }
    };
    // Public access disabled: not by login server...
    let m = expect(
        uri_import("srcreg01.azurecr.io", "app/multi:v1", &["n/a:v1"]),
        "SourceRegistryNetworkRestricted",
    )
    .await;
    assert!(
        m.contains("public network access disabled") && m.contains("resourceId"),
        "{m}"
    );
    // ...nor with credentials (cross-tenant style)...
    let m = expect(
        json!({"source": {"registryUri": "srcreg01.azurecr.io", "sourceImage": "app/multi:v1",
                          "credentials": {"username": "u", "password": "p"}}, "targetTags": ["n/a:v2"]}),
        "SourceRegistryNetworkRestricted",
    )
    .await;
    assert!(
        m.contains("Cross-tenant import over public access disabled registry is not supported."),
        "{m}"
    );
    // ...but by resourceId with the trusted-services bypass (the default).
    let status = env
        .import_ok(
            "DstReg02",
            &by_id(&env, "SrcReg01", "app/multi:v1", "ok/multi:v1"),
        )
        .await;
    assert_succeeded(&status);
    env.backend_client()
        .assert_has_image("dstreg02/ok/multi", Some("v1"), &image)
        .await;
    // Without the bypass, not even by resourceId.
    patch(
        &env,
        "SrcReg01",
        json!({"networkRuleBypassOptions": "None"}),
    )
    .await;
    let m = expect(
        by_id(&env, "SrcReg01", "app/multi:v1", "n/a:v3"),
        "SourceRegistryNetworkRestricted",
    )
    .await;
    assert!(m.contains("networkRuleBypassOptions"), "{m}");

    // A firewalled target with bypass None refuses imports; with AzureServices it accepts them.
    patch(
        &env,
        "SrcReg01",
        json!({"publicNetworkAccess": "Enabled", "networkRuleBypassOptions": "AzureServices"}),
    )
    .await;
    patch(
        &env,
        "DstReg02",
        json!({"networkRuleSet": {"defaultAction": "Deny"}, "networkRuleBypassOptions": "None"}),
    )
    .await;
    let m = expect(
        by_id(&env, "SrcReg01", "app/multi:v1", "n/a:v4"),
        "TargetRegistryNetworkRestricted",
    )
    .await;
    assert!(m.contains("DstReg02") && m.contains("AzureServices"), "{m}");
    patch(
        &env,
        "DstReg02",
        json!({"networkRuleBypassOptions": "AzureServices"}),
    )
    .await;
    env.import_ok(
        "DstReg02",
        &by_id(&env, "SrcReg01", "app/multi:v1", "fw/multi:v1"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_to_copy_completes_synchronously_when_opted_in() {
    let body = |env: &TestEnv| {
        json!({"source": {"resourceId": env.registry_id("SrcReg01"), "sourceImage": "app/multi:v1"},
               "targetTags": ["app/multi:v1"], "mode": "Force"})
    };
    // By default a POST never waits for the copy: even with nothing to copy it answers 202.
    let (env, _image) = with_emulated_source(|c| c).await;
    let r = env
        .arm
        .import(&env.sub, &env.rg, "SrcReg01", &body(&env))
        .await;
    assert_eq!(r.status.as_u16(), 202, "{r}");
    let status = env
        .arm
        .poll_until_done(&r.async_operation(), Duration::from_secs(30))
        .await;
    assert_succeeded(&status);
    drop(env);

    // Opted in (--sync-wait-ms): everything already there (same tag, same digest, Force) is
    // answered 200 at once, with no operation URLs.
    let (env, _image) = with_emulated_source(|c| c.flag("--sync-wait-ms", 2000)).await;
    let r = env
        .arm
        .import(&env.sub, &env.rg, "SrcReg01", &body(&env))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{r}");
    assert!(
        r.header("location").is_none() && r.header("azure-asyncoperation").is_none(),
        "{r}"
    );
    // Something to copy: 202 as usual.
    env.create_registry("DstReg03").await;
    let r = env
        .arm
        .import(
            &env.sub,
            &env.rg,
            "DstReg03",
            &by_id(&env, "SrcReg01", "app/multi:v1", "new/multi:v1"),
        )
        .await;
    assert_eq!(r.status.as_u16(), 202, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_operations_expire_after_the_retention() {
    let image = TestImage::three_platform(7302);
    let (env, src) = tokio::join!(
        TestEnv::start_with(|c| c.flag("--operation-retention-seconds", 2)),
        anonymous_source("demo/multi", "v1", &image)
    );
    env.create_registry("RetReg01").await;
    let (accepted, status) = env
        .import_and_wait(
            "RetReg01",
            &uri_import(&src.host(), "demo/multi:v1", &["a/b:v1"]),
        )
        .await;
    assert_succeeded(&status);
    assert_eq!(env.arm.get(&accepted.location()).await.status.as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for url in [accepted.location(), accepted.async_operation()] {
        let r = env.arm.get(&url).await;
        assert_eq!(r.status.as_u16(), 404, "{r}");
        assert_eq!(r.assert_arm_error(), "OperationNotFound");
        let m = r.error_message().unwrap_or_default();
        assert!(m.contains("expired") && m.contains("2 seconds"), "{m}");
    }
}
