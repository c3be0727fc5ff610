//! The process itself under fire: SIGKILL at pseudo-random moments of a batch, two processes
//! on one database (work spreads; a frozen one is fenced out), SIGTERM under load.

use std::time::Duration;

use acr_import_tests::util::poll_until;
use acr_import_tests::{ArmClient, TestDatabase, TestRegistry, TestService};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::{Rng, SeedableRng};

use super::{
    assert_all_copied, assert_all_succeeded, batch, chaos_config, operation_rows, report,
    start_all, throttled_source, wait_all,
};
use crate::common::REG;

/// Fixed seed: the kill delays are the same on every run.
const KILL_SEED: u64 = 0x5eed_c4a0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sigkill_during_batch() {
    let scenario = "sigkill-restart";
    let jobs = batch(41, 20);
    let (db, backend, (_src, proxy)) = tokio::join!(
        TestDatabase::create(),
        TestRegistry::anonymous(),
        // About 12 s of copying at this rate: the kills land mid-batch.
        throttled_source(&jobs, Some(512 << 10)),
    );
    let config = chaos_config(db.url(), &backend).workers(4);
    let mut svc = TestService::start(config.clone()).await;
    let arm = ArmClient::new(&svc.base_url());
    let sub = uuid::Uuid::new_v4().to_string();
    let rg = "chaos-rg";
    arm.create_registry(&sub, rg, REG).await;
    let urls = start_all(&arm, &sub, rg, &proxy.host(), &jobs).await;

    let mut rng = rand::rngs::StdRng::seed_from_u64(KILL_SEED);
    let cycles = 3;
    for cycle in 0..cycles {
        let delay = Duration::from_millis(rng.gen_range(2000..4500));
        tokio::time::sleep(delay).await;
        let before = operation_rows(db.url()).await;
        let done = before
            .iter()
            .filter(|(s, _)| s == "Succeeded" || s == "Failed")
            .count();
        eprintln!(
            "chaos: cycle {cycle}: SIGKILL after {delay:?} ({done}/{} operations ended)",
            before.len()
        );
        svc.kill_9();
        svc = TestService::start(config.clone()).await;
    }
    proxy.set_rate(None);
    let statuses = wait_all(&[svc.base_url()], &urls, Duration::from_secs(45)).await;
    report(scenario, &statuses);
    assert_all_succeeded(scenario, &statuses);
    assert_all_copied(&backend, &jobs).await;
    let rows = operation_rows(db.url()).await;
    assert_eq!(
        rows.len(),
        jobs.len(),
        "one row per accepted import: {rows:?}"
    );
    let retried = rows.iter().filter(|(_, a)| *a > 1).count();
    eprintln!("chaos: {retried} operations needed more than one attempt");
    assert!(retried > 0, "no kill interrupted an operation: {rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_two_processes_share_the_queue() {
    let scenario = "two-processes";
    let jobs = batch(51, 16);
    let (db, backend, (_src, proxy)) = tokio::join!(
        TestDatabase::create(),
        TestRegistry::anonymous(),
        throttled_source(&jobs, Some(2 << 20)),
    );
    let config = chaos_config(db.url(), &backend).workers(2);
    let (a, b) = tokio::join!(
        TestService::start(config.clone()),
        TestService::start(config.clone())
    );
    let arm_a = ArmClient::new(&a.base_url());
    let arm_b = ArmClient::new(&b.base_url());
    let sub = uuid::Uuid::new_v4().to_string();
    let rg = "chaos-rg";
    arm_a.create_registry(&sub, rg, REG).await;
    // Half the requests to each process.
    let (first, second) = jobs.split_at(jobs.len() / 2);
    let mut urls = start_all(&arm_a, &sub, rg, &proxy.host(), first).await;
    urls.extend(start_all(&arm_b, &sub, rg, &proxy.host(), second).await);
    let statuses = wait_all(
        &[a.base_url(), b.base_url()],
        &urls,
        Duration::from_secs(50),
    )
    .await;
    report(scenario, &statuses);
    assert_all_succeeded(scenario, &statuses);
    assert_all_copied(&backend, &jobs).await;
    let (log_a, log_b) = (a.log(), b.log());
    let done_a = log_a.matches("import succeeded").count();
    let done_b = log_b.matches("import succeeded").count();
    eprintln!("chaos: process A completed {done_a}, process B {done_b}");
    assert!(
        done_a > 0 && done_b > 0,
        "work did not spread: A {done_a}, B {done_b}"
    );
    assert_eq!(
        done_a + done_b,
        jobs.len(),
        "each operation completes exactly once"
    );
    let rows = operation_rows(db.url()).await;
    assert!(
        rows.iter().all(|(s, a)| s == "Succeeded" && *a == 1),
        "every operation ran once: {rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_frozen_process_is_fenced_out() {
    let scenario = "frozen-process-fencing";
    let jobs = batch(61, 1);
    let (db, backend, (_src, proxy)) = tokio::join!(
        TestDatabase::create(),
        TestRegistry::anonymous(),
        throttled_source(&jobs, Some(64 << 10)),
    );
    let config = chaos_config(db.url(), &backend).workers(2);
    let a = TestService::start(config.clone()).await;
    let arm_a = ArmClient::new(&a.base_url());
    let sub = uuid::Uuid::new_v4().to_string();
    let rg = "chaos-rg";
    arm_a.create_registry(&sub, rg, REG).await;
    let urls = start_all(&arm_a, &sub, rg, &proxy.host(), &jobs).await;
    arm_a
        .poll_until(&urls[0], Duration::from_secs(30), "InProgress", |v| {
            v["status"] == "InProgress"
        })
        .await;
    poll_until(
        "layer bytes to flow",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async { (proxy.bytes_to_client() > 32 << 10).then_some(()) },
    )
    .await;
    // B is up before A freezes: it must take over only once A's lease has expired.
    let b = TestService::start(config.clone()).await;
    let pid_a = Pid::from_raw(a.pid() as i32);
    kill(pid_a, Signal::SIGSTOP).expect("SIGSTOP A");
    let continued = scopeguard(pid_a);
    proxy.set_rate(None);
    let arm_b = ArmClient::new(&b.base_url());
    let status = arm_b
        .poll_until_done(&arm_b.rebase(&urls[0]), Duration::from_secs(40))
        .await;
    assert_eq!(status["status"], "Succeeded", "B finished it: {status}");
    assert!(
        b.log().contains("import succeeded"),
        "B's log shows no completion:\n{}",
        b.log()
    );
    drop(continued); // SIGCONT A
    poll_until(
        "A to notice it lost the operation",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let log = a.log();
            (log.contains("lease lost") || log.contains("finish refused")).then_some(())
        },
    )
    .await;
    let rows = operation_rows(db.url()).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "Succeeded", "{rows:?}");
    assert!(rows[0].1 >= 2, "B ran a second attempt: {rows:?}");
    // The result is still B's after A woke up.
    let after = arm_b.get(&arm_b.rebase(&urls[0])).await.json();
    assert_eq!(after["status"], "Succeeded", "{after}");
    assert_eq!(
        after["endTime"], status["endTime"],
        "A changed the result: {after}"
    );
    assert!(
        !a.log().contains("import succeeded") || a.log().contains("finish refused"),
        "A finished without being refused:\n{}",
        a.log()
    );
    assert_all_copied(&backend, &jobs).await;
    report(scenario, &[Some(after)]);
}

