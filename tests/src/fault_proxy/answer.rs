//! Answering actions: replies the proxy makes itself, without forwarding ([`Action::Status`],
//! [`Action::ServeManifest`]; the upload and redirect answers come from their modules). The
//! body faults of the plan still apply to the reply's body.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, Response};
use bytes::Bytes;
use futures::StreamExt;
use hyper::body::Incoming;

use super::handle::RequestHead;
use super::plan::Plan;
use super::redirect::redirect;
use super::shape::shape;
use super::state::{Shared, Tracker};
use super::upload::monolithic_put_refusal;
use super::{Action, BoxError, ByteStream, Kind};
use crate::util::sha256_digest;

/// A reply of the proxy's own.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Bytes,
}

/// Answers with `action` once the request body is read (and counted), so the client sees
/// the answer, not a connection reset in the middle of its upload.
pub(super) async fn answer(
    shared: &Arc<Shared>,
    action: Action,
    head: &RequestHead,
    body: Incoming,
    tracker: Tracker,
    plan: &Plan,
) -> Response<Body> {
    drain(shared, head.kind, tracker.seq, body).await;
    let reply = reply_for(shared, action, &head.path_only);
    send(reply, &head.method, tracker, plan)
}

async fn drain(shared: &Shared, kind: Kind, seq: usize, body: Incoming) {
    let mut body = Body::new(body).into_data_stream();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => Tracker::add_request_bytes(shared, kind, seq, c.len() as u64),
            Err(_) => break,
        }
    }
}

/// The reply an answering action makes to a request for `path` (without the query).
fn reply_for(shared: &Shared, action: Action, path: &str) -> Reply {
    match action {
        Action::Status {
            status,
            headers,
            body,
        } => Reply {
            status,
            headers,
            body,
        },
        Action::ServeManifest { content_type, body } => Reply {
            status: 200,
            headers: vec![
                ("Content-Type".into(), content_type),
                ("Docker-Content-Digest".into(), sha256_digest(&body)),
                (
                    "Docker-Distribution-Api-Version".into(),
                    "registry/2.0".into(),
                ),
            ],
            body,
        },
        Action::RejectMonolithicPut { status, .. } => monolithic_put_refusal(status),
        Action::Redirect { to } => redirect(shared, to, path),
        other => unreachable!("not an answering action: {other:?}"),
    }
}

/// Sends `reply` (with a `Content-Length` unless it has one), its body through the plan's
/// body faults (none for HEAD).
fn send(reply: Reply, method: &Method, tracker: Tracker, plan: &Plan) -> Response<Body> {
    let Reply {
        status,
        headers,
        body,
    } = reply;
    tracker.set_status(status);
    let mut builder = Response::builder().status(status);
    let mut has_len = false;
    for (k, v) in &headers {
        if k.eq_ignore_ascii_case("content-length") {
            has_len = true;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            builder = builder.header(name, value);
        }
    }
    if !has_len {
        builder = builder.header(header::CONTENT_LENGTH, body.len().to_string());
    }
    if *method == Method::HEAD {
        drop(tracker);
        return builder.body(Body::empty()).expect("HEAD answer");
    }
    let expected = Some(body.len() as u64);
    let inner: ByteStream = Box::pin(futures::stream::iter(vec![Ok::<_, BoxError>(body)]));
    builder
        .body(Body::from_stream(shape(inner, plan, tracker, expected)))
        .expect("answer")
}
