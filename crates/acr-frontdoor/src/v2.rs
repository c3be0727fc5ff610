//! `/v2`: the distribution API of a login server, passed through to the backend.
//!
//! The caller's rights are checked here (the backend is reached with the backend's own
//! credentials), names are mapped (`app` on `myreg.azurecr.io` is `myreg/app` in the backend),
//! `changeableAttributes` are enforced, and bodies stream both ways except a manifest's (at
//! most 4 MiB, read whole so that the metadata can be recorded). `Location` and `Link`
//! answers are rewritten to the names the client uses.

use acr_oci::client::Scopes;
use acr_store::metadata::Attributes;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::authority::Action;
use crate::error::{RegistryError, Result};
use crate::host::View;
use crate::request::{percent_decode, registry, require, Need, Repo, RequestCtx};
use crate::{Inner, ListenerState};

/// Manifests above this are refused (413), as the built-in registry and ggcr do.
pub(crate) const MANIFEST_MAX: usize = 4 << 20;

static API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");

/// A `/v2` path.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Ping,
    Catalog,
    /// A repository path: the name and what follows it (`tags/list`, `manifests/<ref>`, …).
    Repo {
        name: &'a str,
        rest: &'a str,
        kind: Kind<'a>,
    },
    Unknown,
}

#[derive(Debug, PartialEq, Eq)]
enum Kind<'a> {
    Tags,
    Manifest(&'a str),
    Blob,
    UploadStart,
    Upload,
    Referrers,
}

/// Splits `/v2/<name>/<kind>/…` from the right (names hold `/`).
fn parse_route<'a>(path: &'a str) -> Route<'a> {
    let Some(rest) = path.strip_prefix("/v2") else {
        return Route::Unknown;
    };
    if rest.is_empty() || rest == "/" {
        return Route::Ping;
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Route::Unknown;
    };
    if rest == "_catalog" {
        return Route::Catalog;
    }
    let Some((head, last)) = rest.rsplit_once('/') else {
        return Route::Unknown;
    };
    let split = |name: &'a str, kind: Kind<'a>| -> Route<'a> {
        let tail = &rest[name.len() + 1..];
        Route::Repo {
            name,
            rest: tail,
            kind,
        }
    };
    if let Some((name, kind)) = head.rsplit_once('/') {
        match kind {
            "tags" if last == "list" => return split(name, Kind::Tags),
            "manifests" => return split(name, Kind::Manifest(last)),
            "blobs" if last == "uploads" => return split(name, Kind::UploadStart),
            "blobs" => return split(name, Kind::Blob),
            "referrers" => return split(name, Kind::Referrers),
            "uploads" => {
                if let Some(n) = name.strip_suffix("/blobs") {
                    return if last.is_empty() {
                        split(n, Kind::UploadStart)
                    } else {
                        split(n, Kind::Upload)
                    };
                }
            }
            _ => {}
        }
    }
    Route::Unknown
}

/// The route template of a `/v2` path, for the request metrics (names and references
/// replaced by placeholders: a fixed set of values).
pub(crate) fn route_template(path: &str) -> &'static str {
    match parse_route(path) {
        Route::Ping => "/v2/",
        Route::Catalog => "/v2/_catalog",
        Route::Repo { kind, .. } => match kind {
            Kind::Tags => "/v2/{name}/tags/list",
            Kind::Manifest(_) => "/v2/{name}/manifests/{reference}",
            Kind::Blob => "/v2/{name}/blobs/{digest}",
            Kind::UploadStart => "/v2/{name}/blobs/uploads/",
            Kind::Upload => "/v2/{name}/blobs/uploads/{uuid}",
            Kind::Referrers => "/v2/{name}/referrers/{digest}",
        },
        Route::Unknown => "/v2/{*rest}",
    }
}

/// The methods a `/v2` path takes (the `Allow` of its 405), `None` for an unknown path.
pub(crate) fn allowed_methods(path: &str) -> Option<&'static str> {
    Some(match parse_route(path) {
        Route::Ping | Route::Catalog => "GET, HEAD",
        Route::Repo { kind, .. } => match kind {
            Kind::Tags | Kind::Referrers => "GET, HEAD",
            Kind::Manifest(_) => "GET, HEAD, PUT, DELETE",
            Kind::Blob => "GET, HEAD, DELETE",
            Kind::UploadStart => "POST",
            Kind::Upload => "GET, HEAD, PATCH, PUT, DELETE",
        },
        Route::Unknown => return None,
    })
}

