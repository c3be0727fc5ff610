//! ACR's `/acr/v1` API on the login servers (2021-07-01 data-plane spec), answered from the
//! store's metadata: the catalog, repositories, tags and manifests with their times, sizes,
//! platforms and `changeableAttributes`, in the spec's JSON shapes, paged with `Link` as the
//! CLI and the SDK read it. Errors are the registry's `{"errors":[…]}`.
//!
//! Names arrive raw from the CLI (`/acr/v1/team/app/_tags`) and percent-encoded from the SDK
//! (`/acr/v1/team%2Fapp/_tags`): the path is decoded, then split by its last `_tags` /
//! `_manifests` segment.

pub mod catalog;
mod content;
mod repository;
pub mod wire;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{Method, StatusCode};

use crate::authority::Action;
use crate::error::{RegistryError, Result};
use crate::host::View;
use crate::request::{percent_decode, registry, require, Need, Repo, RequestCtx};
use crate::{Inner, ListenerState};

/// A `/acr/v1` path.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Catalog,
    Repository(String),
    Tags(String),
    Tag(String, String),
    Manifests(String),
    Manifest(String, String),
}

fn parse(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/acr/v1/")?;
    let rest = percent_decode(rest);
    let rest = rest.trim_end_matches('/');
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/_tags") {
        return Some(Route::Tags(name.to_owned()));
    }
    if let Some(name) = rest.strip_suffix("/_manifests") {
        return Some(Route::Manifests(name.to_owned()));
    }
    if let Some((name, tag)) = rest.rsplit_once("/_tags/") {
        return Some(Route::Tag(name.to_owned(), tag.to_owned()));
    }
    if let Some((name, digest)) = rest.rsplit_once("/_manifests/") {
        return Some(Route::Manifest(name.to_owned(), digest.to_owned()));
    }
    (!rest.is_empty() && !rest.split('/').any(|c| c.starts_with('_')))
        .then(|| Route::Repository(rest.to_owned()))
}

/// The methods a `/acr/v1` path takes (the `Allow` of its 405), `None` for an unknown path.
pub(crate) fn allowed_methods(path: &str) -> Option<&'static str> {
    Some(match parse(path)? {
        Route::Catalog | Route::Tags(_) | Route::Manifests(_) => "GET",
        Route::Repository(_) | Route::Tag(_, _) => "GET, HEAD, PATCH, DELETE",
        Route::Manifest(_, _) => "GET, HEAD, PATCH",
    })
}

