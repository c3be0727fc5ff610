//! Reads of the data-plane metadata (pages in ACR's orders), changes of `changeableAttributes`
//! and deletions. Pages are keyset pages on indexed columns, so a repository with thousands of
//! tags lists as fast as one with ten.

use std::collections::BTreeMap;

use super::{for_sqlite, Attributes, AttributesUpdate, ManifestRow, RepositoryRow, TagRow};
use crate::{Backend, Store, StoreError};

/// ACR's `orderby`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// By name (tags) or digest (manifests).
    #[default]
    None,
    /// Newest last-update first.
    TimeDesc,
    /// Oldest last-update first.
    TimeAsc,
}

impl Order {
    /// `timedesc`, `timeasc`, `none` or nothing; anything else is `None` (unknown).
    pub fn parse(s: Option<&str>) -> Option<Order> {
        match s.map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("none") => Some(Order::None),
            Some("timedesc") => Some(Order::TimeDesc),
            Some("timeasc") => Some(Order::TimeAsc),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Order::None => "",
            Order::TimeDesc => "timedesc",
            Order::TimeAsc => "timeasc",
        }
    }
}

/// One page of a listing: at most `n` items after `last` (by the page's order).
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub last: Option<String>,
    pub n: usize,
    pub order: Order,
}

const ATTRS: &str = "delete_enabled, write_enabled, read_enabled, list_enabled";

/// The keyset condition and order of a page over `table`'s `key` column.
fn keyset(table: &str, key: &str, order: Order) -> (String, String) {
    match order {
        Order::None => (
            format!("(cast($4 as text) is null or {key} > $4)"),
            key.to_string(),
        ),
        Order::TimeDesc => (
            format!(
                "(cast($4 as text) is null or (updated_at, {key}) <
                    (select updated_at, {key} from {table}
                      where registry = $1 and repository = $2 and {key} = $4))"
            ),
            format!("updated_at desc, {key} desc"),
        ),
        Order::TimeAsc => (
            format!(
                "(cast($4 as text) is null or (updated_at, {key}) >
                    (select updated_at, {key} from {table}
                      where registry = $1 and repository = $2 and {key} = $4))"
            ),
            format!("updated_at, {key}"),
        ),
    }
}

fn limit(n: usize) -> i64 {
    i64::try_from(n.saturating_add(1)).unwrap_or(i64::MAX)
}

