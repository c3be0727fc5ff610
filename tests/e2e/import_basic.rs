//! Successful imports from an anonymous source: single image, index, by digest, untagged
//! repositories, several target tags, the default target tag.

use acr_import_tests::image::{Format, Platform};
use acr_import_tests::{TestEnv, TestImage};
use serde_json::json;

use crate::common::{anonymous_source, assert_succeeded, target, uri_import, REG};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_platform_image() {
    let image = TestImage::single(101, Format::Oci, &[1500, 70_000]);
    let (env, src) = tokio::join!(
        TestEnv::start(),
        anonymous_source("demo/single", "v1", &image)
    );
    env.create_registry(REG).await;

    let status = env
        .import_ok(
            REG,
            &uri_import(&src.host(), "demo/single:v1", &["imported/single:v1"]),
        )
        .await;
    assert_succeeded(&status);
    env.backend_client()
        .assert_has_image(&target("imported/single"), Some("v1"), &image)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_platform_index() {
    let oci = TestImage::three_platform(102);
    let docker = TestImage::index(103, Format::Docker, &Platform::three(), &[900, 20_000]);
    let (env, src) = tokio::join!(TestEnv::start(), anonymous_source("demo/multi", "v1", &oci));
    src.client()
        .push_image("demo/list", "v1", &docker)
        .await
        .unwrap();
    env.create_registry(REG).await;

    let status = env
        .import_ok(
            REG,
            &uri_import(&src.host(), "demo/multi:v1", &["imported/multi:v1"]),
        )
        .await;
    assert_succeeded(&status);
    let backend = env.backend_client();
    // Index digest, every child digest and every blob identical at the target.
    backend
        .assert_has_image(&target("imported/multi"), Some("v1"), &oci)
        .await;

    // The same for a Docker v2 manifest list.
    env.import_ok(
        REG,
        &uri_import(&src.host(), "demo/list:v1", &["imported/list:v1"]),
    )
    .await;
    backend
        .assert_has_image(&target("imported/list"), Some("v1"), &docker)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_by_digest() {
    let image = TestImage::three_platform(104);
    let (env, src) = tokio::join!(
        TestEnv::start(),
        anonymous_source("demo/multi", "v1", &image)
    );
    env.create_registry(REG).await;

    let by_digest = format!("demo/multi@{}", image.digest());
    env.import_ok(
        REG,
        &uri_import(&src.host(), &by_digest, &["bydigest/multi:pinned"]),
    )
    .await;
    env.backend_client()
        .assert_has_image(&target("bydigest/multi"), Some("pinned"), &image)
        .await;

    // A child manifest by digest imports that single platform only.
    let child = &image.children[1];
    let by_child = format!("demo/multi@{}", child.digest);
    env.import_ok(
        REG,
        &uri_import(&src.host(), &by_child, &["bydigest/arm64:v1"]),
    )
    .await;
    let got = env
        .backend_client()
        .fetch_manifest(&target("bydigest/arm64"), "v1")
        .await
        .unwrap()
        .expect("arm64 child imported");
    assert_eq!(got.digest, child.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untagged_target_repositories() {
    let image = TestImage::three_platform(105);
    let (env, src) = tokio::join!(
        TestEnv::start(),
        anonymous_source("demo/multi", "v1", &image)
    );
    env.create_registry(REG).await;

    let body = json!({
        "source": {"registryUri": src.host(), "sourceImage": "demo/multi:v1"},
        "targetTags": ["imported/multi:v1"],
        "untaggedTargetRepositories": ["imported/untagged", "imported/untagged2"],
        "mode": "Force",
    });
    let status = env.import_ok(REG, &body).await;
    assert_succeeded(&status);
    let backend = env.backend_client();
    backend
        .assert_has_image(&target("imported/multi"), Some("v1"), &image)
        .await;
    for repo in ["imported/untagged", "imported/untagged2"] {
        // Present by digest (index, children, blobs) ...
        backend.assert_has_image(&target(repo), None, &image).await;
        // ... and no tag created.
        let tags = backend.tags_list(&target(repo)).await.unwrap();
        assert!(tags.is_empty(), "{repo} has tags {tags:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_target_tags() {
    let image = TestImage::single(106, Format::Docker, &[3000]);
    let (env, src) = tokio::join!(
        TestEnv::start(),
        anonymous_source("demo/app", "1.2.3", &image)
    );
    env.create_registry(REG).await;

    let tags = ["team/app:1.2.3", "team/app:latest", "other/app-copy:stable"];
    env.import_ok(REG, &uri_import(&src.host(), "demo/app:1.2.3", &tags))
        .await;
    let backend = env.backend_client();
    for t in tags {
        let (repo, tag) = t.split_once(':').unwrap();
        backend
            .assert_has_image(&target(repo), Some(tag), &image)
            .await;
    }
    assert_eq!(
        backend.tags_list(&target("team/app")).await.unwrap(),
        vec!["1.2.3", "latest"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_target_tag_is_the_source_reference() {
    let image = TestImage::single(107, Format::Oci, &[512]);
    let (env, src) = tokio::join!(
        TestEnv::start(),
        anonymous_source("library/hello", "v7", &image)
    );
    env.create_registry(REG).await;

    let body = json!({"source": {"registryUri": src.host(), "sourceImage": "library/hello:v7"}});
    env.import_ok(REG, &body).await;
    env.backend_client()
        .assert_has_image(&target("library/hello"), Some("v7"), &image)
        .await;
}
