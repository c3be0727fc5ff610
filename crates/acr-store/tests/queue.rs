//! The store's semantics, one suite run against both backends: every case below is a test
//! `<case>::postgres` (a fresh database on `ACR_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and a test `<case>::sqlite` (a fresh file in
//! a temporary directory). A few tests at the end concern one backend only.

use std::time::{Duration, Instant};

use acr_store::{
    CredentialsKey, Enqueued, LimitExceeded, Outcome, QueueLimits, RegistryProps, RegistryRecord,
    Store, StoreError, Upserted,
};
use sqlx::types::Json;
use sqlx::Connection;

mod common;

use common::*;

on_both_backends!(
    enqueue_is_idempotent_and_claim_is_exclusive,
    fencing_stops_a_stale_worker_and_credentials_are_erased,
    terminal_states_are_final,
    finished_operations_are_read_once_and_running_ones_always,
    schema_makes_end_and_erasure_follow_the_state,
    release_makes_an_operation_runnable_after_its_delay,
    claims_take_the_oldest_due_operation,
    records_round_trip,
    queue_limits_per_subscription_and_total,
    concurrent_enqueues_cannot_overshoot_a_limit,
    credentials_are_encrypted_at_rest_and_decrypted_at_claim,
    wakeups_fire_on_enqueue_and_release,
    registry_names_are_unique_across_groups,
    registries_crud,
);

async fn enqueue_is_idempotent_and_claim_is_exclusive(t: &TestStore) {
    let s = &t.store;
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
}

