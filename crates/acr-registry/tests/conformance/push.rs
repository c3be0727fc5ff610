//! Push: blob uploads (monolithic POST + PUT, single POST, chunked, streamed), the upload
//! session's errors and recovery, sha512, cross-repository mounts, manifests and the blobs they
//! need (distribution-spec `conformance/02_push_test.go`).

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test]
async fn push_monolithic_post_then_put() {
    let s = serve(None).await;
    let r = s
        .req(Method::POST, "/v2/lib/mono/blobs/uploads/")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = location(&r);
    assert!(loc.starts_with("/v2/lib/mono/blobs/uploads/"), "{loc}");
    assert_eq!(header(&r, "range").as_deref(), Some("0-0"));
    assert_eq!(
        header(&r, "docker-upload-uuid").as_deref(),
        loc.rsplit('/').next()
    );
    let blob = bytes(5000, 1);
    let d = sha256(&blob);
    let r = s
        .req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
        .header("content-type", "application/octet-stream")
        .body(blob.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(location(&r), format!("/v2/lib/mono/blobs/{d}"));
    assert_eq!(header(&r, "docker-content-digest"), Some(d.clone()));
    let r = s.get(&location(&r)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.expect("body").as_ref(), blob.as_slice());
    // the session is over
    assert_eq!(s.get(&loc).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn push_single_post() {
    let s = serve(None).await;
    for (blob, d) in [
        (bytes(3000, 2), None),
        (bytes(3000, 3), Some("sha512")),
        (Vec::new(), None),
        (b"{}".to_vec(), None),
    ] {
        let d = match d {
            Some(_) => sha512(&blob),
            None => sha256(&blob),
        };
        let r = s
            .req(
                Method::POST,
                &format!("/v2/lib/single/blobs/uploads/?digest={d}"),
            )
            .header("content-type", "application/octet-stream")
            .body(blob.clone())
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), StatusCode::CREATED, "{d}");
        assert_eq!(location(&r), format!("/v2/lib/single/blobs/{d}"));
        assert_eq!(header(&r, "docker-content-digest"), Some(d.clone()));
        let r = s.get(&format!("/v2/lib/single/blobs/{d}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-length"), Some(blob.len().to_string()));
        assert_eq!(r.bytes().await.expect("body").as_ref(), blob.as_slice());
    }
    // `?digest=` and no body (not the empty blob's digest): a session, as a hint
    let d = sha256(b"later");
    let r = s
        .post(&format!("/v2/lib/single/blobs/uploads/?digest={d}"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn push_chunked_with_content_range() {
    let s = serve(None).await;
    let blob = bytes(3 * 1024 - 5, 4);
    let d = sha256(&blob);
    let mut loc = s.start_upload("lib/chunked").await;
    let chunks: Vec<&[u8]> = blob.chunks(1024).collect();
    let mut end = 0usize;
    for c in &chunks {
        let start = end;
        end += c.len();
        let r = s
            .req(Method::PATCH, &loc)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{}", end - 1))
            .header("content-length", c.len())
            .body(c.to_vec())
            .send()
            .await
            .expect("PATCH");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&r, "range"), Some(format!("0-{}", end - 1)));
        assert_eq!(header(&r, "content-length").as_deref(), Some("0"));
        loc = location(&r);
    }
    let r = s.get(&loc).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), Some(format!("0-{}", blob.len() - 1)));
    assert_eq!(location(&r), loc);
    let r = s
        .req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
        .header("content-length", "0")
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        s.get(&format!("/v2/lib/chunked/blobs/{d}"))
            .await
            .bytes()
            .await
            .expect("b")
            .as_ref(),
        blob.as_slice()
    );

    // the last chunk in the closing PUT
    let blob = bytes(2500, 5);
    let d = sha256(&blob);
    let loc = s.start_upload("lib/chunked").await;
    let r = s
        .req(Method::PATCH, &loc)
        .header("content-range", "0-1023")
        .body(blob[..1024].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .req(
            Method::PUT,
            &with_query(&location(&r), &format!("digest={d}")),
        )
        .header("content-range", format!("1024-{}", blob.len() - 1))
        .body(blob[1024..].to_vec())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        s.head(&format!("/v2/lib/chunked/blobs/{d}")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn chunked_out_of_order_is_416_with_the_true_range() {
    let s = serve(None).await;
    let blob = bytes(3000, 6);
    let d = sha256(&blob);
    let loc = s.start_upload("lib/ooo").await;
    let patch = |range: String, body: Vec<u8>| {
        s.req(Method::PATCH, &loc)
            .header("content-type", "application/octet-stream")
            .header("content-range", range)
            .body(body)
            .send()
    };
    // skipping ahead before anything was sent
    let r = patch("1000-1999".into(), blob[1000..2000].to_vec())
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "range").as_deref(), Some("0-0"));
    assert_eq!(header(&r, "content-length").as_deref(), Some("0"));
    assert_eq!(location(&r), loc);
    assert!(r.bytes().await.expect("body").is_empty());
    // the first chunk goes in
    let r = patch("0-999".into(), blob[..1000].to_vec())
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // re-sending it (stale location, overlapping) and skipping ahead are both 416, truthfully
    for (range, body) in [("0-999", &blob[..1000]), ("2000-2999", &blob[2000..])] {
        let r = patch(range.into(), body.to_vec()).await.expect("PATCH");
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(header(&r, "range").as_deref(), Some("0-999"), "{range}");
        assert_eq!(header(&r, "content-length").as_deref(), Some("0"));
    }
    let r = s.get(&loc).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range").as_deref(), Some("0-999"));
    // an out-of-order closing PUT is 416 too, and the session still works after all that
    let r = s
        .req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
        .header("content-range", "2000-2999")
        .body(blob[2000..].to_vec())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "range").as_deref(), Some("0-999"));
    let r = patch("1000-1999".into(), blob[1000..2000].to_vec())
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
        .header("content-range", "2000-2999")
        .body(blob[2000..].to_vec())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = s
        .get(&format!("/v2/lib/ooo/blobs/{d}"))
        .await
        .bytes()
        .await
        .expect("body");
    assert_eq!(got.as_ref(), blob.as_slice());
}

