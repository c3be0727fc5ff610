//! Manifests: put (digest check, blob checks, referrer entry, tags), get/head, delete.

use super::*;

enum Reference {
    Tag(String),
    Digest(Digest),
}

/// A reference with `:` is a digest (malformed: 400); otherwise a tag (`None` when invalid).
fn parse_reference(s: &str) -> Result<Option<Reference>, ApiError> {
    if s.contains(':') {
        return parse_digest(s).map(|d| Some(Reference::Digest(d)));
    }
    Ok(names::valid_tag(s).then(|| Reference::Tag(s.to_owned())))
}

async fn resolve(inner: &Inner, repo: &Repo, reference: &str) -> Result<Digest, ApiError> {
    match parse_reference(reference)? {
        None => Err(ApiError::manifest_unknown(reference)),
        Some(Reference::Digest(d)) => Ok(d),
        Some(Reference::Tag(t)) => inner
            .store
            .tag(&repo.full, &t)
            .await
            .map_err(internal("read tag"))?
            .ok_or_else(|| ApiError::manifest_unknown(reference)),
    }
}

pub(super) async fn manifest_get(
    inner: &Inner,
    repo: &Repo,
    reference: &str,
    head: bool,
) -> Result<Response, ApiError> {
    let d = resolve(inner, repo, reference).await?;
    let media_type = inner
        .store
        .revision(&repo.full, &d)
        .await
        .map_err(internal("read manifest"))?
        .ok_or_else(|| ApiError::manifest_unknown(reference))?;
    let bytes = inner
        .store
        .read_blob(&d)
        .await
        .map_err(internal("read manifest"))?
        .ok_or_else(|| ApiError::manifest_unknown(reference))?;
    let len = bytes.len();
    let mut r = if head {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(bytes))
    };
    let h = r.headers_mut();
    set(h, header::CONTENT_TYPE, &media_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    set(h, CONTENT_DIGEST.clone(), &d.to_string());
    set(h, header::ETAG, &format!("\"{d}\""));
    Ok(r)
}

/// What a manifest says that the registry acts on.
struct ManifestFacts {
    /// Blobs that must already be in the repository.
    required: Vec<Digest>,
    subject: Option<Digest>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    annotations: Option<Value>,
}

fn descriptor_digest(v: &Value, field: &str) -> Result<Digest, ApiError> {
    let d = v
        .as_object()
        .and_then(|o| o.get("digest"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::manifest_invalid(format!("{field}: descriptor without a digest"))
        })?;
    Digest::parse(d).map_err(|e| {
        ApiError::manifest_invalid(format!("{field}: {}", crate::digest::message(&e)))
            .detail(json!({ "digest": d }))
    })
}

/// Layers whose bytes live elsewhere: the registry must accept the manifest without them.
fn foreign_layer(v: &Value) -> bool {
    let mt = v.get("mediaType").and_then(Value::as_str).unwrap_or("");
    let has_urls = v
        .get("urls")
        .and_then(Value::as_array)
        .is_some_and(|u| !u.is_empty());
    has_urls
        || mt.starts_with("application/vnd.oci.image.layer.nondistributable.")
        || mt == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
}

fn inspect_manifest(doc: &Value) -> Result<ManifestFacts, ApiError> {
    let obj = doc
        .as_object()
        .ok_or_else(|| ApiError::manifest_invalid("manifest is not a JSON object"))?;
    let mut required = Vec::new();
    let mut config_media_type = None;
    if let Some(config) = obj.get("config") {
        required.push(descriptor_digest(config, "config")?);
        config_media_type = config.get("mediaType").and_then(Value::as_str);
    }
    for field in ["layers", "blobs"] {
        let Some(list) = obj.get(field) else {
            continue;
        };
        let list = list
            .as_array()
            .ok_or_else(|| ApiError::manifest_invalid(format!("{field} is not an array")))?;
        for layer in list {
            let d = descriptor_digest(layer, field)?;
            if !foreign_layer(layer) {
                required.push(d);
            }
        }
    }
    if let Some(list) = obj.get("manifests") {
        let list = list
            .as_array()
            .ok_or_else(|| ApiError::manifest_invalid("manifests is not an array"))?;
        // Children are not required to be present: sparse indexes (a platform subset) are allowed.
        for child in list {
            descriptor_digest(child, "manifests")?;
        }
    }
    let subject = match obj.get("subject") {
        Some(Value::Null) | None => None,
        Some(s) => Some(descriptor_digest(s, "subject")?),
    };
    let artifact_type = obj
        .get("artifactType")
        .and_then(Value::as_str)
        .or(config_media_type)
        .map(str::to_owned);
    Ok(ManifestFacts {
        required,
        subject,
        media_type: obj
            .get("mediaType")
            .and_then(Value::as_str)
            .map(str::to_owned),
        artifact_type,
        annotations: obj
            .get("annotations")
            .filter(|a| a.as_object().is_some_and(|o| !o.is_empty()))
            .cloned(),
    })
}

