//! The acr-import binary under test, as a child process.
//!
//! Binary: `$ACR_IMPORT_BIN`, else `<workspace>/target/debug/acr-import` (or under
//! `$CARGO_TARGET_DIR`). Started with `serve --listen 127.0.0.1:<free port> --database-url
//! … --backend-registry … --workers … --retry-after … [--lease-seconds …]` (without
//! `--database-url` and with `DATABASE_URL` unset for [`ServiceConfig::sqlite`]); ready when
//! `GET /health` answers 200. stdout and stderr go to `service.log` in the instance's temp
//! dir; its tail is printed when a test panics. Killed (SIGKILL) on Drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::{free_port, http_client, tail_file};

#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// PostgreSQL URL; `None`: the embedded SQLite store (see [`ServiceConfig::sqlite`]).
    pub database_url: Option<String>,
    /// e.g. `http://127.0.0.1:5000`; `None`: the built-in registry on `registry_port`
    /// (see [`ServiceConfig::builtin_registry`]).
    pub backend_registry: Option<String>,
    /// `--registry-listen 127.0.0.1:<port>`: the login servers' plain listener (which serves
    /// the built-in registry's content when there is no external backend); `None`: a free
    /// port chosen at each start.
    pub registry_port: Option<u16>,
    pub workers: u32,
    pub retry_after: u32,
    pub lease_seconds: Option<u32>,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// How long to wait for `/health`.
    pub ready_timeout: Duration,
}

impl ServiceConfig {
    pub fn new(database_url: &str, backend_registry: &str) -> Self {
        Self {
            database_url: Some(database_url.to_string()),
            backend_registry: Some(backend_registry.to_string()),
            registry_port: None,
            workers: 4,
            retry_after: 1,
            lease_seconds: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            ready_timeout: Duration::from_secs(30),
        }
    }
    /// The service on its embedded SQLite store in `data_dir` (`--data-dir`, no DATABASE_URL).
    pub fn sqlite(data_dir: &Path, backend_registry: &str) -> Self {
        Self {
            database_url: None,
            ..Self::new("", backend_registry)
        }
        .flag("--data-dir", data_dir.display())
    }
    /// The built-in registry (no `--backend-registry`) on a free port; with `auth`,
    /// `--registry-auth`.
    pub fn builtin_registry(mut self, auth: bool) -> Self {
        self.backend_registry = None;
        self.registry_port = Some(free_port());
        if auth {
            self.extra_args.push("--registry-auth".into());
        }
        self
    }
    pub fn lease_seconds(mut self, secs: u32) -> Self {
        self.lease_seconds = Some(secs);
        self
    }
    pub fn workers(mut self, n: u32) -> Self {
        self.workers = n;
        self
    }
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }
    /// `--name value` (e.g. `.flag("--registry-concurrency", 2)`).
    pub fn flag(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        self.extra_args.push(name.to_string());
        self.extra_args.push(value.to_string());
        self
    }
    /// Several extra arguments.
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.extra_args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }
    /// `ACR_IMPORT_BACKEND_USERNAME` / `ACR_IMPORT_BACKEND_PASSWORD`.
    pub fn backend_credentials(self, username: &str, password: &str) -> Self {
        self.env("ACR_IMPORT_BACKEND_USERNAME", username)
            .env("ACR_IMPORT_BACKEND_PASSWORD", password)
    }
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

/// Path of the binary under test.
pub fn service_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ACR_IMPORT_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        });
    target.join("debug").join("acr-import")
}

pub struct TestService {
    child: Option<Child>,
    pid: u32,
    port: u16,
    /// The login servers' plain port.
    registry_port: u16,
    /// The login servers' HTTPS port, when they have one.
    registry_tls_port: Option<u16>,
    log_path: PathBuf,
    config: ServiceConfig,
    _dir: tempfile::TempDir,
}

