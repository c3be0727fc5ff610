//! The Markdown results: a summary table (every peer's median, min, max, MiB/s, acr-import's
//! ratio to the fastest peer, CPU split, peak RSS), the accept-latency and status-GET tables,
//! the targets with PASS/FAIL, and every run.

use std::fmt::Write as _;
use std::path::Path;

use crate::measure::{command_output, max, median, min, percentile, Sample};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    A,
    B,
    C,
    /// Import target: an external docker-registry against the built-in registry.
    D,
    /// skopeo pulls from docker-registry against the same pulls from the built-in registry.
    E,
    /// 50 small 3-platform images: acr-import gets 50 POSTs then awaits them all; the peers
    /// copy 4 at a time.
    Batch,
    /// A stream of POSTs at a fixed rate while the workers copy: each POST's latency.
    Accept,
    /// GETs of a status URL over 32 keep-alive connections: requests per second.
    Status,
}

impl Scenario {
    pub fn label(self) -> &'static str {
        match self {
            Scenario::A => "(a) 3-platform OCI index, 12 × 25 MiB layers (300 MiB)",
            Scenario::B => "(b) one image, a single 1 GiB layer",
            Scenario::C => "(c) Force re-import of the (a) image already at the target",
            Scenario::D => "(d) import of the (a) image into an external docker-registry vs into the built-in registry (a fresh service per run)",
            Scenario::E => "(e) `skopeo copy --all … dir:` pull of the (a) image from docker-registry vs from the built-in registry",
            Scenario::Batch => "(batch) 50 small 3-platform images (2 × 512 KiB layers per platform, 3.0 MiB each, 150 MiB in all): acr-import gets 50 POSTs one after another, then awaits every operation; the peers copy 4 images at a time",
            Scenario::Accept => "(accept) importImage POSTs at a fixed rate while the service's 4 workers copy what earlier POSTs queued: latency of each POST (send → 202 read)",
            Scenario::Status => "(status) GETs of an `Azure-AsyncOperation` status URL over keep-alive connections: requests per second",
        }
    }
    pub fn short(self) -> &'static str {
        match self {
            Scenario::A => "(a)",
            Scenario::B => "(b)",
            Scenario::C => "(c)",
            Scenario::D => "(d)",
            Scenario::E => "(e)",
            Scenario::Batch => "(batch)",
            Scenario::Accept => "(accept)",
            Scenario::Status => "(status)",
        }
    }
    /// (c) is reported in milliseconds, the copies in seconds.
    fn millis(self) -> bool {
        self == Scenario::C
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    AcrImport,
    Skopeo,
    /// `crane copy` (go-containerregistry), when found.
    Crane,
    /// `curl GET | curl -T - PUT`: the plain loopback blob copy.
    Curl,
    /// (d) acr-import on PostgreSQL writing into an external docker-registry.
    ImportToDockerRegistry,
    /// (d) acr-import on PostgreSQL writing into its built-in registry.
    ImportToBuiltinPostgres,
    /// (d) acr-import on its embedded SQLite store writing into its built-in registry.
    ImportToBuiltinSqlite,
    /// (d) the same with `--registry-durability fsync`.
    ImportToBuiltinSqliteFsync,
    /// (d) skopeo pushing into the built-in registry of an idle service.
    SkopeoToBuiltin,
    /// (d) crane pushing into the built-in registry of an idle service.
    CraneToBuiltin,
    /// (e) skopeo pulling from docker-registry.
    PullFromDockerRegistry,
    /// (e) skopeo pulling from the built-in registry.
    PullFromBuiltin,
}

