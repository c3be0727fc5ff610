//! An HTTP fault-injection proxy in front of a registry (or a token server).
//!
//! [`FaultProxy::start`] listens on 127.0.0.1:0 and forwards every request to the upstream
//! (`http://127.0.0.1:PORT`), streaming request and response bodies both ways (uploads of
//! hundreds of MiB pass through it). Headers go through as they are (`Authorization`,
//! `Range`, `Content-Range`, `Content-Length`, `Content-Type`, …) except hop-by-hop ones and
//! `Host`; absolute upstream URLs in `Location` are rewritten to the proxy's address; redirects
//! from the upstream are handed to the client, never followed.
//!
//! It counts everything per request [`Kind`] (count, response body bytes sent to the client,
//! current and maximum in-flight requests) and logs every request ([`LogEntry`]). [`Rule`]s
//! inject faults; they can be added and cleared while the proxy runs. A rule matches by kind
//! and/or path substring, and fires on a window of its matching occurrences (`skip`, `first`).
//! Several rules may fire on one request: body shapers ([`Action::CutAfter`],
//! [`Action::Stall`], [`Action::StallUpload`], [`Action::Throttle`], [`Action::Corrupt`],
//! [`Action::StripRange`]) combine; the first answering action ([`Action::Status`],
//! [`Action::ServeManifest`], [`Action::RejectMonolithicPut`], [`Action::Redirect`]) answers
//! without forwarding.
//!
//! A second server, [`FaultProxy::redirect_target`], serves the blobs [`Action::Redirect`]
//! sends clients to: it fetches them from the upstream with the proxy's own credentials and
//! records whether each request it got carried an `Authorization` header.
//!
//! Everything (both listeners and every connection, stalled ones included) stops on Drop.
//!
//! Layout: `server` (the [`FaultProxy`] handle, its listeners and accept loop), `kind` and
//! `log` (what a request is, what was observed), `rule` and `plan` (the fault configuration
//! and what it decides for one request), `state` (shared state, the per-request tracker),
//! `handle` (one request: register, plan, then answer or forward), `forward` (to the
//! upstream and back), `answer` (replies of the proxy's own), `shape` (response body faults:
//! cuts, stalls, throttling, corruption), `upload` (upload faults: stalled uploads, refused
//! monolithic PUTs, the chunk minimum), `redirect` (cross-host redirects and their target).

mod answer;
mod forward;
mod handle;
mod kind;
mod log;
mod plan;
mod redirect;
mod rule;
mod server;
mod shape;
mod state;
mod upload;

pub use kind::Kind;
pub use log::{KindStats, LogEntry, RedirectHit};
pub use rule::{Action, Rule, RuleId};
pub use server::FaultProxy;

use axum::http::HeaderMap;
use bytes::Bytes;
use futures::Stream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ByteStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
