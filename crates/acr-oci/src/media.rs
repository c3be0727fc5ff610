//! Manifest media types and the parts of a manifest the copy walks.

use serde::Deserialize;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What every manifest request accepts.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Manifests larger than this are refused (as ggcr and oras do).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub urls: Option<Vec<String>>,
    /// In an index: the platform of the manifest it points at.
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// `platform` of an index entry (and the fields of an image config that say the same).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Descriptor {
    /// Foreign / non-distributable layers are referenced but not copied (crane, oras do the same).
    pub fn is_non_distributable(&self) -> bool {
        self.media_type.contains(".foreign.") || self.media_type.contains(".nondistributable.")
    }
}

/// The fields of an image manifest or index that the copy needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestParts {
    #[serde(default)]
    pub schema_version: Option<i64>,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    /// OCI artifact manifests (`application/vnd.oci.artifact.manifest.v1+json`).
    #[serde(default)]
    pub blobs: Option<Vec<Descriptor>>,
}

/// The kind of a manifest after parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    Index,
    Image,
    Schema1,
}

/// Decides the kind from the Content-Type header and the document itself.
pub fn classify(content_type: Option<&str>, parts: &ManifestParts) -> ManifestKind {
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_ascii_lowercase())
        .unwrap_or_default();
    let mt = parts.media_type.as_deref().unwrap_or_default();
    if ct == DOCKER_SCHEMA1
        || ct == DOCKER_SCHEMA1_SIGNED
        || mt == DOCKER_SCHEMA1
        || mt == DOCKER_SCHEMA1_SIGNED
        || parts.schema_version == Some(1)
    {
        ManifestKind::Schema1
    } else if ct == OCI_INDEX
        || ct == DOCKER_LIST
        || mt == OCI_INDEX
        || mt == DOCKER_LIST
        || parts.manifests.is_some()
    {
        ManifestKind::Index
    } else {
        ManifestKind::Image
    }
}

/// The media type to push a manifest with: the source's Content-Type when it is a manifest
/// type, else the document's `mediaType`, else the OCI type implied by its shape.
pub fn push_media_type(
    content_type: Option<&str>,
    parts: &ManifestParts,
    kind: ManifestKind,
) -> String {
    let ct = content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_owned());
    match ct {
        Some(c) if c.starts_with("application/vnd.") => c,
        _ => match &parts.media_type {
            Some(m) if !m.is_empty() => m.clone(),
            _ => if kind == ManifestKind::Index {
                OCI_INDEX
            } else {
                OCI_MANIFEST
            }
            .to_owned(),
        },
    }
}

/// What the data plane reports of a manifest, read from its bytes: media types, the sizes of
/// what it references, an index's children with their platforms.
#[derive(Debug, Clone, Default)]
pub struct ManifestSummary {
    pub media_type: String,
    pub config: Option<Descriptor>,
    /// Config and layers (foreign layers included), in bytes.
    pub blob_bytes: u64,
    /// An index's entries.
    pub entries: Vec<Descriptor>,
    pub kind: Option<ManifestKind>,
}

/// Summarizes manifest `bytes` sent with `content_type`; `None` when they are not a manifest.
pub fn summarize(bytes: &[u8], content_type: Option<&str>) -> Option<ManifestSummary> {
    let parts: ManifestParts = serde_json::from_slice(bytes).ok()?;
    let kind = classify(content_type, &parts);
    let media_type = push_media_type(content_type, &parts, kind);
    let blobs: Vec<&Descriptor> = parts
        .config
        .iter()
        .chain(parts.layers.iter().flatten())
        .chain(parts.blobs.iter().flatten())
        .collect();
    Some(ManifestSummary {
        media_type,
        config: parts.config.clone(),
        blob_bytes: blobs.iter().map(|d| d.size.max(0) as u64).sum(),
        entries: parts.manifests.clone().unwrap_or_default(),
        kind: Some(kind),
    })
}
