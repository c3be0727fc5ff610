//! The catalog of a login server (`GET /v2/_catalog`, `GET /acr/v1/_catalog`): the
//! repositories the metadata knows (those with `listEnabled`), and those of the backend under
//! the registry's prefix that hold tags (a distribution registry keeps listing repositories
//! whose content was deleted; those are not the registry's any more).

use std::collections::BTreeSet;

use acr_store::RegistryRecord;
use axum::response::Response;
use http::{header, HeaderValue, Method, StatusCode};

use crate::error::{RegistryError, Result};
use crate::host::View;
use crate::request::{require, Need, RequestCtx};
use crate::v2::json_response;
use crate::Inner;

use super::wire::Repositories;

/// The repositories of `record`, by name (inside the registry).
pub(crate) async fn repositories(inner: &Inner, record: &RegistryRecord) -> Result<Vec<String>> {
    let name = &record.name_lower;
    let known = inner.store.repositories_meta(name, None).await?;
    let hidden: BTreeSet<String> = known
        .iter()
        .filter(|r| !r.attributes.list_enabled)
        .map(|r| r.repository.clone())
        .collect();
    let mut out: BTreeSet<String> = known
        .iter()
        .filter(|r| r.attributes.list_enabled)
        .map(|r| r.repository.clone())
        .collect();
    let prefix = format!("{name}/");
    let backend = inner
        .backend
        .client
        .catalog_with_prefix(&prefix)
        .await
        .map_err(RegistryError::backend)?;
    for full in backend {
        let Some(repo) = full.strip_prefix(&prefix) else {
            continue;
        };
        if out.contains(repo) || hidden.contains(repo) || known.iter().any(|k| k.repository == repo)
        {
            continue;
        }
        let Ok(r) = acr_core::reference::Repository::parse(&full) else {
            continue;
        };
        let tags = inner
            .backend
            .client
            .tags(&r)
            .await
            .map_err(RegistryError::backend)?;
        if !tags.is_empty() {
            out.insert(repo.to_owned());
        }
    }
    Ok(out.into_iter().collect())
}

/// `n` / `last` from a query.
pub(crate) fn paging(
    query: Option<&str>,
) -> Result<(Option<usize>, Option<String>, Option<String>)> {
    let mut n = None;
    let mut last = None;
    let mut orderby = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "n" if !v.is_empty() => {
                n = Some(v.parse::<usize>().map_err(|_| {
                    RegistryError::new(
                        StatusCode::BAD_REQUEST,
                        "PAGINATION_NUMBER_INVALID",
                        "invalid number of results requested",
                    )
                })?)
            }
            // NUL is in no name (and PostgreSQL's text refuses it).
            "last" if v.contains('\0') => {
                return Err(RegistryError::invalid("last may not contain NUL"));
            }
            "last" if !v.is_empty() => last = Some(v.into_owned()),
            "orderby" if !v.is_empty() => orderby = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok((n, last, orderby))
}

/// At most `n` of `all` (sorted) after `last`, and the `last` of the next page if any.
pub(crate) fn page(
    all: Vec<String>,
    n: Option<usize>,
    last: Option<&str>,
) -> (Vec<String>, Option<String>) {
    let mut items: Vec<String> = match last {
        Some(l) => all.into_iter().filter(|r| r.as_str() > l).collect(),
        None => all,
    };
    let mut next = None;
    if let Some(n) = n {
        if items.len() > n {
            items.truncate(n);
            next = items.last().cloned();
        }
    }
    (items, next)
}

/// A `Link` header to the next page: `</path?last=…&n=…[&orderby=…]>; rel="next"`.
pub(crate) fn link(path: &str, last: &str, n: usize, orderby: Option<&str>) -> HeaderValue {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("last", last);
    q.append_pair("n", &n.to_string());
    if let Some(o) = orderby {
        q.append_pair("orderby", o);
    }
    HeaderValue::from_str(&format!("<{path}?{}>; rel=\"next\"", q.finish()))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

async fn answer(
    inner: &Inner,
    record: &RegistryRecord,
    query: Option<&str>,
    path: &str,
    default_n: Option<usize>,
) -> Result<Response> {
    let (n, last, _) = paging(query)?;
    let n = n.or(default_n);
    let all = repositories(inner, record).await?;
    let (items, next) = page(all, n, last.as_deref());
    let mut resp = json_response(
        StatusCode::OK,
        serde_json::to_string(&Repositories {
            repositories: items,
        })
        .unwrap_or_default(),
    );
    if let (Some(next), Some(n)) = (next, n) {
        let orderby = (path.starts_with("/acr")).then_some("");
        resp.headers_mut()
            .insert(header::LINK, link(path, &next, n, orderby));
    }
    Ok(resp)
}

/// `GET /acr/v1/_catalog` (100 per page unless `n` says otherwise).
pub(crate) async fn acr_catalog(
    inner: &Inner,
    _ctx: &RequestCtx,
    record: &RegistryRecord,
    query: Option<&str>,
) -> Result<Response> {
    answer(inner, record, query, "/acr/v1/_catalog", Some(100)).await
}

/// `GET /v2/_catalog`: a login server's repositories; in the root view, the backend's
/// catalog (on an open listener, or for a caller who may list everything).
pub(crate) async fn v2_catalog(
    inner: &Inner,
    ctx: &RequestCtx,
    query: Option<&str>,
) -> Result<Response> {
    match &ctx.view {
        View::LoginServer { registry } => {
            let record = crate::request::registry(inner, registry).await?;
            require(inner, ctx, &Need::Catalog(&record))?;
            answer(inner, &record, query, "/v2/_catalog", None).await
        }
        View::Root => {
            if ctx.challenge {
                let open = matches!(
                    &ctx.caller,
                    crate::request::Caller::Token(Some(c)) if c.allows("registry", "catalog", "*")
                ) || (matches!(
                    &ctx.caller,
                    crate::request::Caller::Principal(crate::tokens::Principal::Entra { .. })
                ) && inner.authority.entra_is_open());
                if !open {
                    return Err(RegistryError::unauthorized(
                        ctx.challenge(Some("registry:catalog:*"), None),
                        serde_json::json!([{"Type": "registry", "Name": "catalog", "Action": "*"}]),
                    ));
                }
            }
            let path = match query {
                Some(q) => format!("/v2/_catalog?{q}"),
                None => "/v2/_catalog".to_owned(),
            };
            inner
                .backend
                .forward(
                    &acr_oci::client::Scopes::catalog(),
                    Method::GET,
                    &path,
                    http::HeaderMap::new(),
                    None,
                )
                .await
                .map_err(RegistryError::backend)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_links() {
        let all: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            page(all.clone(), Some(2), None),
            (vec!["a".into(), "b".into()], Some("b".into()))
        );
        assert_eq!(
            page(all.clone(), Some(2), Some("b")),
            (vec!["c".into()], None)
        );
        assert_eq!(page(all, None, None).0.len(), 3);
        assert_eq!(
            link("/acr/v1/_catalog", "team/app", 100, Some("")),
            "</acr/v1/_catalog?last=team%2Fapp&n=100&orderby=>; rel=\"next\""
        );
    }
}
