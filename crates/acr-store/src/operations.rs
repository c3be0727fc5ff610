//! The operation queue: its types, and what every backend does the same way (credential
//! encryption, limit decisions, how an outcome is written). The SQL is in `pg` and `sqlite`.

use std::time::Duration;

use acr_core::import::StoredImport;
use acr_core::metrics;
use acr_core::operation::OperationState;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;

use crate::{Backend, Store, StoreError};

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

/// What an operation does.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// Import an image into the operation's registry.
    Import(StoredImport),
    /// Delete the operation's registry: its content in the backend, then the resource.
    DeleteRegistry,
    /// Delete the operation's resource group: its registries (each its own deletion), then
    /// the group.
    DeleteResourceGroup,
}

impl Work {
    /// The `kind` of an import.
    pub const IMPORT_KIND: &'static str = "import";

    /// The `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Work::Import(_) => Self::IMPORT_KIND,
            Work::DeleteRegistry => "deleteRegistry",
            Work::DeleteResourceGroup => "deleteResourceGroup",
        }
    }

    /// The `request` column.
    pub(crate) fn request(&self) -> Result<serde_json::Value, StoreError> {
        match self {
            Work::Import(i) => {
                serde_json::to_value(i).map_err(|e| StoreError::Corrupt(e.to_string()))
            }
            Work::DeleteRegistry | Work::DeleteResourceGroup => Ok(serde_json::json!({})),
        }
    }

    pub(crate) fn parse(kind: &str, request: serde_json::Value) -> Result<Work, StoreError> {
        match kind {
            "import" => serde_json::from_value(request)
                .map(Work::Import)
                .map_err(|e| StoreError::Corrupt(format!("stored import request: {e}"))),
            "deleteRegistry" => Ok(Work::DeleteRegistry),
            "deleteResourceGroup" => Ok(Work::DeleteResourceGroup),
            other => Err(StoreError::Corrupt(format!("operation kind '{other}'"))),
        }
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
    pub work: Work,
    pub credentials: Option<StoredCredentials>,
}

/// The first columns of every `operations` insert, in the order [`bind_new_operation`] binds
/// them (`$1`-`$8`, `?1`-`?8`); the statement adds its own after them.
pub(crate) const NEW_COLUMNS: &str =
    "id, subscription_id, resource_group, registry_name, location, api_version, request, kind";

/// Binds `op`'s [`NEW_COLUMNS`] to an insert, on either store.
pub(crate) fn bind_new_operation<'q, DB, O>(
    query: sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>,
    op: &'q NewOperation,
) -> Result<sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>, StoreError>
where
    DB: sqlx::Database,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Json<serde_json::Value>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let kind: &'q str = op.work.kind();
    Ok(query
        .bind(op.id.as_str())
        .bind(op.subscription_id.as_str())
        .bind(op.resource_group.as_str())
        .bind(op.registry_name.as_str())
        .bind(op.location.as_str())
        .bind(op.api_version.as_str())
        .bind(Json(op.work.request()?))
        .bind(kind))
}

/// An operation as the API reports it.
/// Finished operations, by id, as last read: the statuses clients poll most often after the
/// copy (a pipeline's last GETs, a portal's list) are answered without a query.
///
/// Sound because a finished operation never changes: every write to an operation is fenced
/// on `state = 'Running'` (or `in ('Queued', 'Running')`), no row is ever deleted, and what
/// else touches a finished row (clearing its lease) is not part of the record. So a record
/// read in a terminal state is the row's final content, in this process and every other one.
/// Bounded: the least recently used go first.
#[derive(Debug)]
pub(crate) struct Finished(pub(crate) quick_cache::sync::Cache<String, OperationRecord>);

impl Default for Finished {
    fn default() -> Self {
        Self(quick_cache::sync::Cache::new(FINISHED_KEPT))
    }
}

/// How many finished operations [`Finished`] keeps (a few KiB each at most).
const FINISHED_KEPT: usize = 10_000;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OperationRecord {
    pub id: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub registry_name: String,
    pub location: String,
    pub api_version: String,
    /// `import` or `deleteRegistry` ([`Work::kind`]).
    pub kind: String,
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

    /// The progress the worker last recorded, as it wrote it.
    pub fn progress_json(&self) -> Option<&serde_json::Value> {
        self.progress.as_ref().map(|p| &p.0)
    }

    /// The error an operation reports, as (code, message): a failed one always (with defaults
    /// if none was recorded), a cancelled one when it knows why (its registry was deleted).
    pub fn error(&self) -> Option<(String, String)> {
        let st = OperationState::parse(&self.state)?;
        let has_error = st == OperationState::Failed
            || (st == OperationState::Canceled && self.error_message.is_some());
        has_error.then(|| {
            (
                self.error_code
                    .clone()
                    .unwrap_or_else(|| "InternalServerError".into()),
                self.error_message
                    .clone()
                    .unwrap_or_else(|| "The operation failed.".into()),
            )
        })
    }
}

