//! Cross-host redirects: blob GETs answered `307`
//! ([`Action::Redirect`](super::Action::Redirect)) and the redirect target that serves them,
//! fetching the blobs from the upstream with its own credentials.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, Response};
use hyper::body::Incoming;

use bytes::Bytes;

use super::answer::Reply;
use super::state::Shared;
use super::{header_string, RedirectHit};

/// `307 Location: <to, or the redirect target>/<digest>?repo=<name>` for a blob GET of `path`.
pub(super) fn redirect(shared: &Shared, to: Option<String>, path: &str) -> Reply {
    let (repo, digest) = split_blob_path(path).unwrap_or_default();
    let base = to.unwrap_or_else(|| shared.redirect_base.clone());
    let repo_q: String = url::form_urlencoded::byte_serialize(repo.as_bytes()).collect();
    Reply {
        status: 307,
        headers: vec![(
            "Location".into(),
            format!("{}/{digest}?repo={repo_q}", base.trim_end_matches('/')),
        )],
        body: Bytes::new(),
    }
}

/// `/v2/<name>/blobs/<digest>` → (name, digest).
fn split_blob_path(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/v2/")?;
    let i = rest.rfind("/blobs/")?;
    Some((
        rest[..i].to_string(),
        rest[i + "/blobs/".len()..].to_string(),
    ))
}

/// The redirect target: `GET /<digest>?repo=<name>` streams the blob from the upstream.
pub(super) async fn handle_redirect_target(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().trim_start_matches('/').to_string();
    let repo = req
        .uri()
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "repo")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    let had_authorization = req.headers().contains_key(header::AUTHORIZATION);
    let range = header_string(req.headers(), "range");
    let method = req.method().clone();
    let uri = req.uri().to_string();
    drop(req);
    let record = |status: u16| {
        shared.lock().redirect_hits.push(RedirectHit {
            method: method.to_string(),
            path: uri.clone(),
            had_authorization,
            range: range.clone(),
            status,
        });
    };
    let resp = match shared
        .redirect_client
        .get_blob_response(&repo, &path, range.as_deref())
        .await
    {
        Ok(r) => r,
        Err(e) => {
            record(502);
            return Response::builder()
                .status(502)
                .body(Body::from(format!("redirect target: {e}")))
                .expect("502");
        }
    };
    record(resp.status().as_u16());
    let mut builder = Response::builder().status(resp.status().as_u16());
    for name in [
        "content-length",
        "content-range",
        "content-type",
        "docker-content-digest",
        "accept-ranges",
        "etag",
    ] {
        if let Some(v) = resp.headers().get(name) {
            builder = builder.header(name, v.clone());
        }
    }
    if method == Method::HEAD {
        return builder.body(Body::empty()).expect("HEAD");
    }
    builder
        .body(Body::from_stream(resp.bytes_stream()))
        .expect("redirected blob")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_blob_paths() {
        assert_eq!(
            split_blob_path("/v2/demo/app/blobs/sha256:ab"),
            Some(("demo/app".to_string(), "sha256:ab".to_string()))
        );
    }
}
