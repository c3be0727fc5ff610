//! Checkpoints of the SQLite store's journal, beside the writer.
//!
//! SQLite's automatic checkpoint runs in the connection whose commit took the journal past
//! 1,000 pages: it copies them into the database file and syncs it, up to tens of milliseconds,
//! several times a second under a stream of imports; and that connection is the store's one
//! writer, so every write waited (issue 14: the accept scenario's p99 on SQLite fell from
//! 21-22 ms to 13-14 ms without it, `docs/BENCHMARKS.md`). The writer's is off; here a reader
//! connection checkpoints every [`CHECKPOINT_EVERY`] writes, `PASSIVE`, which takes no lock a
//! writer needs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::SqlitePool;

/// Write transactions between two checkpoints (each writes a few pages).
const CHECKPOINT_EVERY: u64 = 200;
/// Journal pages past which a checkpoint also rewinds the journal, through the writer.
const REWIND_PAGES: i64 = 16_384;

/// Writes counted, and whether a checkpoint runs.
#[derive(Debug, Default)]
pub(super) struct Checkpoints {
    writes: AtomicU64,
    running: AtomicBool,
}

impl Checkpoints {
    /// Counts a write; every [`CHECKPOINT_EVERY`], unless one still runs, starts a checkpoint
    /// (a task: the write does not wait for it).
    pub(super) fn count_write(self: &Arc<Self>, pool: &SqlitePool, writer: &SqlitePool) {
        let n = self.writes.fetch_add(1, Ordering::Relaxed);
        if n % CHECKPOINT_EVERY != CHECKPOINT_EVERY - 1 || self.running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let pool = pool.clone();
        let writer = writer.clone();
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = checkpoint(&pool, &writer).await {
                tracing::debug!(error = %e, "journal checkpoint failed; the next one retries");
            }
            this.running.store(false, Ordering::Release);
        });
    }
}

/// A `PASSIVE` checkpoint beside the writer. The journal file is rewound (written again from
/// its start) only after a checkpoint that caught up with the last write, which under a steady
/// stream of writes one beside the writer never does: past [`REWIND_PAGES`] (64 MiB) the
/// writer itself runs a `RESTART` one, between two writes; most pages are copied by then.
/// That one does not take the workers' turn (`write_gate.rs`): like an enqueue it waits only
/// for the writer connection, and it is rare (once per 64 MiB of journal).
async fn checkpoint(pool: &SqlitePool, writer: &SqlitePool) -> Result<(), sqlx::Error> {
    let (_busy, log, _copied): (i64, i64, i64) = sqlx::query_as("pragma wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await?;
    if log >= REWIND_PAGES {
        sqlx::query("pragma wal_checkpoint(RESTART)")
            .execute(writer)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The writer does not checkpoint, the store does, beside it: the journal stays bounded.
    #[tokio::test]
    async fn the_journal_is_checkpointed_beside_the_writer_and_stays_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        let store = crate::Store::open_sqlite(&path).await.expect("open");
        store.migrate().await.expect("migrate");
        let crate::Backend::Sqlite(db) = &store.backend else {
            unreachable!("a SQLite store")
        };
        let mode: i64 = sqlx::query_scalar("pragma wal_autocheckpoint")
            .fetch_one(db.writer())
            .await
            .expect("pragma");
        assert_eq!(mode, 0, "the writer's automatic checkpoint is off");
        let mut tx = db.begin_write().await.expect("begin");
        sqlx::query("create table filler (x blob)")
            .execute(&mut *tx)
            .await
            .expect("create");
        tx.commit().await.expect("commit");
        // 6,000 transactions of 16 KiB each: 96 MiB of journal without a checkpoint, and a
        // writer that never pauses for the passive ones to catch up.
        let row = vec![7u8; 16 << 10];
        let mut wal_max = 0;
        for i in 0..6000 {
            let mut tx = db.begin_write().await.expect("begin");
            sqlx::query("insert into filler (x) values (?1)")
                .bind(&row)
                .execute(&mut *tx)
                .await
                .expect("insert");
            tx.commit().await.expect("commit");
            if i % 100 == 0 {
                tokio::task::yield_now().await;
                let wal = std::fs::metadata(dir.path().join("store.db-wal")).map_or(0, |m| m.len());
                wal_max = wal_max.max(wal);
            }
        }
        assert!(
            wal_max < 80 << 20,
            "the journal grew to {wal_max} bytes: not checkpointed"
        );
        let n: i64 = sqlx::query_scalar("select count(*) from filler")
            .fetch_one(db.pool())
            .await
            .expect("count");
        assert_eq!(n, 6000);
    }
}
