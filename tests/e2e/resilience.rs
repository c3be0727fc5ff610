//! Sources that misbehave: rate limits (waited out, or endless), corrupt blobs, stalls, and
//! the operation deadline.

use std::time::{Duration, Instant};

use acr_import_tests::fault_proxy::{Action, Kind, Rule};
use acr_import_tests::image::Format;
use acr_import_tests::TestImage;

use crate::common::{
    assert_failed, assert_nothing_copied, env_behind_backend_proxy_with, scrape, target,
    uri_import, ProxiedImport, REG,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_with_retry_after_are_waited_out() {
    let s = ProxiedImport::start(
        "limited",
        TestImage::single(1401, Format::Oci, &[2000, 80_000]),
    )
    .await;
    let manifests = s.proxy.add_rule(
        Rule::new(Action::too_many_requests(1))
            .kind(Kind::ManifestGet)
            .first(2),
    );
    let blobs = s.proxy.add_rule(
        Rule::new(Action::too_many_requests(1))
            .kind(Kind::BlobGet)
            .first(2),
    );

    let started = Instant::now();
    s.import_ok().await;
    let took = started.elapsed();
    let log = s.proxy.log_text();
    assert_eq!(s.proxy.rule_hits(manifests), 2, "{log}");
    assert_eq!(s.proxy.rule_hits(blobs), 2, "{log}");
    // Retry-After: 1 honoured between the manifest GETs.
    let gets = s.proxy.log_of(Kind::ManifestGet);
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
    let s = ProxiedImport::start("storm", TestImage::single(1402, Format::Oci, &[1000])).await;
    s.proxy.add_rule(Rule::new(Action::too_many_requests(1)));

    let status = s.import_for(Duration::from_secs(120)).await;
    let message = assert_failed(&status, "SourceRegistryError");
    assert!(message.contains("TOOMANYREQUESTS"), "{message}");
    assert_nothing_copied(&s.env, &s.target(), &s.image).await;
    eprintln!(
        "429 storm: {} requests before giving up",
        s.proxy.log().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_not_matching_its_digest_fails_without_a_tag() {
    let s = ProxiedImport::start(
        "corrupt",
        TestImage::single(1403, Format::Oci, &[2000, 200_000]),
    )
    .await;
    let layer = s.image.blobs.last().unwrap().clone();
    assert_eq!(layer.size, 200_000);
    // Every GET of the layer returns the right length with one byte flipped.
    s.proxy.add_rule(
        Rule::new(Action::Corrupt)
            .kind(Kind::BlobGet)
            .path(&layer.digest),
    );

    let status = s.import().await;
    let message = assert_failed(&status, "SourceRegistryError");
    assert!(message.contains("does not match its digest"), "{message}");
    s.assert_untagged().await;
    let backend = s.env.backend_client();
    let repo = s.target();
    assert!(!backend
        .manifest_exists(&repo, s.image.digest())
        .await
        .unwrap());
    assert!(
        !backend.blob_exists(&repo, &layer.digest).await.unwrap(),
        "the corrupt layer was committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_source_fails_within_bounds() {
    const STALL_TIMEOUT: u64 = 2;
    let s = ProxiedImport::start_with(
        "stall",
        TestImage::single(1404, Format::Oci, &[1000, 1 << 20]),
        |c| c.flag("--stall-timeout-seconds", STALL_TIMEOUT),
    )
    .await;
    let layer = s.image.blobs.last().unwrap().clone();
    assert_eq!(layer.size, 1 << 20);
    // Every GET of the layer (Range resumes too) stalls after 64 KiB.
    s.proxy.add_rule(
        Rule::new(Action::Stall {
            after_bytes: 64 << 10,
        })
        .kind(Kind::BlobGet)
        .path(&layer.digest),
    );

    let started = Instant::now();
    let status = s.import_for(Duration::from_secs(90)).await;
    let took = started.elapsed();
    // Blamed on the source (not on the target upload that waits for it), and not retried
    // for the whole operation.
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
    let gets = s.blob_gets(&layer.digest);
    assert!(
        gets.len() >= 2,
        "the stalled download was never retried or resumed:\n{}",
        s.proxy.log_text()
    );
    s.assert_untagged().await;
    // Every GET of the layer stalled once on the source side; each but the last was resumed.
    let m = scrape(&s.env).await;
    let stalls = m.sum("acr_import_copy_stalls_total", &[("side", "source")]);
    assert_eq!(stalls, gets.len() as f64, "{}", s.proxy.log_text());
    assert_eq!(
        m.sum("acr_import_copy_stalls_total", &[("side", "target")]),
        0.0
    );
    assert_eq!(
        m.sum("acr_import_copy_range_resumes_total", &[]),
        stalls - 1.0
    );
    assert_eq!(
        m.sum("acr_import_copy_blobs_total", &[("result", "failed")]),
        1.0
    );
    eprintln!(
        "stall: failed after {took:?}: {message}\nlayer GETs:\n{}",
        gets.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_target_upload_fails_as_a_target_error() {
    const STALL_TIMEOUT: u64 = 2;
    // Larger than the socket buffers between the service and the backend proxy.
    const LAYER: u64 = 32 << 20;
    let image = TestImage::single(1406, Format::Oci, &[1000, LAYER]);
    let layer = image.blobs.last().unwrap().clone();
    // Upload URLs carry the digest URL-encoded (`sha256%3A…`): match its hex part.
    let hex = layer.digest.trim_start_matches("sha256:").to_owned();
    let (env, backend_proxy, src) = env_behind_backend_proxy_with(REG, "demo/sink", &image, |c| {
        c.flag("--stall-timeout-seconds", STALL_TIMEOUT)
    })
    .await;
    // The backend stops reading the layer's upload after 1 MiB and never answers.
    backend_proxy.add_rule(
        Rule::new(Action::StallUpload {
            after_bytes: 1 << 20,
        })
        .kind(Kind::UploadPut)
        .path(&hex),
    );

    let started = Instant::now();
    let (_, status) = env
        .import_and_wait_for(
            REG,
            &uri_import(&src.host(), "demo/sink:v1", &["imported/sink:v1"]),
            Duration::from_secs(90),
        )
        .await;
    let took = started.elapsed();
    let log = backend_proxy.log_text();
    // Blamed on the target, whose upload stalled, not on the source that kept sending.
    let message = assert_failed(&status, "TargetRegistryError");
    assert!(
        message.to_ascii_lowercase().contains("stalled"),
        "{message}\n{log}"
    );
    let bound = Duration::from_secs(STALL_TIMEOUT * 4 + 15);
    assert!(
        took <= bound,
        "failed after {took:?}, more than {bound:?} with --stall-timeout-seconds {STALL_TIMEOUT}\n{log}"
    );
    assert!(took >= Duration::from_secs(STALL_TIMEOUT), "{took:?}");
    let puts: Vec<_> = backend_proxy
        .log_of(Kind::UploadPut)
        .into_iter()
        .filter(|e| e.path.contains(&hex))
        .collect();
    assert!(!puts.is_empty(), "the layer was never uploaded:\n{log}");
    // Each stalled PUT counted once, on the target side, as a request without an answer.
    let m = scrape(&env).await;
    assert_eq!(
        m.sum("acr_import_copy_stalls_total", &[("side", "target")]),
        puts.len() as f64,
        "{log}"
    );
    assert_eq!(
        m.sum("acr_import_copy_stalls_total", &[("side", "source")]),
        0.0
    );
    assert!(
        m.sum(
            "acr_import_registry_requests_total",
            &[("role", "target"), ("class", "error")]
        ) >= puts.len() as f64
    );
    let tags = env
        .backend_client()
        .tags_list(&target("imported/sink"))
        .await
        .unwrap();
    assert!(tags.is_empty(), "{tags:?}");
    eprintln!("target stall: failed after {took:?}: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_deadline_fails_with_import_timed_out() {
    const DEADLINE: u64 = 3;
    let s = ProxiedImport::start_with(
        "slow",
        TestImage::single(1405, Format::Oci, &[1000, 2 << 20]),
        |c| c.flag("--operation-timeout-seconds", DEADLINE),
    )
    .await;
    // 2 MiB at 128 KiB/s: 16 s, far past the deadline; bytes keep flowing (no stall).
    s.proxy
        .add_rule(Rule::new(Action::Throttle(128 << 10)).kind(Kind::BlobGet));

    let started = Instant::now();
    let status = s.import_for(Duration::from_secs(60)).await;
    let took = started.elapsed();
    assert_failed(&status, "ImportTimedOut");
    assert!(
        took < Duration::from_secs(DEADLINE + 12),
        "ImportTimedOut only after {took:?} with --operation-timeout-seconds {DEADLINE}"
    );
    s.assert_untagged().await;
}
