//! CORS, as ARM answers it: portal-like frontends in a browser call the ARM routes, the
//! operation URLs, the metadata and token endpoints, the operations feed and the registries'
//! `/acr/v1` and `/v2` routes from another origin. Preflights (`OPTIONS`) are answered before
//! any authentication (they carry no credentials); every answer names the allowed origin and
//! exposes the headers a client must read: the long-running operation's URLs and delay, the
//! request id, the registry's digest, paging `Link` and its challenge.
//!
//! Any origin by default (`--cors-origin` narrows it): ARM authenticates with a bearer header
//! that a page must add itself, never with a cookie, so a foreign page gains nothing a script
//! outside a browser would not have. Credentials mode is never allowed.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Which origins may call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin (`Access-Control-Allow-Origin: *`).
    #[default]
    Any,
    /// Exactly these (`scheme://host[:port]`).
    List(Vec<String>),
}

impl CorsOrigins {
    /// `--cors-origin` values: `*`, or origins (`https://portal.example:8443`). Empty: any.
    pub fn parse(values: &[String]) -> Result<Self, String> {
        let values: Vec<&str> = values
            .iter()
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() || values.contains(&"*") {
            return Ok(CorsOrigins::Any);
        }
        let mut list = Vec::new();
        for v in values {
            let bad = || {
                format!("--cors-origin '{v}' must be '*' or an origin such as https://portal.example:8443 (scheme, host and port only)")
            };
            let u = url::Url::parse(v).map_err(|_| bad())?;
            if !matches!(u.scheme(), "http" | "https")
                || u.host_str().is_none()
                || u.path() != "/"
                || u.query().is_some()
                || u.fragment().is_some()
                || !u.username().is_empty()
            {
                return Err(bad());
            }
            let origin = u.origin().ascii_serialization();
            if !list.contains(&origin) {
                list.push(origin);
            }
        }
        Ok(CorsOrigins::List(list))
    }
}

/// Request headers a caller may send.
const ALLOW_HEADERS: [&str; 7] = [
    "authorization",
    "content-type",
    "x-ms-client-request-id",
    "x-ms-return-client-request-id",
    "accept",
    "last-event-id",
    "range",
];

/// Response headers a page may read.
const EXPOSE_HEADERS: [&str; 10] = [
    "location",
    "azure-asyncoperation",
    "retry-after",
    "x-ms-request-id",
    "x-ms-client-request-id",
    "x-ms-correlation-request-id",
    "docker-content-digest",
    "link",
    "www-authenticate",
    "content-range",
];

/// The layer every listener's router is wrapped in (outermost, so that a preflight is answered
/// before authentication).
pub fn layer(origins: &CorsOrigins) -> CorsLayer {
    let allow_origin = match origins {
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => {
            AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        }
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers(ALLOW_HEADERS.map(HeaderName::from_static))
        .expose_headers(EXPOSE_HEADERS.map(HeaderName::from_static))
        .max_age(Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_parsed_to_their_serialization() {
        assert_eq!(CorsOrigins::parse(&[]), Ok(CorsOrigins::Any));
        assert_eq!(
            CorsOrigins::parse(&["https://a.example".into(), "*".into()]),
            Ok(CorsOrigins::Any)
        );
        assert_eq!(
            CorsOrigins::parse(&[
                "https://Portal.Example:443".into(),
                "http://127.0.0.1:9000/".into()
            ]),
            Ok(CorsOrigins::List(vec![
                "https://portal.example".into(),
                "http://127.0.0.1:9000".into()
            ]))
        );
        for bad in [
            "portal.example",
            "https://a.example/path",
            "ftp://a",
            "https://u@a",
        ] {
            assert!(CorsOrigins::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
