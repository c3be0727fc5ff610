//! Storage of acr-import: the only crate that contains SQL.
//!
//! It owns the database handle and the embedded migrations ([`Store::connect`] for PostgreSQL,
//! [`Store::open_sqlite`] for the embedded store, [`Store::migrate`]), the registry resources
//! ([`registries`]), the operation queue ([`operations`]), the queue limits and the encryption
//! of stored credentials ([`secrets`]), and the operations feed ([`feed`]).
//!
//! Two backends, one behaviour. PostgreSQL is the store of shared and multi-replica
//! deployments; SQLite (a file in the data directory, `migrations/sqlite`) is the default of a
//! single process and refuses a second process on the same file ([`StoreError::Locked`]).
//! [`Store`] is the one handle the rest of the code sees: an enum over the two backends, so
//! every method states both queries side by side and a new method cannot forget one of them.
//!
//! Queue invariants (see `docs/ARCHITECTURE.md`), on both backends: an operation is inserted
//! runnable and announced in one transaction ([`Store::wakeups`]: `LISTEN/NOTIFY` on PostgreSQL,
//! an in-process signal on SQLite; polling stays the correctness path); the queue limits are
//! counted in the insert's transaction, serialized (an advisory lock on PostgreSQL, SQLite's
//! single writer taken by `BEGIN IMMEDIATE`); a claim is one short write (`FOR UPDATE SKIP
//! LOCKED` on PostgreSQL) that increments `attempt` and sets a lease; every later write of a
//! worker is fenced by `(id, attempt, state = 'Running')`, so a worker that lost its lease
//! changes nothing; terminal states are final and erase the stored credentials in the same
//! statement. NoForce imports reserve their target tags ([`reservations`]): one winner per tag
//! across workers and processes. No transaction is ever held open while a copy runs.

pub mod feed;
pub mod groups;
pub mod lifecycle;
pub mod metadata;
pub mod operations;
pub mod registries;
pub mod reservations;
pub mod retention;
pub mod secrets;

mod pg;
mod sqlite;
mod write_gate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, SqlitePool};

pub use feed::{FeedRow, OperationFilter, PageKey};
pub use groups::{GroupPut, ResourceGroup};
pub use lifecycle::DeletionStarted;
pub use operations::{
    ClaimedOperation, Enqueued, LimitExceeded, NewOperation, OperationRecord, Outcome, QueueLimits,
    QueueStats, StoredCredentials, Work,
};
pub use registries::{
    IpRule, NetworkRuleSet, RegistryProps, RegistryRecord, ResolvedSource, Upserted,
};
pub use reservations::{Reservation, TagKey};
pub use retention::{RetentionRow, SweepLock};
pub use secrets::CredentialsKey;

/// The channel PostgreSQL workers `LISTEN` on.
pub const NOTIFY_CHANNEL: &str = "acr_import_operations";

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
    /// Another process (or this one) already has the SQLite store of `dir` open.
    #[error("{}", locked_message(dir, *pid))]
    Locked { dir: PathBuf, pid: Option<u32> },
    /// The SQLite store's lock file cannot be opened or locked.
    #[error("cannot lock {}", path.display())]
    LockFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn locked_message(dir: &Path, pid: Option<u32>) -> String {
    let holder = match pid {
        Some(p) if p == std::process::id() => format!("this process (pid {p}) already has"),
        Some(p) => format!("another acr-import process (pid {p}) is using"),
        None => "another acr-import process is using".to_owned(),
    };
    format!(
        "{holder} the SQLite store in {}; SQLite serves one process — set DATABASE_URL to a PostgreSQL database to run several",
        dir.display()
    )
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            sqlx::Error::Database(ref db) if transient_database_error(db.as_ref()) => {
                StoreError::Unavailable(e)
            }
            other => StoreError::Database(other),
        }
    }
}

/// Whether a database's own error means "try again later" rather than a bug or bad data.
fn transient_database_error(db: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = db.code() else {
        return false;
    };
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // SQLite's extended result code; its low byte is the primary code: BUSY (5) and
        // LOCKED (6) once busy_timeout has passed, IOERR (10), FULL (13), CANTOPEN (14).
        return code
            .parse::<u32>()
            .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13 | 14));
    }
    // PostgreSQL's SQLSTATE: operator intervention (shutdown, 57P) and connection exceptions (08).
    code.starts_with("57P") || code.starts_with("08")
}

