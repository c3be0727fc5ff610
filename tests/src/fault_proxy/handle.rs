//! The proxy's request handler: registers the request (log entry, counters), asks the rules
//! for a [`Plan`], then answers it itself or forwards it.

use std::sync::Arc;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, Request, Response};
use hyper::body::Incoming;

use super::answer::answer;
use super::forward::forward;
use super::plan::Plan;
use super::rule::RequestFacts;
use super::state::{Shared, State, Tracker};
use super::upload::refuse_small_chunks;
use super::{header_string, Kind, LogEntry};

/// What the proxy knows of a request before reading its body.
pub(super) struct RequestHead {
    pub(super) method: Method,
    /// Path and query as received.
    pub(super) path: String,
    /// The path without the query.
    pub(super) path_only: String,
    pub(super) kind: Kind,
    pub(super) headers: HeaderMap,
    pub(super) facts: RequestFacts,
}

impl RequestHead {
    fn new(parts: Parts) -> Self {
        let method = parts.method.clone();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string());
        let path_only = parts.uri.path().to_string();
        let kind = Kind::classify(&method, &path_only);
        let headers = parts.headers;
        let facts = RequestFacts {
            nonempty_body: nonempty_body(&headers),
            content_range_start: header_string(&headers, "content-range").and_then(|v| {
                v.trim()
                    .trim_start_matches("bytes=")
                    .trim_start_matches("bytes ")
                    .split('-')
                    .next()
                    .and_then(|a| a.trim().parse().ok())
            }),
            content_length: header_string(&headers, "content-length").and_then(|v| v.parse().ok()),
        };
        Self {
            method,
            path,
            path_only,
            kind,
            headers,
            facts,
        }
    }
}

fn nonempty_body(headers: &HeaderMap) -> bool {
    match header_string(headers, "content-length") {
        Some(cl) => cl.trim().parse::<u64>().map_or(true, |n| n > 0),
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

pub(super) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let head = RequestHead::new(parts);
    let (tracker, plan) = register(&shared, &head);
    match plan.answer.clone() {
        Some(action) => answer(&shared, action, &head, body, tracker, &plan).await,
        None => forward(&shared, &head, body, tracker, &plan).await,
    }
}

/// Logs and counts the request and decides, under one lock, what the rules do with it.
fn register(shared: &Arc<Shared>, head: &RequestHead) -> (Tracker, Plan) {
    let mut st = shared.lock();
    let seq = st.log.len();
    let mut entry = log_entry(shared, seq, head);
    count_arrival(&mut st, head.kind);
    let mut plan = Plan::from_rules(&mut st.rules, head, &mut entry.faults);
    refuse_small_chunks(&mut st, head, &mut plan, &mut entry.faults);
    st.log.push(entry);
    (Tracker::new(shared.clone(), head.kind, seq), plan)
}

fn log_entry(shared: &Shared, seq: usize, head: &RequestHead) -> LogEntry {
    let headers = &head.headers;
    LogEntry {
        seq,
        at: shared.started.elapsed(),
        kind: head.kind,
        method: head.method.to_string(),
        path: head.path.clone(),
        range: header_string(headers, "range"),
        authorization: header_string(headers, "authorization"),
        content_length: head.facts.content_length,
        content_range: header_string(headers, "content-range"),
        content_type: header_string(headers, "content-type"),
        status: 0,
        request_bytes: 0,
        response_bytes: 0,
        faults: Vec::new(),
    }
}

fn count_arrival(st: &mut State, kind: Kind) {
    let s = st.stats.entry(kind).or_default();
    s.count += 1;
    s.in_flight += 1;
    s.max_in_flight = s.max_in_flight.max(s.in_flight);
}
