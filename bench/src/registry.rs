//! A loopback `docker-registry` on a fixed port that can be wiped: stopped, its storage
//! deleted, and started again fresh on the same port (the harness's `TestRegistry` picks a
//! new port per instance, so the bench keeps its own).
//!
//! Both peers use the same minimal config: anonymous, plain HTTP, `log.level: warn` and no
//! access log (per-request logging would cost both tools alike, but only noise), deletes
//! enabled and upload purging off.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct BenchRegistry {
    name: &'static str,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl BenchRegistry {
    /// Starts `docker-registry` keeping its config, log and storage under `dir`.
    pub async fn start(name: &'static str, dir: PathBuf, port: u16) -> Result<Self> {
        let mut r = Self {
            name,
            dir,
            port,
            child: None,
        };
        r.spawn().await?;
        Ok(r)
    }

    fn storage(&self) -> PathBuf {
        self.dir.join("storage")
    }

    async fn spawn(&mut self) -> Result<()> {
        let storage = self.storage();
        std::fs::create_dir_all(&storage)
            .with_context(|| format!("create {}", storage.display()))?;
        let secret = acr_import_tests::util::random_suffix(32);
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:{}\n  secret: {secret}\n",
            storage.display(),
            self.port
        );
        let config_path = self.dir.join("config.yml");
        std::fs::write(&config_path, config).context("write registry config")?;
        let log_path = self.dir.join("registry.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .context("open registry log")?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn docker-registry (apt-get install docker-registry)")?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(20)).await
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}/v2/", self.url());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "{} docker-registry exited early ({status}); log: {}",
                        self.name,
                        self.dir.join("registry.log").display()
                    );
                }
            }
            if let Ok(resp) = http.get(&url).send().await {
                if resp.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} docker-registry did not answer {url} in {timeout:?}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL and reap (the storage stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop, empty the storage directory ([`crate::trash::wipe`]), start a fresh process on
    /// the same port.
    pub async fn wipe(&mut self) -> Result<()> {
        self.stop();
        crate::trash::wipe(&self.storage()).await?;
        self.spawn().await
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for BenchRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}
