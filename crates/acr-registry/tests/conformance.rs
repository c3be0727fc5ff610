//! Our conformance suite for the built-in registry: the four workflows of the distribution spec
//! (pull, push, content discovery, content management), mirroring the checks of
//! opencontainers/distribution-spec `conformance/` (especially those distribution 2.8 fails),
//! plus auth and the Host-based login server.

mod common;

use std::sync::Arc;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

// =============================================================================================
// pull

#[tokio::test]
async fn ping_answers_200_with_api_version() {
    let s = serve(None).await;
    for path in ["/v2/", "/v2"] {
        let r = s.get(path).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            header(&r, "docker-distribution-api-version").as_deref(),
            Some("registry/2.0")
        );
    }
    let r = s.get("/nothing/here").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "UNSUPPORTED");
}

#[tokio::test]
async fn pull_manifest_by_tag_and_digest_then_its_blobs() {
    let s = serve(None).await;
    let img = s.push_image("lib/app", "v1", 1).await;
    for reference in ["v1", img.digest.as_str()] {
        let r = s.get(&format!("/v2/lib/app/manifests/{reference}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type").as_deref(), Some(MT_MANIFEST));
        assert_eq!(
            header(&r, "docker-content-digest"),
            Some(img.digest.clone())
        );
        assert_eq!(
            header(&r, "content-length"),
            Some(img.manifest.len().to_string())
        );
        assert_eq!(
            r.bytes().await.expect("body").as_ref(),
            img.manifest.as_slice()
        );

        let r = s.head(&format!("/v2/lib/app/manifests/{reference}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type").as_deref(), Some(MT_MANIFEST));
        assert_eq!(
            header(&r, "docker-content-digest"),
            Some(img.digest.clone())
        );
        assert_eq!(
            header(&r, "content-length"),
            Some(img.manifest.len().to_string())
        );
        assert!(r.bytes().await.expect("body").is_empty());
    }
    let r = s
        .get(&format!("/v2/lib/app/blobs/{}", img.layer_digest))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(img.layer_digest.clone())
    );
    assert_eq!(
        header(&r, "content-length"),
        Some(img.layer.len().to_string())
    );
    assert_eq!(
        r.bytes().await.expect("body").as_ref(),
        img.layer.as_slice()
    );
    let r = s
        .head(&format!("/v2/lib/app/blobs/{}", img.layer_digest))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "content-length"),
        Some(img.layer.len().to_string())
    );
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(img.layer_digest.clone())
    );
}

#[tokio::test]
async fn blob_range_requests() {
    let s = serve(None).await;
    let blob = bytes(2048, 7);
    let d = s.push_blob("lib/range", &blob).await;
    let path = format!("/v2/lib/range/blobs/{d}");
    for (range, from, to) in [
        ("bytes=500-1499", 500usize, 1499usize),
        ("bytes=500-", 500, 2047),
        ("bytes=-500", 1548, 2047),
        ("bytes=2000-5000", 2000, 2047),
        ("bytes=0-0", 0, 0),
    ] {
        let r = s
            .req(Method::GET, &path)
            .header("range", range)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header(&r, "content-range"),
            Some(format!("bytes {from}-{to}/2048")),
            "{range}"
        );
        assert_eq!(
            header(&r, "content-length"),
            Some((to - from + 1).to_string()),
            "{range}"
        );
        assert_eq!(
            r.bytes().await.expect("body").as_ref(),
            &blob[from..=to],
            "{range}"
        );
    }
    for range in ["bytes=500-0", "bytes=5000-10000", "bytes=2048-"] {
        let r = s
            .req(Method::GET, &path)
            .header("range", range)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(header(&r, "content-range").as_deref(), Some("bytes */2048"));
        assert_eq!(
            header(&r, "content-length").as_deref(),
            Some("0"),
            "the 416 length is truthful"
        );
        assert!(r.bytes().await.expect("body").is_empty());
    }
}

