//! Blobs (get with ranges, delete) and uploads (session, single POST, mount, chunks, finish).

use super::*;

enum ByteRange {
    Full,
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range of a blob of `size` bytes. Anything we do not understand (several
/// ranges, other units) gets the whole blob, as HTTP allows.
fn byte_range(h: Option<&HeaderValue>, size: u64) -> ByteRange {
    let Some(spec) = h
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .and_then(|v| v.strip_prefix("bytes="))
    else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return ByteRange::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return ByteRange::Full;
        };
        if n == 0 || size == 0 {
            return ByteRange::Unsatisfiable;
        }
        return ByteRange::Part(size.saturating_sub(n), size - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return ByteRange::Full;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(e) => e,
            Err(_) => return ByteRange::Full,
        }
    };
    if start >= size || end < start {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Part(start, end.min(size - 1))
}

pub(super) async fn blob_get(
    inner: &Inner,
    repo: &Repo,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let d = parse_digest(digest)?;
    let size = inner
        .store
        .linked_blob_size(&repo.full, &d)
        .await
        .map_err(internal("read blob"))?
        .ok_or_else(|| ApiError::blob_unknown(digest))?;
    let range = if head {
        ByteRange::Full
    } else {
        byte_range(headers.get(header::RANGE), size)
    };
    let (status, start, len) = match range {
        ByteRange::Full => (StatusCode::OK, 0, size),
        ByteRange::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        ByteRange::Unsatisfiable => {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                Code::BlobUnknown,
                "range not satisfiable",
            )
            .header(header::CONTENT_RANGE, &format!("bytes */{size}"))
            .bare());
        }
    };
    let body = if head || len == 0 {
        Body::empty()
    } else {
        let mut f = tokio::fs::File::open(inner.store.blob_path(&d))
            .await
            .map_err(internal("open blob"))?;
        if start > 0 {
            f.seek(SeekFrom::Start(start))
                .await
                .map_err(internal("seek blob"))?;
        }
        Body::from_stream(ReaderStream::with_capacity(f.take(len), READ_BUF))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    set(h, CONTENT_DIGEST.clone(), &d.to_string());
    set(h, header::ETAG, &format!("\"{d}\""));
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            h,
            header::CONTENT_RANGE,
            &format!("bytes {}-{}/{size}", start, start + len - 1),
        );
    }
    Ok(r)
}

pub(super) async fn blob_delete(
    inner: &Inner,
    repo: &Repo,
    digest: &str,
) -> Result<Response, ApiError> {
    let d = parse_digest(digest)?;
    if inner
        .store
        .unlink_blob(&repo.full, &d)
        .await
        .map_err(internal("delete blob"))?
    {
        let mut r = empty_response(StatusCode::ACCEPTED);
        set(r.headers_mut(), CONTENT_DIGEST.clone(), &d.to_string());
        Ok(r)
    } else {
        Err(ApiError::blob_unknown(digest))
    }
}

fn blob_created(repo: &Repo, d: &Digest) -> Response {
    let mut r = empty_response(StatusCode::CREATED);
    let h = r.headers_mut();
    set(
        h,
        header::LOCATION,
        &format!("/v2/{}/blobs/{d}", repo.visible),
    );
    set(h, CONTENT_DIGEST.clone(), &d.to_string());
    r
}

/// `Range` of an upload: `0-<last byte>`, and `0-0` before the first byte, as distribution and
/// the other registries answer (the spec leaves the empty case open).
fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn upload_headers(h: &mut HeaderMap, repo: &Repo, session: &Session, size: u64) {
    set(
        h,
        header::LOCATION,
        &format!("/v2/{}/blobs/uploads/{}", repo.visible, session.id),
    );
    set(h, header::RANGE, &upload_range(size));
    set(h, UPLOAD_UUID.clone(), &session.id.to_string());
}

fn out_of_order(repo: &Repo, session: &Session, size: u64) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        Code::BlobUploadInvalid,
        "chunk out of order",
    )
    .bare();
    upload_headers(e.headers_mut(), repo, session, size);
    e
}

