//! Content discovery: tags lists and the catalog with pagination, the referrers API
//! (distribution-spec `conformance/03_discovery_test.go`).

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::*;

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
