//! ACR's token service on every login server.
//!
//! - `POST /oauth2/exchange` (`grant_type=access_token`, `service`, `tenant`, `access_token`;
//!   also `refresh_token` grants): an Entra access token for a refresh token
//!   `{"refresh_token": <JWT with exp>}`.
//! - `POST /oauth2/token`: `grant_type=refresh_token` (a refresh token of ours) or
//!   `grant_type=password` (`username`/`password`: an admin user, the token user with a refresh
//!   token, or nothing for anonymous), one or more `scope`s → `{"access_token": …}` granting
//!   only what the caller may do.
//! - `GET /oauth2/token` (Basic credentials or none, `service`, `scope`s): the docker/skopeo
//!   flow → `{"token","access_token","expires_in","issued_at"}`.
//!
//! The query string (`?api-version=…`) is ignored, as ACR does. The audience of every token is
//! the login server it was asked of (the request's `Host`).

use std::collections::HashMap;

use acr_store::RegistryRecord;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures::StreamExt;
use http::{header, Method, StatusCode};
use serde_json::json;

use crate::authority::Action;
use crate::error::{RegistryError, Result};
use crate::host::View;
use crate::request::RequestCtx;
use crate::tokens::{Grant, Principal};
use crate::v2::json_response;
use crate::{Inner, ListenerState};

/// Form bodies larger than this are refused.
const FORM_MAX: usize = 64 << 10;

fn refused(message: &str) -> RegistryError {
    RegistryError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
}

