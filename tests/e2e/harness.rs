//! Self-tests of the harness: registries of every flavour, the token server, the proxy and
//! the per-test database. These need no acr-import binary.

use std::time::{Duration, Instant};

use acr_import_tests::image::{Format, Platform, TestImage};
use acr_import_tests::oci::{fetch_token, Credentials};
use acr_import_tests::util::http_client;
use acr_import_tests::{TestDatabase, TestRegistry, ThrottleProxy};

async fn roundtrip(reg: &TestRegistry) {
    let client = reg.client();
    let oci = TestImage::three_platform(11);
    let docker = TestImage::index(12, Format::Docker, &Platform::three(), &[1000, 3000]);
    let single = TestImage::single(13, Format::Oci, &[10, 20, 30]);
    assert_eq!(
        client.push_image("demo/multi", "v1", &oci).await.unwrap(),
        oci.digest()
    );
    assert_eq!(
        client.push_image("demo/list", "v1", &docker).await.unwrap(),
        docker.digest()
    );
    assert_eq!(
        client
            .push_image("demo/single", "v1", &single)
            .await
            .unwrap(),
        single.digest()
    );
    client
        .assert_has_image("demo/multi", Some("v1"), &oci)
        .await;
    client
        .assert_has_image("demo/list", Some("v1"), &docker)
        .await;
    client
        .assert_has_image("demo/single", Some("v1"), &single)
        .await;
    assert_eq!(client.tags_list("demo/multi").await.unwrap(), vec!["v1"]);
    let m = client
        .fetch_manifest("demo/multi", "v1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.header_digest.as_deref(), Some(oci.digest()));
    assert_eq!(m.json()["manifests"].as_array().unwrap().len(), 3);
    // Pushing again skips existing blobs and changes nothing.
    client.push_image("demo/multi", "v1", &oci).await.unwrap();
    for d in oci.manifest_digests() {
        assert!(
            client.manifest_exists("demo/multi", &d).await.unwrap(),
            "{d}"
        );
    }
    assert!(client.manifest_exists("demo/multi", "v1").await.unwrap());
    assert!(!client.manifest_exists("demo/multi", "nope").await.unwrap());
    // Nothing of one image shows up in a repository it was not pushed to.
    client.assert_has_none_of("demo/list", &oci).await;
    assert!(client.tags_list("demo/none").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_pull_roundtrip() {
    let (anon, basic, token) = tokio::join!(
        TestRegistry::anonymous(),
        TestRegistry::htpasswd("alice", "s3cret-pw"),
        TestRegistry::token(),
    );
    roundtrip(&anon).await;
    roundtrip(&basic).await;
    roundtrip(&token).await;

    // Basic: anonymous and wrong credentials are refused.
    assert!(basic
        .anonymous_client()
        .fetch_manifest("demo/multi", "v1")
        .await
        .is_err());
    let wrong =
        acr_import_tests::OciClient::new(&basic.url(), Some(Credentials::new("alice", "nope")));
    assert!(wrong.fetch_manifest("demo/multi", "v1").await.is_err());

    // Token: tokens were fetched with the right credentials; anonymous gets an empty grant
    // (registry says 401), wrong credentials get a 401 from the token server.
    let ts = token.token_server().unwrap();
    assert!(ts.authorized_requests() > 0, "token server never called");
    assert!(token
        .anonymous_client()
        .fetch_manifest("demo/multi", "v1")
        .await
        .is_err());
    assert!(ts.request_log().iter().any(|r| r.anonymous));
    let err = fetch_token(
        &http_client(),
        &ts.realm(),
        ts.service(),
        &["repository:demo/multi:pull".to_string()],
        Some(&Credentials::new("tokenuser", "wrong")),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_limits_bandwidth() {
    let reg = TestRegistry::anonymous().await;
    let image = TestImage::single(21, Format::Oci, &[3 << 20]);
    reg.client()
        .push_image("slow/img", "v1", &image)
        .await
        .unwrap();
    let layer = image.blobs[1].digest.clone();

    let proxy = ThrottleProxy::start(&reg.host(), Some(2 << 20)).await;
    let via_proxy = acr_import_tests::OciClient::new(&format!("http://{}", proxy.host()), None);
    let started = Instant::now();
    let (digest, len) = via_proxy.blob_digest("slow/img", &layer).await.unwrap();
    let slow = started.elapsed();
    assert_eq!((digest.as_str(), len), (layer.as_str(), 3 << 20));
    assert!(
        slow >= Duration::from_millis(1000),
        "3 MiB at 2 MiB/s took only {slow:?}"
    );
    assert!(proxy.bytes_to_client() >= 3 << 20);

    proxy.set_rate(None);
    let started = Instant::now();
    via_proxy.blob_digest("slow/img", &layer).await.unwrap();
    let fast = started.elapsed();
    assert!(
        fast < slow,
        "unlimited ({fast:?}) not faster than limited ({slow:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_per_test_is_created_and_dropped() {
    let db = TestDatabase::create().await;
    let name = db.name().to_string();
    let mut conn = db.connect().await;
    let one: i32 = sqlx::query_scalar("select 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    drop(conn);
    drop(db);
    let mut admin = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&acr_import_tests::postgres::admin_url())
            .await
            .unwrap()
    };
    let left: i64 = sqlx::query_scalar("select count(*) from pg_database where datname = $1")
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(left, 0, "database {name} was not dropped");
}
