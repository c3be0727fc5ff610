//! Bearer and Basic auth of requests: the access a request needs ([`Scopes`]), authorizing it from what the registry's
//! challenge asked for (Basic, or a Bearer token cached per scope set until shortly before it
//! expires), and the token dance when a 401 comes (merge the challenge's scope with ours,
//! exchange a refresh token by POST, else GET the realm with Basic credentials or anonymously).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use acr_core::reference::Repository;
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{RequestBuilder, Response, StatusCode};
use secrecy::ExposeSecret;
use url::Url;

use super::challenge::{parse_challenge, Challenge, TokenResponse};
use super::read_limited;
use crate::client::{Credentials, RegistryClient};
use crate::error::OciError;

/// Access a request needs, e.g. `repository:a/b:pull`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scopes(Vec<String>);

impl Scopes {
    pub fn pull(repo: &Repository) -> Self {
        Self(vec![format!("repository:{repo}:pull")])
    }
    pub fn push(repo: &Repository) -> Self {
        Self(vec![format!("repository:{repo}:pull,push")])
    }
    /// Push to `repo` and pull from `from` (a cross-repository mount).
    pub fn mount(repo: &Repository, from: &Repository) -> Self {
        let mut v = vec![format!("repository:{repo}:pull,push")];
        if from != repo {
            v.push(format!("repository:{from}:pull"));
        }
        Self(v)
    }
    /// Delete in `repo` (tags, manifests, blobs).
    pub fn delete(repo: &Repository) -> Self {
        Self(vec![format!("repository:{repo}:pull,delete")])
    }
    /// List the catalog.
    pub fn catalog() -> Self {
        Self(vec!["registry:catalog:*".to_owned()])
    }
    /// Exactly these scope strings (e.g. from a request's route).
    pub fn of(scopes: Vec<String>) -> Self {
        Self(scopes)
    }
    pub(crate) fn key(&self) -> String {
        self.0.join(" ")
    }
}

#[derive(Debug, Clone)]
struct CachedToken {
    token: String,
    expires: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct AuthState {
    challenge: Option<Challenge>,
    tokens: HashMap<String, CachedToken>,
}

impl RegistryClient {
    pub(crate) fn authorize(&self, rb: RequestBuilder, scopes: &Scopes) -> RequestBuilder {
        let state = match self.auth.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        match (&state.challenge, &self.credentials) {
            (Some(Challenge::Bearer { .. }), _) => {
                if let Some(t) = state
                    .tokens
                    .get(&scopes.key())
                    .filter(|t| t.expires > Instant::now())
                {
                    return rb.bearer_auth(&t.token);
                }
                if let Credentials::Token(t) = &self.credentials {
                    return rb.bearer_auth(t.expose_secret());
                }
                rb
            }
            (Some(Challenge::Basic), Credentials::Basic { username, password }) => {
                rb.basic_auth(username, Some(password.expose_secret()))
            }
            (_, Credentials::Token(t)) => rb.bearer_auth(t.expose_secret()),
            _ => rb,
        }
    }

    /// Whether a request for `scopes` would go out authorized without a 401 round trip: the
    /// registry's challenge is known and, for a token registry, a live token is cached.
    pub(crate) fn auth_ready(&self, scopes: &Scopes) -> bool {
        let state = match self.auth.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        match &state.challenge {
            None => matches!(self.credentials, Credentials::Anonymous),
            Some(Challenge::Basic) => true,
            Some(Challenge::Bearer { .. }) => state
                .tokens
                .get(&scopes.key())
                .is_some_and(|t| t.expires > Instant::now()),
        }
    }

