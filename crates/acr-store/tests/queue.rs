//! Queue semantics against a real PostgreSQL: each test gets a fresh database.
//! The server comes from `ACR_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).

use std::time::Duration;

use acr_core::import::StoredImport;
use acr_store::{Enqueued, NewOperation, Outcome, Store, StoredCredentials};
use sqlx::Connection;

struct TestDb {
    admin_url: String,
    name: String,
    store: Store,
}

impl TestDb {
    async fn new() -> TestDb {
        let admin_url = std::env::var("ACR_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
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
        let store = Store::connect(&url, 8).await.expect("connect");
        store.migrate().await.expect("migrate");
        TestDb {
            admin_url,
            name,
            store,
        }
    }

    async fn drop_db(self) {
        self.store.pool().close().await;
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!(
                "drop database if exists {} with (force)",
                self.name
            ))
            .execute(&mut admin)
            .await;
        }
    }
}

fn new_op(id: &str) -> NewOperation {
    NewOperation {
        id: id.to_owned(),
        subscription_id: "00000000-0000-0000-0000-000000000001".into(),
        resource_group: "rg".into(),
        registry_name: "target01".into(),
        location: "eastus".into(),
        api_version: "2025-11-01".into(),
        request: StoredImport {
            resource_id: None,
            registry_uri: Some("127.0.0.1:5000".into()),
            source_image: "a/b:v1".into(),
            target_tags: vec!["a/b:v1".into()],
            untagged_target_repositories: vec![],
            force: false,
        },
        credentials: Some(StoredCredentials {
            username: Some("user".into()),
            password: "s3cret-password".into(),
        }),
    }
}

const LEASE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn enqueue_is_idempotent_and_claim_is_exclusive() {
    let db = TestDb::new().await;
    let s = &db.store;
    assert!(matches!(
        s.enqueue(&new_op("registries-1")).await.expect("enqueue"),
        Enqueued::Created(_)
    ));
    assert!(matches!(
        s.enqueue(&new_op("registries-1")).await.expect("enqueue"),
        Enqueued::Existing(_)
    ));
    for i in 2..=10 {
        s.enqueue(&new_op(&format!("registries-{i}")))
            .await
            .expect("enqueue");
    }
    // 20 concurrent claimers, 10 operations: each operation claimed exactly once.
    let claims = futures::future::join_all((0..20).map(|w| {
        let s = s.clone();
        async move { s.claim(&format!("w{w}"), LEASE).await.expect("claim") }
    }))
    .await;
    let mut ids: Vec<String> = claims.into_iter().flatten().map(|c| c.record.id).collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(before, 10, "every operation claimed");
    assert_eq!(ids.len(), 10, "no operation claimed twice");
    assert!(s.claim("late", LEASE).await.expect("claim").is_none());
    db.drop_db().await;
}

