//! What the retention sweep reads (ACR's `retentionPolicy`: untagged manifests older than
//! `days` are deleted) and the lock that keeps two sweeps apart.
//!
//! The sweep itself (which manifests to delete, in which order, through which path) is the
//! front door's (`acr_frontdoor::retention`); this module only answers from the metadata and
//! hands out the lock. Both dialects side by side, as in `lifecycle`.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use crate::metadata::ChildRef;
use crate::{Backend, Store, StoreError};

/// One manifest of a registry as the sweep judges it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RetentionRow {
    pub repository: String,
    pub digest: String,
    pub media_type: String,
    /// An index's children.
    pub refs: Option<Json<Vec<ChildRef>>>,
    /// Its last update: creation, a push or import that tagged it, or the moment it lost a
    /// tag (the retention period counts from there).
    pub updated_at: DateTime<Utc>,
    pub delete_enabled: bool,
    /// Whether a tag points at it.
    pub tagged: bool,
}

/// The advisory lock key of the retention sweep (PostgreSQL): "acr-ret" in ASCII.
const SWEEP_LOCK_KEY: i64 = 0x0061_6372_2d72_6574;

/// The retention sweep's lock, held until [`SweepLock::release`] (or until dropped: the
/// PostgreSQL session that holds it is closed then, which releases it).
pub struct SweepLock {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
}

impl std::fmt::Debug for SweepLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SweepLock")
            .field("postgres", &self.conn.is_some())
            .finish()
    }
}

impl SweepLock {
    /// Releases the lock; the connection goes back to the pool only when the unlock worked.
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take() {
            let unlocked: Result<bool, sqlx::Error> =
                sqlx::query_scalar("select pg_advisory_unlock($1)")
                    .bind(SWEEP_LOCK_KEY)
                    .fetch_one(&mut *conn)
                    .await;
            if !matches!(unlocked, Ok(true)) {
                // Closing the session releases whatever it holds.
                drop(conn.detach());
            }
        }
    }
}

impl Drop for SweepLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

impl Store {
    /// The retention sweep's lock, or `None` when another process's sweep holds it. On
    /// PostgreSQL a session advisory lock on a connection kept for the sweep (never a
    /// transaction: the sweep calls the backend); on SQLite, whose store serves one process,
    /// there is nothing to exclude (the process runs one sweep loop).
    pub async fn try_sweep_lock(&self) -> Result<Option<SweepLock>, StoreError> {
        match self.backend() {
            Backend::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                let got: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
                    .bind(SWEEP_LOCK_KEY)
                    .fetch_one(&mut *conn)
                    .await?;
                Ok(got.then_some(SweepLock { conn: Some(conn) }))
            }
            Backend::Sqlite(_) => Ok(Some(SweepLock { conn: None })),
        }
    }

    /// Every manifest of `registry` the metadata knows, with whether a tag points at it.
    pub async fn retention_manifests(
        &self,
        registry: &str,
    ) -> Result<Vec<RetentionRow>, StoreError> {
        const SQL: &str =
            "select m.repository, m.digest, m.media_type, m.refs, m.updated_at, m.delete_enabled,
                    exists (select 1 from tag_meta t
                             where t.registry = m.registry and t.repository = m.repository
                               and t.digest = m.digest) as tagged
               from manifest_meta m
              where m.registry = $1
              order by m.repository, m.digest";
        let registry = registry.to_lowercase();
        Ok(match self.backend() {
            Backend::Postgres(pool) => sqlx::query_as(SQL).bind(&registry).fetch_all(pool).await?,
            Backend::Sqlite(db) => {
                sqlx::query_as(&crate::metadata::for_sqlite(SQL))
                    .bind(&registry)
                    .fetch_all(db.pool())
                    .await?
            }
        })
    }

    /// Imports into `registry` that are queued or running: while one is, the sweep leaves the
    /// registry alone (an import may be about to tag a manifest it found already there).
    pub async fn unfinished_imports_into(&self, registry: &str) -> Result<u64, StoreError> {
        const SQL: &str = "select count(*) from operations
              where lower(registry_name) = lower($1) and kind = 'import'
                and state in ('Queued', 'Running')";
        let n: i64 = match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query_scalar(SQL)
                    .bind(registry)
                    .fetch_one(pool)
                    .await?
            }
            Backend::Sqlite(db) => {
                sqlx::query_scalar(&crate::metadata::for_sqlite(SQL))
                    .bind(registry)
                    .fetch_one(db.pool())
                    .await?
            }
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
