//! Helpers shared by the feature modules.

use acr_import_tests::{TestImage, TestRegistry};
use serde_json::{json, Value};

/// The emulated registry most tests import into; it lives in the backend as `myreg/…`.
pub const REG: &str = "MyReg";

/// Backend repository of `repo` in [`REG`].
pub fn target(repo: &str) -> String {
    format!("{}/{repo}", REG.to_ascii_lowercase())
}

/// An import body with a `registryUri` source.
pub fn uri_import(host: &str, source_image: &str, target_tags: &[&str]) -> Value {
    json!({
        "source": {"registryUri": host, "sourceImage": source_image},
        "targetTags": target_tags,
    })
}

/// An anonymous source registry holding `image` as `repo:tag`.
pub async fn anonymous_source(repo: &str, tag: &str, image: &TestImage) -> TestRegistry {
    let src = TestRegistry::anonymous().await;
    src.client()
        .push_image(repo, tag, image)
        .await
        .expect("push source image");
    src
}

/// Asserts a final operation status is `Failed` with `code`; returns the message.
pub fn assert_failed(status: &Value, code: &str) -> String {
    assert_eq!(status["status"], "Failed", "expected Failed: {status}");
    assert_eq!(status["error"]["code"], code, "error code: {status}");
    let message = status["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "error.message empty: {status}");
    message.to_string()
}

/// Asserts a final operation status is `Succeeded` with the usual fields.
pub fn assert_succeeded(status: &Value) {
    assert_eq!(
        status["status"], "Succeeded",
        "expected Succeeded: {status}"
    );
    assert!(status["id"].is_string(), "no id: {status}");
    assert!(
        status["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("registries-")),
        "name: {status}"
    );
    assert!(status["startTime"].is_string(), "no startTime: {status}");
    assert!(status["endTime"].is_string(), "no endTime: {status}");
    assert!(
        status.get("error").is_none_or(Value::is_null),
        "error on success: {status}"
    );
    if let Some(p) = status.get("properties").filter(|p| p.is_object()) {
        assert_eq!(
            p["manifestsDone"], p["manifestsTotal"],
            "manifests: {status}"
        );
        assert_eq!(p["blobsDone"], p["blobsTotal"], "blobs: {status}");
    }
}
