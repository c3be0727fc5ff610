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
    futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if st.stall_after.is_some_and(|n| st.sent >= n) {
                // Silent forever; the connection dies with the client or the proxy.
                futures::future::pending::<()>().await;
            }
            if st.cut_after.is_some_and(|n| st.sent >= n) {
                st.done = true;
                st.tracker.finish();
                return Some((Err(Box::new(CutError) as BoxError), st));
            }
            let chunk = match st.pending.take() {
                Some(c) => c,
                None => match st.inner.next().await {
                    Some(Ok(c)) => c,
                    Some(Err(e)) => {
                        st.done = true;
                        st.tracker.finish();
                        return Some((Err(e), st));
                    }
                    None => {
                        st.tracker.finish();
                        return None;
                    }
                },
            };
            if chunk.is_empty() {
                continue;
            }
            let mut max = chunk.len() as u64;
            for limit in [st.cut_after, st.stall_after].into_iter().flatten() {
                max = max.min(limit - st.sent);
            }
            if let Some(bps) = st.throttle {
                // ~20 slices per second keep the pacing smooth.
                max = max.min((bps / 20).clamp(512, 256 << 10));
            }
            let mut now = chunk;
            if (now.len() as u64) > max {
                let rest = now.split_off(max as usize);
                st.pending = Some(rest);
            }
            if let Some(bps) = st.throttle {
                let t = Instant::now();
                let start = st.next_free.max(t);
                st.next_free = start + Duration::from_secs_f64(now.len() as f64 / bps as f64);
                tokio::time::sleep_until(start).await;
            }
            if st.corrupt && st.sent == 0 {
                let mut v = now.to_vec();
                v[0] ^= 0xff;
                now = Bytes::from(v);
            }
            st.sent += now.len() as u64;
            st.tracker.add_response_bytes(now.len() as u64);
            if st.expected.is_some_and(|n| st.sent >= n) {
                st.tracker.finish();
            }
            return Some((Ok(now), st));
        }
    })
}
