//! Pull: the ping, manifests by tag and digest, blobs and their ranges, what is missing or
//! malformed (distribution-spec `conformance/01_pull_test.go`).

use reqwest::{Method, StatusCode};

use crate::harness::*;

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
