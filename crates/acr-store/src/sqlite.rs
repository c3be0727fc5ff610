//! The embedded backend: one SQLite file in the data directory, for one process.
//!
//! Why it is correct for one process: SQLite has a single writer. Every write that reads
//! before it writes (enqueue with its limits, claim, registry upsert) runs in a
//! `BEGIN IMMEDIATE` transaction, which takes the write lock before the first read, so the
//! limit count and the insert, the choice of the next operation and its claim, or the check
//! and the write of a tag reservation, cannot interleave with another writer; `SKIP LOCKED`
//! has nothing to skip. Heartbeats are fenced single statements; finish and release are a
//! fenced update and the deletion of the operation's tag reservations in one transaction. A lock file next to the
//! database keeps a second process (or a second open in this one) out, because the wake-ups
//! and the lease clock are this process's own.
//!
//! Settings: WAL journal (readers never wait for the writer, so status polls do not stall
//! behind a claim); `synchronous = NORMAL`, which in WAL mode keeps every committed
//! transaction through a crash or kill of the process and never corrupts the file; only a
//! power loss or OS crash may roll back the last commits before a checkpoint. `FULL` would add
//! an fsync to every enqueue and heartbeat, for a store that is the single-machine default;
//! deployments that need more use PostgreSQL or `--registry-durability fsync`, which opens the
//! store with `FULL`. Every write goes through one connection (the
//! `writer` pool of size 1), so writers queue in this process, first come first served, and
//! never meet on SQLite's lock, whose busy handler sleeps in steps of up to 100 ms (that
//! turned a stream of enqueues next to four workers' heartbeats into a 200 ms p99); readers
//! use the other pool and never wait under WAL. `busy_timeout` stays as the guard for
//! anything else holding the lock; foreign keys are enforced.
//!
//! Timestamps are stored as fixed-width UTC text (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, see
//! `migrations/sqlite`), computed here, so comparing them as text compares times.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use acr_pidlock::PidLock;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::types::Json;
use sqlx::SqlitePool;
use tokio::sync::watch;

use crate::operations::{
    bind_new_operation, check_limits, ClaimRow, Ending, Enqueued, NewOperation, OperationRecord,
    QueueLimits, QueueStats, COLUMNS, NEW_COLUMNS,
};
use crate::registries::{RegistryRecord, Upserted, COLUMNS as REGISTRY_COLUMNS};
use crate::reservations::{Reservation, TagKey};
mod checkpoint;
mod registry_cache;
pub(crate) mod writer_thread;

use crate::write_gate::{WriteGate, WriteTx};
use crate::{StoreError, ACQUIRE_TIMEOUT};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// How long a write waits for another connection's write transaction before failing
/// (`SQLITE_BUSY`, classified as unavailable). Writes last well under a millisecond.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections: readers run in parallel under WAL, writers queue on SQLite's lock.
const MAX_CONNECTIONS: u32 = 8;

/// Longest delay or lease written: keeps timestamps within four-digit years.
const MAX_DELAY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The SQLite store: pool, wake-up signal and the lock that keeps other processes out.
#[derive(Clone, Debug)]
pub(crate) struct SqliteStore {
    pool: SqlitePool,
    writer: SqlitePool,
    /// The turn of the writes no client waits for (`write_gate`).
    gate: WriteGate,
    /// Writes since the last checkpoint, and whether one runs (`checkpoint`).
    checkpoints: Arc<checkpoint::Checkpoints>,
    wake: Arc<watch::Sender<u64>>,
    /// The registries as last read (`registry_cache`): every write to `registries` in this
    /// process calls [`SqliteStore::registries_changed`].
    registries: Arc<registry_cache::RegistryCache>,
    /// Held (and the lock with it) until the last clone is dropped.
    _lock: Arc<PidLock>,
}

/// An exclusive `flock` on `<database>.lock` (`acr_pidlock`), holding the owner's pid for the
/// refusal message; a second open of the same file, even in this process, is refused too.
fn take_lock(lock_path: &Path, dir: &Path) -> Result<PidLock, StoreError> {
    PidLock::acquire(lock_path).map_err(|e| match e {
        acr_pidlock::Error::Held { pid } => StoreError::Locked {
            dir: dir.to_owned(),
            pid,
        },
        acr_pidlock::Error::Io(source) => StoreError::LockFile {
            path: lock_path.to_owned(),
            source,
        },
    })
}