impl Tool {
    pub fn label(self) -> &'static str {
        match self {
            Tool::AcrImport => "acr-import",
            Tool::Skopeo => "skopeo copy --all",
            Tool::Crane => "crane copy",
            Tool::Curl => "curl \\| curl -T - (blob only)",
            Tool::ImportToDockerRegistry => "acr-import → docker-registry (store: PostgreSQL)",
            Tool::ImportToBuiltinPostgres => "acr-import → built-in registry (store: PostgreSQL)",
            Tool::ImportToBuiltinSqlite => "acr-import → built-in registry (store: SQLite)",
            Tool::ImportToBuiltinSqliteFsync => {
                "acr-import → built-in registry (store: SQLite), --registry-durability fsync"
            }
            Tool::SkopeoToBuiltin => "skopeo copy --all → built-in registry",
            Tool::CraneToBuiltin => "crane copy → built-in registry",
            Tool::PullFromDockerRegistry => "skopeo pull ← docker-registry",
            Tool::PullFromBuiltin => "skopeo pull ← built-in registry",
        }
    }
    /// The baseline a row of (d) or (e) is compared with.
    fn baseline(self) -> Option<Tool> {
        match self {
            Tool::ImportToBuiltinPostgres
            | Tool::ImportToBuiltinSqlite
            | Tool::ImportToBuiltinSqliteFsync => Some(Tool::ImportToDockerRegistry),
            Tool::PullFromBuiltin => Some(Tool::PullFromDockerRegistry),
            _ => None,
        }
    }
    /// The peers acr-import's row is compared with (the fastest of those that ran).
    fn peers(self) -> &'static [Tool] {
        match self {
            Tool::AcrImport => &[Tool::Skopeo, Tool::Crane],
            Tool::ImportToBuiltinPostgres
            | Tool::ImportToBuiltinSqlite
            | Tool::ImportToBuiltinSqliteFsync => &[Tool::SkopeoToBuiltin, Tool::CraneToBuiltin],
            _ => &[],
        }
    }
    fn is_peer(self) -> bool {
        matches!(
            self,
            Tool::Skopeo | Tool::Crane | Tool::SkopeoToBuiltin | Tool::CraneToBuiltin
        )
    }
    /// Whether a separate target registry process exists whose CPU time is reported (the
    /// built-in registry runs inside the service: its CPU time is in the copier's; a pull has
    /// no target registry; a peer pushing into the built-in registry has the service as its
    /// target).
    fn has_target_process(self) -> bool {
        !matches!(
            self,
            Tool::ImportToBuiltinPostgres
                | Tool::ImportToBuiltinSqlite
                | Tool::ImportToBuiltinSqliteFsync
                | Tool::PullFromDockerRegistry
                | Tool::PullFromBuiltin
        )
    }
}

/// All runs of one tool in one scenario.
pub struct Series {
    pub scenario: Scenario,
    pub tool: Tool,
    /// Bytes one run moves (for MiB/s).
    pub bytes: u64,
    pub samples: Vec<Sample>,
}

impl Series {
    pub fn new(scenario: Scenario, tool: Tool, bytes: u64) -> Self {
        Self {
            scenario,
            tool,
            bytes,
            samples: Vec::new(),
        }
    }
    fn walls(&self) -> Vec<f64> {
        self.samples.iter().map(|s| s.wall.as_secs_f64()).collect()
    }
    fn median_wall(&self) -> f64 {
        median(&self.walls())
    }
    fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / 1048576.0 / self.median_wall()
    }
    fn peak_rss(&self) -> Option<u64> {
        self.samples.iter().filter_map(|s| s.peak_rss).max()
    }
}

/// One run of (accept) on one store.
pub struct AcceptRun {
    pub store: &'static str,
    pub run: usize,
    /// POSTs per second asked for.
    pub rate: f64,
    pub sent: usize,
    /// Answered 202.
    pub accepted: usize,
    /// From the first POST's send to the last POST's.
    pub send_secs: f64,
    /// Every POST's latency, milliseconds.
    pub latencies_ms: Vec<f64>,
    /// The generator's worst lag behind its schedule, milliseconds.
    pub max_lag_ms: f64,
    /// Operations already Succeeded when the stream ended (read back right after it).
    pub finished: usize,
    /// CPU-s of the service during the stream.
    pub service_cpu: f64,
    /// CPU-s of this driver (the generator) during the stream.
    pub client_cpu: f64,
    /// The machine's other busy CPU-s (PostgreSQL's server processes, other work).
    pub rest_cpu: f64,
    pub peak_rss: u64,
    /// The share of the POSTs the service itself timed (its request-duration histogram, from
    /// the request read to the response handed back) at ≤ 5 ms and ≤ 10 ms; `None`: no scrape.
    pub server_within: Option<(f64, f64)>,
    /// The same store's bare round trips and commits, timed during the stream (`floor.rs`).
    pub floor: crate::floor::Floor,
}

