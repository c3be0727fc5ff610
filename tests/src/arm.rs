//! A small ARM client for the emulated `Microsoft.ContainerRegistry` endpoints.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::util::http_client;

pub const API_VERSION: &str = "2025-11-01";
pub const PROVIDER: &str = "Microsoft.ContainerRegistry";

/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{name}`
pub fn registry_id(sub: &str, rg: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{PROVIDER}/registries/{name}")
}

/// A response, fully read.
#[derive(Clone, Debug)]
pub struct ArmResponse {
    pub method: Method,
    pub url: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ArmResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The body as JSON (panics with the body text if it isn't).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {} → {}: body is not JSON ({e}): {:?}",
                self.method,
                self.url,
                self.status,
                self.text()
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// `error.code` of an ARM error body.
    pub fn error_code(&self) -> Option<String> {
        let v: Value = serde_json::from_slice(&self.body).ok()?;
        v["error"]["code"].as_str().map(str::to_string)
    }
    pub fn error_message(&self) -> Option<String> {
        let v: Value = serde_json::from_slice(&self.body).ok()?;
        v["error"]["message"].as_str().map(str::to_string)
    }
    /// `Retry-After` in seconds, when present and numeric.
    pub fn retry_after(&self) -> Option<u64> {
        self.header("retry-after")
            .and_then(|v| v.trim().parse().ok())
    }
    pub fn location(&self) -> String {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location header in {self}"))
            .to_string()
    }
    pub fn async_operation(&self) -> String {
        self.header("azure-asyncoperation")
            .unwrap_or_else(|| panic!("no Azure-AsyncOperation header in {self}"))
            .to_string()
    }
    /// Panics unless the status is `want`.
    pub fn expect_status(&self, want: u16) -> &Self {
        assert_eq!(self.status.as_u16(), want, "unexpected status: {self}");
        self
    }
    /// Asserts the ARM error envelope: JSON `{"error":{"code","message"}}` with non-empty
    /// strings, and an `x-ms-request-id` header. Returns the code.
    pub fn assert_arm_error(&self) -> String {
        assert!(
            self.header("x-ms-request-id")
                .is_some_and(|v| !v.is_empty()),
            "no x-ms-request-id: {self}"
        );
        let ct = self.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with("application/json"),
            "error Content-Type {ct:?}: {self}"
        );
        let v = self.json();
        let code = v["error"]["code"].as_str().unwrap_or_default();
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(!code.is_empty(), "error.code missing: {self}");
        assert!(!message.is_empty(), "error.message missing: {self}");
        code.to_string()
    }
}

impl std::fmt::Display for ArmResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} → {} ", self.method, self.url, self.status)?;
        for (k, v) in &self.headers {
            write!(f, "[{k}: {}] ", v.to_str().unwrap_or("?"))?;
        }
        write!(f, "{}", self.text())
    }
}

pub struct ArmClient {
    http: reqwest::Client,
    base: String,
    /// Sent as `Authorization: Bearer …` on every request when set.
    bearer: Option<String>,
    /// Upper bound for one wait between polls (Retry-After is honoured up to this).
    pub max_poll_interval: Duration,
}

impl ArmClient {
    /// `base` like `http://127.0.0.1:PORT`.
    pub fn new(base: &str) -> Self {
        Self {
            http: http_client(),
            base: base.trim_end_matches('/').to_string(),
            bearer: None,
            max_poll_interval: Duration::from_millis(250),
        }
    }

    /// The same client, authenticating with `token`.
    pub fn with_bearer(mut self, token: &str) -> Self {
        self.bearer = Some(token.to_string());
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `base + path`, adding `api-version` unless the path has a query already.
    pub fn url(&self, path: &str) -> String {
        if path.contains('?') {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?api-version={API_VERSION}", self.base)
        }
    }

    /// The same path and query on this client's base (e.g. a Location URL another instance
    /// of the service handed out).
    pub fn rebase(&self, url: &str) -> String {
        let u = url::Url::parse(url).unwrap_or_else(|e| panic!("not a URL {url:?}: {e}"));
        match u.query() {
            Some(q) => format!("{}{}?{q}", self.base, u.path()),
            None => format!("{}{}", self.base, u.path()),
        }
    }

    pub fn registry_url(&self, sub: &str, rg: &str, name: &str) -> String {
        self.url(&registry_id(sub, rg, name))
    }

    /// Any request. `body` is sent as is with `content_type` when given.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> ArmResponse {
        self.try_send(method.clone(), url, headers, content_type, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
    }

    /// Like [`Self::send`], but a request that gets no answer is an `Err`, not a panic.
    pub async fn try_send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<ArmResponse, reqwest::Error> {
        let mut req = self
            .http
            .request(method.clone(), url)
            .timeout(Duration::from_secs(30));
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?;
        Ok(ArmResponse {
            method,
            url: url.to_string(),
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, url: &str) -> ArmResponse {
        self.send(Method::GET, url, &[], None, None).await
    }

    pub async fn send_json(&self, method: Method, url: &str, body: &Value) -> ArmResponse {
        self.send(
            method,
            url,
            &[],
            Some("application/json"),
            Some(serde_json::to_vec(body).expect("serialize body")),
        )
        .await
    }

    /// `PUT` a registry (`eastus`, `Standard`).
    pub async fn put_registry(&self, sub: &str, rg: &str, name: &str) -> ArmResponse {
        let body = json!({"location": "eastus", "sku": {"name": "Standard"}});
        self.send_json(Method::PUT, &self.registry_url(sub, rg, name), &body)
            .await
    }

    /// Creates (or updates) a registry and asserts 200/201; returns its JSON.
    pub async fn create_registry(&self, sub: &str, rg: &str, name: &str) -> Value {
        let r = self.put_registry(sub, rg, name).await;
        assert!(
            r.status == StatusCode::CREATED || r.status == StatusCode::OK,
            "create registry {name}: {r}"
        );
        r.json()
    }

    pub async fn get_registry(&self, sub: &str, rg: &str, name: &str) -> ArmResponse {
        self.get(&self.registry_url(sub, rg, name)).await
    }

    pub async fn delete_registry(&self, sub: &str, rg: &str, name: &str) -> ArmResponse {
        self.send(
            Method::DELETE,
            &self.registry_url(sub, rg, name),
            &[],
            None,
            None,
        )
        .await
    }

    /// DELETEs a registry, asserts the 202 of a long-running deletion, and polls its
    /// `Azure-AsyncOperation` to the end; returns the final status JSON.
    pub async fn delete_registry_and_wait(&self, sub: &str, rg: &str, name: &str) -> Value {
        let r = self.delete_registry(sub, rg, name).await;
        assert_eq!(r.status.as_u16(), 202, "registry DELETE: {r}");
        assert!(r.header("location").is_some(), "no Location: {r}");
        assert!(r.retry_after().is_some(), "no Retry-After: {r}");
        self.poll_until_done(&r.async_operation(), Duration::from_secs(60))
            .await
    }

    pub async fn list_registries_in_group(&self, sub: &str, rg: &str) -> ArmResponse {
        self.get(&self.url(&format!(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/{PROVIDER}/registries"
        )))
        .await
    }

    pub async fn list_registries_in_subscription(&self, sub: &str) -> ArmResponse {
        self.get(&self.url(&format!(
            "/subscriptions/{sub}/providers/{PROVIDER}/registries"
        )))
        .await
    }

    pub fn import_url(&self, sub: &str, rg: &str, name: &str) -> String {
        self.url(&format!("{}/importImage", registry_id(sub, rg, name)))
    }

    /// `POST …/importImage` with a JSON body.
    pub async fn import(&self, sub: &str, rg: &str, name: &str, body: &Value) -> ArmResponse {
        self.import_with_request_id(sub, rg, name, body, None).await
    }

    /// `POST …/importImage`, with `x-ms-client-request-id` when given.
    pub async fn import_with_request_id(
        &self,
        sub: &str,
        rg: &str,
        name: &str,
        body: &Value,
        client_request_id: Option<&str>,
    ) -> ArmResponse {
        let mut headers = Vec::new();
        if let Some(id) = client_request_id {
            headers.push(("x-ms-client-request-id", id));
        }
        self.send(
            Method::POST,
            &self.import_url(sub, rg, name),
            &headers,
            Some("application/json"),
            Some(serde_json::to_vec(body).expect("serialize body")),
        )
        .await
    }

    fn poll_wait(&self, resp: &ArmResponse) -> Duration {
        let hinted = resp
            .retry_after()
            .map(Duration::from_secs)
            .unwrap_or(self.max_poll_interval);
        hinted.clamp(Duration::from_millis(20), self.max_poll_interval)
    }

    /// Polls an `Azure-AsyncOperation` URL until `status` is terminal; returns the final
    /// status JSON. Panics with the last answer after `timeout`.
    pub async fn poll_until_done(&self, url: &str, timeout: Duration) -> Value {
        self.poll_until(url, timeout, "a terminal status", |v| {
            matches!(
                v["status"].as_str().map(str::to_ascii_lowercase).as_deref(),
                Some("succeeded" | "failed" | "canceled")
            )
        })
        .await
    }

    /// Polls an `Azure-AsyncOperation` URL until `pred` holds for its JSON.
    pub async fn poll_until(
        &self,
        url: &str,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let resp = self.get(url).await;
            assert_eq!(resp.status, StatusCode::OK, "operation status GET: {resp}");
            let v = resp.json();
            if pred(&v) {
                return v;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for {what} on {url}; last status: {v}");
            }
            tokio::time::sleep(self.poll_wait(&resp)).await;
        }
    }

    /// Polls a `Location` URL until it stops answering 202; returns that final response.
    pub async fn poll_location(&self, url: &str, timeout: Duration) -> ArmResponse {
        let deadline = Instant::now() + timeout;
        loop {
            let resp = self.get(url).await;
            if resp.status != StatusCode::ACCEPTED {
                return resp;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} polling {url}; last: {resp}");
            }
            tokio::time::sleep(self.poll_wait(&resp)).await;
        }
    }
}
