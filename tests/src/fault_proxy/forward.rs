//! Forwarding: the request goes upstream (headers as they are but hop-by-hop ones, the body
//! streamed and counted), the answer comes back with `Location` rewritten to the proxy, its
//! body shaped by the plan's body faults.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, response, Method, Response};
use futures::{Stream, StreamExt};
use hyper::body::Incoming;

use super::handle::RequestHead;
use super::plan::Plan;
use super::shape::shape;
use super::state::{Shared, Tracker};
use super::upload::{announce_chunk_minimum, record_patch, stall_upload};
use super::{BoxError, ByteStream, Kind};

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

pub(super) async fn forward(
    shared: &Arc<Shared>,
    head: &RequestHead,
    body: Incoming,
    tracker: Tracker,
    plan: &Plan,
) -> Response<Body> {
    let out = upstream_request(shared, head, body, &tracker, plan);
    let upstream_resp = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            tracker.set_status(502);
            return Response::builder()
                .status(502)
                .body(Body::from(format!("fault proxy: upstream error: {e}")))
                .expect("502 response");
        }
    };
    let status = upstream_resp.status();
    tracker.set_status(status.as_u16());
    if head.kind == Kind::UploadPatch && status.is_success() {
        record_patch(shared, head, tracker.seq);
    }
    let mut builder = response_head(shared, &upstream_resp);
    if head.kind == Kind::UploadPost {
        builder = announce_chunk_minimum(builder, plan);
    }
    let body = response_body(upstream_resp, &head.method, plan, tracker);
    builder.body(body).expect("proxied response")
}

/// The request to the upstream: same method, path and headers (less hop-by-hop ones, and
/// `Range` if the plan strips it); a body, if any, streamed through and counted.
fn upstream_request(
    shared: &Arc<Shared>,
    head: &RequestHead,
    body: Incoming,
    tracker: &Tracker,
    plan: &Plan,
) -> reqwest::RequestBuilder {
    let url = format!("{}{}", shared.upstream, head.path);
    let mut out = shared.http.request(head.method.clone(), &url);
    for (name, value) in &head.headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || (plan.strip_range && n == "range") {
            continue;
        }
        out = out.header(name.clone(), value.clone());
    }
    if !head.facts.nonempty_body {
        drop(body);
        return out;
    }
    let stream = counted_request_body(shared.clone(), head.kind, tracker.seq, body);
    match plan.stall_upload_after {
        Some(n) => out.body(reqwest::Body::wrap_stream(stall_upload(stream, n))),
        None => out.body(reqwest::Body::wrap_stream(stream)),
    }
}

/// The client's request body, its bytes counted into the stats and the log entry `seq`.
fn counted_request_body(
    shared: Arc<Shared>,
    kind: Kind,
    seq: usize,
    body: Incoming,
) -> impl Stream<Item = Result<bytes::Bytes, axum::Error>> + Send + 'static {
    Body::new(body).into_data_stream().map(move |r| {
        if let Ok(c) = &r {
            Tracker::add_request_bytes(&shared, kind, seq, c.len() as u64);
        }
        r
    })
}

/// The upstream's status and headers, less hop-by-hop ones; an absolute `Location` on the
/// upstream points at the proxy instead.
fn response_head(shared: &Shared, upstream_resp: &reqwest::Response) -> response::Builder {
    let mut builder = Response::builder().status(upstream_resp.status().as_u16());
    for (name, value) in upstream_resp.headers() {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) {
            continue;
        }
        if n == "location" {
            if let Ok(v) = value.to_str() {
                let rewritten = match v.strip_prefix(shared.upstream.as_str()) {
                    Some(rest) => format!("{}{rest}", shared.base),
                    None => v.to_string(),
                };
                builder = builder.header(header::LOCATION, rewritten);
                continue;
            }
        }
        builder = builder.header(name.clone(), value.clone());
    }
    builder
}

/// The upstream's body through the plan's body faults (none for HEAD).
fn response_body(
    upstream_resp: reqwest::Response,
    method: &Method,
    plan: &Plan,
    tracker: Tracker,
) -> Body {
    let expected = upstream_resp.content_length();
    let inner: ByteStream = Box::pin(
        upstream_resp
            .bytes_stream()
            .map(|r| r.map_err(|e| Box::new(e) as BoxError)),
    );
    if *method == Method::HEAD {
        drop(inner);
        drop(tracker);
        Body::empty()
    } else {
        Body::from_stream(shape(inner, plan, tracker, expected))
    }
}
