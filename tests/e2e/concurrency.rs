//! Concurrent imports keep their promises: among NoForce imports naming one tag exactly one
//! wins (across workers and across processes on one PostgreSQL database, and on SQLite), a
//! reservation survives its worker's SIGKILL, concurrent Force imports end consistent, and a
//! source tag that moves during an import changes nothing about what is copied.

use std::time::Duration;

use acr_import_tests::image::{Format, Platform};
use acr_import_tests::util::free_port;
use acr_import_tests::{
    ArmClient, OciClient, ServiceConfig, TestDatabase, TestImage, TestRegistry, TestService,
    ThrottleProxy,
};
use futures::future::join_all;
use serde_json::{json, Value};

use crate::chaos::{batch, push_all, wait_all, Job};
use crate::common::{target, uri_import, REG};

const RG: &str = "concurrency-rg";

/// The i-th job imports into one of `tags` shared tags (`same/app:g<i % tags>`).
fn contenders(seed: u64, n: usize, tags: usize) -> Vec<Job> {
    batch(seed, n)
        .into_iter()
        .enumerate()
        .map(|(i, mut job)| {
            job.target_repo = "same/app".into();
            job.tag = format!("g{}", i % tags);
            job
        })
        .collect()
}

/// POSTs every job at once, spread over `arms` in turn, NoForce; their status URLs.
async fn post_all(arms: &[ArmClient], sub: &str, source: &str, jobs: &[Job]) -> Vec<String> {
    let posts = jobs.iter().enumerate().map(|(i, job)| {
        let arm = &arms[i % arms.len()];
        let mut body = job.body(source);
        body["mode"] = json!("NoForce");
        async move {
            let r = arm.import(sub, RG, REG, &body).await;
            assert_eq!(r.status.as_u16(), 202, "import not accepted: {r}");
            r.async_operation()
        }
    });
    join_all(posts).await
}