#[tokio::test]
async fn push_streamed_patch_without_content_range() {
    let s = serve(None).await;
    let blob = bytes(200_000, 8);
    let d = sha256(&blob);
    let loc = s.start_upload("lib/stream").await;
    let r = s
        .req(Method::PATCH, &loc)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(
            blob[..150_000]
                .chunks(7000)
                .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                .collect::<Vec<_>>(),
        )))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range").as_deref(), Some("0-149999"));
    let r = s
        .req(Method::PATCH, &location(&r))
        .body(blob[150_000..].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(header(&r, "range").as_deref(), Some("0-199999"));
    let r = s
        .req(
            Method::PUT,
            &with_query(&location(&r), &format!("digest={d}")),
        )
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(header(&r, "location").is_some());
    let got = s
        .get(&format!("/v2/lib/stream/blobs/{d}"))
        .await
        .bytes()
        .await
        .expect("body");
    assert_eq!(got.as_ref(), blob.as_slice());
}

#[tokio::test]
async fn wrong_digest_at_finish_commits_nothing() {
    let s = serve(None).await;
    let blob = bytes(4000, 9);
    let real = sha256(&blob);
    let claimed = sha256(b"something else");
    // POST + PUT
    let loc = s.start_upload("lib/wrong").await;
    let r = s
        .req(Method::PUT, &with_query(&loc, &format!("digest={claimed}")))
        .body(blob.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    assert_eq!(
        s.get(&loc).await.status(),
        StatusCode::NOT_FOUND,
        "session cancelled"
    );
    // single POST, chunked, streamed
    let r = s
        .req(
            Method::POST,
            &format!("/v2/lib/wrong/blobs/uploads/?digest={claimed}"),
        )
        .body(blob.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let loc = s.start_upload("lib/wrong").await;
    let r = s
        .req(Method::PATCH, &loc)
        .header("content-range", format!("0-{}", blob.len() - 1))
        .body(blob.clone())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .req(Method::PUT, &with_query(&loc, &format!("digest={claimed}")))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // a sha512 claim that does not match (the file is read back for it)
    let loc = s.start_upload("lib/wrong").await;
    let r = s
        .req(
            Method::PUT,
            &with_query(&loc, &format!("digest={}", sha512(b"other"))),
        )
        .body(blob.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    for d in [&real, &claimed] {
        assert_eq!(
            s.head(&format!("/v2/lib/wrong/blobs/{d}")).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    // nothing was left in the content store or in uploads/
    let data = s.root.join("data");
    let files = count_files(&data.join("blobs")) + count_files(&data.join("uploads"));
    assert_eq!(files, 0);
}

#[tokio::test]
async fn a_broken_patch_leaves_the_session_as_it_was() {
    let s = serve(None).await;
    let blob = bytes(300_000, 21);
    let d = sha256(&blob);
    let loc = s.start_upload("lib/broken").await;
    let r = s
        .req(Method::PATCH, &loc)
        .body(blob[..100_000].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // a streamed PATCH whose client fails half-way: the connection is cut mid-body
    let parts: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(blob[100_000..150_000].to_vec()),
        Ok(vec![0xEE; 50_000]),
        Err(std::io::Error::other("client gave up")),
    ];
    let broken = s
        .req(Method::PATCH, &loc)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(parts)))
        .send()
        .await;
    assert!(broken.is_err() || broken.is_ok_and(|r| r.status() != StatusCode::ACCEPTED));
    // the session is where it was; going on from there gives the right blob
    let r = s
        .req(Method::PATCH, &loc)
        .header("content-range", format!("100000-{}", blob.len() - 1))
        .body(blob[100_000..].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "{:?}",
        header(&r, "range")
    );
    assert_eq!(header(&r, "range"), Some(format!("0-{}", blob.len() - 1)));
    let r = s
        .req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = s
        .get(&format!("/v2/lib/broken/blobs/{d}"))
        .await
        .bytes()
        .await
        .expect("body");
    assert_eq!(sha256(&got), d);
}

#[tokio::test]
async fn body_length_must_match_content_range() {
    let s = serve(None).await;
    let loc = s.start_upload("lib/len").await;
    let r = s
        .req(Method::PATCH, &loc)
        .header("content-range", "0-99")
        .body(vec![1u8; 50])
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "SIZE_INVALID");
    // nothing of it was kept
    assert_eq!(header(&s.get(&loc).await, "range").as_deref(), Some("0-0"));
}

#[tokio::test]
async fn sha512_blobs_and_manifests() {
    let s = serve(None).await;
    let config = b"{\"architecture\":\"arm64\",\"os\":\"linux\"}".to_vec();
    let layer = bytes(10_000, 10);
    let cd = sha512(&config);
    let ld = sha512(&layer);
    // POST + PUT (the file is read back for sha512), and chunked
    s.push_blob_as("lib/s512", &config, &cd).await;
    let loc = s.start_upload("lib/s512").await;
    let r = s
        .req(Method::PATCH, &loc)
        .header("content-range", "0-4999")
        .body(layer[..5000].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .req(
            Method::PUT,
            &with_query(&location(&r), &format!("digest={ld}")),
        )
        .header("content-range", "5000-9999")
        .body(layer[5000..].to_vec())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), Some(ld.clone()));
    let r = s.head(&format!("/v2/lib/s512/blobs/{ld}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), Some(ld.clone()));

    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": cd, "size": config.len()},
        "layers": [{"mediaType": MT_LAYER, "digest": ld, "size": layer.len()}],
    }))
    .expect("json");
    let md = sha512(&manifest);
    let r = s
        .req(
            Method::PUT,
            &format!("/v2/lib/s512/manifests/{md}?tag=v512"),
        )
        .header("content-type", MT_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED, "{}", text(r).await);
    assert_eq!(header(&r, "docker-content-digest"), Some(md.clone()));
    assert_eq!(location(&r), format!("/v2/lib/s512/manifests/{md}"));
    assert_eq!(header(&r, "oci-tag").as_deref(), Some("v512"));
    for reference in [md.as_str(), "v512"] {
        let r = s.get(&format!("/v2/lib/s512/manifests/{reference}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "docker-content-digest"), Some(md.clone()));
        assert_eq!(r.bytes().await.expect("b").as_ref(), manifest.as_slice());
    }
    // a sha512 reference that does not match the body
    let r = s
        .put_manifest("lib/s512", &sha512(b"not it"), MT_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    // an index of sha512 children
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{"mediaType": MT_MANIFEST, "digest": md, "size": manifest.len(),
                       "platform": {"architecture": "arm64", "os": "linux"}}],
    }))
    .expect("json");
    let id = sha512(&index);
    let r = s.put_manifest("lib/s512", &id, MT_INDEX, &index).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        s.head(&format!("/v2/lib/s512/manifests/{id}"))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn cross_repository_mount() {
    let s = serve(None).await;
    let blob = bytes(1500, 11);
    let d = s.push_blob("lib/source", &blob).await;
    let r = s
        .post(&format!(
            "/v2/lib/target/blobs/uploads/?mount={d}&from=lib/source"
        ))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(location(&r), format!("/v2/lib/target/blobs/{d}"));
    assert_eq!(header(&r, "docker-content-digest"), Some(d.clone()));
    let got = s
        .get(&format!("/v2/lib/target/blobs/{d}"))
        .await
        .bytes()
        .await
        .expect("b");
    assert_eq!(got.as_ref(), blob.as_slice());

    // not in `from`: an ordinary session
    let missing = sha256(b"missing");
    let r = s
        .post(&format!(
            "/v2/lib/target/blobs/uploads/?mount={missing}&from=lib/source"
        ))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(location(&r).starts_with("/v2/lib/target/blobs/uploads/"));
    // `from` an invalid name: an ordinary session too
    let r = s
        .post(&format!(
            "/v2/lib/target/blobs/uploads/?mount={d}&from=NOT..VALID"
        ))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // without `from` (anonymous mount, open registry): found in the store, or a session
    let r = s
        .post(&format!("/v2/lib/third/blobs/uploads/?mount={d}"))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        s.head(&format!("/v2/lib/third/blobs/{d}")).await.status(),
        StatusCode::OK
    );
    let r = s
        .post(&format!("/v2/lib/third/blobs/uploads/?mount={missing}"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn upload_status_and_cancel() {
    let s = serve(None).await;
    let loc = s.start_upload("lib/cancel").await;
    let r = s
        .req(Method::PATCH, &loc)
        .body(vec![0u8; 10])
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s.get(&loc).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range").as_deref(), Some("0-9"));
    assert!(header(&r, "docker-upload-uuid").is_some());
    // the session belongs to its repository
    let other = loc.replace("/lib/cancel/", "/lib/elsewhere/");
    assert_eq!(s.get(&other).await.status(), StatusCode::NOT_FOUND);
    let r = s.delete(&loc).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for m in [Method::GET, Method::PATCH, Method::PUT, Method::DELETE] {
        let r = s.req(m.clone(), &loc).send().await.expect("req");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{m}");
        if m != Method::PUT {
            assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
        }
    }
}

#[tokio::test]
async fn concurrent_pushes_of_one_blob() {
    let s = Arc::new(serve(None).await);
    let blob = Arc::new(bytes(1 << 20, 12));
    let d = sha256(&blob);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (s, blob, d) = (s.clone(), blob.clone(), d.clone());
        tasks.push(tokio::spawn(async move {
            let repo = format!("lib/conc{}", i % 2);
            s.push_blob_as(&repo, &blob, &d).await;
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    for repo in ["lib/conc0", "lib/conc1"] {
        let got = s
            .get(&format!("/v2/{repo}/blobs/{d}"))
            .await
            .bytes()
            .await
            .expect("b");
        assert_eq!(sha256(&got), d);
    }
}

#[tokio::test]
async fn manifest_push_checks_its_blobs() {
    let s = serve(None).await;
    let config = b"{}".to_vec();
    let cd = s.push_blob("lib/m", &config).await;
    let missing = sha256(b"absent layer");
    let sr = &s;
    let put = |body: Value| async move {
        let b = serde_json::to_vec(&body).expect("json");
        sr.put_manifest("lib/m", "t", MT_MANIFEST, &b).await
    };
    // a missing layer
    let r = put(json!({"schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": cd, "size": 2},
        "layers": [{"mediaType": MT_LAYER, "digest": missing, "size": 5}]}))
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    // a missing config
    let r = put(json!({"schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": missing, "size": 2}, "layers": []}))
    .await;
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    // non-distributable and foreign layers, and layers with urls, need no blob
    let r = put(json!({"schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": cd, "size": 2},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": missing, "size": 123456,
             "urls": ["https://store.example.com/blobs/sha256/x"]},
            {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar", "digest": sha256(b"nd2"), "size": 12345},
            {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": sha256(b"win"), "size": 1},
            {"mediaType": MT_LAYER, "digest": sha256(b"elsewhere"), "size": 1, "urls": ["https://example.com/l"]}
        ]}))
    .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{}", text(r).await);
    // an index whose children are not (yet) there is accepted
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MT_INDEX,
        "manifests": [{"mediaType": MT_MANIFEST, "digest": missing, "size": 5}]}))
    .expect("json");
    let r = s.put_manifest("lib/m", "sparse", MT_INDEX, &index).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // not a manifest
    for body in [
        &b"not json"[..],
        b"[1,2]",
        br#"{"layers": 5}"#,
        br#"{"layers":[{"digest":"sha256:zz"}]}"#,
    ] {
        let r = s.put_manifest("lib/m", "bad", MT_MANIFEST, body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    }
    // a large manifest (~3.9 MB of annotations, as the suite pushes) fits; over 4 MiB is 413
    let mut annotations = serde_json::Map::new();
    for i in 0..390 {
        annotations.insert(format!("large-annotation-{i}"), json!("A".repeat(10_000)));
    }
    let r = put(json!({"schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": cd, "size": 2}, "layers": [],
        "annotations": annotations}))
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let big = vec![b' '; (4 << 20) + 1];
    let r = s.put_manifest("lib/m", "big", MT_MANIFEST, &big).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
}