pub(crate) async fn handle(State(state): State<ListenerState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let result = async {
        let ctx = RequestCtx::new(&state, &parts).await?;
        serve(&state.inner, &ctx, &parts, body).await
    }
    .await;
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    resp.headers_mut().insert(
        API_VERSION.clone(),
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

fn actions_for(method: &Method, kind: &Kind<'_>) -> Result<&'static [Action]> {
    const PULL: &[Action] = &[Action::Pull];
    const PUSH: &[Action] = &[Action::Pull, Action::Push];
    const DELETE: &[Action] = &[Action::Delete];
    let read = method == Method::GET || method == Method::HEAD;
    Ok(match (kind, method.as_str()) {
        (Kind::Tags | Kind::Referrers, _) if read => PULL,
        (Kind::Manifest(_) | Kind::Blob, _) if read => PULL,
        (Kind::Manifest(_), "PUT") => PUSH,
        (Kind::Manifest(_) | Kind::Blob, "DELETE") => DELETE,
        (Kind::UploadStart, "POST") => PUSH,
        (Kind::Upload, "GET" | "HEAD" | "PATCH" | "PUT" | "DELETE") => PUSH,
        _ => {
            return Err(RegistryError::unsupported(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed here",
            ))
        }
    })
}

async fn serve(
    inner: &Inner,
    ctx: &RequestCtx,
    parts: &http::request::Parts,
    body: Body,
) -> Result<Response> {
    match parse_route(parts.uri.path()) {
        Route::Unknown => Err(RegistryError::unsupported(
            StatusCode::NOT_FOUND,
            "unknown endpoint",
        )),
        Route::Ping => {
            if parts.method != Method::GET && parts.method != Method::HEAD {
                return Err(RegistryError::unsupported(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed here",
                ));
            }
            if ctx.challenge {
                require(inner, ctx, &Need::Login)?;
            }
            Ok(json_response(StatusCode::OK, "{}".into()))
        }
        Route::Catalog => {
            if parts.method != Method::GET && parts.method != Method::HEAD {
                return Err(RegistryError::unsupported(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed here",
                ));
            }
            crate::dataplane::catalog::v2_catalog(inner, ctx, parts.uri.query()).await
        }
        Route::Repo { name, rest, kind } => {
            let repo = ctx.repo(&percent_decode(name))?;
            let actions = actions_for(&parts.method, &kind)?;
            // An open listener lets anyone use the backend's whole namespace; otherwise the
            // registry must exist.
            let record = match inner.store.get_registry_by_name(&repo.registry).await? {
                Some(r) => Some(r),
                None if !ctx.challenge && ctx.view == View::Root => None,
                // Nobody holds rights in a registry that does not exist (any more): a token
                // or password for it is refused like any other.
                None if ctx.challenge => {
                    let error = (!matches!(ctx.caller, crate::request::Caller::None))
                        .then_some("invalid_token");
                    let scope = format!("repository:{}:pull", repo.visible);
                    return Err(RegistryError::unauthorized(
                        ctx.challenge(Some(&scope), error),
                        serde_json::Value::Null,
                    ));
                }
                None => return Err(RegistryError::name_unknown(&repo.visible)),
            };
            let mut extra_scopes = Vec::new();
            let mut query = parts.uri.query().map(str::to_owned);
            if let Some(r) = &record {
                require(inner, ctx, &Need::Repo(r, &repo, actions))?;
                // A mount reads `from`: the caller must be allowed to pull it, and the
                // backend needs its full name.
                if kind == Kind::UploadStart {
                    if let Some((from, rewritten)) = mount_source(ctx, parts.uri.query())? {
                        let from_record = registry(inner, &from.registry).await?;
                        if require(
                            inner,
                            ctx,
                            &Need::Repo(&from_record, &from, &[Action::Pull]),
                        )
                        .is_err()
                        {
                            // Not readable: the backend starts a plain upload instead.
                            query = Some(without_mount(parts.uri.query()));
                        } else {
                            extra_scopes.push(format!("repository:{}:pull", from.full()));
                            query = Some(rewritten);
                        }
                    } else {
                        query = Some(without_mount(parts.uri.query()));
                    }
                }
            } else if kind == Kind::UploadStart {
                if let Some((from, rewritten)) = mount_source(ctx, parts.uri.query())? {
                    extra_scopes.push(format!("repository:{}:pull", from.full()));
                    query = Some(rewritten);
                } else {
                    query = Some(without_mount(parts.uri.query()));
                }
            }
            let path = format!("/v2/{}/{rest}", repo.full());
            let path_and_query = match &query {
                Some(q) if !q.is_empty() => format!("{path}?{q}"),
                _ => path,
            };
            let mut scopes = vec![format!(
                "repository:{}:{}",
                repo.full(),
                match actions {
                    [Action::Pull] => "pull",
                    [Action::Delete] => "delete",
                    _ => "pull,push",
                }
            )];
            scopes.extend(extra_scopes);
            let scopes = Scopes::of(scopes);
            match kind {
                Kind::Manifest(reference) => {
                    let reference = percent_decode(reference);
                    crate::record::manifest(
                        inner,
                        ctx,
                        record.as_ref(),
                        &repo,
                        &reference,
                        parts,
                        body,
                        &scopes,
                        &path_and_query,
                    )
                    .await
                }
                _ => {
                    let body =
                        (!matches!(parts.method, Method::GET | Method::HEAD)).then_some(body);
                    let resp = inner
                        .backend
                        .forward(
                            &scopes,
                            parts.method.clone(),
                            &path_and_query,
                            parts.headers.clone(),
                            body,
                        )
                        .await
                        .map_err(RegistryError::backend)?;
                    Ok(rewrite(ctx, &repo, resp))
                }
            }
        }
    }
}

/// The `from` of a mount (`?mount=<digest>&from=<repo>`), and the query with it in the
/// backend's names.
fn mount_source(ctx: &RequestCtx, query: Option<&str>) -> Result<Option<(Repo, String)>> {
    let Some(q) = query else { return Ok(None) };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let Some((_, mount)) = pairs.iter().find(|(k, _)| k == "mount") else {
        return Ok(None);
    };
    if acr_core::reference::Digest::parse(mount).is_err() {
        return Err(RegistryError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "the digest to mount is not a digest",
        )
        .detail(serde_json::json!({ "mount": acr_core::reference::truncate(mount) })));
    }
    let Some((_, from)) = pairs.iter().find(|(k, _)| k == "from") else {
        return Ok(None);
    };
    // A `from` that names no repository mounts nothing: the caller starts a plain upload
    // (202), as the distribution spec has it for any mount that cannot be done.
    let Ok(from) = ctx.repo(from) else {
        return Ok(None);
    };
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        if k == "from" {
            out.append_pair(k, &from.full());
        } else {
            out.append_pair(k, v);
        }
    }
    Ok(Some((from, out.finish())))
}

fn without_mount(query: Option<&str>) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k != "mount" && k != "from" {
            out.append_pair(&k, &v);
        }
    }
    out.finish()
}

