//! The PostgreSQL backend: shared by any number of processes. Claims use `FOR UPDATE SKIP
//! LOCKED`, the queue limits an advisory lock held by the insert's transaction, wake-ups
//! `NOTIFY` (sent in the transaction that makes an operation runnable).

use std::time::Duration;

use sqlx::types::Json;
use sqlx::{FromRow, PgPool, Row};

use crate::operations::{
    check_limits, ClaimRow, Ending, Enqueued, NewOperation, OperationRecord, QueueLimits,
    QueueStats, COLUMNS,
};
use crate::registries::{RegistryRecord, Upserted, COLUMNS as REGISTRY_COLUMNS};
use crate::reservations::{Reservation, TagKey};
use crate::{StoreError, NOTIFY_CHANNEL};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The queue's advisory lock (a bigint key): taken shared by enqueues that are far from the
/// total limit, exclusively near it. See [`enqueue`].
const ENQUEUE_LOCK: i64 = 0x6163_725f_696d_706f; // "acr_impo"
/// The namespace of the per-subscription advisory locks (two-int keys: this, the hash of the
/// subscription id).
const SUBSCRIPTION_LOCKS: i32 = 0x6163_7273; // "acrs"

fn interval_secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Enqueues `op` in one call of the `acr_enqueue` function (migration
/// `20261207000001_enqueue_function.sql`: one round trip and one commit), keeping the queue
/// limits exact across processes without making every enqueue wait for the one before it to
/// commit:
/// - the per-subscription limit under that subscription's own lock (held to commit), so only
///   enqueues of one subscription queue behind each other;
/// - the total limit under the queue lock taken *shared*: an enqueue counts the committed
///   unfinished operations and the enqueues holding the lock with it (`pg_locks`, read before
///   the count, so none is missed: one that committed before the read is in the count, one
///   that took the lock after it sees this one in its own read). If all of them might not fit
///   (outcome `retry`), it calls again with the lock taken *exclusively*, which waits for them
///   to commit and counts exactly.
pub(crate) async fn enqueue(
    pool: &PgPool,
    op: &NewOperation,
    credentials: Option<serde_json::Value>,
    limits: QueueLimits,
) -> Result<Enqueued, StoreError> {
    let request = Json(op.work.request()?);
    let credentials = credentials.map(Json);
    let limit = |l: Option<u64>| l.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    // Shared first; an exclusive attempt always decides.
    let mut exclusive = false;
    loop {
        let row = sqlx::query(&format!(
            "select outcome, n_sub, n_total, {COLUMNS}
               from acr_enqueue($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .bind(&op.id)
        .bind(&op.subscription_id)
        .bind(&op.resource_group)
        .bind(&op.registry_name)
        .bind(&op.location)
        .bind(&op.api_version)
        .bind(&request)
        .bind(&credentials)
        .bind(op.work.kind())
        .bind(NOTIFY_CHANNEL)
        .bind(limit(limits.per_subscription))
        .bind(limit(limits.total))
        .bind(exclusive)
        .bind(ENQUEUE_LOCK)
        .bind(SUBSCRIPTION_LOCKS)
        .fetch_one(pool)
        .await?;
        let outcome: String = row.try_get("outcome")?;
        match outcome.as_str() {
            "created" => return Ok(Enqueued::Created(OperationRecord::from_row(&row)?)),
            "existing" => return Ok(Enqueued::Existing(OperationRecord::from_row(&row)?)),
            "retry" if !exclusive => exclusive = true,
            "limit" => {
                let in_sub: i64 = row.try_get("n_sub")?;
                let total: i64 = row.try_get("n_total")?;
                check_limits(op, limits, in_sub, total)?;
                return Err(StoreError::Corrupt(format!(
                    "acr_enqueue reported a queue limit reached at {in_sub} in the subscription and {total} in all, under the limits {limits:?}"
                )));
            }
            other => {
                return Err(StoreError::Corrupt(format!(
                    "acr_enqueue answered {other:?} (exclusive: {exclusive})"
                )))
            }
        }
    }
}

pub(crate) async fn get_operation(
    pool: &PgPool,
    id: &str,
) -> Result<Option<OperationRecord>, StoreError> {
    Ok(
        sqlx::query_as(&format!("select {COLUMNS} from operations where id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

pub(crate) async fn claim(
    pool: &PgPool,
    owner: &str,
    lease: Duration,
) -> Result<Option<ClaimRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "with next as (
             select id, state as prior_state from operations
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
      returning {}, o.request, o.credentials, next.prior_state = 'Running' as reclaimed",
        COLUMNS
            .split(',')
            .map(|c| format!("o.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .bind(owner)
    .bind(interval_secs(lease))
    .fetch_optional(pool)
    .await?)
}

/// Counts of the unfinished operations (the `operations_runnable` partial index holds exactly
/// them) and how long the earliest runnable queued one has waited.
pub(crate) async fn queue_stats(pool: &PgPool) -> Result<QueueStats, StoreError> {
    let (queued, running, oldest): (i64, i64, Option<f64>) = sqlx::query_as(
        "select count(*) filter (where state = 'Queued'),
                count(*) filter (where state = 'Running'),
                extract(epoch from now() - min(run_at) filter (where state = 'Queued' and run_at <= now()))::float8
           from operations
          where state in ('Queued', 'Running')",
    )
    .fetch_one(pool)
    .await?;
    Ok(QueueStats {
        queued: u64::try_from(queued).unwrap_or(0),
        running: u64::try_from(running).unwrap_or(0),
        oldest_queued_age: age(oldest),
    })
}

/// Seconds as a duration (none, negative or not finite: zero).
fn age(seconds: Option<f64>) -> Duration {
    seconds
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or_default()
}

pub(crate) async fn heartbeat(
    pool: &PgPool,
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
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub(crate) async fn finish(
    pool: &PgPool,
    id: &str,
    attempt: i32,
    e: &Ending<'_>,
) -> Result<bool, StoreError> {
    // The operation's tag reservations go in the same statement that ends it.
    let r = sqlx::query(
        "with ended as (
             update operations
                set state = $3, error_code = $4, error_message = $5, error_status = $6,
                    ended_at = now(), credentials = null, lease_owner = null, lease_expires_at = null,
                    progress = coalesce($7, progress), percent_complete = coalesce($8, percent_complete)
              where id = $1 and attempt = $2 and state = 'Running'
          returning id
         ), unreserved as (
             delete from tag_reservations where operation_id in (select id from ended)
         )
         select id from ended",
    )
    .bind(id)
    .bind(attempt)
    .bind(e.state)
    .bind(e.code)
    .bind(e.message)
    .bind(e.status)
    .bind(e.progress.map(Json))
    .bind(e.percent)
    .fetch_optional(pool)
    .await?;
    Ok(r.is_some())
}

pub(crate) async fn release(
    pool: &PgPool,
    id: &str,
    attempt: i32,
    delay: Duration,
) -> Result<bool, StoreError> {
    // A released operation holds no tags: its next attempt reserves them again.
    let r = sqlx::query(
        "with released as (
             update operations
                set state = 'Queued', lease_owner = null, lease_expires_at = null,
                    run_at = now() + make_interval(secs => $3)
              where id = $1 and attempt = $2 and state = 'Running'
          returning id
         ), unreserved as (
             delete from tag_reservations where operation_id in (select id from released)
         )
         select id from released",
    )
    .bind(id)
    .bind(attempt)
    .bind(interval_secs(delay))
    .fetch_optional(pool)
    .await?;
    let released = r.is_some();
    if released {
        sqlx::query("select pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(id)
            .execute(pool)
            .await?;
    }
    Ok(released)
}

/// A reservation row counts while its attempt runs under an unexpired lease.
const LIVE_HOLDER: &str = "exists (select 1 from operations o
                                 where o.id = tag_reservations.operation_id
                                   and o.attempt = tag_reservations.attempt
                                   and o.state = 'Running' and o.lease_expires_at > now())";

pub(crate) async fn reserve_tags(
    pool: &PgPool,
    id: &str,
    attempt: i32,
    tags: &[TagKey],
) -> Result<Reservation, StoreError> {
    let mut tx = pool.begin().await?;
    let running: Option<(i32,)> = sqlx::query_as(
        "select attempt from operations where id = $1 and attempt = $2 and state = 'Running'
         for update",
    )
    .bind(id)
    .bind(attempt)
    .fetch_optional(&mut *tx)
    .await?;
    if running.is_none() {
        return Ok(Reservation::Lost);
    }
    // In the tags' sorted order, so overlapping reservers cannot deadlock. A conflicting row
    // is taken over only when it is this operation's or its holder no longer counts.
    for t in tags {
        let taken: Option<(String,)> = sqlx::query_as(&format!(
            "insert into tag_reservations (repository, tag, operation_id, attempt)
             values ($1, $2, $3, $4)
             on conflict (repository, tag) do update
                set operation_id = excluded.operation_id, attempt = excluded.attempt,
                    reserved_at = now()
              where tag_reservations.operation_id = excluded.operation_id
                 or not {LIVE_HOLDER}
             returning operation_id"
        ))
        .bind(&t.repository)
        .bind(&t.tag)
        .bind(id)
        .bind(attempt)
        .fetch_optional(&mut *tx)
        .await?;
        if taken.is_none() {
            let holder: Option<(String,)> = sqlx::query_as(
                "select operation_id from tag_reservations where repository = $1 and tag = $2",
            )
            .bind(&t.repository)
            .bind(&t.tag)
            .fetch_optional(&mut *tx)
            .await?;
            tx.rollback().await?;
            return Ok(Reservation::Held {
                tag: t.clone(),
                operation_id: holder.map(|(h,)| h).unwrap_or_default(),
            });
        }
    }
    tx.commit().await?;
    Ok(Reservation::Reserved)
}

pub(crate) async fn confirm_tags(
    pool: &PgPool,
    id: &str,
    attempt: i32,
    lease: Duration,
    expected: i64,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "update operations
            set lease_expires_at = now() + make_interval(secs => $3)
          where id = $1 and attempt = $2 and state = 'Running' and lease_expires_at > now()
            and (select count(*) from tag_reservations
                  where operation_id = $1 and attempt = $2) = $4",
    )
    .bind(id)
    .bind(attempt)
    .bind(interval_secs(lease))
    .bind(expected)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub(crate) async fn upsert_registry(
    pool: &PgPool,
    r: &RegistryRecord,
) -> Result<Upserted, StoreError> {
    let row: Option<(bool,)> = sqlx::query_as(
        "insert into registries (name, name_lower, subscription_id, resource_group, location, sku, tags, properties)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         on conflict (name_lower) do update
           set location = excluded.location, sku = excluded.sku, tags = excluded.tags,
               properties = excluded.properties, updated_at = now()
           where registries.subscription_id = excluded.subscription_id
             and lower(registries.resource_group) = lower(excluded.resource_group)
             and registries.deleting_since is null
         returning (xmax = 0)",
    )
    .bind(&r.name)
    .bind(&r.name_lower)
    .bind(&r.subscription_id)
    .bind(&r.resource_group)
    .bind(&r.location)
    .bind(&r.sku)
    .bind(&r.tags)
    .bind(&r.properties)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some((true,)) => Upserted::Created,
        Some((false,)) => Upserted::Updated,
        None => {
            let deleting: Option<(bool,)> = sqlx::query_as(
                "select deleting_since is not null from registries
                  where name_lower = $1 and subscription_id = $2
                    and lower(resource_group) = lower($3)",
            )
            .bind(&r.name_lower)
            .bind(&r.subscription_id)
            .bind(&r.resource_group)
            .fetch_optional(pool)
            .await?;
            match deleting {
                Some((true,)) => Upserted::Deleting,
                _ => Upserted::NameTaken,
            }
        }
    })
}

pub(crate) async fn get_registry(
    pool: &PgPool,
    subscription: &str,
    resource_group: &str,
    name: &str,
) -> Result<Option<RegistryRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "select {REGISTRY_COLUMNS} from registries
         where name_lower = lower($3) and subscription_id = $1 and lower(resource_group) = lower($2)"
    ))
    .bind(subscription)
    .bind(resource_group)
    .bind(name)
    .fetch_optional(pool)
    .await?)
}

pub(crate) async fn get_registry_by_name(
    pool: &PgPool,
    name: &str,
) -> Result<Option<RegistryRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "select {REGISTRY_COLUMNS} from registries where name_lower = lower($1)"
    ))
    .bind(name)
    .fetch_optional(pool)
    .await?)
}

