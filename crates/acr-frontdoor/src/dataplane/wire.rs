//! The JSON shapes of the 2021-07-01 data-plane spec (`RepositoryAttributes`, `TagList`,
//! `TagAttributes`, `AcrManifests`, `ManifestAttributes`, `Repositories`,
//! `DeletedRepository`), with the fields the real service adds (`mediaType` of manifests,
//! `teleportEnabled` of repositories). `changeableAttributes` are always present on
//! repositories and tags (the SDK reads them unconditionally); an untagged manifest has no
//! `tags` (as ACR drops the array).

use acr_store::metadata::{Attributes, ManifestRow, RepositoryRow, TagRow};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// RFC 3339 with seven fractional digits, as ACR writes times.
pub fn time(t: &DateTime<Utc>) -> String {
    format!("{}0Z", t.format("%Y-%m-%dT%H:%M:%S%.6f"))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryAttributesWire {
    pub delete_enabled: bool,
    pub write_enabled: bool,
    pub read_enabled: bool,
    pub list_enabled: bool,
    pub teleport_enabled: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributesWire {
    pub delete_enabled: bool,
    pub write_enabled: bool,
    pub read_enabled: bool,
    pub list_enabled: bool,
}

impl From<&Attributes> for AttributesWire {
    fn from(a: &Attributes) -> Self {
        Self {
            delete_enabled: a.delete_enabled,
            write_enabled: a.write_enabled,
            read_enabled: a.read_enabled,
            list_enabled: a.list_enabled,
        }
    }
}

/// `GET /acr/v1/{name}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    pub registry: String,
    pub image_name: String,
    pub created_time: String,
    pub last_update_time: String,
    pub manifest_count: i64,
    pub tag_count: i64,
    pub changeable_attributes: RepositoryAttributesWire,
    /// acr-import extension: bytes of the distinct content the repository references, when
    /// the backend can tell (the built-in registry); absent otherwise, as in ACR.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_usage_bytes: Option<u64>,
}

impl Repository {
    pub fn new(registry: &str, r: &RepositoryRow) -> Self {
        let a = &r.attributes;
        Self {
            registry: registry.to_owned(),
            image_name: r.repository.clone(),
            created_time: time(&r.created_at),
            last_update_time: time(&r.updated_at),
            manifest_count: r.manifest_count,
            tag_count: r.tag_count,
            changeable_attributes: RepositoryAttributesWire {
                delete_enabled: a.delete_enabled,
                write_enabled: a.write_enabled,
                read_enabled: a.read_enabled,
                list_enabled: a.list_enabled,
                teleport_enabled: false,
            },
            disk_usage_bytes: None,
        }
    }
}

/// A tag (`TagAttributesBase`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    pub name: String,
    pub digest: String,
    pub created_time: String,
    pub last_update_time: String,
    pub signed: bool,
    pub changeable_attributes: AttributesWire,
}

impl From<&TagRow> for Tag {
    fn from(t: &TagRow) -> Self {
        Self {
            name: t.tag.clone(),
            digest: t.digest.clone(),
            created_time: time(&t.created_at),
            last_update_time: time(&t.updated_at),
            signed: false,
            changeable_attributes: (&t.attributes).into(),
        }
    }
}

/// `GET /acr/v1/{name}/_tags`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TagList {
    pub registry: String,
    pub image_name: String,
    pub tags: Vec<Tag>,
}

/// `GET|PATCH /acr/v1/{name}/_tags/{reference}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TagAttributes {
    pub registry: String,
    pub image_name: String,
    pub tag: Tag,
}

/// A child of an index (`ArtifactManifestPlatform`).
#[derive(Debug, Serialize)]
pub struct Reference {
    pub digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
}

/// A manifest (`ManifestAttributesBase`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub digest: String,
    pub image_size: i64,
    pub created_time: String,
    pub last_update_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    pub media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub references: Option<Vec<Reference>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub changeable_attributes: AttributesWire,
}

impl From<&ManifestRow> for Manifest {
    fn from(m: &ManifestRow) -> Self {
        Self {
            digest: m.digest.clone(),
            image_size: m.image_size,
            created_time: time(&m.created_at),
            last_update_time: time(&m.updated_at),
            architecture: m.architecture.clone(),
            os: m.os.clone(),
            media_type: m.media_type.clone(),
            config_media_type: m.config_media_type.clone(),
            references: m.refs.as_ref().map(|r| {
                r.0.iter()
                    .map(|c| Reference {
                        digest: c.digest.clone(),
                        architecture: c.architecture.clone(),
                        os: c.os.clone(),
                    })
                    .collect()
            }),
            tags: m.tags.clone(),
            changeable_attributes: (&m.attributes).into(),
        }
    }
}

/// `GET /acr/v1/{name}/_manifests`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestList {
    pub registry: String,
    pub image_name: String,
    pub manifests: Vec<Manifest>,
}

/// `GET|PATCH /acr/v1/{name}/_manifests/{digest}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestAttributes {
    pub registry: String,
    pub image_name: String,
    pub manifest: Manifest,
}

/// `GET /acr/v1/_catalog` and `GET /v2/_catalog`.
#[derive(Debug, Serialize)]
pub struct Repositories {
    pub repositories: Vec<String>,
}

/// `DELETE /acr/v1/{name}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedRepository {
    pub manifests_deleted: Vec<String>,
    pub tags_deleted: Vec<String>,
}
