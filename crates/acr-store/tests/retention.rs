//! What the retention sweep reads (manifests with their tags, children and times; unfinished
//! imports), the registry's stored policies, and the sweep's lock, on both backends (see
//! `common`); the lock's exclusion between processes on PostgreSQL.

use acr_store::metadata::{ChildRef, ManifestInfo};
use acr_store::{RegistryProps, RegistryRecord, Store};

mod common;

use common::*;

on_both_backends!(
    manifests_with_tags_children_and_untag_times,
    policies_are_kept_with_the_registry,
    unfinished_imports_are_counted_per_registry,
);

const REG: &str = "Target01";

fn manifest(digest: &str, refs: Option<Vec<&str>>) -> ManifestInfo {
    ManifestInfo {
        digest: digest.into(),
        media_type: if refs.is_some() {
            "application/vnd.oci.image.index.v1+json"
        } else {
            "application/vnd.oci.image.manifest.v1+json"
        }
        .into(),
        config_media_type: None,
        image_size: 10,
        architecture: None,
        os: None,
        refs: refs.map(|r| {
            r.into_iter()
                .map(|d| ChildRef {
                    digest: d.into(),
                    architecture: None,
                    os: None,
                })
                .collect()
        }),
    }
}

async fn row_time(s: &Store, digest: &str) -> chrono::DateTime<chrono::Utc> {
    s.retention_manifests(REG)
        .await
        .expect("rows")
        .into_iter()
        .find(|r| r.digest == digest)
        .expect("the manifest")
        .updated_at
}

async fn manifests_with_tags_children_and_untag_times(t: &TestStore) {
    let s = &t.store;
    s.record_written(
        REG,
        "app",
        &[
            manifest("sha256:aa", None),
            manifest("sha256:bb", None),
            manifest("sha256:ii", Some(vec!["sha256:aa"])),
        ],
        &[
            ("v1".into(), "sha256:ii".into()),
            ("latest".into(), "sha256:bb".into()),
        ],
    )
    .await
    .expect("record");
    s.record_written(REG, "other", &[manifest("sha256:cc", None)], &[])
        .await
        .expect("record");
    let rows = s.retention_manifests("TARGET01").await.expect("rows");
    let seen: Vec<(&str, &str, bool, bool)> = rows
        .iter()
        .map(|r| {
            (
                r.repository.as_str(),
                r.digest.as_str(),
                r.tagged,
                r.refs.is_some(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("app", "sha256:aa", false, false),
            ("app", "sha256:bb", true, false),
            ("app", "sha256:ii", true, true),
            ("other", "sha256:cc", false, false),
        ]
    );
    let index = rows
        .iter()
        .find(|r| r.digest == "sha256:ii")
        .expect("index");
    assert_eq!(
        index.refs.as_ref().map(|r| r.0[0].digest.clone()),
        Some("sha256:aa".into())
    );
    assert!(rows.iter().all(|r| r.delete_enabled));

    // A tag moved off a manifest, or deleted, updates the manifest it left (the retention
    // period counts from the untagging).
    let before = row_time(s, "sha256:bb").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    s.record_written(
        REG,
        "app",
        &[manifest("sha256:dd", None)],
        &[("latest".into(), "sha256:dd".into())],
    )
    .await
    .expect("moved tag");
    let moved = row_time(s, "sha256:bb").await;
    assert!(moved > before, "{moved} after {before}");
    let index_before = row_time(s, "sha256:ii").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(s.delete_tag_meta(REG, "app", "v1").await.expect("untag"));
    assert!(row_time(s, "sha256:ii").await > index_before);
    let rows = s.retention_manifests(REG).await.expect("rows");
    assert!(rows.iter().all(|r| r.digest == "sha256:dd" || !r.tagged));
}

async fn policies_are_kept_with_the_registry(t: &TestStore) {
    let s = &t.store;
    let mut props = RegistryProps::default();
    props.policies.retention_policy.status = "enabled".into();
    props.policies.retention_policy.days = 0;
    let id = acr_core::arm::RegistryId {
        subscription: SUB.into(),
        resource_group: "rg".into(),
        name: REG.into(),
    };
    let record = RegistryRecord::new(&id, "eastus".into(), "Premium".into(), None, props);
    s.upsert_registry(&record).await.expect("upsert");
    let got = s
        .get_registry(SUB, "rg", REG)
        .await
        .expect("get")
        .expect("stored");
    assert!(got.props().policies.retention_policy.enabled());
    assert_eq!(got.props().policies.retention_policy.days, 0);
    assert_eq!(got.props().policies.export_policy.status, "enabled");
    // Properties stored before policies existed read as ACR's defaults.
    let old: RegistryProps =
        serde_json::from_value(serde_json::json!({"adminUserEnabled": true})).expect("parse");
    assert_eq!(old.policies, acr_store::registries::Policies::default());
}

async fn unfinished_imports_are_counted_per_registry(t: &TestStore) {
    let s = &t.store;
    assert_eq!(s.unfinished_imports_into("TARGET01").await.expect("n"), 0);
    s.enqueue(&new_op("registries-1")).await.expect("enqueue");
    assert_eq!(s.unfinished_imports_into("Target01").await.expect("n"), 1);
    assert_eq!(s.unfinished_imports_into("other").await.expect("n"), 0);
    let c = s.claim("w", LEASE).await.expect("claim").expect("claimed");
    assert_eq!(s.unfinished_imports_into(REG).await.expect("n"), 1);
    s.finish(
        &c.record.id,
        c.attempt(),
        &acr_store::Outcome::Succeeded,
        None,
    )
    .await
    .expect("finish");
    assert_eq!(s.unfinished_imports_into(REG).await.expect("n"), 0);
    // The lock is always there for the one process of a SQLite store, and given back.
    let lock = s.try_sweep_lock().await.expect("lock").expect("free");
    lock.release().await;
    assert!(s.try_sweep_lock().await.expect("lock").is_some());
}

/// Two processes on one PostgreSQL database: one sweep at a time; a released or dropped
/// lock (a process that dies closes its session) is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sweep_at_a_time_across_processes_on_postgresql() {
    let (t, url) = TestStore::postgres_unmigrated(|_| async {}).await;
    t.store.migrate().await.expect("migrate");
    let other = Store::connect(&url, 2).await.expect("second process");
    let held = t.store.try_sweep_lock().await.expect("lock").expect("free");
    assert!(
        other.try_sweep_lock().await.expect("lock").is_none(),
        "a second sweep ran beside the first"
    );
    held.release().await;
    let theirs = other
        .try_sweep_lock()
        .await
        .expect("lock")
        .expect("free again");
    assert!(t.store.try_sweep_lock().await.expect("lock").is_none());
    drop(theirs);
    let again = poll_lock(&t.store).await;
    again.release().await;
    other.close().await;
    t.cleanup().await;
}

/// The lock once it is free (a dropped lock's session ends on the server's side a moment
/// after its socket closes).
async fn poll_lock(s: &Store) -> acr_store::SweepLock {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(l) = s.try_sweep_lock().await.expect("lock") {
            return l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a dropped lock was never released"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