    /// Reacts to a 401: learns the challenge and fetches a token when needed.
    pub(crate) async fn on_unauthorized(
        &self,
        resp: &Response,
        scopes: &Scopes,
    ) -> Result<(), OciError> {
        let header = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let challenge = parse_challenge(header).ok_or_else(|| OciError::Unauthorized {
            registry: self.name.clone(),
            detail: "the registry answered 401 without a usable WWW-Authenticate challenge".into(),
        })?;
        match &challenge {
            Challenge::Basic => {
                if !matches!(self.credentials, Credentials::Basic { .. }) {
                    return Err(OciError::Unauthorized {
                        registry: self.name.clone(),
                        detail: "the registry requires a username and password".into(),
                    });
                }
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
                ..
            } => {
                let mut wanted: Vec<String> = Vec::new();
                if let Some(s) = scope {
                    wanted.extend(s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned));
                }
                for s in &scopes.0 {
                    if !wanted.contains(s) {
                        wanted.push(s.clone());
                    }
                }
                let token = self.fetch_token(realm, service.as_deref(), &wanted).await?;
                let mut state = match self.auth.lock() {
                    Ok(s) => s,
                    Err(p) => p.into_inner(),
                };
                state.tokens.insert(scopes.key(), token);
            }
        }
        let mut state = match self.auth.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        state.challenge = Some(challenge);
        Ok(())
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<CachedToken, OciError> {
        let url = Url::parse(realm)
            .map_err(|e| self.invalid(format!("the token realm '{realm}' is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.invalid("the token realm must be an http or https URL"));
        }
        if let Err(r) = self.config.check_source_url(&url) {
            return Err(OciError::Refused {
                registry: self.name.clone(),
                detail: format!(
                    "the token realm {} is refused: {r}",
                    url.origin().ascii_serialization()
                ),
            });
        }
        // An identity (refresh) token is exchanged with the OAuth2 POST; token servers without
        // that grant answer 404/405 and get the GET form with the token as bearer.
        if let Credentials::Token(t) = &self.credentials {
            let mut form: Vec<(&str, String)> = vec![
                ("grant_type", "refresh_token".into()),
                ("refresh_token", t.expose_secret().to_owned()),
                ("client_id", "acr-import".into()),
            ];
            if let Some(s) = service {
                form.push(("service", s.to_owned()));
            }
            if !scopes.is_empty() {
                form.push(("scope", scopes.join(" ")));
            }
            let resp = self
                .observed(self.http.post(url.clone()).form(&form).send().await)
                .map_err(|e| self.network(e))?;
            if !matches!(resp.status().as_u16(), 404 | 405) {
                return self.token_from(resp).await;
            }
        }
        let mut url = url;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
            if let Credentials::Basic { username, .. } = &self.credentials {
                q.append_pair("account", username);
            }
        }
        let mut rb = self.http.get(url);
        match &self.credentials {
            Credentials::Basic { username, password } => {
                rb = rb.basic_auth(username, Some(password.expose_secret()));
            }
            Credentials::Token(t) => {
                rb = rb.bearer_auth(t.expose_secret());
            }
            Credentials::Anonymous => {}
        }
        let resp = self
            .observed(rb.send().await)
            .map_err(|e| self.network(e))?;
        self.token_from(resp).await
    }

    async fn token_from(&self, resp: Response) -> Result<CachedToken, OciError> {
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN
            || status == StatusCode::BAD_REQUEST
        {
            return Err(OciError::Unauthorized {
                registry: self.name.clone(),
                detail: format!(
                    "the token server refused the credentials ({})",
                    status.as_u16()
                ),
            });
        }
        if !status.is_success() {
            return Err(OciError::Status {
                registry: self.name.clone(),
                method: "GET".into(),
                path: "token realm".into(),
                status: status.as_u16(),
                detail: "the token server failed".into(),
            });
        }
        let body = read_limited(resp, 64 * 1024)
            .await
            .map_err(|e| self.network(e))?;
        let tr: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            self.invalid(format!("the token server sent an unreadable answer: {e}"))
        })?;
        let token = tr
            .token()
            .ok_or_else(|| self.invalid("the token server answered without a token"))?
            .to_owned();
        // Honour short lifetimes; renew a little before expiry.
        let ttl = Duration::from_secs(tr.expires_in.unwrap_or(60).max(1));
        let margin = (ttl / 5).min(Duration::from_secs(10));
        Ok(CachedToken {
            token,
            expires: Instant::now() + ttl - margin,
        })
    }
}