async fn fencing_stops_a_stale_worker_and_credentials_are_erased(t: &TestStore) {
    let s = &t.store;
    s.enqueue(&new_op("registries-f")).await.expect("enqueue");
    let first = s
        .claim("a", Duration::from_secs(1))
        .await
        .expect("claim")
        .expect("an operation");
    let claimed_at = Instant::now();
    assert_eq!(first.attempt(), 1);
    assert_eq!(first.record.state, "Running");
    assert_eq!(
        first.credentials.as_ref().map(|c| c.password.as_str()),
        Some("s3cret-password")
    );
    // Not reclaimable while the lease holds; reclaimed once it expires (the worker died).
    assert!(s.claim("b", LEASE).await.expect("claim").is_none());
    let second = loop {
        if let Some(c) = s.claim("b", LEASE).await.expect("claim") {
            break c;
        }
        assert!(
            claimed_at.elapsed() < Duration::from_secs(10),
            "the expired lease was never reclaimed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        claimed_at.elapsed() >= Duration::from_millis(900),
        "reclaimed before the lease expired ({:?})",
        claimed_at.elapsed()
    );
    assert_eq!(second.attempt(), 2);
    assert_eq!(
        second.credentials.as_ref().map(|c| c.password.as_str()),
        Some("s3cret-password"),
        "a re-run gets the credentials again"
    );
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
    let rec = s.get_operation("registries-f").await.expect("get");
    let rec = rec.expect("exists");
    assert_eq!((rec.state.as_str(), rec.attempt), ("Running", 2));
    assert_eq!(
        rec.percent_complete, 0.0,
        "the stale heartbeat wrote nothing"
    );
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
    assert!(s
        .finish("registries-f", 2, &failed(), None)
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
    assert_eq!(rec.error_code.as_deref(), Some("Conflict"));
    assert_eq!(rec.error_status, Some(409));
    assert_eq!(
        rec.percent_complete, 42.0,
        "a failure keeps the last progress"
    );
    assert_eq!(
        rec.progress.as_ref().map(|p| p.0.clone()),
        Some(serde_json::json!({"bytesCopied": 5}))
    );
    assert!(rec.ended_at.is_some());
    assert!(
        t.raw_credentials("registries-f").await.is_none(),
        "credentials are erased when the operation ends"
    );
    assert_eq!(
        t.requests_containing("s3cret").await,
        0,
        "the stored request never holds the password"
    );
}

async fn terminal_states_are_final(t: &TestStore) {
    let s = &t.store;
    for (id, outcome) in [
        ("registries-ok", Outcome::Succeeded),
        ("registries-ko", failed()),
        ("registries-cx", Outcome::Canceled),
    ] {
        s.enqueue(&new_op(id)).await.expect("enqueue");
        let c = s.claim("a", LEASE).await.expect("claim").expect("claimed");
        assert_eq!(c.record.id, id);
        assert!(s.finish(id, 1, &outcome, None).await.expect("finish"));
        let ended = s.get_operation(id).await.expect("get").expect("exists");
        // No write of the owner changes it any more.
        assert!(!s.heartbeat(id, 1, LEASE, None, 1.0).await.expect("beat"));
        assert!(!s.release(id, 1, Duration::ZERO).await.expect("release"));
        assert!(!s.finish(id, 1, &failed(), None).await.expect("finish"));
        assert!(!s
            .finish(id, 1, &Outcome::Succeeded, None)
            .await
            .expect("finish"));
        // (The row itself: get_operation answers a finished operation from memory.)
        let after = s.get_operation_row(id).await.expect("get").expect("exists");
        assert_eq!(after.state, ended.state);
        assert_eq!(after.error_code, ended.error_code);
        assert_eq!(after.ended_at, ended.ended_at);
        assert_eq!(after.percent_complete, ended.percent_complete);
        assert!(after.ended_at.is_some(), "{id}: ended_at");
        assert!(t.raw_credentials(id).await.is_none(), "{id}: credentials");
    }
    let ok = s.get_operation("registries-ok").await.expect("get");
    assert_eq!(ok.expect("exists").percent_complete, 100.0);
    let states: Vec<String> = futures::future::join_all(
        ["registries-ok", "registries-ko", "registries-cx"].map(|id| async move {
            s.get_operation(id)
                .await
                .expect("get")
                .expect("exists")
                .state
        }),
    )
    .await;
    assert_eq!(states, ["Succeeded", "Failed", "Canceled"]);
    // Ended operations are never claimed again.
    assert!(s.claim("b", LEASE).await.expect("claim").is_none());
}

/// `get_operation` keeps what it read of a finished operation (it never changes) and nothing of
/// a queued or running one: every state change shows on the next read, and a finished
/// operation read again is what its row holds.
async fn finished_operations_are_read_once_and_running_ones_always(t: &TestStore) {
    let s = &t.store;
    let id = "registries-memo";
    s.enqueue(&new_op(id)).await.expect("enqueue");
    let read = |s: &Store| {
        let s = s.clone();
        async move { s.get_operation(id).await.expect("get").expect("exists") }
    };
    assert_eq!(read(s).await.state, "Queued");
    s.claim("a", LEASE).await.expect("claim").expect("claimed");
    assert_eq!(read(s).await.state, "Running");
    assert!(s.heartbeat(id, 1, LEASE, None, 0.5).await.expect("beat"));
    assert_eq!(read(s).await.percent_complete, 0.5);
    assert!(s.release(id, 1, Duration::ZERO).await.expect("release"));
    assert_eq!(read(s).await.state, "Queued");
    s.claim("b", LEASE).await.expect("claim").expect("claimed");
    assert_eq!(read(s).await.attempt, 2);
    assert!(s.finish(id, 2, &failed(), None).await.expect("finish"));
    let done = read(s).await;
    assert_eq!(done.state, "Failed");
    // A clone shares what was read; both agree with the row.
    let row = s.get_operation_row(id).await.expect("get").expect("exists");
    for r in [read(s).await, read(&s.clone()).await] {
        assert_eq!(
            (
                &r.state,
                &r.error_code,
                &r.error_message,
                r.ended_at,
                r.attempt
            ),
            (
                &row.state,
                &row.error_code,
                &row.error_message,
                row.ended_at,
                row.attempt
            )
        );
    }
    assert!(s
        .get_operation("registries-none")
        .await
        .expect("get")
        .is_none());
}

async fn schema_makes_end_and_erasure_follow_the_state(t: &TestStore) {
    let s = &t.store;
    s.enqueue(&new_op("registries-q")).await.expect("enqueue");
    s.enqueue(&new_op("registries-d")).await.expect("enqueue");
    let c = s.claim("a", LEASE).await.expect("claim").expect("claimed");
    assert!(s
        .finish(&c.record.id, 1, &Outcome::Succeeded, None)
        .await
        .expect("finish"));
    let done = c.record.id.clone();
    let queued = if done == "registries-q" {
        "registries-d"
    } else {
        "registries-q"
    };
    // A terminal state needs ended_at; ended_at needs a terminal state; credentials cannot
    // come back to an ended operation. Each statement is refused by a CHECK constraint.
    let refused = [
        (
            "update operations set state = 'Succeeded' where id = $1",
            "update operations set state = 'Succeeded' where id = ?1",
            queued,
        ),
        (
            "update operations set ended_at = now() where id = $1",
            "update operations set ended_at = '2026-01-01T00:00:00.000000Z' where id = ?1",
            queued,
        ),
        (
            "update operations set credentials = '{\"password\":\"x\"}' where id = $1",
            "update operations set credentials = '{\"password\":\"x\"}' where id = ?1",
            done.as_str(),
        ),
        (
            "update operations set state = 'Done' where id = $1",
            "update operations set state = 'Done' where id = ?1",
            queued,
        ),
    ];
    for (pg, sqlite, id) in refused {
        let e = t
            .exec(pg, sqlite, id)
            .await
            .expect_err("a CHECK constraint refuses it");
        let code = e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned());
        // 23514: check_violation; 275: SQLITE_CONSTRAINT_CHECK.
        assert!(
            matches!(code.as_deref(), Some("23514" | "275")),
            "{id}: {e} ({code:?})"
        );
        assert!(
            matches!(StoreError::from(e), StoreError::Database(_)),
            "a constraint violation is not an outage"
        );
    }
}

async fn release_makes_an_operation_runnable_after_its_delay(t: &TestStore) {
    let s = &t.store;
    s.enqueue(&new_op("registries-r")).await.expect("enqueue");
    let c = s.claim("a", LEASE).await.expect("claim").expect("claimed");
    assert!(s
        .release("registries-r", c.attempt(), Duration::from_secs(60))
        .await
        .expect("release"));
    let rec = s.get_operation("registries-r").await.expect("get");
    assert_eq!(rec.expect("exists").state, "Queued");
    assert!(
        s.claim("b", LEASE).await.expect("claim").is_none(),
        "not before run_at"
    );
    t.make_due("registries-r").await;
    let again = s
        .claim("b", LEASE)
        .await
        .expect("claim")
        .expect("claimed again");
    assert_eq!(again.attempt(), 2);
    assert_eq!(
        again.record.started_at, c.record.started_at,
        "started_at is the first claim's"
    );
    // A short delay passes by itself.
    assert!(s
        .release("registries-r", 2, Duration::from_millis(300))
        .await
        .expect("release"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let third = loop {
        if let Some(c) = s.claim("c", LEASE).await.expect("claim") {
            break c;
        }
        assert!(Instant::now() < deadline, "never runnable again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(third.attempt(), 3);
}

async fn claims_take_the_oldest_due_operation(t: &TestStore) {
    let s = &t.store;
    for id in ["registries-a", "registries-b", "registries-c"] {
        s.enqueue(&new_op(id)).await.expect("enqueue");
        // Distinct creation times on both clocks.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let a = s.claim("w", LEASE).await.expect("claim").expect("claimed");
    assert_eq!(a.record.id, "registries-a");
    // Released with no delay, `a` is due again but now later than `b` and `c`.
    assert!(s
        .release("registries-a", 1, Duration::ZERO)
        .await
        .expect("release"));
    let mut order = Vec::new();
    while let Some(c) = s.claim("w", LEASE).await.expect("claim") {
        order.push(c.record.id);
    }
    assert_eq!(order, ["registries-b", "registries-c", "registries-a"]);
}

async fn records_round_trip(t: &TestStore) {
    let s = &t.store;
    let before = chrono::Utc::now();
    let Enqueued::Created(rec) = s.enqueue(&new_op("registries-t")).await.expect("enqueue") else {
        panic!("not created");
    };
    assert_eq!(rec.id, "registries-t");
    assert_eq!(rec.subscription_id, SUB);
    assert_eq!(rec.registry_name, "target01");
    assert_eq!(rec.location, "eastus");
    assert_eq!(rec.api_version, "2025-11-01");
    assert_eq!(rec.state, "Queued");
    assert_eq!(rec.attempt, 0);
    assert!(rec.started_at.is_none() && rec.ended_at.is_none() && rec.progress.is_none());
    let near = |t: chrono::DateTime<chrono::Utc>| (t - before).num_milliseconds().abs() < 5_000;
    assert!(near(rec.created_at), "created_at {}", rec.created_at);
    let c = s.claim("w", LEASE).await.expect("claim").expect("claimed");
    assert_eq!(rec.kind, "import");
    let acr_store::Work::Import(request) = &c.work else {
        panic!("an import: {:?}", c.work)
    };
    assert_eq!(request.source_image, "a/b:v1");
    assert_eq!(request.target_tags, ["a/b:v1"]);
    assert_eq!(request.registry_uri.as_deref(), Some("127.0.0.1:5000"));
    assert_eq!(
        c.credentials.as_ref().and_then(|c| c.username.as_deref()),
        Some("user")
    );
    assert!(c.credentials_error.is_none());
    let started = c.record.started_at.expect("started_at");
    assert!(near(started) && started >= rec.created_at);
    let progress = serde_json::json!({"blobsDone": 1, "blobsTotal": 4, "note": "ü ✓"});
    assert!(s
        .heartbeat("registries-t", 1, LEASE, Some(&progress), 25.5)
        .await
        .expect("heartbeat"));
    // A heartbeat without progress keeps the recorded one.
    assert!(s
        .heartbeat("registries-t", 1, LEASE, None, 30.0)
        .await
        .expect("heartbeat"));
    let mid = s.get_operation("registries-t").await.expect("get");
    let mid = mid.expect("exists");
    assert_eq!(mid.progress.map(|p| p.0), Some(progress.clone()));
    assert_eq!(mid.percent_complete, 30.0);
    assert!(s
        .finish("registries-t", 1, &Outcome::Succeeded, None)
        .await
        .expect("finish"));
    let done = s.get_operation("registries-t").await.expect("get");
    let done = done.expect("exists");
    assert_eq!(done.state().expect("state").as_str(), "Succeeded");
    assert_eq!(done.percent_complete, 100.0);
    assert_eq!(done.started_at, Some(started));
    let ended = done.ended_at.expect("ended_at");
    assert!(near(ended) && ended >= started);
    assert!(s
        .get_operation("registries-none")
        .await
        .expect("get")
        .is_none());
}

async fn queue_limits_per_subscription_and_total(t: &TestStore) {
    let s = &t.store;
    let limits = QueueLimits {
        per_subscription: Some(2),
        total: Some(3),
    };
    let a = "00000000-0000-0000-0000-00000000000a";
    let b = "00000000-0000-0000-0000-00000000000b";
    for id in ["registries-a1", "registries-a2"] {
        let r = s.enqueue_limited(&op_in(id, a), limits).await;
        assert!(matches!(r, Ok(Enqueued::Created(_))), "{id}: {r:?}");
    }
    match s.enqueue_limited(&op_in("registries-a3", a), limits).await {
        Err(StoreError::Limit(LimitExceeded::Subscription {
            subscription,
            limit: 2,
        })) => assert_eq!(subscription, a),
        other => panic!("expected the subscription limit: {other:?}"),
    }
    // A retry of an accepted request is answered, limit or not.
    assert!(matches!(
        s.enqueue_limited(&op_in("registries-a1", a), limits).await,
        Ok(Enqueued::Existing(_))
    ));
    assert!(matches!(
        s.enqueue_limited(&op_in("registries-b1", b), limits).await,
        Ok(Enqueued::Created(_))
    ));
    let e = s
        .enqueue_limited(&op_in("registries-b2", b), limits)
        .await
        .expect_err("the total limit");
    assert!(
        matches!(e, StoreError::Limit(LimitExceeded::Total { limit: 3 })),
        "{e:?}"
    );
    assert!(e.to_string().contains("--max-queued-operations"), "{e}");
    // Refused operations were not stored.
    for id in ["registries-a3", "registries-b2"] {
        assert!(s.get_operation(id).await.expect("get").is_none(), "{id}");
    }
    // Running operations count; finished ones do not.
    let c = s.claim("w", LEASE).await.expect("claim").expect("claimed");
    assert!(s
        .enqueue_limited(&op_in("registries-b3", b), limits)
        .await
        .is_err());
    assert!(s
        .finish(&c.record.id, 1, &Outcome::Succeeded, None)
        .await
        .expect("finish"));
    assert!(matches!(
        s.enqueue_limited(&op_in("registries-b3", b), limits).await,
        Ok(Enqueued::Created(_))
    ));
    // No limits: the plain enqueue.
    assert!(matches!(
        s.enqueue(&op_in("registries-b4", b)).await,
        Ok(Enqueued::Created(_))
    ));
}

async fn concurrent_enqueues_cannot_overshoot_a_limit(t: &TestStore) {
    let s = &t.store;
    let race = |prefix: &'static str, subscription: &'static str, limits: QueueLimits| {
        futures::future::join_all((0..20).map(move |i| {
            let s = s.clone();
            async move {
                s.enqueue_limited(&op_in(&format!("{prefix}-{i}"), subscription), limits)
                    .await
            }
        }))
    };
    let count = |results: &[Result<Enqueued, StoreError>]| {
        let created = results
            .iter()
            .filter(|r| matches!(r, Ok(Enqueued::Created(_))))
            .count();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Limit(_))))
            .count();
        (created, refused)
    };
    let a = "00000000-0000-0000-0000-00000000000a";
    let b = "00000000-0000-0000-0000-00000000000b";
    let per_sub = QueueLimits {
        per_subscription: Some(3),
        total: None,
    };
    let results = race("registries-a", a, per_sub).await;
    assert_eq!(count(&results), (3, 17), "{results:?}");
    let total = QueueLimits {
        per_subscription: None,
        total: Some(8),
    };
    let results = race("registries-b", b, total).await;
    assert_eq!(count(&results), (5, 15), "{results:?}");

    // Many subscriptions at once near the total limit (on PostgreSQL these take the queue lock
    // shared, each under its own subscription's lock): still never one too many. 8 of the
    // total are taken; 40 enqueues in 10 subscriptions race for the last 4.
    let both = QueueLimits {
        per_subscription: Some(3),
        total: Some(12),
    };
    let subs: Vec<String> = (0..10)
        .map(|i| format!("00000000-0000-0000-0000-0000000001{i:02}"))
        .collect();
    let results = futures::future::join_all((0..40).map(|i| {
        let s = s.clone();
        let sub = subs[i % 10].clone();
        async move {
            s.enqueue_limited(&op_in(&format!("registries-m-{i}"), &sub), both)
                .await
        }
    }))
    .await;
    assert_eq!(count(&results), (4, 36), "{results:?}");
    // (Up to 3 of the 4 may go to one subscription, whose 4th is then refused by its own limit.)
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(
                    e,
                    StoreError::Limit(LimitExceeded::Total { limit: 12 })
                        | StoreError::Limit(LimitExceeded::Subscription { limit: 3, .. })
                ),
                "{e:?}"
            );
        }
    }

    // Far from the total limit, each subscription gets exactly its own limit.
    let roomy = QueueLimits {
        per_subscription: Some(2),
        total: Some(1000),
    };
    let results = futures::future::join_all((0..30).map(|i| {
        let s = s.clone();
        let sub = format!("00000000-0000-0000-0000-0000000002{:02}", i % 5);
        async move {
            s.enqueue_limited(&op_in(&format!("registries-r-{i}"), &sub), roomy)
                .await
        }
    }))
    .await;
    assert_eq!(count(&results), (10, 20), "{results:?}");
}

