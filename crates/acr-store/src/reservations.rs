//! Tag reservations: how concurrent NoForce imports of one tag end with exactly one winner.
//!
//! Before a NoForce import checks its target tags it reserves them, all or none, in one
//! transaction ([`Store::reserve_tags`]). A reservation belongs to one attempt of one
//! operation and counts only while that attempt is `Running` with an unexpired lease: the
//! reservation of a worker that died lapses with its lease, and the next attempt of the same
//! operation takes its own reservation over. Right before the tags are written the worker
//! confirms it still holds them and renews its lease in one fenced statement
//! ([`Store::confirm_tags`]); finishing or releasing the operation deletes them in the same
//! statement that ends it. The mechanism is the store's, so it holds across workers and
//! processes (PostgreSQL) and on SQLite.

use std::time::Duration;

use crate::{Backend, Store, StoreError};

/// A tag an import will write: the backend repository (`<registry>/<repo>`) and the tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TagKey {
    pub repository: String,
    pub tag: String,
}

/// The answer to [`Store::reserve_tags`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Every tag is reserved for this attempt.
    Reserved,
    /// `tag` is reserved by another running operation; nothing was reserved.
    Held { tag: TagKey, operation_id: String },
    /// This attempt no longer owns the operation (fenced out); nothing was reserved.
    Lost,
}

/// Sorted and deduplicated: every reserver takes its rows in the same order, so two
/// transactions reserving overlapping sets cannot deadlock.
pub fn normalized(tags: &[TagKey]) -> Vec<TagKey> {
    let mut v = tags.to_vec();
    v.sort();
    v.dedup();
    v
}

impl Store {
    /// Reserves every tag of `tags` for attempt `attempt` of operation `id`, or none of them.
    /// A tag held by another operation whose attempt still runs under its lease is not taken
    /// ([`Reservation::Held`]); a reservation of an ended, released or lapsed attempt is, and so
    /// is one of an earlier attempt of this operation.
    pub async fn reserve_tags(
        &self,
        id: &str,
        attempt: i32,
        tags: &[TagKey],
    ) -> Result<Reservation, StoreError> {
        let tags = normalized(tags);
        match self.backend() {
            Backend::Postgres(pool) => crate::pg::reserve_tags(pool, id, attempt, &tags).await,
            Backend::Sqlite(db) => db.reserve_tags(id, attempt, &tags).await,
        }
    }

    /// Confirms, right before the tags are written, that attempt `attempt` of `id` still runs
    /// and holds all `expected` of its reservations, and renews its lease for `lease` — one
    /// fenced statement. `false`: the tags must not be written.
    pub async fn confirm_tags(
        &self,
        id: &str,
        attempt: i32,
        lease: Duration,
        expected: usize,
    ) -> Result<bool, StoreError> {
        let expected = i64::try_from(expected).unwrap_or(i64::MAX);
        match self.backend() {
            Backend::Postgres(pool) => {
                crate::pg::confirm_tags(pool, id, attempt, lease, expected).await
            }
            Backend::Sqlite(db) => db.confirm_tags(id, attempt, lease, expected).await,
        }
    }

    /// The tags reserved by operation `id` (any attempt), sorted.
    pub async fn reserved_tags(&self, id: &str) -> Result<Vec<TagKey>, StoreError> {
        let rows: Vec<(String, String)> = match self.backend() {
            Backend::Postgres(pool) => {
                sqlx::query_as(
                    "select repository, tag from tag_reservations where operation_id = $1
                     order by repository, tag",
                )
                .bind(id)
                .fetch_all(pool)
                .await?
            }
            Backend::Sqlite(db) => {
                sqlx::query_as(
                    "select repository, tag from tag_reservations where operation_id = ?1
                     order by repository, tag",
                )
                .bind(id)
                .fetch_all(db.pool())
                .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(repository, tag)| TagKey { repository, tag })
            .collect())
    }
}
