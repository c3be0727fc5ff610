//! `acr-import-bench`: times acr-import's `importImage` against `skopeo copy --all` (and, for
//! the big layer, a plain `curl | curl` blob copy) on the same two loopback docker-registry
//! peers, and prints a Markdown results table. Run it through `scripts/bench.sh`, which
//! installs the peers, builds the release binaries and sets `ACR_IMPORT_BIN`.
//!
//! Scenarios (each `--runs` times, the target registry wiped before every timed copy):
//! - a: a 3-platform OCI index, 12 distinct layers of 25 MiB (300 MiB), random bytes;
//! - b: one image with a single 1 GiB layer, a fresh service process per run (peak RSS);
//! - c: a `"mode":"Force"` re-import of the (a) image onto itself (nothing to copy);
//! - d: the (a) image imported into the external docker-registry target (PostgreSQL store)
//!   against into the built-in registry (PostgreSQL store, and SQLite), a fresh service per run;
//! - e: `skopeo copy --all docker://… dir:…` of the (a) image from docker-registry against
//!   from the built-in registry.
//!
//! See docs/BENCHMARKS.md for what exactly is measured.

mod image;
mod measure;
mod registry;
mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use acr_import_tests::image::Platform;
use acr_import_tests::service::service_bin;
use acr_import_tests::{ArmClient, OciClient, ServiceConfig, TestDatabase, TestService};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use image::BenchImage;
use measure::{run_timed, CpuWindow, Sample};
use registry::BenchRegistry;
use report::{Report, Scenario, Series, Tool};

/// The emulated registry; its repository R lives at `myreg/R` in the backend.
const REG: &str = "MyReg";
const SUB: &str = "6b1f0c1e-0be7-4c11-8a2d-00000000be01";
const RG: &str = "bench-rg";
const TAG: &str = "v1";
const REPO_A: &str = "bench/multi";
const REPO_B: &str = "bench/big";
const LAYER_A: u64 = 25 << 20;
const LAYERS_A: usize = 4;
const LAYER_B: u64 = 1 << 30;
/// How often the status URL is polled during a timed import.
const POLL: Duration = Duration::from_millis(10);
/// What the bench creates under `--work-dir` (and deletes again).
const WORK_SUBDIRS: [&str; 4] = ["source", "target", "scratch", "builtin"];
const IMPORT_DEADLINE: Duration = Duration::from_secs(1800);

/// Every scenario, in the order they run ((b) last: it stops the warm service).
const ALL: [Scenario; 5] = [
    Scenario::A,
    Scenario::C,
    Scenario::D,
    Scenario::E,
    Scenario::B,
];

struct Opts {
    runs: usize,
    scenarios: Vec<Scenario>,
    out: PathBuf,
    work_dir: PathBuf,
    keep: bool,
}

const USAGE: &str = "usage: acr-import-bench [--runs N] [--scenario a|b|c|d|e|builtin|all] [--out FILE] [--work-dir DIR] [--keep]

  --runs N        timed runs per tool and scenario (default 5)
  --scenario S    a: 3-platform index, 300 MiB in 12 layers; b: one 1 GiB layer;
                  c: Force re-import of the (a) image already at the target;
                  d: import of the (a) image into docker-registry vs into the built-in registry;
                  e: skopeo pull of the (a) image from docker-registry vs from the built-in one;
                  builtin: d and e; all (default): a, c, d, e, b
  --out FILE      also write the results table there (default target/bench/results.md)
  --work-dir DIR  registries' storage and logs (default target/bench/work)
  --keep          keep the registries' storage and logs (deleted on success otherwise)

Environment: ACR_IMPORT_BIN (the service binary), ACR_TEST_DATABASE_URL (PostgreSQL admin URL),
ACR_BENCH_COMMAND (the command line to print in the results).";

