//! PostgreSQL storage of acr-import: the only crate that contains SQL.
//!
//! It owns the pool and the embedded migrations ([`Store::connect`], [`Store::migrate`]), the
//! registry resources ([`registries`]) and the operation queue ([`operations`]).
//!
//! Queue invariants (see `docs/ARCHITECTURE.md`): an operation is inserted runnable in one
//! statement and announced with `NOTIFY`; a claim is one short `FOR UPDATE SKIP LOCKED`
//! transaction that increments `attempt` and sets a lease; every later write of a worker is
//! fenced by `(id, attempt, state = 'Running')`, so a worker that lost its lease changes nothing;
//! terminal states are final and erase the stored credentials in the same statement. No
//! transaction is ever held open while a copy runs.

pub mod operations;
pub mod registries;
pub mod secrets;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use sqlx::{Connection, PgConnection};

pub use operations::{
    ClaimedOperation, Enqueued, LimitExceeded, NewOperation, OperationRecord, Outcome, QueueLimits,
    StoredCredentials,
};
pub use registries::{IpRule, NetworkRuleSet, RegistryProps, RegistryRecord, Upserted};
pub use secrets::CredentialsKey;

/// The channel workers `LISTEN` on.
pub const NOTIFY_CHANNEL: &str = "acr_import_operations";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Storage failures, classified for the API (unavailable → 503).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// An enqueue refused by a queue limit (answered 429).
    #[error("{0}")]
    Limit(LimitExceeded),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            sqlx::Error::Database(ref db)
                if db
                    .code()
                    .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")) =>
            {
                StoreError::Unavailable(e)
            }
            other => StoreError::Database(other),
        }
    }
}

/// How long a query waits for a pooled connection. While the database is down every
/// acquire fails only after this (sqlx keeps trying to connect until then), so it bounds how
/// long the API takes to answer 503: short, but far above a healthy pool's wait.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    /// Encrypts source credentials at rest (`--credentials-key-file`).
    credentials_key: Option<std::sync::Arc<CredentialsKey>>,
}

impl Store {
    /// Connects (failing fast when the server cannot be reached).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let opts: PgConnectOptions = url.parse().map_err(StoreError::Database)?;
        // One direct connection first: its error says what is wrong ("connection refused",
        // "password authentication failed"), where the pool would only time out.
        let probe =
            tokio::time::timeout(Duration::from_secs(10), PgConnection::connect_with(&opts))
                .await
                .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolTimedOut))??;
        probe.close().await.ok();
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(opts)
            .await?;
        Ok(Self {
            pool,
            credentials_key: None,
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(StoreError::Migrate)
    }

    /// Stores source credentials encrypted with `key` from now on (and decrypts them at claim).
    pub fn with_credentials_key(mut self, key: Option<CredentialsKey>) -> Self {
        self.credentials_key = key.map(std::sync::Arc::new);
        self
    }

    pub(crate) fn credentials_key(&self) -> Option<&CredentialsKey> {
        self.credentials_key.as_deref()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// `select 1`, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    /// A listener on [`NOTIFY_CHANNEL`].
    pub async fn listener(&self) -> Result<sqlx::postgres::PgListener, StoreError> {
        let mut l = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        l.listen(NOTIFY_CHANNEL).await?;
        Ok(l)
    }
}
