//! What a login server knows of a request before it routes it: the host and view, the
//! listener, the caller; and the one check every route makes (may this caller do these
//! actions here?), answering `401` with ACR's challenge when it may not.

use acr_store::RegistryRecord;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::request::Parts;
use http::{header, StatusCode};
use serde_json::json;

use crate::authority::Action;
use crate::error::{RegistryError, Result};
use crate::host::{host_of, view_of, View};
use crate::tokens::{AccessClaims, Principal};
use crate::{Inner, Listener, ListenerState};

/// Who sent a request.
#[derive(Debug)]
pub(crate) enum Caller {
    /// No `Authorization`.
    None,
    /// A Bearer access token of ours, valid for this login server (`None`: not valid).
    Token(Option<Box<AccessClaims>>),
    /// Basic credentials accepted as this principal.
    Principal(Principal),
    /// Basic credentials refused, or an unreadable header.
    Refused,
}

/// The request's context.
pub(crate) struct RequestCtx {
    /// `Host` as sent (lowercase): the `service` of tokens and challenges.
    pub(crate) host: String,
    pub(crate) scheme: &'static str,
    pub(crate) view: View,
    /// The listener asks for credentials.
    pub(crate) challenge: bool,
    pub(crate) caller: Caller,
}

/// A repository as the client names it and as the backend stores it.
#[derive(Debug, Clone)]
pub(crate) struct Repo {
    /// The emulated registry (lowercase name).
    pub(crate) registry: String,
    /// The name inside the registry (`app`).
    pub(crate) inner: String,
    /// As the client sees it: `inner` on a login server, `registry/inner` in the root view.
    pub(crate) visible: String,
}

impl Repo {
    /// The backend's name: `registry/inner`.
    pub(crate) fn full(&self) -> String {
        format!("{}/{}", self.registry, self.inner)
    }
}

/// Repository names: lowercase components of `[a-z0-9]+([._-][a-z0-9]+)*`, at most 256 chars.
pub(crate) fn valid_repository(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.as_bytes()[0].is_ascii_alphanumeric()
                && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
        })
}

impl RequestCtx {
    pub(crate) async fn new(state: &ListenerState, parts: &Parts) -> Result<RequestCtx> {
        let inner = &state.inner;
        let host = host_of(parts).ok_or_else(|| RegistryError::invalid("no valid Host header"))?;
        let view = view_of(&host, &inner.config.login_server_suffix);
        let (scheme, challenge) = match state.listener {
            Listener::Tls => ("https", true),
            Listener::Plain => ("http", inner.config.plain_auth),
        };
        let caller = caller_of(inner, parts, &host).await;
        Ok(RequestCtx {
            host,
            scheme,
            view,
            challenge,
            caller,
        })
    }

    /// The registry and repository of a name from the path (or a scope, or `from=`).
    pub(crate) fn repo(&self, visible: &str) -> Result<Repo> {
        let (registry, inner) = match &self.view {
            View::LoginServer { registry } => (registry.clone(), visible.to_owned()),
            View::Root => match visible.split_once('/') {
                Some((r, rest)) if !rest.is_empty() => (r.to_owned(), rest.to_owned()),
                _ => return Err(RegistryError::name_invalid(visible)),
            },
        };
        // The backend names it `<registry>/<name>`, which must fit distribution's limit.
        let full_len = registry.len() + 1 + inner.len();
        if !valid_repository(&inner)
            || !valid_repository(&registry)
            || full_len > acr_core::reference::MAX_REPOSITORY_LEN
        {
            return Err(RegistryError::name_invalid(visible));
        }
        Ok(Repo {
            registry,
            inner,
            visible: visible.to_owned(),
        })
    }

    pub(crate) fn realm(&self) -> String {
        format!("{}://{}/oauth2/token", self.scheme, self.host)
    }

    /// ACR's challenge: realm and service, and the scope when one is asked for (never on
    /// `GET /v2/`, whose challenge the Azure CLI splits on commas).
    pub(crate) fn challenge(&self, scope: Option<&str>, error: Option<&str>) -> String {
        let mut c = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.realm(),
            self.host
        );
        if let Some(s) = scope {
            c.push_str(&format!(",scope=\"{s}\""));
        }
        if let Some(e) = error {
            c.push_str(&format!(",error=\"{e}\""));
        }
        c
    }
}

async fn caller_of(inner: &Inner, parts: &Parts, host: &str) -> Caller {
    let Some(v) = parts.headers.get(header::AUTHORIZATION) else {
        return Caller::None;
    };
    let Ok(v) = v.to_str() else {
        return Caller::Refused;
    };
    let v = v.trim();
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        let claims = inner
            .authority
            .tokens
            .verify_access(rest)
            .filter(|c| c.aud.eq_ignore_ascii_case(host));
        return Caller::Token(claims.map(Box::new));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD
            .decode(rest.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let Some((user, pass)) = decoded.as_deref().and_then(|s| s.split_once(':')) else {
            return Caller::Refused;
        };
        return match inner
            .authority
            .password_principal(Some(user), pass, Some(host))
            .await
        {
            Some(p) => Caller::Principal(p),
            None => Caller::Refused,
        };
    }
    Caller::Refused
}

