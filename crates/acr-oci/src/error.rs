//! Errors of the distribution client.

use std::time::Duration;

/// A failure talking to one registry. `registry` is the host[:port] it came from.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{registry}: {what} was not found ({code})")]
    NotFound {
        registry: String,
        what: String,
        code: String,
    },
    #[error("{registry}: authentication required or refused: {detail}")]
    Unauthorized { registry: String, detail: String },
    #[error("{registry}: too many requests (429){}", retry_after.map(|d| format!("; retry after {} s", d.as_secs())).unwrap_or_default())]
    TooManyRequests {
        registry: String,
        retry_after: Option<Duration>,
        detail: String,
    },
    #[error("{registry}: {method} {path} answered {status}: {detail}")]
    Status {
        registry: String,
        method: String,
        path: String,
        status: u16,
        detail: String,
    },
    #[error("{registry}: {detail}")]
    Network { registry: String, detail: String },
    #[error("{registry}: {what} has digest {actual}, expected {expected}")]
    DigestMismatch {
        registry: String,
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{registry}: {what} is {actual} bytes, expected {expected}")]
    SizeMismatch {
        registry: String,
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{registry}: manifest {what} is larger than the {limit} byte limit")]
    ManifestTooLarge {
        registry: String,
        what: String,
        limit: usize,
    },
    #[error("{registry}: {detail}")]
    Invalid { registry: String, detail: String },
    /// The registry sent or took no byte for the stall timeout (after the resumes a download
    /// gets). Not transient: a stalled registry is not tried again for the whole operation.
    #[error("{registry}: {detail}")]
    Stalled { registry: String, detail: String },
    /// The SSRF guard refused a destination (source address, token realm, redirect, resolved
    /// name). Never transient.
    #[error("{registry}: {detail}")]
    Refused { registry: String, detail: String },
}

impl OciError {
    pub fn registry(&self) -> &str {
        match self {
            OciError::NotFound { registry, .. }
            | OciError::Unauthorized { registry, .. }
            | OciError::TooManyRequests { registry, .. }
            | OciError::Status { registry, .. }
            | OciError::Network { registry, .. }
            | OciError::DigestMismatch { registry, .. }
            | OciError::SizeMismatch { registry, .. }
            | OciError::ManifestTooLarge { registry, .. }
            | OciError::Invalid { registry, .. }
            | OciError::Stalled { registry, .. }
            | OciError::Refused { registry, .. } => registry,
        }
    }

    /// Worth retrying the same request after a pause.
    pub fn is_transient(&self) -> bool {
        match self {
            OciError::Network { .. } | OciError::TooManyRequests { .. } => true,
            OciError::Status { status, .. } => matches!(status, 408 | 500 | 502 | 503 | 504),
            _ => false,
        }
    }
}

/// Describes a reqwest error without its URL (upload URLs carry state, realm URLs carry scopes).
/// (`OciError` keeps this text, not the reqwest error itself, as its `detail`: a kept source
/// would carry the URL into every later chain.)
pub fn describe_reqwest(e: reqwest::Error) -> String {
    acr_core::error_chain(&e.without_url())
}
