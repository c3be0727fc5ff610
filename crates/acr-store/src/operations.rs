//! The operation queue.

use std::time::Duration;

use acr_core::import::StoredImport;
use acr_core::operation::OperationState;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;

use crate::{Store, StoreError, NOTIFY_CHANNEL};

/// Source credentials as kept while the operation runs.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredCredentials {
    pub username: Option<String>,
    pub password: String,
}

impl std::fmt::Debug for StoredCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// An operation to enqueue.
#[derive(Debug, Clone)]
pub struct NewOperation {
    pub id: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub registry_name: String,
    pub location: String,
    pub api_version: String,
    pub request: StoredImport,
    pub credentials: Option<StoredCredentials>,
}

/// An operation as the API reports it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OperationRecord {
    pub id: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub registry_name: String,
    pub location: String,
    pub api_version: String,
    pub state: String,
    pub attempt: i32,
    pub progress: Option<Json<serde_json::Value>>,
    pub percent_complete: f64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub error_status: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl OperationRecord {
    pub fn state(&self) -> Result<OperationState, StoreError> {
        OperationState::parse(&self.state)
            .ok_or_else(|| StoreError::Corrupt(format!("operation state '{}'", self.state)))
    }
}

/// A claimed operation: the record, its request and credentials, and the attempt that fences it.
#[derive(Debug, Clone)]
pub struct ClaimedOperation {
    pub record: OperationRecord,
    pub request: StoredImport,
    pub credentials: Option<StoredCredentials>,
    /// Why stored credentials could not be read (encrypted without a key, wrong key): the
    /// operation must fail rather than run without them.
    pub credentials_error: Option<String>,
}

impl ClaimedOperation {
    pub fn attempt(&self) -> i32 {
        self.record.attempt
    }
}

/// How an operation ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded,
    Failed {
        code: String,
        message: String,
        status: u16,
    },
    Canceled,
}

/// Bounds on unfinished (Queued or Running) operations, checked when one is enqueued.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueLimits {
    /// Per subscription (`--max-operations-per-subscription`).
    pub per_subscription: Option<u64>,
    /// In the whole queue (`--max-queued-operations`).
    pub total: Option<u64>,
}

/// Which limit refused an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitExceeded {
    Subscription { subscription: String, limit: u64 },
    Total { limit: u64 },
}

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitExceeded::Subscription { subscription, limit } => write!(
                f,
                "The subscription '{subscription}' already has {limit} import operations queued or running, the limit per subscription (--max-operations-per-subscription). Retry after some of them finish."
            ),
            LimitExceeded::Total { limit } => write!(
                f,
                "The service already has {limit} import operations queued or running, the limit of its queue (--max-queued-operations). Retry later."
            ),
        }
    }
}

/// The key of the advisory lock that makes the limit check and the insert atomic.
const ENQUEUE_LOCK: i64 = 0x6163_725f_696d_706f; // "acr_impo"

/// Whether an insert created the operation or found it already there (idempotent retry).
#[derive(Debug, Clone)]
pub enum Enqueued {
    Created(OperationRecord),
    Existing(OperationRecord),
}

const COLUMNS: &str = "id, subscription_id, resource_group, registry_name, location, api_version, state, attempt,
    progress, percent_complete, error_code, error_message, error_status, created_at, started_at, ended_at";

#[derive(sqlx::FromRow)]
struct ClaimRow {
    #[sqlx(flatten)]
    record: OperationRecord,
    request: Json<StoredImport>,
    credentials: Option<Json<serde_json::Value>>,
}

