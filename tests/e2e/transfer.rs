//! How blobs move: cross-repository mounts, resumed downloads, chunked uploads, redirects,
//! per-host concurrency and progress reporting. Fault proxies in front of the source or the
//! backend count what really went over the wire.

use std::time::Duration;

use acr_import_tests::env::IMPORT_TIMEOUT;
use acr_import_tests::fault_proxy::{Action, Kind, Rule};
use acr_import_tests::image::{Format, Platform};
use acr_import_tests::oci::Credentials;
use acr_import_tests::{TestEnv, TestImage};
use serde_json::{json, Value};

use crate::common::{
    assert_imported, assert_succeeded, env_behind_backend_proxy, prop, proxied_private_source,
    scrape, target, uri_import, ProxiedImport, REG,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_registry_import_mounts_instead_of_copying() {
    let image = TestImage::three_platform(1301);
    let (env, backend_proxy, src) =
        env_behind_backend_proxy("RegAlpha1", "demo/multi", &image).await;
    env.create_registry("RegBeta02").await;
    env.import_ok(
        "RegAlpha1",
        &uri_import(&src.host(), "demo/multi:v1", &["app/multi:v1"]),
    )
    .await;
    backend_proxy.reset_stats();

    let body = json!({
        "source": {"resourceId": env.registry_id("RegAlpha1"), "sourceImage": "app/multi:v1"},
        "targetTags": ["copied/multi:v1"],
    });
    let status = env.import_ok("RegBeta02", &body).await;
    assert_succeeded(&status);
    env.backend_client()
        .assert_has_image("regbeta02/copied/multi", Some("v1"), &image)
        .await;

    // Not one blob byte moved: every blob was mounted from regalpha1/app/multi.
    assert_eq!(
        backend_proxy.count(Kind::BlobGet),
        0,
        "blobs were downloaded from the backend:\n{}",
        backend_proxy.log_text()
    );
    assert_eq!(
        backend_proxy.stats(Kind::UploadPut).request_bytes
            + backend_proxy.stats(Kind::UploadPatch).request_bytes,
        0,
        "blob bytes were uploaded:\n{}",
        backend_proxy.log_text()
    );
    let mounts: Vec<_> = backend_proxy
        .log_of(Kind::UploadPost)
        .into_iter()
        .filter(|e| e.path.contains("mount=") && e.path.contains("from=regalpha1"))
        .collect();
    assert!(
        mounts.iter().any(|e| e.status == 201),
        "no successful cross-repository mount:\n{}",
        backend_proxy.log_text()
    );
    let total = image.total_blob_bytes();
    assert_eq!(prop(&status, "bytesCopied"), 0, "{status}");
    assert_eq!(prop(&status, "bytesTotal"), total, "{status}");
    assert_eq!(prop(&status, "bytesSkipped"), total, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_download_resumes_with_range() {
    const LAYER: u64 = 64 << 20;
    let s = ProxiedImport::start("big", TestImage::single(1302, Format::Oci, &[LAYER])).await;
    let (proxy, layer) = (&s.proxy, s.image.blobs[1].clone());
    let cut_at = LAYER * 2 / 5;
    let cut = proxy.add_rule(
        Rule::new(Action::CutAfter(cut_at))
            .kind(Kind::BlobGet)
            .path(&layer.digest)
            .first(1),
    );

    s.import_ok().await;
    assert_eq!(proxy.rule_hits(cut), 1);
    let (digest, len) = s
        .env
        .backend_client()
        .blob_digest(&s.target(), &layer.digest)
        .await
        .unwrap();
    assert_eq!((digest.as_str(), len), (layer.digest.as_str(), LAYER));

    let gets = s.blob_gets(&layer.digest);
    let log = proxy.log_text();
    assert!(gets.len() >= 2, "no second GET after the cut:\n{log}");
    let resumed: Vec<_> = gets[1..]
        .iter()
        .filter(|e| e.range_start().is_some_and(|n| n > 0) && e.status == 206)
        .collect();
    assert!(
        !resumed.is_empty(),
        "the download restarted instead of resuming with Range: bytes=N- (206):\n{log}"
    );
    let sent = proxy.bytes_sent(Kind::BlobGet);
    assert!(
        sent < LAYER + LAYER / 10,
        "{sent} blob bytes sent for a {LAYER} byte layer (≥ 1.1×): the resume re-read too much\n{log}"
    );
    // The metrics say the same: each resumed GET once, both blobs copied whole, no stall.
    let m = scrape(&s.env).await;
    assert_eq!(
        m.sum("acr_import_copy_range_resumes_total", &[]),
        resumed.len() as f64,
        "{log}"
    );
    assert_eq!(
        m.sum("acr_import_copy_blobs_total", &[("result", "copied")]),
        2.0
    );
    assert_eq!(
        m.sum("acr_import_copy_blob_bytes_total", &[("result", "copied")]),
        s.image.total_blob_bytes() as f64
    );
    assert_eq!(m.sum("acr_import_copy_stalls_total", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ignoring_range_restarts_the_blob() {
    const LAYER: u64 = 12 << 20;
    let s = ProxiedImport::start("norange", TestImage::single(1303, Format::Oci, &[LAYER])).await;
    let (proxy, layer) = (&s.proxy, s.image.blobs[1].clone());
    proxy.add_rule(
        Rule::new(Action::StripRange)
            .kind(Kind::BlobGet)
            .path(&layer.digest),
    );
    proxy.add_rule(
        Rule::new(Action::CutAfter(5 << 20))
            .kind(Kind::BlobGet)
            .path(&layer.digest)
            .first(1),
    );

    s.import_ok().await;
    assert_imported(&s.env, &s.target(), "v1", &s.image).await;
    let gets = s.blob_gets(&layer.digest);
    assert!(
        gets.len() >= 2 && gets.iter().skip(1).any(|e| e.status == 200),
        "expected a second, full (200) GET after the cut:\n{}",
        proxy.log_text()
    );
}

/// A 413 for monolithic PUTs at the backend (chunk minimum 6 MiB) and one PATCH answered
/// 416 (chosen by `inject_416`): the service must fall back to chunked uploads and recover.
async fn chunked_upload_case(seed: u64, layer_size: u64, inject_416: Rule) {
    const MIN: u64 = 6 << 20;
    let image = TestImage::single(seed, Format::Oci, &[layer_size]);
    let (env, backend_proxy, src) = env_behind_backend_proxy(REG, "demo/chunked", &image).await;
    backend_proxy.add_rule(Rule::new(Action::reject_monolithic_put(Some(MIN))));
    // Answered without being forwarded: the service must ask the upload's status and carry
    // on from what the registry really holds.
    let r416 = backend_proxy.add_rule(inject_416);

    let (_, status) = env
        .import_and_wait(
            REG,
            &uri_import(&src.host(), "demo/chunked:v1", &["imported/chunked:v1"]),
        )
        .await;
    assert_eq!(
        status["status"],
        "Succeeded",
        "import failed: {status}\nbackend traffic:\n{}",
        backend_proxy.log_text()
    );
    assert_succeeded(&status);
    assert_imported(&env, &target("imported/chunked"), "v1", &image).await;

    let log = backend_proxy.log_text();
    let puts = backend_proxy.log_of(Kind::UploadPut);
    assert!(
        puts.iter().any(|e| e.status == 413),
        "the service never tried a monolithic PUT:\n{log}"
    );
    let patches = backend_proxy.log_of(Kind::UploadPatch);
    assert!(patches.len() >= 2, "too few PATCHes:\n{log}");
    assert_eq!(
        backend_proxy.rule_hits(r416),
        1,
        "the 416 was not injected:\n{log}"
    );
    assert!(
        backend_proxy.count(Kind::UploadGet) >= 1,
        "the 416 was not recovered by asking the upload status:\n{log}"
    );
    for p in &patches {
        let cr = p
            .content_range
            .as_deref()
            .unwrap_or_else(|| panic!("PATCH without Content-Range: {p}\n{log}"));
        let (a, b) = cr
            .split_once('-')
            .unwrap_or_else(|| panic!("Content-Range {cr:?} is not start-end: {p}"));
        let (a, b): (u64, u64) = (
            a.trim().parse().unwrap_or_else(|_| panic!("{cr:?}: {p}")),
            b.trim().parse().unwrap_or_else(|_| panic!("{cr:?}: {p}")),
        );
        assert!(b >= a, "{p}");
        assert_eq!(
            p.content_length,
            Some(b - a + 1),
            "Content-Length must match Content-Range: {p}"
        );
    }
    assert!(
        backend_proxy.chunk_violations().is_empty(),
        "chunks under OCI-Chunk-Min-Length: {:?}\n{log}",
        backend_proxy.chunk_violations()
    );
    let sessions = backend_proxy.patch_sizes();
    for (session, sizes) in &sessions {
        if let Some((_, all_but_last)) = sizes.split_last() {
            assert!(
                all_but_last.iter().all(|s| *s >= MIN),
                "session {session}: non-final chunks under {MIN}: {sizes:?}"
            );
        }
    }
    assert!(
        sessions
            .values()
            .any(|s| s.iter().sum::<u64>() >= layer_size),
        "no upload session carried the whole layer: {sessions:?}"
    );
    // Committed by a final PUT ?digest= with an empty body.
    assert!(
        puts.iter()
            .any(|e| e.status == 201 && e.path.contains("digest=") && e.request_bytes == 0),
        "no final empty PUT ?digest=:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_fallback_when_monolithic_puts_are_refused() {
    // 20 MiB in chunks of at least 6 MiB; the 416 hits a PATCH in the middle of the layer.
    chunked_upload_case(
        1304,
        20 << 20,
        Rule::new(Action::status(
            416,
            "BLOB_UPLOAD_INVALID",
            "requested range not satisfiable",
        ))
        .kind(Kind::UploadPatch)
        .content_range_from(1)
        .first(1),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_recovers_a_416_on_the_first_chunk() {
    // The 416 hits the layer's first PATCH: the registry then reports the empty session as
    // `Range: 0-0` (docker-registry's answer for 0 bytes, indistinguishable from 1 byte).
    chunked_upload_case(
        1309,
        13 << 20,
        Rule::new(Action::status(
            416,
            "BLOB_UPLOAD_INVALID",
            "requested range not satisfiable",
        ))
        .kind(Kind::UploadPatch)
        .min_content_length(6 << 20)
        .first(1),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirected_blob_gets_carry_no_authorization() {
    let image = TestImage::single(1305, Format::Oci, &[2000, 300_000]);
    let creds = Credentials::new("redirector", "Red1rect-pw");
    let (env, (_src, proxy)) = tokio::join!(
        TestEnv::start(),
        proxied_private_source(&creds, "private/app", "v1", &image)
    );
    proxy.add_rule(Rule::new(Action::Redirect { to: None }));
    env.create_registry(REG).await;

    let body = json!({
        "source": {
            "registryUri": proxy.host(),
            "sourceImage": "private/app:v1",
            "credentials": {"username": creds.username, "password": creds.password},
        },
        "targetTags": ["imported/app:v1"],
    });
    let status = env.import_ok(REG, &body).await;
    assert_succeeded(&status);
    assert_imported(&env, &target("imported/app"), "v1", &image).await;

    let log = proxy.log_text();
    let gets = proxy.log_of(Kind::BlobGet);
    assert!(
        gets.iter()
            .any(|e| e.status == 307 && e.has_authorization()),
        "no authenticated blob GET was redirected:\n{log}"
    );
    let hits = proxy.redirect_hits();
    assert!(
        !hits.is_empty(),
        "the redirect target was never used:\n{log}"
    );
    assert!(
        hits.iter().all(|h| !h.had_authorization),
        "Authorization was sent to another host: {hits:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_transfers_are_bounded_per_registry_host() {
    let sizes = [512 << 10; 4];
    let b = TestImage::single(1307, Format::Docker, &sizes);
    let s = ProxiedImport::start_with("a", TestImage::single(1306, Format::Oci, &sizes), |c| {
        c.flag("--registry-concurrency", 2)
    })
    .await;
    let (env, proxy, a) = (&s.env, &s.proxy, &s.image);
    s.src.client().push_image("demo/b", "v1", &b).await.unwrap();
    // Each blob response at 1 MiB/s: a layer takes half a second, so transfers overlap.
    proxy.add_rule(Rule::new(Action::Throttle(1 << 20)).kind(Kind::BlobGet));

    let op_a = env.start_import(REG, &s.body()).await;
    let op_b = env.start_import(REG, &s.body_for("b")).await;
    let (url_a, url_b) = (op_a.async_operation(), op_b.async_operation());
    let (sa, sb) = tokio::join!(
        env.arm.poll_until_done(&url_a, IMPORT_TIMEOUT),
        env.arm.poll_until_done(&url_b, IMPORT_TIMEOUT)
    );
    assert_succeeded(&sa);
    assert_succeeded(&sb);
    let backend = env.backend_client();
    backend
        .assert_has_image(&target("imported/a"), Some("v1"), a)
        .await;
    backend
        .assert_has_image(&target("imported/b"), Some("v1"), &b)
        .await;
    let stats = proxy.stats(Kind::BlobGet);
    assert!(stats.count >= 10, "{stats:?}\n{}", proxy.log_text());
    assert!(
        stats.max_in_flight <= 2,
        "{} blob GETs in flight at once at one host with --registry-concurrency 2",
        stats.max_in_flight
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_reported_while_copying() {
    let image = TestImage::index(
        1308,
        Format::Oci,
        &[Platform::amd64(), Platform::arm64()],
        &[1000, 3 << 20],
    );
    let s = ProxiedImport::start_with("slow", image, |c| c.lease_seconds(3)).await;
    let (env, image) = (&s.env, &s.image);
    // 1 MiB/s per response: each 3 MiB layer takes about 3 s, the copy 3–6 s.
    s.proxy
        .add_rule(Rule::new(Action::Throttle(1 << 20)).kind(Kind::BlobGet));

    let accepted = env.start_import(REG, &s.body()).await;
    let url = accepted.async_operation();
    let mut mid: Option<Value> = None;
    let mut last_copied = 0u64;
    let deadline = std::time::Instant::now() + IMPORT_TIMEOUT;
    let final_status = loop {
        let v = env.arm.get(&url).await.json();
        if let Some(copied) = v["properties"]["bytesCopied"].as_u64() {
            assert!(
                copied >= last_copied,
                "bytesCopied went backwards ({last_copied} → {copied}): {v}"
            );
            last_copied = copied;
            let total = v["properties"]["bytesTotal"].as_u64().unwrap_or(0);
            let pct = v["percentComplete"].as_f64().unwrap_or(0.0);
            if v["status"] == "InProgress"
                && copied > 0
                && copied < total
                && pct > 0.0
                && pct < 100.0
            {
                mid.get_or_insert(v.clone());
            }
        }
        if matches!(
            v["status"].as_str(),
            Some("Succeeded" | "Failed" | "Canceled")
        ) {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "import did not finish: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_succeeded(&final_status);
    let mid = mid.unwrap_or_else(|| {
        panic!("no status showed 0 < bytesCopied < bytesTotal and 0 < percentComplete < 100 while running; final: {final_status}")
    });
    eprintln!("mid-copy status: {mid}");
    let total = image.total_blob_bytes();
    assert_eq!(prop(&mid, "bytesTotal"), total, "{mid}");
    assert_eq!(prop(&final_status, "bytesCopied"), total, "{final_status}");
    assert_eq!(
        final_status["percentComplete"].as_f64(),
        Some(100.0),
        "{final_status}"
    );
    env.backend_client()
        .assert_has_image(&s.target(), Some("v1"), image)
        .await;
}
