//! Content management: deleting tags, manifests and blobs; what a reopened registry keeps
//! (distribution-spec `conformance/04_management_test.go`).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn delete_tag_removes_only_the_tag() {
    let s = serve(None).await;
    let img = s.push_image("lib/deltag", "a", 15).await;
    assert_eq!(
        s.put_manifest("lib/deltag", "b", MT_MANIFEST, &img.manifest)
            .await
            .status(),
        StatusCode::CREATED
    );
    let r = s.delete("/v2/lib/deltag/manifests/a").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        s.head("/v2/lib/deltag/manifests/a").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.head("/v2/lib/deltag/manifests/b").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        s.head(&format!("/v2/lib/deltag/manifests/{}", img.digest))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        json_body(s.get("/v2/lib/deltag/tags/list").await).await["tags"],
        json!(["b"])
    );
    let r = s.delete("/v2/lib/deltag/manifests/a").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn delete_manifest_by_digest_removes_its_tags() {
    let s = serve(None).await;
    let img = s.push_image("lib/delman", "a", 16).await;
    let other = s.push_image("lib/delman", "keep", 17).await;
    assert_eq!(
        s.put_manifest("lib/delman", "b", MT_MANIFEST, &img.manifest)
            .await
            .status(),
        StatusCode::CREATED
    );
    let path = format!("/v2/lib/delman/manifests/{}", img.digest);
    assert_eq!(s.delete(&path).await.status(), StatusCode::ACCEPTED);
    assert_eq!(s.head(&path).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(s.get(&path).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        s.head("/v2/lib/delman/manifests/a").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        json_body(s.get("/v2/lib/delman/tags/list").await).await["tags"],
        json!(["keep"])
    );
    assert_eq!(
        s.head(&format!("/v2/lib/delman/manifests/{}", other.digest))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(s.delete(&path).await.status(), StatusCode::NOT_FOUND);
    // its blobs stay in the repository until deleted themselves
    assert_eq!(
        s.head(&format!("/v2/lib/delman/blobs/{}", img.layer_digest))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn delete_blob_is_per_repository() {
    let s = serve(None).await;
    let blob = bytes(800, 18);
    let d = s.push_blob("lib/delblob", &blob).await;
    let r = s
        .post(&format!(
            "/v2/lib/sharer/blobs/uploads/?mount={d}&from=lib/delblob"
        ))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s.delete(&format!("/v2/lib/delblob/blobs/{d}")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        s.head(&format!("/v2/lib/delblob/blobs/{d}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(&format!("/v2/lib/delblob/blobs/{d}")).await.status(),
        StatusCode::NOT_FOUND
    );
    // the other repository still has it
    let got = s
        .get(&format!("/v2/lib/sharer/blobs/{d}"))
        .await
        .bytes()
        .await
        .expect("b");
    assert_eq!(got.as_ref(), blob.as_slice());
    let r = s.delete(&format!("/v2/lib/delblob/blobs/{d}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn reopening_keeps_content_and_drops_stale_uploads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (img, loc) = {
        let s = serve_at(dir.path(), None).await;
        let img = s.push_image("lib/persist", "v1", 19).await;
        let loc = s.start_upload("lib/persist").await;
        let r = s
            .req(Method::PATCH, &loc)
            .body(vec![1u8; 100])
            .send()
            .await
            .expect("PATCH");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        (img, loc)
    };
    let uploads = dir.path().join("data/uploads");
    assert_eq!(count_files(&uploads), 1);
    let s = serve_at(dir.path(), None).await;
    assert_eq!(count_files(&uploads), 0, "stale uploads deleted");
    let r = s.get("/v2/lib/persist/manifests/v1").await;
    assert_eq!(
        r.bytes().await.expect("b").as_ref(),
        img.manifest.as_slice()
    );
    assert_eq!(s.get(&loc).await.status(), StatusCode::NOT_FOUND);
}
