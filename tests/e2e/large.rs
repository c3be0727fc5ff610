//! A 256 MiB single layer: the copy streams (peak RSS stays under 100 MiB) and the layer
//! arrives intact.

use std::time::Duration;

use acr_import_tests::image::Format;
use acr_import_tests::{TestEnv, TestImage};

use crate::common::{anonymous_source, assert_succeeded, target, uri_import, REG};

const LAYER: u64 = 256 << 20;
const RSS_LIMIT: u64 = 100 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_layer_import_streams() {
    let image = TestImage::single(801, Format::Oci, &[LAYER]);
    let (env, src) = tokio::join!(
        TestEnv::start(),
        anonymous_source("demo/large", "v1", &image)
    );
    env.create_registry(REG).await;

    let accepted = env
        .start_import(
            REG,
            &uri_import(&src.host(), "demo/large:v1", &["imported/large:v1"]),
        )
        .await;
    let status = env
        .arm
        .poll_until_done(&accepted.async_operation(), Duration::from_secs(240))
        .await;
    assert_succeeded(&status);
    let peak = env.service.peak_rss_bytes();
    eprintln!(
        "256 MiB import: peak RSS {} MiB, status {status}",
        peak >> 20
    );
    assert!(
        peak < RSS_LIMIT,
        "peak RSS {} MiB >= {} MiB",
        peak >> 20,
        RSS_LIMIT >> 20
    );

    let backend = env.backend_client();
    backend
        .assert_has_image(&target("imported/large"), Some("v1"), &image)
        .await;
    let layer = &image.blobs[1];
    assert_eq!(layer.size, LAYER);
    let (digest, len) = backend
        .blob_digest(&target("imported/large"), &layer.digest)
        .await
        .unwrap();
    assert_eq!((digest.as_str(), len), (layer.digest.as_str(), LAYER));
}