fn append_error(e: AppendError) -> ApiError {
    match e {
        AppendError::Body(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::BlobUploadInvalid,
            "the request body could not be read",
        ),
        AppendError::Length { expected, got } => ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::SizeInvalid,
            "body length does not match the declared length",
        )
        .detail(json!({ "expected": expected, "received": got })),
        AppendError::Io(e) => ApiError::internal("write upload", &e),
    }
}

/// `Content-Range: <start>-<end>` of a chunk (also `bytes <start>-<end>/…`): `Ok(None)` when absent.
fn chunk_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::BlobUploadInvalid,
            "invalid Content-Range",
        )
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a = a.trim().parse::<u64>().map_err(|_| bad())?;
    let b = b.trim().parse::<u64>().map_err(|_| bad())?;
    Ok(Some((a, b)))
}

/// Checks a chunk's `Content-Range` against the session's size: the expected body length, or 416.
fn check_chunk(
    headers: &HeaderMap,
    repo: &Repo,
    session: &Session,
    size: u64,
) -> Result<Option<u64>, ApiError> {
    let declared = content_length(headers);
    let Some((start, end)) = chunk_range(headers)? else {
        return Ok(declared);
    };
    if start != size || end < start {
        return Err(out_of_order(repo, session, size));
    }
    let len = end - start + 1;
    if declared.is_some_and(|d| d != len) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::SizeInvalid,
            "Content-Length does not match Content-Range",
        ));
    }
    Ok(Some(len))
}

pub(super) async fn upload_start(
    inner: &Inner,
    ctx: &RequestCtx,
    repo: &Repo,
    query: &Query,
    headers: &HeaderMap,
    body: &mut Option<Body>,
) -> Result<Response, ApiError> {
    let store = &inner.store;
    if let Some(mount) = query.get("mount") {
        let d = parse_digest(mount)?;
        let mounted = match query.get("from") {
            Some(from) => match ctx.repo(from) {
                Ok(from) if inner.may(ctx, &from, Action::Pull).await => store
                    .mount_blob(&repo.full, Some(&from.full), &d)
                    .await
                    .map_err(internal("mount blob"))?,
                _ => false,
            },
            // Without `from`, any stored copy will do, but only on an open registry: with auth we
            // could not tell whether the caller may read a repository that holds it.
            None if inner.auth.is_none() => store
                .mount_blob(&repo.full, None, &d)
                .await
                .map_err(internal("mount blob"))?,
            None => false,
        };
        if mounted {
            return Ok(blob_created(repo, &d));
        }
        // Not mountable: an ordinary upload session (202), as the spec asks.
    } else if let Some(digest) = query.get("digest") {
        let d = parse_digest(digest)?;
        let b = body.take().unwrap_or_default();
        // `?digest=` without a body is a client starting a session with a hint, unless the
        // digest is that of empty content: then the empty blob is what it uploads.
        if !b.is_end_stream() || d == d.algorithm().digest_of(b"") {
            return upload_single_post(inner, repo, &d, headers, b).await;
        }
    }
    inner.uploads.sweep().await;
    let session = inner
        .uploads
        .create(&store.uploads_dir(), &repo.full, None, true);
    let mut r = empty_response(StatusCode::ACCEPTED);
    upload_headers(r.headers_mut(), repo, &session, 0);
    Ok(r)
}

async fn upload_single_post(
    inner: &Inner,
    repo: &Repo,
    d: &Digest,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let session = inner.uploads.create(
        &inner.store.uploads_dir(),
        &repo.full,
        Some(d.algorithm()),
        false,
    );
    let _cleanup = upload::RemoveOnDrop(session.path.clone());
    let mut st = session.state.lock().await;
    st.closed = true;
    upload::append(&session, &mut st, body, content_length(headers))
        .await
        .map_err(append_error)?;
    commit(inner, repo, &session, &mut st, d).await
}

/// Verifies the uploaded bytes against `d`, moves them into the store and links the blob to the
/// repository. On a mismatch nothing is committed.
async fn commit(
    inner: &Inner,
    repo: &Repo,
    session: &Session,
    st: &mut upload::State,
    d: &Digest,
) -> Result<Response, ApiError> {
    match upload::finish(&inner.store, session, st, d, &repo.full).await {
        Ok(()) => Ok(blob_created(repo, d)),
        Err(FinishError::Mismatch { computed }) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::DigestInvalid,
            "provided digest did not match uploaded content",
        )
        .detail(json!({ "expected": d.to_string(), "computed": computed.to_string() }))),
        Err(FinishError::Io(what, e)) => Err(internal(what)(e)),
    }
}

