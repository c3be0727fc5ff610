//! `acr-import-bench`: times acr-import's `importImage` against `skopeo copy --all` and
//! `crane copy` (when found: `CRANE=…` or on `PATH`; and, for the big layer, a plain
//! `curl | curl` blob copy) on the same two loopback docker-registry peers, measures the API
//! (accept latency under load, status GETs per second), and prints a Markdown results table.
//! Run it through `scripts/bench.sh`, which installs the peers, builds the release binaries
//! and sets `ACR_IMPORT_BIN`.
//!
//! Scenarios (each `--runs` times, the target registry wiped before every timed copy):
//! - a: a 3-platform OCI index, 12 distinct layers of 25 MiB (300 MiB), random bytes;
//! - b: one image with a single 1 GiB layer, a fresh service process per run (peak RSS);
//! - c: a `"mode":"Force"` re-import of the (a) image onto itself (nothing to copy);
//! - d: the (a) image imported into the external docker-registry target (PostgreSQL store)
//!   against into the built-in registry (PostgreSQL store, and SQLite), a fresh service per run;
//! - e: `skopeo copy --all docker://… dir:…` of the (a) image from docker-registry against
//!   from the built-in registry;
//! - batch: 50 small 3-platform images; acr-import gets 50 POSTs one after another and then
//!   awaits them all, the peers copy 4 at a time;
//! - accept: POSTs at 200/s for 10 s while the workers copy, on PostgreSQL and on SQLite:
//!   each POST's latency;
//! - status: GETs of a status URL over 32 keep-alive connections for 5 s: requests/s.
//!
//! See docs/BENCHMARKS.md for what exactly is measured.

mod api;
mod batch;
mod builtin;
mod floor;
mod image;
mod load;
mod measure;
mod registry;
mod report;
mod trash;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use acr_import_tests::image::Platform;
use acr_import_tests::service::service_bin;
use acr_import_tests::{ArmClient, OciClient, ServiceConfig, TestDatabase, TestService};
use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use serde_json::{json, Value};

use image::BenchImage;
use measure::{proc_cpu_secs, run_timed, CpuWindow, Sample};
use registry::BenchRegistry;
use report::{AcceptRun, Report, Scenario, Series, StatusRun, Tool};

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
/// (batch): 50 images `bench/batch-NN`, 3 platforms × 2 layers of 512 KiB each.
const BATCH_IMAGES: usize = 50;
const BATCH_LAYER: u64 = 512 << 10;
const BATCH_LAYERS: usize = 2;
/// (batch): how many peer processes copy at once.
const BATCH_PARALLEL: usize = 4;
/// (accept): POSTs per second, for how long, over how many registries (one per subscription).
const ACCEPT_RATE: f64 = 200.0;
const ACCEPT_SECS: f64 = 10.0;
const ACCEPT_REGISTRIES: usize = 32;
/// (status): keep-alive connections and seconds of load.
const STATUS_CONNS: usize = 32;
const STATUS_SECS: u64 = 5;
/// How often the status URL is polled during a timed import.
const POLL: Duration = Duration::from_millis(10);
/// What the bench creates under `--work-dir` (and deletes again).
const WORK_SUBDIRS: [&str; 5] = ["source", "target", "scratch", "builtin", "trash"];
const IMPORT_DEADLINE: Duration = Duration::from_secs(1800);

/// Every scenario, in the order they run (the warm service of a, c and batch first; (b) last,
/// as the biggest).
const ALL: [Scenario; 8] = [
    Scenario::A,
    Scenario::C,
    Scenario::Batch,
    Scenario::D,
    Scenario::E,
    Scenario::Accept,
    Scenario::Status,
    Scenario::B,
];

struct Opts {
    runs: usize,
    scenarios: Vec<Scenario>,
    out: PathBuf,
    work_dir: PathBuf,
    keep: bool,
}

const USAGE: &str = "usage: acr-import-bench [--runs N] [--scenario a|b|c|d|e|builtin|batch|accept|status|api|all] [--out FILE] [--work-dir DIR] [--keep]

  --runs N        timed runs per tool and scenario (default 5)
  --scenario S    a: 3-platform index, 300 MiB in 12 layers; b: one 1 GiB layer;
                  c: Force re-import of the (a) image already at the target;
                  d: import of the (a) image into docker-registry vs into the built-in registry;
                  e: skopeo pull of the (a) image from docker-registry vs from the built-in one;
                  builtin: d and e;
                  batch: 50 small 3-platform images, 50 POSTs then all awaited vs peers 4 at a time;
                  accept: POSTs at 200/s for 10 s while the workers copy (PostgreSQL, SQLite);
                  status: status GETs over 32 keep-alive connections for 5 s (both stores);
                  api: accept and status; all (default): a, c, batch, d, e, accept, status, b;
                  several: a comma-separated list (e.g. a,b,batch), run in the order above
  --out FILE      also write the results table there (default target/bench/results.md)
  --work-dir DIR  registries' storage and logs (default target/bench/work)
  --keep          keep the registries' storage and logs (deleted on success otherwise)

