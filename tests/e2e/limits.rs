//! Images the service refuses before copying anything: too many manifests, schema 1,
//! oversized manifests, layers over `--max-layer-bytes`.

use acr_import_tests::fault_proxy::{Action, Kind, Rule};
use acr_import_tests::image::{Format, OCI_MANIFEST};
use acr_import_tests::{TestEnv, TestImage};
use bytes::Bytes;
use serde_json::json;

use crate::common::{
    assert_failed, assert_location, assert_nothing_copied, assert_succeeded, proxied_source,
    target, uri_import, REG,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_with_too_many_manifests_is_refused_before_any_copy() {
    // 51 children + the index = 52 manifests, over the default limit of 50.
    let wide = TestImage::wide_index(1201, 51);
    // 49 children + the index = 50: exactly at the limit.
    let fits = TestImage::wide_index(1202, 49);
    let (env, (src, proxy)) =
        tokio::join!(TestEnv::start(), proxied_source("demo/wide", "v1", &wide));
    src.client()
        .push_image("demo/fits", "v1", &fits)
        .await
        .unwrap();
    env.create_registry(REG).await;

    let (accepted, status) = env
        .import_and_wait(
            REG,
            &uri_import(&proxy.host(), "demo/wide:v1", &["imported/wide:v1"]),
        )
        .await;
    let message = assert_failed(&status, "InvalidParameters");
    assert!(
        message.contains("52 manifests") && message.contains("at most 50"),
        "message should name the count (52) and the limit (50): {message}"
    );
    assert_location(&env, &accepted, 400, Some("InvalidParameters")).await;
    assert_nothing_copied(&env, &target("imported/wide"), &wide).await;
    assert_eq!(
        proxy.count(Kind::BlobGet),
        0,
        "blobs were read from the source before the refusal:\n{}",
        proxy.log_text()
    );

    // 50 manifests in all is allowed.
    let status = env
        .import_ok(
            REG,
            &uri_import(&proxy.host(), "demo/fits:v1", &["imported/fits:v1"]),
        )
        .await;
    assert_succeeded(&status);
    env.backend_client()
        .assert_has_image(&target("imported/fits"), Some("v1"), &fits)
        .await;
}

fn schema1_manifest(name: &str) -> Bytes {
    let v = json!({
        "schemaVersion": 1,
        "name": name,
        "tag": "v1",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"}],
        "history": [{"v1Compatibility": "{\"id\":\"e45a5af57b00862e5ef5782a9925979a02ba2b12dff832fd0991335f4a11e5c5\",\"created\":\"2014-12-31T22:57:59.178729048Z\"}"}],
        "signatures": [{
            "header": {"jwk": {"crv": "P-256", "kid": "ABCD:EFGH:IJKL:MNOP:QRST:UVWX:YZ23:4567:ABCD:EFGH:IJKL:MNOP", "kty": "EC", "x": "eDx0", "y": "eDx1"}, "alg": "ES256"},
            "signature": "c2lnbmF0dXJl",
            "protected": "eyJmb3JtYXRMZW5ndGgiOjEsImZvcm1hdFRhaWwiOiJDbjAifQ"
        }],
    });
    Bytes::from(serde_json::to_vec_pretty(&v).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema1_and_oversized_manifests_are_refused() {
    let image = TestImage::single(1203, Format::Oci, &[1000]);
    let (env, (_src, proxy)) =
        tokio::join!(TestEnv::start(), proxied_source("demo/real", "v1", &image));
    env.create_registry(REG).await;

    // Schema 1, signed and unsigned media types.
    for (repo, content_type) in [
        (
            "demo/old",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
        (
            "demo/older",
            "application/vnd.docker.distribution.manifest.v1+json",
        ),
    ] {
        proxy.add_rule(
            Rule::new(Action::ServeManifest {
                content_type: content_type.to_string(),
                body: schema1_manifest(repo),
            })
            .path(&format!("/v2/{repo}/manifests/")),
        );
        let (accepted, status) = env
            .import_and_wait(
                REG,
                &uri_import(&proxy.host(), &format!("{repo}:v1"), &["imported/old:v1"]),
            )
            .await;
        let message = assert_failed(&status, "InvalidParameters");
        assert!(
            message.to_ascii_lowercase().contains("schema 1"),
            "{content_type}: message should say schema 1: {message}"
        );
        assert_location(&env, &accepted, 400, Some("InvalidParameters")).await;
    }
    assert!(env
        .backend_client()
        .tags_list(&target("imported/old"))
        .await
        .unwrap()
        .is_empty());

    // A 5 MiB (valid JSON) OCI manifest.
    let mut huge = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": image.blobs[0].descriptor_json(),
        "layers": [image.blobs[1].descriptor_json()],
        "annotations": {"padding": "x".repeat(5 << 20)},
    });
    huge["annotations"]["note"] = json!("a manifest larger than 4 MiB");
    let huge = Bytes::from(serde_json::to_vec(&huge).unwrap());
    assert!(huge.len() > 5 << 20);
    proxy.add_rule(
        Rule::new(Action::ServeManifest {
            content_type: OCI_MANIFEST.to_string(),
            body: huge,
        })
        .path("/v2/demo/huge/manifests/"),
    );
    let (accepted, status) = env
        .import_and_wait(
            REG,
            &uri_import(&proxy.host(), "demo/huge:v1", &["imported/huge:v1"]),
        )
        .await;
    let message = assert_failed(&status, "InvalidParameters");
    assert!(
        message.contains("larger than the 4194304 byte limit"),
        "{message}"
    );
    assert_location(&env, &accepted, 400, Some("InvalidParameters")).await;
    assert_nothing_copied(&env, &target("imported/huge"), &image).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_over_max_layer_bytes_is_refused_for_registry_uri_sources_only() {
    const LIMIT: u64 = 1 << 20;
    let image = TestImage::single(1204, Format::Oci, &[3000, LIMIT + LIMIT / 2]);
    let (env, (_src, proxy)) = tokio::join!(
        TestEnv::start_with(|c| c.flag("--max-layer-bytes", LIMIT)),
        proxied_source("demo/fat", "v1", &image)
    );
    env.create_registry(REG).await;

    let (accepted, status) = env
        .import_and_wait(
            REG,
            &uri_import(&proxy.host(), "demo/fat:v1", &["imported/fat:v1"]),
        )
        .await;
    let message = assert_failed(&status, "InvalidParameters");
    assert!(
        message.contains(&format!("at most {LIMIT} bytes")),
        "message should name the limit: {message}"
    );
    assert_location(&env, &accepted, 400, Some("InvalidParameters")).await;
    assert_nothing_copied(&env, &target("imported/fat"), &image).await;
    assert_eq!(
        proxy.count(Kind::BlobGet),
        0,
        "blobs were read before the refusal:\n{}",
        proxy.log_text()
    );

    // The same image in an emulated registry, imported by resourceId: not limited.
    env.create_registry("RegAlpha1").await;
    env.backend_client()
        .push_image("regalpha1/app", "v1", &image)
        .await
        .unwrap();
    let body = json!({
        "source": {"resourceId": env.registry_id("RegAlpha1"), "sourceImage": "app:v1"},
        "targetTags": ["copied/fat:v1"],
    });
    let status = env.import_ok(REG, &body).await;
    assert_succeeded(&status);
    env.backend_client()
        .assert_has_image(&target("copied/fat"), Some("v1"), &image)
        .await;
}