/// A timestamp as the SQLite schema stores it.
/// The operation a claim takes: the oldest due one. The `state in (…)` term repeats the
/// partial index's own condition, the only way SQLite uses that index: without it the `or`
/// made every claim scan and sort the whole table, every operation ever run (25 ms under the
/// write lock at 200,000 rows; a test checks the plan).
const CLAIM_NEXT: &str = "select id, state from operations
  where state in ('Queued', 'Running')
    and ((state = 'Queued' and run_at <= ?1)
         or (state = 'Running' and lease_expires_at < ?1))
  order by run_at, created_at
  limit 1";

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// `now + d`, as stored.
fn stamp_after(now: DateTime<Utc>, d: Duration) -> String {
    stamp(now + TimeDelta::from_std(d.min(MAX_DELAY)).unwrap_or(TimeDelta::zero()))
}

impl SqliteStore {
    pub(crate) async fn open(path: &Path, durable: bool) -> Result<Self, StoreError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock = take_lock(Path::new(&lock_path), &dir)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if durable {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // The writer never checkpoints: SQLite's automatic checkpoint runs in the connection
        // whose commit crossed 1,000 pages of journal, copying them into the database file and
        // syncing it, and that connection is every write's (`checkpoint`).
        //
        // Every connection is opened here and kept for the store's life (no idle timeout, no
        // lifetime): each is a thread and a file to set up, which no request should wait for.
        // None is pinged before it is handed out (a trip to its thread before each query):
        // there is no server to go away, and sqlx pings each as it comes back to the pool,
        // dropping one whose thread failed.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(MAX_CONNECTIONS)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        // `min_connections` is filled by a task of the pool's; open them all now.
        let opened =
            futures::future::try_join_all((0..MAX_CONNECTIONS).map(|_| pool.acquire())).await?;
        drop(opened);
        let (wake, _) = watch::channel(0);
        Ok(Self {
            pool,
            writer,
            gate: WriteGate::default(),
            checkpoints: Arc::default(),
            wake: Arc::new(wake),
            registries: Arc::default(),
            _lock: Arc::new(lock),
        })
    }

    /// The readers' pool. Statements that write go to [`writer`](Self::writer).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The one connection every write goes through: writers queue in this process, in order,
    /// instead of on SQLite's lock, whose busy handler sleeps and retries (1, 2, 5, 10, … ms)
    /// and so turns a moment of contention into tens of milliseconds.
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    /// Tells the wake-up subscribers an operation may be runnable (after the commit).
    pub(crate) fn wake(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A write to `registries` committed or failed: the registries read before it are
    /// forgotten (`registry_cache`).
    pub(crate) fn registries_changed(&self) {
        self.registries.changed();
    }

    /// A write transaction that holds SQLite's write lock from its first statement, begun in
    /// the turn of the writes no client waits for (`write_gate`).
    pub(crate) async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        self.checkpoint_now();
        Ok(self.gate.begin(&self.writer).await?)
    }

    /// Counts a write; every so many, checkpoints the journal beside the writer (`checkpoint`).
    fn checkpoint_now(&self) {
        self.checkpoints.count_write(&self.pool, &self.writer);
    }

    // Statements with RETURNING are read to the end (`fetch_all`): sqlx may leave a half-read
    // statement open, and an autocommit write (the enqueue's one statement) is committed only
    // when its statement completes.

    pub(crate) async fn enqueue(
        &self,
        op: &NewOperation,
        credentials: Option<serde_json::Value>,
        limits: QueueLimits,
    ) -> Result<Enqueued, StoreError> {
        if let Some(rec) = self
            .enqueue_at_once(op, credentials.as_ref(), limits)
            .await?
        {
            self.wake();
            return Ok(Enqueued::Created(rec));
        }
        self.enqueue_checked(op, credentials, limits).await
    }