async fn credentials_are_encrypted_at_rest_and_decrypted_at_claim(t: &TestStore) {
    let key = CredentialsKey::from_file_bytes(&[7u8; 32]).expect("key");
    let keyed = t.store.clone().with_credentials_key(Some(key));
    keyed
        .enqueue(&new_op("registries-e1"))
        .await
        .expect("enqueue");
    keyed
        .enqueue(&new_op("registries-e2"))
        .await
        .expect("enqueue");
    for id in ["registries-e1", "registries-e2"] {
        let raw = t.raw_credentials(id).await.expect("stored credentials");
        assert!(raw.contains("A256GCM"), "{raw}");
        assert!(!raw.contains("s3cret") && !raw.contains("user"), "{raw}");
    }
    let c = keyed.claim("w", LEASE).await.expect("claim").expect("one");
    assert!(c.credentials_error.is_none(), "{:?}", c.credentials_error);
    let creds = c.credentials.expect("decrypted");
    assert_eq!(
        (creds.username.as_deref(), creds.password.as_str()),
        (Some("user"), "s3cret-password")
    );
    // A process without the key gets the operation with a reason to fail it, not credentials.
    let keyless = t.store.clone().with_credentials_key(None);
    let c = keyless
        .claim("w", LEASE)
        .await
        .expect("claim")
        .expect("two");
    assert!(c.credentials.is_none());
    let reason = c.credentials_error.expect("an error");
    assert!(reason.contains("--credentials-key-file"), "{reason}");
    // Without a key, credentials are stored as before (plain JSON) and read back.
    keyless
        .enqueue(&new_op("registries-p"))
        .await
        .expect("enqueue");
    let raw = t.raw_credentials("registries-p").await.expect("stored");
    let plain: serde_json::Value = serde_json::from_str(&raw).expect("json");
    assert_eq!(plain["password"], "s3cret-password");
    let c = keyed
        .claim("w", LEASE)
        .await
        .expect("claim")
        .expect("three");
    assert_eq!(
        c.credentials.map(|c| c.password),
        Some("s3cret-password".to_owned())
    );
}

