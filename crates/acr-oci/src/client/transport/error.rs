//! Failures in the crate's terms: an unexpected response (status, the registry's error code
//! and message from at most 4 KiB of body) or a reqwest error (the SSRF guard's refusal told
//! apart) mapped to [`OciError`].

use std::time::Duration;

use reqwest::Response;

use super::read_limited;
use super::retry::retry_after;
use crate::client::RegistryClient;
use crate::error::{describe_reqwest, OciError};
use crate::netguard::find_refusal;

impl RegistryClient {
    pub(crate) fn invalid(&self, detail: impl Into<String>) -> OciError {
        OciError::Invalid {
            registry: self.name.clone(),
            detail: detail.into(),
        }
    }

    pub(crate) fn network(&self, e: reqwest::Error) -> OciError {
        if let Some(r) = find_refusal(&e) {
            return OciError::Refused {
                registry: self.name.clone(),
                detail: r.to_string(),
            };
        }
        OciError::Network {
            registry: self.name.clone(),
            detail: describe_reqwest(e),
        }
    }

    /// Turns an unexpected response into an error, reading at most 4 KiB of its body.
    pub(crate) async fn error_from(&self, method: &str, what: &str, resp: Response) -> OciError {
        let status = resp.status().as_u16();
        let retry = retry_after(resp.headers());
        let body = tokio::time::timeout(Duration::from_secs(5), read_limited(resp, 4096))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let (code, message) = parse_registry_error(&body);
        let detail = match (&code, &message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.clone(),
            _ => String::from_utf8_lossy(&body[..body.len().min(300)])
                .trim()
                .to_owned(),
        };
        match status {
            404 => OciError::NotFound {
                registry: self.name.clone(),
                what: what.to_owned(),
                code: code.unwrap_or_else(|| "NOT_FOUND".into()),
            },
            401 | 403 => OciError::Unauthorized {
                registry: self.name.clone(),
                detail: if detail.is_empty() {
                    format!("{status}")
                } else {
                    detail
                },
            },
            429 => OciError::TooManyRequests {
                registry: self.name.clone(),
                retry_after: retry,
                detail,
            },
            _ => OciError::Status {
                registry: self.name.clone(),
                method: method.to_owned(),
                path: what.to_owned(),
                status,
                detail,
            },
        }
    }
}

fn parse_registry_error(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Errs {
        errors: Vec<E>,
    }
    #[derive(serde::Deserialize)]
    struct E {
        code: Option<String>,
        message: Option<String>,
    }
    match serde_json::from_slice::<Errs>(body) {
        Ok(e) => match e.errors.into_iter().next() {
            Some(first) => (first.code, first.message),
            None => (None, None),
        },
        Err(_) => (None, None),
    }
}
