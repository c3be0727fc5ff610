//! Debian's `docker-registry` (CNCF distribution 2.8.2) as a child process per instance.
//!
//! Each instance gets its own temp dir (config, storage, htpasswd, log) and port, and is
//! killed when dropped. Flavours: anonymous, htpasswd Basic (bcrypt via `htpasswd -Bbn`),
//! and token auth backed by a [`TokenServer`] the registry owns.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::oci::{Credentials, OciClient};
use crate::token_server::{TokenServer, TokenServerConfig};
use crate::util::{free_port, http_client, tail_file};

enum Auth {
    Anonymous,
    Htpasswd,
    Token(TokenServer),
}

pub struct TestRegistry {
    child: Child,
    port: u16,
    creds: Option<Credentials>,
    auth: Auth,
    log_path: PathBuf,
    dir: tempfile::TempDir,
}

fn registry_bin() -> String {
    std::env::var("DOCKER_REGISTRY_BIN").unwrap_or_else(|_| "docker-registry".to_string())
}

impl TestRegistry {
    /// No authentication.
    pub async fn anonymous() -> Self {
        Self::spawn(Auth::Anonymous, None).await
    }

    /// No authentication, with `extra_yaml` appended to the registry's config (top-level
    /// sections such as `validation:`; indent with two spaces).
    pub async fn anonymous_with_config(extra_yaml: &str) -> Self {
        Self::spawn_with(Auth::Anonymous, None, extra_yaml).await
    }

    /// An anonymous registry that accepts manifests with foreign (non-distributable) layers
    /// whose `urls` are http(s) URLs (docker-registry refuses them unless allowed).
    pub async fn anonymous_allowing_foreign_layers() -> Self {
        Self::anonymous_with_config(
            "validation:\n  manifests:\n    urls:\n      allow:\n        - ^https?://\n",
        )
        .await
    }

    /// Basic auth with a bcrypt htpasswd entry for `user`/`pass`.
    pub async fn htpasswd(user: &str, pass: &str) -> Self {
        Self::spawn(Auth::Htpasswd, Some(Credentials::new(user, pass))).await
    }

    /// Token auth with a fresh token server (default config: tokenuser/tokenpass).
    pub async fn token() -> Self {
        Self::token_with(TokenServerConfig::default()).await
    }

    /// Token auth with a token server configured by `config`.
    pub async fn token_with(config: TokenServerConfig) -> Self {
        let ts = TokenServer::start_with(config).await;
        let creds = ts.credentials();
        Self::spawn(Auth::Token(ts), Some(creds)).await
    }

    async fn spawn(auth: Auth, creds: Option<Credentials>) -> Self {
        Self::spawn_with(auth, creds, "").await
    }

    async fn spawn_with(auth: Auth, creds: Option<Credentials>, extra_yaml: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("acr-registry-")
            .tempdir()
            .expect("temp dir");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("storage dir");
        let auth_yaml = match &auth {
            Auth::Anonymous => String::new(),
            Auth::Htpasswd => {
                let c = creds.as_ref().expect("htpasswd needs credentials");
                let out = Command::new("htpasswd")
                    .args(["-Bbn", &c.username, &c.password])
                    .output()
                    .expect("run htpasswd (apt-get install apache2-utils)");
                assert!(out.status.success(), "htpasswd failed: {out:?}");
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, &out.stdout).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: acr-test\n    path: {}\n",
                    path.display()
                )
            }
            Auth::Token(ts) => format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                ts.realm(),
                ts.service(),
                ts.issuer(),
                ts.cert_path().display()
            ),
        };
        let log_path = dir.path().join("registry.log");
        let mut last_err = String::new();
        // The port is free when chosen but could be taken before the registry binds it:
        // try again with another port when the registry exits early.
        for _attempt in 0..3 {
            let port = free_port();
            let secret = crate::util::random_suffix(32);
            let config = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\n{auth_yaml}{extra_yaml}",
                storage.display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).expect("write registry config");
            let log = std::fs::File::create(&log_path).expect("registry log");
            let mut child = Command::new(registry_bin())
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log"))
                .stderr(log)
                .spawn()
                .expect("spawn docker-registry (apt-get install docker-registry)");
            match wait_ready(&mut child, port, &log_path, Duration::from_secs(20)).await {
                Ok(()) => {
                    return Self {
                        child,
                        port,
                        creds,
                        auth,
                        log_path,
                        dir,
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_err = format!("{e}\n--- registry log ---\n{}", tail_file(&log_path, 50));
                }
            }
        }
        panic!("docker-registry did not start: {last_err}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }
    /// `127.0.0.1:PORT`, the form an import's `registryUri` takes.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    /// The credentials that work on this registry (None when anonymous).
    pub fn credentials(&self) -> Option<&Credentials> {
        self.creds.as_ref()
    }
    /// The token server, for a token-auth registry.
    pub fn token_server(&self) -> Option<&TokenServer> {
        match &self.auth {
            Auth::Token(ts) => Some(ts),
            _ => None,
        }
    }
    /// A client with this registry's credentials.
    pub fn client(&self) -> OciClient {
        OciClient::new(&self.url(), self.creds.clone())
    }
    /// A client without credentials.
    pub fn anonymous_client(&self) -> OciClient {
        OciClient::new(&self.url(), None)
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ready when our process logged that it listens (so a 200 can't come from another process
/// that grabbed the port) and `GET /v2/` answers 200 or 401.
async fn wait_ready(
    child: &mut Child,
    port: u16,
    log_path: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let http = http_client();
    let url = format!("http://127.0.0.1:{port}/v2/");
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("docker-registry exited early with {status}"));
        }
        let listening = std::fs::read_to_string(log_path)
            .map(|l| l.contains("listening on"))
            .unwrap_or(false);
        if !listening {
            // not yet
        } else if let Ok(resp) = http.get(&url).timeout(Duration::from_secs(2)).send().await {
            let s = resp.status().as_u16();
            if s == 200 || s == 401 {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "GET {url} did not answer 200/401 within {timeout:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