/// Asserts exactly one Succeeded per tag and Conflict for the rest; the tag holds its
/// winner's complete image and no loser's manifest or blob reached the target.
async fn assert_one_winner_per_tag(backend: &OciClient, jobs: &[Job], statuses: &[Option<Value>]) {
    let mut winners: std::collections::BTreeMap<&str, usize> = Default::default();
    for (i, (job, status)) in jobs.iter().zip(statuses).enumerate() {
        let status = status.as_ref().unwrap_or_else(|| panic!("#{i}: no status"));
        match status["status"].as_str() {
            Some("Succeeded") => {
                if let Some(other) = winners.insert(&job.tag, i) {
                    panic!("tag {} has two winners: #{other} and #{i}", job.tag);
                }
            }
            Some("Failed") => {
                assert_eq!(status["error"]["code"], "Conflict", "#{i}: {status}");
                let message = status["error"]["message"].as_str().unwrap_or_default();
                assert!(
                    message.contains(&format!(
                        "Tag {}:{} already exists in target registry.",
                        job.target_repo, job.tag
                    )),
                    "#{i}: {message}"
                );
            }
            other => panic!("#{i} did not end: {other:?} {status}"),
        }
    }
    let tags: std::collections::BTreeSet<&str> = jobs.iter().map(|j| j.tag.as_str()).collect();
    assert_eq!(
        winners.len(),
        tags.len(),
        "every tag has a winner: {winners:?}"
    );
    for (i, job) in jobs.iter().enumerate() {
        if winners.get(job.tag.as_str()) == Some(&i) {
            backend
                .assert_has_image(&job.backend_repo(), Some(&job.tag), &job.image)
                .await;
        } else {
            backend
                .assert_has_none_of(&job.backend_repo(), &job.image)
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noforce_one_winner_per_tag_across_two_processes() {
    // 20 imports of distinct images to 5 tags, 4 per tag, through two processes on one
    // PostgreSQL database and one backend; the source is throttled so the copies overlap.
    let jobs = contenders(71, 20, 5);
    let (db, backend, src) = tokio::join!(
        TestDatabase::create(),
        TestRegistry::anonymous(),
        TestRegistry::anonymous()
    );
    push_all(&src, &jobs).await;
    let proxy = ThrottleProxy::start(&src.host(), Some(4 << 20)).await;
    let config = ServiceConfig::new(db.url(), &backend.url()).workers(4);
    let (a, b) = tokio::join!(
        TestService::start(config.clone()),
        TestService::start(config)
    );
    let arms = [ArmClient::new(&a.base_url()), ArmClient::new(&b.base_url())];
    let sub = uuid::Uuid::new_v4().to_string();
    arms[0].create_registry(&sub, RG, REG).await;
    let urls = post_all(&arms, &sub, &proxy.host(), &jobs).await;
    let statuses = wait_all(
        &[a.base_url(), b.base_url()],
        &urls,
        Duration::from_secs(120),
    )
    .await;
    assert_one_winner_per_tag(&backend.client(), &jobs, &statuses).await;
    // Both processes took part.
    for svc in [&a, &b] {
        assert!(
            svc.log().contains("import succeeded") || svc.log().contains("import failed"),
            "a process ran nothing:\n{}",
            svc.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noforce_one_winner_per_tag_on_sqlite() {
    let jobs = contenders(72, 20, 5);
    let data = tempfile::tempdir().expect("temp dir");
    let src = TestRegistry::anonymous().await;
    push_all(&src, &jobs).await;
    let proxy = ThrottleProxy::start(&src.host(), Some(4 << 20)).await;
    let config = ServiceConfig::sqlite(&data.path().join("data"), "unused")
        .builtin_registry(false)
        .workers(8);
    let port = config.registry_port.expect("built-in registry port");
    let svc = TestService::start(config).await;
    let arm = ArmClient::new(&svc.base_url());
    let sub = uuid::Uuid::new_v4().to_string();
    arm.create_registry(&sub, RG, REG).await;
    let urls = post_all(std::slice::from_ref(&arm), &sub, &proxy.host(), &jobs).await;
    let statuses = wait_all(&[svc.base_url()], &urls, Duration::from_secs(120)).await;
    let backend = OciClient::new(&format!("http://127.0.0.1:{port}"), None);
    assert_one_winner_per_tag(&backend, &jobs, &statuses).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_survives_its_workers_sigkill() {
    // A slow NoForce import holds tag `held:1` when its process is killed. Meanwhile another
    // NoForce import of that tag loses; the first is resumed by a new process (its own
    // reservation does not block it) and ends with the tag on its image, complete.
    let slow = TestImage::single(7301, Format::Oci, &[6 << 20, 1 << 20]);
    let other = TestImage::single(7302, Format::Oci, &[64 << 10]);
    let (db, backend, src) = tokio::join!(
        TestDatabase::create(),
        TestRegistry::anonymous(),
        TestRegistry::anonymous()
    );
    src.client()
        .push_image("src/slow", "v1", &slow)
        .await
        .unwrap();
    src.client()
        .push_image("src/other", "v1", &other)
        .await
        .unwrap();
    let proxy = ThrottleProxy::start(&src.host(), Some(1 << 20)).await;
    let config = ServiceConfig::new(db.url(), &backend.url()).lease_seconds(3);
    let mut svc = TestService::start(config.clone()).await;
    let arm = ArmClient::new(&svc.base_url());
    let sub = uuid::Uuid::new_v4().to_string();
    arm.create_registry(&sub, RG, REG).await;
    let first = arm
        .import(
            &sub,
            RG,
            REG,
            &uri_import(&proxy.host(), "src/slow:v1", &["held:1"]),
        )
        .await;
    assert_eq!(first.status.as_u16(), 202, "{first}");
    let first_url = first.async_operation();
    // Wait until bytes flow: the reservation is taken before the first byte is read.
    arm.poll_until(&first_url, Duration::from_secs(30), "bytes copied", |v| {
        v["properties"]["bytesCopied"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let (_, second) = {
        let r = arm
            .import(
                &sub,
                RG,
                REG,
                &uri_import(&src.host(), "src/other:v1", &["held:1"]),
            )
            .await;
        assert_eq!(r.status.as_u16(), 202, "{r}");
        let s = arm
            .poll_until_done(&r.async_operation(), Duration::from_secs(30))
            .await;
        (r, s)
    };
    assert_eq!(second["status"], "Failed", "{second}");
    assert_eq!(second["error"]["code"], "Conflict", "{second}");

    svc.kill_9();
    proxy.set_rate(None);
    svc = TestService::start(config).await;
    let arm = ArmClient::new(&svc.base_url());
    let done = arm
        .poll_until_done(&arm.rebase(&first_url), Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    assert_eq!(done["properties"]["sourceDigest"], slow.digest(), "{done}");
    let client = backend.client();
    client
        .assert_has_image(&target("held"), Some("1"), &slow)
        .await;
    client.assert_has_none_of(&target("held"), &other).await;
    // The tag now exists: a third NoForce import of it is a plain conflict.
    let r = arm
        .import(
            &sub,
            RG,
            REG,
            &uri_import(&src.host(), "src/other:v1", &["held:1"]),
        )
        .await;
    let third = arm
        .poll_until_done(&r.async_operation(), Duration::from_secs(30))
        .await;
    assert_eq!(third["error"]["code"], "Conflict", "{third}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_force_imports_end_consistent() {
    let jobs = contenders(74, 6, 1);
    let (db, backend, src) = tokio::join!(
        TestDatabase::create(),
        TestRegistry::anonymous(),
        TestRegistry::anonymous()
    );
    push_all(&src, &jobs).await;
    let proxy = ThrottleProxy::start(&src.host(), Some(4 << 20)).await;
    let svc = TestService::start(ServiceConfig::new(db.url(), &backend.url()).workers(6)).await;
    let arm = ArmClient::new(&svc.base_url());
    let sub = uuid::Uuid::new_v4().to_string();
    arm.create_registry(&sub, RG, REG).await;
    let urls = join_all(jobs.iter().map(|job| {
        let mut body = job.body(&proxy.host());
        body["mode"] = json!("Force");
        let arm = &arm;
        let sub = &sub;
        async move {
            let r = arm.import(sub, RG, REG, &body).await;
            assert_eq!(r.status.as_u16(), 202, "{r}");
            r.async_operation()
        }
    }))
    .await;
    let statuses = wait_all(&[svc.base_url()], &urls, Duration::from_secs(120)).await;
    let client = backend.client();
    for (i, (job, s)) in jobs.iter().zip(&statuses).enumerate() {
        let s = s.as_ref().expect("status");
        assert_eq!(s["status"], "Succeeded", "#{i}: {s}");
        assert_eq!(
            s["properties"]["sourceDigest"],
            job.image.digest(),
            "#{i}: {s}"
        );
        // Each import's manifest and everything under it is there by digest.
        client
            .assert_has_image(&job.backend_repo(), None, &job.image)
            .await;
    }
    // The tag is on one of them, complete.
    let tagged = client
        .resolve(&target("same/app"), "g0")
        .await
        .unwrap()
        .expect("the tag exists");
    let winner = jobs
        .iter()
        .find(|j| j.image.digest() == tagged)
        .unwrap_or_else(|| panic!("the tag points at none of the imports: {tagged}"));
    client
        .assert_has_image(&target("same/app"), Some("g0"), &winner.image)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_tag_moved_mid_import_leaves_a_complete_target() {
    // `moving:v1` points at a 3-platform image with large layers when the import starts; a
    // second push re-points it while the layers are still being copied. The import copies what
    // it resolved first, and the target tag is on that image, complete.
    let first = TestImage::index(7501, Format::Oci, &Platform::three(), &[4 << 20, 1 << 20]);
    let second = TestImage::single(7502, Format::Oci, &[256 << 10]);
    let src = TestRegistry::anonymous().await;
    src.client()
        .push_image("src/moving", "v1", &first)
        .await
        .unwrap();
    let proxy = ThrottleProxy::start(&src.host(), Some(2 << 20)).await;
    let data = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut config =
        ServiceConfig::sqlite(&data.path().join("data"), "unused").builtin_registry(false);
    config.registry_port = Some(port);
    let svc = TestService::start(config).await;
    let arm = ArmClient::new(&svc.base_url());
    let sub = uuid::Uuid::new_v4().to_string();
    arm.create_registry(&sub, RG, REG).await;
    let r = arm
        .import(
            &sub,
            RG,
            REG,
            &uri_import(&proxy.host(), "src/moving:v1", &["moved:v1"]),
        )
        .await;
    assert_eq!(r.status.as_u16(), 202, "{r}");
    let url = r.async_operation();
    // The digest is recorded as soon as the reference is resolved, before any blob moves.
    let resolved = arm
        .poll_until(&url, Duration::from_secs(30), "the source digest", |v| {
            v["properties"]["sourceDigest"].is_string()
        })
        .await;
    assert_eq!(
        resolved["properties"]["sourceDigest"],
        first.digest(),
        "{resolved}"
    );
    // Re-point the source tag (directly, not through the slow proxy) while the layers copy.
    src.client()
        .push_image("src/moving", "v1", &second)
        .await
        .unwrap();
    let moved = arm.get(&url).await.json();
    assert_eq!(
        moved["status"], "InProgress",
        "re-pointed too late: {moved}"
    );
    assert_eq!(
        src.client()
            .resolve("src/moving", "v1")
            .await
            .unwrap()
            .as_deref(),
        Some(second.digest())
    );
    let done = arm.poll_until_done(&url, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    assert_eq!(done["properties"]["sourceDigest"], first.digest(), "{done}");
    let backend = OciClient::new(&format!("http://127.0.0.1:{port}"), None);
    backend
        .assert_has_image(&target("moved"), Some("v1"), &first)
        .await;
    backend.assert_has_none_of(&target("moved"), &second).await;
}