async fn wakeups_fire_on_enqueue_and_release(t: &TestStore) {
    let s = &t.store;
    let mut w = s.wakeups().await.expect("wakeups");
    let mut other = s.wakeups().await.expect("a second subscriber");
    let wait = Duration::from_secs(5);
    // Sent before anyone waits: still seen (the worker may be busy claiming when it comes).
    s.enqueue(&new_op("registries-w")).await.expect("enqueue");
    tokio::time::timeout(wait, w.recv())
        .await
        .expect("woken by the enqueue")
        .expect("recv");
    tokio::time::timeout(wait, other.recv())
        .await
        .expect("every subscriber is woken")
        .expect("recv");
    let c = s.claim("a", LEASE).await.expect("claim").expect("claimed");
    assert!(s
        .release(&c.record.id, c.attempt(), Duration::ZERO)
        .await
        .expect("release"));
    tokio::time::timeout(wait, w.recv())
        .await
        .expect("woken by the release")
        .expect("recv");
}

fn registry(rg: &str, name: &str) -> RegistryRecord {
    RegistryRecord {
        name: name.into(),
        name_lower: name.to_lowercase(),
        subscription_id: SUB.into(),
        resource_group: rg.into(),
        location: "eastus".into(),
        sku: "Standard".into(),
        tags: None,
        properties: Json(RegistryProps::default()),
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
        deleting_since: None,
        deletion_operation_id: None,
    }
}