/// One run of (status) on one store.
pub struct StatusRun {
    pub store: &'static str,
    pub run: usize,
    pub conns: usize,
    pub secs: f64,
    pub ok: u64,
    pub errors: u64,
    pub latencies_ms: Vec<f64>,
    pub service_cpu: f64,
    pub client_cpu: f64,
    /// The machine's other busy CPU-s (PostgreSQL's server processes, other work).
    pub rest_cpu: f64,
}

impl StatusRun {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.secs
    }
}

/// Accept latency goal, milliseconds (p99), and the status rate goal (requests per second).
const ACCEPT_P99_MS: f64 = 10.0;
const STATUS_RPS: f64 = 10_000.0;

pub struct Report {
    pub series: Vec<Series>,
    pub accept: Vec<AcceptRun>,
    pub status: Vec<StatusRun>,
    scenarios: Vec<Scenario>,
    header: String,
    load_start: String,
    crane_found: bool,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "**PASS**"
    } else {
        "**FAIL**"
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

impl Report {
    /// `crane`: the crane binary when found (`CRANE=…` or on `PATH`).
    pub fn new(scenarios: &[Scenario], runs: usize, bin: &Path, crane: Option<&Path>) -> Self {
        let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
        let command = std::env::var("ACR_BENCH_COMMAND").unwrap_or_else(|_| {
            std::iter::once("acr-import-bench".to_string())
                .chain(std::env::args().skip(1))
                .collect::<Vec<_>>()
                .join(" ")
        });
        let mem_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .map(|kib| format!("{:.0} GiB RAM", kib / 1048576.0))
            .unwrap_or_default();
        let first_line = |s: String| s.lines().next().unwrap_or_default().to_string();
        let mut h = String::new();
        let _ = writeln!(h, "# acr-import benchmark, {date}\n");
        let _ = writeln!(h, "- Command: `{command}`");
        let _ = writeln!(
            h,
            "- Scenarios: {}; {runs} timed run(s) per tool and scenario; the target registry is wiped before every timed copy of (a), (b), (d) and (batch) (the built-in registry: a fresh service on an empty data dir; what a wipe removes is moved aside and deleted after the last run, so that no run is timed while the disk frees the last one's blocks); in (e) the pulled copy is deleted and skopeo's blob-info cache cleared before every run",
            scenarios
                .iter()
                .map(|s| s.short())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            h,
            "- Service: `{}` with `--workers 4`, default copy settings; status polled every 10 ms",
            bin.display()
        );
        let crane_line = match crane {
            Some(p) => format!(
                "crane `{}` (version: {})",
                p.display(),
                first_line(command_output(&p.display().to_string(), &["version"]))
            ),
            None => "**crane: not found** (set `CRANE=/path/to/crane` or put it on `PATH`): no crane rows, the fastest peer is skopeo's row alone".to_string(),
        };
        let _ = writeln!(
            h,
            "- Machine: {} cores (`nproc`), {mem_gib}, kernel {}; {}; {}; {crane_line}; {}",
            command_output("nproc", &[]),
            command_output("uname", &["-r"]),
            first_line(command_output("docker-registry", &["--version"])),
            first_line(command_output("skopeo", &["--version"])),
            first_line(command_output("curl", &["--version"]))
                .split(" (")
                .next()
                .unwrap_or_default(),
        );
        Self {
            series: Vec::new(),
            accept: Vec::new(),
            status: Vec::new(),
            scenarios: scenarios.to_vec(),
            header: h,
            load_start: loadavg(),
            crane_found: crane.is_some(),
        }
    }

    fn find(&self, scenario: Scenario, tool: Tool) -> Option<&Series> {
        self.series
            .iter()
            .find(|s| s.scenario == scenario && s.tool == tool && !s.samples.is_empty())
    }

    /// `tool` ÷ its baseline (built-in ÷ docker-registry), medians.
    fn vs_baseline(&self, scenario: Scenario, tool: Tool) -> Option<f64> {
        let t = self.find(scenario, tool)?;
        let b = self.find(scenario, tool.baseline()?)?;
        Some(t.median_wall() / b.median_wall())
    }

    /// `tool` ÷ its baseline per run (they ran in the same round): (median, min, max).
    fn vs_baseline_paired(&self, scenario: Scenario, tool: Tool) -> Option<(f64, f64, f64)> {
        let t = self.find(scenario, tool)?;
        let b = self.find(scenario, tool.baseline()?)?;
        Some(paired(t, b))
    }

    /// The peer of `tool` (see [`Tool::peers`]) with the smallest median in `scenario`.
    fn fastest_peer(&self, scenario: Scenario, tool: Tool) -> Option<&Series> {
        tool.peers()
            .iter()
            .filter_map(|p| self.find(scenario, *p))
            .min_by(|a, b| a.median_wall().total_cmp(&b.median_wall()))
    }

    /// `tool` ÷ the fastest peer, medians; and that peer.
    fn vs_fastest(&self, scenario: Scenario, tool: Tool) -> Option<(f64, &Series)> {
        let t = self.find(scenario, tool)?;
        let p = self.fastest_peer(scenario, tool)?;
        Some((t.median_wall() / p.median_wall(), p))
    }

    /// acr-import's rate as a fraction of a curl baseline's.
    fn of_curl(&self) -> Option<f64> {
        let a = self.find(Scenario::B, Tool::AcrImport)?;
        let c = self.find(Scenario::B, Tool::Curl)?;
        Some(a.mib_per_s() / c.mib_per_s())
    }

    fn fmt_time(scenario: Scenario, secs: f64) -> String {
        if scenario.millis() {
            format!("{:.1} ms", secs * 1000.0)
        } else {
            format!("{secs:.2} s")
        }
    }

    /// The Comparison cell of a summary row.
    fn comparison(&self, s: &Series) -> String {
        let mut parts = Vec::new();
        if let Some((r, p)) = self.vs_fastest(s.scenario, s.tool) {
            parts.push(format!("÷ fastest peer ({}) = **{r:.3}**", p.tool.label()));
            for other in s.tool.peers() {
                if let Some(o) = self.find(s.scenario, *other) {
                    if o.tool != p.tool {
                        parts.push(format!(
                            "÷ {} = {:.3}",
                            o.tool.label(),
                            s.median_wall() / o.median_wall()
                        ));
                    }
                }
            }
        }
        if s.tool.is_peer() {
            let acr = [
                Tool::AcrImport,
                Tool::ImportToBuiltinPostgres,
                Tool::ImportToBuiltinSqlite,
                Tool::ImportToBuiltinSqliteFsync,
            ];
            if acr.iter().any(|a| {
                self.fastest_peer(s.scenario, *a)
                    .is_some_and(|p| p.tool == s.tool)
            }) {
                parts.push("fastest peer".to_string());
            }
        }
        match s.tool {
            Tool::Curl => {
                if let Some(f) = self.of_curl() {
                    parts.push(format!("acr-import = **{:.0} %** of this rate", f * 100.0));
                }
            }
            Tool::ImportToDockerRegistry | Tool::PullFromDockerRegistry => {
                parts.push("baseline".to_string())
            }
            Tool::ImportToBuiltinPostgres
            | Tool::ImportToBuiltinSqlite
            | Tool::ImportToBuiltinSqliteFsync
            | Tool::PullFromBuiltin => {
                if let Some(r) = self.vs_baseline(s.scenario, s.tool) {
                    parts.push(format!("÷ docker-registry = **{r:.3}**"));
                }
            }
            _ => {}
        }
        parts.join("; ")
    }

    pub fn render(&self) -> String {
        let mut out = self.header.clone();
        let _ = writeln!(
            out,
            "- Load average (1/5/15 min) at start: {}; at end: {}\n",
            self.load_start,
            loadavg()
        );

        let _ = writeln!(out, "## Summary\n");
        let _ = writeln!(
            out,
            "| Scenario | Tool | Median | Min | Max | MiB/s (median) | Comparison | CPU-s, medians: copier / source reg. / target reg. / rest of host | Peak RSS (max) |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---|---|---:|");
        for s in &self.series {
            if s.samples.is_empty() {
                continue;
            }
            let w = s.walls();
            let rate = if s.scenario == Scenario::C {
                "—".to_string()
            } else {
                format!("{:.1}", s.mib_per_s())
            };
            let cpu = |f: fn(&Sample) -> f64| median(&s.samples.iter().map(f).collect::<Vec<_>>());
            let tgt_cpu = if s.tool.has_target_process() {
                format!("{:.2}", cpu(|x| x.cpu.tgt))
            } else {
                "—".to_string()
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {rate} | {} | {:.2} / {:.2} / {tgt_cpu} / {:.2} | {} |",
                s.scenario.short(),
                s.tool.label(),
                Self::fmt_time(s.scenario, median(&w)),
                Self::fmt_time(s.scenario, min(&w)),
                Self::fmt_time(s.scenario, max(&w)),
                self.comparison(s),
                cpu(|x| x.cpu.copier),
                cpu(|x| x.cpu.src),
                cpu(|x| x.cpu.rest),
                s.peak_rss().map(mib).unwrap_or_default(),
            );
        }
        if !self.crane_found {
            let _ = writeln!(
                out,
                "\n**crane was not found** (`CRANE=/path/to/crane` or `crane` on `PATH`; DEVELOPERS.md says how to build it): the tables have no crane rows and \"fastest peer\" means skopeo."
            );
        }
        let _ = writeln!(
            out,
            "\nScenarios: {}.",
            self.scenarios
                .iter()
                .map(|s| s.label())
                .collect::<Vec<_>>()
                .join("; ")
        );
        let _ = writeln!(
            out,
            "Peers: `skopeo copy --all --src-tls-verify=false --dest-tls-verify=false docker://SRC docker://DST` and `crane copy --insecure SRC DST` (crane copies an index with all its platforms; its default `--jobs` is GOMAXPROCS). *Fastest peer*: the peer with the smallest median in that scenario; acr-import's ratio is to its median."
        );
        if self.scenarios.contains(&Scenario::D) || self.scenarios.contains(&Scenario::E) {
            let _ = writeln!(
                out,
                "(d) and (e): *copier* is the acr-import service for (d)'s acr-import rows, which for the built-in rows includes the built-in registry (same process, so no separate target CPU: —); for (d)'s peer rows the copier is the peer and *target reg.* the idle service (SQLite store) whose built-in registry they push into; skopeo for (e); *source reg.* is the registry pulled from: the source docker-registry in (d) and in (e)'s docker-registry row, the acr-import service (built-in registry) in (e)'s built-in row. Peak RSS in (d): the fresh service's `VmHWM` after the import (built-in rows: registry included); for the peers their own."
            );
        }
        if self.scenarios.contains(&Scenario::Batch) {
            let _ = writeln!(
                out,
                "(batch): acr-import is the warm service of (a) (PostgreSQL, docker-registry target): 50 POSTs sent one after another, then each operation's status URL polled every 10 ms in turn until all are Succeeded; the wall time runs from the first POST to the last Succeeded. The peers run as 50 processes, at most 4 at a time; their CPU is the sum and their peak RSS the largest of the 50."
            );
        }
        let _ = writeln!(
            out,
            "Peak RSS: acr-import's `VmHWM` from /proc (for (b) a fresh process per run; for (a), (c) and (batch) the one long-running service since its start); skopeo's, crane's and curl's from `/usr/bin/time` (%M; for the curl pipeline the larger of the two curls). MiB/s: bytes moved (all blobs and manifests; for curl the one blob) ÷ median wall time."
        );
        let _ = writeln!(
            out,
            "CPU-s: user + system seconds during the timed window, from `/proc/<pid>/stat` (service, registries) and `/usr/bin/time` (skopeo, crane, curl); *rest of host* is the machine's busy time from `/proc/stat` minus those: other work on the machine, kernel writeback of the target's files, and this driver's 10 ms polling. 2 cores = at most 2 CPU-s per second of wall time."
        );

        self.render_accept(&mut out);
        self.render_status(&mut out);
        self.render_targets(&mut out);
        self.render_runs(&mut out);
        out
    }

    fn stores<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        let mut v: Vec<&str> = Vec::new();
        for n in names {
            if !v.contains(&n) {
                v.push(n);
            }
        }
        v
    }

    /// p50/p99/max over every POST of every run of `store`.
    fn accept_pooled(&self, store: &str) -> (Vec<f64>, usize, usize) {
        let runs = self.accept.iter().filter(|r| r.store == store);
        let mut lat = Vec::new();
        let (mut sent, mut accepted) = (0, 0);
        for r in runs {
            lat.extend_from_slice(&r.latencies_ms);
            sent += r.sent;
            accepted += r.accepted;
        }
        (lat, sent, accepted)
    }

    /// Every run's floor probe timings on `store`: (round trips, commits), ms.
    fn floor_pooled(&self, store: &str) -> (Vec<f64>, Vec<f64>) {
        let runs = self.accept.iter().filter(|r| r.store == store);
        let (mut trips, mut commits) = (Vec::new(), Vec::new());
        for r in runs {
            trips.extend_from_slice(&r.floor.trip_ms);
            commits.extend_from_slice(&r.floor.commit_ms);
        }
        (trips, commits)
    }

    fn render_accept(&self, out: &mut String) {
        if self.accept.is_empty() {
            return;
        }
        let _ = writeln!(out, "\n## Accept latency (importImage POST → 202)\n");
        let _ = writeln!(
            out,
            "| Store | Run | POSTs sent | 202 | Rate asked / achieved | p50 | p90 | p99 | Max | Generator's worst lag | Service-timed ≤ 5 / ≤ 10 ms | Store's bare round trip / commit p99 | Succeeded by the end | CPU-s service / driver / rest of host | Peak RSS |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---|---:|---|---:|"
        );
        for r in &self.accept {
            let l = &r.latencies_ms;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.0} / {:.0} per s | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} | {:.2} / {:.2} ms | {} | {:.2} / {:.2} / {:.2} | {} |",
                r.store,
                r.run,
                r.sent,
                r.accepted,
                r.rate,
                r.sent as f64 / r.send_secs,
                percentile(l, 50.0),
                percentile(l, 90.0),
                percentile(l, 99.0),
                max(l),
                r.max_lag_ms,
                r.server_within.map_or_else(
                    || "–".to_owned(),
                    |(a, b)| format!("{:.1} % / {:.1} %", a * 100.0, b * 100.0)
                ),
                percentile(&r.floor.trip_ms, 99.0),
                percentile(&r.floor.commit_ms, 99.0),
                r.finished,
                r.service_cpu,
                r.client_cpu,
                r.rest_cpu,
                mib(r.peak_rss),
            );
        }
        for store in Self::stores(self.accept.iter().map(|r| r.store)) {
            let (l, sent, accepted) = self.accept_pooled(store);
            let (trips, commits) = self.floor_pooled(store);
            let _ = writeln!(
                out,
                "| **{store}, all runs** | | {sent} | {accepted} | | **{:.2} ms** | {:.2} ms | **{:.2} ms** | {:.2} ms | | | {:.2} / **{:.2} ms** | | | |",
                percentile(&l, 50.0),
                percentile(&l, 90.0),
                percentile(&l, 99.0),
                max(&l),
                percentile(&trips, 99.0),
                percentile(&commits, 99.0),
            );
        }
        let _ = writeln!(
            out,
            "\nEach run: a fresh service (built-in registry, `--workers 4`) on the store named, 32 registries in 32 subscriptions (so no subscription's queue limit of 100 unfinished operations is reached), then an open-loop stream: POST *i* leaves at *i* / rate from its own task, over one keep-alive reqwest client, whatever the earlier POSTs are doing. Each POST is a Force import of one of the (batch) images (3 platforms, 3 MiB) to a new tag, round robin over the 32 registries, so the workers copy (the first import of an image into a registry copies its blobs; later ones only write a tag) during the whole stream. Latency: from handing the request to the client to reading the answer's last byte. *Service-timed*: the share of the POSTs the service's own `acr_import_http_request_duration_seconds` histogram (scraped from `/metrics` after the stream) put at or under 5 ms and 10 ms, from the request read to the response handed to the connection: what the driver's figures add to it is the loopback hop and both processes' wait for a core. *Store's bare round trip / commit p99*: during the same stream a probe on a connection of its own sent the same store, 50 times a second, a `select 1` and then a one-row insert committed alone (PostgreSQL: the service's database, so each commit waits for its WAL flush as an enqueue's does; SQLite: a file of its own with the service's settings, WAL and `synchronous = NORMAL`, so it never takes the service's write lock). An accepted POST commits at least once, so where the probe's commit p99 is near or above the goal, the machine (the disk's flush under the copies' writes, or the wait for a core) is the ceiling. *Succeeded by the end*: operations whose status read Succeeded right after the stream."
        );
    }

    fn render_status(&self, out: &mut String) {
        if self.status.is_empty() {
            return;
        }
        let _ = writeln!(out, "\n## Status GETs\n");
        let _ = writeln!(
            out,
            "| Store | Run | Connections | Seconds | 200s | Errors | Requests/s | p50 | p99 | CPU-s service / driver / rest of host |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in &self.status {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {} | {} | **{:.0}** | {:.2} ms | {:.2} ms | {:.2} / {:.2} / {:.2} |",
                r.store,
                r.run,
                r.conns,
                r.secs,
                r.ok,
                r.errors,
                r.rps(),
                percentile(&r.latencies_ms, 50.0),
                percentile(&r.latencies_ms, 99.0),
                r.service_cpu,
                r.client_cpu,
                r.rest_cpu,
            );
        }
        let _ = writeln!(
            out,
            "\nEach run: a fresh service (built-in registry, `--workers 4`, idle) on the store named, after 4 imports of (batch) images have Succeeded; then 32 tasks of this driver, each with its own keep-alive HTTP/1.1 connection (hyper), GET the 4 operations' `Azure-AsyncOperation` URLs round robin, each request sent when the previous answer's body has been read, for the time shown. The driver runs on the same 2 cores as the service (its CPU is the second figure)."
        );
    }

    fn render_targets(&self, out: &mut String) {
        let _ = writeln!(out, "\n## Targets\n");
        let _ = writeln!(out, "| Target | Goal | Measured | Result |");
        let _ = writeln!(out, "|---|---|---:|---|");
        let fastest_rows = [
            (Scenario::A, Tool::AcrImport, 0.90, "issue 14"),
            (Scenario::B, Tool::AcrImport, 1.00, "issue 14"),
            (Scenario::D, Tool::ImportToBuiltinPostgres, 0.80, "issue 14"),
            (Scenario::D, Tool::ImportToBuiltinSqlite, 0.80, "issue 14"),
            (Scenario::Batch, Tool::AcrImport, 0.80, "issue 14"),
        ];
        for (scenario, tool, goal, _) in fastest_rows {
            let Some((r, p)) = self.vs_fastest(scenario, tool) else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {} {} ÷ fastest peer ({}), median wall time | ≤ {goal:.2} | {r:.3} | {} |",
                scenario.short(),
                tool.label(),
                p.tool.label(),
                pass(r <= goal)
            );
            if let Some(t) = self.find(scenario, tool) {
                let (m, lo, hi) = paired(t, p);
                let _ = writeln!(
                    out,
                    "| {} the same, per run (same-round pairs), for information | | {m:.3} (median; {lo:.3}–{hi:.3}) | |",
                    scenario.short()
                );
            }
        }
        if let Some(rss) = self
            .find(Scenario::B, Tool::AcrImport)
            .and_then(Series::peak_rss)
        {
            let _ = writeln!(
                out,
                "| (b) acr-import peak RSS (`VmHWM`, worst run) | < 64 MiB | {} | {} |",
                mib(rss),
                pass(rss < 64 << 20)
            );
        }
        for store in Self::stores(self.accept.iter().map(|r| r.store)) {
            let (l, sent, accepted) = self.accept_pooled(store);
            let p99 = percentile(&l, 99.0);
            let all = accepted == sent;
            let _ = writeln!(
                out,
                "| (accept) POST → 202 latency p99 at {:.0} POST/s while 4 workers copy, store {store} (all runs' POSTs) | ≤ {ACCEPT_P99_MS:.0} ms, every POST 202 | {p99:.2} ms, {accepted}/{sent} 202 | {} |",
                self.accept.first().map(|r| r.rate).unwrap_or_default(),
                pass(p99 <= ACCEPT_P99_MS && all)
            );
        }
        for store in Self::stores(self.status.iter().map(|r| r.store)) {
            let rps: Vec<f64> = self
                .status
                .iter()
                .filter(|r| r.store == store)
                .map(StatusRun::rps)
                .collect();
            let m = median(&rps);
            let _ = writeln!(
                out,
                "| (status) status GETs per second, store {store} (median of runs) | ≥ {STATUS_RPS:.0} | {m:.0} | {} |",
                pass(m >= STATUS_RPS)
            );
        }
        // Earlier issues' targets that still hold.
        if let Some(f) = self.of_curl() {
            let _ = writeln!(
                out,
                "| (b) acr-import MiB/s vs the plain `curl \\| curl` blob copy | ≥ 80 % | {:.0} % | {} |",
                f * 100.0,
                pass(f >= 0.8)
            );
        }
        if let Some(s) = self.find(Scenario::C, Tool::AcrImport) {
            let m = s.median_wall() * 1000.0;
            let _ = writeln!(
                out,
                "| (c) acr-import Force re-import, median | < 100 ms | {m:.1} ms | {} |",
                pass(m < 100.0)
            );
        }
        for (scenario, what) in [(Scenario::D, "import"), (Scenario::E, "skopeo pull")] {
            // (The fsync row is a measurement of the opt-in mode's cost, not a target.)
            for tool in [
                Tool::ImportToBuiltinPostgres,
                Tool::ImportToBuiltinSqlite,
                Tool::PullFromBuiltin,
            ] {
                let Some(r) = self.vs_baseline(scenario, tool) else {
                    continue;
                };
                let store = match tool {
                    Tool::ImportToBuiltinPostgres => " (store: PostgreSQL both)",
                    Tool::ImportToBuiltinSqlite => {
                        " (store: SQLite; docker-registry row on PostgreSQL)"
                    }
                    _ => "",
                };
                let _ = writeln!(
                    out,
                    "| {} {what}: built-in ÷ docker-registry{store}, median wall time | ≤ 1.00 (not slower) | {r:.3} | {} |",
                    scenario.short(),
                    pass(r <= 1.0)
                );
                if let Some((m, lo, hi)) = self.vs_baseline_paired(scenario, tool) {
                    let _ = writeln!(
                        out,
                        "| {} the same, per run (same-round pairs), for information | | {m:.3} (median; {lo:.3}–{hi:.3}) | |",
                        scenario.short()
                    );
                }
            }
        }
    }

    fn render_runs(&self, out: &mut String) {
        let _ = writeln!(out, "\n## Every run\n");
        let _ = writeln!(
            out,
            "| Scenario | Tool | Run | Wall | CPU-s copier | CPU-s source reg. | CPU-s target reg. | CPU-s rest of host | Peak RSS |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for s in &self.series {
            for (i, x) in s.samples.iter().enumerate() {
                let tgt_cpu = if s.tool.has_target_process() {
                    format!("{:.2}", x.cpu.tgt)
                } else {
                    "—".to_string()
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {:.2} | {:.2} | {tgt_cpu} | {:.2} | {} |",
                    s.scenario.short(),
                    s.tool.label(),
                    i + 1,
                    Self::fmt_time(s.scenario, x.wall.as_secs_f64()),
                    x.cpu.copier,
                    x.cpu.src,
                    x.cpu.rest,
                    x.peak_rss.map(mib).unwrap_or_default()
                );
            }
        }
    }
}

/// `a` ÷ `b` per run (they ran in the same round): (median, min, max).
fn paired(a: &Series, b: &Series) -> (f64, f64, f64) {
    let r: Vec<f64> = a
        .samples
        .iter()
        .zip(&b.samples)
        .map(|(x, y)| x.wall.as_secs_f64() / y.wall.as_secs_f64())
        .collect();
    (median(&r), min(&r), max(&r))
}
