//! Response body faults: cuts, stalls, throttling and corruption.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use super::plan::Plan;
use super::state::Tracker;
use super::{BoxError, ByteStream};

#[derive(Debug)]
struct CutError;

impl std::fmt::Display for CutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault proxy: connection cut")
    }
}

impl std::error::Error for CutError {}

struct ShapeState {
    inner: ByteStream,
    pending: Option<Bytes>,
    sent: u64,
    cut_after: Option<u64>,
    stall_after: Option<u64>,
    throttle: Option<u64>,
    next_free: Instant,
    corrupt: bool,
    done: bool,
    /// Body length announced to the client, if known.
    expected: Option<u64>,
    tracker: Tracker,
}

/// Applies cut / stall / throttle / corruption to a response body and counts what is sent.
pub(super) fn shape(
    inner: ByteStream,
    plan: &Plan,
    tracker: Tracker,
    expected: Option<u64>,
) -> impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static {
    let st = ShapeState {
        inner,
        pending: None,
        sent: 0,
        cut_after: plan.cut_after,
        stall_after: plan.stall_after,
        throttle: plan.throttle.filter(|b| *b > 0),
        next_free: Instant::now(),
        corrupt: plan.corrupt,
        done: false,
        expected,
        tracker,
    };
    futures::stream::unfold(st, ShapeState::next_item)
}

impl ShapeState {
    /// The next item for the client: a slice of the body, the cut, or the end (never, once
    /// stalled).
    async fn next_item(mut self) -> Option<(Result<Bytes, BoxError>, Self)> {
        if self.done {
            return None;
        }
        if self.stall_after.is_some_and(|n| self.sent >= n) {
            // Silent forever; the connection dies with the client or the proxy.
            futures::future::pending::<()>().await;
        }
        if self.cut_after.is_some_and(|n| self.sent >= n) {
            self.done = true;
            self.tracker.finish();
            return Some((Err(Box::new(CutError) as BoxError), self));
        }
        let chunk = match self.next_chunk().await {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                self.done = true;
                self.tracker.finish();
                return Some((Err(e), self));
            }
            None => {
                self.tracker.finish();
                return None;
            }
        };
        let mut now = self.take_slice(chunk);
        self.pace(now.len()).await;
        if self.corrupt && self.sent == 0 {
            let mut v = now.to_vec();
            v[0] ^= 0xff;
            now = Bytes::from(v);
        }
        self.sent += now.len() as u64;
        self.tracker.add_response_bytes(now.len() as u64);
        if self.expected.is_some_and(|n| self.sent >= n) {
            self.tracker.finish();
        }
        Some((Ok(now), self))
    }

    /// The rest of the last chunk, else the next non-empty chunk of the body.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, BoxError>> {
        if let Some(c) = self.pending.take() {
            return Some(Ok(c));
        }
        loop {
            match self.inner.next().await {
                Some(Ok(c)) if c.is_empty() => continue,
                other => return other,
            }
        }
    }

    /// As much of `chunk` as may go now (up to the cut or the stall, one throttle slice);
    /// the rest waits in `pending`.
    fn take_slice(&mut self, chunk: Bytes) -> Bytes {
        let mut max = chunk.len() as u64;
        for limit in [self.cut_after, self.stall_after].into_iter().flatten() {
            max = max.min(limit - self.sent);
        }
        if let Some(bps) = self.throttle {
            // ~20 slices per second keep the pacing smooth.
            max = max.min((bps / 20).clamp(512, 256 << 10));
        }
        let mut now = chunk;
        if (now.len() as u64) > max {
            let rest = now.split_off(max as usize);
            self.pending = Some(rest);
        }
        now
    }

    /// Throttle: waits until `len` more bytes fit the rate.
    async fn pace(&mut self, len: usize) {
        if let Some(bps) = self.throttle {
            let t = Instant::now();
            let start = self.next_free.max(t);
            self.next_free = start + Duration::from_secs_f64(len as f64 / bps as f64);
            tokio::time::sleep_until(start).await;
        }
    }
}