fn parse_args() -> Result<Opts> {
    let mut opts = Opts {
        runs: 5,
        scenarios: ALL.to_vec(),
        out: PathBuf::from("target/bench/results.md"),
        work_dir: PathBuf::from("target/bench/work"),
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| anyhow!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--runs" => {
                opts.runs = value("--runs")?
                    .parse()
                    .context("--runs takes a positive number")?;
                if opts.runs == 0 {
                    bail!("--runs must be at least 1");
                }
            }
            "--scenario" => {
                opts.scenarios = match value("--scenario")?.as_str() {
                    "a" => vec![Scenario::A],
                    "b" => vec![Scenario::B],
                    "c" => vec![Scenario::C],
                    "d" => vec![Scenario::D],
                    "e" => vec![Scenario::E],
                    "builtin" => vec![Scenario::D, Scenario::E],
                    "all" => ALL.to_vec(),
                    other => bail!("unknown scenario {other:?}\n{USAGE}"),
                }
            }
            "--out" => opts.out = PathBuf::from(value("--out")?),
            "--work-dir" => opts.work_dir = PathBuf::from(value("--work-dir")?),
            "--keep" => opts.keep = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(opts)
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[bench] {}", msg.as_ref());
}

/// Where the service writes repository `repo` of [`REG`] in the backend.
fn backend_repo(repo: &str) -> String {
    format!("{}/{repo}", REG.to_ascii_lowercase())
}

fn import_body(src_host: &str, repo: &str, force: bool) -> Value {
    json!({
        "source": {"registryUri": src_host, "sourceImage": format!("{repo}:{TAG}")},
        "targetTags": [format!("{repo}:{TAG}")],
        "mode": if force { "Force" } else { "NoForce" },
    })
}