impl TestService {
    /// Spawns the service and waits for `/health` (panics with the log if it never answers).
    pub async fn start(config: ServiceConfig) -> Self {
        let bin = service_bin();
        assert!(
            bin.exists(),
            "{} does not exist: build it with `cargo build -p acr-import` (or set ACR_IMPORT_BIN)",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("acr-service-")
            .tempdir()
            .expect("temp dir");
        let log_path = dir.path().join("service.log");
        let port = free_port();
        let log = std::fs::File::create(&log_path).expect("service log");
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--workers", &config.workers.to_string()])
            .args(["--retry-after", &config.retry_after.to_string()]);
        if let Some(b) = &config.backend_registry {
            cmd.args(["--backend-registry", b]);
        }
        let registry_port = config.registry_port.unwrap_or_else(free_port);
        cmd.args(["--registry-listen", &format!("127.0.0.1:{registry_port}")]);
        // With TLS on the ARM API the login servers get an HTTPS listener too (default
        // 127.0.0.1:5443): each service gets its own port.
        let has = |flag: &str| config.extra_args.iter().any(|a| a == flag);
        let registry_tls_port = if has("--registry-listen-tls") {
            let i = config
                .extra_args
                .iter()
                .position(|a| a == "--registry-listen-tls")
                .unwrap_or_default();
            config
                .extra_args
                .get(i + 1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| p.parse().ok())
        } else if has("--listen-tls") || has("--tls-self-signed") || has("--tls-cert") {
            let p = free_port();
            cmd.args(["--registry-listen-tls", &format!("127.0.0.1:{p}")]);
            Some(p)
        } else {
            None
        };
        match &config.database_url {
            Some(url) => cmd.args(["--database-url", url]),
            None => cmd.env_remove("DATABASE_URL"),
        };
        if let Some(l) = config.lease_seconds {
            cmd.args(["--lease-seconds", &l.to_string()]);
        }
        cmd.args(&config.extra_args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            // Nothing may leave 127.0.0.1, whatever the machine's proxy settings say.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy");
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        for (k, v) in &config.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let pid = child.id();
        let mut svc = Self {
            child: Some(child),
            pid,
            port,
            registry_port,
            registry_tls_port,
            log_path,
            config,
            _dir: dir,
        };
        svc.wait_healthy().await;
        svc
    }

    async fn wait_healthy(&mut self) {
        let http = http_client();
        let url = format!("{}/health", self.base_url());
        let timeout = self.config.ready_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "acr-import exited before answering /health ({status})\n--- service log ---\n{}",
                        tail_file(&self.log_path, 80)
                    );
                }
            }
            if let Ok(resp) = http.get(&url).timeout(Duration::from_secs(2)).send().await {
                if resp.status().as_u16() == 200 {
                    return;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "acr-import did not answer 200 on {url} within {timeout:?}\n--- service log ---\n{}",
                    tail_file(&self.log_path, 80)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    /// The login servers' plain listener (`http://127.0.0.1:<port>`).
    pub fn login_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.registry_port)
    }

    /// The login servers' HTTPS address (`127.0.0.1:<port>`), when they have one.
    pub fn login_tls_addr(&self) -> Option<std::net::SocketAddr> {
        self.registry_tls_port
            .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)))
    }

    /// Where the emulated registries' content is read: the external backend, or the login
    /// servers in front of the built-in one.
    pub fn registry_url(&self) -> String {
        match &self.config.backend_registry {
            Some(b) => b.trim_end_matches('/').to_string(),
            None => self.login_url(),
        }
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn pid(&self) -> u32 {
        self.pid
    }
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL, and reap.
    pub fn kill_9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits (polling, up to `timeout`) for the exit; panics on timeout.
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("service already stopped");
        kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM).expect("send SIGTERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait for acr-import") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "acr-import did not exit within {timeout:?} after SIGTERM\n--- service log ---\n{}",
                    tail_file(&self.log_path, 80)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Peak resident set size so far (`VmHWM` of /proc/<pid>/status), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        status_kib(self.pid, "VmHWM:") * 1024
    }

    /// Current resident set size (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        status_kib(self.pid, "VmRSS:") * 1024
    }
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

impl Drop for TestService {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- acr-import log ({}, last 120 lines) ---\n{}\n--- end of acr-import log ---",
                self.log_path.display(),
                tail_file(&self.log_path, 120)
            );
        }
        self.kill_9();
    }
}
