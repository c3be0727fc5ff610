//! Tags list, catalog (both paginated with `n`/`last` and a `Link` header) and referrers.

use super::*;

/// `n` / `last` pagination over a sorted list; `link` builds the next-page URL from the last entry.
fn paginate(
    all: Vec<String>,
    query: &Query,
    link: impl Fn(usize, &str) -> String,
) -> Result<(Vec<String>, Option<String>), ApiError> {
    let n = match query.get("n") {
        None | Some("") => None,
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                Code::Unsupported,
                "invalid pagination parameter n",
            )
            .detail(json!({ "n": v }))
        })?),
    };
    let mut items: Vec<String> = match query.get("last") {
        Some(last) if !last.is_empty() => all.into_iter().filter(|t| t.as_str() > last).collect(),
        _ => all,
    };
    let mut next = None;
    if let Some(n) = n {
        if items.len() > n {
            items.truncate(n);
            if let Some(last) = items.last() {
                next = Some(format!("<{}>; rel=\"next\"", link(n, last)));
            }
        }
    }
    Ok((items, next))
}

pub(super) async fn tags_list(
    inner: &Inner,
    repo: &Repo,
    query: &Query,
) -> Result<Response, ApiError> {
    if !inner
        .store
        .repo_exists(&repo.full)
        .await
        .map_err(internal("read repository"))?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Code::NameUnknown,
            "repository name not known to registry",
        )
        .detail(json!({ "name": repo.visible })));
    }
    let all = inner
        .store
        .tags(&repo.full)
        .await
        .map_err(internal("list tags"))?;
    let (tags, next) = paginate(all, query, |n, last| {
        format!("/v2/{}/tags/list?n={n}&last={last}", repo.visible)
    })?;
    let mut r = json_response(
        StatusCode::OK,
        json!({ "name": repo.visible, "tags": tags }).to_string(),
    );
    if let Some(link) = next {
        set(r.headers_mut(), header::LINK, &link);
    }
    Ok(r)
}

pub(super) async fn catalog(
    inner: &Inner,
    ctx: &RequestCtx,
    query: &Query,
) -> Result<Response, ApiError> {
    let all: Vec<String> = inner
        .store
        .catalog()
        .await
        .map_err(internal("list repositories"))?
        .iter()
        .filter_map(|full| ctx.visible(full).map(str::to_owned))
        .collect();
    let (repos, next) = paginate(all, query, |n, last| {
        format!("/v2/_catalog?n={n}&last={last}")
    })?;
    let mut r = json_response(StatusCode::OK, json!({ "repositories": repos }).to_string());
    if let Some(link) = next {
        set(r.headers_mut(), header::LINK, &link);
    }
    Ok(r)
}

pub(super) async fn referrers(
    inner: &Inner,
    repo: &Repo,
    digest: &str,
    query: &Query,
) -> Result<Response, ApiError> {
    let subject = parse_digest(digest)?;
    let mut list = inner
        .store
        .referrers(&repo.full, &subject)
        .await
        .map_err(internal("list referrers"))?;
    let filter = query.get("artifactType").filter(|s| !s.is_empty());
    if let Some(at) = filter {
        list.retain(|d| d.get("artifactType").and_then(Value::as_str) == Some(at));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": list,
    });
    let mut r = Response::new(Body::from(index.to_string()));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(MT_OCI_INDEX));
    if filter.is_some() {
        r.headers_mut().insert(
            OCI_FILTERS.clone(),
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(r)
}