Environment: ACR_IMPORT_BIN (the service binary), ACR_TEST_DATABASE_URL (PostgreSQL admin URL),
ACR_BENCH_COMMAND (the command line to print in the results), CRANE (the crane binary; default:
`crane` on PATH; without it the bench runs without crane and says so).";

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
                // A comma-separated list runs in the order of [`ALL`], each scenario once.
                let mut wanted = Vec::new();
                for name in value("--scenario")?.split(',') {
                    wanted.extend(match name.trim() {
                        "a" => vec![Scenario::A],
                        "b" => vec![Scenario::B],
                        "c" => vec![Scenario::C],
                        "d" => vec![Scenario::D],
                        "e" => vec![Scenario::E],
                        "builtin" => vec![Scenario::D, Scenario::E],
                        "batch" => vec![Scenario::Batch],
                        "accept" => vec![Scenario::Accept],
                        "status" => vec![Scenario::Status],
                        "api" => vec![Scenario::Accept, Scenario::Status],
                        "all" => ALL.to_vec(),
                        other => bail!("unknown scenario {other:?}\n{USAGE}"),
                    });
                }
                opts.scenarios = ALL.into_iter().filter(|s| wanted.contains(s)).collect();
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

/// The other copiers, timed on the same registries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    Skopeo,
    Crane,
}

impl Peer {
    fn tool(self) -> Tool {
        match self {
            Peer::Skopeo => Tool::Skopeo,
            Peer::Crane => Tool::Crane,
        }
    }
    /// Its row in (d), pushing into the built-in registry.
    fn to_builtin(self) -> Tool {
        match self {
            Peer::Skopeo => Tool::SkopeoToBuiltin,
            Peer::Crane => Tool::CraneToBuiltin,
        }
    }
}