#[tokio::test]
async fn manifests_keep_their_bytes_and_content_type() {
    let s = serve(None).await;
    let cd = s.push_blob("lib/raw", b"{\"os\":\"linux\"}").await;
    let docker = "application/vnd.docker.distribution.manifest.v2+json";
    // odd but valid formatting must come back byte for byte
    let body = format!(
        "{{\n   \"schemaVersion\" : 2,\n\t\"mediaType\": \"{docker}\",\"config\":{{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"digest\":\"{cd}\",\"size\":15}},\"layers\":[]   }}\n"
    );
    let d = sha256(body.as_bytes());
    let r = s
        .req(Method::PUT, "/v2/lib/raw/manifests/latest?tag=also&tag=too")
        .header("content-type", docker)
        .body(body.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), Some(d.clone()));
    let tags: Vec<String> = r
        .headers()
        .get_all("oci-tag")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    assert_eq!(tags, ["also", "too"]);
    for reference in ["latest", "also", "too", d.as_str()] {
        let r = s.get(&format!("/v2/lib/raw/manifests/{reference}")).await;
        assert_eq!(header(&r, "content-type").as_deref(), Some(docker));
        assert_eq!(r.text().await.expect("body"), body);
    }
    // without a Content-Type, the document's mediaType is stored
    let body2 = body.replace("[]   }", "[] }");
    let r = s
        .req(Method::PUT, "/v2/lib/raw/manifests/noct")
        .body(body2)
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s.head("/v2/lib/raw/manifests/noct").await;
    assert_eq!(header(&r, "content-type").as_deref(), Some(docker));
}
