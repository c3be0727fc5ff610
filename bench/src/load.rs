//! The two load generators of issue 14's API goals.
//!
//! - [`post_stream`]: an open-loop stream of `importImage` POSTs at a fixed rate. Each POST
//!   is sent from its own task at its scheduled tick, whatever the earlier ones are doing, so
//!   a slow answer cannot hold back the next POST (no coordinated omission: the generator
//!   keeps the rate and the slowness shows as latency).
//! - [`get_load`]: closed-loop GETs of status URLs over N keep-alive HTTP/1.1 connections
//!   (one hyper connection per task, the next request sent when the answer's body is read),
//!   for a fixed time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// The answer to one POST of [`post_stream`].
pub struct Posted {
    /// Status code, or 0 when the request got no answer.
    pub status: u16,
    /// From just before the request was handed to the client to the answer's last body byte.
    pub latency: Duration,
    /// How late the POST left after its scheduled time (the generator's own lag).
    pub lag: Duration,
    /// The `Azure-AsyncOperation` URL of an accepted import.
    pub status_url: Option<String>,
    /// The body of an answer that was not 202 (for the log).
    pub error: Option<String>,
}

/// Sends each job's body to its URL, one every `1 / rate` seconds, each from its own task.
/// Returns the answers and the time from the first POST's schedule to the last one's.
pub async fn post_stream(
    http: &reqwest::Client,
    jobs: Vec<(String, Vec<u8>)>,
    rate: f64,
) -> (Vec<Posted>, Duration) {
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut handles = Vec::with_capacity(jobs.len());
    for (i, (url, body)) in jobs.into_iter().enumerate() {
        let due = start + period * i as u32;
        tokio::time::sleep_until(due).await;
        let http = http.clone();
        handles.push(tokio::spawn(async move {
            let t0 = tokio::time::Instant::now();
            let lag = t0.saturating_duration_since(due);
            let sent = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let status_url = resp
                        .headers()
                        .get("azure-asyncoperation")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body = resp.bytes().await.unwrap_or_default();
                    let latency = t0.elapsed();
                    Posted {
                        status,
                        latency,
                        lag,
                        status_url,
                        error: (status != 202).then(|| String::from_utf8_lossy(&body).into_owned()),
                    }
                }
                Err(e) => Posted {
                    status: 0,
                    latency: t0.elapsed(),
                    lag,
                    status_url: None,
                    error: Some(e.to_string()),
                },
            }
        }));
    }
    let sending = start.elapsed();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(p) => out.push(p),
            Err(e) => out.push(Posted {
                status: 0,
                latency: Duration::ZERO,
                lag: Duration::ZERO,
                status_url: None,
                error: Some(format!("task failed: {e}")),
            }),
        }
    }
    (out, sending)
}

/// What [`get_load`] saw.
pub struct GetLoad {
    /// Wall time of the load (from the first connection's start to the last answer).
    pub elapsed: Duration,
    /// Answers 200 with a body.
    pub ok: u64,
    /// Answers of any other status, and failed requests.
    pub errors: u64,
    /// Latency of every request, microseconds.
    pub latencies_us: Vec<u32>,
}

/// GETs `paths` (round robin, `Host: host`) on `addr` over `conns` keep-alive HTTP/1.1
/// connections for `duration`.
pub async fn get_load(
    addr: SocketAddr,
    host: &str,
    paths: &[String],
    conns: usize,
    duration: Duration,
) -> Result<GetLoad> {
    if paths.is_empty() {
        bail!("no status URL to GET");
    }
    let t0 = Instant::now();
    let deadline = t0 + duration;
    let mut tasks = Vec::with_capacity(conns);
    for c in 0..conns {
        let host = host.to_string();
        let paths = paths.to_vec();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .with_context(|| format!("connect {addr}"))?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                    .await
                    .context("HTTP/1.1 handshake")?;
            tokio::spawn(conn);
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut lat = Vec::with_capacity(65536);
            let mut i = c;
            while Instant::now() < deadline {
                let path = &paths[i % paths.len()];
                i += 1;
                let req = hyper::Request::get(path.as_str())
                    .header("host", host.as_str())
                    .body(Empty::<Bytes>::new())?;
                let s = Instant::now();
                sender.ready().await.context("connection closed")?;
                match sender.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                        lat.push(s.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        match body {
                            Ok(b) if status == 200 && !b.is_empty() => ok += 1,
                            _ => errors += 1,
                        }
                    }
                    Err(e) => bail!("GET {path}: {e}"),
                }
            }
            anyhow::Ok((ok, errors, lat))
        }));
    }
    let mut load = GetLoad {
        elapsed: Duration::ZERO,
        ok: 0,
        errors: 0,
        latencies_us: Vec::new(),
    };
    for t in tasks {
        let (ok, errors, lat) = t.await.context("load task")??;
        load.ok += ok;
        load.errors += errors;
        load.latencies_us.extend(lat);
    }
    load.elapsed = t0.elapsed();
    Ok(load)
}
