//! The operations feed: operations newest first, paged by a key that does not move
//! ([`Store::list_operations`]), and what changed after a point ([`Store::changes_since`]), for
//! the emulator's own `/_acr-import/operations` API and its event stream.
//!
//! Every insert and every visible change of an operation (state, progress, error, start) takes
//! the next value of one counter, `change_seq`, kept by triggers (migration
//! `…_operation_changes`): no write path of the queue has to remember it, and lease renewals
//! that change nothing visible do not count. On SQLite the single writer makes the counter
//! follow commit order; on PostgreSQL a value is taken at the statement and two concurrent
//! transactions may commit out of order, so a reader that resumes from a value may miss a
//! change committed late with a smaller one: readers that must not miss anything re-list
//! (the dashboard re-lists on every reconnect). Both dialects are side by side here.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use crate::operations::{OperationRecord, COLUMNS};
use crate::{Backend, Store, StoreError};

/// Which operations a listing returns (all when every field is `None`).
#[derive(Debug, Clone, Default)]
pub struct OperationFilter {
    /// Operations whose target registry has this name (case-insensitive).
    pub registry: Option<String>,
    /// Operations in this state (`Queued`, `Running`, `Succeeded`, `Failed`, `Canceled`).
    pub state: Option<String>,
}

/// Where a page starts: strictly older than this operation (`created_at`, then `id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageKey {
    pub created_at: DateTime<Utc>,
    pub id: String,
}

impl PageKey {
    /// The key of the row after which the next page starts.
    pub fn after(rec: &OperationRecord) -> Self {
        Self {
            created_at: rec.created_at,
            id: rec.id.clone(),
        }
    }
}

/// An operation with what the feed shows besides the record: its request (which never holds
/// credentials: they live in their own column, which is never selected here) and its
/// position in the change sequence.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FeedRow {
    #[sqlx(flatten)]
    pub record: OperationRecord,
    pub request: Json<serde_json::Value>,
    pub change_seq: i64,
}

/// SQLite's fixed-width UTC text, whose order is the time order.
fn sqlite_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl Store {
    /// At most `top` operations matching `filter`, newest first (`created_at`, then `id`,
    /// descending), starting after `after`.
    pub async fn list_operations(
        &self,
        filter: &OperationFilter,
        top: u32,
        after: Option<&PageKey>,
    ) -> Result<Vec<FeedRow>, StoreError> {
        let limit = i64::from(top);
        let registry = filter.registry.as_deref().map(str::to_lowercase);
        let state = filter.state.as_deref();
        match self.backend() {
            Backend::Postgres(pool) => Ok(sqlx::query_as(&format!(
                "select {COLUMNS}, request, change_seq from operations
                  where ($1::text is null or lower(registry_name) = $1)
                    and ($2::text is null or state = $2)
                    and ($3::timestamptz is null or (created_at, id) < ($3, $4))
                  order by created_at desc, id desc
                  limit $5"
            ))
            .bind(registry)
            .bind(state)
            .bind(after.map(|k| k.created_at))
            .bind(after.map(|k| k.id.as_str()).unwrap_or(""))
            .bind(limit)
            .fetch_all(pool)
            .await?),
            Backend::Sqlite(db) => Ok(sqlx::query_as(&format!(
                "select {COLUMNS}, request, change_seq from operations
                  where (?1 is null or lower(registry_name) = ?1)
                    and (?2 is null or state = ?2)
                    and (?3 is null or created_at < ?3 or (created_at = ?3 and id < ?4))
                  order by created_at desc, id desc
                  limit ?5"
            ))
            .bind(registry)
            .bind(state)
            .bind(after.map(|k| sqlite_time(&k.created_at)))
            .bind(after.map(|k| k.id.as_str()).unwrap_or(""))
            .bind(limit)
            .fetch_all(db.pool())
            .await?),
        }
    }

    /// The operations whose last change is after `seq`, oldest change first, at most `limit`.
    /// An operation appears once, as it is now.
    pub async fn changes_since(&self, seq: i64, limit: u32) -> Result<Vec<FeedRow>, StoreError> {
        let limit = i64::from(limit);
        match self.backend() {
            Backend::Postgres(pool) => Ok(sqlx::query_as(&format!(
                "select {COLUMNS}, request, change_seq from operations
                  where change_seq > $1 order by change_seq limit $2"
            ))
            .bind(seq)
            .bind(limit)
            .fetch_all(pool)
            .await?),
            Backend::Sqlite(db) => Ok(sqlx::query_as(&format!(
                "select {COLUMNS}, request, change_seq from operations
                  where change_seq > ?1 order by change_seq limit ?2"
            ))
            .bind(seq)
            .bind(limit)
            .fetch_all(db.pool())
            .await?),
        }
    }

    /// The newest value of the change sequence (0 before the first operation).
    pub async fn last_change_seq(&self) -> Result<i64, StoreError> {
        let seq: Option<i64> = match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query_scalar("select max(change_seq) from operations")
                    .fetch_one(pool)
                    .await?
            }
            Backend::Sqlite(db) => {
                sqlx::query_scalar("select seq from operation_change_counter where id = 1")
                    .fetch_optional(db.pool())
                    .await?
            }
        };
        Ok(seq.unwrap_or(0))
    }
}