pub(super) async fn upload_status(repo: &Repo, session: &Session) -> Result<Response, ApiError> {
    let mut r = empty_response(StatusCode::NO_CONTENT);
    upload_headers(r.headers_mut(), repo, session, session.size());
    Ok(r)
}

pub(super) async fn upload_patch(
    inner: &Inner,
    repo: &Repo,
    session: &Session,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut st = session.state.lock().await;
    if st.closed {
        drain(body).await;
        return Err(ApiError::upload_unknown());
    }
    let expected = match check_chunk(headers, repo, session, st.size) {
        Ok(e) => e,
        Err(e) => {
            drop(st);
            drain(body).await;
            return Err(e);
        }
    };
    match upload::append(session, &mut st, body, expected).await {
        Ok(_) => {}
        Err(AppendError::Io(e)) if crate::error::is_out_of_space(&e) => {
            // A full disk ends the session: its file goes at once (keeping it would hold the
            // space the client needs), and the client starts again once space is freed.
            st.closed = true;
            inner.uploads.remove(&session.id);
            st.close_file();
            let _ = tokio::fs::remove_file(&session.path).await;
            return Err(append_error(AppendError::Io(e)));
        }
        Err(e) => return Err(append_error(e)),
    }
    let mut r = empty_response(StatusCode::ACCEPTED);
    upload_headers(r.headers_mut(), repo, session, st.size);
    Ok(r)
}

pub(super) async fn upload_finish(
    inner: &Inner,
    repo: &Repo,
    session: &Session,
    query: &Query,
    headers: &HeaderMap,
    body: &mut Option<Body>,
) -> Result<Response, ApiError> {
    let digest = query.get("digest").ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::DigestInvalid,
            "digest parameter missing",
        )
    })?;
    let d = parse_digest(digest)?;
    let mut st = session.state.lock().await;
    if st.closed {
        return Err(ApiError::upload_unknown());
    }
    let expected = check_chunk(headers, repo, session, st.size)?;
    let b = body.take().unwrap_or_default();
    upload::append(session, &mut st, b, expected)
        .await
        .map_err(append_error)?;
    // Whatever the outcome the session is over: a wrong digest cancels it.
    st.closed = true;
    inner.uploads.remove(&session.id);
    let _cleanup = upload::RemoveOnDrop(session.path.clone());
    commit(inner, repo, session, &mut st, &d).await
}

pub(super) async fn upload_cancel(inner: &Inner, session: &Session) -> Result<Response, ApiError> {
    let mut st = session.state.lock().await;
    if st.closed {
        return Err(ApiError::upload_unknown());
    }
    st.closed = true;
    inner.uploads.remove(&session.id);
    let _ = tokio::fs::remove_file(&session.path).await;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |s: &str, size| match byte_range(HeaderValue::from_str(s).ok().as_ref(), size) {
            ByteRange::Full => "full".to_owned(),
            ByteRange::Part(a, b) => format!("{a}-{b}"),
            ByteRange::Unsatisfiable => "416".to_owned(),
        };
        assert_eq!(r("bytes=500-1499", 2048), "500-1499");
        assert_eq!(r("bytes=500-", 2048), "500-2047");
        assert_eq!(r("bytes=-500", 2048), "1548-2047");
        assert_eq!(r("bytes=-5000", 2048), "0-2047");
        assert_eq!(r("bytes=2000-5000", 2048), "2000-2047");
        assert_eq!(r("bytes=500-0", 2048), "416");
        assert_eq!(r("bytes=5000-10000", 2048), "416");
        assert_eq!(r("bytes=-0", 2048), "416");
        assert_eq!(r("bytes=0-", 0), "416");
        assert_eq!(r("bytes=0-1,4-5", 2048), "full");
        assert_eq!(r("items=0-1", 2048), "full");
        assert_eq!(r("bytes=x-1", 2048), "full");
    }
}