/// A claimed operation: the record, its request and credentials, and the attempt that fences it.
#[derive(Debug, Clone)]
pub struct ClaimedOperation {
    pub record: OperationRecord,
    pub work: Work,
    pub credentials: Option<StoredCredentials>,
    /// Why stored credentials could not be read (encrypted without a key, wrong key): the
    /// operation must fail rather than run without them.
    pub credentials_error: Option<String>,
    /// It was `Running` under an expired lease (its worker died or stopped renewing), not
    /// `Queued`.
    pub reclaimed: bool,
}

/// The unfinished operations, counted in the store ([`Store::queue_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// `Queued`, runnable now or after a retry delay.
    pub queued: u64,
    /// `Running` (leases expired or not).
    pub running: u64,
    /// How long the queued operation that became runnable first has been runnable (zero when
    /// none is).
    pub oldest_queued_age: Duration,
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
    /// The failure's kind decides the stored ARM code and the Location URL's status.
    Failed(acr_core::operation::ImportFailure),
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

/// Whether an insert created the operation or found it already there (idempotent retry).
#[derive(Debug, Clone)]
pub enum Enqueued {
    Created(OperationRecord),
    Existing(OperationRecord),
}

/// The columns of [`OperationRecord`], in the order both backends select them.
pub(crate) const COLUMNS: &str = "id, subscription_id, resource_group, registry_name, location, api_version, kind, state, attempt,
    progress, percent_complete, error_code, error_message, error_status, created_at, started_at, ended_at";

/// What a claim returns: the record, and the request and credentials the worker needs.
#[derive(sqlx::FromRow)]
pub(crate) struct ClaimRow {
    #[sqlx(flatten)]
    pub record: OperationRecord,
    pub request: Json<serde_json::Value>,
    pub credentials: Option<Json<serde_json::Value>>,
    /// The row was `Running` (under an expired lease) before this claim.
    pub reclaimed: bool,
}

/// The values a fenced `finish` writes, derived once from the [`Outcome`].
pub(crate) struct Ending<'a> {
    pub state: &'static str,
    pub code: Option<&'a str>,
    pub message: Option<&'a str>,
    pub status: Option<i32>,
    /// `None` keeps the recorded percentage.
    pub percent: Option<f64>,
    /// `None` keeps the recorded progress.
    pub progress: Option<&'a serde_json::Value>,
}

impl<'a> Ending<'a> {
    fn new(outcome: &'a Outcome, progress: Option<&'a serde_json::Value>) -> Self {
        let (state, code, message, status, percent) = match outcome {
            Outcome::Succeeded => (OperationState::Succeeded, None, None, None, Some(100.0)),
            Outcome::Failed(f) => (
                OperationState::Failed,
                Some(f.kind.code()),
                Some(f.message.as_str()),
                Some(i32::from(f.kind.http_status())),
                None,
            ),
            Outcome::Canceled => (OperationState::Canceled, None, None, None, None),
        };
        Self {
            state: state.as_str(),
            code,
            message,
            status,
            percent,
            progress,
        }
    }
}

