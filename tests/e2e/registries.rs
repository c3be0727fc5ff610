//! The Registry resource: PUT / GET / DELETE and the two lists.

use acr_import_tests::arm::registry_id;
use acr_import_tests::TestEnv;
use serde_json::Value;

fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list["value"]
        .as_array()
        .unwrap_or_else(|| panic!("no value array: {list}"))
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_crud_and_lists() {
    let env = TestEnv::start().await;
    let arm = &env.arm;
    let (sub, rg) = (env.sub.as_str(), env.rg.as_str());

    // Create → 201 with the Registry JSON.
    let created = arm.put_registry(sub, rg, "MyRegistry1").await;
    assert_eq!(created.status.as_u16(), 201, "{created}");
    assert!(created.header("x-ms-request-id").is_some(), "{created}");
    let r = created.json();
    assert!(
        r["id"]
            .as_str()
            .is_some_and(|id| id.eq_ignore_ascii_case(&registry_id(sub, rg, "MyRegistry1"))),
        "{r}"
    );
    assert_eq!(r["name"], "MyRegistry1", "{r}");
    assert_eq!(r["type"], "Microsoft.ContainerRegistry/registries", "{r}");
    assert_eq!(r["location"], "eastus", "{r}");
    assert_eq!(r["sku"]["name"], "Standard", "{r}");
    assert_eq!(
        r["properties"]["loginServer"], "myregistry1.azurecr.io",
        "{r}"
    );
    assert_eq!(r["properties"]["provisioningState"], "Succeeded", "{r}");
    let created_at = r["properties"]["creationDate"]
        .as_str()
        .expect("creationDate");
    chrono::DateTime::parse_from_rfc3339(created_at).expect("creationDate is RFC 3339");

    // PUT again → 200 (update), same resource.
    let updated = arm.put_registry(sub, rg, "MyRegistry1").await;
    assert_eq!(updated.status.as_u16(), 200, "{updated}");
    assert_eq!(updated.json()["id"], r["id"]);

    // GET → 200.
    let got = arm.get_registry(sub, rg, "MyRegistry1").await;
    assert_eq!(got.status.as_u16(), 200, "{got}");
    assert!(got.header("x-ms-request-id").is_some(), "{got}");
    let g = got.json();
    assert_eq!(g["id"], r["id"]);
    assert_eq!(g["properties"]["loginServer"], "myregistry1.azurecr.io");

    // Another resource group in the same subscription, and another subscription.
    arm.create_registry(sub, "other-rg", "SecondReg2").await;
    let other_sub = uuid::Uuid::new_v4().to_string();
    arm.create_registry(&other_sub, rg, "ThirdReg03").await;

    let in_rg = arm.list_registries_in_group(sub, rg).await;
    assert_eq!(in_rg.status.as_u16(), 200, "{in_rg}");
    assert_eq!(names(&in_rg.json()), vec!["MyRegistry1"]);
    let in_sub = arm.list_registries_in_subscription(sub).await;
    assert_eq!(in_sub.status.as_u16(), 200, "{in_sub}");
    assert_eq!(names(&in_sub.json()), vec!["MyRegistry1", "SecondReg2"]);
    assert_eq!(
        names(&arm.list_registries_in_subscription(&other_sub).await.json()),
        vec!["ThirdReg03"]
    );
    // An empty group lists nothing (200, not 404).
    let empty = arm.list_registries_in_group(sub, "empty-rg").await;
    assert_eq!(empty.status.as_u16(), 200, "{empty}");
    assert!(names(&empty.json()).is_empty());

    // DELETE → 202 (a long-running deletion) that ends Succeeded; then GET → 404
    // ResourceNotFound; DELETE again → 204.
    let deleted = arm.delete_registry(sub, rg, "MyRegistry1").await;
    assert_eq!(deleted.status.as_u16(), 202, "{deleted}");
    assert!(deleted.header("x-ms-request-id").is_some(), "{deleted}");
    let done = arm
        .poll_until_done(
            &deleted.async_operation(),
            std::time::Duration::from_secs(30),
        )
        .await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    let result = arm.get(&deleted.location()).await;
    assert_eq!(result.status.as_u16(), 200, "{result}");
    let gone = arm.get_registry(sub, rg, "MyRegistry1").await;
    assert_eq!(gone.status.as_u16(), 404, "{gone}");
    assert_eq!(gone.assert_arm_error(), "ResourceNotFound");
    let again = arm.delete_registry(sub, rg, "MyRegistry1").await;
    assert_eq!(again.status.as_u16(), 204, "{again}");
    assert!(again.header("x-ms-request-id").is_some(), "{again}");
    assert!(names(&arm.list_registries_in_group(sub, rg).await.json()).is_empty());
    assert_eq!(
        names(&arm.list_registries_in_subscription(sub).await.json()),
        vec!["SecondReg2"]
    );

    // Re-creating after a delete is a create again.
    let recreated = arm.put_registry(sub, rg, "MyRegistry1").await;
    assert_eq!(recreated.status.as_u16(), 201, "{recreated}");
}
