//! What the proxy observed: counters per [`Kind`], one [`LogEntry`] per request, and the
//! requests the redirect target received.

use std::time::Duration;

use super::Kind;

/// Counters of one request kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindStats {
    /// Requests received.
    pub count: u64,
    /// Response body bytes handed to the client.
    pub response_bytes: u64,
    /// Request body bytes received from the client.
    pub request_bytes: u64,
    /// Requests whose response has not finished (body sent or dropped) yet.
    pub in_flight: u64,
    /// The most requests of this kind in flight at once.
    pub max_in_flight: u64,
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// 0-based arrival order.
    pub seq: usize,
    /// Arrival time, since the proxy started.
    pub at: Duration,
    pub kind: Kind,
    pub method: String,
    /// Path and query as received.
    pub path: String,
    pub range: Option<String>,
    /// The `Authorization` header as received (test credentials only).
    pub authorization: Option<String>,
    pub content_length: Option<u64>,
    pub content_range: Option<String>,
    pub content_type: Option<String>,
    /// Status sent to the client (0 until the response starts; 502 when the upstream failed).
    pub status: u16,
    /// Request body bytes received.
    pub request_bytes: u64,
    /// Response body bytes handed to the client.
    pub response_bytes: u64,
    /// Names of the actions that fired on this request.
    pub faults: Vec<&'static str>,
}

impl LogEntry {
    pub fn has_authorization(&self) -> bool {
        self.authorization.is_some()
    }
    /// The path without the query.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }
    /// Offset N of a `Range: bytes=N-…` request header.
    pub fn range_start(&self) -> Option<u64> {
        let r = self.range.as_deref()?.trim().strip_prefix("bytes=")?;
        r.split('-').next()?.trim().parse().ok()
    }
}

impl std::fmt::Display for LogEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "#{} +{:.3}s {:?} {} {} → {} (req {} B, resp {} B)",
            self.seq,
            self.at.as_secs_f64(),
            self.kind,
            self.method,
            self.path,
            self.status,
            self.request_bytes,
            self.response_bytes
        )?;
        if let Some(r) = &self.range {
            write!(f, " [Range: {r}]")?;
        }
        if let Some(r) = &self.content_range {
            write!(f, " [Content-Range: {r}]")?;
        }
        if let Some(l) = self.content_length {
            write!(f, " [Content-Length: {l}]")?;
        }
        if let Some(a) = &self.authorization {
            let scheme = a.split(' ').next().unwrap_or("");
            write!(f, " [Authorization: {scheme} …]")?;
        }
        if !self.faults.is_empty() {
            write!(f, " faults={:?}", self.faults)?;
        }
        Ok(())
    }
}

/// A request the redirect target received.
#[derive(Clone, Debug)]
pub struct RedirectHit {
    pub method: String,
    pub path: String,
    pub had_authorization: bool,
    pub range: Option<String>,
    pub status: u16,
}