pub(super) async fn manifest_put(
    inner: &Inner,
    repo: &Repo,
    reference: &str,
    headers: &HeaderMap,
    query: &Query,
    body: Body,
) -> Result<Response, ApiError> {
    let reference = match parse_reference(reference) {
        Ok(Some(r)) => r,
        Ok(None) => {
            drain(body).await;
            return Err(
                ApiError::manifest_invalid("invalid tag").detail(json!({ "tag": reference }))
            );
        }
        Err(e) => {
            drain(body).await;
            return Err(e);
        }
    };
    let mut tags: Vec<String> = Vec::new();
    if let Reference::Tag(t) = &reference {
        tags.push(t.clone());
    }
    for t in query.all("tag") {
        if !names::valid_tag(t) {
            drain(body).await;
            return Err(ApiError::manifest_invalid("invalid tag").detail(json!({ "tag": t })));
        }
        if !tags.iter().any(|x| x == t) {
            tags.push(t.to_owned());
        }
    }
    let bytes = match collect_limited(body, MANIFEST_MAX).await {
        Ok(b) => b,
        Err(CollectError::TooLarge) => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::ManifestInvalid,
                format!("manifest larger than {} bytes", MANIFEST_MAX),
            ))
        }
        Err(CollectError::Body) => {
            return Err(ApiError::manifest_invalid(
                "manifest body could not be read",
            ))
        }
    };
    let algorithm = match &reference {
        Reference::Digest(d) => d.algorithm(),
        Reference::Tag(_) => Algorithm::Sha256,
    };
    let digest = algorithm.digest_of(&bytes);
    if let Reference::Digest(d) = &reference {
        if *d != digest {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                Code::DigestInvalid,
                "manifest digest does not match the content",
            )
            .detail(json!({ "expected": d.to_string(), "computed": digest.to_string() })));
        }
    }
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::manifest_invalid(format!("manifest is not valid JSON: {e}")))?;
    let facts = inspect_manifest(&doc)?;
    for d in &facts.required {
        let present = inner
            .store
            .linked_blob_size(&repo.full, d)
            .await
            .map_err(internal("check blob"))?
            .is_some();
        if !present {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                Code::ManifestBlobUnknown,
                "manifest references a blob unknown to the repository",
            )
            .detail(json!({ "digest": d.to_string() })));
        }
    }
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| v.contains('/'))
        .map(str::to_owned)
        .or_else(|| facts.media_type.clone())
        .unwrap_or_else(|| infer_media_type(&doc).to_owned());

    let _guard = inner.repo_lock(&repo.full).lock().await;
    let store = &inner.store;
    store
        .put_manifest(&repo.full, &digest, &bytes, &media_type)
        .await
        .map_err(internal("store manifest"))?;
    if let Some(subject) = &facts.subject {
        let mut desc = json!({
            "mediaType": facts.media_type.as_deref().unwrap_or(&media_type),
            "digest": digest.to_string(),
            "size": bytes.len(),
        });
        if let Some(at) = &facts.artifact_type {
            desc["artifactType"] = json!(at);
        }
        if let Some(a) = &facts.annotations {
            desc["annotations"] = a.clone();
        }
        store
            .put_referrer(&repo.full, subject, &digest, &desc)
            .await
            .map_err(internal("store referrer"))?;
    }
    for t in &tags {
        store
            .put_tag(&repo.full, t, &digest)
            .await
            .map_err(internal("store tag"))?;
    }
    let mut r = empty_response(StatusCode::CREATED);
    let h = r.headers_mut();
    set(
        h,
        header::LOCATION,
        &format!("/v2/{}/manifests/{digest}", repo.visible),
    );
    set(h, CONTENT_DIGEST.clone(), &digest.to_string());
    if let Some(subject) = &facts.subject {
        set(h, OCI_SUBJECT.clone(), &subject.to_string());
    }
    for t in query.all("tag") {
        if let Ok(v) = HeaderValue::from_str(t) {
            h.append(OCI_TAG.clone(), v);
        }
    }
    Ok(r)
}

