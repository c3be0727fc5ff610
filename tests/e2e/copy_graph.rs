//! What gets copied: Helm charts, OCI artifacts, foreign layers, nested indexes, Docker
//! manifest lists. Everything must arrive byte-identical (same digests, same media types).

use acr_import_tests::fault_proxy::{FaultProxy, Kind};
use acr_import_tests::image::{Format, Platform, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use acr_import_tests::{TestEnv, TestImage, TestRegistry};

use crate::common::{
    anonymous_source, assert_blob_bytes, assert_succeeded, prop, target, uri_import, REG,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_chart_arrives_byte_identical() {
    let chart = TestImage::helm_chart(1101, "mychart", "0.1.0");
    let (env, src) = tokio::join!(
        TestEnv::start(),
        anonymous_source("charts/mychart", "0.1.0", &chart)
    );
    env.create_registry(REG).await;

    let status = env
        .import_ok(
            REG,
            &uri_import(&src.host(), "charts/mychart:0.1.0", &["helm/mychart:0.1.0"]),
        )
        .await;
    assert_succeeded(&status);
    let backend = env.backend_client();
    let repo = target("helm/mychart");
    // Manifest digest, bytes and media type identical; config and chart layer byte for byte.
    backend.assert_has_image(&repo, Some("0.1.0"), &chart).await;
    assert_blob_bytes(&backend, &repo, &chart).await;
    let m = backend
        .fetch_manifest(&repo, "0.1.0")
        .await
        .unwrap()
        .unwrap();
    let v = m.json();
    assert_eq!(
        v["config"]["mediaType"],
        "application/vnd.cncf.helm.config.v1+json"
    );
    assert_eq!(
        v["layers"][0]["mediaType"],
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_and_foreign_layer_image() {
    const FOREIGN_URL: &str = "http://127.0.0.1:9/foreign.tar.gz";
    let artifact = TestImage::artifact(
        1102,
        "application/vnd.acr-import-tests.sbom.v1+json",
        "application/spdx+json",
    );
    let (windows, foreign) = TestImage::docker_with_foreign_layer(1103, FOREIGN_URL, 60_000);
    // docker-registry refuses manifests with foreign URLs unless allowed (ACR accepts them):
    // allow them at the source and at the backend.
    let (backend, src) = tokio::join!(
        TestRegistry::anonymous_allowing_foreign_layers(),
        TestRegistry::anonymous_allowing_foreign_layers()
    );
    let env = TestEnv::start_with_backend(backend, |c| c).await;
    let client = src.client();
    client
        .push_image("demo/sbom", "v1", &artifact)
        .await
        .unwrap();
    client
        .push_image("demo/windows", "ltsc2019", &windows)
        .await
        .expect("the source accepts a foreign layer it does not hold");
    let proxy = FaultProxy::start(&src.url()).await;
    env.create_registry(REG).await;
    let backend = env.backend_client();

    // The artifact: artifactType, empty config and SPDX layer unchanged.
    env.import_ok(
        REG,
        &uri_import(&proxy.host(), "demo/sbom:v1", &["artifacts/sbom:v1"]),
    )
    .await;
    let repo = target("artifacts/sbom");
    backend.assert_has_image(&repo, Some("v1"), &artifact).await;
    assert_blob_bytes(&backend, &repo, &artifact).await;
    let m = backend.fetch_manifest(&repo, "v1").await.unwrap().unwrap();
    assert_eq!(
        m.json()["artifactType"],
        "application/vnd.acr-import-tests.sbom.v1+json"
    );
    assert_eq!(m.media_type, OCI_MANIFEST, "artifact media type");

    // The Docker image with a foreign layer: manifest identical, foreign blob not copied
    // (and never asked for at the source).
    let status = env
        .import_ok(
            REG,
            &uri_import(
                &proxy.host(),
                "demo/windows:ltsc2019",
                &["win/app:ltsc2019"],
            ),
        )
        .await;
    assert_succeeded(&status);
    let repo = target("win/app");
    backend
        .assert_has_image(&repo, Some("ltsc2019"), &windows)
        .await;
    assert_blob_bytes(&backend, &repo, &windows).await;
    assert!(
        !backend.blob_exists(&repo, &foreign.digest).await.unwrap(),
        "the foreign layer {} was copied",
        foreign.digest
    );
    let asked: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|e| e.path.contains(&foreign.digest))
        .collect();
    assert!(
        asked.is_empty(),
        "the service asked the source for the foreign layer: {asked:?}"
    );
    let got = backend
        .fetch_manifest(&repo, "ltsc2019")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.media_type, DOCKER_MANIFEST);
    assert_eq!(
        got.json()["layers"][0]["urls"][0],
        FOREIGN_URL,
        "foreign layer URLs kept"
    );
    // Every blob GET at the source was for a blob of one of the two images.
    for e in proxy.log_of(Kind::BlobGet) {
        assert!(
            artifact
                .blob_digests()
                .iter()
                .chain(windows.blob_digests().iter())
                .any(|d| e.path.contains(d.as_str())),
            "unexpected blob GET {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_index_keeps_every_digest() {
    let image = TestImage::nested_index(1104, &[1000, 30_000]);
    assert_eq!(image.children.len(), 3);
    let (env, src) = tokio::join!(
        TestEnv::start(),
        anonymous_source("demo/nested", "v1", &image)
    );
    env.create_registry(REG).await;

    let status = env
        .import_ok(
            REG,
            &uri_import(&src.host(), "demo/nested:v1", &["imported/nested:v1"]),
        )
        .await;
    assert_succeeded(&status);
    let backend = env.backend_client();
    let repo = target("imported/nested");
    // Outer index, inner index, both platform manifests and every blob, identical.
    backend.assert_has_image(&repo, Some("v1"), &image).await;
    let outer = backend.fetch_manifest(&repo, "v1").await.unwrap().unwrap();
    assert_eq!(outer.media_type, OCI_INDEX);
    assert_eq!(outer.json()["manifests"][0]["mediaType"], OCI_INDEX);
    assert_eq!(prop(&status, "manifestsTotal"), 4, "{status}");
    assert_eq!(prop(&status, "manifestsDone"), 4, "{status}");
    assert_eq!(prop(&status, "blobsTotal"), image.blobs.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_manifest_list_with_v2s2_children() {
    let image = TestImage::index(1105, Format::Docker, &Platform::three(), &[900, 25_000]);
    let (env, src) = tokio::join!(
        TestEnv::start(),
        anonymous_source("demo/list", "v2", &image)
    );
    env.create_registry(REG).await;

    let status = env
        .import_ok(
            REG,
            &uri_import(&src.host(), "demo/list:v2", &["imported/list:v2"]),
        )
        .await;
    assert_succeeded(&status);
    let backend = env.backend_client();
    let repo = target("imported/list");
    // assert_has_image also checks each media type: a manifest list and three v2s2 children.
    backend.assert_has_image(&repo, Some("v2"), &image).await;
    for child in &image.children {
        assert_eq!(child.media_type, DOCKER_MANIFEST);
    }
    assert_blob_bytes(&backend, &repo, &image).await;
    // Progress of a copy into an empty repository: everything copied, nothing skipped.
    let total = image.total_blob_bytes();
    assert_eq!(prop(&status, "manifestsTotal"), 4, "{status}");
    assert_eq!(
        prop(&status, "blobsTotal"),
        image.blobs.len() as u64,
        "{status}"
    );
    assert_eq!(
        prop(&status, "blobsDone"),
        image.blobs.len() as u64,
        "{status}"
    );
    assert_eq!(prop(&status, "bytesTotal"), total, "{status}");
    assert_eq!(prop(&status, "bytesCopied"), total, "{status}");
    assert_eq!(prop(&status, "bytesSkipped"), 0, "{status}");
    assert_eq!(status["percentComplete"].as_f64(), Some(100.0), "{status}");
}
