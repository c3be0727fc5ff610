//! Answering actions: replies the proxy makes itself, without forwarding.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, Response};
use bytes::Bytes;

use super::plan::Plan;
use super::redirect::split_blob_path;
use super::shape::shape;
use super::state::{Shared, Tracker};
use super::{Action, BoxError, ByteStream};
use crate::util::sha256_digest;

pub(super) fn is_answer(a: &Action) -> bool {
    matches!(
        a,
        Action::Status { .. }
            | Action::ServeManifest { .. }
            | Action::RejectMonolithicPut { .. }
            | Action::Redirect { .. }
    )
}

pub(super) fn answer_directly(
    shared: &Arc<Shared>,
    answer: Action,
    method: &Method,
    path: &str,
    tracker: Tracker,
    plan: &Plan,
) -> Response<Body> {
    let (status, headers, body): (u16, Vec<(String, String)>, Bytes) = match answer {
        Action::Status {
            status,
            headers,
            body,
        } => (status, headers, body),
        Action::ServeManifest { content_type, body } => (
            200,
            vec![
                ("Content-Type".into(), content_type),
                ("Docker-Content-Digest".into(), sha256_digest(&body)),
                ("Docker-Distribution-Api-Version".into(), "registry/2.0".into()),
            ],
            body,
        ),
        Action::RejectMonolithicPut { status, .. } => (
            status,
            vec![("Content-Type".into(), "application/json".into())],
            Bytes::from_static(
                br#"{"errors":[{"code":"SIZE_INVALID","message":"monolithic uploads are not accepted; use chunked PATCH"}]}"#,
            ),
        ),
        Action::Redirect { to } => {
            let (repo, digest) = split_blob_path(path).unwrap_or_default();
            let base = to.unwrap_or_else(|| shared.redirect_base.clone());
            let repo_q: String = url::form_urlencoded::byte_serialize(repo.as_bytes()).collect();
            (
                307,
                vec![(
                    "Location".into(),
                    format!("{}/{digest}?repo={repo_q}", base.trim_end_matches('/')),
                )],
                Bytes::new(),
            )
        }
        other => unreachable!("not an answering action: {other:?}"),
    };
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