    /// The common case in one statement, so one trip to the writer's thread instead of five
    /// (each a wait for a core on a busy machine, with the write lock held), queued for the
    /// writer ahead of the workers' writes (`write_gate`). `None`: not inserted;
    /// [`enqueue_checked`](Self::enqueue_checked) then says why, in a transaction.
    async fn enqueue_at_once(
        &self,
        op: &NewOperation,
        credentials: Option<&serde_json::Value>,
        limits: QueueLimits,
    ) -> Result<Option<OperationRecord>, StoreError> {
        self.checkpoint_now();
        let mut conn = self.writer.acquire().await?;
        insert_if_room(&mut conn, op, credentials, limits).await
    }

    /// [`enqueue`](Self::enqueue) when the one statement inserted nothing: returns the
    /// operation of the same id, refuses at a limit, or inserts (the queue moved in between).
    async fn enqueue_checked(
        &self,
        op: &NewOperation,
        credentials: Option<serde_json::Value>,
        limits: QueueLimits,
    ) -> Result<Enqueued, StoreError> {
        let mut tx = self.begin_write().await?;
        let existing: Option<OperationRecord> =
            sqlx::query_as(&format!("select {COLUMNS} from operations where id = ?1"))
                .bind(&op.id)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(rec) = existing {
            tx.commit().await?;
            return Ok(Enqueued::Existing(rec));
        }
        if limits.any() {
            let (in_sub, total): (i64, i64) = sqlx::query_as(
                "select count(*) filter (where subscription_id = ?1), count(*)
                   from operations where state in ('Queued', 'Running') and kind = 'import'",
            )
            .bind(&op.subscription_id)
            .fetch_one(&mut *tx)
            .await?;
            check_limits(op, limits, in_sub, total)?;
        }
        // No row has the id and the limits have room, under the write lock.
        let rec = insert_if_room(&mut tx, op, credentials.as_ref(), QueueLimits::default())
            .await?
            .ok_or_else(|| StoreError::Corrupt("the inserted operation was not returned".into()))?;
        tx.commit().await?;
        self.wake();
        Ok(Enqueued::Created(rec))
    }