fn interval_secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Store {
    /// Inserts a runnable operation and wakes the workers, in one transaction. An operation with
    /// the same id already present is returned as it is.
    pub async fn enqueue(&self, op: &NewOperation) -> Result<Enqueued, StoreError> {
        self.enqueue_limited(op, QueueLimits::default()).await
    }

    /// Like [`Self::enqueue`], refusing with [`StoreError::Limit`] when the queue limits are
    /// reached. The count and the insert happen in one transaction under an advisory lock, so
    /// concurrent requests cannot overshoot a limit.
    pub async fn enqueue_limited(
        &self,
        op: &NewOperation,
        limits: QueueLimits,
    ) -> Result<Enqueued, StoreError> {
        let credentials = match (&op.credentials, self.credentials_key()) {
            (None, _) => None,
            (Some(c), Some(key)) => Some(key.seal(&op.id, c).map_err(StoreError::Corrupt)?),
            (Some(c), None) => {
                Some(serde_json::to_value(c).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            }
        };
        let mut tx = self.pool().begin().await?;
        if limits.per_subscription.is_some() || limits.total.is_some() {
            sqlx::query("select pg_advisory_xact_lock($1)")
                .bind(ENQUEUE_LOCK)
                .execute(&mut *tx)
                .await?;
            let existing: Option<OperationRecord> =
                sqlx::query_as(&format!("select {COLUMNS} from operations where id = $1"))
                    .bind(&op.id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(rec) = existing {
                tx.commit().await?;
                return Ok(Enqueued::Existing(rec));
            }
            let (in_sub, total): (i64, i64) = sqlx::query_as(
                "select count(*) filter (where subscription_id = $1), count(*)
                   from operations where state in ('Queued', 'Running')",
            )
            .bind(&op.subscription_id)
            .fetch_one(&mut *tx)
            .await?;
            let reached = |n: i64, limit: Option<u64>| {
                limit.is_some_and(|l| u64::try_from(n).unwrap_or(0) >= l)
            };
            if reached(in_sub, limits.per_subscription) {
                return Err(StoreError::Limit(LimitExceeded::Subscription {
                    subscription: op.subscription_id.clone(),
                    limit: limits.per_subscription.unwrap_or_default(),
                }));
            }
            if reached(total, limits.total) {
                return Err(StoreError::Limit(LimitExceeded::Total {
                    limit: limits.total.unwrap_or_default(),
                }));
            }
        }
        let inserted: Option<OperationRecord> = sqlx::query_as(&format!(
            "insert into operations (id, subscription_id, resource_group, registry_name, location, api_version, request, credentials)
             values ($1, $2, $3, $4, $5, $6, $7, $8)
             on conflict (id) do nothing
             returning {COLUMNS}"
        ))
        .bind(&op.id)
        .bind(&op.subscription_id)
        .bind(&op.resource_group)
        .bind(&op.registry_name)
        .bind(&op.location)
        .bind(&op.api_version)
        .bind(Json(&op.request))
        .bind(credentials.map(Json))
        .fetch_optional(&mut *tx)
        .await?;
        let out = match inserted {
            Some(rec) => {
                sqlx::query("select pg_notify($1, $2)")
                    .bind(NOTIFY_CHANNEL)
                    .bind(&op.id)
                    .execute(&mut *tx)
                    .await?;
                Enqueued::Created(rec)
            }
            None => {
                let rec: OperationRecord =
                    sqlx::query_as(&format!("select {COLUMNS} from operations where id = $1"))
                        .bind(&op.id)
                        .fetch_one(&mut *tx)
                        .await?;
                Enqueued::Existing(rec)
            }
        };
        tx.commit().await?;
        Ok(out)
    }

    pub async fn get_operation(&self, id: &str) -> Result<Option<OperationRecord>, StoreError> {
        Ok(
            sqlx::query_as(&format!("select {COLUMNS} from operations where id = $1"))
                .bind(id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Claims the oldest runnable operation: queued and due, or running with an expired lease
    /// (its worker died). One short transaction; increments the attempt (the fence).
    pub async fn claim(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedOperation>, StoreError> {
        let row: Option<ClaimRow> = sqlx::query_as(&format!(
            "with next as (
                 select id from operations
                 where (state = 'Queued' and run_at <= now())
                    or (state = 'Running' and lease_expires_at < now())
                 order by run_at, created_at
                 limit 1
                 for update skip locked
             )
             update operations o
                set state = 'Running', attempt = o.attempt + 1, lease_owner = $1,
                    lease_expires_at = now() + make_interval(secs => $2),
                    started_at = coalesce(o.started_at, now())
               from next
              where o.id = next.id
          returning {}, o.request, o.credentials",
            COLUMNS
                .split(',')
                .map(|c| format!("o.{}", c.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(owner)
        .bind(interval_secs(lease))
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| {
            let opened = r
                .credentials
                .map(|c| crate::secrets::open_stored(self.credentials_key(), &r.record.id, c.0));
            let (credentials, credentials_error) = match opened {
                None => (None, None),
                Some(Ok(c)) => (Some(c), None),
                Some(Err(e)) => (None, Some(e)),
            };
            ClaimedOperation {
                record: r.record,
                request: r.request.0,
                credentials,
                credentials_error,
            }
        }))
    }

    /// Renews the lease and records progress. `false` means the lease is lost: stop working.
    pub async fn heartbeat(
        &self,
        id: &str,
        attempt: i32,
        lease: Duration,
        progress: Option<&serde_json::Value>,
        percent_complete: f64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "update operations
                set lease_expires_at = now() + make_interval(secs => $3),
                    progress = coalesce($4, progress), percent_complete = $5
              where id = $1 and attempt = $2 and state = 'Running'",
        )
        .bind(id)
        .bind(attempt)
        .bind(interval_secs(lease))
        .bind(progress.map(Json))
        .bind(percent_complete)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Ends the operation (fenced). Erases the credentials in the same statement.
    pub async fn finish(
        &self,
        id: &str,
        attempt: i32,
        outcome: &Outcome,
        progress: Option<&serde_json::Value>,
    ) -> Result<bool, StoreError> {
        let (state, code, message, status, percent) = match outcome {
            Outcome::Succeeded => (OperationState::Succeeded, None, None, None, Some(100.0)),
            Outcome::Failed {
                code,
                message,
                status,
            } => (
                OperationState::Failed,
                Some(code.as_str()),
                Some(message.as_str()),
                Some(i32::from(*status)),
                None,
            ),
            Outcome::Canceled => (OperationState::Canceled, None, None, None, None),
        };
        let r = sqlx::query(
            "update operations
                set state = $3, error_code = $4, error_message = $5, error_status = $6,
                    ended_at = now(), credentials = null, lease_owner = null, lease_expires_at = null,
                    progress = coalesce($7, progress), percent_complete = coalesce($8, percent_complete)
              where id = $1 and attempt = $2 and state = 'Running'",
        )
        .bind(id)
        .bind(attempt)
        .bind(state.as_str())
        .bind(code)
        .bind(message)
        .bind(status)
        .bind(progress.map(Json))
        .bind(percent)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Gives the operation back to the queue (shutdown, transient failure), runnable after `delay`.
    pub async fn release(
        &self,
        id: &str,
        attempt: i32,
        delay: Duration,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "update operations
                set state = 'Queued', lease_owner = null, lease_expires_at = null,
                    run_at = now() + make_interval(secs => $3)
              where id = $1 and attempt = $2 and state = 'Running'",
        )
        .bind(id)
        .bind(attempt)
        .bind(interval_secs(delay))
        .execute(self.pool())
        .await?;
        if r.rows_affected() == 1 {
            sqlx::query("select pg_notify($1, $2)")
                .bind(NOTIFY_CHANNEL)
                .bind(id)
                .execute(self.pool())
                .await?;
        }
        Ok(r.rows_affected() == 1)
    }
}
