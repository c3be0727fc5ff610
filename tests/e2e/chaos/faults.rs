//! Registries that misbehave, through the fault proxy: the source (5xx bursts, a manifest
//! whose bytes are not the ones its index names) and the target (a manifest rejected, a full
//! disk). Each ends in a completed import or a `Failed` operation naming the fault, never a
//! hang, never a tag on corrupt content. (Cuts, stalls, 429 storms, corrupt blobs and
//! redirects have tests of their own in `resilience` and `transfer`.)

use acr_import_tests::image::{Format, Platform};
use acr_import_tests::{Action, Kind, Rule, TestImage};
use bytes::Bytes;
use serde_json::json;

use super::report;
use crate::common::{
    assert_failed, assert_imported, assert_nothing_copied, env_behind_backend_proxy, target,
    uri_import, ProxiedImport, REG,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_source_5xx_burst_is_retried() {
    let s = ProxiedImport::start(
        "burst",
        TestImage::index(
            2101,
            Format::Oci,
            &[Platform::amd64(), Platform::arm64()],
            &[3000, 150_000],
        ),
    )
    .await;
    // The first three blob GETs and the first manifest GET fail with a 503.
    s.proxy.add_rule(
        Rule::new(Action::status(503, "UNAVAILABLE", "try later"))
            .kind(Kind::BlobGet)
            .first(3),
    );
    s.proxy.add_rule(
        Rule::new(Action::status(502, "UNAVAILABLE", "bad gateway"))
            .kind(Kind::ManifestGet)
            .first(1),
    );
    let status = s.import_ok().await;
    report("source-5xx-burst", &[Some(status)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_child_manifest_lying_about_its_bytes_fails_without_a_tag() {
    let image = TestImage::index(
        2102,
        Format::Oci,
        &[Platform::amd64(), Platform::arm64()],
        &[2000, 40_000],
    );
    let child = image.children[1].clone();
    let mut doc: serde_json::Value = serde_json::from_slice(&child.bytes).expect("child JSON");
    doc["annotations"] = json!({"org.example.tampered": "yes"});
    let lie = Bytes::from(serde_json::to_vec(&doc).expect("serialize"));
    assert_ne!(lie.len(), child.bytes.len());
    let s = ProxiedImport::start("liar", image).await;
    // The index names the child by digest and size; the source serves other bytes for it.
    s.proxy.add_rule(
        Rule::new(Action::ServeManifest {
            content_type: child.media_type.clone(),
            body: lie,
        })
        .path(&child.digest),
    );
    let status = s.import().await;
    let message = assert_failed(&status, "SourceRegistryError");
    eprintln!("chaos: lying manifest: {message}");
    assert!(
        message.contains(&child.digest) || message.contains("digest"),
        "the message does not say which manifest is wrong: {message}"
    );
    s.assert_untagged().await;
    let backend = s.env.backend_client();
    assert!(
        !backend
            .manifest_exists(&s.target(), s.image.digest())
            .await
            .expect("HEAD manifest"),
        "the index was pushed"
    );
    report("source-manifest-lies", &[Some(status)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_target_rejecting_the_manifest_fails_as_a_target_error() {
    let image = TestImage::single(2103, Format::Oci, &[1000, 30_000]);
    let (env, proxy, src) = env_behind_backend_proxy(REG, "demo/rej", &image).await;
    proxy.add_rule(
        Rule::new(Action::status(
            400,
            "MANIFEST_INVALID",
            "manifest invalid: the registry refuses it",
        ))
        .kind(Kind::ManifestPut),
    );
    let body = uri_import(&src.host(), "demo/rej:v1", &["imported/rej:v1"]);
    let (_, status) = env.import_and_wait(REG, &body).await;
    let message = assert_failed(&status, "TargetRegistryError");
    eprintln!("chaos: manifest rejected: {message}");
    assert!(
        message.contains("MANIFEST_INVALID") || message.contains("manifest invalid"),
        "the target's error is not named: {message}"
    );
    let repo = target("imported/rej");
    let tags = env.backend_client().tags_list(&repo).await.expect("tags");
    assert!(tags.is_empty(), "{repo} has tags {tags:?}");
    report("target-rejects-manifest", &[Some(status)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_target_disk_full_fails_then_a_rerun_completes() {
    let image = TestImage::single(2104, Format::Oci, &[1000, 60_000]);
    let (env, proxy, src) = env_behind_backend_proxy(REG, "demo/full", &image).await;
    let full = proxy.add_rule(
        Rule::new(Action::status(
            500,
            "UNKNOWN",
            "unknown error: write /var/lib/registry/docker/registry/v2/repositories/_uploads/data: no space left on device",
        ))
        .kind(Kind::UploadPut)
        .kind(Kind::UploadPatch),
    );
    let body = uri_import(&src.host(), "demo/full:v1", &["imported/full:v1"]);
    let (_, failed) = env.import_and_wait(REG, &body).await;
    let message = assert_failed(&failed, "TargetRegistryError");
    eprintln!("chaos: disk full: {message}");
    assert!(
        message.contains("no space left on device") || message.contains("500"),
        "the target's error is not named: {message}"
    );
    let repo = target("imported/full");
    assert_nothing_copied(&env, &repo, &image).await;

    // Space freed: a re-run (Force, as a pipeline would retry) completes.
    proxy.remove_rule(full);
    let mut body = body;
    body["mode"] = json!("Force");
    let (_, status) = env.import_and_wait(REG, &body).await;
    assert_eq!(status["status"], "Succeeded", "re-run: {status}");
    assert_imported(&env, &repo, "v1", &image).await;
    report("target-disk-full", &[Some(failed), Some(status)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_source_slow_drip_completes() {
    let s = ProxiedImport::start(
        "drip",
        TestImage::single(2105, Format::Oci, &[2000, 300_000]),
    )
    .await;
    // Every blob body trickles at 128 KiB/s: slow, but never silent for a stall timeout.
    s.proxy
        .add_rule(Rule::new(Action::Throttle(128 << 10)).kind(Kind::BlobGet));
    let status = s.import_ok().await;
    report("source-slow-drip", &[Some(status)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_endless_redirect_loop_fails_precisely() {
    let s = ProxiedImport::start(
        "loop",
        TestImage::single(2106, Format::Oci, &[2000, 30_000]),
    )
    .await;
    let layer = s.image.blobs.last().expect("a layer").digest.clone();
    // The layer's GET redirects to the same URL on the proxy, which redirects again, forever.
    s.proxy.add_rule(
        Rule::new(Action::Redirect {
            to: Some(format!("{}/v2/demo/loop/blobs", s.proxy.url())),
        })
        .path(&layer),
    );
    let started = std::time::Instant::now();
    let status = s.import_for(std::time::Duration::from_secs(45)).await;
    let message = assert_failed(&status, "SourceRegistryError");
    eprintln!(
        "chaos: redirect loop after {:?}: {message}",
        started.elapsed()
    );
    assert!(
        message.to_ascii_lowercase().contains("redirect"),
        "the message does not say redirects looped: {message}"
    );
    s.assert_untagged().await;
    report("source-redirect-loop", &[Some(status)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_target_unavailable_fails_clearly_then_recovers() {
    let image = TestImage::single(2107, Format::Oci, &[1000, 50_000]);
    let (env, proxy, src) = env_behind_backend_proxy(REG, "demo/down", &image).await;
    // The target answers nothing but 503 (down behind its load balancer).
    let down = proxy.add_rule(Rule::new(Action::status(
        503,
        "UNAVAILABLE",
        "service unavailable",
    )));
    let body = uri_import(&src.host(), "demo/down:v1", &["imported/down:v1"]);
    let (_, failed) = env.import_and_wait(REG, &body).await;
    let message = assert_failed(&failed, "TargetRegistryError");
    eprintln!("chaos: target down: {message}");
    assert!(
        message.contains("503"),
        "the target's answer is not named: {message}"
    );
    let repo = target("imported/down");

    // Down again for a moment only: the operation's own retries get it through.
    let mut body = body;
    body["mode"] = json!("Force");
    let accepted = env.start_import(REG, &body).await;
    acr_import_tests::util::poll_until(
        "the target to refuse a request",
        std::time::Duration::from_secs(20),
        std::time::Duration::from_millis(50),
        || async { (proxy.rule_hits(down) > 0).then_some(()) },
    )
    .await;
    proxy.remove_rule(down);
    let status = env
        .arm
        .poll_until_done(
            &accepted.async_operation(),
            std::time::Duration::from_secs(40),
        )
        .await;
    assert_eq!(status["status"], "Succeeded", "after recovery: {status}");
    assert_imported(&env, &repo, "v1", &image).await;
    report("target-unavailable", &[Some(failed), Some(status)]);
}
