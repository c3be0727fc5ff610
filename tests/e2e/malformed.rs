//! Malformed requests: each is a 4xx with an ARM error body and `x-ms-request-id`.

use acr_import_tests::arm::{registry_id, API_VERSION};
use acr_import_tests::TestEnv;
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::REG;

struct Case {
    name: &'static str,
    method: Method,
    /// Path and query, appended to the service's base URL.
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: Option<&'static str>,
}

fn valid_body() -> Value {
    json!({
        "source": {"registryUri": "127.0.0.1:1", "sourceImage": "demo/x:v1"},
        "targetTags": ["imported/x:v1"],
    })
}

fn with(mutate: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = valid_body();
    mutate(&mut v);
    serde_json::to_vec(&v).unwrap()
}

fn cases(sub: &str, rg: &str) -> Vec<Case> {
    let import = |name: &str| {
        format!(
            "{}/importImage?api-version={API_VERSION}",
            registry_id(sub, rg, name)
        )
    };
    let post = |name: &'static str, body: Vec<u8>, status: u16, code: Option<&'static str>| Case {
        name,
        method: Method::POST,
        path: import(REG),
        content_type: Some("application/json"),
        body,
        status,
        code,
    };
    let valid = serde_json::to_vec(&valid_body()).unwrap();
    let digest_tag = format!("a@sha256:{}", "0".repeat(64));
    vec![
        post("bad JSON", b"{\"source\": ".to_vec(), 400, None),
        post("empty body", Vec::new(), 400, None),
        post("body is not an object", b"[1,2,3]".to_vec(), 400, None),
        post(
            "missing source",
            with(|v| drop(v.as_object_mut().unwrap().remove("source"))),
            400,
            None,
        ),
        post(
            "missing sourceImage",
            with(|v| drop(v["source"].as_object_mut().unwrap().remove("sourceImage"))),
            400,
            None,
        ),
        post(
            "empty sourceImage",
            with(|v| v["source"]["sourceImage"] = json!("")),
            400,
            None,
        ),
        post(
            "bad mode",
            with(|v| v["mode"] = json!("Sometimes")),
            400,
            None,
        ),
        post(
            "mode of the wrong type",
            with(|v| v["mode"] = json!(1)),
            400,
            None,
        ),
        post(
            "targetTags not a list",
            with(|v| v["targetTags"] = json!("imported/x:v1")),
            400,
            None,
        ),
        post(
            "uppercase target tag",
            with(|v| v["targetTags"] = json!(["UPPER:x"])),
            400,
            None,
        ),
        post(
            "digest as target tag",
            with(|v| v["targetTags"] = json!([digest_tag])),
            400,
            None,
        ),
        post(
            "credentials without password",
            with(|v| v["source"]["credentials"] = json!({"username": "u"})),
            400,
            None,
        ),
        post(
            "both resourceId and registryUri",
            with(|v| v["source"]["resourceId"] = json!(registry_id(sub, rg, "OtherReg1"))),
            400,
            None,
        ),
        post(
            "unknown body field",
            with(|v| v["bogus"] = json!(1)),
            400,
            None,
        ),
        Case {
            name: "wrong api-version",
            path: format!(
                "{}/importImage?api-version=1999-01-01",
                registry_id(sub, rg, REG)
            ),
            ..post("", valid.clone(), 400, None)
        },
        Case {
            name: "missing api-version",
            path: format!("{}/importImage", registry_id(sub, rg, REG)),
            ..post("", valid.clone(), 400, None)
        },
        Case {
            name: "registry name too short",
            path: import("abcd"),
            ..post("", valid.clone(), 400, None)
        },
        Case {
            name: "registry name with a dash",
            path: import("my-reg1"),
            ..post("", valid.clone(), 400, None)
        },
        Case {
            name: "registry name too long",
            path: import(&"a".repeat(51)),
            ..post("", valid.clone(), 400, None)
        },
        Case {
            name: "subscription is not a UUID",
            path: format!(
                "{}/importImage?api-version={API_VERSION}",
                registry_id("not-a-uuid", rg, REG)
            ),
            ..post("", valid.clone(), 400, None)
        },
        Case {
            name: "unknown target registry",
            path: import("NoSuchReg1"),
            ..post("", valid.clone(), 404, Some("ResourceNotFound"))
        },
        Case {
            name: "wrong content type",
            content_type: Some("text/plain"),
            ..post("", valid.clone(), 415, None)
        },
        Case {
            name: "PUT registry without location",
            method: Method::PUT,
            path: format!(
                "{}?api-version={API_VERSION}",
                registry_id(sub, rg, "NewReg01")
            ),
            content_type: Some("application/json"),
            body: serde_json::to_vec(&json!({"sku": {"name": "Standard"}})).unwrap(),
            status: 400,
            code: None,
        },
        Case {
            name: "PUT registry with an invalid name",
            method: Method::PUT,
            path: format!(
                "{}?api-version={API_VERSION}",
                registry_id(sub, rg, "bad_name!")
            ),
            content_type: Some("application/json"),
            body: serde_json::to_vec(&json!({"location": "eastus", "sku": {"name": "Standard"}}))
                .unwrap(),
            status: 400,
            code: None,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_arm_errors() {
    let env = TestEnv::start().await;
    // The target exists, so body errors can't hide behind a 404.
    env.create_registry(REG).await;
    let cases = cases(&env.sub, &env.rg);
    assert!(cases.len() >= 15);

    let mut failures = Vec::new();
    for case in &cases {
        let url = format!("{}{}", env.arm.base(), case.path);
        let resp = env
            .arm
            .send(
                case.method.clone(),
                &url,
                &[],
                case.content_type,
                Some(case.body.clone()),
            )
            .await;
        let outcome = std::panic::catch_unwind(|| {
            assert_eq!(resp.status.as_u16(), case.status, "status");
            let code = resp.assert_arm_error();
            if let Some(want) = case.code {
                assert_eq!(code, want, "error.code");
            }
        });
        if outcome.is_err() {
            failures.push(format!("{}: {resp}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} malformed-request cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
