//! The proxy's request handler: registers the request, applies the rules, then answers or
//! forwards.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, Response};
use futures::StreamExt;
use hyper::body::Incoming;

use super::answer::{answer_directly, is_answer};
use super::plan::Plan;
use super::rule::RequestFacts;
use super::shape::shape;
use super::state::{Shared, Tracker};
use super::{header_string, Action, BoxError, ByteStream, Kind, LogEntry, HOP_BY_HOP};

fn nonempty_body(headers: &HeaderMap) -> bool {
    match header_string(headers, "content-length") {
        Some(cl) => cl.trim().parse::<u64>().map_or(true, |n| n > 0),
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

pub(super) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let (parts, incoming) = req.into_parts();
    let method = parts.method.clone();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let path_only = parts.uri.path().to_string();
    let kind = Kind::classify(&method, &path_only);
    let headers = parts.headers;
    let has_body = nonempty_body(&headers);
    let content_length = header_string(&headers, "content-length").and_then(|v| v.parse().ok());
    let facts = RequestFacts {
        nonempty_body: has_body,
        content_range_start: header_string(&headers, "content-range").and_then(|v| {
            v.trim()
                .trim_start_matches("bytes=")
                .trim_start_matches("bytes ")
                .split('-')
                .next()
                .and_then(|a| a.trim().parse().ok())
        }),
        content_length,
    };

    // Register the request and decide what to do with it.
    let (tracker, plan) = {
        let mut st = shared.lock();
        let seq = st.log.len();
        let mut entry = LogEntry {
            seq,
            at: shared.started.elapsed(),
            kind,
            method: method.to_string(),
            path: path.clone(),
            range: header_string(&headers, "range"),
            authorization: header_string(&headers, "authorization"),
            content_length,
            content_range: header_string(&headers, "content-range"),
            content_type: header_string(&headers, "content-type"),
            status: 0,
            request_bytes: 0,
            response_bytes: 0,
            faults: Vec::new(),
        };
        let s = st.stats.entry(kind).or_default();
        s.count += 1;
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);

        let mut plan = Plan::default();
        for slot in st.rules.iter_mut() {
            if let Action::RejectMonolithicPut {
                chunk_min_length: Some(n),
                ..
            } = slot.rule.action
            {
                plan.chunk_min = Some(plan.chunk_min.map_or(n, |m: u64| m.max(n)));
            }
            if !slot.rule.matches(kind, &path, facts) {
                continue;
            }
            let occurrence = slot.seen;
            slot.seen += 1;
            if occurrence < slot.rule.skip
                || slot
                    .rule
                    .times
                    .is_some_and(|t| occurrence >= slot.rule.skip + t)
            {
                continue;
            }
            if plan.answer.is_some() && is_answer(&slot.rule.action) {
                // Only the first answering rule fires.
                continue;
            }
            slot.fired += 1;
            entry.faults.push(slot.rule.action.name());
            match &slot.rule.action {
                Action::CutAfter(n) => {
                    plan.cut_after = Some(plan.cut_after.map_or(*n, |m| m.min(*n)))
                }
                Action::StripRange => plan.strip_range = true,
                Action::Stall { after_bytes } => {
                    plan.stall_after = Some(
                        plan.stall_after
                            .map_or(*after_bytes, |m| m.min(*after_bytes)),
                    )
                }
                Action::StallUpload { after_bytes } => {
                    plan.stall_upload_after = Some(
                        plan.stall_upload_after
                            .map_or(*after_bytes, |m| m.min(*after_bytes)),
                    )
                }
                Action::Throttle(bps) => {
                    plan.throttle = Some(plan.throttle.map_or(*bps, |m| m.min(*bps)))
                }
                Action::Corrupt => plan.corrupt = true,
                a => plan.answer = Some(a.clone()),
            }
        }
        // Chunk minimum: a PATCH after a too-small PATCH in the same session is refused.
        if kind == Kind::UploadPatch && plan.answer.is_none() {
            if let Some(min) = plan.chunk_min {
                if let Some(&last) = st.patch_sizes.get(&path_only).and_then(|v| v.last()) {
                    if last < min {
                        st.chunk_violations.push(format!(
                            "PATCH {path_only} after a non-final PATCH of {last} bytes (< {min})"
                        ));
                        entry.faults.push("ChunkTooSmall");
                        plan.answer = Some(Action::status(
                            416,
                            "SIZE_INVALID",
                            &format!("chunks must be at least {min} bytes, except the last"),
                        ));
                    }
                }
            }
        }
        st.log.push(entry);
        (
            Tracker {
                shared: shared.clone(),
                kind,
                seq,
                finished: false,
            },
            plan,
        )
    };

    if let Some(answer) = plan.answer.clone() {
        // Read (and count) the request body first so the client sees the answer, not a
        // connection reset in the middle of its upload.
        let mut body = Body::new(incoming).into_data_stream();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) => Tracker::add_request_bytes(&shared, kind, tracker.seq, c.len() as u64),
                Err(_) => break,
            }
        }
        return answer_directly(&shared, answer, &method, &path_only, tracker, &plan);
    }

    // Forward.
    let url = format!("{}{}", shared.upstream, path);
    let mut out = shared.http.request(method.clone(), &url);
    for (name, value) in &headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || (plan.strip_range && n == "range") {
            continue;
        }
        out = out.header(name.clone(), value.clone());
    }
    if has_body {
        let counter = shared.clone();
        let seq = tracker.seq;
        let stream = Body::new(incoming).into_data_stream().map(move |r| {
            if let Ok(c) = &r {
                Tracker::add_request_bytes(&counter, kind, seq, c.len() as u64);
            }
            r
        });
        out = match plan.stall_upload_after {
            // Pass chunks on until `n` bytes went through, then read nothing more, ever.
            Some(n) => {
                let mut passed = 0u64;
                let head = stream.take_while(move |r| {
                    let go = passed < n;
                    if let Ok(c) = r {
                        passed += c.len() as u64;
                    }
                    futures::future::ready(go)
                });
                out.body(reqwest::Body::wrap_stream(
                    head.chain(futures::stream::pending()),
                ))
            }
            None => out.body(reqwest::Body::wrap_stream(stream)),
        };
    } else {
        drop(incoming);
    }
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
    if kind == Kind::UploadPatch && status.is_success() {
        let size = tracker_request_bytes(&shared, tracker.seq).max(content_length.unwrap_or(0));
        shared
            .lock()
            .patch_sizes
            .entry(path_only.clone())
            .or_default()
            .push(size);
    }
    let mut builder = Response::builder().status(status.as_u16());
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
    if kind == Kind::UploadPost {
        if let Some(min) = plan.chunk_min {
            builder = builder.header("OCI-Chunk-Min-Length", min.to_string());
        }
    }
    let expected = upstream_resp.content_length();
    let inner: ByteStream = Box::pin(
        upstream_resp
            .bytes_stream()
            .map(|r| r.map_err(|e| Box::new(e) as BoxError)),
    );
    let body = if method == Method::HEAD {
        drop(inner);
        drop(tracker);
        Body::empty()
    } else {
        Body::from_stream(shape(inner, &plan, tracker, expected))
    };
    builder.body(body).expect("proxied response")
}

fn tracker_request_bytes(shared: &Shared, seq: usize) -> u64 {
    shared.lock().log.get(seq).map_or(0, |e| e.request_bytes)
}