/// skopeo remembers where it saw blobs and would mount instead of copying: forget it.
fn clear_skopeo_cache() {
    let mut paths = vec![PathBuf::from(
        "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
    )];
    if let Some(home) = std::env::var_os("HOME") {
        paths
            .push(Path::new(&home).join(".local/share/containers/cache/blob-info-cache-v1.boltdb"));
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME") {
        paths.push(Path::new(&xdg).join("containers/cache/blob-info-cache-v1.boltdb"));
    }
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

/// The service plus an ARM client with [`REG`] created.
struct Svc {
    service: TestService,
    arm: ArmClient,
}

impl Svc {
    async fn start(db: &TestDatabase, backend_url: &str) -> Result<Self> {
        Self::start_with(ServiceConfig::new(db.url(), backend_url).workers(4)).await
    }

    async fn start_with(config: ServiceConfig) -> Result<Self> {
        let service = TestService::start(config).await;
        let arm = ArmClient::new(&service.base_url());
        arm.create_registry(SUB, RG, REG).await;
        Ok(Self { service, arm })
    }

    /// POSTs the import and polls its `Azure-AsyncOperation` URL every 10 ms; returns the
    /// time from sending the POST to seeing `Succeeded` (or to a synchronous 200, which the
    /// service answers when there is nothing to copy).
    async fn timed_import(&self, body: &Value) -> Result<Duration> {
        let t0 = Instant::now();
        let accepted = self.arm.import(SUB, RG, REG, body).await;
        if accepted.status.as_u16() == 200 {
            return Ok(t0.elapsed());
        }
        if accepted.status.as_u16() != 202 {
            bail!("import not accepted: {accepted}");
        }
        let url = accepted.async_operation();
        loop {
            let resp = self.arm.get(&url).await;
            if resp.status.as_u16() != 200 {
                bail!("status GET: {resp}");
            }
            let v = resp.json();
            match v["status"].as_str().unwrap_or_default() {
                "Succeeded" => return Ok(t0.elapsed()),
                "Failed" | "Canceled" => bail!(
                    "import ended {v}\n--- service log (tail) ---\n{}",
                    acr_import_tests::util::tail_file(self.service.log_path(), 40)
                ),
                _ => {}
            }
            if t0.elapsed() > IMPORT_DEADLINE {
                bail!("import still running after {IMPORT_DEADLINE:?}: {v}");
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Checks the registry at `base` has `repo:v1` = `image` (tag → top digest, every blob present).
async fn verify_registry(base: &str, repo: &str, image: &BenchImage, what: &str) -> Result<()> {
    let client = OciClient::new(base, None);
    let got = client.resolve(repo, TAG).await?;
    if got.as_deref() != Some(image.digest()) {
        bail!(
            "{what}: {base} {repo}:{TAG} resolves to {got:?}, want {}",
            image.digest()
        );
    }
    for d in image.blob_digests() {
        if !client.blob_exists(repo, d).await? {
            bail!("{what}: blob {d} missing from {base} {repo}");
        }
    }
    Ok(())
}

/// Flushes dirty pages (the previous run's files) so they are not written back during the
/// next timed run, whichever variant that is.
async fn sync_disks() -> Result<()> {
    let status = tokio::process::Command::new("sync")
        .status()
        .await
        .context("run sync")?;
    if !status.success() {
        bail!("sync failed: {status}");
    }
    Ok(())
}

/// Deletes `dir` if it exists.
fn remove_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("delete {}", dir.display()))?;
    }
    Ok(())
}

/// Checks a `skopeo copy --all … dir:DIR` of `image`: the top manifest byte-identical (its
/// SHA-256 is the index digest), every child manifest and blob present with its size.
fn verify_pulled(dir: &Path, image: &BenchImage, what: &str) -> Result<()> {
    let top = std::fs::read(dir.join("manifest.json"))
        .with_context(|| format!("{what}: no manifest.json in {}", dir.display()))?;
    let got = acr_import_tests::util::sha256_digest(&top);
    if got != image.digest() {
        bail!("{what}: pulled index is {got}, want {}", image.digest());
    }
    for child in &image.children {
        let hex = child.digest.trim_start_matches("sha256:");
        let bytes = std::fs::read(dir.join(format!("{hex}.manifest.json")))
            .with_context(|| format!("{what}: manifest {} not pulled", child.digest))?;
        if bytes != child.bytes {
            bail!("{what}: manifest {} pulled with other bytes", child.digest);
        }
    }
    let blobs = image
        .configs
        .iter()
        .map(|b| (b.digest.as_str(), b.size))
        .chain(image.layers.iter().map(|l| (l.digest.as_str(), l.size)));
    for (digest, size) in blobs {
        let path = dir.join(digest.trim_start_matches("sha256:"));
        let len = std::fs::metadata(&path)
            .with_context(|| format!("{what}: blob {digest} not pulled"))?
            .len();
        if len != size {
            bail!("{what}: blob {digest} pulled with {len} bytes, want {size}");
        }
    }
    Ok(())
}

/// The (d) service variants: where the service writes, and on which store.
#[derive(Clone, Copy)]
enum Target {
    DockerRegistry,
    BuiltinPostgres,
    BuiltinSqlite,
}

impl Target {
    fn tool(self) -> Tool {
        match self {
            Target::DockerRegistry => Tool::ImportToDockerRegistry,
            Target::BuiltinPostgres => Tool::ImportToBuiltinPostgres,
            Target::BuiltinSqlite => Tool::ImportToBuiltinSqlite,
        }
    }
}

struct Bench {
    runs: usize,
    scratch: PathBuf,
    /// The built-in registry services' data dirs live under here (same disk as the
    /// docker-registry target's storage).
    builtin_dir: PathBuf,
    src: BenchRegistry,
    tgt: BenchRegistry,
    db: TestDatabase,
    /// The long-running service of (a) and (c).
    warm: Option<Svc>,
}

impl Bench {
    async fn warm_service(&mut self) -> Result<&Svc> {
        if self.warm.is_none() {
            log("starting the service (warm instance for a and c)");
            self.warm = Some(Svc::start(&self.db, &self.tgt.url()).await?);
        }
        self.warm.as_ref().ok_or_else(|| anyhow!("no service"))
    }

    /// Checks the target has `repo:v1` = `image` (tag → top digest, every blob present).
    async fn verify_target(&self, repo: &str, image: &BenchImage, what: &str) -> Result<()> {
        verify_registry(&self.tgt.url(), repo, image, what).await
    }

    async fn skopeo(&self, repo: &str) -> Result<measure::Timed> {
        clear_skopeo_cache();
        let args = vec![
            "copy".to_string(),
            "--all".to_string(),
            "--src-tls-verify=false".to_string(),
            "--dest-tls-verify=false".to_string(),
            format!("docker://{}/{repo}:{TAG}", self.src.host()),
            format!("docker://{}/{}:{TAG}", self.tgt.host(), backend_repo(repo)),
        ];
        run_timed("skopeo", &args, &self.scratch).await
    }

    async fn run_acr(&mut self, body: &Value, fresh: bool) -> Result<Sample> {
        let fresh_svc = if fresh {
            Some(Svc::start(&self.db, &self.tgt.url()).await?)
        } else {
            self.warm_service().await?;
            None
        };
        let svc = match &fresh_svc {
            Some(s) => s,
            None => self.warm.as_ref().ok_or_else(|| anyhow!("no service"))?,
        };
        let win = CpuWindow::open(self.src.pid(), self.tgt.pid(), Some(svc.service.pid()));
        let wall = svc.timed_import(body).await?;
        let cpu = win.close(None);
        let peak_rss = Some(svc.service.peak_rss_bytes());
        drop(fresh_svc);
        Ok(Sample {
            wall,
            cpu,
            peak_rss,
        })
    }

    async fn run_skopeo(&self, repo: &str) -> Result<Sample> {
        let win = CpuWindow::open(self.src.pid(), self.tgt.pid(), None);
        let t = self.skopeo(repo).await?;
        let cpu = win.close(Some(t.cpu_secs));
        Ok(Sample {
            wall: t.wall,
            cpu,
            peak_rss: Some(t.max_rss),
        })
    }

    /// `curl GET blob | curl -T - PUT upload` after an (untimed) upload POST.
    ///
    /// `-T -` (`--upload-file -`) streams stdin. `--data-binary @-` would read the whole blob
    /// into memory before sending (curl 7.88 refuses 1 GiB: "option --data-binary: out of
    /// memory"); with the explicit `Content-Length` curl sends no chunked encoding.
    async fn run_curl(&self, image: &BenchImage) -> Result<Sample> {
        let layer = image
            .layers
            .iter()
            .max_by_key(|b| b.size)
            .ok_or_else(|| anyhow!("image without blobs"))?;
        let repo = backend_repo(REPO_B);
        let http = reqwest::Client::builder().no_proxy().build()?;
        let upload = image::start_upload(&http, &self.tgt.url(), &repo, &layer.digest).await?;
        let script = format!(
            "curl -s {}/v2/{REPO_B}/blobs/{} | curl -s -o /dev/null -w '%{{http_code}}' -X PUT -H 'Content-Type: application/octet-stream' -H 'Content-Length: {}' -T - '{upload}'",
            self.src.url(),
            layer.digest,
            layer.size
        );
        let win = CpuWindow::open(self.src.pid(), self.tgt.pid(), None);
        let t = run_timed("bash", &["-c".to_string(), script], &self.scratch).await?;
        let cpu = win.close(Some(t.cpu_secs));
        if t.stdout.trim() != "201" {
            bail!("curl PUT answered {:?}", t.stdout.trim());
        }
        let client = OciClient::new(&self.tgt.url(), None);
        if !client.blob_exists(&repo, &layer.digest).await? {
            bail!("curl copy: blob missing at the target");
        }
        Ok(Sample {
            wall: t.wall,
            cpu,
            peak_rss: Some(t.max_rss),
        })
    }

    async fn scenario_a(&mut self, image: &BenchImage) -> Result<Vec<Series>> {
        let bytes = image.total_bytes();
        let mut acr = Series::new(Scenario::A, Tool::AcrImport, bytes);
        let mut sko = Series::new(Scenario::A, Tool::Skopeo, bytes);
        let body = import_body(&self.src.host(), REPO_A, false);
        let target = backend_repo(REPO_A);
        self.warm_service().await?;
        for run in 0..self.runs {
            // Alternate which tool goes first, so drift on the host hits both alike.
            let order = if run % 2 == 0 {
                [Tool::AcrImport, Tool::Skopeo]
            } else {
                [Tool::Skopeo, Tool::AcrImport]
            };
            for tool in order {
                self.tgt.wipe().await?;
                let s = match tool {
                    Tool::AcrImport => self.run_acr(&body, false).await?,
                    _ => self.run_skopeo(REPO_A).await?,
                };
                self.verify_target(&target, image, tool.label()).await?;
                log(format!(
                    "(a) run {}/{} {}: {:.2} s",
                    run + 1,
                    self.runs,
                    tool.label(),
                    s.wall.as_secs_f64()
                ));
                match tool {
                    Tool::AcrImport => acr.samples.push(s),
                    _ => sko.samples.push(s),
                }
            }
        }
        Ok(vec![acr, sko])
    }

    async fn scenario_b(&mut self, image: &BenchImage) -> Result<Vec<Series>> {
        // Only the fresh per-run services may see (b)'s operations: stop the warm one.
        self.warm = None;
        let bytes = image.total_bytes();
        let layer = image.layers.iter().map(|l| l.size).max().unwrap_or(0);
        let mut series = vec![
            Series::new(Scenario::B, Tool::AcrImport, bytes),
            Series::new(Scenario::B, Tool::Skopeo, bytes),
            Series::new(Scenario::B, Tool::Curl, layer),
        ];
        let body = import_body(&self.src.host(), REPO_B, false);
        let target = backend_repo(REPO_B);
        for run in 0..self.runs {
            for k in 0..series.len() {
                let i = (k + run) % series.len();
                let tool = series[i].tool;
                self.tgt.wipe().await?;
                let s = match tool {
                    Tool::AcrImport => {
                        let s = self.run_acr(&body, true).await?;
                        self.verify_target(&target, image, tool.label()).await?;
                        s
                    }
                    Tool::Skopeo => {
                        let s = self.run_skopeo(REPO_B).await?;
                        self.verify_target(&target, image, tool.label()).await?;
                        s
                    }
                    Tool::Curl => self.run_curl(image).await?,
                    other => bail!("(b) does not run {}", other.label()),
                };
                log(format!(
                    "(b) run {}/{} {}: {:.2} s{}",
                    run + 1,
                    self.runs,
                    tool.label(),
                    s.wall.as_secs_f64(),
                    s.peak_rss
                        .map(|r| format!(", peak RSS {:.1} MiB", r as f64 / 1048576.0))
                        .unwrap_or_default()
                ));
                series[i].samples.push(s);
            }
        }
        // Free the target's 1 GiB.
        self.tgt.wipe().await?;
        Ok(series)
    }

    /// A fresh service writing into `target`: for the built-in registry on an empty data dir
    /// (`--data-dir`, so `registry/` is on the same disk as docker-registry's storage); for
    /// docker-registry after wiping it.
    async fn fresh_service(&mut self, target: Target) -> Result<Svc> {
        let data_dir = self.builtin_dir.join("data");
        remove_dir(&data_dir)?;
        let config = match target {
            Target::DockerRegistry => {
                self.tgt.wipe().await?;
                ServiceConfig::new(self.db.url(), &self.tgt.url())
            }
            Target::BuiltinPostgres => ServiceConfig::new(self.db.url(), "unused")
                .builtin_registry(false)
                .flag("--data-dir", data_dir.display()),
            Target::BuiltinSqlite => {
                ServiceConfig::sqlite(&data_dir, "unused").builtin_registry(false)
            }
        };
        Svc::start_with(config.workers(4)).await
    }

    /// One timed import of (d) by a fresh service into `target`, verified there.
    async fn run_import_into(
        &mut self,
        target: Target,
        body: &Value,
        image: &BenchImage,
    ) -> Result<Sample> {
        let svc = self.fresh_service(target).await?;
        let tgt_pid = match target {
            Target::DockerRegistry => self.tgt.pid(),
            // The built-in registry is the service itself: its CPU is in the copier's.
            Target::BuiltinPostgres | Target::BuiltinSqlite => 0,
        };
        sync_disks().await?;
        let win = CpuWindow::open(self.src.pid(), tgt_pid, Some(svc.service.pid()));
        let wall = svc.timed_import(body).await?;
        let cpu = win.close(None);
        let peak_rss = Some(svc.service.peak_rss_bytes());
        // Untimed, for the reading: how long the writeback the import left behind takes (the
        // built-in registry does not fsync; docker-registry fsyncs every blob it commits).
        let t0 = Instant::now();
        sync_disks().await?;
        log(format!(
            "(d) {}: sync after the import took {:.2} s",
            target.tool().label(),
            t0.elapsed().as_secs_f64()
        ));
        verify_registry(
            &svc.service.registry_url(),
            &backend_repo(REPO_A),
            image,
            target.tool().label(),
        )
        .await?;
        Ok(Sample {
            wall,
            cpu,
            peak_rss,
        })
    }

    async fn scenario_d(&mut self, image: &BenchImage) -> Result<Vec<Series>> {
        // The warm service of (a) and (c) would only add load: stop it.
        self.warm = None;
        let bytes = image.total_bytes();
        let targets = [
            Target::DockerRegistry,
            Target::BuiltinPostgres,
            Target::BuiltinSqlite,
        ];
        let mut series: Vec<Series> = targets
            .iter()
            .map(|t| Series::new(Scenario::D, t.tool(), bytes))
            .collect();
        let body = import_body(&self.src.host(), REPO_A, false);
        for run in 0..self.runs {
            // Rotate the order so drifting host load hits every variant alike.
            for k in 0..targets.len() {
                let i = (k + run) % targets.len();
                let s = self.run_import_into(targets[i], &body, image).await?;
                log(format!(
                    "(d) run {}/{} {}: {:.2} s, peak RSS {:.1} MiB",
                    run + 1,
                    self.runs,
                    targets[i].tool().label(),
                    s.wall.as_secs_f64(),
                    s.peak_rss.unwrap_or(0) as f64 / 1048576.0
                ));
                series[i].samples.push(s);
            }
        }
        // Free the targets' copies.
        self.tgt.wipe().await?;
        remove_dir(&self.builtin_dir.join("data"))?;
        Ok(series)
    }

    /// One timed `skopeo copy --all docker://HOST/REPO:v1 dir:…` from the registry at `host`
    /// (CPU of `registry_pid` reported as the source's), verified and deleted afterwards.
    async fn run_pull(
        &self,
        host: &str,
        repo: &str,
        registry_pid: u32,
        image: &BenchImage,
        what: &str,
    ) -> Result<Sample> {
        let dest = self.scratch.join("pulled");
        remove_dir(&dest)?;
        clear_skopeo_cache();
        sync_disks().await?;
        let args = vec![
            "copy".to_string(),
            "--all".to_string(),
            "--src-tls-verify=false".to_string(),
            format!("docker://{host}/{repo}:{TAG}"),
            format!("dir:{}", dest.display()),
        ];
        let win = CpuWindow::open(registry_pid, 0, None);
        let t = run_timed("skopeo", &args, &self.scratch).await?;
        let cpu = win.close(Some(t.cpu_secs));
        verify_pulled(&dest, image, what)?;
        remove_dir(&dest)?;
        Ok(Sample {
            wall: t.wall,
            cpu,
            peak_rss: Some(t.max_rss),
        })
    }

    async fn scenario_e(&mut self, image: &BenchImage) -> Result<Vec<Series>> {
        self.warm = None;
        let bytes = image.total_bytes();
        // docker-registry: the source, which holds the image as pushed by the bench; the
        // built-in registry: a service (SQLite, the zero-setup default) that imported it once.
        let svc = self.fresh_service(Target::BuiltinSqlite).await?;
        let body = import_body(&self.src.host(), REPO_A, false);
        let first = svc.timed_import(&body).await?;
        let builtin_url = svc.service.registry_url();
        let builtin_host = builtin_url.trim_start_matches("http://").to_string();
        let builtin_repo = backend_repo(REPO_A);
        verify_registry(&builtin_url, &builtin_repo, image, "(e) import").await?;
        log(format!(
            "(e) the built-in registry populated by an import (untimed): {:.2} s",
            first.as_secs_f64()
        ));
        let src_host = self.src.host();
        let variants = [
            (
                Tool::PullFromDockerRegistry,
                src_host.as_str(),
                REPO_A,
                self.src.pid(),
            ),
            (
                Tool::PullFromBuiltin,
                builtin_host.as_str(),
                builtin_repo.as_str(),
                svc.service.pid(),
            ),
        ];
        // One untimed pull from each, so both are served from a warm page cache alike.
        for (tool, host, repo, pid) in variants {
            self.run_pull(host, repo, pid, image, tool.label()).await?;
        }
        let mut series: Vec<Series> = variants
            .iter()
            .map(|v| Series::new(Scenario::E, v.0, bytes))
            .collect();
        for run in 0..self.runs {
            for k in 0..variants.len() {
                let i = (k + run) % variants.len();
                let (tool, host, repo, pid) = variants[i];
                let s = self.run_pull(host, repo, pid, image, tool.label()).await?;
                log(format!(
                    "(e) run {}/{} {}: {:.2} s",
                    run + 1,
                    self.runs,
                    tool.label(),
                    s.wall.as_secs_f64()
                ));
                series[i].samples.push(s);
            }
        }
        drop(svc);
        remove_dir(&self.builtin_dir.join("data"))?;
        Ok(series)
    }

    async fn scenario_c(&mut self, image: &BenchImage) -> Result<Vec<Series>> {
        let bytes = image.total_bytes();
        let mut acr = Series::new(Scenario::C, Tool::AcrImport, bytes);
        let mut sko = Series::new(Scenario::C, Tool::Skopeo, bytes);
        let target = backend_repo(REPO_A);

        self.tgt.wipe().await?;
        let body = import_body(&self.src.host(), REPO_A, false);
        let first = self.warm_service().await?.timed_import(&body).await?;
        self.verify_target(&target, image, "acr-import (first, untimed)")
            .await?;
        log(format!(
            "(c) first import (untimed): {:.2} s",
            first.as_secs_f64()
        ));
        let force = import_body(&self.src.host(), REPO_A, true);
        for run in 0..self.runs {
            let s = self.run_acr(&force, false).await?;
            log(format!(
                "(c) run {}/{} acr-import Force re-import: {:.1} ms",
                run + 1,
                self.runs,
                s.wall.as_secs_f64() * 1000.0
            ));
            acr.samples.push(s);
        }
        self.verify_target(&target, image, "acr-import (Force)")
            .await?;

        self.tgt.wipe().await?;
        self.skopeo(REPO_A).await?;
        for run in 0..self.runs {
            let s = self.run_skopeo(REPO_A).await?;
            log(format!(
                "(c) run {}/{} skopeo re-copy: {:.1} ms",
                run + 1,
                self.runs,
                s.wall.as_secs_f64() * 1000.0
            ));
            sko.samples.push(s);
        }
        self.verify_target(&target, image, "skopeo (re-copy)")
            .await?;
        Ok(vec![acr, sko])
    }
}

/// Deletes what a previous run left in the work dir (only the bench's own subdirectories).
fn clean_work_dir(dir: &Path) -> Result<()> {
    for sub in WORK_SUBDIRS {
        let p = dir.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("delete {}", p.display()))?;
        }
    }
    Ok(())
}

