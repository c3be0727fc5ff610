//! Resource groups: created with PUT, or implicit while they hold registries (a registry may
//! still be created in a group never created, as before). Deleting one is an operation that
//! deletes its registries; the group keeps its row (`Deleting`) until they are gone.
//!
//! Both dialects are side by side (see `lifecycle`).

use std::collections::BTreeMap;

use acr_core::metrics;
use chrono::Utc;
use sqlx::types::Json;

use crate::metadata::{for_sqlite, now_text};
use crate::operations::{bind_new_operation, NewOperation, Work, COLUMNS, NEW_COLUMNS};
use crate::{Backend, OperationRecord, Store, StoreError, NOTIFY_CHANNEL};

/// A resource group as ARM shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGroup {
    /// As created (or as its first registry names it).
    pub name: String,
    pub location: String,
    pub tags: Option<BTreeMap<String, String>>,
    pub deleting: bool,
}

/// What a PUT did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPut {
    Created,
    Updated,
    /// Being deleted: not changed.
    Deleting,
}

#[derive(sqlx::FromRow)]
struct Row {
    name: String,
    location: String,
    tags: Option<Json<BTreeMap<String, String>>>,
    deleting: bool,
}

impl From<Row> for ResourceGroup {
    fn from(r: Row) -> Self {
        Self {
            name: r.name,
            location: r.location,
            tags: r.tags.map(|t| t.0),
            deleting: r.deleting,
        }
    }
}

const SELECT: &str = "select name, location, tags, deleting_since is not null as deleting
                        from resource_groups";

