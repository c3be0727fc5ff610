//! A registry's end: deletion as an operation, and the imports it cancels.
//!
//! `DELETE` marks the registry `Deleting` and enqueues a `deleteRegistry` operation in one
//! transaction ([`Store::begin_registry_deletion`]); from then on the registry serves nothing
//! and its name is not free. The operation cancels every unfinished import into the registry
//! ([`Store::cancel_imports_into`]: terminal at once, with a message saying why), waits until
//! each cancelled import's worker has stopped writing ([`Store::imports_still_writing`]: the
//! worker acknowledges with [`Store::acknowledge_stop`] after dropping its copy, or its lease
//! runs out), removes the content from the backend, and then ends itself and removes the
//! registry row and its data-plane metadata in one transaction
//! ([`Store::complete_registry_deletion`]).
//!
//! Both dialects are side by side here: the statements are short and the pair is easier to
//! keep equal when read together.

use chrono::Utc;

use crate::operations::{bind_new_operation, NewOperation, Work, COLUMNS, NEW_COLUMNS};
use acr_core::metrics;

use crate::{Backend, OperationRecord, Store, StoreError, NOTIFY_CHANNEL};

/// What [`Store::begin_registry_deletion`] did.
#[derive(Debug, Clone)]
pub enum DeletionStarted {
    /// No such registry.
    NotFound,
    /// The registry is now `Deleting`; this operation deletes it.
    Started(OperationRecord),
    /// It was already being deleted, by this operation.
    AlreadyDeleting(OperationRecord),
}

/// The tables holding a registry's data-plane metadata (deleted with it).
const METADATA_TABLES: [&str; 3] = ["tag_meta", "manifest_meta", "repository_meta"];

