//! Metrics (issue 16): `/metrics` is scraped before and after known work — imports of known
//! images (blobs copied, mounted and skipped), a forced re-import (manifest skipped), two
//! imports held at the source while the queue is counted, a rejection by the queue limit, two
//! failures with a known ARM code — and every counter, histogram count and gauge must have
//! moved exactly as that work implies. No label may name a registry, repository, subscription,
//! host or operation. Run on PostgreSQL and on the embedded SQLite store; `--metrics-listen`
//! serves the same document.

use std::time::{Duration, Instant};

use acr_import_tests::env::IMPORT_TIMEOUT;
use acr_import_tests::image::{Blob, Format, Manifest, OCI_MANIFEST};
use acr_import_tests::prometheus::{delta, Scrape};
use acr_import_tests::util::{free_port, http_client};
use acr_import_tests::{TestEnv, TestImage};
use serde_json::json;

use crate::common::{anonymous_source, assert_failed, held_source, target, uri_import, REG};

const IMPORT_ROUTE: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}/importImage";
const IMPORT: (&str, &str) = ("kind", "import");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_work_moves_the_metrics_exactly_on_postgres() {
    known_work_moves_the_metrics_exactly(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_work_moves_the_metrics_exactly_on_sqlite() {
    known_work_moves_the_metrics_exactly(true).await;
}

/// `/metrics` asks for no token, also when ARM requests need one (Prometheus scrapes without).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_no_token_under_arm_rbac() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rbac = dir.path().join("rbac.json");
    std::fs::write(&rbac, r#"{"roleDefinitions": [], "roleAssignments": []}"#).expect("rbac");
    let env = TestEnv::start_with(|c| {
        c.flag("--auth", "arm-rbac")
            .flag("--rbac-config", rbac.display())
    })
    .await;
    let base = env.service.base_url();
    let arm = http_client()
        .get(format!("{base}/subscriptions?api-version=2022-12-01"))
        .send()
        .await
        .expect("GET");
    assert_eq!(arm.status().as_u16(), 401, "ARM requests need a token");
    let s = Scrape::get(&format!("{base}/metrics")).await;
    assert_eq!(
        s.sum(
            "acr_import_http_requests_total",
            &[("route", "/subscriptions"), ("status", "401")]
        ),
        1.0,
        "{}",
        s.lines_of("acr_import_http_requests_total")
    );
}

/// An image with the layers of `a` and a config of its own: importing it next to `a` finds
/// every layer present.
fn with_layers_of(a: &TestImage, seed: u64) -> TestImage {
    let layers = &a.blobs[1..];
    let config = Blob::inline(
        Format::Oci.config_type(),
        serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"acr-import-tests.seed": seed.to_string()}},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>()},
        }))
        .expect("config"),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor_json(),
        "layers": layers.iter().map(Blob::descriptor_json).collect::<Vec<_>>(),
    });
    let mut blobs = vec![config];
    blobs.extend(layers.iter().cloned());
    TestImage {
        top: Manifest::from_json(OCI_MANIFEST, &manifest, None),
        children: Vec::new(),
        blobs,
    }
}