async fn registry_names_are_unique_across_groups(t: &TestStore) {
    let s = &t.store;
    assert_eq!(
        s.upsert_registry(&registry("rg1", "MyReg1"))
            .await
            .expect("upsert"),
        Upserted::Created
    );
    assert_eq!(
        s.upsert_registry(&registry("RG1", "myreg1"))
            .await
            .expect("upsert"),
        Upserted::Updated
    );
    assert_eq!(
        s.upsert_registry(&registry("rg2", "MYREG1"))
            .await
            .expect("upsert"),
        Upserted::NameTaken
    );
    let other_sub = RegistryRecord {
        subscription_id: "00000000-0000-0000-0000-000000000002".into(),
        ..registry("rg1", "MyReg1")
    };
    assert_eq!(
        s.upsert_registry(&other_sub).await.expect("upsert"),
        Upserted::NameTaken
    );
    assert_eq!(
        s.list_registries(SUB, Some("rg1"))
            .await
            .expect("list")
            .len(),
        1
    );
    assert!(s
        .delete_registry(SUB, "rg1", "MYREG1")
        .await
        .expect("delete"));
    assert!(s
        .get_registry_by_name("myreg1")
        .await
        .expect("get")
        .is_none());
}

async fn registries_crud(t: &TestStore) {
    let s = &t.store;
    let mut tagged = registry("Group-A", "RegOne");
    tagged.tags = Some(Json([("env".to_owned(), "test".to_owned())].into()));
    tagged.properties.0.admin_user_enabled = true;
    tagged.properties.0.created_by = "someone".into();
    for r in [
        &tagged,
        &registry("group-b", "RegTwo"),
        &registry("Group-A", "AReg3"),
    ] {
        assert_eq!(
            s.upsert_registry(r).await.expect("upsert"),
            Upserted::Created
        );
    }
    let elsewhere = RegistryRecord {
        subscription_id: "00000000-0000-0000-0000-000000000002".into(),
        location: "westeurope".into(),
        ..registry("rg-x", "RegFour")
    };
    assert_eq!(
        s.upsert_registry(&elsewhere).await.expect("upsert"),
        Upserted::Created
    );

    let got = s
        .get_registry(SUB, "GROUP-a", "REGONE")
        .await
        .expect("get")
        .expect("found case-insensitively");
    assert_eq!(got.name, "RegOne");
    assert_eq!(got.resource_group, "Group-A", "kept as created");
    assert_eq!(
        got.tags.as_ref().map(|t| t.0.clone()),
        tagged.tags.as_ref().map(|t| t.0.clone())
    );
    assert_eq!(got.properties.0, tagged.properties.0);
    assert!((got.created_at - chrono::Utc::now()).num_seconds().abs() < 5);
    assert!(s
        .get_registry(SUB, "group-b", "RegOne")
        .await
        .expect("get")
        .is_none());
    assert!(s
        .get_registry("00000000-0000-0000-0000-000000000002", "Group-A", "RegOne")
        .await
        .expect("get")
        .is_none());
    let by_name = s.get_registry_by_name("regfour").await.expect("get");
    assert_eq!(by_name.expect("found").location, "westeurope");

    let names = |v: Vec<RegistryRecord>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(
        names(s.list_registries(SUB, None).await.expect("list")),
        ["AReg3", "RegOne", "RegTwo"],
        "sorted by name"
    );
    assert_eq!(
        names(s.list_registries(SUB, Some("group-a")).await.expect("list")),
        ["AReg3", "RegOne"]
    );
    assert!(s
        .list_registries(SUB, Some("nope"))
        .await
        .expect("list")
        .is_empty());
    assert_eq!(
        s.registry_subscriptions().await.expect("subscriptions"),
        [SUB, "00000000-0000-0000-0000-000000000002"]
    );
    assert_eq!(
        s.resource_group(SUB, "GROUP-A").await.expect("group"),
        Some(("Group-A".to_owned(), "eastus".to_owned()))
    );
    assert!(s
        .resource_group(SUB, "rg-x")
        .await
        .expect("group")
        .is_none());

    // An update changes the settable fields and keeps the creation time.
    let mut changed = registry("group-a", "regone");
    changed.sku = "Premium".into();
    changed.location = "eastus".into();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        s.upsert_registry(&changed).await.expect("upsert"),
        Upserted::Updated
    );
    let after = s
        .get_registry(SUB, "Group-A", "RegOne")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(after.sku, "Premium");
    assert!(after.tags.is_none());
    assert!(!after.properties.0.admin_user_enabled);
    assert_eq!(after.created_at, got.created_at);
    assert!(after.updated_at > got.updated_at);

    assert!(s
        .delete_registry(SUB, "GROUP-A", "regone")
        .await
        .expect("delete"));
    assert!(!s
        .delete_registry(SUB, "GROUP-A", "regone")
        .await
        .expect("delete"));
    assert!(!s
        .delete_registry(SUB, "group-a", "RegTwo")
        .await
        .expect("delete in the wrong group"));
    assert_eq!(
        names(s.list_registries(SUB, None).await.expect("list")),
        ["AReg3", "RegTwo"]
    );
}

