//! The operations feed on both backends: newest-first paging with filters, and the change
//! sequence (inserts and visible changes count, lease renewals that change nothing do not).

use acr_store::{OperationFilter, Outcome, PageKey};

mod common;

use common::*;

on_both_backends!(
    listing_pages_newest_first_and_filters,
    changes_follow_inserts_and_visible_updates,
    the_feed_never_selects_credentials,
);

fn op_for(id: &str, registry: &str) -> acr_store::NewOperation {
    let mut op = new_op(id);
    op.registry_name = registry.to_owned();
    op
}

async fn listing_pages_newest_first_and_filters(t: &TestStore) {
    let s = &t.store;
    for i in 0..5 {
        let reg = if i % 2 == 0 { "EvenReg" } else { "oddreg" };
        s.enqueue(&op_for(&format!("registries-{i}"), reg))
            .await
            .expect("enqueue");
        // Distinct creation times, so that the order is the insertion order.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let all = s
        .list_operations(&OperationFilter::default(), 100, None)
        .await
        .expect("list");
    let ids: Vec<&str> = all.iter().map(|r| r.record.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "registries-4",
            "registries-3",
            "registries-2",
            "registries-1",
            "registries-0"
        ]
    );

    // Pages of two, each starting after the last row of the previous one.
    let mut seen = Vec::new();
    let mut after: Option<PageKey> = None;
    loop {
        let page = s
            .list_operations(&OperationFilter::default(), 2, after.as_ref())
            .await
            .expect("page");
        assert!(page.len() <= 2);
        if page.is_empty() {
            break;
        }
        seen.extend(page.iter().map(|r| r.record.id.clone()));
        after = page.last().map(|r| PageKey::after(&r.record));
    }
    assert_eq!(seen, ids);

    // The registry filter ignores case; the state filter is exact.
    let even = s
        .list_operations(
            &OperationFilter {
                registry: Some("evenreg".into()),
                state: None,
            },
            100,
            None,
        )
        .await
        .expect("filter");
    assert_eq!(even.len(), 3);
    assert!(even.iter().all(|r| r.record.registry_name == "EvenReg"));

    let claimed = s.claim("w", LEASE).await.expect("claim").expect("one");
    assert_eq!(claimed.record.id, "registries-0", "the oldest is claimed");
    let running = s
        .list_operations(
            &OperationFilter {
                registry: None,
                state: Some("Running".into()),
            },
            100,
            None,
        )
        .await
        .expect("filter");
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].record.id, "registries-0");
    let none = s
        .list_operations(
            &OperationFilter {
                registry: Some("oddreg".into()),
                state: Some("Running".into()),
            },
            100,
            None,
        )
        .await
        .expect("filter");
    assert!(none.is_empty());
}

async fn changes_follow_inserts_and_visible_updates(t: &TestStore) {
    let s = &t.store;
    assert_eq!(s.last_change_seq().await.expect("seq"), 0);
    s.enqueue(&new_op("registries-a")).await.expect("enqueue");
    s.enqueue(&new_op("registries-b")).await.expect("enqueue");
    let start = s.changes_since(0, 100).await.expect("changes");
    let ids: Vec<&str> = start.iter().map(|r| r.record.id.as_str()).collect();
    assert_eq!(ids, ["registries-a", "registries-b"]);
    assert!(start[0].change_seq < start[1].change_seq);
    let after_inserts = s.last_change_seq().await.expect("seq");
    assert_eq!(after_inserts, start[1].change_seq);
    // An idempotent re-enqueue changes nothing.
    s.enqueue(&new_op("registries-a")).await.expect("again");
    assert!(s
        .changes_since(after_inserts, 100)
        .await
        .expect("changes")
        .is_empty());

    // A claim is a visible change (Running); so is progress; a heartbeat without news is not.
    let c = s.claim("w", LEASE).await.expect("claim").expect("one");
    assert_eq!(c.record.id, "registries-a");
    let claimed = s.changes_since(after_inserts, 100).await.expect("changes");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].record.state, "Running");
    let seq = claimed[0].change_seq;
    let progress = serde_json::json!({"blobsDone": 1});
    assert!(s
        .heartbeat("registries-a", c.attempt(), LEASE, Some(&progress), 10.0)
        .await
        .expect("hb"));
    let moved = s.changes_since(seq, 100).await.expect("changes");
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].record.percent_complete, 10.0);
    let seq = moved[0].change_seq;
    assert!(s
        .heartbeat("registries-a", c.attempt(), LEASE, Some(&progress), 10.0)
        .await
        .expect("hb"));
    assert!(
        s.changes_since(seq, 100).await.expect("changes").is_empty(),
        "a lease renewal that changes nothing visible is not a change"
    );

    // The end is a change; an operation appears once, as it is now.
    assert!(s
        .finish("registries-a", c.attempt(), &Outcome::Succeeded, None)
        .await
        .expect("finish"));
    let ended = s.changes_since(0, 100).await.expect("changes");
    let ids: Vec<&str> = ended.iter().map(|r| r.record.id.as_str()).collect();
    assert_eq!(ids, ["registries-b", "registries-a"]);
    assert_eq!(ended[1].record.state, "Succeeded");
    assert_eq!(s.last_change_seq().await.expect("seq"), ended[1].change_seq);
    // The limit bounds a batch.
    assert_eq!(s.changes_since(0, 1).await.expect("changes").len(), 1);
}

async fn the_feed_never_selects_credentials(t: &TestStore) {
    let s = &t.store;
    s.enqueue(&new_op("registries-c")).await.expect("enqueue");
    let rows = s
        .list_operations(&OperationFilter::default(), 10, None)
        .await
        .expect("list");
    let text = format!("{rows:?}");
    assert!(!text.contains("s3cret-password"), "{text}");
    let changes = format!("{:?}", s.changes_since(0, 10).await.expect("changes"));
    assert!(!changes.contains("s3cret-password"), "{changes}");
    assert_eq!(rows[0].request.0["sourceImage"], "a/b:v1");
}