pub(crate) async fn delete_registry(
    pool: &PgPool,
    subscription: &str,
    resource_group: &str,
    name: &str,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "delete from registries
         where name_lower = lower($3) and subscription_id = $1 and lower(resource_group) = lower($2)",
    )
    .bind(subscription)
    .bind(resource_group)
    .bind(name)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub(crate) async fn list_registries(
    pool: &PgPool,
    subscription: &str,
    resource_group: Option<&str>,
) -> Result<Vec<RegistryRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "select {REGISTRY_COLUMNS} from registries
         where subscription_id = $1 and ($2::text is null or lower(resource_group) = lower($2))
         order by name_lower"
    ))
    .bind(subscription)
    .bind(resource_group)
    .fetch_all(pool)
    .await?)
}

pub(crate) async fn registry_subscriptions(pool: &PgPool) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> =
        sqlx::query_as("select distinct subscription_id from registries order by 1")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|(s,)| s).collect())
}

pub(crate) async fn resource_group(
    pool: &PgPool,
    subscription: &str,
    resource_group: &str,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(sqlx::query_as(
        "select resource_group, location from registries
         where subscription_id = $1 and lower(resource_group) = lower($2)
         order by created_at limit 1",
    )
    .bind(subscription)
    .bind(resource_group)
    .fetch_optional(pool)
    .await?)
}