// ---- One backend only ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_serves_one_process_and_keeps_its_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("acr-import.db");
    let first = Store::open_sqlite(&path).await.expect("open");
    first.migrate().await.expect("migrate");
    first
        .enqueue(&new_op("registries-k"))
        .await
        .expect("enqueue");

    // A second open of the same file, even in this process, is refused with the reason.
    let e = Store::open_sqlite(&path).await.expect_err("refused");
    match &e {
        StoreError::Locked { pid, .. } => assert_eq!(*pid, Some(std::process::id())),
        other => panic!("expected Locked: {other:?}"),
    }
    let message = e.to_string();
    let shown_dir = std::fs::canonicalize(dir.path()).expect("canonical");
    for part in [
        "SQLite store in",
        shown_dir.to_str().expect("utf-8 path"),
        "SQLite serves one process",
        "set DATABASE_URL to a PostgreSQL database to run several",
    ] {
        assert!(message.contains(part), "{part:?} in {message:?}");
    }
    let lock = std::fs::read_to_string(dir.path().join("acr-import.db.lock")).expect("lock file");
    assert_eq!(lock.trim(), std::process::id().to_string());

    // Clones share the lock; dropping the last one releases it. The data stays.
    let clone = first.clone();
    drop(first);
    assert!(
        Store::open_sqlite(&path).await.is_err(),
        "a clone still holds it"
    );
    clone.close().await;
    drop(clone);
    let reopened = Store::open_sqlite(&path).await.expect("reopen");
    reopened.migrate().await.expect("migrations are idempotent");
    let rec = reopened.get_operation("registries-k").await.expect("get");
    assert_eq!(rec.expect("kept across the reopen").state, "Queued");
    let c = reopened.claim("w", LEASE).await.expect("claim");
    assert_eq!(c.expect("claimable").record.id, "registries-k");
}

