//! Tag reservations (NoForce: one winner per tag), on both backends: each case is a test
//! `<case>::postgres` and `<case>::sqlite` (see `common`).

use std::time::{Duration, Instant};

use acr_store::{Outcome, Reservation, Store, TagKey};

mod common;

use common::*;

on_both_backends!(
    concurrent_reservations_of_one_tag_have_one_winner,
    reservations_are_all_or_none,
    finish_and_release_free_the_tags,
    a_lapsed_reservation_is_taken_over_and_cannot_be_confirmed,
    a_later_attempt_takes_over_its_own_reservation,
    a_fenced_out_attempt_reserves_nothing,
);

fn tag(repo: &str, tag: &str) -> TagKey {
    TagKey {
        repository: repo.into(),
        tag: tag.into(),
    }
}

/// Enqueues and claims `id` with `lease`; returns the attempt.
async fn running(s: &Store, id: &str, lease: Duration) -> i32 {
    s.enqueue(&new_op(id)).await.expect("enqueue");
    let c = s
        .claim(&format!("w-{id}"), lease)
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(c.record.id, id, "claims go oldest first");
    c.attempt()
}

async fn concurrent_reservations_of_one_tag_have_one_winner(t: &TestStore) {
    let s = &t.store;
    let ids: Vec<String> = (0..8).map(|i| format!("registries-r{i}")).collect();
    for id in &ids {
        running(s, id, LEASE).await;
    }
    let wanted = [tag("myreg/same", "1")];
    let results = futures::future::join_all(ids.iter().map(|id| {
        let s = s.clone();
        let wanted = wanted.clone();
        async move {
            let r = s.reserve_tags(id, 1, &wanted).await.expect("reserve");
            (id.clone(), r)
        }
    }))
    .await;
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, r)| *r == Reservation::Reserved)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (id, r) in &results {
        if id != winners[0] {
            assert_eq!(
                *r,
                Reservation::Held {
                    tag: wanted[0].clone(),
                    operation_id: winners[0].clone()
                },
                "{id}"
            );
        }
    }
    assert!(s
        .confirm_tags(winners[0], 1, LEASE, 1)
        .await
        .expect("confirm"));
}

async fn reservations_are_all_or_none(t: &TestStore) {
    let s = &t.store;
    running(s, "registries-a", LEASE).await;
    running(s, "registries-b", LEASE).await;
    // Duplicates count once.
    let a = [tag("r/x", "1"), tag("r/x", "2"), tag("r/x", "1")];
    assert_eq!(
        s.reserve_tags("registries-a", 1, &a)
            .await
            .expect("reserve"),
        Reservation::Reserved
    );
    assert_eq!(
        s.reserved_tags("registries-a").await.expect("list"),
        vec![tag("r/x", "1"), tag("r/x", "2")]
    );
    assert!(s
        .confirm_tags("registries-a", 1, LEASE, 2)
        .await
        .expect("confirm"));
    // b wants one free tag and one of a's: it gets neither.
    let b = [tag("r/x", "3"), tag("r/x", "2")];
    assert!(matches!(
        s.reserve_tags("registries-b", 1, &b).await.expect("reserve"),
        Reservation::Held { ref tag, ref operation_id }
            if tag.tag == "2" && operation_id == "registries-a"
    ));
    assert!(s
        .reserved_tags("registries-b")
        .await
        .expect("list")
        .is_empty());
    // Another repository's tag of the same name is a different tag.
    assert_eq!(
        s.reserve_tags("registries-b", 1, &[tag("r/y", "1")])
            .await
            .expect("reserve"),
        Reservation::Reserved
    );
}