#[tokio::test]
async fn missing_content_is_404_and_repositories_are_isolated() {
    let s = serve(None).await;
    let img = s.push_image("lib/one", "v1", 2).await;
    let missing = sha256(b"never pushed");
    for path in [
        format!("/v2/lib/one/blobs/{missing}"),
        format!("/v2/lib/one/manifests/{missing}"),
        "/v2/lib/one/manifests/nope".to_owned(),
        // the blob and the manifest exist, but not in this repository
        format!("/v2/lib/two/blobs/{}", img.layer_digest),
        format!("/v2/lib/two/manifests/{}", img.digest),
        "/v2/lib/two/manifests/v1".to_owned(),
    ] {
        assert_eq!(
            s.head(&path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
        let r = s.get(&path).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let code = error_code(r).await;
        assert!(
            code == "BLOB_UNKNOWN" || code == "MANIFEST_UNKNOWN",
            "{path}: {code}"
        );
    }
}

#[tokio::test]
async fn malformed_digests_are_400_never_500() {
    let s = serve(None).await;
    s.push_image("lib/bad", "v1", 3).await;
    let bad = [
        "sha256:baddigeststring",
        "sha256:totallywrong",
        "sha256%3Azz",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
    ];
    for d in bad {
        for path in [
            format!("/v2/lib/bad/blobs/{d}"),
            format!("/v2/lib/bad/manifests/{d}"),
            format!("/v2/lib/bad/referrers/{d}"),
        ] {
            let r = s.get(&path).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "GET {path}");
            assert_eq!(error_code(r).await, "DIGEST_INVALID", "GET {path}");
            assert_eq!(
                s.head(&path).await.status(),
                StatusCode::BAD_REQUEST,
                "HEAD {path}"
            );
        }
        for path in [
            format!("/v2/lib/bad/blobs/{d}"),
            format!("/v2/lib/bad/manifests/{d}"),
        ] {
            assert_eq!(
                s.delete(&path).await.status(),
                StatusCode::BAD_REQUEST,
                "DELETE {path}"
            );
        }
        let r = s.put_manifest("lib/bad", d, MT_MANIFEST, b"{}").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "PUT manifest {d}");
        assert_eq!(error_code(r).await, "DIGEST_INVALID");
        let loc = s.start_upload("lib/bad").await;
        let r = s
            .req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
            .body("x")
            .send()
            .await
            .expect("PUT");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "finish with {d}");
        assert_eq!(error_code(r).await, "DIGEST_INVALID");
        for q in [format!("digest={d}"), format!("mount={d}&from=lib/bad")] {
            let r = s
                .req(Method::POST, &format!("/v2/lib/bad/blobs/uploads/?{q}"))
                .body("x")
                .send()
                .await
                .expect("POST");
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "POST ?{q}");
        }
    }
    // A PUT without ?digest= is refused the same way, and the session survives it.
    let loc = s.start_upload("lib/bad").await;
    let r = s.req(Method::PUT, &loc).send().await.expect("PUT");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(s.get(&loc).await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn invalid_names_and_references_are_4xx() {
    let s = serve(None).await;
    for name in ["UPPER", "a..b", "a/-b", "a__-b", "_x"] {
        let r = s.get(&format!("/v2/{name}/tags/list")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(error_code(r).await, "NAME_INVALID", "{name}");
    }
    let long = "a".repeat(256);
    assert_eq!(
        s.get(&format!("/v2/{long}/tags/list")).await.status(),
        StatusCode::BAD_REQUEST
    );
    let r = s.put_manifest("lib/x", "-badtag", MT_MANIFEST, b"{}").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    assert_eq!(
        s.get("/v2/lib/x/manifests/-badtag").await.status(),
        StatusCode::NOT_FOUND
    );
    let r = s
        .req(Method::PATCH, "/v2/lib/x/manifests/v1")
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = s.get("/v2/lib/x/blobs/uploads/not-a-uuid").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
}

// =============================================================================================
// push

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

fn count_files(dir: &std::path::Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
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

// =============================================================================================
// content discovery

#[tokio::test]
async fn tags_list_paginates() {
    let s = serve(None).await;
    let img = s.push_image("lib/tags", "v1", 13).await;
    for t in ["b", "A", "c", "a", "v10", "v2"] {
        let r = s
            .put_manifest("lib/tags", t, MT_MANIFEST, &img.manifest)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let all = ["A", "a", "b", "c", "v1", "v10", "v2"];
    let r = s.get("/v2/lib/tags/tags/list").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, "link").is_none());
    let v = json_body(r).await;
    assert_eq!(v["name"], "lib/tags");
    assert_eq!(v["tags"], json!(all));
    // follow the Link headers, 3 at a time
    let mut seen = Vec::new();
    let mut next = Some("/v2/lib/tags/tags/list?n=3".to_owned());
    while let Some(url) = next {
        let r = s.get(&url).await;
        assert_eq!(r.status(), StatusCode::OK);
        next = header(&r, "link").map(|l| {
            assert!(l.ends_with(">; rel=\"next\""), "{l}");
            l.trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_owned()
        });
        let v = json_body(r).await;
        let page: Vec<String> = serde_json::from_value(v["tags"].clone()).expect("tags");
        assert!(page.len() <= 3);
        seen.extend(page);
    }
    assert_eq!(seen, all);
    let r = s.get("/v2/lib/tags/tags/list?n=2").await;
    assert_eq!(
        header(&r, "link").as_deref(),
        Some("</v2/lib/tags/tags/list?n=2&last=a>; rel=\"next\"")
    );
    let v = json_body(s.get("/v2/lib/tags/tags/list?last=b").await).await;
    assert_eq!(v["tags"], json!(["c", "v1", "v10", "v2"]));
    let v = json_body(s.get("/v2/lib/tags/tags/list?n=2&last=c").await).await;
    assert_eq!(v["tags"], json!(["v1", "v10"]));
    let v = json_body(s.get("/v2/lib/tags/tags/list?n=0").await).await;
    assert_eq!(v["tags"], json!([]));
    assert_eq!(
        s.get("/v2/lib/tags/tags/list?n=x").await.status(),
        StatusCode::BAD_REQUEST
    );
    let r = s.get("/v2/lib/nothing/tags/list").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");
}

#[tokio::test]
async fn catalog_paginates() {
    let s = serve(None).await;
    for repo in ["b/x", "a", "a/b/c", "c"] {
        s.push_blob(repo, repo.as_bytes()).await;
    }
    let v = json_body(s.get("/v2/_catalog").await).await;
    assert_eq!(v["repositories"], json!(["a", "a/b/c", "b/x", "c"]));
    let r = s.get("/v2/_catalog?n=2").await;
    assert_eq!(
        header(&r, "link").as_deref(),
        Some("</v2/_catalog?n=2&last=a/b/c>; rel=\"next\"")
    );
    assert_eq!(json_body(r).await["repositories"], json!(["a", "a/b/c"]));
    let v = json_body(s.get("/v2/_catalog?n=2&last=a/b/c").await).await;
    assert_eq!(v["repositories"], json!(["b/x", "c"]));
}

#[tokio::test]
async fn referrers_api() {
    let s = serve(None).await;
    let subject = s.push_image("lib/refs", "v1", 14).await;
    let subject_desc =
        json!({"mediaType": MT_MANIFEST, "digest": subject.digest, "size": subject.manifest.len()});
    let empty = s.push_blob("lib/refs", b"{}").await;
    let sig = s.push_blob("lib/refs", b"signature").await;
    let sbom_config = s.push_blob("lib/refs", b"{\"sbom\":true}").await;
    let artifact = |artifact_type: Option<&str>, config_mt: &str, config_d: &str, note: &str| {
        let mut m = json!({"schemaVersion": 2, "mediaType": MT_MANIFEST,
            "config": {"mediaType": config_mt, "digest": config_d, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": sig, "size": 9}],
            "subject": subject_desc,
            "annotations": {"org.opencontainers.conformance": note}});
        if let Some(at) = artifact_type {
            m["artifactType"] = json!(at);
        }
        serde_json::to_vec(&m).expect("json")
    };
    // artifactType from the field, from the config's media type, and an index with a subject
    let a1 = artifact(Some("application/vnd.example.sig"), MT_EMPTY, &empty, "one");
    let a2 = artifact(None, "application/vnd.example.sbom", &sbom_config, "two");
    let idx = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MT_INDEX,
        "artifactType": "application/vnd.example.sig", "manifests": [], "subject": subject_desc}))
    .expect("json");
    let mut want = Vec::new();
    for (body, mt) in [(&a1, MT_MANIFEST), (&a2, MT_MANIFEST), (&idx, MT_INDEX)] {
        let d = sha256(body);
        let r = s.put_manifest("lib/refs", &d, mt, body).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(header(&r, "oci-subject"), Some(subject.digest.clone()));
        want.push((d, body.len(), mt));
    }
    let r = s
        .get(&format!("/v2/lib/refs/referrers/{}", subject.digest))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type").as_deref(), Some(MT_INDEX));
    assert!(header(&r, "oci-filters-applied").is_none());
    let v = json_body(r).await;
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], MT_INDEX);
    let list = v["manifests"].as_array().expect("manifests").clone();
    assert_eq!(list.len(), 3);
    for (d, size, mt) in &want {
        let e = list
            .iter()
            .find(|e| e["digest"] == json!(d))
            .expect("listed");
        assert_eq!(e["size"], json!(size));
        assert_eq!(e["mediaType"], json!(mt));
    }
    let by = |d: &str| {
        list.iter()
            .find(|e| e["digest"] == json!(d))
            .cloned()
            .expect("entry")
    };
    assert_eq!(
        by(&want[0].0)["artifactType"],
        "application/vnd.example.sig"
    );
    assert_eq!(
        by(&want[0].0)["annotations"]["org.opencontainers.conformance"],
        "one"
    );
    assert_eq!(
        by(&want[1].0)["artifactType"],
        "application/vnd.example.sbom"
    );
    assert_eq!(
        by(&want[2].0)["artifactType"],
        "application/vnd.example.sig"
    );

    // filtered
    let r = s
        .get(&format!(
            "/v2/lib/refs/referrers/{}?artifactType=application/vnd.example.sig",
            subject.digest
        ))
        .await;
    assert_eq!(
        header(&r, "oci-filters-applied").as_deref(),
        Some("artifactType")
    );
    let v = json_body(r).await;
    let digests: Vec<&str> = v["manifests"]
        .as_array()
        .expect("m")
        .iter()
        .filter_map(|e| e["digest"].as_str())
        .collect();
    assert_eq!(digests.len(), 2);
    assert!(digests.contains(&want[0].0.as_str()) && digests.contains(&want[2].0.as_str()));

    // unknown subject, unknown repository: 200 and an empty index
    for path in [
        format!("/v2/lib/refs/referrers/{}", sha256(b"nothing refers to me")),
        format!("/v2/lib/norepo/referrers/{}", subject.digest),
    ] {
        let r = s.get(&path).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type").as_deref(), Some(MT_INDEX));
        assert_eq!(json_body(r).await["manifests"], json!([]));
    }

    // a referrer of a subject that does not exist (yet) is accepted and listed
    let missing_subject = sha256(b"missing content");
    let lonely = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MT_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": MT_EMPTY, "digest": empty, "size": 2}, "layers": [],
        "subject": {"mediaType": MT_MANIFEST, "digest": missing_subject, "size": 123}}))
    .expect("json");
    let r = s
        .put_manifest("lib/refs", "lonely", MT_MANIFEST, &lonely)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "oci-subject"), Some(missing_subject.clone()));
    let v = json_body(
        s.get(&format!("/v2/lib/refs/referrers/{missing_subject}"))
            .await,
    )
    .await;
    assert_eq!(v["manifests"][0]["digest"], json!(sha256(&lonely)));

    // deleting a referrer removes it from the list
    assert_eq!(
        s.delete(&format!("/v2/lib/refs/manifests/{}", want[0].0))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let v = json_body(
        s.get(&format!("/v2/lib/refs/referrers/{}", subject.digest))
            .await,
    )
    .await;
    assert_eq!(v["manifests"].as_array().map(Vec::len), Some(2));
}

