//! Errors in the registry's shape: `{"errors":[{"code","message","detail"}]}` with the
//! distribution spec's codes (ACR answers its `/acr/v1` API the same way). Client input never
//! gets a 5xx; a backend or store failure is a 502/503 that says which.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde_json::{json, Value};

/// An error answer of a login server.
#[derive(Debug)]
pub struct RegistryError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub detail: Value,
    /// `WWW-Authenticate` of a 401.
    pub challenge: Option<String>,
    pub retry_after: Option<u64>,
}

impl RegistryError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            detail: Value::Null,
            challenge: None,
            retry_after: None,
        }
    }

    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }

    pub fn name_unknown(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
        )
        .detail(json!({ "name": name }))
    }

    pub fn manifest_unknown(reference: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
        )
        .detail(json!({ "Tag": reference }))
    }

    pub fn tag_unknown(tag: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "TAG_UNKNOWN",
            "the specified tag does not exist",
        )
        .detail(json!({ "tag": tag }))
    }

    pub fn name_invalid(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            "invalid repository name",
        )
        .detail(json!({ "name": name }))
    }

    pub fn unsupported(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, "UNSUPPORTED", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    /// ACR's answer to a change a `changeableAttributes` lock forbids.
    pub fn locked(what: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "DENIED",
            format!("The operation is disallowed on this registry, repository or image: {what}."),
        )
    }

    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "DENIED", message)
    }

    /// 401 with a challenge (`error` is `invalid_token` / `insufficient_scope` when a token
    /// was presented).
    pub fn unauthorized(challenge: String, detail: Value) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required, visit https://aka.ms/acr/authorization for more information.",
        )
        .detail(detail);
        e.challenge = Some(challenge);
        e
    }

    /// The store or the backend failed: not the client's fault.
    pub fn unavailable(what: &str) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            format!("{what} is unavailable; retry later"),
        );
        e.retry_after = Some(2);
        e
    }

    pub fn backend(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "UNAVAILABLE",
            format!("the backend registry failed: {detail}"),
        )
    }
}

impl From<acr_store::StoreError> for RegistryError {
    fn from(e: acr_store::StoreError) -> Self {
        tracing::warn!(error = %e, "login server: store error");
        RegistryError::unavailable("the registry's database")
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let body = json!({"errors": [{
            "code": self.code,
            "message": self.message,
            "detail": self.detail,
        }]});
        let mut resp = (self.status, body.to_string()).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            h.insert(header::WWW_AUTHENTICATE, c);
        }
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