/// The backend's `Location` / `Link` in the client's names.
pub(crate) fn rewrite(ctx: &RequestCtx, repo: &Repo, mut resp: Response) -> Response {
    let prefix = format!("/v2/{}/", repo.registry);
    let strip = matches!(ctx.view, View::LoginServer { .. });
    let map_path = |p: &str| -> String {
        let p = if p.starts_with("http://") || p.starts_with("https://") {
            url::Url::parse(p)
                .map(|u| match u.query() {
                    Some(q) => format!("{}?{q}", u.path()),
                    None => u.path().to_owned(),
                })
                .unwrap_or_else(|_| p.to_owned())
        } else {
            p.to_owned()
        };
        if strip {
            if let Some(rest) = p.strip_prefix(&prefix) {
                return format!("/v2/{rest}");
            }
        }
        p
    };
    let h = resp.headers_mut();
    if let Some(loc) = h.get(header::LOCATION).and_then(|v| v.to_str().ok()) {
        if let Ok(v) = HeaderValue::from_str(&map_path(loc)) {
            h.insert(header::LOCATION, v);
        }
    }
    if let Some(link) = h.get(header::LINK).and_then(|v| v.to_str().ok()) {
        let mapped = match link.split_once('>') {
            Some((target, rest)) => {
                format!("<{}>{rest}", map_path(target.trim_start_matches('<')))
            }
            None => link.to_owned(),
        };
        if let Ok(v) = HeaderValue::from_str(&mapped) {
            h.insert(header::LINK, v);
        }
    }
    resp
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// Refuses a change the locks forbid (`what`: which lock, for the message).
pub(crate) fn locked(
    attrs: Option<&Attributes>,
    allowed: fn(&Attributes) -> bool,
    what: &str,
) -> Result<()> {
    match attrs {
        Some(a) if !allowed(a) => Err(RegistryError::locked(what)),
        _ => Ok(()),
    }
}

/// Headers a manifest forward keeps (the body is re-sent whole, so its length is set anew).
pub(crate) fn manifest_headers(h: &HeaderMap) -> HeaderMap {
    let mut out = h.clone();
    out.remove(header::CONTENT_LENGTH);
    out.remove(header::TRANSFER_ENCODING);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_from_the_right() {
        assert_eq!(parse_route("/v2/"), Route::Ping);
        assert_eq!(parse_route("/v2/_catalog"), Route::Catalog);
        assert_eq!(
            parse_route("/v2/a/b/tags/list"),
            Route::Repo {
                name: "a/b",
                rest: "tags/list",
                kind: Kind::Tags
            }
        );
        assert_eq!(
            parse_route("/v2/a/manifests/v1"),
            Route::Repo {
                name: "a",
                rest: "manifests/v1",
                kind: Kind::Manifest("v1")
            }
        );
        assert_eq!(
            parse_route("/v2/a/b/blobs/uploads/"),
            Route::Repo {
                name: "a/b",
                rest: "blobs/uploads/",
                kind: Kind::UploadStart
            }
        );
        assert_eq!(
            parse_route("/v2/a/blobs/uploads/123"),
            Route::Repo {
                name: "a",
                rest: "blobs/uploads/123",
                kind: Kind::Upload
            }
        );
        assert_eq!(parse_route("/v2/a"), Route::Unknown);
        assert_eq!(
            route_template("/v2/myreg/app/manifests/v1"),
            "/v2/{name}/manifests/{reference}"
        );
        assert_eq!(
            route_template("/v2/a/blobs/uploads/123"),
            "/v2/{name}/blobs/uploads/{uuid}"
        );
        assert_eq!(route_template("/v2"), "/v2/");
        assert_eq!(route_template("/v2/a"), "/v2/{*rest}");
        assert_eq!(parse_route("/v3/a/tags/list"), Route::Unknown);
    }
}
