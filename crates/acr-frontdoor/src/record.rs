//! Manifests through a login server: reads honour `readEnabled`, pushes `writeEnabled`,
//! deletes `deleteEnabled` (of the repository, the tag and the manifest, as ACR locks them),
//! and every push or delete is recorded in the store's metadata, so `/acr/v1` on any replica
//! sees it. Also the metadata of one manifest read from its bytes (shared with adoption).

use acr_core::reference::Digest;
use acr_oci::client::{digest_of, Scopes};
use acr_oci::media::{summarize, ManifestKind, Platform};
use acr_store::metadata::{Attributes, ChildRef, ManifestInfo};
use acr_store::RegistryRecord;
use axum::body::Body;
use axum::response::Response;
use futures::StreamExt;
use http::{header, Method, StatusCode};

use crate::error::{RegistryError, Result};
use crate::request::{Repo, RequestCtx};
use crate::v2::{locked, manifest_headers, rewrite, MANIFEST_MAX};
use crate::Inner;

/// Config blobs larger than this are not read for their platform.
const MAX_CONFIG_BYTES: usize = 1 << 20;

#[allow(clippy::too_many_arguments)]
pub(crate) async fn manifest(
    inner: &Inner,
    ctx: &RequestCtx,
    record: Option<&RegistryRecord>,
    repo: &Repo,
    reference: &str,
    parts: &http::request::Parts,
    body: Body,
    scopes: &Scopes,
    path_and_query: &str,
) -> Result<Response> {
    let by_digest = Digest::parse(reference).ok();
    let tag = by_digest.is_none().then_some(reference);
    let digest_str = by_digest.as_ref().map(|d| d.to_string());
    let locks = match record {
        Some(r) => Some(
            inner
                .store
                .locks(&r.name_lower, &repo.inner, tag, digest_str.as_deref())
                .await?,
        ),
        None => None,
    };
    let method = parts.method.clone();
    if method == Method::GET || method == Method::HEAD {
        if let Some(l) = &locks {
            let read = |a: &Attributes| a.read_enabled;
            locked(
                l.repository.as_ref(),
                read,
                "the repository is not readable",
            )?;
            locked(
                l.tag.as_ref().map(|(a, _)| a),
                read,
                "the tag is not readable",
            )?;
            locked(l.manifest.as_ref(), read, "the manifest is not readable")?;
        }
        let resp = inner
            .backend
            .forward(scopes, method, path_and_query, parts.headers.clone(), None)
            .await
            .map_err(RegistryError::backend)?;
        return Ok(rewrite(ctx, repo, resp));
    }
    if method == Method::PUT {
        let bytes = collect_limited(body, MANIFEST_MAX).await?;
        let algorithm = by_digest
            .as_ref()
            .map(Digest::algorithm)
            .unwrap_or(acr_core::reference::Algorithm::Sha256);
        let digest = digest_of(algorithm, &bytes).to_string();
        if let Some(l) = &locks {
            let write = |a: &Attributes| a.write_enabled;
            locked(
                l.repository.as_ref(),
                write,
                "the repository is locked for writes",
            )?;
            if let Some((attrs, current)) = &l.tag {
                if *current != digest {
                    locked(Some(attrs), write, "the tag is locked for writes")?;
                }
            }
        }
        let resp = inner
            .backend
            .forward(
                scopes,
                method,
                path_and_query,
                manifest_headers(&parts.headers),
                Some(Body::from(bytes.clone())),
            )
            .await
            .map_err(RegistryError::backend)?;
        if resp.status() == StatusCode::CREATED {
            if let Some(r) = record {
                let content_type = parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok());
                let info = manifest_info(inner, repo, &digest, &bytes, content_type).await;
                let tags: Vec<(String, String)> = tag
                    .map(|t| vec![(t.to_owned(), digest.clone())])
                    .unwrap_or_default();
                inner
                    .store
                    .record_written(&r.name_lower, &repo.inner, &[info], &tags)
                    .await?;
            }
        }
        return Ok(rewrite(ctx, repo, resp));
    }
    if method == Method::DELETE {
        if let (Some(r), Some(d)) = (record, &digest_str) {
            let resp = delete_by_digest(
                inner,
                r,
                repo,
                d,
                parts.headers.clone(),
                scopes,
                path_and_query,
            )
            .await?;
            return Ok(rewrite(ctx, repo, resp));
        }
        if let Some(l) = &locks {
            let delete = |a: &Attributes| a.delete_enabled;
            locked(
                l.repository.as_ref(),
                delete,
                "the repository is locked for deletes",
            )?;
            locked(
                l.tag.as_ref().map(|(a, _)| a),
                delete,
                "the tag is locked for deletes",
            )?;
        }
        let resp = inner
            .backend
            .forward(scopes, method, path_and_query, parts.headers.clone(), None)
            .await
            .map_err(RegistryError::backend)?;
        if resp.status().is_success() {
            if let (Some(r), Some(t)) = (record, tag) {
                inner
                    .store
                    .delete_tag_meta(&r.name_lower, &repo.inner, t)
                    .await?;
            }
        }
        return Ok(rewrite(ctx, repo, resp));
    }
    Err(RegistryError::unsupported(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed here",
    ))
}

