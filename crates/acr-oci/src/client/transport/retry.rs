//! Sending a replayable request: one re-authentication on 401, retries of transient failures
//! with jittered exponential backoff or the server's `Retry-After`. Streaming bodies cannot be
//! replayed here: blobs are retried whole by the copy engine.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Response, StatusCode};

use super::Scopes;
use crate::client::RegistryClient;
use crate::error::OciError;

impl RegistryClient {
    /// Sends a replayable request: authenticates on 401 (once), retries transient failures
    /// with jittered exponential backoff, honouring `Retry-After`.
    pub(crate) async fn send(
        &self,
        scopes: &Scopes,
        make: impl Fn() -> Result<RequestBuilder, OciError>,
    ) -> Result<Response, OciError> {
        let mut attempt = 0u32;
        let mut reauthed = false;
        loop {
            attempt += 1;
            let rb = self.authorize(make()?, scopes);
            match self.observed(rb.send().await) {
                Err(e) => {
                    if attempt < self.max_attempts
                        && (e.is_connect() || e.is_timeout() || e.is_request() || e.is_body())
                    {
                        tokio::time::sleep(backoff(attempt, None)).await;
                        continue;
                    }
                    return Err(self.network(e));
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !reauthed => {
                    reauthed = true;
                    self.on_unauthorized(&resp, scopes).await?;
                    attempt -= 1;
                }
                Ok(resp)
                    if attempt < self.max_attempts
                        && matches!(resp.status().as_u16(), 408 | 429 | 500 | 502 | 503 | 504) =>
                {
                    let wait = backoff(attempt, retry_after(resp.headers()));
                    tracing::debug!(registry = %self.name, status = resp.status().as_u16(), ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Ok(resp) => return Ok(resp),
            }
        }
    }
}

/// Jittered exponential backoff, or the server's `Retry-After` (capped at 60 s).
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(r) = retry_after {
        return r.min(Duration::from_secs(60));
    }
    let base = 200u64.saturating_mul(1 << attempt.min(6));
    let nanos = Instant::now().elapsed().subsec_nanos() as u64 ^ u64::from(std::process::id());
    let jitter = nanos % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}

pub(super) fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded() {
        for a in 1..20 {
            assert!(backoff(a, None) <= Duration::from_millis(200 * 64 + 1));
        }
        assert_eq!(
            backoff(1, Some(Duration::from_secs(500))),
            Duration::from_secs(60)
        );
    }
}
