//! Upload faults: uploads that stall mid-body ([`Action::StallUpload`]), monolithic PUTs
//! refused ([`Action::RejectMonolithicPut`]) and the chunk minimum that comes with them
//! (`OCI-Chunk-Min-Length` announced on POST, a PATCH after a too-small PATCH refused).

use std::sync::Arc;

use axum::http::response;
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::answer::Reply;
use super::handle::RequestHead;
use super::plan::Plan;
use super::state::{Shared, State};
use super::{Action, Kind};

/// Passes chunks on until `n` bytes went through, then reads nothing more, ever.
pub(super) fn stall_upload<S, E>(stream: S, n: u64) -> impl Stream<Item = Result<Bytes, E>>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    let mut passed = 0u64;
    let head = stream.take_while(move |r| {
        let go = passed < n;
        if let Ok(c) = r {
            passed += c.len() as u64;
        }
        futures::future::ready(go)
    });
    head.chain(futures::stream::pending())
}

/// Chunk minimum: a PATCH after a too-small PATCH in the same session is answered 416
/// (and recorded as a chunk violation) unless another rule answers it already.
pub(super) fn refuse_small_chunks(
    st: &mut State,
    head: &RequestHead,
    plan: &mut Plan,
    faults: &mut Vec<&'static str>,
) {
    if head.kind != Kind::UploadPatch || plan.answer.is_some() {
        return;
    }
    let Some(min) = plan.chunk_min else { return };
    let path_only = &head.path_only;
    let Some(&last) = st.patch_sizes.get(path_only).and_then(|v| v.last()) else {
        return;
    };
    if last < min {
        st.chunk_violations.push(format!(
            "PATCH {path_only} after a non-final PATCH of {last} bytes (< {min})"
        ));
        faults.push("ChunkTooSmall");
        plan.answer = Some(Action::status(
            416,
            "SIZE_INVALID",
            &format!("chunks must be at least {min} bytes, except the last"),
        ));
    }
}

/// Records the size of a PATCH the upstream accepted, for the chunk minimum: the bytes
/// forwarded, or its `Content-Length` if larger.
pub(super) fn record_patch(shared: &Arc<Shared>, head: &RequestHead, seq: usize) {
    let forwarded = shared.lock().log.get(seq).map_or(0, |e| e.request_bytes);
    let size = forwarded.max(head.facts.content_length.unwrap_or(0));
    shared
        .lock()
        .patch_sizes
        .entry(head.path_only.clone())
        .or_default()
        .push(size);
}

/// An upload POST's answer carries `OCI-Chunk-Min-Length` when a rule sets a minimum.
pub(super) fn announce_chunk_minimum(builder: response::Builder, plan: &Plan) -> response::Builder {
    match plan.chunk_min {
        Some(min) => builder.header("OCI-Chunk-Min-Length", min.to_string()),
        None => builder,
    }
}

/// The answer to a refused monolithic PUT: `status` with a SIZE_INVALID error body.
pub(super) fn monolithic_put_refusal(status: u16) -> Reply {
    Reply {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: Bytes::from_static(
            br#"{"errors":[{"code":"SIZE_INVALID","message":"monolithic uploads are not accepted; use chunked PATCH"}]}"#,
        ),
    }
}