/// How long a query waits for a pooled connection. While the database is down every
/// acquire fails only after this (sqlx keeps trying to connect until then), so it bounds how
/// long the API takes to answer 503: short, but far above a healthy pool's wait.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// A pooled PostgreSQL connection idle at least this long is pinged before it is handed out;
/// one used more recently is not. sqlx's default pings every one (`test_before_acquire`), a
/// round trip to a server process before each query, which under load is a wait for a core
/// like the query's own. sqlx also pings each connection as it comes back to the pool and
/// drops it if it fails, so a connection broken during a query never returns; what this leaves
/// is a connection that broke while idle for less than this (the server restarted in between):
/// its query fails once (503) and it is dropped.
const PING_IDLE: Duration = Duration::from_secs(1);

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    /// Finished operations read lately (see [`operations::Finished`]), shared by the clones.
    finished: Arc<operations::Finished>,
    /// Encrypts source credentials at rest (`--credentials-key-file`).
    credentials_key: Option<Arc<CredentialsKey>>,
    /// SQLite, the workers' handle: where its write transactions run ([`Store::transact`]).
    writer_thread: Option<Arc<sqlite::writer_thread::WriterThread>>,
}

/// The two implementations of the store.
///
/// An enum rather than a `dyn Trait`: the set is closed and lives in this crate, dispatch is a
/// `match` (no boxed futures, no async-trait), and the compiler makes every method handle both
/// backends. The SQL of each lives in its own module (`pg`, `sqlite`); what does not depend
/// on the database (credential encryption, limit decisions, outcomes) stays here and in
/// `operations` / `registries`, written once.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Postgres(PgPool),
    Sqlite(sqlite::SqliteStore),
}