    pub(crate) async fn get_operation(
        &self,
        id: &str,
    ) -> Result<Option<OperationRecord>, StoreError> {
        Ok(
            sqlx::query_as(&format!("select {COLUMNS} from operations where id = ?1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub(crate) async fn claim(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<ClaimRow>, StoreError> {
        let mut tx = self.begin_write().await?;
        // The clock is read once the write lock is held, so the lease starts now.
        let now = Utc::now();
        // Chosen, then claimed, under the one write lock: nothing can come in between, and
        // the state it had before (RETURNING shows only the new one) tells a re-claim.
        let next: Option<(String, String)> = sqlx::query_as(CLAIM_NEXT)
            .bind(stamp(now))
            .fetch_optional(&mut *tx)
            .await?;
        let Some((id, prior_state)) = next else {
            tx.commit().await?;
            return Ok(None);
        };
        let mut rows: Vec<ClaimRow> = sqlx::query_as(&format!(
            "update operations
                set state = 'Running', attempt = attempt + 1, lease_owner = ?1,
                    lease_expires_at = ?2, started_at = coalesce(started_at, ?3)
              where id = ?4
          returning {COLUMNS}, request, credentials, ?5 as reclaimed"
        ))
        .bind(owner)
        .bind(stamp_after(now, lease))
        .bind(stamp(now))
        .bind(&id)
        .bind(prior_state == "Running")
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows.pop())
    }

    /// Counts of the unfinished operations and how long the earliest runnable queued one has
    /// waited (its time read here: SQLite's `julianday` keeps milliseconds only).
    pub(crate) async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let now = Utc::now();
        let (queued, running, oldest): (i64, i64, Option<String>) = sqlx::query_as(
            "select coalesce(sum(state = 'Queued'), 0),
                    coalesce(sum(state = 'Running'), 0),
                    min(case when state = 'Queued' and run_at <= ?1 then run_at end)
               from operations
              where state in ('Queued', 'Running')",
        )
        .bind(stamp(now))
        .fetch_one(&self.pool)
        .await?;
        let oldest = match oldest {
            None => None,
            Some(t) => Some(
                DateTime::parse_from_rfc3339(&t)
                    .map_err(|e| StoreError::Corrupt(format!("operation run_at '{t}': {e}")))?
                    .with_timezone(&Utc),
            ),
        };
        Ok(QueueStats {
            queued: u64::try_from(queued).unwrap_or(0),
            running: u64::try_from(running).unwrap_or(0),
            oldest_queued_age: oldest
                .and_then(|t| (now - t).to_std().ok())
                .unwrap_or_default(),
        })
    }

    pub(crate) async fn heartbeat(
        &self,
        id: &str,
        attempt: i32,
        lease: Duration,
        progress: Option<&serde_json::Value>,
        percent_complete: f64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "update operations
                set lease_expires_at = ?3, progress = coalesce(?4, progress), percent_complete = ?5
              where id = ?1 and attempt = ?2 and state = 'Running'",
        )
        .bind(id)
        .bind(attempt)
        .bind(stamp_after(Utc::now(), lease))
        .bind(progress.map(Json))
        .bind(percent_complete)
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub(crate) async fn finish(
        &self,
        id: &str,
        attempt: i32,
        e: &Ending<'_>,
    ) -> Result<bool, StoreError> {
        // The operation's tag reservations go in the transaction that ends it.
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "update operations
                set state = ?3, error_code = ?4, error_message = ?5, error_status = ?6,
                    ended_at = ?9, credentials = null, lease_owner = null, lease_expires_at = null,
                    progress = coalesce(?7, progress), percent_complete = coalesce(?8, percent_complete)
              where id = ?1 and attempt = ?2 and state = 'Running'",
        )
        .bind(id)
        .bind(attempt)
        .bind(e.state)
        .bind(e.code)
        .bind(e.message)
        .bind(e.status)
        .bind(e.progress.map(Json))
        .bind(e.percent)
        .bind(stamp(Utc::now()))
        .execute(&mut *tx)
        .await?;
        let ended = r.rows_affected() == 1;
        if ended {
            unreserve(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(ended)
    }

    pub(crate) async fn release(
        &self,
        id: &str,
        attempt: i32,
        delay: Duration,
    ) -> Result<bool, StoreError> {
        // A released operation holds no tags: its next attempt reserves them again.
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "update operations
                set state = 'Queued', lease_owner = null, lease_expires_at = null, run_at = ?3
              where id = ?1 and attempt = ?2 and state = 'Running'",
        )
        .bind(id)
        .bind(attempt)
        .bind(stamp_after(Utc::now(), delay))
        .execute(&mut *tx)
        .await?;
        let released = r.rows_affected() == 1;
        if released {
            unreserve(&mut tx, id).await?;
        }
        tx.commit().await?;
        if released {
            self.wake();
        }
        Ok(released)
    }

    pub(crate) async fn reserve_tags(
        &self,
        id: &str,
        attempt: i32,
        tags: &[TagKey],
    ) -> Result<Reservation, StoreError> {
        // SQLite's single writer: nothing interleaves between the reads and writes below.
        let mut tx = self.begin_write().await?;
        let now = stamp(Utc::now());
        let running: Option<(i32,)> = sqlx::query_as(
            "select attempt from operations where id = ?1 and attempt = ?2 and state = 'Running'",
        )
        .bind(id)
        .bind(attempt)
        .fetch_optional(&mut *tx)
        .await?;
        if running.is_none() {
            return Ok(Reservation::Lost);
        }
        for t in tags {
            // The holder of the tag, if its attempt still runs under an unexpired lease.
            let live: Option<(String,)> = sqlx::query_as(
                "select r.operation_id from tag_reservations r
                   join operations o on o.id = r.operation_id and o.attempt = r.attempt
                  where r.repository = ?1 and r.tag = ?2 and r.operation_id <> ?3
                    and o.state = 'Running' and o.lease_expires_at > ?4",
            )
            .bind(&t.repository)
            .bind(&t.tag)
            .bind(id)
            .bind(&now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((holder,)) = live {
                tx.rollback().await?;
                return Ok(Reservation::Held {
                    tag: t.clone(),
                    operation_id: holder,
                });
            }
            sqlx::query(
                "insert into tag_reservations (repository, tag, operation_id, attempt, reserved_at)
                 values (?1, ?2, ?3, ?4, ?5)
                 on conflict (repository, tag) do update
                    set operation_id = excluded.operation_id, attempt = excluded.attempt,
                        reserved_at = excluded.reserved_at",
            )
            .bind(&t.repository)
            .bind(&t.tag)
            .bind(id)
            .bind(attempt)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Reservation::Reserved)
    }

    pub(crate) async fn confirm_tags(
        &self,
        id: &str,
        attempt: i32,
        lease: Duration,
        expected: i64,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let r = sqlx::query(
            "update operations
                set lease_expires_at = ?3
              where id = ?1 and attempt = ?2 and state = 'Running' and lease_expires_at > ?4
                and (select count(*) from tag_reservations
                      where operation_id = ?1 and attempt = ?2) = ?5",
        )
        .bind(id)
        .bind(attempt)
        .bind(stamp_after(now, lease))
        .bind(stamp(now))
        .bind(expected)
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub(crate) async fn upsert_registry(&self, r: &RegistryRecord) -> Result<Upserted, StoreError> {
        let out = self.upsert_registry_once(r).await;
        self.registries_changed();
        out
    }

    async fn upsert_registry_once(&self, r: &RegistryRecord) -> Result<Upserted, StoreError> {
        let rg_lower = r.resource_group.to_lowercase();
        let mut tx = self.begin_write().await?;
        let owner: Option<(String, String, Option<String>)> = sqlx::query_as(
            "select subscription_id, resource_group_lower, deleting_since from registries where name_lower = ?1",
        )
        .bind(&r.name_lower)
        .fetch_optional(&mut *tx)
        .await?;
        let now = stamp(Utc::now());
        let done = match owner {
            None => {
                sqlx::query(
                    "insert into registries (name, name_lower, subscription_id, resource_group, resource_group_lower,
                                             location, sku, tags, properties, created_at, updated_at)
                     values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
                )
                .bind(&r.name)
                .bind(&r.name_lower)
                .bind(&r.subscription_id)
                .bind(&r.resource_group)
                .bind(&rg_lower)
                .bind(&r.location)
                .bind(&r.sku)
                .bind(&r.tags)
                .bind(&r.properties)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
                Upserted::Created
            }
            Some((sub, rg, Some(_))) if sub == r.subscription_id && rg == rg_lower => {
                Upserted::Deleting
            }
            Some((sub, rg, None)) if sub == r.subscription_id && rg == rg_lower => {
                sqlx::query(
                    "update registries
                        set location = ?2, sku = ?3, tags = ?4, properties = ?5, updated_at = ?6
                      where name_lower = ?1",
                )
                .bind(&r.name_lower)
                .bind(&r.location)
                .bind(&r.sku)
                .bind(&r.tags)
                .bind(&r.properties)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
                Upserted::Updated
            }
            Some(_) => Upserted::NameTaken,
        };
        tx.commit().await?;
        Ok(done)
    }

    pub(crate) async fn get_registry(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
    ) -> Result<Option<RegistryRecord>, StoreError> {
        let rg_lower = resource_group.to_lowercase();
        let name_lower = name.to_lowercase();
        let key = format!("{subscription}\n{rg_lower}\n{name_lower}");
        self.cached_registry(key, |pool| async move {
            Ok(sqlx::query_as(&format!(
                "select {REGISTRY_COLUMNS} from registries
                 where name_lower = ?3 and subscription_id = ?1 and resource_group_lower = ?2"
            ))
            .bind(subscription)
            .bind(rg_lower)
            .bind(name_lower)
            .fetch_optional(&pool)
            .await?)
        })
        .await
    }

    pub(crate) async fn get_registry_by_name(
        &self,
        name: &str,
    ) -> Result<Option<RegistryRecord>, StoreError> {
        let name_lower = name.to_lowercase();
        let key = format!("\n\n{name_lower}");
        self.cached_registry(key, |pool| async move {
            Ok(sqlx::query_as(&format!(
                "select {REGISTRY_COLUMNS} from registries where name_lower = ?1"
            ))
            .bind(name_lower)
            .fetch_optional(&pool)
            .await?)
        })
        .await
    }

    /// A registry lookup through the cache (`registry_cache`): `query` runs on a reader when
    /// no write finished since `key` was last looked up; what it finds is kept.
    async fn cached_registry<F, Fut>(
        &self,
        key: String,
        query: F,
    ) -> Result<Option<RegistryRecord>, StoreError>
    where
        F: FnOnce(SqlitePool) -> Fut,
        Fut: std::future::Future<Output = Result<Option<RegistryRecord>, StoreError>>,
    {
        if let Some(r) = self.registries.get(&key) {
            return Ok(Some(r));
        }
        let generation = self.registries.generation();
        let found = query(self.pool.clone()).await?;
        if let Some(r) = &found {
            self.registries.put(generation, key, r);
        }
        Ok(found)
    }

    pub(crate) async fn delete_registry(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "delete from registries
             where name_lower = ?3 and subscription_id = ?1 and resource_group_lower = ?2",
        )
        .bind(subscription)
        .bind(resource_group.to_lowercase())
        .bind(name.to_lowercase())
        .execute(&self.writer)
        .await;
        self.registries_changed();
        Ok(r?.rows_affected() > 0)
    }

    pub(crate) async fn list_registries(
        &self,
        subscription: &str,
        resource_group: Option<&str>,
    ) -> Result<Vec<RegistryRecord>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "select {REGISTRY_COLUMNS} from registries
             where subscription_id = ?1 and (?2 is null or resource_group_lower = ?2)
             order by name_lower"
        ))
        .bind(subscription)
        .bind(resource_group.map(str::to_lowercase))
        .fetch_all(&self.pool)
        .await?)
    }

    pub(crate) async fn registry_subscriptions(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("select distinct subscription_id from registries order by 1")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(s,)| s).collect())
    }

    pub(crate) async fn resource_group(
        &self,
        subscription: &str,
        resource_group: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "select resource_group, location from registries
             where subscription_id = ?1 and resource_group_lower = ?2
             order by created_at limit 1",
        )
        .bind(subscription)
        .bind(resource_group.to_lowercase())
        .fetch_optional(&self.pool)
        .await?)
    }
}