// =============================================================================================
// content management

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

// =============================================================================================
// auth

fn users() -> Arc<Users> {
    Arc::new(Users::default())
}

/// Parses `Bearer realm="…",service="…",scope="…"` into its parameters.
fn challenge(r: &reqwest::Response) -> std::collections::HashMap<String, String> {
    let h =
        header(r, "www-authenticate").unwrap_or_else(|| panic!("no challenge: {:?}", r.headers()));
    let rest = h
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("not Bearer: {h}"));
    let mut out = std::collections::HashMap::new();
    let mut s = rest;
    while let Some((k, v)) = s.split_once("=\"") {
        let Some((val, tail)) = v.split_once('"') else {
            break;
        };
        out.insert(k.trim_start_matches(',').trim().to_owned(), val.to_owned());
        s = tail;
    }
    out
}

async fn fetch_token(s: &Server, user: &str, pass: &str, scopes: &[&str]) -> reqwest::Response {
    let mut q: Vec<(&str, &str)> = vec![("service", "registry")];
    for sc in scopes {
        q.push(("scope", sc));
    }
    s.req(Method::GET, "/oauth2/token")
        .basic_auth(user, Some(pass))
        .query(&q)
        .send()
        .await
        .expect("token")
}

async fn token_for(s: &Server, user: &str, pass: &str, scopes: &[&str]) -> String {
    let r = fetch_token(s, user, pass, scopes).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = json_body(r).await;
    assert_eq!(v["token"], v["access_token"]);
    assert!(v["expires_in"].as_u64().is_some_and(|e| e > 0));
    assert!(v["issued_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    v["token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn auth_token_dance_grants_pull_and_push() {
    let s = serve(Some(users())).await;
    // the ping and a pull without credentials: 401 with the challenge
    let r = s.get("/v2/").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let c = challenge(&r);
    assert_eq!(c["realm"], format!("http://{}/oauth2/token", s.addr));
    assert_eq!(c["service"], s.addr.to_string());
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    let r = s.get("/v2/team/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&r)["scope"], "repository:team/app:pull");
    let r = s
        .req(Method::POST, "/v2/team/app/blobs/uploads/")
        .send()
        .await
        .expect("POST");
    assert_eq!(challenge(&r)["scope"], "repository:team/app:pull,push");

    // the token from the realm, for the challenged scope, lets the client push and pull
    let token = token_for(&s, "alice", "secret", &["repository:team/app:pull,push"]).await;
    let blob = b"authenticated".to_vec();
    let d = sha256(&blob);
    let r = s
        .req(
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?digest={d}"),
        )
        .bearer_auth(&token)
        .body(blob.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .req(Method::GET, &format!("/v2/team/app/blobs/{d}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .req(Method::GET, "/v2/")
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    // the token names no other repository
    let r = s
        .req(Method::GET, "/v2/team/other/tags/list")
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&r)["error"], "insufficient_scope");

    // several scopes in one request, and the POST form grant
    let r = s
        .req(Method::POST, "/oauth2/token")
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "secret"),
            ("service", "registry"),
            ("scope", "repository:team/a:pull repository:team/b:push"),
        ])
        .send()
        .await
        .expect("POST token");
    assert_eq!(r.status(), StatusCode::OK);
    let v = json_body(r).await;
    assert_eq!(v["scope"], "repository:team/a:pull repository:team/b:push");
    let t2 = v["access_token"].as_str().expect("token").to_owned();
    let r = s
        .req(Method::GET, "/v2/team/a/tags/list")
        .bearer_auth(&t2)
        .send()
        .await
        .expect("GET");
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "authorised; the repository is empty"
    );

    // the catalog needs its own scope
    let r = s
        .req(Method::GET, "/v2/_catalog")
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(challenge(&r)["scope"], "registry:catalog:*");
    let t3 = token_for(&s, "alice", "secret", &["registry:catalog:*"]).await;
    let r = s
        .req(Method::GET, "/v2/_catalog")
        .bearer_auth(&t3)
        .send()
        .await
        .expect("GET");
    assert_eq!(json_body(r).await["repositories"], json!(["team/app"]));

    // Basic credentials directly on /v2 work too
    let r = s
        .req(Method::GET, &format!("/v2/team/app/blobs/{d}"))
        .basic_auth("alice", Some("secret"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn auth_refused_scope_is_not_granted() {
    let u = users();
    let s = serve(Some(u.clone())).await;
    let alice = token_for(&s, "alice", "secret", &["repository:team/app:pull,push"]).await;
    let img_blob = b"bob may read this".to_vec();
    let d = sha256(&img_blob);
    let r = s
        .req(
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?digest={d}"),
        )
        .bearer_auth(&alice)
        .body(img_blob)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);
    // bob asks for pull and push: he gets pull only
    let r = s
        .req(Method::POST, "/oauth2/token")
        .form(&[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "hunter2"),
            (
                "scope",
                "repository:team/app:pull,push repository:elsewhere/x:pull",
            ),
        ])
        .send()
        .await
        .expect("token");
    let v = json_body(r).await;
    assert_eq!(v["scope"], "repository:team/app:pull");
    let bob = v["token"].as_str().expect("token").to_owned();
    let r = s
        .req(Method::GET, &format!("/v2/team/app/blobs/{d}"))
        .bearer_auth(&bob)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .req(Method::POST, "/v2/team/app/blobs/uploads/")
        .bearer_auth(&bob)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let c = challenge(&r);
    assert_eq!(c["error"], "insufficient_scope");
    assert_eq!(c["scope"], "repository:team/app:pull,push");
    let r = s.delete(&format!("/v2/team/app/blobs/{d}")).await;
    assert_eq!(challenge(&r)["scope"], "repository:team/app:delete");
    // with Basic directly, a valid user refused an action is 403 DENIED
    let r = s
        .req(Method::POST, "/v2/team/app/blobs/uploads/")
        .basic_auth("bob", Some("hunter2"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(r).await, "DENIED");
    // the Authenticator was asked about full names only
    let asked = u.asked.lock().expect("lock").clone();
    assert!(asked.contains(&Some("team/app".to_owned())));
    assert!(asked.contains(&Some("elsewhere/x".to_owned())));
}

#[tokio::test]
async fn auth_wrong_password_and_bad_tokens_are_401() {
    let s = serve(Some(users())).await;
    let r = fetch_token(&s, "alice", "wrong", &["repository:team/app:pull"]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&r, "www-authenticate").is_some_and(|h| h.starts_with("Basic ")));
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    let r = s
        .get("/oauth2/token?service=registry&scope=repository:team/app:pull")
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s
        .req(Method::POST, "/oauth2/token")
        .form(&[
            ("grant_type", "password"),
            ("username", "nobody"),
            ("password", "x"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s
        .req(Method::POST, "/oauth2/token")
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Basic with a wrong password on /v2: 401 and the challenge
    let r = s
        .req(Method::GET, "/v2/team/app/tags/list")
        .basic_auth("alice", Some("nope"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).contains_key("realm"));
    // forged and garbage tokens
    let good = token_for(&s, "alice", "secret", &["repository:team/app:pull"]).await;
    let (payload, sig) = good.split_once('.').expect("dot");
    let forged = format!("{payload}x.{sig}");
    for t in [forged.as_str(), "garbage", ""] {
        let r = s
            .req(Method::GET, "/v2/team/app/tags/list")
            .bearer_auth(t)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{t}");
    }
    let r = s
        .req(Method::GET, "/v2/team/app/tags/list")
        .bearer_auth(&forged)
        .send()
        .await
        .expect("GET");
    assert_eq!(challenge(&r)["error"], "invalid_token");
    // a token of another registry (another key) is refused
    let other = serve(Some(users())).await;
    let foreign = token_for(&other, "alice", "secret", &["repository:team/app:pull"]).await;
    let r = s
        .req(Method::GET, "/v2/team/app/tags/list")
        .bearer_auth(&foreign)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn auth_mount_needs_pull_on_the_source() {
    let s = serve(Some(users())).await;
    let blob = b"mount me".to_vec();
    let d = sha256(&blob);
    let alice = token_for(&s, "alice", "secret", &["repository:team/src:pull,push"]).await;
    let r = s
        .req(
            Method::POST,
            &format!("/v2/team/src/blobs/uploads/?digest={d}"),
        )
        .bearer_auth(&alice)
        .body(blob)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);
    let mount = format!("/v2/team/dst/blobs/uploads/?mount={d}&from=team/src");
    // unauthenticated: the challenge asks for both repositories
    let r = s.post(&mount).await;
    assert_eq!(
        challenge(&r)["scope"],
        "repository:team/dst:pull,push repository:team/src:pull"
    );
    // a token for the target only: the mount falls back to an upload session
    let only_dst = token_for(&s, "alice", "secret", &["repository:team/dst:pull,push"]).await;
    let r = s
        .req(Method::POST, &mount)
        .bearer_auth(&only_dst)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // with pull on the source as well, it mounts
    let both = token_for(
        &s,
        "alice",
        "secret",
        &["repository:team/dst:pull,push", "repository:team/src:pull"],
    )
    .await;
    let r = s
        .req(Method::POST, &mount)
        .bearer_auth(&both)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);
    // no anonymous mount (without from) when auth is on
    let r = s
        .req(
            Method::POST,
            &format!("/v2/team/third/blobs/uploads/?mount={d}"),
        )
        .basic_auth("alice", Some("secret"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

// =============================================================================================
// the Host-based login server

#[tokio::test]
async fn login_server_host_makes_names_relative() {
    let s = serve(None).await;
    let host = format!("myreg.azurecr.io:{}", s.addr.port());
    let blob = b"via the login server".to_vec();
    let d = sha256(&blob);
    let r = s
        .req(Method::POST, &format!("/v2/app/blobs/uploads/?digest={d}"))
        .header("host", &host)
        .body(blob.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(location(&r), format!("/v2/app/blobs/{d}"));
    // stored as myreg/app: visible by its full name on the plain address
    let r = s.get(&format!("/v2/myreg/app/blobs/{d}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        s.get(&format!("/v2/app/blobs/{d}")).await.status(),
        StatusCode::NOT_FOUND
    );
    s.push_blob("other/x", b"elsewhere").await;
    let r = s
        .req(Method::GET, "/v2/_catalog")
        .header("host", &host)
        .send()
        .await
        .expect("GET");
    assert_eq!(json_body(r).await["repositories"], json!(["app"]));
    let r = s.get("/v2/_catalog").await;
    assert_eq!(
        json_body(r).await["repositories"],
        json!(["myreg/app", "other/x"])
    );
    // a session started through the login server continues through it
    let r = s
        .req(Method::POST, "/v2/app/blobs/uploads/")
        .header("host", &host)
        .send()
        .await
        .expect("POST");
    let loc = location(&r);
    assert!(loc.starts_with("/v2/app/blobs/uploads/"), "{loc}");
    let r = s
        .req(Method::GET, &loc)
        .header("host", &host)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // tags list names the repository as the client sees it
    let img = s.push_image("myreg/app", "v1", 20).await;
    let r = s
        .req(Method::GET, "/v2/app/tags/list")
        .header("host", &host)
        .send()
        .await
        .expect("GET");
    assert_eq!(json_body(r).await["name"], "app");
    let r = s
        .req(Method::GET, "/v2/app/manifests/v1")
        .header("host", "MYREG.azurecr.io")
        .send()
        .await
        .expect("GET");
    assert_eq!(
        r.bytes().await.expect("b").as_ref(),
        img.manifest.as_slice()
    );
}

#[tokio::test]
async fn login_server_host_with_auth_scopes_relative_names() {
    let u = users();
    let s = serve(Some(u.clone())).await;
    let host = format!("myreg.azurecr.io:{}", s.addr.port());
    let r = s
        .req(Method::GET, "/v2/app/tags/list")
        .header("host", &host)
        .send()
        .await
        .expect("GET");
    let c = challenge(&r);
    assert_eq!(c["realm"], format!("http://{host}/oauth2/token"));
    assert_eq!(c["service"], host);
    assert_eq!(c["scope"], "repository:app:pull");
    let r = s
        .req(Method::GET, "/oauth2/token")
        .header("host", &host)
        .basic_auth("alice", Some("secret"))
        .query(&[
            ("service", host.as_str()),
            ("scope", "repository:app:pull,push"),
        ])
        .send()
        .await
        .expect("token");
    let token = json_body(r).await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert!(u
        .asked
        .lock()
        .expect("lock")
        .contains(&Some("myreg/app".to_owned())));
    let r = s
        .req(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={}", sha256(b"x")),
        )
        .header("host", &host)
        .bearer_auth(&token)
        .body("x")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);
    // the same token works by the full name on the plain address: it grants myreg/app
    let r = s
        .req(
            Method::GET,
            &format!("/v2/myreg/app/blobs/{}", sha256(b"x")),
        )
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
}
