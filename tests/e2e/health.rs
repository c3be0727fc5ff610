//! Liveness, readiness and the ready line, and the container image's configuration: the
//! binary started with exactly the environment the Dockerfile sets (its data directory and
//! ports moved so tests can run side by side) prints one ready line naming every listener,
//! each of which answers, and the health check the image runs answers 200.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use acr_import_tests::service::service_bin;
use acr_import_tests::{ServiceConfig, TestRegistry, TestService};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const READY: &str = "acr-import ready: ";

/// The `ENV` the Dockerfile sets, `/var/lib/acr-import` replaced by `data`, every listener
/// moved to port 0 on the same interface.
fn dockerfile_env(data: &std::path::Path) -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    let env_block = dockerfile
        .split("\nENV ")
        .nth(1)
        .expect("an ENV instruction")
        .split("\nVOLUME")
        .next()
        .expect("ENV before VOLUME");
    let data = data.display().to_string();
    env_block
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| {
            let v = v.replace("/var/lib/acr-import", &data);
            let v = match v.rsplit_once(':') {
                Some((host, _)) if k.contains("LISTEN") => format!("{host}:0"),
                _ => v,
            };
            (k.to_string(), v)
        })
        .collect()
}

fn parse_ready_line(line: &str) -> BTreeMap<String, String> {
    line.trim_end()
        .strip_prefix(READY)
        .unwrap_or_else(|| panic!("not a ready line: {line:?}"))
        .split(", ")
        .map(|f| {
            let (k, v) = f.split_once('=').unwrap_or_else(|| panic!("field {f:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// `http://0.0.0.0:PORT` → `http://127.0.0.1:PORT` (a wildcard listener is reached on the
/// loopback).
fn on_loopback(url: &str) -> String {
    url.replace("0.0.0.0", "127.0.0.1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_configuration_prints_one_ready_line_and_every_listener_answers() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("VOLUME /var/lib/acr-import\n"),
        "the data directory is a volume"
    );
    let healthcheck = dockerfile
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK"))
        .expect("HEALTHCHECK");
    assert!(
        healthcheck.contains("http://127.0.0.1:8080/health/ready"),
        "{healthcheck}"
    );

    let dir = tempfile::Builder::new()
        .prefix("acr-image-")
        .tempdir()
        .expect("temp dir");
    let env = dockerfile_env(dir.path());
    assert!(
        env.iter()
            .any(|(k, v)| k == "ACR_IMPORT_TLS_SELF_SIGNED" && v == "true"),
        "{env:?}"
    );
    let mut cmd = tokio::process::Command::new(service_bin());
    cmd.arg("serve")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "info")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("log"))
        .kill_on_drop(true);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn acr-import");
    let stdout = child.stdout.take().expect("stdout");
    let mut out = BufReader::new(stdout);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(60), out.read_line(&mut line))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no ready line within 60 s\n{}",
                std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default()
            )
        })
        .expect("read stdout");
    let fields = parse_ready_line(&line);
    assert_eq!(
        fields.keys().map(String::as_str).collect::<Vec<_>>(),
        ["arm", "arm-tls", "registry", "registry-tls"],
        "{line}"
    );
    for (name, scheme) in [
        ("arm", "http://0.0.0.0:"),
        ("arm-tls", "https://0.0.0.0:"),
        ("registry", "http://0.0.0.0:"),
        ("registry-tls", "https://0.0.0.0:"),
    ] {
        let v = &fields[name];
        let port: u16 = v
            .strip_prefix(scheme)
            .unwrap_or_else(|| panic!("{name}={v}"))
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: port"));
        assert_ne!(port, 0, "{name}: the bound port, not the configured 0");
    }

    // The CA the image exports to its volume; every listener answers with it.
    let ca =
        std::fs::read(dir.path().join("tls").join("ca.pem")).expect("tls/ca.pem in the volume");
    let http = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA pem"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    for base in [&fields["arm"], &fields["arm-tls"]] {
        let base = on_loopback(base);
        let ready = http
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .expect("GET /health/ready");
        assert_eq!(ready.status().as_u16(), 200, "{base}");
        let body: serde_json::Value = ready.json().await.expect("json");
        assert_eq!(body["status"], "ready", "{body}");
        let checks: BTreeMap<String, String> = body["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        assert_eq!(
            checks,
            [
                ("login-servers", "ok"),
                ("registry", "ok"),
                ("store", "ok"),
                ("workers", "ok")
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
            "{body}"
        );
        let live = http
            .get(format!("{base}/health/live"))
            .send()
            .await
            .expect("GET /health/live");
        assert_eq!(live.status().as_u16(), 200);
    }
    for base in [&fields["registry"], &fields["registry-tls"]] {
        let base = on_loopback(base);
        let v2 = http
            .get(format!("{base}/v2/"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {base}/v2/: {e}"));
        assert!(
            [200, 401].contains(&v2.status().as_u16()),
            "{base}: {}",
            v2.status()
        );
    }

    // Printed once: nothing more on stdout until the process ends.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().expect("pid") as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let mut rest = String::new();
    tokio::time::timeout(Duration::from_secs(30), out.read_to_string(&mut rest))
        .await
        .expect("stdout closes at exit")
        .expect("read stdout");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status}");
    assert!(!rest.contains(READY), "a second ready line: {rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_a_backend_that_stopped_answering_and_liveness_does_not_care() {
    let backend = TestRegistry::anonymous().await;
    let db = acr_import_tests::postgres::TestDatabase::create().await;
    let svc = TestService::start(ServiceConfig::new(db.url(), &backend.url())).await;
    let http = acr_import_tests::util::http_client();
    let ready = |http: reqwest::Client, base: String| async move {
        let resp = http
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .expect("GET /health/ready");
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        (
            status,
            retry,
            resp.json::<serde_json::Value>().await.expect("json"),
        )
    };
    let (status, _, body) = ready(http.clone(), svc.base_url()).await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["store", "workers", "backend", "login-servers"],
        "{body}"
    );

    drop(backend);
    let started = std::time::Instant::now();
    let (status, retry, body) = ready(http.clone(), svc.base_url()).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answers within a health check's timeout"
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry.as_deref(), Some("5"));
    assert_eq!(body["error"]["code"], "ServiceUnavailable", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Not ready. backend: GET http://127.0.0.1:"),
        "the reason names the backend: {message}"
    );
    assert!(
        !message.contains("store:") && !message.contains("workers:"),
        "{message}"
    );
    let live = http
        .get(format!("{}/health/live", svc.base_url()))
        .send()
        .await
        .expect("live");
    assert_eq!(live.status().as_u16(), 200);
}
