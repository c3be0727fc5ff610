//! Sources that misbehave: rate limits (waited out, or endless), corrupt blobs, stalls, and
//! the operation deadline.

use std::time::{Duration, Instant};

use acr_import_tests::fault_proxy::{Action, Kind, Rule};
use acr_import_tests::image::Format;
use acr_import_tests::{TestEnv, TestImage};

use crate::common::{
    assert_failed, assert_nothing_copied, assert_succeeded, proxied_source, target, uri_import, REG,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_with_retry_after_are_waited_out() {
    let image = TestImage::single(1401, Format::Oci, &[2000, 80_000]);
    let (env, (_src, proxy)) = tokio::join!(
        TestEnv::start(),
        proxied_source("demo/limited", "v1", &image)
    );
    env.create_registry(REG).await;
    let manifests = proxy.add_rule(
        Rule::new(Action::too_many_requests(1))
            .kind(Kind::ManifestGet)
            .first(2),
    );
    let blobs = proxy.add_rule(
        Rule::new(Action::too_many_requests(1))
            .kind(Kind::BlobGet)
            .first(2),
    );

    let started = Instant::now();
    let status = env
        .import_ok(
            REG,
            &uri_import(&proxy.host(), "demo/limited:v1", &["imported/limited:v1"]),
        )
        .await;
    let took = started.elapsed();
    assert_succeeded(&status);
    env.backend_client()
        .assert_has_image(&target("imported/limited"), Some("v1"), &image)
        .await;
    let log = proxy.log_text();
    assert_eq!(proxy.rule_hits(manifests), 2, "{log}");
    assert_eq!(proxy.rule_hits(blobs), 2, "{log}");
    // Retry-After: 1 honoured between the manifest GETs.
    let gets = proxy.log_of(Kind::ManifestGet);
    assert!(gets.len() >= 3, "{log}");
    for pair in gets[..3].windows(2) {
        let gap = pair[1].at.saturating_sub(pair[0].at);
        assert!(
            gap >= Duration::from_millis(900),
            "retried {gap:?} after a 429 with Retry-After: 1\n{log}"
        );
    }
    assert!(took >= Duration::from_secs(2), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_rate_limiting_fails_with_toomanyrequests() {
    let image = TestImage::single(1402, Format::Oci, &[1000]);
    let (env, (_src, proxy)) =
        tokio::join!(TestEnv::start(), proxied_source("demo/storm", "v1", &image));
    env.create_registry(REG).await;
    proxy.add_rule(Rule::new(Action::too_many_requests(1)));

    let (_, status) = env
        .import_and_wait_for(
            REG,
            &uri_import(&proxy.host(), "demo/storm:v1", &["imported/storm:v1"]),
            Duration::from_secs(120),
        )
        .await;
    let message = assert_failed(&status, "SourceRegistryError");
    assert!(message.contains("TOOMANYREQUESTS"), "{message}");
    assert_nothing_copied(&env, &target("imported/storm"), &image).await;
    eprintln!("429 storm: {} requests before giving up", proxy.log().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_not_matching_its_digest_fails_without_a_tag() {
    let image = TestImage::single(1403, Format::Oci, &[2000, 200_000]);
    let layer = image.blobs.last().unwrap().clone();
    assert_eq!(layer.size, 200_000);
    let (env, (_src, proxy)) = tokio::join!(
        TestEnv::start(),
        proxied_source("demo/corrupt", "v1", &image)
    );
    env.create_registry(REG).await;
    // Every GET of the layer returns the right length with one byte flipped.
    proxy.add_rule(
        Rule::new(Action::Corrupt)
            .kind(Kind::BlobGet)
            .path(&layer.digest),
    );

    let (_, status) = env
        .import_and_wait(
            REG,
            &uri_import(&proxy.host(), "demo/corrupt:v1", &["imported/corrupt:v1"]),
        )
        .await;
    let message = assert_failed(&status, "SourceRegistryError");
    assert!(message.contains("does not match its digest"), "{message}");
    let backend = env.backend_client();
    let repo = target("imported/corrupt");
    assert!(
        backend.tags_list(&repo).await.unwrap().is_empty(),
        "a tag was created"
    );
    assert!(!backend
        .manifest_exists(&repo, image.digest())
        .await
        .unwrap());
    assert!(
        !backend.blob_exists(&repo, &layer.digest).await.unwrap(),
        "the corrupt layer was committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known bug (issue 3): the client-wide read timeout also fires on the target PUT while the source stalls, so the failure is reported as TargetRegistryError after blob restarts and an operation retry (~27 s) instead of SourceRegistryError within the bound"]
async fn stalled_source_fails_within_bounds() {
    const STALL_TIMEOUT: u64 = 2;
    let image = TestImage::single(1404, Format::Oci, &[1000, 1 << 20]);
    let layer = image.blobs.last().unwrap().clone();
    assert_eq!(layer.size, 1 << 20);
    let (env, (_src, proxy)) = tokio::join!(
        TestEnv::start_with(|c| c.flag("--stall-timeout-seconds", STALL_TIMEOUT)),
        proxied_source("demo/stall", "v1", &image)
    );
    env.create_registry(REG).await;
    proxy.add_rule(
        Rule::new(Action::Stall {
            after_bytes: 64 << 10,
        })
        .kind(Kind::BlobGet)
        .path(&layer.digest),
    );

    let started = Instant::now();
    let (_, status) = env
        .import_and_wait_for(
            REG,
            &uri_import(&proxy.host(), "demo/stall:v1", &["imported/stall:v1"]),
            Duration::from_secs(90),
        )
        .await;
    let took = started.elapsed();
    let message = assert_failed(&status, "SourceRegistryError");
    let lower = message.to_ascii_lowercase();
    assert!(
        lower.contains("stalled") || lower.contains("timed out"),
        "{message}"
    );
    let bound = Duration::from_secs(STALL_TIMEOUT * 4 + 15);
    assert!(
        took <= bound,
        "failed after {took:?}, more than {bound:?} with --stall-timeout-seconds {STALL_TIMEOUT}"
    );
    assert!(took >= Duration::from_secs(STALL_TIMEOUT), "{took:?}");
    let gets: Vec<_> = proxy
        .log_of(Kind::BlobGet)
        .into_iter()
        .filter(|e| e.path.contains(&layer.digest))
        .collect();
    assert!(
        gets.len() >= 2,
        "the stalled download was never retried or resumed:\n{}",
        proxy.log_text()
    );
    assert!(env
        .backend_client()
        .tags_list(&target("imported/stall"))
        .await
        .unwrap()
        .is_empty());
    eprintln!(
        "stall: failed after {took:?}; layer GETs:\n{}",
        gets.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_deadline_fails_with_import_timed_out() {
    const DEADLINE: u64 = 3;
    let image = TestImage::single(1405, Format::Oci, &[1000, 2 << 20]);
    let (env, (_src, proxy)) = tokio::join!(
        TestEnv::start_with(|c| c.flag("--operation-timeout-seconds", DEADLINE)),
        proxied_source("demo/slow", "v1", &image)
    );
    env.create_registry(REG).await;
    // 2 MiB at 128 KiB/s: 16 s, far past the deadline; bytes keep flowing (no stall).
    proxy.add_rule(Rule::new(Action::Throttle(128 << 10)).kind(Kind::BlobGet));

    let started = Instant::now();
    let (_, status) = env
        .import_and_wait_for(
            REG,
            &uri_import(&proxy.host(), "demo/slow:v1", &["imported/slow:v1"]),
            Duration::from_secs(60),
        )
        .await;
    let took = started.elapsed();
    assert_failed(&status, "ImportTimedOut");
    assert!(
        took < Duration::from_secs(DEADLINE + 12),
        "ImportTimedOut only after {took:?} with --operation-timeout-seconds {DEADLINE}"
    );
    assert!(env
        .backend_client()
        .tags_list(&target("imported/slow"))
        .await
        .unwrap()
        .is_empty());
}