#[tokio::test]
async fn sqlite_open_fails_clearly_without_its_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing").join("acr-import.db");
    let e = Store::open_sqlite(&path).await.expect_err("no directory");
    assert!(matches!(e, StoreError::LockFile { .. }), "{e:?}");
    assert!(e.to_string().contains("acr-import.db.lock"), "{e}");
}

#[tokio::test]
async fn sqlite_busy_is_unavailable() {
    use sqlx::sqlite::SqliteConnectOptions;
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("busy.db"))
        .create_if_missing(true)
        .busy_timeout(Duration::ZERO);
    let mut holder = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("connect");
    let mut other = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("connect");
    let _tx = holder.begin_with("BEGIN IMMEDIATE").await.expect("begin");
    let e = other
        .begin_with("BEGIN IMMEDIATE")
        .await
        .expect_err("the write lock is held");
    let e = StoreError::from(e);
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
}

#[tokio::test]
async fn postgres_down_is_unavailable() {
    // Nothing listens on port 1.
    let e = Store::connect("postgres://postgres@127.0.0.1:1/postgres", 2)
        .await
        .expect_err("refused");
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
}

/// A database migrated before the migrations moved from `migrations/` to
/// `migrations/postgres/` keeps working: sqlx keys an applied migration by its version and the
/// SHA-384 of its file, and both are unchanged (the checksum below is that of the file as it
/// was first released). Also fails if someone edits an applied migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_database_migrated_from_the_old_layout_keeps_working() {
    const INITIAL: &str = include_str!("../../../migrations/postgres/20261123000001_initial.sql");
    const INITIAL_SHA384: &str = "76d282e711bb564860f78b99bce8315264e0ac3492fc30576600e77085db2d15d583d3d06e51b4dd5929e896f7d60b7e";
    let (t, _) = TestStore::postgres_unmigrated(|url| async move {
        // What `Store::migrate` of the earlier layout left behind.
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::raw_sql(INITIAL)
            .execute(&mut conn)
            .await
            .expect("schema");
        sqlx::raw_sql(
            "create table _sqlx_migrations (
                 version bigint primary key, description text not null,
                 installed_on timestamptz not null default now(), success boolean not null,
                 checksum bytea not null, execution_time bigint not null)",
        )
        .execute(&mut conn)
        .await
        .expect("migrations table");
        sqlx::query(
            "insert into _sqlx_migrations (version, description, success, checksum, execution_time)
             values (20261123000001, 'initial', true, decode($1, 'hex'), 1)",
        )
        .bind(INITIAL_SHA384)
        .execute(&mut conn)
        .await
        .expect("applied migration");
    })
    .await;
    t.store
        .migrate()
        .await
        .expect("the applied migration is recognised, not re-run");
    t.store
        .enqueue(&new_op("registries-m"))
        .await
        .expect("enqueue");
    let c = t.store.claim("w", LEASE).await.expect("claim");
    assert_eq!(c.expect("claimed").record.id, "registries-m");
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_has_no_sqlite_pool() {
    let t = TestStore::postgres().await;
    assert!(t.store.pg_pool().is_some() && t.store.sqlite_pool().is_none());
    t.cleanup().await;
    let s = TestStore::sqlite().await;
    assert!(s.store.pg_pool().is_none() && s.store.sqlite_pool().is_some());
    s.cleanup().await;
}