/// Sends SIGCONT to `pid` when dropped (also when the test panics, so the process can die).
fn scopeguard(pid: Pid) -> impl Drop {
    struct Cont(Pid);
    impl Drop for Cont {
        fn drop(&mut self) {
            let _ = kill(self.0, Signal::SIGCONT);
        }
    }
    Cont(pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sigterm_under_load_loses_nothing() {
    let scenario = "sigterm-under-load";
    let jobs = batch(71, 10);
    let (db, backend, (_src, proxy)) = tokio::join!(
        TestDatabase::create(),
        TestRegistry::anonymous(),
        throttled_source(&jobs, Some(512 << 10)),
    );
    let config = chaos_config(db.url(), &backend)
        .workers(4)
        .flag("--shutdown-grace-seconds", 1);
    let mut svc = TestService::start(config.clone()).await;
    let arm = ArmClient::new(&svc.base_url());
    let sub = uuid::Uuid::new_v4().to_string();
    let rg = "chaos-rg";
    arm.create_registry(&sub, rg, REG).await;
    let urls = start_all(&arm, &sub, rg, &proxy.host(), &jobs).await;
    poll_until(
        "layer bytes to flow",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async { (proxy.bytes_to_client() > 256 << 10).then_some(()) },
    )
    .await;
    let exit = svc.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "exit status {exit}");
    let released = svc.log().contains("releasing the operation");
    proxy.set_rate(None);
    let svc = TestService::start(config).await;
    let statuses = wait_all(&[svc.base_url()], &urls, Duration::from_secs(40)).await;
    report(scenario, &statuses);
    assert_all_succeeded(scenario, &statuses);
    assert_all_copied(&backend, &jobs).await;
    eprintln!("chaos: the first process released running operations: {released}");
}
