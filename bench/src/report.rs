//! The Markdown results: a summary table (median, min, max, MiB/s, ratios, CPU split, peak
//! RSS), the targets with PASS/FAIL, and every run.

use std::fmt::Write as _;
use std::path::Path;

use crate::measure::{command_output, max, median, min, Sample};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    A,
    B,
    C,
    /// Import target: an external docker-registry against the built-in registry.
    D,
    /// skopeo pulls from docker-registry against the same pulls from the built-in registry.
    E,
}

impl Scenario {
    pub fn label(self) -> &'static str {
        match self {
            Scenario::A => "(a) 3-platform OCI index, 12 × 25 MiB layers (300 MiB)",
            Scenario::B => "(b) one image, a single 1 GiB layer",
            Scenario::C => "(c) Force re-import of the (a) image already at the target",
            Scenario::D => "(d) import of the (a) image into an external docker-registry vs into the built-in registry (a fresh service per run)",
            Scenario::E => "(e) `skopeo copy --all … dir:` pull of the (a) image from docker-registry vs from the built-in registry",
        }
    }
    pub fn short(self) -> &'static str {
        match self {
            Scenario::A => "(a)",
            Scenario::B => "(b)",
            Scenario::C => "(c)",
            Scenario::D => "(d)",
            Scenario::E => "(e)",
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
    /// `curl GET | curl -T - PUT`: the plain loopback blob copy.
    Curl,
    /// (d) acr-import on PostgreSQL writing into an external docker-registry.
    ImportToDockerRegistry,
    /// (d) acr-import on PostgreSQL writing into its built-in registry.
    ImportToBuiltinPostgres,
    /// (d) acr-import on its embedded SQLite store writing into its built-in registry.
    ImportToBuiltinSqlite,
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
            Tool::Curl => "curl \\| curl -T - (blob only)",
            Tool::ImportToDockerRegistry => "acr-import → docker-registry (store: PostgreSQL)",
            Tool::ImportToBuiltinPostgres => "acr-import → built-in registry (store: PostgreSQL)",
            Tool::ImportToBuiltinSqlite => "acr-import → built-in registry (store: SQLite)",
            Tool::PullFromDockerRegistry => "skopeo pull ← docker-registry",
            Tool::PullFromBuiltin => "skopeo pull ← built-in registry",
        }
    }
    /// The baseline a row of (d) or (e) is compared with.
    fn baseline(self) -> Option<Tool> {
        match self {
            Tool::ImportToBuiltinPostgres | Tool::ImportToBuiltinSqlite => {
                Some(Tool::ImportToDockerRegistry)
            }
            Tool::PullFromBuiltin => Some(Tool::PullFromDockerRegistry),
            _ => None,
        }
    }
    /// Whether a separate target registry process exists whose CPU time is reported (the
    /// built-in registry runs inside the service: its CPU time is in the copier's; a pull has
    /// no target registry).
    fn has_target_process(self) -> bool {
        !matches!(
            self,
            Tool::ImportToBuiltinPostgres
                | Tool::ImportToBuiltinSqlite
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

pub struct Report {
    pub series: Vec<Series>,
    scenarios: Vec<Scenario>,
    header: String,
    load_start: String,
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
    pub fn new(scenarios: &[Scenario], runs: usize, bin: &Path) -> Self {
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
            "- Scenarios: {}; {runs} timed run(s) per tool and scenario; the target registry is wiped before every timed copy of (a), (b) and (d) (the built-in registry: a fresh service on an empty data dir); in (e) the pulled copy is deleted and skopeo's blob-info cache cleared before every run",
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
        let _ = writeln!(
            h,
            "- Machine: {} cores (`nproc`), {mem_gib}, kernel {}; {}; {}; {}",
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
            scenarios: scenarios.to_vec(),
            header: h,
            load_start: loadavg(),
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
        let r: Vec<f64> = t
            .samples
            .iter()
            .zip(&b.samples)
            .map(|(x, y)| x.wall.as_secs_f64() / y.wall.as_secs_f64())
            .collect();
        (!r.is_empty()).then(|| (median(&r), min(&r), max(&r)))
    }

    fn ratio(&self, scenario: Scenario) -> Option<f64> {
        let a = self.find(scenario, Tool::AcrImport)?;
        let s = self.find(scenario, Tool::Skopeo)?;
        Some(a.median_wall() / s.median_wall())
    }

    /// acr-import ÷ skopeo per run (the two ran back to back, so host load hits both alike):
    /// (median, min, max).
    fn paired(&self, scenario: Scenario) -> Option<(f64, f64, f64)> {
        let a = self.find(scenario, Tool::AcrImport)?;
        let s = self.find(scenario, Tool::Skopeo)?;
        let r: Vec<f64> = a
            .samples
            .iter()
            .zip(&s.samples)
            .map(|(x, y)| x.wall.as_secs_f64() / y.wall.as_secs_f64())
            .collect();
        (!r.is_empty()).then(|| (median(&r), min(&r), max(&r)))
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
            let comparison = match s.tool {
                Tool::AcrImport => self
                    .ratio(s.scenario)
                    .map(|r| format!("÷ skopeo = **{r:.3}**"))
                    .unwrap_or_default(),
                Tool::Skopeo => String::new(),
                Tool::Curl => self
                    .of_curl()
                    .map(|f| format!("acr-import = **{:.0} %** of this rate", f * 100.0))
                    .unwrap_or_default(),
                Tool::ImportToDockerRegistry | Tool::PullFromDockerRegistry => {
                    "baseline".to_string()
                }
                Tool::ImportToBuiltinPostgres
                | Tool::ImportToBuiltinSqlite
                | Tool::PullFromBuiltin => self
                    .vs_baseline(s.scenario, s.tool)
                    .map(|r| format!("÷ docker-registry = **{r:.3}**"))
                    .unwrap_or_default(),
            };
            let tgt_cpu = if s.tool.has_target_process() {
                format!("{:.2}", cpu(|x| x.cpu.tgt))
            } else {
                "—".to_string()
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {rate} | {comparison} | {:.2} / {:.2} / {tgt_cpu} / {:.2} | {} |",
                s.scenario.short(),
                s.tool.label(),
                Self::fmt_time(s.scenario, median(&w)),
                Self::fmt_time(s.scenario, min(&w)),
                Self::fmt_time(s.scenario, max(&w)),
                cpu(|x| x.cpu.copier),
                cpu(|x| x.cpu.src),
                cpu(|x| x.cpu.rest),
                s.peak_rss().map(mib).unwrap_or_default(),
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
        if self.scenarios.contains(&Scenario::D) || self.scenarios.contains(&Scenario::E) {
            let _ = writeln!(
                out,
                "(d) and (e): *copier* is the acr-import service for (d), which for the built-in rows includes the built-in registry (same process, so no separate target CPU: —), and skopeo for (e); *source reg.* is the registry pulled from: the source docker-registry in (d) and in (e)'s docker-registry row, the acr-import service (built-in registry) in (e)'s built-in row. Peak RSS in (d): the fresh service's `VmHWM` after the import (built-in rows: registry included)."
            );
        }
        let _ = writeln!(
            out,
            "Peak RSS: acr-import's `VmHWM` from /proc (for (b) a fresh process per run; for (a) and (c) the one long-running service since its start); skopeo's and curl's from `/usr/bin/time` (%M; for the curl pipeline the larger of the two curls). MiB/s: bytes moved (all blobs and manifests; for curl the one blob) ÷ median wall time."
        );
        let _ = writeln!(
            out,
            "CPU-s: user + system seconds during the timed window, from `/proc/<pid>/stat` (service, registries) and `/usr/bin/time` (skopeo, curl); *rest of host* is the machine's busy time from `/proc/stat` minus those: other work on the machine, kernel writeback of the target's files, and this driver's 10 ms polling. 2 cores = at most 2 CPU-s per second of wall time."
        );

        let _ = writeln!(out, "\n## Targets\n");
        let _ = writeln!(out, "| Target | Goal | Measured | Result |");
        let _ = writeln!(out, "|---|---|---:|---|");
        if let Some(r) = self.ratio(Scenario::A) {
            let _ = writeln!(
                out,
                "| (a) acr-import / skopeo, median wall time | ≤ 0.70 | {r:.3} | {} |",
                pass(r <= 0.7)
            );
        }
        if let Some((m, lo, hi)) = self.paired(Scenario::A) {
            let _ = writeln!(
                out,
                "| (a) the same, per run (back-to-back pairs), for information | | {m:.3} (median; {lo:.3}–{hi:.3}) | |"
            );
        }
        if let Some(r) = self.ratio(Scenario::B) {
            let _ = writeln!(
                out,
                "| (b) acr-import / skopeo, median wall time | ≤ 1.20 | {r:.3} | {} |",
                pass(r <= 1.2)
            );
        }
        if let Some((m, lo, hi)) = self.paired(Scenario::B) {
            let _ = writeln!(
                out,
                "| (b) the same, per run (same-run pairs), for information | | {m:.3} (median; {lo:.3}–{hi:.3}) | |"
            );
        }
        if let Some(f) = self.of_curl() {
            let _ = writeln!(
                out,
                "| (b) acr-import MiB/s vs the plain `curl \\| curl` blob copy | ≥ 80 % | {:.0} % | {} |",
                f * 100.0,
                pass(f >= 0.8)
            );
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
        if let Some(s) = self.find(Scenario::C, Tool::AcrImport) {
            let m = s.median_wall() * 1000.0;
            let _ = writeln!(
                out,
                "| (c) acr-import Force re-import, median | < 100 ms | {m:.1} ms | {} |",
                pass(m < 100.0)
            );
        }

        for (scenario, what) in [(Scenario::D, "import"), (Scenario::E, "skopeo pull")] {
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
        out
    }
}
