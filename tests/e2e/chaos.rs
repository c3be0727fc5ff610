//! Chaos: faults injected while batches of imports run: the database restarted, the process
//! killed (SIGKILL) and restarted, two processes on one database with one of them frozen,
//! SIGTERM under load, misbehaving source and target registries. What must hold, whatever
//! the fault: every accepted operation ends (`Succeeded`, or `Failed` with a precise error),
//! none is lost or stays `InProgress`, and every tag points at a complete image.
//!
//! Each test prints one line `CHAOS-RESULT scenario=<name> operations=<n> succeeded=<n>
//! failed=<n> lost=<n>` that `scripts/chaos.sh` collects into `docs/RELIABILITY.md`.

use std::time::{Duration, Instant};

use acr_import_tests::image::{Format, Platform};
use acr_import_tests::util::http_client;
use acr_import_tests::{
    ArmClient, ArmResponse, ServiceConfig, TestImage, TestRegistry, TestService, ThrottleProxy,
};
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::common::{target, uri_import, REG};

mod database;
mod faults;
mod processes;

/// The one summary line per scenario that `scripts/chaos.sh` collects.
pub fn report(scenario: &str, statuses: &[Option<Value>]) {
    let count = |s: &str| {
        statuses
            .iter()
            .filter(|v| v.as_ref().is_some_and(|v| v["status"] == s))
            .count()
    };
    let lost = statuses
        .iter()
        .filter(|v| {
            v.as_ref()
                .is_none_or(|v| !matches!(v["status"].as_str(), Some("Succeeded" | "Failed")))
        })
        .count();
    println!(
        "CHAOS-RESULT scenario={scenario} operations={} succeeded={} failed={} lost={lost}",
        statuses.len(),
        count("Succeeded"),
        count("Failed"),
    );
}

/// One import of a batch: the source image, where it comes from and where it goes.
pub struct Job {
    pub image: TestImage,
    pub source: String,
    pub target_repo: String,
    pub tag: String,
}

impl Job {
    pub fn body(&self, source_host: &str) -> Value {
        uri_import(
            source_host,
            &self.source,
            &[&format!("{}:{}", self.target_repo, self.tag)],
        )
    }

    /// The backend repository of the target.
    pub fn backend_repo(&self) -> String {
        target(&self.target_repo)
    }
}

/// `n` small images over four repositories, every fourth a two-platform index; layers of
/// 64–320 KiB. Deterministic for `seed`.
pub fn batch(seed: u64, n: usize) -> Vec<Job> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let s = seed * 1000 + i as u64;
            let layers = [rng.gen_range(64..320) << 10, rng.gen_range(1..64) << 10];
            let image = if i % 4 == 3 {
                TestImage::index(
                    s,
                    Format::Oci,
                    &[Platform::amd64(), Platform::arm64()],
                    &layers,
                )
            } else {
                TestImage::single(s, Format::Oci, &layers)
            };
            let repo = format!("chaos/r{}", i % 4);
            Job {
                image,
                source: format!("{repo}:t{i}"),
                target_repo: format!("copied/r{}", i % 4),
                tag: format!("t{i}"),
            }
        })
        .collect()
}

/// Pushes every job's image to `src`.
pub async fn push_all(src: &TestRegistry, jobs: &[Job]) {
    let client = src.client();
    for job in jobs {
        let (repo, tag) = job.source.split_once(':').expect("repo:tag");
        client
            .push_image(repo, tag, &job.image)
            .await
            .unwrap_or_else(|e| panic!("push {}: {e:#}", job.source));
    }
}

/// POSTs every job's import through `arm` (asserting 202); their `Azure-AsyncOperation` URLs.
pub async fn start_all(
    arm: &ArmClient,
    sub: &str,
    rg: &str,
    source_host: &str,
    jobs: &[Job],
) -> Vec<String> {
    let mut urls = Vec::new();
    for job in jobs {
        let r = arm.import(sub, rg, REG, &job.body(source_host)).await;
        assert_eq!(r.status.as_u16(), 202, "import not accepted: {r}");
        urls.push(r.async_operation());
    }
    urls
}

