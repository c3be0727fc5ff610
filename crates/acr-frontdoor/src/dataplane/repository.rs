//! A repository: its properties and `changeableAttributes` (`GET|PATCH /acr/v1/{name}`), and
//! its deletion (`DELETE /acr/v1/{name}`: every manifest and tag, 202 with their lists).

use acr_core::reference::Repository;
use acr_store::metadata::AttributesUpdate;
use acr_store::RegistryRecord;
use axum::response::Response;
use http::StatusCode;

use crate::error::{RegistryError, Result};
use crate::request::Repo;
use crate::v2::{json_response, locked};
use crate::Inner;

use super::content::ensure_known;
use super::wire::{DeletedRepository, Repository as RepositoryWire};

pub(crate) async fn get_or_patch(
    inner: &Inner,
    ls: &str,
    record: &RegistryRecord,
    repo: &Repo,
    patch: Option<AttributesUpdate>,
) -> Result<Response> {
    if !ensure_known(inner, record, repo).await? {
        return Err(RegistryError::name_unknown(&repo.visible));
    }
    let name = &record.name_lower;
    if let Some(update) = patch.filter(|u| !u.is_empty()) {
        inner
            .store
            .update_attributes(name, &repo.inner, None, &update)
            .await?;
    }
    let row = inner
        .store
        .repositories_meta(name, Some(&repo.inner))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| RegistryError::name_unknown(&repo.visible))?;
    let mut wire = RepositoryWire::new(ls, &row);
    wire.disk_usage_bytes = inner.backend.repository_bytes(&repo.full()).await;
    Ok(json_response(
        StatusCode::OK,
        serde_json::to_string(&wire).unwrap_or_default(),
    ))
}

pub(crate) async fn delete(
    inner: &Inner,
    record: &RegistryRecord,
    repo: &Repo,
) -> Result<Response> {
    let known = ensure_known(inner, record, repo).await?;
    let name = &record.name_lower;
    let full =
        Repository::parse(&repo.full()).map_err(|_| RegistryError::name_invalid(&repo.visible))?;
    // Every lock of the repository, its tags and manifests is respected (ACR refuses the
    // delete of a repository holding a locked image).
    let delete = |a: &acr_store::metadata::Attributes| a.delete_enabled;
    let meta = inner
        .store
        .repositories_meta(name, Some(&repo.inner))
        .await?;
    locked(
        meta.first().map(|r| &r.attributes),
        delete,
        "the repository is locked for deletes",
    )?;
    let all = acr_store::metadata::Page {
        last: None,
        n: usize::MAX / 2,
        order: Default::default(),
    };
    let (tags, _) = inner
        .store
        .tags_meta(name, &repo.inner, None, &all, true)
        .await?;
    for t in &tags {
        locked(
            Some(&t.attributes),
            delete,
            "a tag of the repository is locked for deletes",
        )?;
    }
    let (manifests, _) = inner
        .store
        .manifests_meta(name, &repo.inner, &all, true)
        .await?;
    for m in &manifests {
        locked(
            Some(&m.attributes),
            delete,
            "a manifest of the repository is locked for deletes",
        )?;
    }
    let deleted = if inner.backend.repository_delete {
        inner
            .backend
            .client
            .delete_repository(&full)
            .await
            .map_err(RegistryError::backend)?
    } else {
        let digests: Vec<String> = manifests.iter().map(|m| m.digest.clone()).collect();
        let (m, t) = inner
            .backend
            .client
            .delete_repository_content(&full, &digests)
            .await
            .map_err(RegistryError::backend)?;
        (!m.is_empty() || !t.is_empty() || known).then_some((m, t))
    };
    inner
        .store
        .delete_repository_meta(name, &repo.inner)
        .await?;
    let Some((manifests_deleted, tags_deleted)) = deleted else {
        return Err(RegistryError::name_unknown(&repo.visible));
    };
    Ok(json_response(
        StatusCode::ACCEPTED,
        serde_json::to_string(&DeletedRepository {
            manifests_deleted,
            tags_deleted,
        })
        .unwrap_or_default(),
    ))
}