fn infer_media_type(doc: &Value) -> &'static str {
    if doc.get("manifests").is_some() {
        MT_OCI_INDEX
    } else if doc.get("schemaVersion").and_then(Value::as_i64) == Some(1) {
        MT_DOCKER_V1
    } else {
        MT_OCI_MANIFEST
    }
}

pub(super) async fn manifest_delete(
    inner: &Inner,
    repo: &Repo,
    reference: &str,
) -> Result<Response, ApiError> {
    let store = &inner.store;
    let _guard = inner.repo_lock(&repo.full).lock().await;
    match parse_reference(reference)? {
        None => Err(ApiError::manifest_unknown(reference)),
        Some(Reference::Tag(t)) => {
            if store
                .delete_tag(&repo.full, &t)
                .await
                .map_err(internal("delete tag"))?
            {
                Ok(empty_response(StatusCode::ACCEPTED))
            } else {
                Err(ApiError::manifest_unknown(reference))
            }
        }
        Some(Reference::Digest(d)) => {
            if store
                .revision(&repo.full, &d)
                .await
                .map_err(internal("read manifest"))?
                .is_none()
            {
                return Err(ApiError::manifest_unknown(reference));
            }
            // Its referrer entry first, then the tags pointing at it, then the manifest itself.
            let bytes = store
                .read_blob(&d)
                .await
                .map_err(internal("read manifest"))?;
            let subject = bytes
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|doc| doc.get("subject").map(|s| descriptor_digest(s, "subject")))
                .and_then(Result::ok);
            if let Some(subject) = subject {
                store
                    .delete_referrer(&repo.full, &subject, &d)
                    .await
                    .map_err(internal("delete referrer"))?;
            }
            for t in store
                .tags(&repo.full)
                .await
                .map_err(internal("list tags"))?
            {
                if store
                    .tag(&repo.full, &t)
                    .await
                    .map_err(internal("read tag"))?
                    .as_ref()
                    == Some(&d)
                {
                    store
                        .delete_tag(&repo.full, &t)
                        .await
                        .map_err(internal("delete tag"))?;
                }
            }
            store
                .delete_revision(&repo.full, &d)
                .await
                .map_err(internal("delete manifest"))?;
            Ok(empty_response(StatusCode::ACCEPTED))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_inspected() {
        let ok = json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", "a".repeat(64)), "size": 1},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": format!("sha256:{}", "b".repeat(64)), "size": 1},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{}", "c".repeat(64)), "size": 1, "urls": ["https://example.com/x"]},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha512:{}", "d".repeat(128)), "size": 1}
            ],
            "subject": {"mediaType": MT_OCI_MANIFEST, "digest": format!("sha256:{}", "e".repeat(64)), "size": 1}
        });
        let f = inspect_manifest(&ok)
            .map_err(|e| e.status())
            .expect("valid");
        assert_eq!(f.required.len(), 2, "config and the distributable layer");
        assert_eq!(
            f.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert!(f.subject.is_some());
        for bad in [
            json!([]),
            json!({"layers": {}}),
            json!({"layers": [{"digest": "sha256:nope"}]}),
            json!({"manifests": [{"size": 1}]}),
            json!({"subject": {"digest": 5}}),
        ] {
            assert!(inspect_manifest(&bad).is_err(), "{bad}");
        }
    }
}