/// Inserts the operation if no row has its id and both limits still have room, counted inside
/// the same statement (SQLite runs it under the write lock, so nothing comes in between).
/// `None`: not inserted.
async fn insert_if_room(
    conn: &mut sqlx::SqliteConnection,
    op: &NewOperation,
    credentials: Option<&serde_json::Value>,
    limits: QueueLimits,
) -> Result<Option<OperationRecord>, StoreError> {
    let limit = |l: Option<u64>| l.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
    let query = format!(
        "insert into operations ({NEW_COLUMNS}, credentials, run_at, created_at)
         select ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10
          where (?11 is null or (select count(*) from operations
                                  where state in ('Queued', 'Running') and kind = 'import'
                                    and subscription_id = ?2) < ?11)
            and (?12 is null or (select count(*) from operations
                                  where state in ('Queued', 'Running') and kind = 'import') < ?12)
         on conflict (id) do nothing
         returning {COLUMNS}"
    );
    let mut rows: Vec<OperationRecord> = bind_new_operation(sqlx::query_as(&query), op)?
        .bind(credentials.map(Json))
        .bind(stamp(Utc::now()))
        .bind(limit(limits.per_subscription))
        .bind(limit(limits.total))
        .fetch_all(conn)
        .await?;
    Ok(rows.pop())
}