/// GET of an operation status on `base` (the URL rebased there); `None` when the service does
/// not answer or answers anything but 200 (it may be down or restarting).
pub async fn status_on(base: &str, url: &str) -> Option<Value> {
    let url = ArmClient::new(base).rebase(url);
    let resp = http_client()
        .get(&url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if resp.status().as_u16() != 200 {
        return None;
    }
    resp.json().await.ok()
}

fn is_terminal(v: &Value) -> bool {
    matches!(
        v["status"].as_str(),
        Some("Succeeded" | "Failed" | "Canceled")
    )
}

/// Polls every operation (on whichever base answers) until all are terminal or `timeout`
/// passes; the last status seen of each (`None`: never answered).
pub async fn wait_all(bases: &[String], urls: &[String], timeout: Duration) -> Vec<Option<Value>> {
    let deadline = Instant::now() + timeout;
    let mut last: Vec<Option<Value>> = vec![None; urls.len()];
    loop {
        for (i, url) in urls.iter().enumerate() {
            if last[i].as_ref().is_some_and(is_terminal) {
                continue;
            }
            for base in bases {
                if let Some(v) = status_on(base, url).await {
                    last[i] = Some(v);
                    break;
                }
            }
        }
        if last.iter().all(|v| v.as_ref().is_some_and(is_terminal)) || Instant::now() >= deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Asserts every status is `Succeeded`, listing the others.
pub fn assert_all_succeeded(scenario: &str, statuses: &[Option<Value>]) {
    let bad: Vec<String> = statuses
        .iter()
        .enumerate()
        .filter(|(_, v)| v.as_ref().is_none_or(|v| v["status"] != "Succeeded"))
        .map(|(i, v)| format!("#{i}: {v:?}"))
        .collect();
    assert!(
        bad.is_empty(),
        "{scenario}: {} of {} operations did not succeed:\n{}",
        bad.len(),
        statuses.len(),
        bad.join("\n")
    );
}

/// Asserts every job's tag at the backend resolves to its complete image (manifests, index
/// children and every blob present).
pub async fn assert_all_copied(backend: &TestRegistry, jobs: &[Job]) {
    let client = backend.client();
    for job in jobs {
        client
            .assert_has_image(&job.backend_repo(), Some(&job.tag), &job.image)
            .await;
    }
}

/// The operations table as the service left it: (state, attempt) of every row.
pub async fn operation_rows(db_url: &str) -> Vec<(String, i32)> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(db_url)
        .await
        .unwrap_or_else(|e| panic!("connect to {db_url}: {e}"));
    sqlx::query_as("select state, attempt from operations order by created_at")
        .fetch_all(&mut conn)
        .await
        .expect("select operations")
}

/// A source registry with `jobs` pushed, behind a throttling proxy at `rate` bytes/s.
pub async fn throttled_source(jobs: &[Job], rate: Option<u64>) -> (TestRegistry, ThrottleProxy) {
    let src = TestRegistry::anonymous().await;
    push_all(&src, jobs).await;
    let proxy = ThrottleProxy::start(&src.host(), rate).await;
    (src, proxy)
}

/// A service on `db_url` and `backend` with a short lease (quick takeover after a crash)
/// that answers every import at once with 202 (no synchronous wait: batches are posted fast).
pub fn chaos_config(db_url: &str, backend: &TestRegistry) -> ServiceConfig {
    ServiceConfig::new(db_url, &backend.url()).lease_seconds(3)
}

/// Asserts `resp` is a quick ARM-shaped 503 with `Retry-After`.
pub fn assert_unavailable(what: &str, resp: &ArmResponse, took: Duration) {
    assert_eq!(
        resp.status.as_u16(),
        503,
        "{what} while the database is down: {resp}"
    );
    assert_eq!(
        resp.assert_arm_error(),
        "ServiceUnavailable",
        "{what}: {resp}"
    );
    assert!(
        resp.retry_after().is_some(),
        "{what}: no Retry-After: {resp}"
    );
    let text = resp.text();
    assert!(
        !text.contains("panicked") && !text.contains("sqlx") && !text.contains("backtrace"),
        "{what}: internals in the answer: {resp}"
    );
    assert!(
        took < Duration::from_secs(5),
        "{what} took {took:?} while the database is down"
    );
}

/// Starts a service (panics with its log if it never gets healthy).
pub async fn serve(config: ServiceConfig) -> TestService {
    TestService::start(config).await
}
