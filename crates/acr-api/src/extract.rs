//! Extractors whose rejections are ARM errors.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use acr_core::arm::{check_api_version, ApiSurface, ApiVersionError};

use crate::error::ApiError;

/// Largest request body we read (ARM's limit is 4 MiB as well).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The answer to a body above [`MAX_BODY_BYTES`].
pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        format!("The request body is larger than the {MAX_BODY_BYTES} byte limit."),
    )
}

/// A JSON body: `application/json` (or no Content-Type), at most [`MAX_BODY_BYTES`],
/// deserialized with the path of the first offending field in the message.
pub struct ArmJson<T>(pub T);

impl<S, T> FromRequest<S> for ArmJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or_default().trim().to_owned();
            if !(essence == "application/json" || essence.ends_with("+json") || essence.is_empty())
            {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    format!(
                        "The content media type '{}' is not supported. Only 'application/json' is supported.",
                        acr_core::reference::truncate(&essence)
                    ),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request(
                    "InvalidRequestContent",
                    "The request body could not be read.",
                )
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: the request body is empty.",
            ));
        }
        // Every ARM body is a JSON object. serde would also read a struct from an array of its
        // fields in order (`[]` for a body whose fields are all optional): refuse that here.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_request(
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: the body must be a JSON object.",
            ));
        }
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let mut msg = inner.to_string();
            // serde's position suffix is noise for API users.
            if let Some(i) = msg.find(" at line ") {
                msg.truncate(i);
            }
            let message = if path == "." || path.is_empty() {
                format!("The request content was invalid and could not be deserialized: {msg}.")
            } else {
                format!("The request content was invalid and could not be deserialized: '{path}': {msg}.")
            };
            let err = ApiError::bad_request("InvalidRequestContent", message);
            if path == "." || path.is_empty() {
                err
            } else {
                err.with_target(path)
            }
        })?;
        Ok(ArmJson(value))
    }
}

/// The `api-version` query parameter (case-insensitive name), checked for an ARM surface.
#[derive(Debug, Clone)]
pub struct RawApiVersion(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RawApiVersion {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or_default();
        let v = url_pairs(q)
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
            .map(|(_, v)| v);
        Ok(RawApiVersion(v))
    }
}

impl RawApiVersion {
    pub fn check(&self, surface: ApiSurface) -> Result<&'static str, ApiError> {
        check_api_version(self.0.as_deref(), surface).map_err(|e| match e {
            ApiVersionError::Missing => ApiError::bad_request(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            ),
            ApiVersionError::Unsupported { given, supported } => ApiError::bad_request(
                "NoRegisteredProviderFound",
                format!(
                    "No registered resource provider found for API version '{given}' and type 'registries'. The supported api-versions are '{supported}'."
                ),
            ),
        })
    }
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A query string read into `T`; a rejection (a parameter given twice, a value of the wrong
/// type) is an ARM error, not axum's plain-text one.
pub struct ArmQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ArmQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(t)| ArmQuery(t))
            .map_err(|e| {
                ApiError::bad_request(
                    "InvalidQueryParameterValue",
                    format!(
                        "The query string is invalid: {}",
                        acr_core::reference::truncate(&e.body_text())
                    ),
                )
            })
    }
}

/// Path parameters; a rejection (undecodable percent-encoding) is an ARM error.
pub struct ArmPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ArmPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(t)| ArmPath(t))
            .map_err(|e| {
                ApiError::bad_request(
                    "InvalidRequestUri",
                    format!("The request URI is invalid: {}", e.body_text()),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("2025-11-01"), "2025-11-01");
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("%zz%"), "%zz%");
        assert_eq!(percent_decode("%4"), "%4");
        let p = url_pairs("API-VERSION=2025-11-01&x");
        assert_eq!(p[0], ("API-VERSION".to_owned(), "2025-11-01".to_owned()));
    }
}
