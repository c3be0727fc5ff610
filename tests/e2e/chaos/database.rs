//! PostgreSQL stopped (as in a crash) and started again under load, on a private cluster so
//! that the shared server other tests use is left alone.

use std::time::{Duration, Instant};

use acr_import_tests::{ArmClient, PgCluster, TestRegistry};
use reqwest::Method;

use super::{
    assert_all_copied, assert_all_succeeded, assert_unavailable, batch, chaos_config, report,
    start_all, throttled_source, wait_all,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_postgres_restart_under_load() {
    let scenario = "postgres-restart";
    let jobs = batch(31, 10);
    let (pg, backend, (_src, proxy)) = tokio::join!(
        PgCluster::start(),
        TestRegistry::anonymous(),
        // Slow enough that copies are in flight when the database goes away.
        throttled_source(&jobs, Some(768 << 10)),
    );
    let svc = super::serve(chaos_config(&pg.url(), &backend).workers(3)).await;
    let arm = ArmClient::new(&svc.base_url());
    let sub = uuid::Uuid::new_v4().to_string();
    let rg = "chaos-rg";
    arm.create_registry(&sub, rg, crate::common::REG).await;
    let urls = start_all(&arm, &sub, rg, &proxy.host(), &jobs).await;
    // Some copies are running.
    acr_import_tests::util::poll_until(
        "layer bytes to flow",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async { (proxy.bytes_to_client() > 256 << 10).then_some(()) },
    )
    .await;

    pg.stop_server();
    let down_at = Instant::now();
    // While it is down: quick ARM-shaped 503s, no hang, no 500.
    let t = Instant::now();
    let post = arm
        .import(&sub, rg, crate::common::REG, &jobs[0].body(&proxy.host()))
        .await;
    assert_unavailable("POST importImage", &post, t.elapsed());
    let t = Instant::now();
    let status = arm.get(&urls[0]).await;
    assert_unavailable("GET operation status", &status, t.elapsed());
    let t = Instant::now();
    let reg = arm
        .send(
            Method::GET,
            &arm.registry_url(&sub, rg, crate::common::REG),
            &[],
            None,
            None,
        )
        .await;
    assert_unavailable("GET registry", &reg, t.elapsed());
    // Readiness says why, at once; liveness does not care.
    let t = Instant::now();
    let ready = arm.get(&format!("{}/health/ready", svc.base_url())).await;
    assert_unavailable("GET /health/ready", &ready, t.elapsed());
    let message = ready.error_message().unwrap_or_default();
    assert!(
        message.starts_with("Not ready. store: "),
        "the reason names the store: {ready}"
    );
    let live = arm.get(&format!("{}/health/live", svc.base_url())).await;
    assert_eq!(live.status.as_u16(), 200, "{live}");
    // Keep it down across a lease (3 s), so heartbeats and finishes fail too.
    let rest = Duration::from_secs(4).saturating_sub(down_at.elapsed());
    tokio::time::sleep(rest).await;

    pg.start_server().await;
    // Ready again by itself.
    acr_import_tests::util::poll_until(
        "/health/ready to answer 200 again",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let r = arm.get(&format!("{}/health/ready", svc.base_url())).await;
            (r.status.as_u16() == 200).then_some(())
        },
    )
    .await;
    proxy.set_rate(None);
    let statuses = wait_all(&[svc.base_url()], &urls, Duration::from_secs(50)).await;
    report(scenario, &statuses);
    assert_all_succeeded(scenario, &statuses);
    assert_all_copied(&backend, &jobs).await;

    // The API works again without a restart.
    let reg = arm.get_registry(&sub, rg, crate::common::REG).await;
    assert_eq!(reg.status.as_u16(), 200, "{reg}");
    let log = svc.log();
    assert!(!log.contains("panicked"), "the service panicked:\n{log}");
}