/// What a request must be allowed.
pub(crate) enum Need<'a> {
    /// Be someone: `GET /v2/` on a challenging listener.
    Login,
    /// List the catalog of a registry.
    Catalog(&'a RegistryRecord),
    /// Do `actions` on `repo` of `registry`.
    Repo(&'a RegistryRecord, &'a Repo, &'a [Action]),
}

fn scope_of(need: &Need<'_>) -> Option<String> {
    match need {
        Need::Login => None,
        Need::Catalog(_) => Some("registry:catalog:*".into()),
        Need::Repo(_, repo, actions) => Some(format!(
            "repository:{}:{}",
            repo.visible,
            actions
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(",")
        )),
    }
}

/// Checks that the caller may do `need`, else the registry's 401 (with the challenge naming
/// the scope) or 403.
pub(crate) fn require(inner: &Inner, ctx: &RequestCtx, need: &Need<'_>) -> Result<()> {
    let scope = scope_of(need);
    let unauthorized = |error: Option<&str>| {
        let detail = match need {
            Need::Login => json!(null),
            Need::Catalog(_) => json!([{"Type": "registry", "Name": "catalog", "Action": "*"}]),
            Need::Repo(_, repo, actions) => json!(actions
                .iter()
                .map(|a| json!({"Type": "repository", "Name": repo.visible, "Action": a.as_str()}))
                .collect::<Vec<_>>()),
        };
        RegistryError::unauthorized(ctx.challenge(scope.as_deref(), error), detail)
    };
    // A registry being deleted serves nobody, whatever the listener.
    match need {
        Need::Catalog(r) | Need::Repo(r, _, _) if r.deleting() => {
            return Err(RegistryError::name_unknown(&r.name_lower));
        }
        _ => {}
    }
    let principal = match &ctx.caller {
        Caller::None if !ctx.challenge => return Ok(()),
        Caller::None => Principal::Anonymous,
        Caller::Refused => return Err(unauthorized(Some("invalid_token"))),
        Caller::Token(None) => return Err(unauthorized(Some("invalid_token"))),
        Caller::Token(Some(claims)) => {
            let granted = match need {
                Need::Login => true,
                Need::Catalog(_) => claims.allows("registry", "catalog", "*"),
                Need::Repo(_, repo, actions) => actions
                    .iter()
                    .all(|a| claims.allows("repository", &repo.visible, a.as_str())),
            };
            if !granted {
                return Err(unauthorized(Some("insufficient_scope")));
            }
            // The grant is checked again against the registry as it is now (a deleted
            // registry, a disabled admin user, a removed role assignment end it at once).
            claims.principal.clone()
        }
        Caller::Principal(p) => p.clone(),
    };
    let ok = match need {
        Need::Login => !matches!(principal, Principal::Anonymous),
        Need::Catalog(r) => inner.authority.may(&principal, r, Action::Catalog),
        Need::Repo(r, _, actions) => actions
            .iter()
            .all(|a| inner.authority.may(&principal, r, *a)),
    };
    match (ok, &principal) {
        (true, _) => Ok(()),
        (false, Principal::Anonymous) => Err(unauthorized(None)),
        (false, _) if matches!(ctx.caller, Caller::Token(_)) => {
            Err(unauthorized(Some("insufficient_scope")))
        }
        (false, _) => Err(RegistryError::denied(
            "requested access to the resource is denied",
        )),
    }
}

/// The registry a request is for, or 404 `NAME_UNKNOWN`.
pub(crate) async fn registry(inner: &Inner, name: &str) -> Result<RegistryRecord> {
    match inner.store.get_registry_by_name(name).await? {
        Some(r) if !r.deleting() => Ok(r),
        _ => Err(RegistryError::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("registry '{name}' not found"),
        )
        .detail(json!({ "name": name }))),
    }
}

/// Unknown paths.
pub(crate) async fn not_found() -> Response {
    RegistryError::unsupported(StatusCode::NOT_FOUND, "unknown endpoint").into_response()
}

/// Decodes `%XX` (the data-plane SDK sends `team%2Fapp` and `sha256%3A…`).
pub(crate) fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_decoding() {
        assert!(valid_repository("team/app-1.x"));
        assert!(!valid_repository("Team/app"));
        assert!(!valid_repository("a//b"));
        assert!(!valid_repository("_x"));
        assert_eq!(percent_decode("team%2Fapp"), "team/app");
        assert_eq!(percent_decode("sha256%3Aab"), "sha256:ab");
        assert_eq!(percent_decode("a+b"), "a+b");
    }
}
