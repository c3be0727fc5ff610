//! Tags and manifests of a repository: pages in ACR's orders, one tag or manifest with its
//! `changeableAttributes` (read and changed), untagging. A repository the metadata does not
//! know yet but the backend holds (written there directly) is adopted first: its tags and
//! manifests are read from the backend and recorded, with the time of adoption.

use acr_core::reference::{Digest, Repository};
use acr_store::metadata::{AttributeTarget, AttributesUpdate, ManifestInfo, Order, Page};
use acr_store::RegistryRecord;
use axum::response::Response;
use http::{header, StatusCode};

use crate::error::{RegistryError, Result};
use crate::record::manifest_info;
use crate::request::Repo;
use crate::v2::json_response;
use crate::Inner;

use super::catalog::{link, paging};
use super::wire::{Manifest, ManifestAttributes, ManifestList, Tag, TagAttributes, TagList};

/// Tags read from the backend when a repository is adopted.
const ADOPT_MAX_TAGS: usize = 1000;

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    json_response(status, serde_json::to_string(v).unwrap_or_default())
}

/// Makes sure the metadata knows `repo`, adopting it from the backend when needed. `false`:
/// there is no such repository anywhere.
pub(crate) async fn ensure_known(
    inner: &Inner,
    record: &RegistryRecord,
    repo: &Repo,
) -> Result<bool> {
    let name = &record.name_lower;
    if !inner
        .store
        .repositories_meta(name, Some(&repo.inner))
        .await?
        .is_empty()
    {
        return Ok(true);
    }
    let Ok(full) = Repository::parse(&repo.full()) else {
        return Ok(false);
    };
    let client = &inner.backend.client;
    let tags = client.tags(&full).await.map_err(RegistryError::backend)?;
    if tags.is_empty() {
        return Ok(false);
    }
    let mut infos: Vec<ManifestInfo> = Vec::new();
    let mut tagged: Vec<(String, String)> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    for tag in tags.into_iter().take(ADOPT_MAX_TAGS) {
        let m = match client.get_manifest(&full, &tag).await {
            Ok(m) => m,
            Err(acr_oci::OciError::NotFound { .. }) => continue,
            Err(e) => return Err(RegistryError::backend(e)),
        };
        tagged.push((tag, m.digest.to_string()));
        pending.push(m.digest.to_string());
    }
    let mut seen = std::collections::HashSet::new();
    while let Some(d) = pending.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        let m = match client.get_manifest(&full, &d).await {
            Ok(m) => m,
            Err(acr_oci::OciError::NotFound { .. }) => continue,
            Err(e) => return Err(RegistryError::backend(e)),
        };
        let info = manifest_info(inner, repo, &d, &m.bytes, m.content_type.as_deref()).await;
        if let Some(refs) = &info.refs {
            pending.extend(refs.iter().map(|r| r.digest.clone()));
        }
        infos.push(info);
    }
    inner
        .store
        .record_written(name, &repo.inner, &infos, &tagged)
        .await?;
    tracing::info!(registry = %name, repository = %repo.inner, manifests = infos.len(), "repository adopted into the metadata");
    Ok(true)
}

fn page_of(query: Option<&str>) -> Result<(Page, Option<String>)> {
    let (n, last, orderby) = paging(query)?;
    let order = Order::parse(orderby.as_deref())
        .ok_or_else(|| RegistryError::invalid("orderby must be timedesc, timeasc or none"))?;
    Ok((
        Page {
            last,
            n: n.unwrap_or(100).min(10_000),
            order,
        },
        orderby,
    ))
}

pub(crate) async fn list_tags(
    inner: &Inner,
    ls: &str,
    record: &RegistryRecord,
    repo: &Repo,
    query: Option<&str>,
) -> Result<Response> {
    if !ensure_known(inner, record, repo).await? {
        return Err(RegistryError::name_unknown(&repo.visible));
    }
    let (page, orderby) = page_of(query)?;
    let digest = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "digest")
        .map(|(_, v)| v.into_owned());
    let (rows, more) = inner
        .store
        .tags_meta(
            &record.name_lower,
            &repo.inner,
            digest.as_deref(),
            &page,
            false,
        )
        .await?;
    let next = rows.last().map(|t| t.tag.clone());
    let mut resp = json(
        StatusCode::OK,
        &TagList {
            registry: ls.to_owned(),
            image_name: repo.inner.clone(),
            tags: rows.iter().map(Tag::from).collect(),
        },
    );
    if let (true, Some(next)) = (more, next) {
        let path = format!("/acr/v1/{}/_tags", repo.inner);
        resp.headers_mut().insert(
            header::LINK,
            link(&path, &next, page.n, Some(orderby.as_deref().unwrap_or(""))),
        );
    }
    Ok(resp)
}

