//! One request passed through for the login servers (`/v2`, `/acr/v1`), authorized with the
//! client's credentials.

use reqwest::header::HeaderMap;
use reqwest::{Method, Response};

use super::Scopes;
use crate::client::RegistryClient;
use crate::error::OciError;

impl RegistryClient {
    /// One request passed through (the login servers' `/v2` and `/acr/v1`): `path_and_query`
    /// is relative to the registry root, `headers` are the ones to send (no `Authorization`,
    /// no hop-by-hop); the client's credentials authorize it for `scopes`. A request without a
    /// body is retried like any other (one 401 round trip, transient failures); one with a
    /// streamed body is sent once, after the authorization for `scopes` is ready. No read
    /// timeout: the caller streams the answer at its client's pace.
    pub async fn forward(
        &self,
        scopes: &Scopes,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: Option<reqwest::Body>,
    ) -> Result<Response, OciError> {
        let url = self.url(path_and_query.trim_start_matches('/'))?;
        let http = self.upload_http();
        match body {
            None => {
                self.send(scopes, || {
                    Ok(http
                        .request(method.clone(), url.clone())
                        .headers(headers.clone()))
                })
                .await
            }
            Some(body) => {
                if !self.auth_ready(scopes) {
                    // Learns the challenge and fetches the token for `scopes`.
                    let ping = self.url("v2/")?;
                    let _ = self.send(scopes, || Ok(http.get(ping.clone()))).await?;
                }
                let rb = http.request(method, url).headers(headers).body(body);
                self.observed(self.authorize(rb, scopes).send().await)
                    .map_err(|e| self.network(e))
            }
        }
    }
}