/// Deletes the tag reservations of operation `id` (in the caller's transaction).
async fn unreserve(tx: &mut WriteTx, id: &str) -> Result<(), StoreError> {
    sqlx::query("delete from tag_reservations where operation_id = ?1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue's hot statements read the unfinished operations through the partial index,
    /// never the whole table (which keeps every operation ever run).
    #[tokio::test]
    async fn the_claim_and_the_limit_counts_use_the_unfinished_operations_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::Store::open_sqlite(&dir.path().join("store.db"))
            .await
            .expect("open");
        store.migrate().await.expect("migrate");
        let crate::Backend::Sqlite(db) = &store.backend else {
            unreachable!("a SQLite store")
        };
        for sql in [
            CLAIM_NEXT,
            "select count(*) filter (where subscription_id = ?1), count(*)
               from operations where state in ('Queued', 'Running') and kind = 'import'",
        ] {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("explain query plan {sql}"))
                    .bind("x")
                    .fetch_all(db.pool())
                    .await
                    .expect("plan");
            let steps: Vec<&str> = plan.iter().map(|p| p.3.as_str()).collect();
            assert!(
                steps
                    .iter()
                    .any(|s| s.contains("USING INDEX operations_runnable")),
                "{sql}: {steps:?}"
            );
            assert!(!steps.contains(&"SCAN operations"), "{sql}: {steps:?}");
        }
    }
}