#[tokio::test]
async fn fencing_stops_a_stale_worker_and_credentials_are_erased() {
    let db = TestDb::new().await;
    let s = &db.store;
    s.enqueue(&new_op("registries-f")).await.expect("enqueue");
    let first = s
        .claim("a", Duration::from_secs(1))
        .await
        .expect("claim")
        .expect("an operation");
    assert_eq!(first.attempt(), 1);
    assert_eq!(
        first.credentials.as_ref().map(|c| c.password.as_str()),
        Some("s3cret-password")
    );
    // Not reclaimable while the lease holds.
    assert!(s.claim("b", LEASE).await.expect("claim").is_none());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second = s
        .claim("b", LEASE)
        .await
        .expect("claim")
        .expect("expired lease is reclaimed");
    assert_eq!(second.attempt(), 2);
    // The first worker is fenced out of every write.
    assert!(!s
        .heartbeat("registries-f", 1, LEASE, None, 50.0)
        .await
        .expect("heartbeat"));
    assert!(!s
        .finish("registries-f", 1, &Outcome::Succeeded, None)
        .await
        .expect("finish"));
    assert!(!s
        .release("registries-f", 1, Duration::ZERO)
        .await
        .expect("release"));
    // The owner can.
    assert!(s
        .heartbeat(
            "registries-f",
            2,
            LEASE,
            Some(&serde_json::json!({"bytesCopied": 5})),
            42.0
        )
        .await
        .expect("heartbeat"));
    let failed = Outcome::Failed {
        code: "Conflict".into(),
        message: "m".into(),
        status: 409,
    };
    assert!(s
        .finish("registries-f", 2, &failed, None)
        .await
        .expect("finish"));
    // Terminal is final.
    assert!(!s
        .finish("registries-f", 2, &Outcome::Succeeded, None)
        .await
        .expect("finish"));
    let rec = s
        .get_operation("registries-f")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(rec.state, "Failed");
    assert_eq!(rec.error_status, Some(409));
    assert!(rec.ended_at.is_some());
    let creds: Option<serde_json::Value> =
        sqlx::query_scalar("select credentials from operations where id = $1")
            .bind("registries-f")
            .fetch_one(s.pool())
            .await
            .expect("select");
    assert!(
        creds.is_none(),
        "credentials are erased when the operation ends"
    );
    let leaked: i64 =
        sqlx::query_scalar("select count(*) from operations where request::text like '%s3cret%'")
            .fetch_one(s.pool())
            .await
            .expect("select");
    assert_eq!(leaked, 0, "the stored request never holds the password");
    db.drop_db().await;
}

#[tokio::test]
async fn release_makes_an_operation_runnable_after_its_delay() {
    let db = TestDb::new().await;
    let s = &db.store;
    s.enqueue(&new_op("registries-r")).await.expect("enqueue");
    let c = s.claim("a", LEASE).await.expect("claim").expect("claimed");
    assert!(s
        .release("registries-r", c.attempt(), Duration::from_secs(60))
        .await
        .expect("release"));
    assert!(
        s.claim("b", LEASE).await.expect("claim").is_none(),
        "not before run_at"
    );
    sqlx::query("update operations set run_at = now() where id = 'registries-r'")
        .execute(s.pool())
        .await
        .expect("update");
    let again = s
        .claim("b", LEASE)
        .await
        .expect("claim")
        .expect("claimed again");
    assert_eq!(again.attempt(), 2);
    db.drop_db().await;
}

#[tokio::test]
async fn registry_names_are_unique_across_groups() {
    use acr_store::{RegistryProps, RegistryRecord, Upserted};
    use sqlx::types::Json;
    let db = TestDb::new().await;
    let s = &db.store;
    let rec = |rg: &str, name: &str| RegistryRecord {
        name: name.into(),
        name_lower: name.to_lowercase(),
        subscription_id: "00000000-0000-0000-0000-000000000001".into(),
        resource_group: rg.into(),
        location: "eastus".into(),
        sku: "Standard".into(),
        tags: None,
        properties: Json(RegistryProps::default()),
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    };
    assert_eq!(
        s.upsert_registry(&rec("rg1", "MyReg1"))
            .await
            .expect("upsert"),
        Upserted::Created
    );
    assert_eq!(
        s.upsert_registry(&rec("RG1", "myreg1"))
            .await
            .expect("upsert"),
        Upserted::Updated
    );
    assert_eq!(
        s.upsert_registry(&rec("rg2", "MYREG1"))
            .await
            .expect("upsert"),
        Upserted::NameTaken
    );
    assert_eq!(
        s.list_registries("00000000-0000-0000-0000-000000000001", Some("rg1"))
            .await
            .expect("list")
            .len(),
        1
    );
    assert!(s
        .delete_registry("00000000-0000-0000-0000-000000000001", "rg1", "MYREG1")
        .await
        .expect("delete"));
    assert!(s
        .get_registry_by_name("myreg1")
        .await
        .expect("get")
        .is_none());
    db.drop_db().await;
}
