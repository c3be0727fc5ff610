//! The store's own floor under (accept)'s load: while the POST stream runs, a probe on a
//! connection of its own times bare round trips to the same store, at [`PROBE_RATE`] per
//! second: a `select 1` (the trip alone: the server process or SQLite's thread has to be
//! scheduled) and a one-row insert committed on its own (the trip plus the commit: for
//! PostgreSQL the WAL flush that makes it durable; for SQLite, `synchronous = NORMAL` in WAL
//! mode as the service runs it, no sync). An accepted POST does at least one such commit, so
//! its p99 cannot be much below the probe's: where the probe's own p99 is above the goal, the
//! machine is the ceiling, and the table shows it.
//!
//! PostgreSQL: the probe's table lives in the service's database (`bench_commit_floor`, not
//! one of the service's). SQLite: a file of its own beside the service's data dir, so the
//! probe never takes the service's write lock.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Executor};

/// Probes per second (each one trip and one commit).
const PROBE_RATE: f64 = 50.0;

/// What one probe run timed, milliseconds.
#[derive(Default)]
pub struct Floor {
    /// `select 1`.
    pub trip_ms: Vec<f64>,
    /// A one-row insert, committed alone.
    pub commit_ms: Vec<f64>,
}

/// A running probe; [`FloorProbe::stop`] ends it and returns its timings.
pub struct FloorProbe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<Floor>>,
}

enum Conn {
    Pg(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl Conn {
    async fn execute(&mut self, sql: &str) -> Result<()> {
        match self {
            Conn::Pg(c) => c.execute(sql).await.map(drop)?,
            Conn::Sqlite(c) => c.execute(sql).await.map(drop)?,
        }
        Ok(())
    }
}

impl FloorProbe {
    /// Connects (PostgreSQL: to `pg_url`; else SQLite in `sqlite_file`), creates the probe's
    /// table and starts probing.
    pub async fn start(pg_url: Option<&str>, sqlite_file: &Path) -> Result<Self> {
        let mut conn = match pg_url {
            Some(url) => Conn::Pg(
                sqlx::PgConnection::connect(url)
                    .await
                    .context("floor probe: connect to PostgreSQL")?,
            ),
            None => {
                let _ = std::fs::remove_file(sqlite_file);
                let opts =
                    SqliteConnectOptions::from_str(&format!("sqlite://{}", sqlite_file.display()))?
                        .create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal);
                Conn::Sqlite(
                    sqlx::SqliteConnection::connect_with(&opts)
                        .await
                        .context("floor probe: open SQLite")?,
                )
            }
        };
        let pk = if pg_url.is_some() {
            "bigserial primary key"
        } else {
            "integer primary key"
        };
        conn.execute(&format!(
            "create table if not exists bench_commit_floor (id {pk}, pad text not null)"
        ))
        .await?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut out = Floor::default();
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / PROBE_RATE));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let insert = format!(
                "insert into bench_commit_floor (pad) values ('{}')",
                "x".repeat(200)
            );
            while !flag.load(Ordering::Relaxed) {
                tick.tick().await;
                let t0 = std::time::Instant::now();
                conn.execute("select 1").await?;
                out.trip_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                let t0 = std::time::Instant::now();
                conn.execute(&insert).await?;
                out.commit_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            Ok(out)
        });
        Ok(Self { stop, task })
    }

    /// Ends the probe and returns what it timed.
    pub async fn stop(self) -> Result<Floor> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.context("floor probe task")?
    }
}