impl Store {
    /// Connects to PostgreSQL (failing fast when the server cannot be reached).
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
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(opts)
            .await?;
        Ok(Self::with_backend(Backend::Postgres(pool)))
    }

    /// A handle to the same store for the import workers, whose tasks run on `runtime` (the
    /// workers' own, `copy_runtime` in acr-import: its polls wait behind the copies', and its
    /// threads run below the API's CPU priority).
    /// - PostgreSQL: connections of its own, with the same options and limits, opened on
    ///   `runtime` by the tasks that use this handle. A socket is driven by the reactor of the
    ///   runtime it was opened on, so the API's connections stay on the API's reactor, which a
    ///   busy copy runtime would otherwise poll late.
    /// - SQLite (no sockets): the same connections, and a thread of its own on which
    ///   [`Store::transact`] runs its write transactions (`sqlite/writer_thread.rs`), so that
    ///   one never holds the only writer while its task waits for a copy thread. The thread is
    ///   started here, by the caller, never on `runtime`: a thread inherits its creator's
    ///   priority, and an enqueue may wait for this one.
    pub async fn for_workers(&self, runtime: &tokio::runtime::Handle) -> Result<Self, StoreError> {
        match &self.backend {
            Backend::Postgres(pool) => {
                let options = pool.options().clone();
                let connect = (*pool.connect_options()).clone();
                let own = runtime
                    .spawn(async move { options.connect_with(connect).await })
                    .await
                    .map_err(|_| StoreError::Unavailable(sqlx::Error::WorkerCrashed))??;
                Ok(Self {
                    backend: Backend::Postgres(own),
                    ..self.clone()
                })
            }
            Backend::Sqlite(_) => Ok(Self {
                writer_thread: Some(Arc::new(sqlite::writer_thread::WriterThread::start()?)),
                ..self.clone()
            }),
        }
    }

    /// Runs `f` with a clone of this handle: on its writer thread when it has one (the
    /// workers' SQLite handle, [`Store::for_workers`]), else here. For the workers'
    /// calls that hold SQLite's writer over several trips: claim, finish, release, tag
    /// reservations and the data plane's metadata (a worker call of that kind added later
    /// must go through it too; heartbeats are one statement and need not).
    pub async fn transact<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Store) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        match &self.writer_thread {
            Some(t) => t.run(f(store)).await,
            None => f(store).await,
        }
    }

    /// Opens (creating it if missing) the embedded SQLite store in file `path`, whose directory
    /// must exist. Locks `<path>.lock` for as long as any clone of the store lives: a second
    /// opener, in this process or another, gets [`StoreError::Locked`].
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        Self::open_sqlite_with(path, false).await
    }

    /// [`Store::open_sqlite`]; `durable`: `synchronous = FULL` (every commit fsynced, so it
    /// survives a power loss) instead of `NORMAL`.
    pub async fn open_sqlite_with(path: &Path, durable: bool) -> Result<Self, StoreError> {
        let store = sqlite::SqliteStore::open(path, durable).await?;
        Ok(Self::with_backend(Backend::Sqlite(store)))
    }

    fn with_backend(backend: Backend) -> Self {
        Self {
            backend,
            finished: Arc::new(operations::Finished::default()),
            credentials_key: None,
            writer_thread: None,
        }
    }

    /// Applies the embedded migrations of the backend (`migrations/postgres` or
    /// `migrations/sqlite`).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Postgres(pool) => pg::MIGRATOR.run(pool).await,
            Backend::Sqlite(db) => sqlite::MIGRATOR.run(db.writer()).await,
        }
        .map_err(StoreError::Migrate)
    }

    /// Stores source credentials encrypted with `key` from now on (and decrypts them at claim).
    pub fn with_credentials_key(mut self, key: Option<CredentialsKey>) -> Self {
        self.credentials_key = key.map(Arc::new);
        self
    }

    pub(crate) fn credentials_key(&self) -> Option<&CredentialsKey> {
        self.credentials_key.as_deref()
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The PostgreSQL pool, for tests that inspect the tables; `None` on SQLite.
    pub fn pg_pool(&self) -> Option<&PgPool> {
        match &self.backend {
            Backend::Postgres(pool) => Some(pool),
            Backend::Sqlite(_) => None,
        }
    }

    /// The SQLite pool, for tests that inspect the tables; `None` on PostgreSQL.
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.backend {
            Backend::Postgres(_) => None,
            Backend::Sqlite(db) => Some(db.pool()),
        }
    }

    /// Closes the pool (waiting for its connections). The SQLite lock is released when the
    /// last clone of the store is dropped.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Postgres(pool) => pool.close().await,
            Backend::Sqlite(db) => {
                db.writer().close().await;
                db.pool().close().await;
            }
        }
    }

    /// `select 1`, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Postgres(pool) => {
                sqlx::query("select 1").execute(pool).await?;
            }
            Backend::Sqlite(db) => {
                sqlx::query("select 1").execute(db.pool()).await?;
            }
        }
        Ok(())
    }

    /// A source of wake-ups: it fires when an operation may have become runnable (enqueued or
    /// released). PostgreSQL: `LISTEN` on [`NOTIFY_CHANNEL`], so it hears every process;
    /// SQLite: this process's own enqueues and releases. Advisory only: workers still poll.
    pub async fn wakeups(&self) -> Result<Wakeups, StoreError> {
        Ok(Wakeups(match &self.backend {
            Backend::Postgres(pool) => {
                let mut l = sqlx::postgres::PgListener::connect_with(pool).await?;
                l.listen(NOTIFY_CHANNEL).await?;
                WakeupSource::Postgres(Box::new(l))
            }
            Backend::Sqlite(db) => WakeupSource::Sqlite(db.subscribe()),
        }))
    }
}

/// See [`Store::wakeups`].
#[derive(Debug)]
pub struct Wakeups(WakeupSource);

#[derive(Debug)]
enum WakeupSource {
    Postgres(Box<sqlx::postgres::PgListener>),
    /// A counter bumped after each enqueue and release. A `watch` rather than a `Notify`: every
    /// subscriber sees a change made while it was busy claiming (no lost wake-up between the
    /// last claim and the next wait), and several subscribers all wake.
    Sqlite(tokio::sync::watch::Receiver<u64>),
}

impl Wakeups {
    /// Waits for the next wake-up. An error means this source is broken (the PostgreSQL
    /// connection was lost, the store closed): make a new one with [`Store::wakeups`].
    pub async fn recv(&mut self) -> Result<(), StoreError> {
        match &mut self.0 {
            WakeupSource::Postgres(l) => l.recv().await.map(|_| ()).map_err(StoreError::from),
            WakeupSource::Sqlite(rx) => rx
                .changed()
                .await
                .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolClosed)),
        }
    }
}
