//! The `/acr/v1` answers against the examples of the 2021-07-01 data-plane spec
//! (Azure/azure-rest-api-specs `specification/containerregistry/data-plane/
//! Azure.ContainerRegistry/stable/2021-07-01/examples/`, copied verbatim into
//! `tests/fixtures/2021-07-01/`): our JSON, built from the example's own values, has every field
//! the example has, with the same JSON type, and the same values; the fields we add are the
//! ones the real service adds.

use acr_frontdoor::dataplane::wire::{
    time, DeletedRepository, Manifest, ManifestAttributes, ManifestList, Repositories, Repository,
    Tag, TagAttributes, TagList,
};
use acr_store::metadata::{Attributes, ManifestRow, RepositoryRow, TagRow};
use chrono::{DateTime, Utc};
use serde_json::Value;

fn example(name: &str) -> Value {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/2021-07-01/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    v["responses"]["200"]["body"].clone()
}

/// Fields the real service sends beyond the spec (and the spec marks optional).
const EXTRA: &[&str] = &["teleportEnabled", "mediaType", "signed", "quarantineState"];

/// Every field of `spec` is in `ours` with the same type and value (recursively; lists
/// element by element); `ours` has nothing else but [`EXTRA`].
fn same_shape(path: &str, spec: &Value, ours: &Value) {
    match (spec, ours) {
        (Value::Object(s), Value::Object(o)) => {
            for (k, sv) in s {
                let ov = o
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k} missing in {ours}"));
                same_shape(&format!("{path}.{k}"), sv, ov);
            }
            for k in o.keys() {
                assert!(
                    s.contains_key(k) || EXTRA.contains(&k.as_str()),
                    "{path}.{k} is not in the spec's example"
                );
            }
        }
        (Value::Array(s), Value::Array(o)) => {
            assert_eq!(s.len(), o.len(), "{path}: {ours}");
            for (i, (a, b)) in s.iter().zip(o).enumerate() {
                same_shape(&format!("{path}[{i}]"), a, b);
            }
        }
        _ => assert_eq!(spec, ours, "{path}"),
    }
}

fn t(s: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s.as_str().expect("time"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

fn attrs(v: &Value) -> Attributes {
    serde_json::from_value(v.clone()).expect("changeableAttributes")
}

fn tag_row(v: &Value) -> TagRow {
    TagRow {
        tag: v["name"].as_str().expect("name").into(),
        digest: v["digest"].as_str().expect("digest").into(),
        created_at: t(&v["createdTime"]),
        updated_at: t(&v["lastUpdateTime"]),
        attributes: attrs(&v["changeableAttributes"]),
    }
}

fn manifest_row(v: &Value) -> ManifestRow {
    ManifestRow {
        digest: v["digest"].as_str().expect("digest").into(),
        media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
        config_media_type: v["configMediaType"].as_str().map(str::to_owned),
        image_size: v["imageSize"].as_i64().expect("size"),
        architecture: v["architecture"].as_str().map(str::to_owned),
        os: v["os"].as_str().map(str::to_owned),
        refs: None,
        created_at: t(&v["createdTime"]),
        updated_at: t(&v["lastUpdateTime"]),
        attributes: attrs(&v["changeableAttributes"]),
        tags: v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("serialize")
}

#[test]
fn times_have_seven_fractional_digits() {
    let v = Value::String("2018-09-06T06:17:21.0856539Z".into());
    // Our stores keep microseconds: the seventh digit is 0.
    assert_eq!(time(&t(&v)), "2018-09-06T06:17:21.0856530Z");
}

/// Times compare at the microsecond (what the stores keep).
fn micro(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k.ends_with("Time") {
                    if let Some(s) = x.as_str() {
                        *x = Value::String(time(&t(&Value::String(s.to_owned()))));
                    }
                } else {
                    micro(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(micro),
        _ => {}
    }
}

#[test]
fn tag_list_and_tag_attributes() {
    let mut spec = example("GetTagList");
    micro(&mut spec);
    let tags: Vec<TagRow> = spec["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(tag_row)
        .collect();
    let ours = json(&TagList {
        registry: spec["registry"].as_str().expect("registry").into(),
        image_name: spec["imageName"].as_str().expect("imageName").into(),
        tags: tags.iter().map(Tag::from).collect(),
    });
    same_shape("TagList", &spec, &ours);

    for name in ["GetTagAttributes", "UpdateTagAttributes"] {
        let mut spec = example(name);
        micro(&mut spec);
        let ours = json(&TagAttributes {
            registry: spec["registry"].as_str().expect("registry").into(),
            image_name: spec["imageName"].as_str().expect("imageName").into(),
            tag: Tag::from(&tag_row(&spec["tag"])),
        });
        same_shape(name, &spec, &ours);
    }
}

#[test]
fn manifest_list_and_manifest_attributes() {
    let mut spec = example("GetManifestList");
    micro(&mut spec);
    let ours = json(&ManifestList {
        registry: spec["registry"].as_str().expect("registry").into(),
        image_name: spec["imageName"].as_str().expect("imageName").into(),
        manifests: spec["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .map(|m| Manifest::from(&manifest_row(m)))
            .collect(),
    });
    same_shape("AcrManifests", &spec, &ours);

    let mut spec = example("GetManifestAttributes");
    micro(&mut spec);
    let ours = json(&ManifestAttributes {
        registry: spec["registry"].as_str().expect("registry").into(),
        image_name: spec["imageName"].as_str().expect("imageName").into(),
        manifest: Manifest::from(&manifest_row(&spec["manifest"])),
    });
    same_shape("ManifestAttributes", &spec, &ours);
}

#[test]
fn repository_attributes_and_list() {
    let mut spec = example("GetRepositoryAttributes");
    micro(&mut spec);
    let row = RepositoryRow {
        repository: spec["imageName"].as_str().expect("imageName").into(),
        created_at: t(&spec["createdTime"]),
        updated_at: t(&spec["lastUpdateTime"]),
        attributes: attrs(&spec["changeableAttributes"]),
        manifest_count: spec["manifestCount"].as_i64().expect("count"),
        tag_count: spec["tagCount"].as_i64().expect("count"),
    };
    let ours = json(&Repository::new(
        spec["registry"].as_str().expect("registry"),
        &row,
    ));
    same_shape("RepositoryAttributes", &spec, &ours);

    let spec = example("GetRepositoryList");
    let ours = json(&Repositories {
        repositories: spec["repositories"]
            .as_array()
            .expect("list")
            .iter()
            .map(|r| r.as_str().unwrap_or_default().to_owned())
            .collect(),
    });
    same_shape("Repositories", &spec, &ours);
}

#[test]
fn deleted_repository_has_the_real_services_fields() {
    // The spec's example shows no body; the real service (and the SDK's model) has these.
    let ours = json(&DeletedRepository {
        manifests_deleted: vec!["sha256:a".into()],
        tags_deleted: vec!["v1".into()],
    });
    assert_eq!(
        ours,
        serde_json::json!({"manifestsDeleted": ["sha256:a"], "tagsDeleted": ["v1"]})
    );
}

#[test]
fn token_answers_name_their_token_as_the_spec_does() {
    for (name, field) in [
        ("PostRefreshToken", "refresh_token"),
        ("PostAccessToken", "access_token"),
    ] {
        let spec = example(name);
        assert!(spec[field].is_string(), "{name}: {spec}");
    }
}
