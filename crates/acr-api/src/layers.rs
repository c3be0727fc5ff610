//! What wraps every route, before and after routing: ARM path normalisation, the request body
//! read in full before routing (`read_body_first`), the caller of ARM requests, request ids,
//! and the ARM-shaped 404 / 405 fallbacks.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::{extract, AppState, CLIENT_REQUEST_ID, CORRELATION_ID, REQUEST_ID};

/// Bodies above the request limit are still read (and dropped) up to this size, so that the
/// client, still sending, gets to read the 413 instead of a broken pipe.
const DRAIN_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// Reads every request body before routing: at most [`extract::MAX_BODY_BYTES`] are kept; a
/// larger body is read to its end (up to [`DRAIN_LIMIT_BYTES`]) and answered 413. An answer
/// never goes out while the client is still sending, so HTTP/1 connections stay usable
/// (hyper closes a connection whose request body was left unread, and a client still writing
/// to it would see `EPIPE`, not the answer). ARM bodies are small JSON documents.
pub(crate) async fn read_body_first(req: Request, next: Next) -> Response {
    use futures::StreamExt;
    let (parts, body) = req.into_parts();
    if http_body::Body::is_end_stream(&body) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return ApiError::bad_request(
                "InvalidRequestContent",
                "The request body could not be read.",
            )
            .into_response();
        };
        total += chunk.len();
        if total <= extract::MAX_BODY_BYTES {
            kept.extend_from_slice(&chunk);
        } else if total > DRAIN_LIMIT_BYTES {
            let mut resp = extract::too_large().into_response();
            if parts.version <= axum::http::Version::HTTP_11 {
                resp.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    HeaderValue::from_static("close"),
                );
            }
            return resp;
        }
    }
    if total > extract::MAX_BODY_BYTES {
        return extract::too_large().into_response();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(kept)))
        .await
}

/// The CORS layer answers a preflight (`OPTIONS`) before `read_body_first` runs: a body sent
/// with one is read and dropped here first (up to [`DRAIN_LIMIT_BYTES`]), so that the
/// connection stays usable (hyper closes a connection whose request body was left unread).
pub(crate) async fn drain_options_body(req: Request, next: Next) -> Response {
    use futures::StreamExt;
    if req.method() != axum::http::Method::OPTIONS || http_body::Body::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut total = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        total += chunk.len();
        if total > DRAIN_LIMIT_BYTES {
            break;
        }
    }
    next.run(Request::from_parts(parts, axum::body::Body::empty()))
        .await
}

/// ARM treats the fixed segments of a resource path case-insensitively; axum does not. This
/// rewrites them to their canonical spelling before routing.
pub fn normalize_arm_path<B>(req: axum::http::Request<B>) -> axum::http::Request<B> {
    const CANON: &[&str] = &[
        "subscriptions",
        "resourceGroups",
        "providers",
        "Microsoft.ContainerRegistry",
        "registries",
        "importImage",
        "listCredentials",
        "locations",
        "operationResults",
        "operationStatuses",
        "checkNameAvailability",
        "resources",
    ];
    let raw_owned = req.uri().path().to_owned();
    let raw = raw_owned.as_str();
    // `az cloud register --endpoint-resource-manager https://host/` asks for
    // `//metadata/endpoints`: empty segments are dropped everywhere.
    let collapsed;
    let path = if raw.contains("//") {
        let mut p = String::with_capacity(raw.len());
        for seg in raw.split('/').filter(|s| !s.is_empty()) {
            p.push('/');
            p.push_str(seg);
        }
        if p.is_empty() {
            p.push('/');
        }
        collapsed = p;
        collapsed.as_str()
    } else {
        raw
    };
    if !path.to_ascii_lowercase().starts_with("/subscriptions") {
        if path != raw {
            return with_path(req, path.to_owned());
        }
        return req;
    }
    let segments: Vec<&str> = path.split('/').collect();
    let mut out: Vec<String> = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        // Names (a value after a collection segment) keep their spelling.
        let is_name = i > 0
            && [
                "subscriptions",
                "resourceGroups",
                "registries",
                "locations",
                "operationResults",
                "operationStatuses",
            ]
            .iter()
            .any(|c| segments[i - 1].eq_ignore_ascii_case(c));
        let canon = (!is_name)
            .then(|| CANON.iter().find(|c| c.eq_ignore_ascii_case(seg)))
            .flatten();
        out.push(
            canon
                .map(|c| (*c).to_owned())
                .unwrap_or_else(|| (*seg).to_owned()),
        );
    }
    let mut new_path = out.join("/");
    // A trailing slash is tolerated by ARM.
    if new_path.len() > 1 && new_path.ends_with('/') {
        new_path.pop();
    }
    if new_path != raw {
        return with_path(req, new_path);
    }
    req
}

fn with_path<B>(mut req: axum::http::Request<B>, new_path: String) -> axum::http::Request<B> {
    let uri = req.uri();
    let pq = match uri.query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    };
    if let Ok(pq) = pq.parse::<axum::http::uri::PathAndQuery>() {
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = Some(pq);
        if let Ok(u) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = u;
        }
    }
    req
}

/// The caller of ARM requests (those under `/subscriptions`) and of the operations feed, which
/// is authorized like ARM reads; other paths need no token.
pub(crate) async fn identify_arm(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if path.starts_with("/subscriptions") || path.starts_with("/_acr-import/operations") {
        crate::caller::identify(State(state), req, next).await
    } else {
        next.run(req).await
    }
}

/// `x-ms-request-id` on every response; client and correlation ids echoed.
pub(crate) async fn arm_headers(mut req: Request, next: Next) -> Response {
    // HTTP/2 carries the host in `:authority`, not in a Host header: give handlers one place.
    if !req.headers().contains_key(axum::http::header::HOST) {
        if let Some(v) = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(axum::http::header::HOST, v);
        }
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_id = req.headers().get(CLIENT_REQUEST_ID).cloned();
    let correlation = req.headers().get(CORRELATION_ID).cloned();
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert(REQUEST_ID, v.clone());
        h.insert(CORRELATION_ID, correlation.unwrap_or(v));
    }
    if let Some(c) = client_id {
        h.insert(CLIENT_REQUEST_ID, c);
    }
    resp
}

pub(crate) async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "No HTTP resource was found that matches the request URI '{}'.",
            acr_core::reference::truncate(req.uri().path())
        ),
    )
}

pub(crate) async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!(
            "The requested resource does not support http method '{}'.",
            req.method()
        ),
    )
}
