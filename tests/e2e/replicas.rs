//! The production shape answers `az acr` like the zero-setup default: two acr-import processes
//! on one PostgreSQL database with a `docker-registry` backend, each with its own login
//! servers. An import through replica A is seen through replica B exactly as the zero-setup
//! service (SQLite, built-in registry) shows the same steps; locks set through one hold in
//! the other; a token minted by one works on the other (the signing key is in the store, the
//! CA in the shared TLS directory); skopeo pushes and pulls through either; a 1 GiB layer
//! pushed through the front door streams with bounded memory.

use std::process::Command;
use std::time::Duration;

use acr_import_tests::image::{Blob, Format, OCI_LAYER};
use acr_import_tests::{
    ArmClient, OciClient, ServiceConfig, TestDatabase, TestImage, TestRegistry, TestService,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{anonymous_source, uri_import};
use crate::login_servers::{access_token, json_of, url, World, LS, ZERO_USER};

/// `v` without its times (they differ from run to run) and the built-in registry's
/// `diskUsageBytes` (an external backend cannot tell it), for comparing answers.
fn timeless(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.retain(|k, _| !k.ends_with("Time") && k != "diskUsageBytes");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// The same steps against an importing world and a reading one (the same service for the
/// zero-setup default; replicas A and B for the production shape). Returns every answer.
async fn steps(importer: &World, reader: &World, source: &str) -> Vec<Value> {
    let mut answers = Vec::new();
    importer.registry("myregistry", json!({})).await;
    let s = importer
        .import(
            "myregistry",
            &uri_import(source, "demo/multi:v1", &["app:v1", "team/app:v1"]),
        )
        .await;
    assert_eq!(s["status"], "Succeeded", "{s}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let s = importer
        .import(
            "myregistry",
            &uri_import(source, "demo/multi:v1", &["app:v2"]),
        )
        .await;
    assert_eq!(s["status"], "Succeeded", "{s}");
    let c = reader.https();
    let t = access_token(
        reader,
        &c,
        LS,
        &[
            "registry:catalog:*",
            "repository:app:pull,push,delete,metadata_read,metadata_write",
            "repository:team/app:delete,metadata_read",
        ],
    )
    .await;
    for path in [
        "/v2/_catalog",
        "/acr/v1/_catalog",
        "/acr/v1/app",
        "/acr/v1/app/_tags?orderby=timedesc",
        "/acr/v1/app/_tags?orderby=timeasc",
        "/acr/v1/app/_manifests",
        "/acr/v1/app/_tags/v1",
    ] {
        let r = c
            .get(url(LS, path))
            .bearer_auth(&t)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        answers.push(timeless(json_of(r).await));
    }
    // A write-locked tag set through the reader refuses an import through the importer.
    let r = c
        .patch(url(LS, "/acr/v1/app/_tags/v1"))
        .bearer_auth(&t)
        .json(&json!({"writeEnabled": false}))
        .send()
        .await
        .expect("PATCH");
    answers.push(timeless(json_of(r).await));
    let mut force = uri_import(source, "demo/other:v1", &["app:v1"]);
    force["mode"] = json!("Force");
    let s = importer.import("myregistry", &force).await;
    answers.push(json!([s["status"], s["error"]["code"]]));
    // Untag and repository delete through the reader.
    let r = c
        .patch(url(LS, "/acr/v1/app/_tags/v1"))
        .bearer_auth(&t)
        .json(&json!({"writeEnabled": true}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .delete(url(LS, "/acr/v1/app/_tags/v1"))
        .bearer_auth(&t)
        .send()
        .await
        .expect("untag");
    answers.push(json!(r.status().as_u16()));
    let r = c
        .get(url(LS, "/acr/v1/app/_tags"))
        .bearer_auth(&t)
        .send()
        .await
        .expect("GET");
    answers.push(timeless(json_of(r).await));
    let r = c
        .delete(url(LS, "/acr/v1/team/app"))
        .bearer_auth(&t)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mut deleted = json_of(r).await;
    if let Some(a) = deleted["manifestsDeleted"].as_array_mut() {
        a.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
    }
    answers.push(deleted);
    let r = c
        .get(url(LS, "/acr/v1/_catalog"))
        .bearer_auth(&t)
        .send()
        .await
        .expect("GET");
    answers.push(json_of(r).await);
    answers
}

async fn source() -> TestRegistry {
    let image = TestImage::three_platform(9801);
    let other = TestImage::single(9802, Format::Oci, &[30_000]);
    let src = anonymous_source("demo/multi", "v1", &image).await;
    src.client()
        .push_image("demo/other", "v1", &other)
        .await
        .unwrap();
    src
}

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// A refresh token for `LS` from replica `w`, for the service's managed identity.
async fn refresh(w: &World) -> String {
    let c = w.https();
    let aad = w.mi_token().await;
    json_of(crate::login_servers::exchange(&c, LS, &aad).await).await["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_postgresql_answer_like_the_zero_setup_default() {
    let src = source().await;

    // The zero-setup default.
    let zero = World::start_default().await;
    let expected = steps(&zero, &zero, &src.host()).await;
    drop(zero);

    // Two replicas on one database and one external backend; the CA directory is shared.
    let (db, backend) = tokio::join!(TestDatabase::create(), TestRegistry::anonymous());
    let tls = tempfile::tempdir().expect("tls dir");
    let config = ServiceConfig::new(db.url(), &backend.url());
    let a = World::start_on(config.clone(), tls.path()).await;
    let mut b = World::start_on(config, tls.path()).await;
    b.sub = a.sub.clone();
    let got = steps(&a, &b, &src.host()).await;
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "answer #{i} differs from the zero-setup default");
    }

    // A refresh token minted by replica A works at replica B, and the other way round:
    // skopeo pushes through B's proxy with A's token, pulls through A's with B's.
    let from_a = refresh(&a).await;
    let from_b = refresh(&b).await;
    let certs = tempfile::tempdir().expect("certs");
    std::fs::copy(&a.ca, certs.path().join("ca.crt")).expect("ca.crt");
    let skopeo = |proxy: u16, args: &[String]| {
        let o = Command::new("skopeo")
            .args(args)
            .env("HTTPS_PROXY", format!("http://127.0.0.1:{proxy}"))
            .env("NO_PROXY", "127.0.0.1,localhost")
            .output()
            .expect("skopeo");
        assert!(
            o.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let cert_dir = certs.path().display().to_string();
    skopeo(
        b.proxy,
        &[
            "copy".into(),
            "--all".into(),
            "--preserve-digests".into(),
            "--src-tls-verify=false".into(),
            "--dest-cert-dir".into(),
            cert_dir.clone(),
            "--dest-creds".into(),
            format!("{ZERO_USER}:{from_a}"),
            format!("docker://{}/demo/multi:v1", src.host()),
            "docker://myregistry.azurecr.io/pushed:v1".into(),
        ],
    );
    let out = tempfile::tempdir().expect("out");
    skopeo(
        a.proxy,
        &[
            "copy".into(),
            "--all".into(),
            "--src-cert-dir".into(),
            cert_dir,
            "--src-creds".into(),
            format!("{ZERO_USER}:{from_b}"),
            "docker://myregistry.azurecr.io/pushed:v1".into(),
            format!("dir:{}", out.path().display()),
        ],
    );
    let image = TestImage::three_platform(9801);
    assert_eq!(
        std::fs::read(out.path().join("manifest.json")).expect("manifest"),
        image.top.bytes.to_vec()
    );
    // What skopeo pushed through B is in B's and A's metadata.
    let c = a.https();
    let t = access_token(&a, &c, LS, &["repository:pushed:metadata_read"]).await;
    let r = c
        .get(url(LS, "/acr/v1/pushed/_manifests"))
        .bearer_auth(&t)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        json_of(r).await["manifests"].as_array().map(Vec::len),
        Some(4)
    );

    // Content written to the backend directly (the front door never saw it) is still listed:
    // /acr/v1 answers from the backend's own listings and adopts it into the metadata.
    let direct = TestImage::single(9804, Format::Oci, &[4096]);
    backend
        .client()
        .push_image("myregistry/direct", "v1", &direct)
        .await
        .expect("push to the backend directly");
    let t = access_token(
        &b,
        &b.https(),
        LS,
        &["registry:catalog:*", "repository:direct:metadata_read"],
    )
    .await;
    let get = |path: &'static str| {
        let c = b.https();
        let t = t.clone();
        async move {
            let r = c
                .get(url(LS, path))
                .bearer_auth(&t)
                .send()
                .await
                .expect("GET");
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            json_of(r).await
        }
    };
    let catalog = get("/acr/v1/_catalog").await;
    assert!(
        catalog["repositories"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("direct"))),
        "{catalog}"
    );
    let tags = get("/acr/v1/direct/_tags").await;
    assert_eq!(tags["tags"][0]["name"], "v1", "{tags}");
    assert_eq!(tags["tags"][0]["digest"], direct.digest(), "{tags}");
    let manifests = get("/acr/v1/direct/_manifests").await;
    assert_eq!(
        manifests["manifests"][0]["digest"],
        direct.digest(),
        "{manifests}"
    );

    // A 1 GiB layer through the front door (plain listener, root view) streams: the
    // replica's memory does not grow with it.
    let before = peak_rss_kib(a.svc.pid());
    assert!(before > 0, "no VmHWM for the replica's process");
    let layer = Blob::generated(OCI_LAYER, 9803, 1 << 30);
    let front = OciClient::new(&a.svc.login_url(), None);
    front
        .push_blob("myregistry/big", &layer)
        .await
        .expect("push 1 GiB through the front door");
    let after = peak_rss_kib(a.svc.pid());
    assert!(
        backend
            .client()
            .blob_exists("myregistry/big", &layer.digest)
            .await
            .expect("HEAD"),
        "the layer reached the backend"
    );
    println!("replica A peak RSS: {before} KiB before, {after} KiB after a 1 GiB layer");
    assert!(
        after < before + 64 * 1024,
        "the replica's peak RSS grew from {before} KiB to {after} KiB for a 1 GiB layer"
    );
}

/// Whatever replica B does to a registry between two of replica A's imports into it, A answers
/// the second as B left the registry: refused once B restricted its network, 404 once B
/// deleted it, accepted into the registry B created again under the same name. (Nothing a
/// replica keeps in memory about a registry may outlive another replica's change; SQLite's
/// registry cache can only be exact because its store has one process.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_checks_each_import_against_the_registry_as_another_left_it() {
    let image = TestImage::single(9804, Format::Oci, &[20_000]);
    let (db, backend, src) = tokio::join!(
        TestDatabase::create(),
        TestRegistry::anonymous(),
        anonymous_source("demo/one", "v1", &image)
    );
    let config = ServiceConfig::new(db.url(), &backend.url());
    let (a, b) = tokio::join!(
        TestService::start(config.clone()),
        TestService::start(config)
    );
    let (arm_a, arm_b) = (ArmClient::new(&a.base_url()), ArmClient::new(&b.base_url()));
    let (sub, rg, name) = (
        uuid::Uuid::new_v4().to_string(),
        "replicas-rg",
        "SharedReg1",
    );
    let import = |tag: &str| uri_import(&src.host(), "demo/one:v1", &[tag]);
    let import_ok = |tag: &'static str| {
        let body = import(tag);
        let (arm_a, sub) = (&arm_a, &sub);
        async move {
            let r = arm_a.import(sub, rg, name, &body).await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{r}");
            let s = arm_a
                .poll_until_done(&r.async_operation(), Duration::from_secs(60))
                .await;
            assert_eq!(s["status"], "Succeeded", "{s}");
        }
    };

    arm_b.create_registry(&sub, rg, name).await;
    import_ok("one:v1").await;
    import_ok("one:v2").await;

    // B restricts the registry's network without the trusted-services bypass.
    let r = arm_b
        .send_json(
            reqwest::Method::PATCH,
            &arm_b.registry_url(&sub, rg, name),
            &json!({"properties": {"publicNetworkAccess": "Disabled", "networkRuleBypassOptions": "None"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    let r = arm_a.import(&sub, rg, name, &import("one:v3")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    assert_eq!(
        r.json()["error"]["code"],
        "TargetRegistryNetworkRestricted",
        "{r}"
    );

    // B deletes it: A answers 404, as ARM does for a registry that is not there.
    let s = arm_b.delete_registry_and_wait(&sub, rg, name).await;
    assert_eq!(s["status"], "Succeeded", "{s}");
    let r = arm_a.import(&sub, rg, name, &import("one:v4")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    assert_eq!(r.json()["error"]["code"], "ResourceNotFound", "{r}");

    // B creates it again: A imports into the new one.
    arm_b.create_registry(&sub, rg, name).await;
    import_ok("one:v5").await;
    // Nothing was enqueued for the refused requests.
    let mut conn = db.connect().await;
    for tag in ["one:v3", "one:v4"] {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from operations where subscription_id = $1 and request::text like $2",
        )
        .bind(&sub)
        .bind(format!("%{tag}%"))
        .fetch_one(&mut conn)
        .await
        .expect("count operations");
        assert_eq!(
            n, 0,
            "an operation was stored for the refused import to {tag}"
        );
    }
}