async fn form(body: Body) -> Result<Vec<(String, String)>> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| RegistryError::invalid("the request body could not be read"))?;
        if buf.len() + chunk.len() > FORM_MAX {
            return Err(RegistryError::invalid("the form is too large"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(url::form_urlencoded::parse(&buf)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Every scope of every `scope` field (each may hold several, space-separated).
fn scopes(f: &[(String, String)]) -> Vec<String> {
    f.iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').filter(|s| !s.is_empty()).map(str::to_owned))
        .collect()
}

pub(crate) async fn exchange(State(state): State<ListenerState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let result = async {
        if parts.method != Method::POST {
            return Err(RegistryError::unsupported(
                StatusCode::METHOD_NOT_ALLOWED,
                "use POST",
            ));
        }
        let ctx = RequestCtx::new(&state, &parts).await?;
        let inner = &state.inner;
        login_server_exists(inner, &ctx).await?;
        let f = form(body).await?;
        let principal = match field(&f, "grant_type") {
            Some("access_token") | Some("access_token_refresh_token") => field(&f, "access_token")
                .and_then(|t| inner.authority.entra_principal(t))
                .ok_or_else(|| refused("the access token is missing, invalid or expired"))?,
            Some("refresh_token") => refresh_principal(inner, &ctx, &f)?,
            _ => {
                return Err(RegistryError::invalid(
                    "grant_type must be access_token, access_token_refresh_token or refresh_token",
                ))
            }
        };
        let token = inner.authority.tokens.refresh_token(&principal, &ctx.host);
        Ok(json_response(
            StatusCode::OK,
            json!({ "refresh_token": token }).to_string(),
        ))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn token(State(state): State<ListenerState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let result = async {
        let ctx = RequestCtx::new(&state, &parts).await?;
        let inner = &state.inner;
        login_server_exists(inner, &ctx).await?;
        match parts.method {
            Method::POST => {
                let f = form(body).await?;
                let principal = match field(&f, "grant_type") {
                    Some("refresh_token") => refresh_principal(inner, &ctx, &f)?,
                    Some("password") => match (field(&f, "username"), field(&f, "password")) {
                        (None, None) => Principal::Anonymous,
                        (user, Some(pass)) => inner
                            .authority
                            .password_principal(user, pass, Some(&ctx.host))
                            .await
                            .ok_or_else(|| refused("invalid username or password"))?,
                        (Some(_), None) => return Err(refused("a password is required")),
                    },
                    _ => {
                        return Err(RegistryError::invalid(
                            "grant_type must be refresh_token or password",
                        ))
                    }
                };
                let access = grants(inner, &ctx, &principal, &scopes(&f)).await?;
                let (token, ttl) = inner
                    .authority
                    .tokens
                    .access_token(&principal, &ctx.host, access);
                Ok(json_response(
                    StatusCode::OK,
                    json!({ "access_token": token, "expires_in": ttl }).to_string(),
                ))
            }
            Method::GET => {
                let q: Vec<(String, String)> =
                    url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect();
                let principal = match basic(&parts.headers) {
                    None => Principal::Anonymous,
                    Some((user, pass)) => inner
                        .authority
                        .password_principal(Some(&user), &pass, Some(&ctx.host))
                        .await
                        .ok_or_else(|| refused("invalid username or password"))?,
                };
                let access = grants(inner, &ctx, &principal, &scopes(&q)).await?;
                let (token, ttl) = inner
                    .authority
                    .tokens
                    .access_token(&principal, &ctx.host, access);
                Ok(json_response(
                    StatusCode::OK,
                    json!({
                        "token": token,
                        "access_token": token,
                        "expires_in": ttl,
                        "issued_at": chrono::Utc::now().to_rfc3339(),
                    })
                    .to_string(),
                ))
            }
            _ => Err(RegistryError::unsupported(
                StatusCode::METHOD_NOT_ALLOWED,
                "use GET or POST",
            )),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

fn basic(headers: &http::HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (u, p) = raw.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// The principal of a `grant_type=refresh_token` form: a refresh token of ours for this login
/// server, or an Entra token given in its place.
fn refresh_principal(inner: &Inner, ctx: &RequestCtx, f: &[(String, String)]) -> Result<Principal> {
    field(f, "refresh_token")
        .and_then(|t| {
            inner
                .authority
                .tokens
                .verify_refresh(t, Some(&ctx.host))
                .or_else(|| inner.authority.entra_principal(t))
        })
        .ok_or_else(|| refused("the refresh token is invalid or expired"))
}

/// A login server's registry must exist (and not be being deleted).
async fn login_server_exists(inner: &Inner, ctx: &RequestCtx) -> Result<()> {
    if let View::LoginServer { registry } = &ctx.view {
        crate::request::registry(inner, registry).await?;
    }
    Ok(())
}

/// What `principal` gets of the requested `scopes` (unknown or refused parts are left out,
/// as registries do: the data call then answers `insufficient_scope`).
async fn grants(
    inner: &Inner,
    ctx: &RequestCtx,
    principal: &Principal,
    scopes: &[String],
) -> Result<Vec<Grant>> {
    let mut records: HashMap<String, Option<RegistryRecord>> = HashMap::new();
    let mut out: Vec<Grant> = Vec::new();
    for s in scopes {
        let Some((kind, rest)) = s.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        match kind {
            "repository" => {
                let Ok(repo) = ctx.repo(name) else { continue };
                let record = match records.get(&repo.registry) {
                    Some(r) => r.clone(),
                    None => {
                        let r = inner.store.get_registry_by_name(&repo.registry).await?;
                        records.insert(repo.registry.clone(), r.clone());
                        r
                    }
                };
                let wanted = Action::parse_list(actions);
                let allowed: Vec<String> = wanted
                    .into_iter()
                    .filter(|a| match &record {
                        Some(r) => !ctx.challenge || inner.authority.may(principal, r, *a),
                        // An open listener's root view: the backend's whole namespace.
                        None => !ctx.challenge && ctx.view == View::Root,
                    })
                    .map(|a| a.as_str().to_owned())
                    .collect();
                if !allowed.is_empty() {
                    out.push(Grant {
                        kind: "repository".into(),
                        name: name.to_owned(),
                        actions: allowed,
                    });
                }
            }
            "registry" if name == "catalog" => {
                let ok = match &ctx.view {
                    _ if !ctx.challenge => true,
                    View::LoginServer { registry } => {
                        match inner.store.get_registry_by_name(registry).await? {
                            Some(r) => inner.authority.may(principal, &r, Action::Catalog),
                            None => false,
                        }
                    }
                    View::Root => {
                        matches!(principal, Principal::Entra { .. })
                            && inner.authority.entra_is_open()
                    }
                };
                if ok {
                    out.push(Grant {
                        kind: "registry".into(),
                        name: "catalog".into(),
                        actions: vec!["*".into()],
                    });
                }
            }
            _ => {}
        }
    }
    Ok(out)
}