impl Store {
    /// The repositories of `registry` the metadata knows (all of them, by name), with counts.
    pub async fn repositories_meta(
        &self,
        registry: &str,
        repository: Option<&str>,
    ) -> Result<Vec<RepositoryRow>, StoreError> {
        let sql = "select r.repository, r.created_at, r.updated_at,
                    r.delete_enabled, r.write_enabled, r.read_enabled, r.list_enabled,
                    (select count(*) from manifest_meta m
                      where m.registry = r.registry and m.repository = r.repository) as manifest_count,
                    (select count(*) from tag_meta t
                      where t.registry = r.registry and t.repository = r.repository) as tag_count
               from repository_meta r
              where r.registry = $1 and (cast($2 as text) is null or r.repository = $2)
              order by r.repository";
        let registry = registry.to_lowercase();
        Ok(match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query_as(sql)
                    .bind(&registry)
                    .bind(repository)
                    .fetch_all(pool)
                    .await?
            }
            Backend::Sqlite(db) => {
                sqlx::query_as(&for_sqlite(sql))
                    .bind(&registry)
                    .bind(repository)
                    .fetch_all(db.pool())
                    .await?
            }
        })
    }

    /// A page of the tags of `registry`/`repository` (only `digest`'s, when given), and
    /// whether more follow. Tags with `listEnabled: false` are left out unless `hidden`.
    pub async fn tags_meta(
        &self,
        registry: &str,
        repository: &str,
        digest: Option<&str>,
        page: &Page,
        hidden: bool,
    ) -> Result<(Vec<TagRow>, bool), StoreError> {
        let (cond, order) = keyset("tag_meta", "tag", page.order);
        let sql = format!(
            "select tag, digest, created_at, updated_at, {ATTRS} from tag_meta
              where registry = $1 and repository = $2 and (cast($3 as text) is null or digest = $3)
                and {cond} and ($6 or list_enabled)
              order by {order} limit $5"
        );
        let registry = registry.to_lowercase();
        let mut rows: Vec<TagRow> = match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query_as(&sql)
                    .bind(&registry)
                    .bind(repository)
                    .bind(digest)
                    .bind(page.last.as_deref())
                    .bind(limit(page.n))
                    .bind(hidden)
                    .fetch_all(pool)
                    .await?
            }
            Backend::Sqlite(db) => {
                sqlx::query_as(&for_sqlite(&sql))
                    .bind(&registry)
                    .bind(repository)
                    .bind(digest)
                    .bind(page.last.as_deref())
                    .bind(limit(page.n))
                    .bind(hidden)
                    .fetch_all(db.pool())
                    .await?
            }
        };
        let more = rows.len() > page.n;
        rows.truncate(page.n);
        Ok((rows, more))
    }

    /// One tag.
    pub async fn tag_meta(
        &self,
        registry: &str,
        repository: &str,
        tag: &str,
    ) -> Result<Option<TagRow>, StoreError> {
        let sql = format!(
            "select tag, digest, created_at, updated_at, {ATTRS} from tag_meta
              where registry = $1 and repository = $2 and tag = $3"
        );
        let registry = registry.to_lowercase();
        Ok(match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query_as(&sql)
                    .bind(&registry)
                    .bind(repository)
                    .bind(tag)
                    .fetch_optional(pool)
                    .await?
            }
            Backend::Sqlite(db) => {
                sqlx::query_as(&for_sqlite(&sql))
                    .bind(&registry)
                    .bind(repository)
                    .bind(tag)
                    .fetch_optional(db.pool())
                    .await?
            }
        })
    }

    /// A page of the manifests of `registry`/`repository` with their tags, and whether more
    /// follow. Manifests with `listEnabled: false` are left out unless `hidden`.
    pub async fn manifests_meta(
        &self,
        registry: &str,
        repository: &str,
        page: &Page,
        hidden: bool,
    ) -> Result<(Vec<ManifestRow>, bool), StoreError> {
        let (cond, order) = keyset("manifest_meta", "digest", page.order);
        let sql = format!(
            "select digest, media_type, config_media_type, image_size, architecture, os, refs,
                    created_at, updated_at, {ATTRS}
               from manifest_meta
              where registry = $1 and repository = $2 and (cast($3 as text) is null or digest = $3)
                and {cond} and ($6 or list_enabled)
              order by {order} limit $5"
        );
        let mut rows = self
            .manifest_rows(&sql, registry, repository, page, hidden)
            .await?;
        let more = rows.len() > page.n;
        rows.truncate(page.n);
        self.attach_tags(registry, repository, &mut rows).await?;
        Ok((rows, more))
    }

    /// One manifest with its tags.
    pub async fn manifest_meta(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<Option<ManifestRow>, StoreError> {
        let sql = format!(
            "select digest, media_type, config_media_type, image_size, architecture, os, refs,
                    created_at, updated_at, {ATTRS}
               from manifest_meta
              where registry = $1 and repository = $2 and digest = $3"
        );
        let registry_lower = registry.to_lowercase();
        let row: Option<ManifestRow> = match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query_as(&sql)
                    .bind(&registry_lower)
                    .bind(repository)
                    .bind(digest)
                    .fetch_optional(pool)
                    .await?
            }
            Backend::Sqlite(db) => {
                sqlx::query_as(&for_sqlite(&sql))
                    .bind(&registry_lower)
                    .bind(repository)
                    .bind(digest)
                    .fetch_optional(db.pool())
                    .await?
            }
        };
        let mut rows: Vec<ManifestRow> = row.into_iter().collect();
        self.attach_tags(registry, repository, &mut rows).await?;
        Ok(rows.pop())
    }

    async fn manifest_rows(
        &self,
        sql: &str,
        registry: &str,
        repository: &str,
        page: &Page,
        hidden: bool,
    ) -> Result<Vec<ManifestRow>, StoreError> {
        let digest: Option<&str> = None;
        let registry = registry.to_lowercase();
        Ok(match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query_as(sql)
                    .bind(&registry)
                    .bind(repository)
                    .bind(digest)
                    .bind(page.last.as_deref())
                    .bind(limit(page.n))
                    .bind(hidden)
                    .fetch_all(pool)
                    .await?
            }
            Backend::Sqlite(db) => {
                sqlx::query_as(&for_sqlite(sql))
                    .bind(&registry)
                    .bind(repository)
                    .bind(digest)
                    .bind(page.last.as_deref())
                    .bind(limit(page.n))
                    .bind(hidden)
                    .fetch_all(db.pool())
                    .await?
            }
        })
    }

    /// Fills each manifest's `tags` (sorted).
    async fn attach_tags(
        &self,
        registry: &str,
        repository: &str,
        rows: &mut [ManifestRow],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let sql = "select digest, tag from tag_meta where registry = $1 and repository = $2
                    order by tag";
        let registry = registry.to_lowercase();
        let pairs: Vec<(String, String)> = match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query_as(sql)
                    .bind(&registry)
                    .bind(repository)
                    .fetch_all(pool)
                    .await?
            }
            Backend::Sqlite(db) => {
                sqlx::query_as(&for_sqlite(sql))
                    .bind(&registry)
                    .bind(repository)
                    .fetch_all(db.pool())
                    .await?
            }
        };
        let mut by_digest: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (d, t) in pairs {
            by_digest.entry(d).or_default().push(t);
        }
        for r in rows.iter_mut() {
            r.tags = by_digest.remove(&r.digest).unwrap_or_default();
        }
        Ok(())
    }

    /// Changes the attributes of a repository (`target` `None`), a tag or a manifest; `false`
    /// when there is no such row.
    pub async fn update_attributes(
        &self,
        registry: &str,
        repository: &str,
        target: Option<AttributeTarget<'_>>,
        update: &AttributesUpdate,
    ) -> Result<bool, StoreError> {
        let (table, key, value) = match target {
            None => ("repository_meta", "repository", repository),
            Some(AttributeTarget::Tag(t)) => ("tag_meta", "tag", t),
            Some(AttributeTarget::Manifest(d)) => ("manifest_meta", "digest", d),
        };
        let sql = format!(
            "update {table}
                set delete_enabled = coalesce($4, delete_enabled),
                    write_enabled = coalesce($5, write_enabled),
                    read_enabled = coalesce($6, read_enabled),
                    list_enabled = coalesce($7, list_enabled)
              where registry = $1 and repository = $2 and {key} = $3"
        );
        let registry = registry.to_lowercase();
        let n = match self.backend() {
            Backend::Postgres(pool) => sqlx::query(&sql)
                .bind(&registry)
                .bind(repository)
                .bind(value)
                .bind(update.delete_enabled)
                .bind(update.write_enabled)
                .bind(update.read_enabled)
                .bind(update.list_enabled)
                .execute(pool)
                .await?
                .rows_affected(),
            Backend::Sqlite(db) => sqlx::query(&for_sqlite(&sql))
                .bind(&registry)
                .bind(repository)
                .bind(value)
                .bind(update.delete_enabled)
                .bind(update.write_enabled)
                .bind(update.read_enabled)
                .bind(update.list_enabled)
                .execute(db.writer())
                .await?
                .rows_affected(),
        };
        Ok(n > 0)
    }

    /// Forgets a tag; `false` when it was not known.
    pub async fn delete_tag_meta(
        &self,
        registry: &str,
        repository: &str,
        tag: &str,
    ) -> Result<bool, StoreError> {
        // The manifest it pointed at was updated now (the retention period counts from here).
        let now = chrono::Utc::now();
        let registry_lower = registry.to_lowercase();
        let bump = "update manifest_meta set updated_at = $4
              where registry = $1 and repository = $2
                and digest = (select digest from tag_meta
                               where registry = $1 and repository = $2 and tag = $3)";
        match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query(bump)
                    .bind(&registry_lower)
                    .bind(repository)
                    .bind(tag)
                    .bind(now)
                    .execute(pool)
                    .await?;
            }
            Backend::Sqlite(db) => {
                sqlx::query(&for_sqlite(bump))
                    .bind(&registry_lower)
                    .bind(repository)
                    .bind(tag)
                    .bind(super::now_text(now))
                    .execute(db.writer())
                    .await?;
            }
        }
        self.delete_where(
            "delete from tag_meta where registry = $1 and repository = $2 and tag = $3",
            registry,
            repository,
            Some(tag),
        )
        .await
        .map(|n| n > 0)
    }

    /// Forgets a manifest and the tags pointing at it.
    pub async fn delete_manifest_meta(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<(), StoreError> {
        self.delete_where(
            "delete from tag_meta where registry = $1 and repository = $2 and digest = $3",
            registry,
            repository,
            Some(digest),
        )
        .await?;
        self.delete_where(
            "delete from manifest_meta where registry = $1 and repository = $2 and digest = $3",
            registry,
            repository,
            Some(digest),
        )
        .await?;
        Ok(())
    }

    /// Forgets a repository with its manifests and tags.
    pub async fn delete_repository_meta(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<(), StoreError> {
        for table in ["tag_meta", "manifest_meta", "repository_meta"] {
            self.delete_where(
                &format!("delete from {table} where registry = $1 and repository = $2"),
                registry,
                repository,
                None,
            )
            .await?;
        }
        Ok(())
    }

    async fn delete_where(
        &self,
        sql: &str,
        registry: &str,
        repository: &str,
        key: Option<&str>,
    ) -> Result<u64, StoreError> {
        let registry = registry.to_lowercase();
        Ok(match self.backend() {
            Backend::Postgres(pool) => {
                let mut q = sqlx::query(sql).bind(&registry).bind(repository);
                if let Some(k) = key {
                    q = q.bind(k);
                }
                q.execute(pool).await?.rows_affected()
            }
            Backend::Sqlite(db) => {
                let sql = for_sqlite(sql);
                let mut q = sqlx::query(&sql).bind(&registry).bind(repository);
                if let Some(k) = key {
                    q = q.bind(k);
                }
                q.execute(db.writer()).await?.rows_affected()
            }
        })
    }
}

/// The `changeableAttributes` that govern one request: the repository's, a tag's (with its
/// digest) and a manifest's, each when the metadata knows it.
#[derive(Debug, Clone, Default)]
pub struct Locks {
    pub repository: Option<Attributes>,
    pub tag: Option<(Attributes, String)>,
    pub manifest: Option<Attributes>,
    /// Attributes of every tag pointing at `manifest`'s digest.
    pub tags_of_manifest: Vec<Attributes>,
}

impl Store {
    /// The locks of `registry`/`repository`, of `tag` and of the manifest `digest` (or the one
    /// `tag` points at).
    pub async fn locks(
        &self,
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> Result<Locks, StoreError> {
        let registry = registry.to_lowercase();
        let repo_sql =
            format!("select {ATTRS} from repository_meta where registry = $1 and repository = $2");
        let tag_sql = format!(
            "select {ATTRS}, digest from tag_meta where registry = $1 and repository = $2 and tag = $3"
        );
        let manifest_sql = format!(
            "select {ATTRS} from manifest_meta where registry = $1 and repository = $2 and digest = $3"
        );
        let tags_sql = format!(
            "select {ATTRS} from tag_meta where registry = $1 and repository = $2 and digest = $3"
        );
        #[derive(sqlx::FromRow)]
        struct TagAttrs {
            #[sqlx(flatten)]
            attributes: Attributes,
            digest: String,
        }
        let mut locks = Locks::default();
        match self.backend() {
            Backend::Postgres(pool) => {
                locks.repository = sqlx::query_as(&repo_sql)
                    .bind(&registry)
                    .bind(repository)
                    .fetch_optional(pool)
                    .await?;
                if let Some(t) = tag {
                    let row: Option<TagAttrs> = sqlx::query_as(&tag_sql)
                        .bind(&registry)
                        .bind(repository)
                        .bind(t)
                        .fetch_optional(pool)
                        .await?;
                    locks.tag = row.map(|r| (r.attributes, r.digest));
                }
                let d = digest
                    .or(locks.tag.as_ref().map(|(_, d)| d.as_str()))
                    .map(str::to_owned);
                if let Some(d) = d {
                    locks.manifest = sqlx::query_as(&manifest_sql)
                        .bind(&registry)
                        .bind(repository)
                        .bind(&d)
                        .fetch_optional(pool)
                        .await?;
                    locks.tags_of_manifest = sqlx::query_as(&tags_sql)
                        .bind(&registry)
                        .bind(repository)
                        .bind(&d)
                        .fetch_all(pool)
                        .await?;
                }
            }
            Backend::Sqlite(db) => {
                let pool = db.pool();
                locks.repository = sqlx::query_as(&for_sqlite(&repo_sql))
                    .bind(&registry)
                    .bind(repository)
                    .fetch_optional(pool)
                    .await?;
                if let Some(t) = tag {
                    let row: Option<TagAttrs> = sqlx::query_as(&for_sqlite(&tag_sql))
                        .bind(&registry)
                        .bind(repository)
                        .bind(t)
                        .fetch_optional(pool)
                        .await?;
                    locks.tag = row.map(|r| (r.attributes, r.digest));
                }
                let d = digest
                    .or(locks.tag.as_ref().map(|(_, d)| d.as_str()))
                    .map(str::to_owned);
                if let Some(d) = d {
                    locks.manifest = sqlx::query_as(&for_sqlite(&manifest_sql))
                        .bind(&registry)
                        .bind(repository)
                        .bind(&d)
                        .fetch_optional(pool)
                        .await?;
                    locks.tags_of_manifest = sqlx::query_as(&for_sqlite(&tags_sql))
                        .bind(&registry)
                        .bind(repository)
                        .bind(&d)
                        .fetch_all(pool)
                        .await?;
                }
            }
        }
        Ok(locks)
    }
}

/// What [`Store::update_attributes`] changes besides a repository.
#[derive(Debug, Clone, Copy)]
pub enum AttributeTarget<'a> {
    Tag(&'a str),
    Manifest(&'a str),
}
