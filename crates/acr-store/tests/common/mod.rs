//! What every store test file shares: a fresh store of either backend per test, the
//! `on_both_backends!` macro, and sample operations.
#![allow(dead_code)]

use std::time::Duration;

use acr_core::import::StoredImport;
use acr_store::{NewOperation, Outcome, Store, StoredCredentials, Work};
use sqlx::Connection;

/// A fresh store of one backend, and what to remove afterwards.
pub struct TestStore {
    pub store: Store,
    pub cleanup: Cleanup,
}

pub enum Cleanup {
    Postgres { admin_url: String, name: String },
    Sqlite { _dir: tempfile::TempDir },
}

pub fn admin_url() -> String {
    std::env::var("ACR_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestStore {
    pub async fn postgres() -> TestStore {
        let (t, _) = Self::postgres_unmigrated(|_| async {}).await;
        t.store.migrate().await.expect("migrate");
        t
    }

    /// A fresh PostgreSQL database, set up by `prepare` (given its URL) before the store
    /// connects; not migrated. Also returns the URL.
    pub async fn postgres_unmigrated<F: std::future::Future<Output = ()>>(
        prepare: impl FnOnce(String) -> F,
    ) -> (TestStore, String) {
        let admin_url = admin_url();
        let name = format!("acr_store_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("admin connection");
        sqlx::query(&format!("create database {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("database URL without a path"),
        };
        prepare(url.clone()).await;
        let store = Store::connect(&url, 8).await.expect("connect");
        let t = TestStore {
            store,
            cleanup: Cleanup::Postgres { admin_url, name },
        };
        (t, url)
    }

    pub async fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open_sqlite(&dir.path().join("acr-import.db"))
            .await
            .expect("open");
        store.migrate().await.expect("migrate");
        TestStore {
            store,
            cleanup: Cleanup::Sqlite { _dir: dir },
        }
    }

    pub async fn cleanup(self) {
        self.store.close().await;
        if let Cleanup::Postgres { admin_url, name } = self.cleanup {
            if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
                    .execute(&mut admin)
                    .await;
            }
        }
    }

    /// The `credentials` column of operation `id`, as stored.
    pub async fn raw_credentials(&self, id: &str) -> Option<String> {
        if let Some(pool) = self.store.pg_pool() {
            sqlx::query_scalar("select credentials::text from operations where id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
                .expect("select")
        } else {
            sqlx::query_scalar("select credentials from operations where id = ?1")
                .bind(id)
                .fetch_one(self.sqlite_pool())
                .await
                .expect("select")
        }
    }

    /// Rows whose stored request contains `needle`.
    pub async fn requests_containing(&self, needle: &str) -> i64 {
        let pattern = format!("%{needle}%");
        if let Some(pool) = self.store.pg_pool() {
            sqlx::query_scalar("select count(*) from operations where request::text like $1")
                .bind(pattern)
                .fetch_one(pool)
                .await
                .expect("select")
        } else {
            sqlx::query_scalar("select count(*) from operations where request like ?1")
                .bind(pattern)
                .fetch_one(self.sqlite_pool())
                .await
                .expect("select")
        }
    }

    /// Makes operation `id` due now (skips the rest of its backoff).
    pub async fn make_due(&self, id: &str) {
        let n = self
            .exec(
                "update operations set run_at = now() where id = $1",
                "update operations set run_at = strftime('%Y-%m-%dT%H:%M:%f000Z', 'now') where id = ?1",
                id,
            )
            .await
            .expect("update");
        assert_eq!(n, 1);
    }

    /// Runs `pg` or `sqlite` (one statement with one text parameter); rows affected.
    pub async fn exec(&self, pg: &str, sqlite: &str, param: &str) -> Result<u64, sqlx::Error> {
        Ok(if let Some(pool) = self.store.pg_pool() {
            sqlx::query(pg)
                .bind(param)
                .execute(pool)
                .await?
                .rows_affected()
        } else {
            sqlx::query(sqlite)
                .bind(param)
                .execute(self.sqlite_pool())
                .await?
                .rows_affected()
        })
    }

    pub fn sqlite_pool(&self) -> &sqlx::SqlitePool {
        self.store.sqlite_pool().expect("a SQLite store")
    }
}

/// Defines `mod <case> { postgres, sqlite }`, each running `async fn <case>(&TestStore)` on a
/// fresh store of that backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            pub async fn postgres() {
                let t = $crate::common::TestStore::postgres().await;
                super::$case(&t).await;
                t.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            pub async fn sqlite() {
                let t = $crate::common::TestStore::sqlite().await;
                super::$case(&t).await;
                t.cleanup().await;
            }
        }
    )*};
}

pub const SUB: &str = "00000000-0000-0000-0000-000000000001";
pub const LEASE: Duration = Duration::from_secs(30);

pub fn new_op(id: &str) -> NewOperation {
    NewOperation {
        id: id.to_owned(),
        subscription_id: SUB.into(),
        resource_group: "rg".into(),
        registry_name: "target01".into(),
        location: "eastus".into(),
        api_version: "2025-11-01".into(),
        work: Work::Import(StoredImport {
            resource_id: None,
            registry_uri: Some("127.0.0.1:5000".into()),
            source_image: "a/b:v1".into(),
            target_tags: vec!["a/b:v1".into()],
            untagged_target_repositories: vec![],
            force: false,
        }),
        credentials: Some(StoredCredentials {
            username: Some("user".into()),
            password: "s3cret-password".into(),
        }),
    }
}

pub fn op_in(id: &str, subscription: &str) -> NewOperation {
    NewOperation {
        subscription_id: subscription.into(),
        ..new_op(id)
    }
}

pub fn failed() -> Outcome {
    Outcome::Failed(acr_core::operation::ImportFailure::new(
        acr_core::operation::FailureKind::TagConflict,
        "m",
    ))
}
