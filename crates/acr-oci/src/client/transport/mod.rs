//! How one request goes out, apart from what it asks (go-containerregistry's
//! `remote/transport`):
//!
//! - `challenge`: `WWW-Authenticate` parsing and token responses (pure; fuzzed);
//! - `auth`: [`Scopes`], authorizing a request (Basic, Bearer from the per-scope token cache,
//!   a bare token), and the token dance on a 401 (refresh-token POST, else GET with Basic);
//! - `retry`: `send`, one 401 round trip plus retries of transient failures (network, 408,
//!   429, 5xx) with jittered exponential backoff or the server's `Retry-After`;
//! - `error`: responses and reqwest errors mapped to [`OciError`](crate::error::OciError);
//! - `forward`: one request passed through for the login servers.
//!
//! Also [`read_limited`], the bounded body reader every small answer goes through.

mod bearer;
pub mod challenge;
mod error;
mod forward;
mod retry;

use futures::StreamExt;
use reqwest::Response;

pub(crate) use bearer::AuthState;
pub use bearer::Scopes;

/// Reads a body up to `limit` bytes (one more byte tells the caller it was too long).
pub(crate) async fn read_limited(resp: Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}