pub(crate) async fn list_manifests(
    inner: &Inner,
    ls: &str,
    record: &RegistryRecord,
    repo: &Repo,
    query: Option<&str>,
) -> Result<Response> {
    if !ensure_known(inner, record, repo).await? {
        return Err(RegistryError::name_unknown(&repo.visible));
    }
    let (page, orderby) = page_of(query)?;
    let (rows, more) = inner
        .store
        .manifests_meta(&record.name_lower, &repo.inner, &page, false)
        .await?;
    let next = rows.last().map(|m| m.digest.clone());
    let mut resp = json(
        StatusCode::OK,
        &ManifestList {
            registry: ls.to_owned(),
            image_name: repo.inner.clone(),
            manifests: rows.iter().map(Manifest::from).collect(),
        },
    );
    if let (true, Some(next)) = (more, next) {
        let path = format!("/acr/v1/{}/_manifests", repo.inner);
        resp.headers_mut().insert(
            header::LINK,
            link(&path, &next, page.n, Some(orderby.as_deref().unwrap_or(""))),
        );
    }
    Ok(resp)
}

/// `GET|PATCH /acr/v1/{name}/_tags/{tag}`.
pub(crate) async fn tag(
    inner: &Inner,
    ls: &str,
    record: &RegistryRecord,
    repo: &Repo,
    tag: &str,
    patch: Option<AttributesUpdate>,
) -> Result<Response> {
    ensure_known(inner, record, repo).await?;
    let name = &record.name_lower;
    if let Some(update) = patch.filter(|u| !u.is_empty()) {
        if !inner
            .store
            .update_attributes(name, &repo.inner, Some(AttributeTarget::Tag(tag)), &update)
            .await?
        {
            return Err(RegistryError::tag_unknown(tag));
        }
    }
    let row = inner
        .store
        .tag_meta(name, &repo.inner, tag)
        .await?
        .ok_or_else(|| RegistryError::tag_unknown(tag))?;
    Ok(json(
        StatusCode::OK,
        &TagAttributes {
            registry: ls.to_owned(),
            image_name: repo.inner.clone(),
            tag: Tag::from(&row),
        },
    ))
}

/// `GET|PATCH /acr/v1/{name}/_manifests/{digest}`.
pub(crate) async fn manifest(
    inner: &Inner,
    ls: &str,
    record: &RegistryRecord,
    repo: &Repo,
    digest: &str,
    patch: Option<AttributesUpdate>,
) -> Result<Response> {
    ensure_known(inner, record, repo).await?;
    let digest = Digest::parse(digest)
        .map_err(|e| RegistryError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e.to_string()))?
        .to_string();
    let name = &record.name_lower;
    if let Some(update) = patch.filter(|u| !u.is_empty()) {
        if !inner
            .store
            .update_attributes(
                name,
                &repo.inner,
                Some(AttributeTarget::Manifest(&digest)),
                &update,
            )
            .await?
        {
            return Err(RegistryError::manifest_unknown(&digest));
        }
    }
    let row = inner
        .store
        .manifest_meta(name, &repo.inner, &digest)
        .await?
        .ok_or_else(|| RegistryError::manifest_unknown(&digest))?;
    Ok(json(
        StatusCode::OK,
        &ManifestAttributes {
            registry: ls.to_owned(),
            image_name: repo.inner.clone(),
            manifest: Manifest::from(&row),
        },
    ))
}

/// `DELETE /acr/v1/{name}/_tags/{tag}`: the tag goes, the manifest stays (202).
pub(crate) async fn delete_tag(
    inner: &Inner,
    record: &RegistryRecord,
    repo: &Repo,
    tag: &str,
) -> Result<Response> {
    ensure_known(inner, record, repo).await?;
    let name = &record.name_lower;
    let locks = inner
        .store
        .locks(name, &repo.inner, Some(tag), None)
        .await?;
    let delete = |a: &acr_store::metadata::Attributes| a.delete_enabled;
    crate::v2::locked(
        locks.repository.as_ref(),
        delete,
        "the repository is locked for deletes",
    )?;
    crate::v2::locked(
        locks.tag.as_ref().map(|(a, _)| a),
        delete,
        "the tag is locked for deletes",
    )?;
    let full =
        Repository::parse(&repo.full()).map_err(|_| RegistryError::name_invalid(&repo.visible))?;
    let removed = inner
        .backend
        .client
        .untag(&full, tag, inner.backend.repository_delete)
        .await
        .map_err(RegistryError::backend)?;
    let known = inner.store.delete_tag_meta(name, &repo.inner, tag).await?;
    if !removed && !known {
        return Err(RegistryError::tag_unknown(tag));
    }
    Ok(json_response(StatusCode::ACCEPTED, String::new()))
}