/// Scrapes `url` until `ready` holds (at most 30 s).
async fn scrape_until(url: &str, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = Scrape::get(url).await;
        if ready(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never held:\n{}",
            s.lines_of("acr_import_queue")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts `name{labels}` moved by exactly `expected` between the scrapes.
#[track_caller]
fn assert_delta(
    before: &Scrape,
    after: &Scrape,
    name: &str,
    labels: &[(&str, &str)],
    expected: f64,
) {
    let moved = delta(before, after, name, labels);
    assert!(
        moved == expected,
        "{name}{labels:?} moved by {moved}, expected {expected}\nbefore:\n{}\nafter:\n{}",
        before.lines_of(name),
        after.lines_of(name)
    );
}

async fn known_work_moves_the_metrics_exactly(sqlite: bool) {
    let a = TestImage::single(1601, Format::Oci, &[1500, 70_000]);
    let b = with_layers_of(&a, 1602);
    let layer_bytes: u64 = a.blobs[1..].iter().map(|l| l.size).sum();
    let metrics_port = free_port();
    let ((env, src), (held, release, _task)) = tokio::join!(
        async {
            tokio::join!(
                TestEnv::start_with(move |mut c| {
                    if sqlite {
                        // The embedded store in the service's data directory.
                        c.database_url = None;
                    }
                    c.workers(1)
                        .flag("--max-queued-operations", 2)
                        .flag("--metrics-listen", format!("127.0.0.1:{metrics_port}"))
                }),
                anonymous_source("demo/app", "v1", &a)
            )
        },
        held_source()
    );
    src.client()
        .push_image("demo/app", "v2", &b)
        .await
        .expect("push b");
    let arm_metrics = format!("{}/metrics", env.service.base_url());
    let own_metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    assert!(
        env.service
            .log()
            .contains(&format!(", metrics=http://127.0.0.1:{metrics_port}")),
        "the ready line names the metrics listener:\n{}",
        env.service.log()
    );

    let before = Scrape::get(&arm_metrics).await;
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(
        before.sum("acr_import_build_info", &version),
        1.0,
        "{}",
        before.lines_of("acr_import_build_info")
    );
    // Histograms render as histograms (buckets), up to an hour for operations.
    assert!(before
        .text
        .contains("# TYPE acr_import_http_request_duration_seconds histogram"));
    env.create_registry(REG).await;

    // A into two repositories: copied into the first, mounted into the second.
    let status = env
        .import_ok(
            REG,
            &uri_import(
                &src.host(),
                "demo/app:v1",
                &["imported/app:v1", "imported/copy:v1"],
            ),
        )
        .await;
    assert_eq!(status["status"], "Succeeded");
    // B next to A: its layers are there, its config is not.
    env.import_ok(
        REG,
        &uri_import(&src.host(), "demo/app:v2", &["imported/app:v2"]),
    )
    .await;
    // A again, forced: the manifest is there, nothing under it is looked at.
    let mut again = uri_import(&src.host(), "demo/app:v1", &["imported/app:v1"]);
    again["mode"] = json!("Force");
    env.import_ok(REG, &again).await;

    // The queue, counted in the store: one import runs (held at the source) on the only
    // worker, one waits; the limit of 2 refuses a third.
    let held_body = |repo: &str| uri_import(&held, "demo/held:v1", &[&format!("{repo}:v1")]);
    let one = env.start_import(REG, &held_body("held/one")).await;
    scrape_until(&arm_metrics, "one running", |s| {
        s.sum("acr_import_queue_operations", &[("state", "running")]) == 1.0
    })
    .await;
    let two = env.start_import(REG, &held_body("held/two")).await;
    let queued = scrape_until(&arm_metrics, "one running, one queued", |s| {
        s.sum("acr_import_queue_operations", &[("state", "queued")]) == 1.0
            && s.sum("acr_import_queue_operations", &[("state", "running")]) == 1.0
    })
    .await;
    let age = queued.sum("acr_import_queue_oldest_queued_age_seconds", &[]);
    assert!(
        age > 0.0 && age < 30.0,
        "the queued one waits since its POST: {age}"
    );
    let refused = env
        .arm
        .import(&env.sub, &env.rg, REG, &held_body("held/three"))
        .await;
    assert_eq!(refused.status.as_u16(), 429, "{refused}");
    release.send(true).expect("release");
    let mut op_names = Vec::new();
    for accepted in [&one, &two] {
        let status = env
            .arm
            .poll_until_done(&accepted.async_operation(), IMPORT_TIMEOUT)
            .await;
        assert_failed(&status, "SourceImageNotFound");
        op_names.push(status["name"].as_str().unwrap_or_default().to_owned());
    }

    // One HEAD through a login server; one request no route matches, with a made-up method.
    assert!(env
        .backend_client()
        .manifest_exists(&target("imported/app"), "v1")
        .await
        .expect("HEAD"));
    let odd = http_client()
        .request(
            reqwest::Method::from_bytes(b"BREW").expect("method"),
            format!("{}/no/such/path", env.service.base_url()),
        )
        .send()
        .await
        .expect("BREW");
    assert_eq!(odd.status().as_u16(), 404);

    let after = Scrape::get(&arm_metrics).await;
    let d = |name: &str, labels: &[(&str, &str)], expected: f64| {
        assert_delta(&before, &after, name, labels, expected)
    };

    // Queue: 5 accepted (A, B, A again, two held), 1 refused by the queue's limit; 3
    // succeeded, 2 failed with their ARM code; each claimed once, none re-claimed.
    d(
        "acr_import_operations_enqueued_total",
        &[IMPORT, ("outcome", "accepted"), ("limit", "none")],
        5.0,
    );
    d(
        "acr_import_operations_enqueued_total",
        &[IMPORT, ("outcome", "rejected"), ("limit", "queue")],
        1.0,
    );
    d(
        "acr_import_operations_enqueued_total",
        &[("outcome", "rejected"), ("limit", "subscription")],
        0.0,
    );
    d(
        "acr_import_operations_finished_total",
        &[IMPORT, ("status", "succeeded"), ("code", "none")],
        3.0,
    );
    d(
        "acr_import_operations_finished_total",
        &[
            IMPORT,
            ("status", "failed"),
            ("code", "SourceImageNotFound"),
        ],
        2.0,
    );
    d("acr_import_operations_finished_total", &[], 5.0);
    d("acr_import_operation_claims_total", &[IMPORT], 5.0);
    d("acr_import_operation_reclaims_total", &[], 0.0);
    d("acr_import_operation_leases_lost_total", &[], 0.0);
    d("acr_import_operation_releases_total", &[], 0.0);
    d(
        "acr_import_operation_queue_wait_seconds_count",
        &[IMPORT],
        5.0,
    );
    d(
        "acr_import_operation_queue_wait_seconds_bucket",
        &[IMPORT, ("le", "3600")],
        5.0,
    );
    d(
        "acr_import_operation_run_duration_seconds_count",
        &[IMPORT, ("status", "succeeded")],
        3.0,
    );
    d(
        "acr_import_operation_run_duration_seconds_count",
        &[IMPORT, ("status", "failed")],
        2.0,
    );
    for state in ["queued", "running"] {
        assert_eq!(
            after.sum("acr_import_queue_operations", &[("state", state)]),
            0.0,
            "{state}: {}",
            after.lines_of("acr_import_queue")
        );
    }
    assert_eq!(
        after.sum("acr_import_queue_oldest_queued_age_seconds", &[]),
        0.0
    );

    // Copy: A's 3 blobs copied once and mounted once, B's config copied and its 2 layers
    // skipped; manifests: A twice, B once, A again skipped.
    let a_bytes = a.total_blob_bytes() as f64;
    let b_config = b.blobs[0].size as f64;
    d("acr_import_copy_blobs_total", &[("result", "copied")], 4.0);
    d(
        "acr_import_copy_blob_bytes_total",
        &[("result", "copied")],
        a_bytes + b_config,
    );
    d("acr_import_copy_blobs_total", &[("result", "mounted")], 3.0);
    d(
        "acr_import_copy_blob_bytes_total",
        &[("result", "mounted")],
        a_bytes,
    );
    d("acr_import_copy_blobs_total", &[("result", "skipped")], 2.0);
    d(
        "acr_import_copy_blob_bytes_total",
        &[("result", "skipped")],
        layer_bytes as f64,
    );
    d("acr_import_copy_blobs_total", &[("result", "failed")], 0.0);
    d(
        "acr_import_copy_manifests_total",
        &[("result", "copied")],
        3.0,
    );
    d(
        "acr_import_copy_manifests_total",
        &[("result", "skipped")],
        1.0,
    );
    d("acr_import_copy_range_resumes_total", &[], 0.0);
    d("acr_import_copy_stalls_total", &[], 0.0);
    assert_eq!(after.sum("acr_import_copy_transfers_in_flight", &[]), 0.0);
    // Source requests: a manifest GET per import plus a GET per blob copied from it (A: 1 + 3,
    // B: 1 + 1, A again: 1), and the held source's two 404s. The target answered everything.
    let source = ("role", "source");
    d(
        "acr_import_registry_requests_total",
        &[source, ("class", "2xx")],
        7.0,
    );
    d(
        "acr_import_registry_requests_total",
        &[source, ("class", "4xx")],
        2.0,
    );
    d("acr_import_registry_requests_total", &[source], 9.0);
    let target = ("role", "target");
    assert!(
        delta(
            &before,
            &after,
            "acr_import_registry_requests_total",
            &[target, ("class", "2xx")]
        ) > 0.0
    );
    d(
        "acr_import_registry_requests_total",
        &[target, ("class", "5xx")],
        0.0,
    );
    d(
        "acr_import_registry_requests_total",
        &[target, ("class", "error")],
        0.0,
    );

    // HTTP, by route template: 5 imports accepted and 1 refused; the login server's HEAD;
    // the unmatched request with its method bounded.
    let arm = ("listener", "arm");
    let import_post = [arm, ("route", IMPORT_ROUTE), ("method", "POST")];
    d(
        "acr_import_http_requests_total",
        &[import_post.as_slice(), &[("status", "202")]].concat(),
        5.0,
    );
    d(
        "acr_import_http_requests_total",
        &[import_post.as_slice(), &[("status", "429")]].concat(),
        1.0,
    );
    d(
        "acr_import_http_request_duration_seconds_count",
        &import_post,
        6.0,
    );
    d(
        "acr_import_http_requests_total",
        &[
            ("listener", "registry"),
            ("route", "/v2/{name}/manifests/{reference}"),
            ("method", "HEAD"),
            ("status", "200"),
        ],
        1.0,
    );
    d(
        "acr_import_http_requests_total",
        &[
            arm,
            ("route", "unmatched"),
            ("method", "other"),
            ("status", "404"),
        ],
        1.0,
    );

    assert_bounded_labels(&after, &env, &src.host(), &held, &op_names);

    // The metrics listener serves the same document (and nothing else).
    let own = Scrape::get(&own_metrics).await;
    assert_eq!(own.sum("acr_import_build_info", &version), 1.0);
    let finished = "acr_import_operations_finished_total";
    assert_eq!(own.sum(finished, &[IMPORT]), after.sum(finished, &[IMPORT]));
    let again = Scrape::get(&own_metrics).await;
    assert_eq!(
        delta(
            &own,
            &again,
            "acr_import_http_requests_total",
            &[
                ("listener", "metrics"),
                ("route", "/metrics"),
                ("method", "GET"),
                ("status", "200")
            ]
        ),
        1.0,
        "{}",
        again.lines_of("acr_import_http_requests_total")
    );
    let other = http_client()
        .get(format!("http://127.0.0.1:{metrics_port}/health"))
        .send()
        .await
        .expect("GET");
    assert_eq!(other.status().as_u16(), 404);
}

/// No label value names a registry, repository, subscription, host or operation, and the
/// route labels are templates.
fn assert_bounded_labels(s: &Scrape, env: &TestEnv, source: &str, held: &str, ops: &[String]) {
    let mut forbidden: Vec<String> = vec![
        REG.to_ascii_lowercase(),
        "imported".into(),
        "demo/".into(),
        "held/".into(),
        env.sub.clone(),
        env.rg.clone(),
        source.to_owned(),
        held.to_owned(),
        "127.0.0.1".into(),
    ];
    for op in ops {
        assert!(!op.is_empty());
        forbidden.push(op.clone());
        forbidden.push(op.trim_start_matches("registries-").to_owned());
    }
    let mut checked = 0;
    for sample in &s.samples {
        assert!(sample.name.starts_with("acr_import_"), "{}", sample.name);
        for (key, value) in &sample.labels {
            let lower = value.to_ascii_lowercase();
            for f in &forbidden {
                assert!(
                    !lower.contains(&f.to_ascii_lowercase()),
                    "{}{{{key}={value:?}}} names {f:?}",
                    sample.name
                );
            }
            if key == "route" {
                assert!(
                    value.starts_with('/') || value == "unmatched",
                    "route {value:?}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} labels: {}", s.text);
}