fn now_text() -> String {
    Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl Store {
    /// Marks the registry `Deleting` and enqueues `op` (a [`Work::DeleteRegistry`]) in one
    /// transaction. A registry already being deleted answers with its deletion operation.
    pub async fn begin_registry_deletion(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
        op: &NewOperation,
    ) -> Result<DeletionStarted, StoreError> {
        let started = self
            .mark_and_enqueue_deletion(subscription, resource_group, name, op)
            .await;
        let how = match &started {
            Ok(DeletionStarted::Started(_)) => Some(metrics::Enqueue::Accepted),
            Ok(DeletionStarted::AlreadyDeleting(_)) => Some(metrics::Enqueue::Repeated),
            _ => None,
        };
        if let Some(how) = how {
            metrics::operation_enqueued(op.work.kind(), how);
        }
        started
    }

    async fn mark_and_enqueue_deletion(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
        op: &NewOperation,
    ) -> Result<DeletionStarted, StoreError> {
        if op.work != Work::DeleteRegistry {
            return Err(StoreError::Corrupt("not a registry deletion".into()));
        }
        match self.backend() {
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let row: Option<(Option<String>,)> = sqlx::query_as(
                    "select deletion_operation_id from registries
                      where name_lower = lower($3) and subscription_id = $1
                        and lower(resource_group) = lower($2)
                      for update",
                )
                .bind(subscription)
                .bind(resource_group)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((existing,)) = row else {
                    return Ok(DeletionStarted::NotFound);
                };
                if let Some(id) = existing {
                    let rec: OperationRecord =
                        sqlx::query_as(&format!("select {COLUMNS} from operations where id = $1"))
                            .bind(&id)
                            .fetch_one(&mut *tx)
                            .await?;
                    tx.commit().await?;
                    return Ok(DeletionStarted::AlreadyDeleting(rec));
                }
                let insert = format!(
                    "insert into operations ({NEW_COLUMNS})
                     values ($1, $2, $3, $4, $5, $6, $7, $8)
                     returning {COLUMNS}"
                );
                let rec: OperationRecord = bind_new_operation(sqlx::query_as(&insert), op)?
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query(
                    "update registries set deleting_since = now(), deletion_operation_id = $2,
                                           updated_at = now()
                      where name_lower = lower($1)",
                )
                .bind(name)
                .bind(&op.id)
                .execute(&mut *tx)
                .await?;
                sqlx::query("select pg_notify($1, $2)")
                    .bind(NOTIFY_CHANNEL)
                    .bind(&op.id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(DeletionStarted::Started(rec))
            }
            Backend::Sqlite(db) => {
                let mut tx = db.begin_write().await?;
                let row: Option<(Option<String>,)> = sqlx::query_as(
                    "select deletion_operation_id from registries
                      where name_lower = ?3 and subscription_id = ?1 and resource_group_lower = ?2",
                )
                .bind(subscription)
                .bind(resource_group.to_lowercase())
                .bind(name.to_lowercase())
                .fetch_optional(&mut *tx)
                .await?;
                let Some((existing,)) = row else {
                    return Ok(DeletionStarted::NotFound);
                };
                if let Some(id) = existing {
                    let rec: OperationRecord =
                        sqlx::query_as(&format!("select {COLUMNS} from operations where id = ?1"))
                            .bind(&id)
                            .fetch_one(&mut *tx)
                            .await?;
                    tx.commit().await?;
                    return Ok(DeletionStarted::AlreadyDeleting(rec));
                }
                let now = now_text();
                let insert = format!(
                    "insert into operations ({NEW_COLUMNS}, run_at, created_at)
                     values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
                     returning {COLUMNS}"
                );
                let mut rows: Vec<OperationRecord> =
                    bind_new_operation(sqlx::query_as(&insert), op)?
                        .bind(&now)
                        .fetch_all(&mut *tx)
                        .await?;
                let rec = rows.pop().ok_or_else(|| {
                    StoreError::Corrupt("the inserted operation was not returned".into())
                })?;
                sqlx::query(
                    "update registries set deleting_since = ?2, deletion_operation_id = ?3,
                                           updated_at = ?2
                      where name_lower = ?1",
                )
                .bind(name.to_lowercase())
                .bind(&now)
                .bind(&op.id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                db.registries_changed();
                db.wake();
                Ok(DeletionStarted::Started(rec))
            }
        }
    }

    /// Cancels every unfinished import into registry `name` (terminal at once: `Canceled`
    /// with `code` and the message "Operation <id> was canceled: <why>", credentials erased,
    /// tag reservations dropped). A running
    /// import keeps its lease columns until its worker acknowledges ([`Self::acknowledge_stop`]).
    /// Returns how many were cancelled.
    pub async fn cancel_imports_into(
        &self,
        name: &str,
        code: &str,
        why: &str,
    ) -> Result<u64, StoreError> {
        match self.backend() {
            Backend::Postgres(pool) => {
                let r = sqlx::query(
                    "with cancelled as (
                         update operations
                            set state = 'Canceled', error_code = $2,
                                error_message = 'Operation ' || id || ' was canceled: ' || $3,
                                error_status = 409, ended_at = now(), credentials = null,
                                lease_owner = case when state = 'Running' then lease_owner end,
                                lease_expires_at = case when state = 'Running' then lease_expires_at end
                          where lower(registry_name) = lower($1) and kind = 'import'
                            and state in ('Queued', 'Running')
                      returning id
                     ), unreserved as (
                         delete from tag_reservations where operation_id in (select id from cancelled)
                     )
                     select count(*) from cancelled",
                )
                .bind(name)
                .bind(code)
                .bind(why)
                .fetch_one(pool)
                .await?;
                use sqlx::Row;
                Ok(u64::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0))
            }
            Backend::Sqlite(db) => {
                let mut tx = db.begin_write().await?;
                let ids: Vec<(String,)> = sqlx::query_as(
                    "update operations
                        set state = 'Canceled', error_code = ?2,
                            error_message = 'Operation ' || id || ' was canceled: ' || ?3,
                            error_status = 409, ended_at = ?4, credentials = null,
                            lease_owner = case when state = 'Running' then lease_owner end,
                            lease_expires_at = case when state = 'Running' then lease_expires_at end
                      where lower(registry_name) = lower(?1) and kind = 'import'
                        and state in ('Queued', 'Running')
                  returning id",
                )
                .bind(name)
                .bind(code)
                .bind(why)
                .bind(now_text())
                .fetch_all(&mut *tx)
                .await?;
                for (id,) in &ids {
                    sqlx::query("delete from tag_reservations where operation_id = ?1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(ids.len() as u64)
            }
        }
    }

    /// Cancelled imports into `name` whose worker may still be writing: not acknowledged and
    /// the lease not yet run out.
    pub async fn imports_still_writing(&self, name: &str) -> Result<u64, StoreError> {
        let n: i64 = match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query_scalar(
                    "select count(*) from operations
                      where lower(registry_name) = lower($1) and kind = 'import'
                        and state = 'Canceled' and lease_owner is not null
                        and lease_expires_at > now()",
                )
                .bind(name)
                .fetch_one(pool)
                .await?
            }
            Backend::Sqlite(db) => {
                sqlx::query_scalar(
                    "select count(*) from operations
                      where lower(registry_name) = lower(?1) and kind = 'import'
                        and state = 'Canceled' and lease_owner is not null
                        and lease_expires_at > ?2",
                )
                .bind(name)
                .bind(now_text())
                .fetch_one(db.pool())
                .await?
            }
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// A worker whose attempt was ended from outside (cancelled) says it has stopped writing.
    pub async fn acknowledge_stop(&self, id: &str, attempt: i32) -> Result<(), StoreError> {
        match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query(
                    "update operations set lease_owner = null, lease_expires_at = null
                      where id = $1 and attempt = $2 and state <> 'Running'",
                )
                .bind(id)
                .bind(attempt)
                .execute(pool)
                .await?;
            }
            Backend::Sqlite(db) => {
                sqlx::query(
                    "update operations set lease_owner = null, lease_expires_at = null
                      where id = ?1 and attempt = ?2 and state <> 'Running'",
                )
                .bind(id)
                .bind(attempt)
                .execute(db.writer())
                .await?;
            }
        }
        Ok(())
    }

    /// Ends deletion operation `id` (fenced by `attempt`) as `Succeeded`, and removes the
    /// registry it deletes (`name`, only while that operation owns it) with its data-plane
    /// metadata, in one transaction. `false`: the attempt was fenced out; nothing changed.
    pub async fn complete_registry_deletion(
        &self,
        id: &str,
        attempt: i32,
        name: &str,
    ) -> Result<bool, StoreError> {
        let name = name.to_lowercase();
        match self.backend() {
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let r = sqlx::query(
                    "update operations
                        set state = 'Succeeded', ended_at = now(), percent_complete = 100,
                            credentials = null, lease_owner = null, lease_expires_at = null
                      where id = $1 and attempt = $2 and state = 'Running'",
                )
                .bind(id)
                .bind(attempt)
                .execute(&mut *tx)
                .await?;
                if r.rows_affected() != 1 {
                    return Ok(false);
                }
                sqlx::query(
                    "delete from registries where name_lower = $1 and deletion_operation_id = $2",
                )
                .bind(&name)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                for table in METADATA_TABLES {
                    sqlx::query(&format!("delete from {table} where registry = $1"))
                        .bind(&name)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(true)
            }
            Backend::Sqlite(db) => {
                let mut tx = db.begin_write().await?;
                let r = sqlx::query(
                    "update operations
                        set state = 'Succeeded', ended_at = ?3, percent_complete = 100,
                            credentials = null, lease_owner = null, lease_expires_at = null
                      where id = ?1 and attempt = ?2 and state = 'Running'",
                )
                .bind(id)
                .bind(attempt)
                .bind(now_text())
                .execute(&mut *tx)
                .await?;
                if r.rows_affected() != 1 {
                    return Ok(false);
                }
                sqlx::query(
                    "delete from registries where name_lower = ?1 and deletion_operation_id = ?2",
                )
                .bind(&name)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                for table in METADATA_TABLES {
                    sqlx::query(&format!("delete from {table} where registry = ?1"))
                        .bind(&name)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                db.registries_changed();
                Ok(true)
            }
        }
    }
}

impl Store {
    /// The shared secret `name`: `candidate` if no process stored one before, else the stored
    /// one (every replica ends with the same bytes).
    pub async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        let sql = "insert into service_secrets (name, value) values ($1, $2)
                   on conflict (name) do nothing";
        let read = "select value from service_secrets where name = $1";
        let value: String = match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query(sql)
                    .bind(name)
                    .bind(hex::encode(candidate))
                    .execute(pool)
                    .await?;
                sqlx::query_scalar(read).bind(name).fetch_one(pool).await?
            }
            Backend::Sqlite(db) => {
                sqlx::query(&crate::metadata::for_sqlite(sql))
                    .bind(name)
                    .bind(hex::encode(candidate))
                    .execute(db.writer())
                    .await?;
                sqlx::query_scalar(&crate::metadata::for_sqlite(read))
                    .bind(name)
                    .fetch_one(db.writer())
                    .await?
            }
        };
        hex::decode(value).map_err(|e| StoreError::Corrupt(format!("secret {name}: {e}")))
    }
}