/// The crane binary: `$CRANE` when set (it must exist), else `crane` on `PATH`, else none.
fn find_crane() -> Result<Option<PathBuf>> {
    if let Some(p) = std::env::var_os("CRANE").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("CRANE={} is not a file", p.display());
        }
        return Ok(Some(p));
    }
    let found = measure::command_output("sh", &["-c", "command -v crane"]);
    Ok((!found.is_empty()).then(|| PathBuf::from(found)))
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
        self.wait_succeeded(&accepted.async_operation(), t0).await?;
        Ok(t0.elapsed())
    }

    /// Polls the status URL `url` every 10 ms until it shows `Succeeded` (an error if the
    /// operation fails or is still running [`IMPORT_DEADLINE`] after `t0`).
    async fn wait_succeeded(&self, url: &str, t0: Instant) -> Result<()> {
        loop {
            let resp = self.arm.get(url).await;
            if resp.status.as_u16() != 200 {
                bail!("status GET: {resp}");
            }
            let v = resp.json();
            match v["status"].as_str().unwrap_or_default() {
                "Succeeded" => return Ok(()),
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

/// Empties `dir` for the next run (see [`trash`]).
async fn remove_dir(dir: &Path) -> Result<()> {
    trash::wipe(dir).await
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

/// CPU seconds over an (accept) or (status) window: the service, this driver, and the rest
/// of the machine (PostgreSQL's server processes among it).
struct ApiCpu {
    service_pid: u32,
    service0: f64,
    me0: f64,
    machine0: f64,
}

impl ApiCpu {
    fn start(service_pid: u32) -> Self {
        Self {
            service_pid,
            service0: proc_cpu_secs(service_pid),
            me0: proc_cpu_secs(std::process::id()),
            machine0: measure::machine_busy_secs(),
        }
    }
    /// (service, driver, rest of host)
    fn stop(self) -> (f64, f64, f64) {
        let service = proc_cpu_secs(self.service_pid) - self.service0;
        let me = proc_cpu_secs(std::process::id()) - self.me0;
        let machine = measure::machine_busy_secs() - self.machine0;
        (service, me, (machine - service - me).max(0.0))
    }
}

/// The store of an (accept) or (status) service.
#[derive(Clone, Copy, Debug)]
enum Store {
    Postgres,
    Sqlite,
}

impl Store {
    fn label(self) -> &'static str {
        match self {
            Store::Postgres => "PostgreSQL",
            Store::Sqlite => "SQLite",
        }
    }

    /// Both stores, in the order of run `run` (0-based): alternated, so neither always goes
    /// first on a machine that warms up or gets busier.
    fn in_order_of_run(run: usize) -> [Store; 2] {
        if run.is_multiple_of(2) {
            [Store::Postgres, Store::Sqlite]
        } else {
            [Store::Sqlite, Store::Postgres]
        }
    }
}

/// The repository of (batch) image `n` at the source.
fn batch_repo(n: usize) -> String {
    format!("bench/batch-{n:02}")
}

/// The (d) service variants: where the service writes, and on which store.
#[derive(Clone, Copy)]
enum Target {
    DockerRegistry,
    BuiltinPostgres,
    BuiltinSqlite,
    /// The SQLite store and the built-in registry with `--registry-durability fsync`.
    BuiltinSqliteFsync,
}

impl Target {
    fn tool(self) -> Tool {
        match self {
            Target::DockerRegistry => Tool::ImportToDockerRegistry,
            Target::BuiltinPostgres => Tool::ImportToBuiltinPostgres,
            Target::BuiltinSqlite => Tool::ImportToBuiltinSqlite,
            Target::BuiltinSqliteFsync => Tool::ImportToBuiltinSqliteFsync,
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
    /// The long-running service of (a), (c) and (batch).
    warm: Option<Svc>,
    /// `crane`, when found.
    crane: Option<PathBuf>,
}

impl Bench {
    async fn warm_service(&mut self) -> Result<&Svc> {
        if self.warm.is_none() {
            log("starting the service (warm instance for a, c and batch)");
            self.warm = Some(Svc::start(&self.db, &self.tgt.url()).await?);
        }
        self.warm.as_ref().ok_or_else(|| anyhow!("no service"))
    }

    /// Checks the target has `repo:v1` = `image` (tag → top digest, every blob present).
    async fn verify_target(&self, repo: &str, image: &BenchImage, what: &str) -> Result<()> {
        verify_registry(&self.tgt.url(), repo, image, what).await
    }

    /// The peers that run: skopeo, and crane when found.
    fn peers(&self) -> Vec<Peer> {
        let mut v = vec![Peer::Skopeo];
        if self.crane.is_some() {
            v.push(Peer::Crane);
        }
        v
    }

    /// One copy by `peer` of `src` to `dst` (both `HOST:PORT/REPO:TAG`, plain HTTP), timed.
    /// skopeo's blob-info cache is cleared first unless `keep_cache` (the batch clears it once
    /// for its 50 copies, which share no blob).
    async fn peer_copy(
        &self,
        peer: Peer,
        src: &str,
        dst: &str,
        keep_cache: bool,
    ) -> Result<measure::Timed> {
        match peer {
            Peer::Skopeo => {
                if !keep_cache {
                    clear_skopeo_cache();
                }
                let args = vec![
                    "copy".to_string(),
                    "--all".to_string(),
                    "--src-tls-verify=false".to_string(),
                    "--dest-tls-verify=false".to_string(),
                    format!("docker://{src}"),
                    format!("docker://{dst}"),
                ];
                run_timed("skopeo", &args, &self.scratch).await
            }
            Peer::Crane => {
                let crane = self
                    .crane
                    .as_ref()
                    .ok_or_else(|| anyhow!("crane was not found"))?;
                // `crane copy` copies an index with every platform; --insecure: plain HTTP.
                let args = vec![
                    "copy".to_string(),
                    "--insecure".to_string(),
                    src.to_string(),
                    dst.to_string(),
                ];
                run_timed(&crane.display().to_string(), &args, &self.scratch).await
            }
        }
    }

    /// `peer` copies `repo:v1` from the source to the target docker-registry (where the
    /// service would write it).
    async fn peer(&self, peer: Peer, repo: &str) -> Result<measure::Timed> {
        let src = format!("{}/{repo}:{TAG}", self.src.host());
        let dst = format!("{}/{}:{TAG}", self.tgt.host(), backend_repo(repo));
        self.peer_copy(peer, &src, &dst, false).await
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

    async fn run_peer(&self, peer: Peer, repo: &str) -> Result<Sample> {
        let win = CpuWindow::open(self.src.pid(), self.tgt.pid(), None);
        let t = self.peer(peer, repo).await?;
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
        let mut tools = vec![Tool::AcrImport];
        tools.extend(self.peers().iter().map(|p| p.tool()));
        let mut series: Vec<Series> = tools
            .iter()
            .map(|t| Series::new(Scenario::A, *t, bytes))
            .collect();
        let body = import_body(&self.src.host(), REPO_A, false);
        let target = backend_repo(REPO_A);
        self.warm_service().await?;
        for run in 0..self.runs {
            // Rotate which tool goes first, so drift on the host hits every tool alike.
            for k in 0..tools.len() {
                let i = (k + run) % tools.len();
                let tool = tools[i];
                self.tgt.wipe().await?;
                let s = match tool {
                    Tool::AcrImport => self.run_acr(&body, false).await?,
                    Tool::Skopeo => self.run_peer(Peer::Skopeo, REPO_A).await?,
                    Tool::Crane => self.run_peer(Peer::Crane, REPO_A).await?,
                    other => bail!("(a) does not run {}", other.label()),
                };
                self.verify_target(&target, image, tool.label()).await?;
                log(format!(
                    "(a) run {}/{} {}: {:.2} s",
                    run + 1,
                    self.runs,
                    tool.label(),
                    s.wall.as_secs_f64()
                ));
                series[i].samples.push(s);
            }
        }
        Ok(series)
    }

    async fn scenario_b(&mut self, image: &BenchImage) -> Result<Vec<Series>> {
        // Only the fresh per-run services may see (b)'s operations: stop the warm one.
        self.warm = None;
        let bytes = image.total_bytes();
        let layer = image.layers.iter().map(|l| l.size).max().unwrap_or(0);
        let mut series = vec![Series::new(Scenario::B, Tool::AcrImport, bytes)];
        for p in self.peers() {
            series.push(Series::new(Scenario::B, p.tool(), bytes));
        }
        series.push(Series::new(Scenario::B, Tool::Curl, layer));
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
                    Tool::Skopeo | Tool::Crane => {
                        let peer = if tool == Tool::Skopeo {
                            Peer::Skopeo
                        } else {
                            Peer::Crane
                        };
                        let s = self.run_peer(peer, REPO_B).await?;
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

    async fn scenario_c(&mut self, image: &BenchImage) -> Result<Vec<Series>> {
        let bytes = image.total_bytes();
        let mut acr = Series::new(Scenario::C, Tool::AcrImport, bytes);
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

        let mut series = vec![acr];
        for peer in self.peers() {
            let mut s = Series::new(Scenario::C, peer.tool(), bytes);
            self.tgt.wipe().await?;
            self.peer(peer, REPO_A).await?;
            for run in 0..self.runs {
                let x = self.run_peer(peer, REPO_A).await?;
                log(format!(
                    "(c) run {}/{} {} re-copy: {:.1} ms",
                    run + 1,
                    self.runs,
                    peer.tool().label(),
                    x.wall.as_secs_f64() * 1000.0
                ));
                s.samples.push(x);
            }
            self.verify_target(
                &target,
                image,
                &format!("{} (re-copy)", peer.tool().label()),
            )
            .await?;
            series.push(s);
        }
        Ok(series)
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
    let crane = find_crane()?;
    match &crane {
        Some(p) => log(format!("crane: {}", p.display())),
        None => log("crane not found (CRANE unset and no crane on PATH): running without crane; the table says so"),
    }
    let mut report = Report::new(&opts.scenarios, opts.runs, &bin, crane.as_deref());

    clean_work_dir(&opts.work_dir)?;
    trash::init(&opts.work_dir);
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
    let batch = [Scenario::Batch, Scenario::Accept, Scenario::Status]
        .into_iter()
        .any(wants)
        .then(|| {
            (0..BATCH_IMAGES)
                .map(|n| {
                    BenchImage::index(
                        0xBA7C_0000 + n as u64,
                        &Platform::three(),
                        &[BATCH_LAYER; BATCH_LAYERS],
                    )
                })
                .collect::<Vec<_>>()
        });
    if let Some(images) = &batch {
        let t0 = Instant::now();
        let base = src.url();
        let pushed: Vec<Result<()>> = futures::stream::iter(images.iter().enumerate())
            .map(|(n, img)| {
                let base = base.clone();
                async move {
                    img.push(&base, &batch_repo(n), TAG)
                        .await
                        .with_context(|| format!("push {}:{TAG} to the source", batch_repo(n)))
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        pushed.into_iter().collect::<Result<()>>()?;
        log(format!(
            "pushed {} (batch) images ({:.1} MiB in all) to the source in {:.1} s",
            images.len(),
            images.iter().map(BenchImage::total_bytes).sum::<u64>() as f64 / 1048576.0,
            t0.elapsed().as_secs_f64()
        ));
    }

    let mut bench = Bench {
        runs: opts.runs,
        scratch,
        builtin_dir: opts.work_dir.join("builtin"),
        src,
        tgt,
        db,
        warm: None,
        crane,
    };
    // (b) last: it stops the warm service that (a), (c) and (batch) share.
    if let (true, Some(img)) = (wants(Scenario::A), &image_a) {
        report.series.extend(bench.scenario_a(img).await?);
    }
    if let (true, Some(img)) = (wants(Scenario::C), &image_a) {
        report.series.extend(bench.scenario_c(img).await?);
    }
    if let (true, Some(images)) = (wants(Scenario::Batch), &batch) {
        report.series.extend(bench.scenario_batch(images).await?);
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
    if let (true, Some(images)) = (wants(Scenario::Accept), &batch) {
        report.accept = bench.scenario_accept(images.len()).await?;
    }
    if wants(Scenario::Status) {
        report.status = bench.scenario_status().await?;
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