async fn push_source(src: &BenchRegistry, repo: &str, image: &BenchImage) -> Result<()> {
    let t0 = Instant::now();
    image
        .push(&src.url(), repo, TAG)
        .await
        .with_context(|| format!("push {repo}:{TAG} to the source"))?;
    log(format!(
        "pushed {repo}:{TAG} ({} layers, {:.1} MiB in all) to the source in {:.1} s",
        image.layers.len(),
        image.total_bytes() as f64 / 1048576.0,
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let opts = parse_args()?;
    let bin = service_bin();
    if !bin.exists() {
        bail!(
            "{} does not exist: build it (`cargo build --release -p acr-import`) and set ACR_IMPORT_BIN",
            bin.display()
        );
    }
    for tool in ["docker-registry", "skopeo", "curl", "/usr/bin/time"] {
        if measure::command_output("sh", &["-c", &format!("command -v {tool}")]).is_empty() {
            bail!("{tool} is not installed (scripts/bench.sh installs it)");
        }
    }
    let mut report = Report::new(&opts.scenarios, opts.runs, &bin);

    clean_work_dir(&opts.work_dir)?;
    let scratch = opts.work_dir.join("scratch");
    std::fs::create_dir_all(&scratch)?;
    let src_port = acr_import_tests::util::free_port();
    let tgt_port = acr_import_tests::util::free_port();
    let (src, tgt, db) = tokio::join!(
        BenchRegistry::start("source", opts.work_dir.join("source"), src_port),
        BenchRegistry::start("target", opts.work_dir.join("target"), tgt_port),
        TestDatabase::create(),
    );
    let (src, tgt) = (src?, tgt?);
    log(format!(
        "source {} target {} database {} service {}",
        src.host(),
        tgt.host(),
        db.name(),
        bin.display()
    ));

    let wants = |s: Scenario| opts.scenarios.contains(&s);
    let image_a = [Scenario::A, Scenario::C, Scenario::D, Scenario::E]
        .into_iter()
        .any(wants)
        .then(|| BenchImage::index(0xA11CE, &Platform::three(), &[LAYER_A; LAYERS_A]));
    let image_b =
        wants(Scenario::B).then(|| BenchImage::single(0xB16, &Platform::amd64(), &[LAYER_B]));
    if let Some(img) = &image_a {
        push_source(&src, REPO_A, img).await?;
    }
    if let Some(img) = &image_b {
        push_source(&src, REPO_B, img).await?;
    }

    let mut bench = Bench {
        runs: opts.runs,
        scratch,
        builtin_dir: opts.work_dir.join("builtin"),
        src,
        tgt,
        db,
        warm: None,
    };
    // (b) last: it stops the warm service that (a) and (c) share.
    if let (true, Some(img)) = (wants(Scenario::A), &image_a) {
        report.series.extend(bench.scenario_a(img).await?);
    }
    if let (true, Some(img)) = (wants(Scenario::C), &image_a) {
        report.series.extend(bench.scenario_c(img).await?);
    }
    // For profiling: ACR_BENCH_SERVICE_LOG=FILE keeps the warm service's log of (a) and (c).
    if let (Ok(keep), Some(svc)) = (std::env::var("ACR_BENCH_SERVICE_LOG"), bench.warm.as_ref()) {
        std::fs::copy(svc.service.log_path(), &keep)
            .with_context(|| format!("copy the service log to {keep}"))?;
    }
    if let (true, Some(img)) = (wants(Scenario::D), &image_a) {
        report.series.extend(bench.scenario_d(img).await?);
    }
    if let (true, Some(img)) = (wants(Scenario::E), &image_a) {
        report.series.extend(bench.scenario_e(img).await?);
    }
    if let (true, Some(img)) = (wants(Scenario::B), &image_b) {
        report.series.extend(bench.scenario_b(img).await?);
    }
    drop(bench);

    let text = report.render();
    println!("{text}");
    if let Some(dir) = opts.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&opts.out, &text).with_context(|| format!("write {}", opts.out.display()))?;
    log(format!("results written to {}", opts.out.display()));
    if !opts.keep {
        clean_work_dir(&opts.work_dir)?;
    }
    Ok(())
}