/// Refuses an enqueue when `in_subscription` (unfinished operations of its subscription) or
/// `total` (unfinished operations) already reach a limit. Called inside the insert's
/// serialized transaction.
pub(crate) fn check_limits(
    op: &NewOperation,
    limits: QueueLimits,
    in_subscription: i64,
    total: i64,
) -> Result<(), StoreError> {
    let reached =
        |n: i64, limit: Option<u64>| limit.is_some_and(|l| u64::try_from(n).unwrap_or(0) >= l);
    if reached(in_subscription, limits.per_subscription) {
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
    Ok(())
}

impl QueueLimits {
    pub(crate) fn any(&self) -> bool {
        self.per_subscription.is_some() || self.total.is_some()
    }
}

impl Store {
    /// Inserts a runnable operation and wakes the workers, in one transaction. An operation with
    /// the same id already present is returned as it is.
    pub async fn enqueue(&self, op: &NewOperation) -> Result<Enqueued, StoreError> {
        self.enqueue_limited(op, QueueLimits::default()).await
    }

    /// Like [`Self::enqueue`], refusing with [`StoreError::Limit`] when the queue limits are
    /// reached. The count and the insert happen in one serialized transaction (an advisory lock
    /// on PostgreSQL, SQLite's single writer), so concurrent requests cannot overshoot a limit.
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
        let enqueued = match self.backend() {
            Backend::Postgres(pool) => crate::pg::enqueue(pool, op, credentials, limits).await,
            Backend::Sqlite(db) => db.enqueue(op, credentials, limits).await,
        };
        let how = match &enqueued {
            Ok(Enqueued::Created(_)) => Some(metrics::Enqueue::Accepted),
            Ok(Enqueued::Existing(_)) => Some(metrics::Enqueue::Repeated),
            Err(StoreError::Limit(LimitExceeded::Subscription { .. })) => {
                Some(metrics::Enqueue::RejectedSubscription)
            }
            Err(StoreError::Limit(LimitExceeded::Total { .. })) => {
                Some(metrics::Enqueue::RejectedQueue)
            }
            Err(_) => None,
        };
        if let Some(how) = how {
            metrics::operation_enqueued(op.work.kind(), how);
        }
        enqueued
    }

    /// The unfinished part of the queue as every process sees it: counted in the store, not
    /// in this process (the metrics of each replica report the shared queue).
    pub async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        match self.backend() {
            Backend::Postgres(pool) => crate::pg::queue_stats(pool).await,
            Backend::Sqlite(db) => db.queue_stats().await,
        }
    }

    pub async fn get_operation(&self, id: &str) -> Result<Option<OperationRecord>, StoreError> {
        // (A finished operation comes from memory: see `Finished`.)
        if let Some(done) = self.finished.0.get(id) {
            return Ok(Some(done));
        }
        let rec = self.get_operation_row(id).await?;
        if let Some(r) = &rec {
            if r.state().is_ok_and(OperationState::is_terminal) {
                self.finished.0.insert(r.id.clone(), r.clone());
            }
        }
        Ok(rec)
    }

    /// The operation's row as the database has it now, never from memory (the fencing tests
    /// read through this).
    pub async fn get_operation_row(&self, id: &str) -> Result<Option<OperationRecord>, StoreError> {
        match self.backend() {
            Backend::Postgres(pool) => crate::pg::get_operation(pool, id).await,
            Backend::Sqlite(db) => db.get_operation(id).await,
        }
    }

    /// Claims the oldest runnable operation: queued and due, or running with an expired lease
    /// (its worker died). One short write; increments the attempt (the fence).
    pub async fn claim(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedOperation>, StoreError> {
        let row = match self.backend() {
            Backend::Postgres(pool) => crate::pg::claim(pool, owner, lease).await?,
            Backend::Sqlite(db) => db.claim(owner, lease).await?,
        };
        let Some(r) = row else { return Ok(None) };
        let opened = r
            .credentials
            .map(|c| crate::secrets::open_stored(self.credentials_key(), &r.record.id, c.0));
        let (credentials, credentials_error) = match opened {
            None => (None, None),
            Some(Ok(c)) => (Some(c), None),
            Some(Err(e)) => (None, Some(e)),
        };
        Ok(Some(ClaimedOperation {
            work: Work::parse(&r.record.kind, r.request.0)?,
            record: r.record,
            credentials,
            credentials_error,
            reclaimed: r.reclaimed,
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
        match self.backend() {
            Backend::Postgres(pool) => {
                crate::pg::heartbeat(pool, id, attempt, lease, progress, percent_complete).await
            }
            Backend::Sqlite(db) => {
                db.heartbeat(id, attempt, lease, progress, percent_complete)
                    .await
            }
        }
    }

    /// Ends the operation (fenced). Erases the credentials in the same statement.
    pub async fn finish(
        &self,
        id: &str,
        attempt: i32,
        outcome: &Outcome,
        progress: Option<&serde_json::Value>,
    ) -> Result<bool, StoreError> {
        let ending = Ending::new(outcome, progress);
        match self.backend() {
            Backend::Postgres(pool) => crate::pg::finish(pool, id, attempt, &ending).await,
            Backend::Sqlite(db) => db.finish(id, attempt, &ending).await,
        }
    }

    /// Gives the operation back to the queue (shutdown, transient failure), runnable after `delay`.
    pub async fn release(
        &self,
        id: &str,
        attempt: i32,
        delay: Duration,
    ) -> Result<bool, StoreError> {
        match self.backend() {
            Backend::Postgres(pool) => crate::pg::release(pool, id, attempt, delay).await,
            Backend::Sqlite(db) => db.release(id, attempt, delay).await,
        }
    }
}
