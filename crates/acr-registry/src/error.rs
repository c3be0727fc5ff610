//! Errors: [`RegistryError`] for opening the registry, and the distribution-spec error answer
//! `{"errors":[{"code","message","detail"}]}` every failed request gets.

use std::path::PathBuf;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::json;

use crate::digest::DigestError;

/// Failure to open the registry's data directory.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A directory could not be created or cleaned.
    #[error("registry data directory {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another process (or another open in this one) has the data directory.
    #[error("another process{} is using the registry data directory {}; stop it first (one process per data directory)", pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), dir.display())]
    Locked { dir: PathBuf, pid: Option<u32> },
}

/// How every answer and error caused by a full file system starts.
pub const OUT_OF_SPACE: &str = "the registry is out of disk space";

/// Whether `err` (or an error it wraps) is the file system saying it is full (`ENOSPC`) or
/// that a quota is exhausted (`EDQUOT`).
pub fn is_out_of_space(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull
                || io.kind() == std::io::ErrorKind::QuotaExceeded
                || matches!(io.raw_os_error(), Some(28 | 122))
            {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// The error codes of the distribution spec (plus `UNKNOWN` for our own failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    Unknown,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::Unknown => "UNKNOWN",
        }
    }
}

/// A failed request: status, spec error code, message, optional detail and extra headers.
/// `bare` answers have no body at all (`Content-Length: 0`), as the spec shows for upload 416s.
/// Boxed: it travels in every `Result` of the handlers.
#[derive(Debug)]
pub(crate) struct ApiError(Box<Parts>);

#[derive(Debug)]
struct Parts {
    status: StatusCode,
    code: Code,
    message: String,
    detail: Option<serde_json::Value>,
    headers: HeaderMap,
    bare: bool,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: Code, message: impl Into<String>) -> Self {
        ApiError(Box::new(Parts {
            status,
            code,
            message: message.into(),
            detail: None,
            headers: HeaderMap::new(),
            bare: false,
        }))
    }

    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.0.status
    }

    pub(crate) fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.0.headers
    }

    pub(crate) fn detail(mut self, detail: serde_json::Value) -> Self {
        self.0.detail = Some(detail);
        self
    }

    pub(crate) fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.0.headers.insert(name, v);
        }
        self
    }

    pub(crate) fn bare(mut self) -> Self {
        self.0.bare = true;
        self
    }

    pub(crate) fn name_invalid(name: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::NameInvalid,
            "invalid repository name",
        )
        .detail(json!({ "name": name }))
    }

    pub(crate) fn digest_invalid(e: &DigestError, value: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::DigestInvalid,
            crate::digest::message(e),
        )
        .detail(json!({ "digest": value }))
    }

    pub(crate) fn blob_unknown(digest: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            Code::BlobUnknown,
            "blob unknown to registry",
        )
        .detail(json!({ "digest": digest }))
    }

    pub(crate) fn manifest_unknown(reference: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            Code::ManifestUnknown,
            "manifest unknown to registry",
        )
        .detail(json!({ "reference": reference }))
    }

    pub(crate) fn upload_unknown() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            Code::BlobUploadUnknown,
            "blob upload unknown to registry",
        )
    }

    pub(crate) fn manifest_invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, Code::ManifestInvalid, message)
    }

    pub(crate) fn unsupported(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError::new(status, Code::Unsupported, message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, Code::Unauthorized, message)
    }

    pub(crate) fn denied(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, Code::Denied, message)
    }

    /// Our own failure (I/O). Logged once here with its cause; the client sees only that it
    /// failed — or, when the file system is full, 507 and that the registry is out of space
    /// (what a client can act on: free space, retry).
    pub(crate) fn internal(what: &str, err: &(dyn std::error::Error + 'static)) -> Self {
        if is_out_of_space(err) {
            tracing::warn!(error = %err, "registry: {what}: out of space");
            return ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                Code::Unknown,
                format!("{OUT_OF_SPACE} ({what}); free space and retry"),
            );
        }
        tracing::error!(error = %err, "registry: {what}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unknown,
            format!("internal error: {what}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let p = *self.0;
        let mut resp = if p.bare {
            let mut r = (p.status, "").into_response();
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            r
        } else {
            let mut err = json!({ "code": p.code.as_str(), "message": p.message });
            err["detail"] = p.detail.unwrap_or_else(|| json!({}));
            let body = json!({ "errors": [err] }).to_string();
            let mut r = (p.status, body).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        };
        resp.headers_mut().extend(p.headers);
        resp
    }
}