/// `DELETE /v2/<repo>/manifests/<digest>` of a registry's manifest, the one path every manifest
/// delete takes (a client's, and the retention sweep's): refused when the repository, the
/// manifest or a tag pointing at it is locked for deletes (`deleteEnabled: false`); otherwise
/// the backend deletes it and, when it answers with success, the metadata forgets it and its
/// tags. `path_and_query` is the backend's; the answer is the backend's, in its names.
pub(crate) async fn delete_by_digest(
    inner: &Inner,
    record: &RegistryRecord,
    repo: &Repo,
    digest: &str,
    headers: http::HeaderMap,
    scopes: &Scopes,
    path_and_query: &str,
) -> Result<Response> {
    let l = inner
        .store
        .locks(&record.name_lower, &repo.inner, None, Some(digest))
        .await?;
    let delete = |a: &Attributes| a.delete_enabled;
    locked(
        l.repository.as_ref(),
        delete,
        "the repository is locked for deletes",
    )?;
    locked(
        l.manifest.as_ref(),
        delete,
        "the manifest is locked for deletes",
    )?;
    for a in &l.tags_of_manifest {
        locked(
            Some(a),
            delete,
            "a tag of the manifest is locked for deletes",
        )?;
    }
    let resp = inner
        .backend
        .forward(scopes, Method::DELETE, path_and_query, headers, None)
        .await
        .map_err(RegistryError::backend)?;
    if resp.status().is_success() {
        inner
            .store
            .delete_manifest_meta(&record.name_lower, &repo.inner, digest)
            .await?;
    }
    Ok(resp)
}

/// A manifest body of at most `limit` bytes (413 beyond).
async fn collect_limited(body: Body, limit: usize) -> Result<bytes::Bytes> {
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| RegistryError::invalid("the request body could not be read"))?;
        if buf.len() + chunk.len() > limit {
            return Err(RegistryError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                format!("manifests may be at most {limit} bytes"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The metadata of manifest `bytes` (`digest`) in `repo`: an image's platform comes from its
/// config (read from the backend), an index's children from its entries.
pub(crate) async fn manifest_info(
    inner: &Inner,
    repo: &Repo,
    digest: &str,
    bytes: &[u8],
    content_type: Option<&str>,
) -> ManifestInfo {
    let Some(s) = summarize(bytes, content_type) else {
        return ManifestInfo {
            digest: digest.to_owned(),
            media_type: content_type
                .unwrap_or("application/octet-stream")
                .to_owned(),
            config_media_type: None,
            image_size: bytes.len() as i64,
            architecture: None,
            os: None,
            refs: None,
        };
    };
    let platform = match (&s.kind, &s.config) {
        (Some(ManifestKind::Image), Some(config)) => config_platform(inner, repo, config).await,
        _ => None,
    };
    let refs = (s.kind == Some(ManifestKind::Index)).then(|| {
        s.entries
            .iter()
            .map(|e| ChildRef {
                digest: e.digest.clone(),
                architecture: e.platform.as_ref().and_then(|p| p.architecture.clone()),
                os: e.platform.as_ref().and_then(|p| p.os.clone()),
            })
            .collect()
    });
    ManifestInfo {
        digest: digest.to_owned(),
        media_type: s.media_type,
        config_media_type: s
            .config
            .as_ref()
            .map(|c| c.media_type.clone())
            .filter(|t| !t.is_empty()),
        image_size: i64::try_from(bytes.len() as u64 + s.blob_bytes).unwrap_or(i64::MAX),
        architecture: platform.as_ref().and_then(|p| p.architecture.clone()),
        os: platform.and_then(|p| p.os),
        refs,
    }
}

/// The platform an image config states; `None` for artifacts or an unreadable config.
async fn config_platform(
    inner: &Inner,
    repo: &Repo,
    config: &acr_oci::media::Descriptor,
) -> Option<Platform> {
    let digest = Digest::parse(&config.digest).ok()?;
    let full = acr_core::reference::Repository::parse(&repo.full()).ok()?;
    let bytes = inner
        .backend
        .client
        .small_blob(&full, &digest, MAX_CONFIG_BYTES)
        .await
        .ok()??;
    let p: Platform = serde_json::from_slice(&bytes).ok()?;
    (p.architecture.is_some() || p.os.is_some()).then_some(p)
}
