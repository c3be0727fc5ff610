//! The few ARM calls the client makes, over reqwest, as any ARM client would: subscriptions,
//! the subscription's registries, the managed-identity token, `importImage`, and the
//! operation's status. Errors are [`ArmError`]: the service unreachable, an ARM error body,
//! or an answer that is not what ARM sends.

use std::time::Duration;

use acr_core::arm::{RegistryId, LATEST_STABLE_API_VERSION};
use acr_core::wire::{ErrorDetail, ImportProgress};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

/// One request's deadline (the service answers every request at once; only copies take long).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong talking to the service.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    /// No answer: refused, reset, timed out, name not resolved, TLS refused.
    #[error(
        "cannot reach the acr-import service at {endpoint}: {detail}. Is it running \
         (acr-import serve)? --endpoint or ACR_IMPORT_ENDPOINT says where it listens."
    )]
    Unreachable { endpoint: String, detail: String },
    /// An ARM error answer (`{"error":{"code","message"}}`), or a status without one.
    #[error("{code}: {message}")]
    Status {
        status: StatusCode,
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// An answer ARM would not give (not JSON where JSON is due, a missing header).
    #[error("unexpected answer from {endpoint}: {detail}")]
    Protocol { endpoint: String, detail: String },
}

impl ArmError {
    /// Worth asking again: no answer, or 408/429/5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            ArmError::Unreachable { .. } => true,
            ArmError::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
            ArmError::Protocol { .. } => false,
        }
    }

    /// The `Retry-After` of an error answer.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ArmError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ArmError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A registry of the subscription's list.
#[derive(Debug, Clone)]
pub struct ListedRegistry {
    pub id: RegistryId,
    /// The full ARM id, as listed.
    pub arm_id: String,
}

/// The answer to `importImage`.
#[derive(Debug)]
pub enum Posted {
    /// 200: done at once (nothing was left to copy).
    Done,
    /// 202: follow `status_url` (Azure-AsyncOperation) or, without one, `location`.
    Accepted {
        status_url: Option<String>,
        location: Option<String>,
    },
}

/// The status document of the Azure-AsyncOperation URL (the fields the client reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    #[serde(default)]
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub error: Option<ErrorDetail>,
    /// acr-import's progress extension; read leniently (another ARM service has none).
    #[serde(default)]
    properties: Option<Value>,
}

impl OperationStatus {
    pub fn progress(&self) -> Option<ImportProgress> {
        self.properties
            .clone()
            .and_then(|p| serde_json::from_value(p).ok())
    }

