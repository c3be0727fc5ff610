//! A fresh PostgreSQL database per test, dropped (best effort) when the handle is dropped.
//!
//! The server is the one `scripts/test.sh` makes sure of: `ACR_TEST_DATABASE_URL` if set,
//! else `postgres://postgres@127.0.0.1:5432/postgres`. Each test gets `acr_t_<random>`, so
//! tests can run in parallel and a crashed run leaves only a uniquely named database behind.

use sqlx::{Connection, PgConnection};

/// The admin URL the harness creates databases through.
pub fn admin_url() -> String {
    std::env::var("ACR_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates `acr_t_<random>` and returns a handle whose [`url`](Self::url) points at it.
    pub async fn create() -> Self {
        let admin_url = admin_url();
        let name = format!("acr_t_{}", crate::util::random_suffix(12));
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to PostgreSQL at {admin_url}: {e} (run scripts/test.sh, or set ACR_TEST_DATABASE_URL)"));
        sqlx::query(&format!("create database {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        let _ = conn.close().await;
        let mut url = url::Url::parse(&admin_url).expect("ACR_TEST_DATABASE_URL is a URL");
        url.set_path(&format!("/{name}"));
        Self {
            name,
            url: url.to_string(),
            admin_url,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new connection to this test's database (for assertions on what the service stored).
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime; run the async cleanup on a thread of its own.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = handle.join();
    }
}
