//! What an import wrote, recorded in the store's data-plane metadata (times, sizes, platforms,
//! children): `/acr/v1` answers from it, and a registry deletion finds untagged manifests
//! through it.

use acr_oci::media::Platform;
use acr_oci::{CopyReport, CopyTarget};
use acr_store::metadata::{ChildRef, ManifestInfo};

use crate::WorkerCtx;

/// Config blobs larger than this are not read for their platform.
const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Records every manifest of `report` in each target repository, and the tags set there.
pub(crate) async fn record_import(
    ctx: &WorkerCtx,
    registry: &str,
    targets: &[CopyTarget],
    report: &CopyReport,
) -> Result<(), acr_store::StoreError> {
    let Some(first) = targets.first() else {
        return Ok(());
    };
    // Platforms: an index names its children's; a lone image says its own in its config.
    let mut platforms: std::collections::HashMap<String, Platform> = Default::default();
    for m in &report.manifests {
        for e in &m.entries {
            if let Some(p) = &e.platform {
                platforms.insert(e.digest.clone(), p.clone());
            }
        }
    }
    let mut infos = Vec::with_capacity(report.manifests.len());
    for m in &report.manifests {
        let digest = m.digest.to_string();
        let platform = match (platforms.get(&digest), &m.config) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(config)) => config_platform(ctx, first, config).await,
            (None, None) => None,
        };
        let refs = (!m.entries.is_empty()).then(|| {
            m.entries
                .iter()
                .map(|e| ChildRef {
                    digest: e.digest.clone(),
                    architecture: e.platform.as_ref().and_then(|p| p.architecture.clone()),
                    os: e.platform.as_ref().and_then(|p| p.os.clone()),
                })
                .collect()
        });
        infos.push(ManifestInfo {
            digest,
            media_type: m.media_type.clone(),
            config_media_type: m
                .config
                .as_ref()
                .map(|c| c.media_type.clone())
                .filter(|t| !t.is_empty()),
            image_size: i64::try_from(m.size + m.blob_bytes).unwrap_or(i64::MAX),
            architecture: platform.as_ref().and_then(|p| p.architecture.clone()),
            os: platform.and_then(|p| p.os),
            refs,
        });
    }
    let prefix = format!("{registry}/");
    for t in targets {
        let repo = t.repository.as_str();
        let inner = repo.strip_prefix(&prefix).unwrap_or(repo);
        let tags: Vec<(String, String)> = t
            .tags
            .iter()
            .map(|tag| (tag.as_str().to_owned(), report.root_digest.to_string()))
            .collect();
        let (registry, inner, infos) = (registry.to_owned(), inner.to_owned(), infos.clone());
        ctx.store
            .transact(|s| async move { s.record_written(&registry, &inner, &infos, &tags).await })
            .await?;
    }
    Ok(())
}

/// The platform an image config states (`architecture`, `os`, `variant`); `None` when the
/// config cannot be read or says nothing (artifacts).
async fn config_platform(
    ctx: &WorkerCtx,
    target: &CopyTarget,
    config: &acr_oci::media::Descriptor,
) -> Option<Platform> {
    let digest = acr_core::reference::Digest::parse(&config.digest).ok()?;
    let bytes = match ctx
        .backend
        .small_blob(&target.repository, &digest, MAX_CONFIG_BYTES)
        .await
    {
        Ok(Some(b)) => b,
        Ok(None) => return None,
        Err(e) => {
            tracing::debug!(error = %acr_core::error_chain(&e), %digest, "config not read for its platform");
            return None;
        }
    };
    let p: Platform = serde_json::from_slice(&bytes).ok()?;
    (p.architecture.is_some() || p.os.is_some()).then_some(p)
}
