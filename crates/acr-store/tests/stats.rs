//! What the metrics read from the store, on both backends: the unfinished operations counted
//! where every replica sees them ([`acr_store::Store::queue_stats`]), and claims that tell a
//! take-over of an expired lease from a queued operation.

use std::time::{Duration, Instant};

use acr_store::{Outcome, QueueStats};

mod common;

use common::*;

on_both_backends!(
    queue_stats_count_the_unfinished_operations,
    a_claim_says_whether_it_took_over_an_expired_lease,
);

async fn queue_stats_count_the_unfinished_operations(t: &TestStore) {
    let s = &t.store;
    assert_eq!(
        s.queue_stats().await.expect("stats"),
        QueueStats::default(),
        "an empty queue"
    );
    for id in [
        "registries-q1",
        "registries-q2",
        "registries-q3",
        "registries-q4",
    ] {
        s.enqueue(&new_op(id)).await.expect("enqueue");
    }
    // q1 has been runnable for 30 s (its backoff ended then).
    t.exec(
        "update operations set run_at = now() - interval '30 seconds' where id = $1",
        "update operations set run_at = strftime('%Y-%m-%dT%H:%M:%f000Z', 'now', '-30 seconds') where id = ?1",
        "registries-q1",
    )
    .await
    .expect("update");
    let stats = s.queue_stats().await.expect("stats");
    assert_eq!((stats.queued, stats.running), (4, 0));
    let age = stats.oldest_queued_age;
    assert!(
        age >= Duration::from_secs(30) && age < Duration::from_secs(60),
        "the oldest runnable one waited 30 s: {age:?}"
    );

    // Claimed: q1 runs (and no longer counts as waiting), q2 waits out a retry delay.
    let q1 = s.claim("w", LEASE).await.expect("claim").expect("q1");
    assert_eq!(q1.record.id, "registries-q1");
    let q2 = s.claim("w", LEASE).await.expect("claim").expect("q2");
    assert!(s
        .release(&q2.record.id, q2.attempt(), Duration::from_secs(600))
        .await
        .expect("release"));
    let q3 = s.claim("w", LEASE).await.expect("claim").expect("q3");
    assert_eq!(q3.record.id, "registries-q3");
    let stats = s.queue_stats().await.expect("stats");
    assert_eq!(
        (stats.queued, stats.running),
        (2, 2),
        "q2 (delayed) and q4 queued, q1 and q3 running"
    );
    assert!(
        stats.oldest_queued_age < Duration::from_secs(30),
        "q4 waits since its enqueue; q2, not runnable yet, does not count: {:?}",
        stats.oldest_queued_age
    );

    // Ended operations leave the counts.
    assert!(s
        .finish(&q1.record.id, q1.attempt(), &Outcome::Succeeded, None)
        .await
        .expect("finish"));
    assert!(s
        .finish(&q3.record.id, q3.attempt(), &Outcome::Canceled, None)
        .await
        .expect("finish"));
    let q4 = s.claim("w", LEASE).await.expect("claim").expect("q4");
    let stats = s.queue_stats().await.expect("stats");
    assert_eq!((stats.queued, stats.running), (1, 1));
    assert_eq!(
        stats.oldest_queued_age,
        Duration::ZERO,
        "only a delayed one is queued"
    );
    assert!(s
        .finish(&q4.record.id, q4.attempt(), &Outcome::Succeeded, None)
        .await
        .expect("finish"));
}

async fn a_claim_says_whether_it_took_over_an_expired_lease(t: &TestStore) {
    let s = &t.store;
    s.enqueue(&new_op("registries-x")).await.expect("enqueue");
    let first = s
        .claim("a", Duration::from_millis(200))
        .await
        .expect("claim")
        .expect("claimed");
    assert!(!first.reclaimed, "a queued operation is not a re-claim");
    let deadline = Instant::now() + Duration::from_secs(10);
    let second = loop {
        if let Some(c) = s.claim("b", LEASE).await.expect("claim") {
            break c;
        }
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(second.reclaimed, "taken over from an expired lease");
    assert_eq!(second.attempt(), 2);
    assert!(s
        .release("registries-x", 2, Duration::ZERO)
        .await
        .expect("release"));
    let third = s.claim("c", LEASE).await.expect("claim").expect("claimed");
    assert!(!third.reclaimed, "a released operation is queued again");
    assert_eq!(third.attempt(), 3);
}
