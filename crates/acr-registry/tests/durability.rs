//! `Durability::Fsync` syncs every file and directory entry a write makes before it answers
//! (`Durability::None` syncs nothing), one process per data directory, and idle upload
//! sessions are cancelled with their files.

mod common;

use std::time::Duration;

use acr_grammar::Digest;
use acr_registry::{Durability, Registry, RegistryError};
use bytes::Bytes;
use common::{try_serve, Options, Server};
use futures::StreamExt;
use sha2::{Digest as _, Sha256};

fn digest_of(b: &[u8]) -> Digest {
    Digest::parse(&format!("sha256:{}", hex::encode(Sha256::digest(b)))).expect("digest")
}

fn body(b: &[u8]) -> futures::stream::BoxStream<'static, std::io::Result<Bytes>> {
    futures::stream::iter(vec![Ok(Bytes::copy_from_slice(b))]).boxed()
}

async fn open(
    dir: &std::path::Path,
    durability: Durability,
    idle: Duration,
) -> Result<Server, RegistryError> {
    let options = Options {
        durability,
        upload_idle_timeout: idle,
        ..Options::default()
    };
    try_serve(dir, &options).await
}

/// Pushes one blob (in-process) and a manifest + tag (over HTTP) into a new repository.
async fn push(registry: &Registry, base: &str, repo: &str) {
    let layer = b"layer bytes".to_vec();
    let config = b"{}".to_vec();
    for b in [&layer, &config] {
        registry
            .put_blob(repo, &digest_of(b), b.len() as u64, body(b))
            .await
            .expect("put_blob");
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest_of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest_of(&layer).to_string(), "size": layer.len()}],
    });
    let r = reqwest::Client::new()
        .put(format!("{base}/v2/{repo}/manifests/v1"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_string())
        .send()
        .await
        .expect("PUT manifest");
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn fsync_syncs_every_file_and_directory_entry_and_none_syncs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let none = open(dir.path(), Durability::None, Duration::from_secs(60))
        .await
        .expect("open");
    push(&none.registry, &none.base, "team/app").await;
    assert_eq!(none.registry.syncs(), 0);

    let dir = tempfile::tempdir().expect("tempdir");
    let server = open(dir.path(), Durability::Fsync, Duration::from_secs(60))
        .await
        .expect("open");
    let (fsync, base) = (&server.registry, &server.base);
    push(fsync, base, "team/app").await;
    // At least: per blob its file, its entry in blobs/, its link's entry (2 × 3); the
    // manifest's file and entry, its revision's file and entry; the tag's file and entry (6);
    // plus every directory created on the way (repositories/team/app/…).
    let first = fsync.syncs();
    assert!(first >= 12 + 6, "{first} syncs");
    // The same content again in another repository: the links and the revision and tag are
    // new writes, the blobs' content is not rewritten — still synced, fewer.
    push(fsync, base, "team/other").await;
    let second = fsync.syncs() - first;
    assert!(second >= 2 * 2 + 4, "{second} syncs");
    // A tag delete is durable too.
    let before = fsync.syncs();
    let r = reqwest::Client::new()
        .delete(format!("{base}/v2/team/other/manifests/v1"))
        .send()
        .await
        .expect("DELETE tag");
    assert_eq!(r.status(), 202);
    assert_eq!(fsync.syncs() - before, 1);
}

#[tokio::test]
async fn a_second_open_of_the_data_directory_is_refused_while_the_first_lives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = open(dir.path(), Durability::None, Duration::from_secs(60))
        .await
        .expect("open");
    let err = open(dir.path(), Durability::None, Duration::from_secs(60))
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "another process (pid {}) is using the registry data directory",
            std::process::id()
        )),
        "{text}"
    );
    drop(first);
}

#[tokio::test]
async fn idle_upload_sessions_are_cancelled_and_their_files_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = open(dir.path(), Durability::None, Duration::from_millis(300))
        .await
        .expect("open");
    let (registry, base) = (&server.registry, &server.base);
    let http = reqwest::Client::new();
    let start = http
        .post(format!("{base}/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .expect("POST");
    assert_eq!(start.status(), 202);
    let location = start
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location")
        .to_string();
    let session = format!("{base}{location}");
    let patch = http
        .patch(&session)
        .body(vec![1u8; 100_000])
        .send()
        .await
        .expect("PATCH");
    assert_eq!(patch.status(), 202);
    let uploads = dir.path().join("data/uploads");
    assert_eq!(std::fs::read_dir(&uploads).expect("uploads").count(), 1);

    // Touched recently: kept.
    assert_eq!(registry.sweep_uploads().await, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(registry.sweep_uploads().await, 1);
    assert_eq!(std::fs::read_dir(&uploads).expect("uploads").count(), 0);
    let status = http.get(&session).send().await.expect("GET");
    assert_eq!(status.status(), 404);
}
