//! Writes of the data-plane metadata: what imports and pushes wrote.

use chrono::Utc;
use sqlx::types::Json;

use super::{now_text, ManifestInfo};
use crate::{Backend, Store, StoreError};

/// A tag that moves to another manifest leaves its old one untagged-or-less-tagged: that
/// manifest's last update is now (ACR's retention period counts from the untagging).
/// `$3` the tag, `$4` its new digest, `$5` now. (SQLite; PostgreSQL runs the same statement in
/// `acr_record_written`.)
const UNTAGGED_BY_MOVE: &str = "update manifest_meta set updated_at = $5
      where registry = $1 and repository = $2
        and digest = (select digest from tag_meta
                       where registry = $1 and repository = $2 and tag = $3 and digest <> $4)";

impl Store {
    /// Records that `manifests` were written into `registry`/`repository` and that `tags`
    /// (tag, digest) point at them now. New rows are created now; an existing manifest keeps
    /// its creation time; a tag that moves gets a new last-update time.
    pub async fn record_written(
        &self,
        registry: &str,
        repository: &str,
        manifests: &[ManifestInfo],
        tags: &[(String, String)],
    ) -> Result<(), StoreError> {
        let registry = registry.to_lowercase();
        let now = Utc::now();
        match self.backend() {
            Backend::Postgres(pool) => {
                // One call of `acr_record_written` (migration
                // `20261208000001_record_written_function.sql`): the statements the SQLite arm
                // below runs one by one, run server-side, in one round trip and one commit.
                let col = |f: fn(&ManifestInfo) -> Option<String>| -> Vec<Option<String>> {
                    manifests.iter().map(f).collect()
                };
                let refs = manifests
                    .iter()
                    .map(|m| serde_json::to_value(&m.refs))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| StoreError::Corrupt(format!("manifest references: {e}")))?;
                sqlx::query(
                    "select acr_record_written($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&registry)
                .bind(repository)
                .bind(now)
                .bind(
                    manifests
                        .iter()
                        .map(|m| m.digest.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    manifests
                        .iter()
                        .map(|m| m.media_type.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(col(|m| m.config_media_type.clone()))
                .bind(manifests.iter().map(|m| m.image_size).collect::<Vec<_>>())
                .bind(col(|m| m.architecture.clone()))
                .bind(col(|m| m.os.clone()))
                .bind(Json(serde_json::Value::Array(refs)))
                .bind(tags.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>())
                .bind(tags.iter().map(|(_, d)| d.as_str()).collect::<Vec<_>>())
                .execute(pool)
                .await?;
            }
            Backend::Sqlite(db) => {
                let now = now_text(now);
                let mut tx = db.begin_write().await?;
                sqlx::query(
                    "insert into repository_meta (registry, repository, created_at, updated_at)
                     values (?1, ?2, ?3, ?3)
                     on conflict (registry, repository) do update set updated_at = excluded.updated_at",
                )
                .bind(&registry)
                .bind(repository)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
                for m in manifests {
                    sqlx::query(
                        "insert into manifest_meta (registry, repository, digest, media_type,
                             config_media_type, image_size, architecture, os, refs, created_at, updated_at)
                         values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)
                         on conflict (registry, repository, digest) do update
                            set media_type = excluded.media_type,
                                config_media_type = excluded.config_media_type,
                                image_size = excluded.image_size,
                                architecture = coalesce(excluded.architecture, manifest_meta.architecture),
                                os = coalesce(excluded.os, manifest_meta.os),
                                refs = excluded.refs",
                    )
                    .bind(&registry)
                    .bind(repository)
                    .bind(&m.digest)
                    .bind(&m.media_type)
                    .bind(&m.config_media_type)
                    .bind(m.image_size)
                    .bind(&m.architecture)
                    .bind(&m.os)
                    .bind(m.refs.as_ref().map(Json))
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                }
                for (tag, digest) in tags {
                    sqlx::query(&super::for_sqlite(UNTAGGED_BY_MOVE))
                        .bind(&registry)
                        .bind(repository)
                        .bind(tag)
                        .bind(digest)
                        .bind(&now)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(
                        "insert into tag_meta (registry, repository, tag, digest, created_at, updated_at)
                         values (?1, ?2, ?3, ?4, ?5, ?5)
                         on conflict (registry, repository, tag) do update
                            set digest = excluded.digest,
                                updated_at = case when tag_meta.digest = excluded.digest
                                                  then tag_meta.updated_at else excluded.updated_at end",
                    )
                    .bind(&registry)
                    .bind(repository)
                    .bind(tag)
                    .bind(digest)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "update manifest_meta set updated_at = ?4
                          where registry = ?1 and repository = ?2 and digest = ?3",
                    )
                    .bind(&registry)
                    .bind(repository)
                    .bind(digest)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// The repositories of `registry` that the metadata knows, sorted.
    pub async fn known_repositories(&self, registry: &str) -> Result<Vec<String>, StoreError> {
        let registry = registry.to_lowercase();
        let rows: Vec<(String,)> = match self.backend() {
            Backend::Postgres(pool) => sqlx::query_as(
                "select repository from repository_meta where registry = $1 order by repository",
            )
            .bind(&registry)
            .fetch_all(pool)
            .await?,
            Backend::Sqlite(db) => sqlx::query_as(
                "select repository from repository_meta where registry = ?1 order by repository",
            )
            .bind(&registry)
            .fetch_all(db.pool())
            .await?,
        };
        Ok(rows.into_iter().map(|(r,)| r).collect())
    }

    /// The digests of the manifests of `registry`/`repository` the metadata knows, sorted.
    pub async fn known_manifests(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Vec<String>, StoreError> {
        let registry = registry.to_lowercase();
        let rows: Vec<(String,)> = match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query_as(
                    "select digest from manifest_meta where registry = $1 and repository = $2
                     order by digest",
                )
                .bind(&registry)
                .bind(repository)
                .fetch_all(pool)
                .await?
            }
            Backend::Sqlite(db) => {
                sqlx::query_as(
                    "select digest from manifest_meta where registry = ?1 and repository = ?2
                     order by digest",
                )
                .bind(&registry)
                .bind(repository)
                .fetch_all(db.pool())
                .await?
            }
        };
        Ok(rows.into_iter().map(|(d,)| d).collect())
    }
}
