//! A 64 MiB blob streamed from a generator round-trips with the right digest, and the process's
//! peak memory does not grow with it (the only test of this binary, so the peak is ours).

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};

const SIZE: usize = 64 << 20;
const CHUNK: usize = 64 << 10;

/// Peak resident set size of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_blob_streams_through_without_growing_memory() {
    let s = serve(None).await;
    // warm up the server and the client before taking the baseline
    s.push_blob("big/warm", &bytes(CHUNK, 1)).await;
    let baseline = peak_rss();
    let started = std::time::Instant::now();

    // upload: one streamed PATCH from a generator (no Content-Length), hashing as it goes
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let h = hasher.clone();
    let body = futures::stream::iter(0..SIZE / CHUNK).map(move |i| {
        let chunk = bytes(CHUNK, i as u64);
        if let Ok(mut h) = h.lock() {
            h.update(&chunk);
        }
        Ok::<_, std::io::Error>(chunk)
    });
    let loc = s.start_upload("big/blob").await;
    let r = s
        .req(Method::PATCH, &loc)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), Some(format!("0-{}", SIZE - 1)));
    let digest = {
        let h = hasher.lock().expect("lock").clone();
        format!("sha256:{}", hex::encode(h.finalize()))
    };
    let r = s
        .req(
            Method::PUT,
            &with_query(&location(&r), &format!("digest={digest}")),
        )
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);

    // download, streamed, hashing as it comes
    let r = s.get(&format!("/v2/big/blob/blobs/{digest}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), Some(SIZE.to_string()));
    let mut stream = r.bytes_stream();
    let mut h = Sha256::new();
    let mut n = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        n += chunk.len();
        h.update(&chunk);
    }
    assert_eq!(n, SIZE);
    assert_eq!(format!("sha256:{}", hex::encode(h.finalize())), digest);

    let growth = peak_rss().saturating_sub(baseline);
    eprintln!(
        "64 MiB up and down in {:?}; peak RSS grew by {} KiB",
        started.elapsed(),
        growth / 1024
    );
    assert!(
        growth < (SIZE as u64) / 4,
        "peak RSS grew by {growth} bytes for a {SIZE}-byte blob"
    );
}