pub(crate) async fn handle(State(state): State<ListenerState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let result = async {
        let ctx = RequestCtx::new(&state, &parts).await?;
        serve(&state.inner, &ctx, &parts, body).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

fn not_allowed() -> RegistryError {
    RegistryError::unsupported(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
}

/// The actions a method needs on a repository's metadata.
fn metadata_action(m: &Method) -> Result<&'static [Action]> {
    match *m {
        Method::GET | Method::HEAD => Ok(&[Action::MetadataRead]),
        Method::PATCH => Ok(&[Action::MetadataWrite]),
        Method::DELETE => Ok(&[Action::Delete]),
        _ => Err(not_allowed()),
    }
}

async fn serve(
    inner: &Inner,
    ctx: &RequestCtx,
    parts: &http::request::Parts,
    body: Body,
) -> Result<Response> {
    let View::LoginServer { registry: name } = &ctx.view else {
        return Err(RegistryError::unsupported(
            StatusCode::NOT_FOUND,
            "the /acr/v1 API is served on login servers (<registry>.<suffix>)",
        ));
    };
    let route = parse(parts.uri.path())
        .ok_or_else(|| RegistryError::unsupported(StatusCode::NOT_FOUND, "unknown endpoint"))?;
    let record = registry(inner, name).await?;
    let query = parts.uri.query();
    let m = &parts.method;
    if let Route::Catalog = route {
        if *m != Method::GET {
            return Err(not_allowed());
        }
        require(inner, ctx, &Need::Catalog(&record))?;
        return catalog::acr_catalog(inner, ctx, &record, query).await;
    }
    let name = match &route {
        Route::Repository(n)
        | Route::Tags(n)
        | Route::Manifests(n)
        | Route::Tag(n, _)
        | Route::Manifest(n, _) => n.clone(),
        Route::Catalog => return Err(not_allowed()),
    };
    let repo: Repo = ctx.repo(&name)?;
    let actions = match (&route, m) {
        // Listing and reading are metadata reads; only a repository or a tag is deleted here.
        (Route::Tags(_) | Route::Manifests(_), &Method::GET) => &[Action::MetadataRead][..],
        (Route::Tags(_) | Route::Manifests(_), _) => return Err(not_allowed()),
        (Route::Manifest(_, _), &Method::DELETE) => return Err(not_allowed()),
        _ => metadata_action(m)?,
    };
    require(inner, ctx, &Need::Repo(&record, &repo, actions))?;
    let patch = if *m == Method::PATCH {
        Some(read_patch(body).await?)
    } else {
        None
    };
    let ls = login_server(inner, &record);
    match route {
        Route::Repository(_) => match (m, patch) {
            (&Method::DELETE, _) => repository::delete(inner, &record, &repo).await,
            (_, patch) => repository::get_or_patch(inner, &ls, &record, &repo, patch).await,
        },
        Route::Tags(_) => content::list_tags(inner, &ls, &record, &repo, query).await,
        Route::Manifests(_) => content::list_manifests(inner, &ls, &record, &repo, query).await,
        Route::Tag(_, tag) => match (m, patch) {
            (&Method::DELETE, _) => content::delete_tag(inner, &record, &repo, &tag).await,
            (_, patch) => content::tag(inner, &ls, &record, &repo, &tag, patch).await,
        },
        Route::Manifest(_, digest) => {
            content::manifest(inner, &ls, &record, &repo, &digest, patch).await
        }
        Route::Catalog => Err(not_allowed()),
    }
}

/// The login server a registry's answers name (`myregistry.azurecr.io`).
fn login_server(inner: &Inner, r: &acr_store::RegistryRecord) -> String {
    format!("{}.{}", r.name_lower, inner.config.login_server_suffix)
}

/// A PATCH body: `changeableAttributes` fields, bare or wrapped.
async fn read_patch(body: Body) -> Result<acr_store::metadata::AttributesUpdate> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| RegistryError::invalid("the request body could not be read"))?;
        if buf.len() + chunk.len() > 64 << 10 {
            return Err(RegistryError::invalid("the request body is too large"));
        }
        buf.extend_from_slice(&chunk);
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Ok(Default::default());
    }
    let v: serde_json::Value = serde_json::from_slice(&buf)
        .map_err(|e| RegistryError::invalid(format!("the body is not JSON: {e}")))?;
    let v = v.get("changeableAttributes").cloned().unwrap_or(v);
    serde_json::from_value(v).map_err(|e| {
        RegistryError::invalid(format!(
            "the body must be {{\"deleteEnabled\",\"writeEnabled\",\"readEnabled\",\"listEnabled\"}} booleans: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_the_cli_and_of_the_sdk() {
        assert_eq!(parse("/acr/v1/_catalog"), Some(Route::Catalog));
        assert_eq!(
            parse("/acr/v1/team/app/_tags"),
            Some(Route::Tags("team/app".into()))
        );
        assert_eq!(
            parse("/acr/v1/team%2Fapp/_tags"),
            Some(Route::Tags("team/app".into()))
        );
        assert_eq!(
            parse("/acr/v1/team%2Fapp/_tags/v1"),
            Some(Route::Tag("team/app".into(), "v1".into()))
        );
        assert_eq!(
            parse("/acr/v1/app/_manifests/sha256%3Aab"),
            Some(Route::Manifest("app".into(), "sha256:ab".into()))
        );
        assert_eq!(
            parse("/acr/v1/app/_manifests"),
            Some(Route::Manifests("app".into()))
        );
        assert_eq!(
            parse("/acr/v1/team/app"),
            Some(Route::Repository("team/app".into()))
        );
        assert_eq!(parse("/acr/v1/_other/x"), None);
        assert_eq!(parse("/acr/v2/x"), None);
    }
}
