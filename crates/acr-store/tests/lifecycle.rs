//! Registry deletion as an operation, the imports it cancels, and the data-plane metadata, on
//! both backends (see `common`).

use std::time::Duration;

use acr_store::metadata::{ChildRef, ManifestInfo};
use acr_store::{
    DeletionStarted, NewOperation, Outcome, RegistryProps, RegistryRecord, Reservation, Store,
    TagKey, Upserted, Work,
};
use sqlx::types::Json;

mod common;

use common::*;

on_both_backends!(
    deletion_marks_the_registry_and_holds_its_name,
    deleting_cancels_the_imports_into_the_registry_only,
    completing_a_deletion_removes_the_registry_and_its_metadata,
    metadata_is_kept_per_registry_and_repository,
);

const REG: &str = "Target01";

fn registry() -> RegistryRecord {
    RegistryRecord {
        name: REG.into(),
        name_lower: REG.to_lowercase(),
        subscription_id: SUB.into(),
        resource_group: "rg".into(),
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

fn deletion(id: &str) -> NewOperation {
    NewOperation {
        work: Work::DeleteRegistry,
        credentials: None,
        registry_name: REG.into(),
        ..new_op(id)
    }
}

async fn start(s: &Store, id: &str) -> DeletionStarted {
    s.begin_registry_deletion(SUB, "RG", "target01", &deletion(id))
        .await
        .expect("begin deletion")
}

async fn deletion_marks_the_registry_and_holds_its_name(t: &TestStore) {
    let s = &t.store;
    assert!(matches!(
        start(s, "registries-d0").await,
        DeletionStarted::NotFound
    ));
    assert_eq!(
        s.upsert_registry(&registry()).await.expect("upsert"),
        Upserted::Created
    );
    let DeletionStarted::Started(op) = start(s, "registries-d1").await else {
        panic!("not started");
    };
    assert_eq!(
        (op.kind.as_str(), op.state.as_str()),
        ("deleteRegistry", "Queued")
    );
    let r = s
        .get_registry(SUB, "rg", REG)
        .await
        .expect("get")
        .expect("still there while deleting");
    assert!(r.deleting());
    assert_eq!(r.deletion_operation_id.as_deref(), Some("registries-d1"));
    // A second DELETE finds the running deletion.
    match start(s, "registries-d2").await {
        DeletionStarted::AlreadyDeleting(rec) => assert_eq!(rec.id, "registries-d1"),
        other => panic!("{other:?}"),
    }
    // The name is not free: not for an update here, not for another subscription.
    assert_eq!(
        s.upsert_registry(&registry()).await.expect("upsert"),
        Upserted::Deleting
    );
    let elsewhere = RegistryRecord {
        subscription_id: "00000000-0000-0000-0000-0000000000ff".into(),
        ..registry()
    };
    assert_eq!(
        s.upsert_registry(&elsewhere).await.expect("upsert"),
        Upserted::NameTaken
    );
    // Deletions do not count against the import queue limits.
    let limits = acr_store::QueueLimits {
        per_subscription: Some(1),
        total: Some(1),
    };
    s.enqueue_limited(&new_op("registries-i1"), limits)
        .await
        .expect("the deletion does not fill the queue");
}

async fn deleting_cancels_the_imports_into_the_registry_only(t: &TestStore) {
    let s = &t.store;
    let into = |id: &str| NewOperation {
        registry_name: REG.into(),
        ..new_op(id)
    };
    let other = |id: &str| NewOperation {
        registry_name: "Other01".into(),
        ..new_op(id)
    };
    s.enqueue(&into("registries-running"))
        .await
        .expect("enqueue");
    s.enqueue(&other("registries-other"))
        .await
        .expect("enqueue");
    s.enqueue(&into("registries-queued"))
        .await
        .expect("enqueue");
    let running = s.claim("w", LEASE).await.expect("claim").expect("claimed");
    assert_eq!(running.record.id, "registries-running");
    let want = [TagKey {
        repository: "target01/app".into(),
        tag: "1".into(),
    }];
    assert_eq!(
        s.reserve_tags("registries-running", 1, &want)
            .await
            .expect("reserve"),
        Reservation::Reserved
    );
    let n = s
        .cancel_imports_into(
            "target01",
            "OperationCanceled",
            "the target registry was deleted.",
        )
        .await
        .expect("cancel");
    assert_eq!(n, 2);
    for id in ["registries-running", "registries-queued"] {
        let rec = s.get_operation(id).await.expect("get").expect("exists");
        assert_eq!(rec.state, "Canceled", "{id}");
        assert_eq!(rec.error_code.as_deref(), Some("OperationCanceled"));
        assert_eq!(
            rec.error_message.as_deref(),
            Some(format!("Operation {id} was canceled: the target registry was deleted.").as_str())
        );
        assert!(rec.ended_at.is_some());
    }
    let untouched = s
        .get_operation("registries-other")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(untouched.state, "Queued");
    assert!(s
        .reserved_tags("registries-running")
        .await
        .expect("list")
        .is_empty());
    // The running import's worker has not stopped yet; its heartbeat is refused, it
    // acknowledges, and then nothing is writing.
    assert_eq!(s.imports_still_writing("target01").await.expect("count"), 1);
    assert!(!s
        .heartbeat("registries-running", 1, LEASE, None, 10.0)
        .await
        .expect("heartbeat"));
    assert!(!s
        .finish("registries-running", 1, &Outcome::Succeeded, None)
        .await
        .expect("finish"));
    s.acknowledge_stop("registries-running", 1)
        .await
        .expect("ack");
    assert_eq!(s.imports_still_writing("target01").await.expect("count"), 0);
    // A worker that never answers stops counting when its lease runs out.
    s.enqueue(&into("registries-late")).await.expect("enqueue");
    let c = loop {
        let c = s
            .claim("w2", Duration::from_secs(1))
            .await
            .expect("claim")
            .expect("claimed");
        if c.record.id == "registries-late" {
            break c;
        }
    };
    s.cancel_imports_into("target01", "OperationCanceled", "deleted.")
        .await
        .expect("cancel");
    assert_eq!(s.imports_still_writing("target01").await.expect("count"), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        s.imports_still_writing("target01").await.expect("count"),
        0,
        "attempt {} still counted after its lease",
        c.attempt()
    );
}

fn manifest(digest: &str) -> ManifestInfo {
    ManifestInfo {
        digest: digest.into(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        config_media_type: Some("application/vnd.oci.image.config.v1+json".into()),
        image_size: 1234,
        architecture: Some("amd64".into()),
        os: Some("linux".into()),
        refs: None,
    }
}

async fn completing_a_deletion_removes_the_registry_and_its_metadata(t: &TestStore) {
    let s = &t.store;
    s.upsert_registry(&registry()).await.expect("upsert");
    s.record_written(
        REG,
        "app",
        &[manifest("sha256:aa")],
        &[("1".into(), "sha256:aa".into())],
    )
    .await
    .expect("record");
    assert_eq!(s.known_repositories(REG).await.expect("repos"), ["app"]);
    let DeletionStarted::Started(_) = start(s, "registries-del").await else {
        panic!("not started");
    };
    let c = s.claim("w", LEASE).await.expect("claim").expect("claimed");
    assert_eq!(c.work, Work::DeleteRegistry);
    // A fenced-out attempt changes nothing.
    assert!(!s
        .complete_registry_deletion("registries-del", 9, REG)
        .await
        .expect("complete"));
    assert!(s.get_registry(SUB, "rg", REG).await.expect("get").is_some());
    assert!(s
        .complete_registry_deletion("registries-del", c.attempt(), REG)
        .await
        .expect("complete"));
    assert!(s.get_registry(SUB, "rg", REG).await.expect("get").is_none());
    let op = s
        .get_operation("registries-del")
        .await
        .expect("get")
        .expect("the operation stays readable");
    assert_eq!(op.state, "Succeeded");
    assert!(s.known_repositories(REG).await.expect("repos").is_empty());
    assert!(s
        .known_manifests(REG, "app")
        .await
        .expect("manifests")
        .is_empty());
    // The name is free again, and the new registry starts empty.
    assert_eq!(
        s.upsert_registry(&registry()).await.expect("upsert"),
        Upserted::Created
    );
    assert!(s.known_repositories(REG).await.expect("repos").is_empty());
}

async fn metadata_is_kept_per_registry_and_repository(t: &TestStore) {
    let s = &t.store;
    let index = ManifestInfo {
        digest: "sha256:ii".into(),
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        config_media_type: None,
        image_size: 300,
        architecture: None,
        os: None,
        refs: Some(vec![ChildRef {
            digest: "sha256:aa".into(),
            architecture: Some("amd64".into()),
            os: Some("linux".into()),
        }]),
    };
    s.record_written(
        "MyReg",
        "team/app",
        &[manifest("sha256:aa"), index.clone()],
        &[("v1".into(), "sha256:ii".into())],
    )
    .await
    .expect("record");
    s.record_written("myreg", "team/app", &[manifest("sha256:bb")], &[])
        .await
        .expect("record");
    assert_eq!(
        s.known_manifests("MYREG", "team/app")
            .await
            .expect("manifests"),
        ["sha256:aa", "sha256:bb", "sha256:ii"]
    );
    assert_eq!(
        s.known_repositories("myreg").await.expect("repos"),
        ["team/app"]
    );
    assert!(s
        .known_repositories("other")
        .await
        .expect("repos")
        .is_empty());
}
