//! Helpers shared by the feature modules.

use acr_import_tests::{ArmResponse, FaultProxy, OciClient, TestEnv, TestImage, TestRegistry};
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

/// An anonymous source registry holding `image` as `repo:tag`, and a fault proxy in front of
/// it (import from `proxy.host()`).
pub async fn proxied_source(
    repo: &str,
    tag: &str,
    image: &TestImage,
) -> (TestRegistry, FaultProxy) {
    let src = anonymous_source(repo, tag, image).await;
    let proxy = FaultProxy::start(&src.url()).await;
    (src, proxy)
}

/// `properties` of an operation status, as an object (panics if absent).
pub fn progress(status: &Value) -> &Value {
    let p = &status["properties"];
    assert!(p.is_object(), "no properties in the status: {status}");
    p
}

/// `properties.<field>` as a number (panics if absent).
pub fn prop(status: &Value, field: &str) -> u64 {
    progress(status)[field]
        .as_u64()
        .unwrap_or_else(|| panic!("properties.{field} missing or not a number: {status}"))
}

/// Asserts every blob of `image` at `repo` streams back with exactly its digest and size.
pub async fn assert_blob_bytes(client: &OciClient, repo: &str, image: &TestImage) {
    for blob in &image.blobs {
        let (digest, len) = client
            .blob_digest(repo, &blob.digest)
            .await
            .unwrap_or_else(|e| panic!("GET {repo}@{}: {e:#}", blob.digest));
        assert_eq!(
            (digest.as_str(), len),
            (blob.digest.as_str(), blob.size),
            "bytes of {repo}@{}",
            blob.digest
        );
    }
}

/// Asserts the Location URL of a finished operation answers `status` (with an ARM error
/// `code` when given).
pub async fn assert_location(
    env: &TestEnv,
    accepted: &ArmResponse,
    status: u16,
    code: Option<&str>,
) {
    let loc = env.arm.get(&accepted.location()).await;
    assert_eq!(loc.status.as_u16(), status, "Location URL: {loc}");
    if let Some(code) = code {
        assert_eq!(loc.assert_arm_error(), code, "Location URL: {loc}");
    }
}

/// Asserts `repo` at the target has no tags and none of `image`.
pub async fn assert_nothing_copied(env: &TestEnv, repo: &str, image: &TestImage) {
    let backend = env.backend_client();
    let tags = backend.tags_list(repo).await.expect("tags/list");
    assert!(tags.is_empty(), "{repo} has tags {tags:?}");
    backend.assert_has_none_of(repo, image).await;
}
