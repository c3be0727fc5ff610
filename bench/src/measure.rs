//! What one timed run records, and how: wall time from this process's monotonic clock,
//! CPU time of the processes involved from `/proc`, and external copiers (skopeo, curl) run
//! under `/usr/bin/time` for their CPU time and peak RSS.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Linux reports `/proc` CPU times in USER_HZ ticks, which is 100 on every Linux ABI.
const TICKS_PER_SEC: f64 = 100.0;

/// User + system CPU seconds of a live process (all its threads).
pub fn proc_cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may contain spaces: fields start after the last ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / TICKS_PER_SEC
}

/// CPU seconds the whole machine spent busy (all cores, everything but idle and iowait).
pub fn machine_busy_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| v.get(*i))
        .sum();
    busy as f64 / TICKS_PER_SEC
}

/// CPU-time bookkeeping around one timed window: the copier, both registries, and the rest
/// of the machine (other work on the host, and this driver's polling).
pub struct CpuWindow {
    src_pid: u32,
    tgt_pid: u32,
    service_pid: Option<u32>,
    src0: f64,
    tgt0: f64,
    svc0: f64,
    machine0: f64,
}

impl CpuWindow {
    pub fn open(src_pid: u32, tgt_pid: u32, service_pid: Option<u32>) -> Self {
        Self {
            src_pid,
            tgt_pid,
            service_pid,
            src0: proc_cpu_secs(src_pid),
            tgt0: proc_cpu_secs(tgt_pid),
            svc0: service_pid.map(proc_cpu_secs).unwrap_or(0.0),
            machine0: machine_busy_secs(),
        }
    }

    /// Closes the window. `external` is the CPU time of an external copier (from
    /// `/usr/bin/time`); the service's comes from `/proc`.
    pub fn close(self, external: Option<f64>) -> Cpu {
        let src = proc_cpu_secs(self.src_pid) - self.src0;
        let tgt = proc_cpu_secs(self.tgt_pid) - self.tgt0;
        let copier = match (external, self.service_pid) {
            (Some(e), _) => e,
            (None, Some(pid)) => proc_cpu_secs(pid) - self.svc0,
            (None, None) => 0.0,
        };
        let machine = machine_busy_secs() - self.machine0;
        Cpu {
            copier,
            src,
            tgt,
            rest: (machine - copier - src - tgt).max(0.0),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    pub copier: f64,
    pub src: f64,
    pub tgt: f64,
    pub rest: f64,
}

/// One timed run.
#[derive(Clone, Debug)]
pub struct Sample {
    pub wall: Duration,
    pub cpu: Cpu,
    /// Peak RSS of the copier, bytes.
    pub peak_rss: Option<u64>,
}

/// Result of a command run under `/usr/bin/time`.
pub struct Timed {
    pub wall: Duration,
    pub cpu_secs: f64,
    pub max_rss: u64,
    pub stdout: String,
}

/// Runs `program args…` under `/usr/bin/time -f '%U %S %M'`; wall time is measured here,
/// from just before the spawn to just after the reap. Fails on a non-zero exit.
/// Several may run at once (the batch scenario runs its peers 4 at a time): each has its own
/// `/usr/bin/time` output file.
pub async fn run_timed(program: &str, args: &[String], scratch: &Path) -> Result<Timed> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let time_out = scratch.join(format!("time-{}.out", NEXT.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_file(&time_out);
    let mut cmd = tokio::process::Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("%U %S %M")
        .arg("-o")
        .arg(&time_out)
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    without_proxies(&mut cmd);
    let t0 = Instant::now();
    let out = cmd
        .output()
        .await
        .with_context(|| format!("run /usr/bin/time {program}"))?;
    let wall = t0.elapsed();
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}):\n{}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(&time_out).context("read /usr/bin/time output")?;
    let _ = std::fs::remove_file(&time_out);
    // The last line holds the format (earlier lines may note a non-zero exit).
    let last = text.lines().last().unwrap_or_default();
    let v: Vec<f64> = last
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() != 3 {
        bail!("unexpected /usr/bin/time output {text:?}");
    }
    Ok(Timed {
        wall,
        cpu_secs: v[0] + v[1],
        max_rss: (v[2] as u64) * 1024,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    })
}

/// Everything here talks to 127.0.0.1 only: no proxy may get in the way.
pub fn without_proxies(cmd: &mut tokio::process::Command) {
    for v in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
}

/// Output of a short command, trimmed (empty on failure).
pub fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            if s.trim().is_empty() {
                s = String::from_utf8_lossy(&o.stderr).into_owned();
            }
            s.trim().to_string()
        })
        .unwrap_or_default()
}

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

pub fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

pub fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// The `p`-th percentile (0..=100) by the nearest-rank method; NaN for no values.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}
