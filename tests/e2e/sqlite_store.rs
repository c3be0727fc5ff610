//! The service without DATABASE_URL: operations and registries in the embedded SQLite store
//! of its data directory. It imports, keeps its finished operations across restarts (a clean
//! stop and a SIGKILL), and refuses a second process on the same data directory.

use std::process::Stdio;
use std::time::Duration;

use acr_import_tests::env::IMPORT_TIMEOUT;
use acr_import_tests::image::Format;
use acr_import_tests::service::service_bin;
use acr_import_tests::{ArmClient, ServiceConfig, TestImage, TestRegistry, TestService};

use crate::common::{anonymous_source, assert_succeeded, target, uri_import, REG};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_without_database_url_survives_restarts_and_refuses_a_second_process() {
    let image = TestImage::single(611, Format::Oci, &[1500, 70_000]);
    let (backend, src) = tokio::join!(
        TestRegistry::anonymous(),
        anonymous_source("demo/lite", "v1", &image)
    );
    let data = tempfile::Builder::new()
        .prefix("acr-sqlite-")
        .tempdir()
        .expect("temp dir");
    // Not there yet: the service creates it.
    let data_dir = data.path().join("data");
    let config = ServiceConfig::sqlite(&data_dir, &backend.url());
    let sub = uuid::Uuid::new_v4().to_string();
    let rg = "acr-tests-rg";

    let mut first = TestService::start(config.clone()).await;
    assert!(
        first.log().contains("store: SQLite"),
        "the log says which store is used:\n{}",
        first.log()
    );
    assert!(data_dir.join("acr-import.db").is_file(), "the store's file");
    let arm = ArmClient::new(&first.base_url());
    arm.create_registry(&sub, rg, REG).await;
    let accepted = arm
        .import(
            &sub,
            rg,
            REG,
            &uri_import(&src.host(), "demo/lite:v1", &["imported/lite:v1"]),
        )
        .await;
    assert_eq!(
        accepted.status.as_u16(),
        202,
        "import not accepted: {accepted}"
    );
    let status = arm
        .poll_until_done(&accepted.async_operation(), IMPORT_TIMEOUT)
        .await;
    assert_succeeded(&status);
    backend
        .client()
        .assert_has_image(&target("imported/lite"), Some("v1"), &image)
        .await;

    // A clean stop, and a restart on the same data directory: the finished operation and the
    // registry are still served, and the workers run new imports.
    let exit = first.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit}");
    let mut second = TestService::start(config.clone()).await;
    let arm = ArmClient::new(&second.base_url());
    let again = arm.get(&arm.rebase(&accepted.async_operation())).await;
    assert_eq!(again.status.as_u16(), 200, "{again}");
    let again = again.json();
    assert_eq!(again, status, "the same operation status after the restart");
    let result = arm.get(&arm.rebase(&accepted.location())).await;
    assert_eq!(result.status.as_u16(), 200, "Location URL: {result}");
    let reg = arm.get_registry(&sub, rg, REG).await;
    assert_eq!(reg.status.as_u16(), 200, "{reg}");

    let other = TestImage::single(612, Format::Oci, &[2048]);
    src.client()
        .push_image("demo/lite", "v2", &other)
        .await
        .expect("push");
    let accepted2 = arm
        .import(
            &sub,
            rg,
            REG,
            &uri_import(&src.host(), "demo/lite:v2", &["imported/lite:v2"]),
        )
        .await;
    assert_eq!(accepted2.status.as_u16(), 202, "{accepted2}");
    assert_succeeded(
        &arm.poll_until_done(&accepted2.async_operation(), IMPORT_TIMEOUT)
            .await,
    );

    // A second process on the same data directory is refused at start, naming the first.
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(service_bin())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(["--backend-registry", &backend.url()])
            .arg("--data-dir")
            .arg(&data_dir)
            .env_remove("DATABASE_URL")
            .current_dir(data.path())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the second process exits at once")
    .expect("run the second process");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    let canonical = std::fs::canonicalize(&data_dir).expect("canonical data dir");
    let expected = format!(
        "another acr-import process (pid {}) is using the SQLite store in {}; SQLite serves one process — set DATABASE_URL to a PostgreSQL database to run several",
        second.pid(),
        canonical.display()
    );
    assert!(
        stderr.contains(&expected),
        "expected {expected:?} in:\n{stderr}"
    );
    assert!(second.is_running(), "the first process is not disturbed");

    // Killed without a chance to clean up: the lock goes with the process, and every committed
    // write is still there.
    second.kill_9();
    let third = TestService::start(config).await;
    let arm = ArmClient::new(&third.base_url());
    for (accepted, tag) in [(&accepted, "v1"), (&accepted2, "v2")] {
        let s = arm
            .poll_until_done(&arm.rebase(&accepted.async_operation()), IMPORT_TIMEOUT)
            .await;
        assert_eq!(s["status"], "Succeeded", "{tag}: {s}");
    }
}

/// The name and niceness of each of `pid`'s threads, the main thread's first, from
/// `/proc/<pid>/task/*/stat` (the name in parentheses, the niceness the 19th field).
fn thread_niceness(pid: u32) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc tasks") {
        let Ok(stat) = std::fs::read_to_string(task.expect("task").path().join("stat")) else {
            continue; // the thread ended
        };
        let (open, close) = (stat.find('(').expect("("), stat.rfind(')').expect(")"));
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // Fields from the 3rd (state) on: the 19th is at index 16.
        let thread = (
            stat[open + 1..close].to_owned(),
            fields[16].parse().expect("niceness"),
        );
        if stat[..open].trim() == pid.to_string() {
            out.insert(0, thread);
        } else {
            out.push(thread);
        }
    }
    out
}

/// `--copy-nice`: the workers' threads run that many steps below the process's priority, and
/// nothing the API waits for does: the main and API threads, SQLite's connection threads and
/// the workers' SQLite writer thread (started outside the workers' runtime, a thread
/// inheriting its creator's priority). With 0 every thread has the same.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_threads_run_below_the_apis_priority() {
    let data = tempfile::Builder::new()
        .prefix("acr-nice-")
        .tempdir()
        .expect("temp dir");
    for (nice, dir) in [(10, "a"), (0, "b")] {
        let config = ServiceConfig::sqlite(&data.path().join(dir), "")
            .builtin_registry(false)
            .flag("--copy-nice", nice);
        let mut svc = TestService::start(config).await;
        let threads = thread_niceness(svc.pid());
        let main = threads[0].1;
        let copies: Vec<i32> = threads
            .iter()
            .filter(|(n, _)| n == "acr-copy")
            .map(|t| t.1)
            .collect();
        assert!(!copies.is_empty(), "{threads:?}");
        assert!(
            copies.iter().all(|&n| n == (main + nice).min(19)),
            "--copy-nice {nice}: {threads:?}"
        );
        let others: Vec<&(String, i32)> = threads.iter().filter(|(n, _)| n != "acr-copy").collect();
        assert!(
            others.iter().any(|(n, _)| n.starts_with("acr-sqlite-wri")),
            "the workers' writer thread: {threads:?}"
        );
        assert!(
            others.iter().all(|&(_, n)| *n == main),
            "only the workers' threads are lowered: {threads:?}"
        );
        svc.terminate(Duration::from_secs(30)).await;
    }
}
