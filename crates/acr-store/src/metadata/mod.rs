//! The data plane's metadata: what ACR's `/acr/v1` answers and the distribution API does not
//! keep — created and last-updated times of repositories, manifests and tags, a manifest's
//! size, platform and children, and the `changeableAttributes` — per registry (its lowercased
//! name) and repository inside it (no registry prefix). Written by the workers for imports and
//! by the login servers for pushes and deletes, so every replica answers alike.
//!
//! Both dialects are side by side (see `lifecycle`).

mod read;
mod write;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;

pub use read::{AttributeTarget, Locks, Order, Page};

/// A child of an index, with its platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRef {
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
}

/// What is known of a manifest when it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    pub digest: String,
    pub media_type: String,
    pub config_media_type: Option<String>,
    /// The manifest, its config and its layers, in bytes.
    pub image_size: i64,
    pub architecture: Option<String>,
    pub os: Option<String>,
    /// An index's children.
    pub refs: Option<Vec<ChildRef>>,
}

/// `changeableAttributes` of a repository, tag or manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Attributes {
    pub delete_enabled: bool,
    pub write_enabled: bool,
    pub read_enabled: bool,
    pub list_enabled: bool,
}

impl Default for Attributes {
    fn default() -> Self {
        Self {
            delete_enabled: true,
            write_enabled: true,
            read_enabled: true,
            list_enabled: true,
        }
    }
}

/// A change of `changeableAttributes` (`None`: unchanged).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributesUpdate {
    pub delete_enabled: Option<bool>,
    pub write_enabled: Option<bool>,
    pub read_enabled: Option<bool>,
    pub list_enabled: Option<bool>,
}

impl AttributesUpdate {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A repository as the metadata knows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RepositoryRow {
    pub repository: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[sqlx(flatten)]
    pub attributes: Attributes,
    pub manifest_count: i64,
    pub tag_count: i64,
}

/// A tag as the metadata knows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TagRow {
    pub tag: String,
    pub digest: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[sqlx(flatten)]
    pub attributes: Attributes,
}

/// A manifest as the metadata knows it, with the tags pointing at it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ManifestRow {
    pub digest: String,
    pub media_type: String,
    pub config_media_type: Option<String>,
    pub image_size: i64,
    pub architecture: Option<String>,
    pub os: Option<String>,
    pub refs: Option<Json<Vec<ChildRef>>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[sqlx(flatten)]
    pub attributes: Attributes,
    #[sqlx(skip)]
    pub tags: Vec<String>,
}

pub(crate) fn now_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The statement for the backend: `$N` placeholders become SQLite's `?N` (the same numbered
/// parameter), so one text serves both dialects where their SQL agrees.
pub(crate) fn for_sqlite(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}
