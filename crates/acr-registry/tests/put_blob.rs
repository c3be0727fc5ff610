//! `Registry::put_blob`, the in-process upload an embedder's copy engine writes through: the
//! same checks as an HTTP upload, and nothing left behind when they fail.

mod common;

use acr_grammar::Digest;
use acr_registry::PutBlobError;
use bytes::Bytes;
use common::{serve_at, Server};
use futures::StreamExt;
use sha2::{Digest as _, Sha256};

fn digest_of(b: &[u8]) -> Digest {
    Digest::parse(&format!("sha256:{}", hex::encode(Sha256::digest(b)))).expect("digest")
}

fn body(b: &[u8], chunk: usize) -> futures::stream::BoxStream<'static, std::io::Result<Bytes>> {
    let chunks: Vec<std::io::Result<Bytes>> = b
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(chunks).boxed()
}

fn uploads_left(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("data/uploads"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn put_blob_stores_what_an_upload_would_and_nothing_on_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve_at(dir.path(), None).await;
    let Server { registry, base, .. } = &server;
    let http = reqwest::Client::new();
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let d = digest_of(&content);

    // Stored and linked: served back over HTTP, byte for byte.
    registry
        .put_blob("team/app", &d, content.len() as u64, body(&content, 65536))
        .await
        .expect("put_blob");
    let r = http
        .get(format!("{base}/v2/team/app/blobs/{d}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("body").as_ref(), &content[..]);
    assert_eq!(uploads_left(dir.path()), 0);

    // Content that is not the digest: refused, nothing stored, no upload file left.
    let mut wrong = content.clone();
    wrong[1000] ^= 1;
    let other = digest_of(b"something else");
    let e = registry
        .put_blob("team/app", &other, wrong.len() as u64, body(&wrong, 65536))
        .await
        .expect_err("mismatch");
    assert!(
        matches!(&e, PutBlobError::Digest { computed, .. } if *computed == digest_of(&wrong)),
        "{e:?}"
    );
    let r = http
        .head(format!("{base}/v2/team/app/blobs/{other}"))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(r.status(), 404);
    assert_eq!(uploads_left(dir.path()), 0);

    // A body longer or shorter than declared: refused.
    for len in [content.len() as u64 - 1, content.len() as u64 + 1] {
        let e = registry
            .put_blob("team/other", &d, len, body(&content, 65536))
            .await
            .expect_err("length");
        assert!(matches!(e, PutBlobError::Length { .. }), "{e:?}");
    }
    // A body that fails mid-way: refused.
    let broken = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err(std::io::Error::other("source went away")),
    ])
    .boxed();
    let e = registry
        .put_blob("team/other", &d, content.len() as u64, broken)
        .await
        .expect_err("broken body");
    assert!(matches!(e, PutBlobError::Body(_)), "{e:?}");
    let r = http
        .head(format!("{base}/v2/team/other/blobs/{d}"))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(r.status(), 404, "no failed put linked the blob");
    assert_eq!(uploads_left(dir.path()), 0);

    // A name the registry would refuse over HTTP is refused here too.
    let e = registry
        .put_blob("Team/App", &d, content.len() as u64, body(&content, 65536))
        .await
        .expect_err("name");
    assert!(matches!(e, PutBlobError::Name(_)), "{e:?}");
}
