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

/// The issue's hand list of hostile input, by kind: wrong types, huge strings, unicode in
/// names, path traversal in repositories, invalid digests, unknown fields, 10 MB bodies,
/// content types, api-versions, very deep JSON, paths and methods.
fn hostile_cases(sub: &str, rg: &str) -> Vec<Case> {
    let import_path = format!(
        "{}/importImage?api-version={API_VERSION}",
        registry_id(sub, rg, REG)
    );
    let registry_path =
        |name: &str| format!("{}?api-version={API_VERSION}", registry_id(sub, rg, name));
    // An import body with `source.sourceImage` (or another field) replaced.
    let post = |name: &'static str, body: Vec<u8>, status: u16| Case {
        name,
        method: Method::POST,
        path: import_path.clone(),
        content_type: Some("application/json"),
        body,
        status,
        code: None,
    };
    let image =
        |name: &'static str, v: Value| post(name, with(|b| b["source"]["sourceImage"] = v), 400);
    let target = |name: &'static str, v: Value| post(name, with(|b| b["targetTags"] = v), 400);
    let untagged = |name: &'static str, v: Value| {
        post(name, with(|b| b["untaggedTargetRepositories"] = v), 400)
    };
    let huge = "a".repeat(100_000);
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n)).into_bytes();
    let ten_mb = |prefix: &str| {
        let mut b = prefix.as_bytes().to_vec();
        b.resize(10 * 1024 * 1024, b'a');
        b
    };
    let hex64 = "a".repeat(64);
    let valid = serde_json::to_vec(&valid_body()).unwrap();
    let with_version = |v: &str| Case {
        name: "",
        path: format!("{}/importImage?api-version={v}", registry_id(sub, rg, REG)),
        ..post("", valid.clone(), 400)
    };
    let mut cases = vec![
        // Wrong types.
        post("body is a string", b"\"import\"".to_vec(), 400),
        post("body is a number", b"42".to_vec(), 400),
        post("body is null", b"null".to_vec(), 400),
        post("body is true", b"true".to_vec(), 400),
        post("source is null", with(|b| b["source"] = Value::Null), 400),
        post("source is a string", with(|b| b["source"] = json!("127.0.0.1:1/demo/x:v1")), 400),
        post("source is a list", with(|b| b["source"] = json!([valid_body()["source"]])), 400),
        image("sourceImage is a number", json!(7)),
        image("sourceImage is an object", json!({"name": "demo/x"})),
        image("sourceImage is a list", json!(["demo/x:v1"])),
        post("registryUri is a number", with(|b| b["source"]["registryUri"] = json!(5000)), 400),
        post("registryUri is a list", with(|b| b["source"]["registryUri"] = json!(["127.0.0.1:1"])), 400),
        post("resourceId is a number", with(|b| {
            b["source"].as_object_mut().unwrap().remove("registryUri");
            b["source"]["resourceId"] = json!(1);
        }), 400),
        post("credentials is a string", with(|b| b["source"]["credentials"] = json!("u:p")), 400),
        post("credentials.username is a number", with(|b| b["source"]["credentials"] = json!({"username": 1, "password": "p"})), 400),
        post("credentials.password is a list", with(|b| b["source"]["credentials"] = json!({"username": "u", "password": ["p"]})), 400),
        target("targetTags holds numbers", json!([1, 2])),
        target("targetTags holds objects", json!([{"tag": "v1"}])),
        target("targetTags holds null", json!([null])),
        untagged("untaggedTargetRepositories is a string", json!("imported/x")),
        untagged("untaggedTargetRepositories holds numbers", json!([1])),
        post("mode is a list", with(|b| b["mode"] = json!(["Force"])), 400),
        post("mode is lowercase", with(|b| b["mode"] = json!("force ")), 400),
        // Huge strings.
        image("100 kB sourceImage", json!(huge.clone())),
        post("100 kB registryUri", with(|b| b["source"]["registryUri"] = json!(huge.clone())), 400),
        target("100 kB target tag", json!([huge.clone()])),
        untagged("100 kB untagged repository", json!([huge.clone()])),
        post("100 kB resourceId", with(|b| {
            b["source"].as_object_mut().unwrap().remove("registryUri");
            b["source"]["resourceId"] = json!(huge.clone());
        }), 400),
        post("100 kB username", with(|b| b["source"]["credentials"] = json!({"username": huge.clone(), "password": "p"})), 400),
        post("100 kB password", with(|b| b["source"]["credentials"] = json!({"username": "u", "password": huge.clone()})), 400),
        image("tag of 129 characters", json!(format!("demo/x:{}", "t".repeat(129)))),
        image("repository of 256 characters", json!(format!("{}:v1", "r".repeat(256)))),
        target("10 000 target tags", json!((0..10_000).map(|i| format!("t/x:v{i}")).collect::<Vec<_>>())),
        // Unicode in names.
        image("CJK repository", json!("名前/x:v1")),
        image("accented repository", json!("café/x:v1")),
        image("emoji tag", json!("demo/x:🐳")),
        image("zero-width space in a repository", json!("demo\u{200b}/x:v1")),
        image("right-to-left override in a tag", json!("demo/x:v1\u{202e}")),
        image("full-width colon", json!("demo/x：v1")),
        image("NUL in a repository", json!("demo\u{0}/x:v1")),
        target("accented target repository", json!(["imágenes/x:v1"])),
        target("emoji target tag", json!(["imported/x:🦀"])),
        untagged("CJK untagged repository", json!(["名前"])),
        Case {
            name: "unicode registry name",
            path: format!(
                "{}/importImage?api-version={API_VERSION}",
                registry_id(sub, rg, "Regé0001")
            ),
            ..post("", valid.clone(), 400)
        },
        // Path traversal in repositories.
        image("leading ../", json!("../x:v1")),
        image("inner /../", json!("demo/../x:v1")),
        image("leading ./", json!("./x:v1")),
        image("leading /", json!("/demo/x:v1")),
        image("trailing /", json!("demo/:v1")),
        image("empty component", json!("demo//x:v1")),
        image("encoded ..", json!("%2e%2e/x:v1")),
        image("backslashes", json!("..\\..\\x:v1")),
        target("target ../../etc/passwd", json!(["../../etc/passwd:v1"])),
        target("target with inner ..", json!(["imported/../x:v1"])),
        untagged("untagged ..", json!([".."])),
        untagged("untagged with a tag", json!(["imported/x:v1"])),
        // Invalid digests.
        image("digest too short", json!(format!("demo/x@sha256:{}", "a".repeat(63)))),
        image("digest too long", json!(format!("demo/x@sha256:{}", "a".repeat(65)))),
        image("uppercase digest hex", json!(format!("demo/x@sha256:{}", "A".repeat(64)))),
        image("non-hex digest", json!(format!("demo/x@sha256:{}", "g".repeat(64)))),
        image("unknown digest algorithm", json!(format!("demo/x@md5:{hex64}"))),
        image("sha512 of sha256 length", json!(format!("demo/x@sha512:{hex64}"))),
        image("empty digest", json!("demo/x@")),
        image("digest without algorithm", json!(format!("demo/x@{hex64}"))),
        image("two digests", json!(format!("demo/x@sha256:{hex64}@sha256:{hex64}"))),
        image("tag after digest", json!(format!("demo/x@sha256:{hex64}:v1"))),
        // Unknown fields.
        post("unknown field in source", with(|b| b["source"]["bogus"] = json!(true)), 400),
        post("unknown field in credentials", with(|b| b["source"]["credentials"] = json!({"username": "u", "password": "p", "token": "t"})), 400),
        post("ARM properties wrapper", serde_json::to_vec(&json!({"properties": valid_body()})).unwrap(), 400),
        post("field name in the wrong case", with(|b| {
            let src = b.as_object_mut().unwrap().remove("source").unwrap();
            b["Source"] = src;
        }), 400),
        // 10 MB bodies.
        post("10 MB JSON body", ten_mb("{\"source\": {\"sourceImage\": \""), 413),
        post("10 MB of junk", ten_mb("junk"), 413),
        Case {
            name: "10 MB registry PUT",
            method: Method::PUT,
            path: registry_path("BigReg01"),
            ..post("", ten_mb("{\"location\": \""), 413)
        },
        Case {
            name: "10 MB registry PATCH",
            method: Method::PATCH,
            path: registry_path(REG),
            ..post("", ten_mb("{\"tags\": \""), 413)
        },
        // Content types.
        Case {
            name: "no content type and a broken body",
            content_type: None,
            ..post("", b"{\"source\"".to_vec(), 400)
        },
        Case {
            name: "XML content type",
            content_type: Some("application/xml"),
            ..post("", b"<source/>".to_vec(), 415)
        },
        Case {
            name: "form content type",
            content_type: Some("application/x-www-form-urlencoded"),
            ..post("", b"source=x".to_vec(), 415)
        },
        Case {
            name: "multipart content type",
            content_type: Some("multipart/form-data; boundary=x"),
            ..post("", valid.clone(), 415)
        },
        Case {
            name: "garbage content type",
            content_type: Some("a/b;;;=="),
            ..post("", valid.clone(), 415)
        },
        // Very deep JSON.
        post("100 000 nested arrays", deep(100_000), 400),
        post("1 000 nested arrays", deep(1_000), 400),
        post("deep object in a field", {
            let mut v = json!("leaf");
            for _ in 0..120 {
                v = json!({"a": v});
            }
            with(|b| b["source"]["sourceImage"] = v)
        }, 400),
        // Paths and methods.
        Case {
            name: "GET importImage",
            method: Method::GET,
            ..post("", Vec::new(), 405)
        },
        Case {
            name: "DELETE importImage",
            method: Method::DELETE,
            ..post("", Vec::new(), 405)
        },
        Case {
            name: "path below importImage",
            path: format!(
                "{}/importImage/extra?api-version={API_VERSION}",
                registry_id(sub, rg, REG)
            ),
            ..post("", valid.clone(), 404)
        },
        Case {
            name: "unknown provider",
            path: format!(
                "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Nope/registries/{REG}/importImage?api-version={API_VERSION}"
            ),
            ..post("", valid.clone(), 404)
        },
        Case {
            name: "encoded traversal in the registry name",
            path: format!(
                "{}/..%2F..%2Fx/importImage?api-version={API_VERSION}",
                registry_id(sub, rg, REG).rsplit_once('/').unwrap().0
            ),
            ..post("", valid.clone(), 400)
        },
        Case {
            name: "status of an unknown operation",
            method: Method::GET,
            path: format!(
                "/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/locations/eastus/operationStatuses/registries-00000000-0000-0000-0000-000000000000?api-version={API_VERSION}"
            ),
            ..post("", Vec::new(), 404)
        },
        Case {
            name: "status of a malformed operation id",
            method: Method::GET,
            path: format!(
                "/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/locations/eastus/operationStatuses/..%2F..?api-version={API_VERSION}"
            ),
            ..post("", Vec::new(), 404)
        },
        Case {
            name: "PUT registry with an unknown SKU",
            method: Method::PUT,
            path: registry_path("NewReg02"),
            ..post("", serde_json::to_vec(&json!({"location": "eastus", "sku": {"name": "Ultra"}})).unwrap(), 400)
        },
        Case {
            name: "PUT registry without a SKU",
            method: Method::PUT,
            path: registry_path("NewReg03"),
            ..post("", serde_json::to_vec(&json!({"location": "eastus"})).unwrap(), 400)
        },
        Case {
            name: "PUT registry with a numeric location",
            method: Method::PUT,
            path: registry_path("NewReg04"),
            ..post("", serde_json::to_vec(&json!({"location": 1, "sku": {"name": "Standard"}})).unwrap(), 400)
        },
        Case {
            name: "PATCH registry with tags of the wrong type",
            method: Method::PATCH,
            path: registry_path(REG),
            ..post("", serde_json::to_vec(&json!({"tags": ["a"]})).unwrap(), 400)
        },
        Case {
            name: "checkNameAvailability without a name",
            path: format!(
                "/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/checkNameAvailability?api-version={API_VERSION}"
            ),
            ..post("", serde_json::to_vec(&json!({"type": "Microsoft.ContainerRegistry/registries"})).unwrap(), 400)
        },
        Case {
            name: "checkNameAvailability with a numeric name",
            path: format!(
                "/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/checkNameAvailability?api-version={API_VERSION}"
            ),
            ..post("", serde_json::to_vec(&json!({"name": 5, "type": "Microsoft.ContainerRegistry/registries"})).unwrap(), 400)
        },
    ];
    // Invalid api-versions.
    let nines: &'static str = Box::leak("9".repeat(4096).into_boxed_str());
    for (name, v) in [
        ("empty api-version", ""),
        ("api-version 'latest'", "latest"),
        ("api-version with an impossible date", "2025-13-45"),
        ("two api-versions in one value", "2025-11-01,2019-05-01"),
        ("api-version of the future", "2099-01-01"),
        ("registry-only api-version on importImage", "2017-03-01"),
        ("preview suffix on a GA api-version", "2025-11-01-preview"),
        ("4 kB api-version", nines),
        ("invalid percent-encoding in the api-version", "%ff%fe"),
    ] {
        cases.push(Case {
            name,
            ..with_version(v)
        });
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_arm_errors() {
    let env = TestEnv::start().await;
    // The target exists, so body errors can't hide behind a 404.
    env.create_registry(REG).await;
    let mut cases = cases(&env.sub, &env.rg);
    cases.extend(hostile_cases(&env.sub, &env.rg));
    assert!(cases.len() >= 100, "{} cases", cases.len());

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
    // Nothing of that hurt the service.
    env.arm
        .get_registry(&env.sub, &env.rg, REG)
        .await
        .expect_status(200);
    let health = env.arm.get(&format!("{}/health", env.arm.base())).await;
    assert_eq!(health.status.as_u16(), 200, "{health}");
}