async fn finish_and_release_free_the_tags(t: &TestStore) {
    let s = &t.store;
    let want = [tag("r/x", "1")];
    running(s, "registries-a", LEASE).await;
    running(s, "registries-b", LEASE).await;
    running(s, "registries-c", LEASE).await;
    assert_eq!(
        s.reserve_tags("registries-a", 1, &want)
            .await
            .expect("store"),
        Reservation::Reserved
    );
    assert!(s
        .release("registries-a", 1, Duration::from_secs(60))
        .await
        .expect("store"));
    assert!(s
        .reserved_tags("registries-a")
        .await
        .expect("store")
        .is_empty());
    assert_eq!(
        s.reserve_tags("registries-b", 1, &want)
            .await
            .expect("store"),
        Reservation::Reserved
    );
    assert!(s
        .finish("registries-b", 1, &Outcome::Succeeded, None)
        .await
        .expect("store"));
    assert!(s
        .reserved_tags("registries-b")
        .await
        .expect("store")
        .is_empty());
    assert_eq!(
        s.reserve_tags("registries-c", 1, &want)
            .await
            .expect("store"),
        Reservation::Reserved
    );
    assert!(s
        .finish("registries-c", 1, &failed(), None)
        .await
        .expect("store"));
    assert!(s
        .reserved_tags("registries-c")
        .await
        .expect("store")
        .is_empty());
}

async fn a_lapsed_reservation_is_taken_over_and_cannot_be_confirmed(t: &TestStore) {
    let s = &t.store;
    let want = [tag("r/x", "1")];
    // a's worker "dies": its lease is one second.
    running(s, "registries-a", Duration::from_secs(1)).await;
    let reserved_at = Instant::now();
    running(s, "registries-b", LEASE).await;
    assert_eq!(
        s.reserve_tags("registries-a", 1, &want)
            .await
            .expect("store"),
        Reservation::Reserved
    );
    assert!(matches!(
        s.reserve_tags("registries-b", 1, &want)
            .await
            .expect("store"),
        Reservation::Held { .. }
    ));
    // Polled, not slept: it must be taken over once a's lease has passed, and not before.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s
            .reserve_tags("registries-b", 1, &want)
            .await
            .expect("store")
        {
            Reservation::Reserved => break,
            Reservation::Held { .. } => {
                assert!(Instant::now() < deadline, "never taken over");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Reservation::Lost => panic!("b lost its operation"),
        }
    }
    assert!(
        reserved_at.elapsed() >= Duration::from_millis(900),
        "taken over before the lease passed ({:?})",
        reserved_at.elapsed()
    );
    // a's attempt, if it were still running somewhere, may not write the tag.
    assert!(!s
        .confirm_tags("registries-a", 1, LEASE, 1)
        .await
        .expect("store"));
    assert!(s
        .confirm_tags("registries-b", 1, LEASE, 1)
        .await
        .expect("store"));
}

async fn a_later_attempt_takes_over_its_own_reservation(t: &TestStore) {
    let s = &t.store;
    let want = [tag("r/x", "1"), tag("r/x", "2")];
    running(s, "registries-a", Duration::from_secs(1)).await;
    assert_eq!(
        s.reserve_tags("registries-a", 1, &want)
            .await
            .expect("store"),
        Reservation::Reserved
    );
    // The worker died; once the lease passes, attempt 2 is claimed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        if let Some(c) = s.claim("w2", LEASE).await.expect("store") {
            break c;
        }
        assert!(Instant::now() < deadline, "never reclaimed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (again.record.id.as_str(), again.attempt()),
        ("registries-a", 2)
    );
    // Its own earlier reservation does not block it; attempt 1's is gone with the takeover.
    assert_eq!(
        s.reserve_tags("registries-a", 2, &want)
            .await
            .expect("store"),
        Reservation::Reserved
    );
    assert!(s
        .confirm_tags("registries-a", 2, LEASE, 2)
        .await
        .expect("store"));
    assert!(!s
        .confirm_tags("registries-a", 1, LEASE, 2)
        .await
        .expect("store"));
}

async fn a_fenced_out_attempt_reserves_nothing(t: &TestStore) {
    let s = &t.store;
    running(s, "registries-a", LEASE).await;
    assert_eq!(
        s.reserve_tags("registries-a", 7, &[tag("r/x", "1")])
            .await
            .expect("store"),
        Reservation::Lost
    );
    assert!(s
        .reserved_tags("registries-a")
        .await
        .expect("store")
        .is_empty());
    assert!(s
        .finish("registries-a", 1, &Outcome::Canceled, None)
        .await
        .expect("store"));
    assert_eq!(
        s.reserve_tags("registries-a", 1, &[tag("r/x", "1")])
            .await
            .expect("store"),
        Reservation::Lost
    );
}
