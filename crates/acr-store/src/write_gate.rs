//! Who gets SQLite's one writer connection next: a write a client is waiting for (an
//! `importImage` POST's enqueue) queues for it directly; every other write transaction (the
//! workers' claims, heartbeats and finishes, the data plane's metadata, registry changes)
//! first takes a turn shared by all of them, so at most one of them is queued ahead.
//!
//! The writer is a pool of one connection, whose waiters are served in arrival order. Under a
//! stream of imports the workers' transactions hold it most of the time, each for several trips
//! to SQLite's thread (a wait for a core apiece on a busy machine); an enqueue arriving behind
//! three or four of them waited 10-20 ms. With the turn, it waits for the transaction holding
//! the connection and at most one more. Measured in `docs/BENCHMARKS.md` (issue 14): the
//! accept scenario's p99 on SQLite was 13.8 ms without the turn, 10.2-11.7 ms with it.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The turn of the writes no client waits for.
#[derive(Debug, Clone)]
pub(crate) struct WriteGate(Arc<Semaphore>);

impl Default for WriteGate {
    fn default() -> Self {
        Self(Arc::new(Semaphore::new(1)))
    }
}

impl WriteGate {
    /// A `BEGIN IMMEDIATE` transaction on `writer`, begun in its turn.
    pub(crate) async fn begin(&self, writer: &SqlitePool) -> Result<WriteTx, sqlx::Error> {
        let turn = self
            .0
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx { tx, _turn: turn })
    }
}

/// A write transaction and its turn, released together.
pub(crate) struct WriteTx {
    tx: Transaction<'static, Sqlite>,
    _turn: OwnedSemaphorePermit,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

/// The transaction's connection, as a `Transaction` derefs to it (`&mut *tx` runs a query).
impl Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}