    /// `Succeeded`, `Failed` or `Canceled`, compared as ARM clients do (case-insensitively).
    pub fn terminal(&self) -> Option<Terminal> {
        let s = self.status.to_ascii_lowercase();
        match s.as_str() {
            "succeeded" => Some(Terminal::Succeeded),
            "failed" => Some(Terminal::Failed),
            "canceled" | "cancelled" => Some(Terminal::Canceled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    Succeeded,
    Failed,
    Canceled,
}

/// An answer of a status or Location URL.
#[derive(Debug)]
pub enum Polled {
    /// The Azure-AsyncOperation document.
    Status {
        doc: OperationStatus,
        retry_after: Option<Duration>,
    },
    /// The Location URL still says 202.
    Running { retry_after: Option<Duration> },
    /// The Location URL's final success.
    Done,
}

/// The service's ARM API, with the caller's bearer token (if any).
pub struct Arm {
    http: reqwest::Client,
    /// `scheme://host:port`, no trailing '/'.
    base: String,
    token: Option<SecretString>,
}

impl Arm {
    pub fn new(endpoint: &str, ca_pem: Option<Vec<u8>>) -> anyhow::Result<Self> {
        let base = endpoint.trim().trim_end_matches('/').to_owned();
        let parsed = url::Url::parse(&base)
            .map_err(|e| anyhow::anyhow!("--endpoint '{base}' is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            anyhow::bail!("--endpoint '{base}' must be an http:// or https:// URL");
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("acr-import-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("--ca-file: not PEM certificates: {e}"))?;
            if certs.is_empty() {
                anyhow::bail!("--ca-file holds no certificate");
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .build()
            .map_err(|e| anyhow::anyhow!("HTTP client: {e}"))?;
        Ok(Self {
            http,
            base,
            token: None,
        })
    }

    pub fn set_token(&mut self, token: SecretString) {
        self.token = Some(token);
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub fn endpoint(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: reqwest::Error) -> ArmError {
        ArmError::Unreachable {
            endpoint: self.base.clone(),
            detail: acr_oci::error::describe_reqwest(e),
        }
    }

    fn protocol(&self, detail: impl Into<String>) -> ArmError {
        ArmError::Protocol {
            endpoint: self.base.clone(),
            detail: detail.into(),
        }
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let req = req.timeout(REQUEST_TIMEOUT);
        match &self.token {
            Some(t) => req.bearer_auth(t.expose_secret()),
            None => req,
        }
    }

    /// Sends `req`; a 4xx/5xx becomes [`ArmError::Status`] with the ARM error's code and message.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, HeaderMap, bytes::Bytes), ArmError> {
        let resp = self
            .authorized(req)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        if status.is_client_error() || status.is_server_error() {
            return Err(error_from(status, &headers, &body));
        }
        Ok((status, headers, body))
    }

    async fn get_json(&self, path_and_query: &str) -> Result<Value, ArmError> {
        let url = format!("{}{path_and_query}", self.base);
        let (_, _, body) = self.send(self.http.get(&url)).await?;
        serde_json::from_slice(&body)
            .map_err(|e| self.protocol(format!("GET {path_and_query}: not JSON ({e})")))
    }

    /// `GET /subscriptions`: the ids, the service's default first.
    pub async fn subscriptions(&self) -> Result<Vec<String>, ArmError> {
        let v = self
            .get_json(&format!(
                "/subscriptions?api-version={SUBSCRIPTIONS_API_VERSION}"
            ))
            .await?;
        Ok(v["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["subscriptionId"].as_str().map(str::to_owned))
            .collect())
    }

    /// `GET /subscriptions/{sub}/providers/Microsoft.ContainerRegistry/registries`.
    pub async fn registries(&self, subscription: &str) -> Result<Vec<ListedRegistry>, ArmError> {
        let v = self
            .get_json(&format!(
                "/subscriptions/{subscription}/providers/Microsoft.ContainerRegistry/registries?api-version={LATEST_STABLE_API_VERSION}"
            ))
            .await?;
        Ok(v["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str())
            .filter_map(|id| {
                RegistryId::parse(id).ok().map(|parsed| ListedRegistry {
                    id: parsed,
                    arm_id: id.to_owned(),
                })
            })
            .collect())
    }

    /// A token from the service's managed-identity endpoint (what `az login --identity` uses).
    pub async fn identity_token(&self, object_id: Option<&str>) -> Result<SecretString, ArmError> {
        let url = format!("{}/metadata/identity/oauth2/token", self.base);
        let resource = format!("{}/", self.base);
        let mut query = vec![("api-version", "2019-08-01"), ("resource", &resource)];
        if let Some(oid) = object_id {
            query.push(("object_id", oid));
        }
        let req = self
            .http
            .get(&url)
            .query(&query)
            .header("Metadata", "true")
            .timeout(REQUEST_TIMEOUT);
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            return Err(error_from(status, &headers, &body));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| self.protocol(format!("managed-identity token: not JSON ({e})")))?;
        v["access_token"]
            .as_str()
            .map(|t| SecretString::from(t.to_owned()))
            .ok_or_else(|| self.protocol("managed-identity token: no access_token"))
    }

    /// `POST …/registries/{name}/importImage` with `body` (already JSON: it holds the source
    /// password, exposed only here). `request_id` makes a repeated POST return the same
    /// operation.
    pub async fn import_image(
        &self,
        target: &RegistryId,
        body: Vec<u8>,
        request_id: &uuid::Uuid,
    ) -> Result<Posted, ArmError> {
        let url = format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerRegistry/registries/{}/importImage?api-version={LATEST_STABLE_API_VERSION}",
            self.base, target.subscription, target.resource_group, target.name
        );
        let req = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-ms-client-request-id", request_id.to_string())
            .body(body);
        let (status, headers, _) = self.send(req).await?;
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        match status {
            StatusCode::ACCEPTED => {
                let status_url = header("azure-asyncoperation");
                let location = header("location");
                if status_url.is_none() && location.is_none() {
                    return Err(self.protocol(
                        "importImage answered 202 without Azure-AsyncOperation or Location",
                    ));
                }
                Ok(Posted::Accepted {
                    status_url,
                    location,
                })
            }
            s if s.is_success() => Ok(Posted::Done),
            s => Err(self.protocol(format!("importImage answered {s}"))),
        }
    }

    /// One GET of an Azure-AsyncOperation URL (`is_status`) or a Location URL.
    pub async fn poll(&self, url: &str, is_status: bool) -> Result<Polled, ArmError> {
        let (status, headers, body) = self.send(self.http.get(url)).await?;
        let retry_after = retry_after(&headers);
        if is_status {
            let doc: OperationStatus = serde_json::from_slice(&body)
                .map_err(|e| self.protocol(format!("operation status: {e}")))?;
            return Ok(Polled::Status { doc, retry_after });
        }
        if status == StatusCode::ACCEPTED {
            Ok(Polled::Running { retry_after })
        } else {
            Ok(Polled::Done)
        }
    }
}

/// `GET /subscriptions` is answered in any api-version; this is the one `az` sends.
const SUBSCRIPTIONS_API_VERSION: &str = "2022-12-01";

/// `Retry-After` in seconds (the form ARM uses).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The ARM error of a 4xx/5xx answer; a body without one still says the status.
fn error_from(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ArmError {
    #[derive(Deserialize)]
    struct Envelope {
        error: ErrorDetail,
    }
    let (code, message) = match serde_json::from_slice::<Envelope>(body) {
        Ok(e) => (e.error.code, e.error.message),
        Err(_) => (
            status
                .canonical_reason()
                .unwrap_or("HttpError")
                .replace(' ', ""),
            format!("the service answered {status}"),
        ),
    };
    ArmError::Status {
        status,
        code,
        message,
        retry_after: retry_after(headers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_error_bodies() {
        let e = error_from(
            StatusCode::NOT_FOUND,
            &HeaderMap::new(),
            br#"{"error":{"code":"ResourceNotFound","message":"The Resource was not found."}}"#,
        );
        assert_eq!(
            e.to_string(),
            "ResourceNotFound: The Resource was not found."
        );
        assert!(!e.is_transient());
        let e = error_from(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"<html>");
        assert_eq!(
            e.to_string(),
            "BadGateway: the service answered 502 Bad Gateway"
        );
        assert!(e.is_transient());
    }

    #[test]
    fn status_documents() {
        let doc: OperationStatus = serde_json::from_str(
            r#"{"id":"x","name":"registries-1","status":"InProgress","startTime":"2026-01-01T00:00:00Z",
                "percentComplete":12.5,"properties":{"manifestsTotal":2,"manifestsDone":1,"blobsTotal":4,
                "blobsDone":1,"bytesTotal":100,"bytesCopied":10,"bytesSkipped":5}}"#,
        )
        .expect("parse");
        assert_eq!(doc.terminal(), None);
        let p = doc.progress().expect("progress");
        assert_eq!((p.blobs_total, p.bytes_copied), (4, 10));
        let doc: OperationStatus = serde_json::from_str(
            r#"{"status":"failed","error":{"code":"SourceImageNotFound","message":"gone"}}"#,
        )
        .expect("parse");
        assert_eq!(doc.terminal(), Some(Terminal::Failed));
        assert!(doc.progress().is_none());
    }
}