impl Store {
    /// Creates or updates a group (the name keeps its first spelling).
    pub async fn put_resource_group(
        &self,
        subscription: &str,
        name: &str,
        location: &str,
        tags: Option<&BTreeMap<String, String>>,
    ) -> Result<GroupPut, StoreError> {
        let existing = self.explicit_group(subscription, name).await?;
        if existing.as_ref().is_some_and(|g| g.deleting) {
            return Ok(GroupPut::Deleting);
        }
        let sql = "insert into resource_groups (subscription_id, name, name_lower, location, tags, created_at)
                   values ($1, $2, $3, $4, $5, $6)
                   on conflict (subscription_id, name_lower) do update
                      set location = excluded.location, tags = excluded.tags";
        match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query(sql)
                    .bind(subscription)
                    .bind(name)
                    .bind(name.to_lowercase())
                    .bind(location)
                    .bind(tags.map(Json))
                    .bind(Utc::now())
                    .execute(pool)
                    .await?;
            }
            Backend::Sqlite(db) => {
                sqlx::query(&for_sqlite(sql))
                    .bind(subscription)
                    .bind(name)
                    .bind(name.to_lowercase())
                    .bind(location)
                    .bind(tags.map(Json))
                    .bind(now_text(Utc::now()))
                    .execute(db.writer())
                    .await?;
            }
        }
        Ok(if existing.is_some() {
            GroupPut::Updated
        } else {
            GroupPut::Created
        })
    }

    async fn explicit_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<Option<ResourceGroup>, StoreError> {
        let sql = format!("{SELECT} where subscription_id = $1 and name_lower = $2");
        let row: Option<Row> = match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query_as(&sql)
                    .bind(subscription)
                    .bind(name.to_lowercase())
                    .fetch_optional(pool)
                    .await?
            }
            Backend::Sqlite(db) => {
                sqlx::query_as(&for_sqlite(&sql))
                    .bind(subscription)
                    .bind(name.to_lowercase())
                    .fetch_optional(db.pool())
                    .await?
            }
        };
        Ok(row.map(ResourceGroup::from))
    }

    /// The group: created, or holding registries.
    pub async fn get_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<Option<ResourceGroup>, StoreError> {
        if let Some(g) = self.explicit_group(subscription, name).await? {
            return Ok(Some(g));
        }
        Ok(self
            .resource_group(subscription, name)
            .await?
            .map(|(name, location)| ResourceGroup {
                name,
                location,
                tags: None,
                deleting: false,
            }))
    }

    /// The groups of a subscription (created ones, and those holding registries), by name.
    pub async fn list_groups(&self, subscription: &str) -> Result<Vec<ResourceGroup>, StoreError> {
        let sql = format!("{SELECT} where subscription_id = $1");
        let rows: Vec<Row> = match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query_as(&sql)
                    .bind(subscription)
                    .fetch_all(pool)
                    .await?
            }
            Backend::Sqlite(db) => {
                sqlx::query_as(&for_sqlite(&sql))
                    .bind(subscription)
                    .fetch_all(db.pool())
                    .await?
            }
        };
        let mut by_name: BTreeMap<String, ResourceGroup> = rows
            .into_iter()
            .map(|r| (r.name.to_lowercase(), ResourceGroup::from(r)))
            .collect();
        for r in self.list_registries(subscription, None).await? {
            by_name
                .entry(r.resource_group.to_lowercase())
                .or_insert(ResourceGroup {
                    name: r.resource_group.clone(),
                    location: r.location.clone(),
                    tags: None,
                    deleting: false,
                });
        }
        Ok(by_name.into_values().collect())
    }

    /// Marks the group `Deleting` (creating its row if it was implicit) and enqueues `op`
    /// (a [`Work::DeleteResourceGroup`]); `None` when there is no such group. A group already
    /// being deleted answers with its running deletion.
    pub async fn begin_group_deletion(
        &self,
        subscription: &str,
        group: &ResourceGroup,
        op: &NewOperation,
    ) -> Result<OperationRecord, StoreError> {
        if op.work != Work::DeleteResourceGroup {
            return Err(StoreError::Corrupt("not a resource group deletion".into()));
        }
        let kind = op.work.kind();
        if group.deleting {
            let running: Option<OperationRecord> =
                self.find_running(subscription, &group.name, kind).await?;
            if let Some(r) = running {
                metrics::operation_enqueued(kind, metrics::Enqueue::Repeated);
                return Ok(r);
            }
        }
        let mark = "insert into resource_groups (subscription_id, name, name_lower, location, created_at, deleting_since)
                    values ($1, $2, $3, $4, $5, $5)
                    on conflict (subscription_id, name_lower) do update set deleting_since = excluded.deleting_since";
        let insert = format!(
            "insert into operations ({NEW_COLUMNS}, run_at, created_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
             returning {COLUMNS}"
        );
        match self.backend() {
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let now = Utc::now();
                sqlx::query(mark)
                    .bind(subscription)
                    .bind(&group.name)
                    .bind(group.name.to_lowercase())
                    .bind(&group.location)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let rec: OperationRecord = bind_new_operation(sqlx::query_as(&insert), op)?
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query("select pg_notify($1, $2)")
                    .bind(NOTIFY_CHANNEL)
                    .bind(&op.id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                metrics::operation_enqueued(kind, metrics::Enqueue::Accepted);
                Ok(rec)
            }
            Backend::Sqlite(db) => {
                let mut tx = db.begin_write().await?;
                let now = now_text(Utc::now());
                sqlx::query(&for_sqlite(mark))
                    .bind(subscription)
                    .bind(&group.name)
                    .bind(group.name.to_lowercase())
                    .bind(&group.location)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                let insert = for_sqlite(&insert);
                let mut rows: Vec<OperationRecord> =
                    bind_new_operation(sqlx::query_as(&insert), op)?
                        .bind(&now)
                        .fetch_all(&mut *tx)
                        .await?;
                let rec = rows.pop().ok_or_else(|| {
                    StoreError::Corrupt("the inserted operation was not returned".into())
                })?;
                tx.commit().await?;
                db.wake();
                metrics::operation_enqueued(kind, metrics::Enqueue::Accepted);
                Ok(rec)
            }
        }
    }

    async fn find_running(
        &self,
        subscription: &str,
        group: &str,
        kind: &str,
    ) -> Result<Option<OperationRecord>, StoreError> {
        let sql = format!(
            "select {COLUMNS} from operations
              where subscription_id = $1 and lower(resource_group) = $2 and kind = $3
                and state in ('Queued', 'Running')
              order by created_at desc limit 1"
        );
        Ok(match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query_as(&sql)
                    .bind(subscription)
                    .bind(group.to_lowercase())
                    .bind(kind)
                    .fetch_optional(pool)
                    .await?
            }
            Backend::Sqlite(db) => {
                sqlx::query_as(&for_sqlite(&sql))
                    .bind(subscription)
                    .bind(group.to_lowercase())
                    .bind(kind)
                    .fetch_optional(db.pool())
                    .await?
            }
        })
    }

    /// Ends group deletion `id` (fenced) as `Succeeded`, after removing the group's row (a
    /// crash in between re-runs the idempotent deletion).
    pub async fn complete_group_deletion(
        &self,
        id: &str,
        attempt: i32,
        subscription: &str,
        group: &str,
    ) -> Result<bool, StoreError> {
        let sql = "delete from resource_groups where subscription_id = $1 and name_lower = $2";
        match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query(sql)
                    .bind(subscription)
                    .bind(group.to_lowercase())
                    .execute(pool)
                    .await?;
            }
            Backend::Sqlite(db) => {
                sqlx::query(&for_sqlite(sql))
                    .bind(subscription)
                    .bind(group.to_lowercase())
                    .execute(db.writer())
                    .await?;
            }
        }
        self.finish(id, attempt, &crate::Outcome::Succeeded, None)
            .await
    }
}
