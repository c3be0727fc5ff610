//! The URLs we hand out: the public base (`--public-url`, else the listener's scheme and the
//! request's `Host`), the two URLs of a long-running operation, and the `202 Accepted` that
//! carries them (imports, registry and resource group deletions).

use acr_store::OperationRecord;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::{AppState, ListenerScheme};

/// `scheme://host` for the URLs we hand out.
pub(crate) fn public_base(
    state: &AppState,
    scheme: Option<&ListenerScheme>,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    if let Some(u) = &state.config.public_url {
        return Ok(u.as_str().trim_end_matches('/').to_owned());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        })
        .ok_or_else(|| {
            ApiError::bad_request("InvalidHostHeader", "The request has no valid Host header.")
        })?;
    let scheme = scheme.map(|s| s.0).unwrap_or(state.config.scheme);
    Ok(format!("{scheme}://{host}"))
}

/// The operation's result (`Location`) and status (`Azure-AsyncOperation`) URLs under `base`.
pub(crate) fn operation_urls(base: &str, rec: &OperationRecord) -> (String, String) {
    let prefix = format!(
        "{base}/subscriptions/{}/providers/Microsoft.ContainerRegistry/locations/{}",
        rec.subscription_id, rec.location
    );
    (
        format!(
            "{prefix}/operationResults/{}?api-version={}",
            rec.id, rec.api_version
        ),
        format!(
            "{prefix}/operationStatuses/{}?api-version={}",
            rec.id, rec.api_version
        ),
    )
}

/// `202 Accepted` for a long-running operation: `Location`, `Azure-AsyncOperation` and
/// `Retry-After`, no body.
pub(crate) fn accepted(
    state: &AppState,
    scheme: Option<&ListenerScheme>,
    headers: &HeaderMap,
    rec: &OperationRecord,
) -> Result<Response, ApiError> {
    let base = public_base(state, scheme, headers)?;
    let (location, async_op) = operation_urls(&base, rec);
    let mut resp = StatusCode::ACCEPTED.into_response();
    let h = resp.headers_mut();
    for (name, v) in [
        (header::LOCATION, location),
        (
            header::HeaderName::from_static("azure-asyncoperation"),
            async_op,
        ),
        (
            header::RETRY_AFTER,
            state.config.retry_after.max(1).to_string(),
        ),
    ] {
        let v = HeaderValue::from_str(&v).map_err(|_| ApiError::internal())?;
        h.insert(name, v);
    }
    Ok(resp)
}