/// `for_workers` (the workers' handle in acr-import): the same store (what one
/// enqueues the other claims), through a pool of its own on PostgreSQL, and on SQLite with a
/// thread of its own for `transact`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_handle_is_the_same_store() {
    for t in [TestStore::postgres().await, TestStore::sqlite().await] {
        let own = t
            .store
            .for_workers(&tokio::runtime::Handle::current())
            .await
            .expect("own connections");
        t.store
            .enqueue(&new_op("registries-own"))
            .await
            .expect("enqueue");
        let c = own
            .claim("w", LEASE)
            .await
            .expect("claim")
            .expect("claimed");
        assert_eq!(c.record.id, "registries-own");
        assert!(own
            .finish(&c.record.id, c.attempt(), &Outcome::Succeeded, None)
            .await
            .expect("finish"));
        let seen = t
            .store
            .get_operation("registries-own")
            .await
            .expect("read")
            .expect("there");
        assert_eq!(seen.state, "Succeeded");
        // Its transactions: SQLite's on its writer thread, PostgreSQL's where it is called.
        let thread = own
            .transact(|_| async { Ok(std::thread::current().name().map(str::to_owned)) })
            .await
            .expect("transact");
        let sqlite = t.store.sqlite_pool().is_some();
        assert_eq!(
            thread.as_deref() == Some("acr-sqlite-writes"),
            sqlite,
            "{thread:?}"
        );
        let here = t
            .store
            .transact(|_| async { Ok(std::thread::current().name().map(str::to_owned)) })
            .await
            .expect("transact");
        assert_ne!(
            here.as_deref(),
            Some("acr-sqlite-writes"),
            "the API's handle runs it here"
        );
        match (t.store.pg_pool(), own.pg_pool()) {
            (Some(mine), Some(theirs)) => {
                assert_eq!(
                    theirs.options().get_max_connections(),
                    mine.options().get_max_connections()
                );
                // Its own pool: closing it leaves the first one working.
                own.close().await;
                assert!(theirs.is_closed() && !mine.is_closed());
                t.store
                    .enqueue(&new_op("registries-own-2"))
                    .await
                    .expect("the first handle still enqueues");
            }
            (None, None) => assert!(own.sqlite_pool().is_some()),
            _ => panic!("one store, two backends"),
        }
        t.cleanup().await;
    }
}

/// A pooled PostgreSQL connection idle for a while is pinged before it is handed out (sqlx's
/// ping before every use is off, `PING_IDLE`): one whose server process went away meanwhile
/// (a restart, an administrator) is replaced, never handed to a query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_that_went_away_is_replaced_before_a_query() {
    let (t, url) = TestStore::postgres_unmigrated(|_| async {}).await;
    t.store.migrate().await.expect("migrate");
    let one = Store::connect(&url, 1).await.expect("connect");
    let pid = || async {
        sqlx::query_scalar::<_, i32>("select pg_backend_pid()")
            .fetch_one(one.pg_pool().expect("postgres"))
            .await
            .expect("backend pid")
    };
    let first = pid().await;
    let ended: bool = sqlx::query_scalar("select pg_terminate_backend($1)")
        .bind(first)
        .fetch_one(t.store.pg_pool().expect("postgres"))
        .await
        .expect("terminate");
    assert!(ended);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(one
        .get_operation("none")
        .await
        .expect("answered on a new connection")
        .is_none());
    assert_ne!(pid().await, first);
    one.close().await;
    t.cleanup().await;
}
